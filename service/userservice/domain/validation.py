"""Validation of create and update input: all problems are reported at once, each with its field."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from userservice.domain.errors import FieldViolation, InvalidArgument
from userservice.domain.fields import FIELDS_BY_NAME, READ_ONLY_FIELDS, WRITABLE_FIELDS, FieldSpec
from userservice.domain.model import Changes, NewUser
from userservice.domain.password_policy import check_not_personal


def _check_keys(body: Mapping[str, object], violations: list[FieldViolation]) -> None:
    for key in body:
        if key in READ_ONLY_FIELDS:
            violations.append(FieldViolation(key, "is read-only and cannot be set"))
        elif key not in FIELDS_BY_NAME:
            violations.append(FieldViolation(key, "is not a field of a user"))


def validate_new_user(body: Mapping[str, object]) -> NewUser:
    return _new_user(body, WRITABLE_FIELDS)


# Checks an imported hash and returns it, or raises ValueError with the reason: passwords/formats.py's, passed in
# by the use case so that the pure rules here import no hashing library.
HashCheck = Callable[[object], str]


def validate_imported_user(body: Mapping[str, object], check_hash: HashCheck) -> tuple[NewUser, str | None]:
    """A user brought in from another system: with a `password`, or with the `password_hash` it had there
    (then the NewUser's password is empty and never used)."""
    if "password_hash" not in body:
        return validate_new_user(body), None
    rest = {k: v for k, v in body.items() if k != "password_hash"}
    violations: list[FieldViolation] = []
    try:
        password_hash = check_hash(body["password_hash"])
    except ValueError as exc:
        violations.append(FieldViolation("password_hash", str(exc)))
    if "password" in rest:
        violations.append(FieldViolation("password", "give either password or password_hash, not both"))
    try:
        new = _new_user(rest, tuple(spec for spec in WRITABLE_FIELDS if spec.name != "password"))
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if violations:
        raise InvalidArgument(violations)
    return new, password_hash


def _new_user(body: Mapping[str, object], specs: tuple[FieldSpec, ...]) -> NewUser:
    violations: list[FieldViolation] = []
    _check_keys(body, violations)
    values: dict[str, str] = {"password": ""}
    for spec in specs:
        if body.get(spec.name) is None:
            violations.append(FieldViolation(spec.name, "is required"))
            continue
        try:
            values[spec.name] = spec.check(body[spec.name])
        except ValueError as exc:
            violations.append(FieldViolation(spec.name, str(exc)))
    if values["password"] and {"email", "nickname"} <= values.keys():
        try:
            check_not_personal(values["password"], values["email"], values["nickname"])
        except ValueError as exc:
            violations.append(FieldViolation("password", str(exc)))
    if violations:
        raise InvalidArgument(violations)
    return NewUser(**values)


def validate_changes(body: Mapping[str, object]) -> Changes:
    """A partial update: only the given fields; none may be removed (null)."""
    violations: list[FieldViolation] = []
    _check_keys(body, violations)
    values: dict[str, str] = {}
    for name, raw in body.items():
        spec = FIELDS_BY_NAME.get(name)
        if spec is None:
            continue
        if raw is None:
            violations.append(FieldViolation(name, "is required and cannot be removed"))
            continue
        try:
            values[name] = spec.check(raw)
        except ValueError as exc:
            violations.append(FieldViolation(name, str(exc)))
    if violations:
        raise InvalidArgument(violations)
    return Changes(values)
