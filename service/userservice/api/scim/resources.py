"""A user as a SCIM User resource and back, and the `attributes` / `excludedAttributes` selection (RFC 7644 §3.9).

The mapping: userName = nickname, name.givenName = first_name, name.familyName = last_name, displayName =
display_name, emails = the one email (type "work"), active = active, externalId = external_id, password = password
(write-only), meta from the
user's timestamps and version (meta.version is the ETag). Nothing else is declared, so nothing else is stored:
attributes of other schemas, or not declared here, are ignored on the way in and never returned.
"""

from __future__ import annotations

from typing import Any

from userservice.api.scim.discovery import USER_SCHEMA
from userservice.api.scim.errors import ScimError, invalid_value
from userservice.domain.model import User

# Attributes returned whatever `attributes` / `excludedAttributes` say (returned "always", RFC 7643 §7).
ALWAYS = frozenset({"id", "schemas"})
_URN_PREFIX = USER_SCHEMA.lower() + ":"


def to_scim(user: User, base: str) -> dict[str, Any]:
    location = f"{base}/Users/{user.id}"
    resource: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": str(user.id),
        "userName": user.nickname,
        "name": {"givenName": user.first_name, "familyName": user.last_name},
        "emails": [{"value": user.email, "type": "work"}],
        "active": user.active,
        "meta": {
            "resourceType": "User",
            "created": user.created_at.isoformat(),
            "lastModified": user.updated_at.isoformat(),
            "location": location,
            "version": user.etag,
        },
    }
    if user.external_id is not None:
        resource["externalId"] = user.external_id
    if user.display_name is not None:
        resource["displayName"] = user.display_name
    return resource


def strip_urn(name: str) -> str:
    """`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName` → `name.givenName`."""
    return name[len(_URN_PREFIX) :] if name.lower().startswith(_URN_PREFIX) else name


def as_bool(value: object, attribute: str) -> bool:
    """A boolean as identity providers send it: true/false, or the strings "True"/"False" (Entra)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_value(f"{attribute} must be a boolean")


def primary_email(emails: object) -> str:
    """The address of a SCIM emails value: the one given, the primary one, or the work one."""
    if not isinstance(emails, list) or not emails:
        raise invalid_value("emails must be a list holding the user's address")
    if not all(isinstance(e, dict) for e in emails):
        raise invalid_value("each of emails must be an object with a value")
    chosen = next((e for e in emails if e.get("primary") in (True, "True", "true")), None)
    chosen = chosen or next((e for e in emails if str(e.get("type", "")).lower() == "work"), emails[0])
    value = chosen.get("value")
    if not isinstance(value, str):
        raise invalid_value("emails[].value must be a string")
    return value


def _lowered(resource: dict[str, Any]) -> dict[str, Any]:
    """Attribute names are case-insensitive (RFC 7643 §2.1); URN-prefixed core attributes are the core ones."""
    return {strip_urn(key).lower(): value for key, value in resource.items()}


def to_native(resource: object) -> dict[str, object]:
    """A SCIM User (POST, PUT) as the native fields it sets; every declared attribute, absent ones left out."""
    if not isinstance(resource, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    given = _lowered(resource)
    native: dict[str, object] = {}
    if "username" in given:
        native["nickname"] = given["username"]
    name = given.get("name")
    if name is not None:
        if not isinstance(name, dict):
            raise invalid_value("name must be an object")
        parts = {key.lower(): value for key, value in name.items()}
        for sub, field in (("givenname", "first_name"), ("familyname", "last_name")):
            if parts.get(sub) is not None:
                native[field] = parts[sub]
    if given.get("emails") is not None:
        native["email"] = primary_email(given["emails"])
    if given.get("active") is not None:
        native["active"] = as_bool(given["active"], "active")
    if given.get("externalid") is not None:
        native["external_id"] = given["externalid"]
    if given.get("displayname") is not None:
        native["display_name"] = given["displayname"]
    if given.get("password") is not None:
        native["password"] = given["password"]
    return native


def _paths(text: str | None) -> list[tuple[str, str | None]] | None:
    """A comma-separated attribute list as (attribute, sub-attribute) pairs in lower case."""
    if text is None or not text.strip():
        return None
    pairs = []
    for item in text.split(","):
        name = strip_urn(item.strip()).lower()
        attribute, _, sub = name.partition(".")
        if not attribute:
            raise invalid_value(f"attributes and excludedAttributes hold attribute names, not {item!r}")
        pairs.append((attribute, sub or None))
    return pairs


def select(resource: dict[str, Any], attributes: str | None, excluded: str | None) -> dict[str, Any]:
    """The resource with only the `attributes` asked for, or without the `excludedAttributes` (attributes wins
    when both are given); id and schemas are always kept."""
    wanted, unwanted = _paths(attributes), _paths(excluded)
    if wanted is None and unwanted is None:
        return resource
    out: dict[str, Any] = {}
    for key, value in resource.items():
        lower = key.lower()
        if lower in ALWAYS:
            out[key] = value
            continue
        if wanted is not None:
            subs = [sub for attribute, sub in wanted if attribute == lower]
            if not subs:
                continue
            out[key] = value if None in subs else _pick(value, set(subs), keep=True)
        else:
            assert unwanted is not None
            subs = [sub for attribute, sub in unwanted if attribute == lower]
            if None in subs:
                continue
            out[key] = _pick(value, set(subs), keep=False) if subs else value
    return out


def _pick(value: Any, subs: set[str | None], keep: bool) -> Any:
    """The sub-attributes of a complex (or multi-valued complex) value that are kept or left out."""
    if isinstance(value, list):
        return [_pick(item, subs, keep) for item in value]
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if (k.lower() in subs) == keep}
