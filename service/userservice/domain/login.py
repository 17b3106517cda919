"""Logins: the email address or nickname a user signs in with, in the canonical form the user's fields use."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from userservice.domain.errors import invalid
from userservice.domain.fields import EMAIL_MAX, check_email, check_nickname
from userservice.domain.password_policy import PASSWORD_MAX


@dataclass(frozen=True)
class Login:
    """At most one of email and nickname is set; neither when the text cannot be any user's login (it is
    then answered exactly like a login no user has)."""

    key: str  # the canonical form (an email case-folded, as it is compared), or the text as given
    email: str | None = None
    nickname: str | None = None

    @property
    def digest(self) -> str:
        """Names a login no user has in the throttle table without storing what a caller typed."""
        return hashlib.sha256(self.key.encode()).hexdigest()


def parse_login(value: object) -> Login:
    if not isinstance(value, str) or not value:
        raise invalid("login", "must be a user's email address or nickname")
    if len(value) > EMAIL_MAX:  # longer than any email or nickname: nothing to canonicalise
        return Login(f"other:{value}")
    try:
        if "@" in value:
            email = check_email(value)
            return Login(f"email:{email.lower()}", email=email)
        nickname = check_nickname(value)
        return Login(f"nickname:{nickname}", nickname=nickname)
    except ValueError:
        return Login(f"other:{value}")


# A password offered for checking is compared after NFKC, which may shorten it: this bound on the text as
# sent is the one a new password's text is held to before normalising (fields._text).
CANDIDATE_MAX = 4 * PASSWORD_MAX


def check_candidate_password(value: object, field: str = "password") -> str:
    """A password offered for checking: any non-empty string up to a length no stored password can exceed
    (a longer one cannot be right, and is refused before it costs a hash)."""
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string")
    if len(value) > CANDIDATE_MAX:
        raise invalid(field, f"must be at most {CANDIDATE_MAX} characters")
    return value
