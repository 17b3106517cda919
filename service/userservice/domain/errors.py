"""Domain errors. Each adapter (REST, gRPC) maps these to its own wire format in exactly one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error a caller can cause; anything else is a server fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    def __init__(self, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"invalid value for: {fields}")


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PreconditionFailed(DomainError):
    """The caller's etag/If-Match no longer matches the stored user."""


class IdempotencyConflict(DomainError):
    """An idempotency key was reused with a different request."""


class CreatedUserDeleted(DomainError):
    """An idempotent create was replayed, but the user it created has been deleted since: the original
    answer (201 and a Location) would no longer be true."""


ECHO_MAX = 40
"""Longest piece of a caller's input quoted back in an error message."""


def excerpt(text: str) -> str:
    """A caller's text for an error message: quoted (escapes show what is invisible) and cut to ECHO_MAX
    characters of the quoted form, whose escapes may be ten times longer than the text."""
    quoted = repr(text)
    return quoted if len(quoted) <= ECHO_MAX else quoted[:ECHO_MAX] + f"… ({len(text)} characters)"


class Unauthenticated(DomainError):
    """A login and password that do not match; the same whether or not the login names a user."""


class Locked(DomainError):
    """Too many failed password checks: nothing is verified until the lock runs out."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class DependencyUnavailable(DomainError):
    """A service the request depends on (the password breach check, when it fails closed) did not answer."""


def invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])
