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


# What a user provisioned over SCIM may lack: an identity provider sends neither (the user signs in there).
PROVISIONING_OPTIONAL = frozenset({"password", "country"})


def validate_new_user(body: Mapping[str, object], optional: frozenset[str] = frozenset()) -> NewUser:
    """`optional` names fields that may be absent although the native API requires them."""
    return _new_user(body, WRITABLE_FIELDS, optional)


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


def _new_user(
    body: Mapping[str, object], specs: tuple[FieldSpec, ...], optional: frozenset[str] = frozenset()
) -> NewUser:
    violations: list[FieldViolation] = []
    _check_keys(body, violations)
    values: dict[str, object] = {"password": "", "country": None}
    for spec in specs:
        if body.get(spec.name) is None:
            if spec.optional or spec.name in optional:
                if spec.default is not None:
                    values[spec.name] = spec.default
                continue
            violations.append(FieldViolation(spec.name, "is required"))
            continue
        try:
            values[spec.name] = spec.check(body[spec.name])
        except ValueError as exc:
            violations.append(FieldViolation(spec.name, str(exc)))
    if values["password"] and {"email", "nickname"} <= values.keys():
        try:
            check_not_personal(str(values["password"]), str(values["email"]), str(values["nickname"]))
        except ValueError as exc:
            violations.append(FieldViolation("password", str(exc)))
    if violations:
        raise InvalidArgument(violations)
    return NewUser(**values)  # type: ignore[arg-type]


def validate_changes(body: Mapping[str, object]) -> Changes:
    """A partial update: only the given fields; only a nullable one may be removed (null)."""
    violations: list[FieldViolation] = []
    _check_keys(body, violations)
    values: dict[str, object] = {}
    for name, raw in body.items():
        spec = FIELDS_BY_NAME.get(name)
        if spec is None:
            continue
        if raw is None:
            if spec.nullable:
                values[name] = None
            else:
                violations.append(FieldViolation(name, "is required and cannot be removed"))
            continue
        try:
            values[name] = spec.check(raw)
        except ValueError as exc:
            violations.append(FieldViolation(name, str(exc)))
    if violations:
        raise InvalidArgument(violations)
    return Changes(values)
