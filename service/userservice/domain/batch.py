"""AIP-233 batch create: `{"requests": [{"user": {...}}, ...]}`, validated whole, every problem named by
its index (`requests[3].user.email`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from userservice.domain.errors import FieldViolation, InvalidArgument, invalid
from userservice.domain.model import NewUser
from userservice.domain.validation import HashCheck, validate_imported_user

BATCH_MAX = 1000
VIOLATIONS_MAX = 100  # enough to fix a batch by; a thousand bad rows need not come back a thousand times


@dataclass(frozen=True)
class Imported:
    new: NewUser  # new.password is empty when the user came with a hash
    password_hash: str | None


def validate_batch(body: Mapping[str, object], check_hash: HashCheck) -> list[Imported]:
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise invalid(unknown[0][:64], "is not a field of a batch create; send requests")
    requests = body.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= BATCH_MAX:
        raise invalid("requests", f'must be a list of 1 to {BATCH_MAX} {{"user": {{...}}}} objects')
    items: list[Imported] = []
    violations: list[FieldViolation] = []
    nicknames: dict[str, int] = {}
    emails: dict[str, int] = {}
    for i, request in enumerate(requests):
        at = f"requests[{i}]"
        if not isinstance(request, dict) or set(request) != {"user"} or not isinstance(request["user"], dict):
            violations.append(FieldViolation(at, 'must be an object {"user": {...}}'))
            continue
        try:
            new, password_hash = validate_imported_user(request["user"], check_hash)
        except InvalidArgument as exc:
            violations.extend(FieldViolation(f"{at}.user.{v.field}", v.description) for v in exc.violations)
            continue
        for field, seen, key in (("nickname", nicknames, new.nickname), ("email", emails, new.email.lower())):
            if key in seen:
                violations.append(FieldViolation(f"{at}.user.{field}", f"is also in requests[{seen[key]}]"))
            seen.setdefault(key, i)
        items.append(Imported(new, password_hash))
    if violations:
        raise InvalidArgument(violations[:VIOLATIONS_MAX])
    return items
