"""What a new password must be (NIST SP 800-63B): long enough, any Unicode, not a common password, not the
user's own email or nickname, and not guessable by a strength estimator. Pure rules, no I/O; errors name the rule
and never echo the password.

Passwords are NFKC-normalised before they are hashed or checked, so that the same characters typed on another
keyboard or input method (a fullwidth letter, a ligature, a precomposed accent) still match.
"""

from __future__ import annotations

import unicodedata

from zxcvbn.frequency_lists import FREQUENCY_LISTS

# 12 is above SP 800-63B's floor of 8 for a password used with a second factor (15 when it is the only one);
# 128 leaves room for passphrases while bounding the work one hash does.
PASSWORD_MIN, PASSWORD_MAX = 12, 128
# The user's identifiers count as "contained" from this length on: shorter ones turn up by chance.
PERSONAL_MIN = 4

# zxcvbn's score (0 to 4) a new password must reach: 3 is "safely unguessable", at least 10**8 guesses by its
# estimate. It finds what the list misses: sequences, keyboard walks, dates, repeats, names and words with digits.
STRENGTH_MIN_SCORE = 3

# zxcvbn ships the 30,000 most common passwords of a public corpus of leaked passwords, lower-cased.
COMMON_PASSWORDS: frozenset[str] = frozenset(FREQUENCY_LISTS["passwords"])


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_new_password(text: str) -> str:
    """The password as it will be hashed (NFKC); ValueError names the rule it breaks."""
    password = normalise(text)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValueError(f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if not password.strip():
        raise ValueError("must not be only whitespace")
    if password.casefold() in COMMON_PASSWORDS:
        raise ValueError("is one of the most commonly used passwords; choose another")
    return password


def check_not_personal(password: str, email: str, nickname: str) -> None:
    """ValueError when the password contains the user's nickname or the local part of their email."""
    folded = password.casefold()
    if len(nickname) >= PERSONAL_MIN and nickname.casefold() in folded:
        raise ValueError("must not contain your nickname")
    local = email.rpartition("@")[0]
    if len(local) >= PERSONAL_MIN and local.casefold() in folded:
        raise ValueError("must not contain the part of your email address before the @")


def check_score(score: int) -> None:
    """ValueError when the strength estimate (passwords/strength.py: zxcvbn's 0 to 4) is below STRENGTH_MIN_SCORE."""
    if score < STRENGTH_MIN_SCORE:
        raise ValueError(
            "is too easy to guess (a sequence, keyboard pattern, date, repeat or common word with digits);"
            " use a longer phrase of unrelated words"
        )
