"""How guessable a password is, by zxcvbn's estimate (0 to 4): the rule for what score a new password needs is the
domain's (domain/password_policy.py). Blocks for milliseconds: Passwords runs it in its worker threads."""

from __future__ import annotations

from zxcvbn import zxcvbn

# zxcvbn's work grows with the square of the length; the first 72 characters are what it scores (its own maximum).
PREFIX = 72


def score(password: str, personal: tuple[str, ...] = ()) -> int:
    """zxcvbn's score, counting the user's own names and identifiers as known words."""
    return int(zxcvbn(password[:PREFIX], user_inputs=[word for word in personal if word])["score"])
