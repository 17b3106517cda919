"""SCIM PATCH (RFC 7644 §3.5.2) as one change of the user: the operations are applied in order to the user's
attributes, and what they end up changing is handed to the update use case at once (one version, one event).

Written for what identity providers send as much as for the RFC: ops in any case (Entra's "Replace"), booleans as
"True"/"False" strings (Entra), a path-less replace whose value holds the attributes (Okta's
{"op": "replace", "value": {"active": false}}), value paths such as emails[type eq "work"].value, and paths
prefixed with the User schema's URN.
"""

from __future__ import annotations

from typing import Any

from scim2_models import InvalidPathException, Path
from scim2_models.path import (
    AttrPath,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from userservice.api.scim.discovery import PATCH_SCHEMA, USER_SCHEMA
from userservice.api.scim.errors import ScimError, invalid_value
from userservice.api.scim.resources import as_bool, primary_email, strip_urn
from userservice.domain.model import User

OPERATIONS_MAX = 100
"""Most operations one PATCH may hold."""
_READ_ONLY = frozenset({"id", "meta", "schemas", "groups"})
_REQUIRED = frozenset(
    {"username", "name", "name.givenname", "name.familyname", "emails", "emails.value", "password"}
)


def _syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def _invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


class _Patch:
    """The user's attributes as the operations leave them, in native fields."""

    def __init__(self, user: User) -> None:
        self.email = user.email
        self.changes: dict[str, object] = {}

    def set(self, attribute: str, value: Any) -> None:
        """Sets (add or replace) one attribute, named in lower case without the URN."""
        if attribute in _READ_ONLY or attribute.startswith("meta."):
            raise ScimError(400, f"{attribute} is read-only", "mutability")
        if attribute == "username":
            self.changes["nickname"] = value
        elif attribute == "name":
            if not isinstance(value, dict):
                raise invalid_value("name must be an object")
            for key, part in value.items():
                self.set(f"name.{key.lower()}", part)
        elif attribute == "name.givenname":
            self.changes["first_name"] = value
        elif attribute == "name.familyname":
            self.changes["last_name"] = value
        elif attribute == "emails":
            self.set_email(primary_email(value if isinstance(value, list) else [value]))
        elif attribute == "emails.value":
            self.set_email(value)
        elif attribute in ("emails.type", "emails.primary"):
            self.check_email_constant(attribute, value)
        elif attribute == "active":
            self.changes["active"] = as_bool(value, "active")
        elif attribute == "externalid":
            self.changes["external_id"] = value
        elif attribute == "displayname":
            self.changes["display_name"] = value
        elif attribute == "password":
            self.changes["password"] = value
        else:
            raise _invalid_path(f"{attribute} is not an attribute of a user here")

    def set_email(self, value: Any) -> None:
        self.changes["email"] = value
        if isinstance(value, str):
            self.email = value

    @staticmethod
    def check_email_constant(attribute: str, value: Any) -> None:
        expected: object = "work" if attribute == "emails.type" else True
        given = as_bool(value, attribute) if attribute == "emails.primary" else value
        if not (given == expected or (isinstance(given, str) and given.lower() == expected)):
            raise invalid_value(f"{attribute} is always {str(expected).lower()}: a user has one, work, email")

    def remove(self, attribute: str) -> None:
        if attribute in _READ_ONLY or attribute.startswith("meta."):
            raise ScimError(400, f"{attribute} is read-only", "mutability")
        if attribute in _REQUIRED:
            raise invalid_value(f"{attribute} is required and cannot be removed")
        if attribute in ("externalid", "displayname"):
            self.changes["external_id" if attribute == "externalid" else "display_name"] = None
        elif attribute not in ("emails.type", "emails.primary"):
            raise _invalid_path(f"{attribute} is not an attribute of a user here")

    def email_entry(self) -> dict[str, Any]:
        return {"value": self.email, "type": "work", "primary": True}


def _attribute(path: AttrPath) -> str:
    if path.uri is not None and path.uri.lower() != USER_SCHEMA.lower():
        raise _invalid_path(f"{path.uri} is not a schema of this service")
    return path.attr.lower() + (f".{path.sub_attr.lower()}" if path.sub_attr else "")


def _matches(node: FilterNode, entry: dict[str, Any]) -> bool:
    """A value filter (emails[...]) evaluated on the user's one email entry; strings compare case-insensitively
    (RFC 7643 gives every sub-attribute of emails caseExact false)."""
    if isinstance(node, LogicalExpr):
        results = (_matches(term, entry) for term in node.terms)
        return all(results) if node.op == LogicalOperator.and_ else any(results)
    if isinstance(node, Not):
        return not _matches(node.expr, entry)
    if isinstance(node, Present | Comparison):
        if node.attr_path.sub_attr is not None or node.attr_path.attr.lower() not in entry:
            raise _invalid_path(f"emails has no sub-attribute {node.attr_path}")
        have = entry[node.attr_path.attr.lower()]
        if isinstance(node, Present):
            return True
        want = node.value
        if isinstance(have, bool):
            return (have == as_bool(want, "emails.primary")) == (node.op.value == "eq")
        if not isinstance(want, str):
            return node.op.value == "ne"
        have, want = have.lower(), want.lower()
        answers: dict[str, bool] = {
            "eq": have == want,
            "ne": have != want,
            "co": want in have,
            "sw": have.startswith(want),
            "ew": have.endswith(want),
            "gt": have > want,
            "ge": have >= want,
            "lt": have < want,
            "le": have <= want,
        }
        return answers[node.op.value]
    raise _invalid_path(f"unsupported value filter {node}")


def changes(body: object, user: User) -> dict[str, object]:
    """The native fields the PatchOp request `body` changes on `user` (validated by the update use case)."""
    if not isinstance(body, dict):
        raise _syntax("the body must be a PatchOp JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_SCHEMA not in schemas:
        raise _syntax(f"schemas must hold {PATCH_SCHEMA}")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise _syntax("Operations must be a non-empty list")
    if len(operations) > OPERATIONS_MAX:
        raise _syntax(f"a PATCH may hold at most {OPERATIONS_MAX} operations")
    patch = _Patch(user)
    for operation in operations:
        _apply(patch, operation)
    return patch.changes


def _apply(patch: _Patch, operation: object) -> None:
    if not isinstance(operation, dict):
        raise _syntax("each operation must be an object")
    kind = operation.get("op")
    if not isinstance(kind, str) or kind.lower() not in ("add", "remove", "replace"):
        raise _syntax('op must be "add", "remove" or "replace"')
    kind = kind.lower()
    path, value = operation.get("path"), operation.get("value")
    if path is None or path == "":
        if kind == "remove":
            raise ScimError(400, "remove needs a path", "noTarget")
        if not isinstance(value, dict):
            raise _syntax(f"{kind} without a path needs an object of attributes as its value")
        for key, item in value.items():
            _set_pathless(patch, key, item)
        return
    if not isinstance(path, str):
        raise _invalid_path("path must be a string")
    try:
        node = Path(path).ast
    except InvalidPathException as exc:
        raise _invalid_path(f"the path is not valid: {exc.detail}") from None
    if isinstance(node, ValuePath):
        _apply_value_path(patch, kind, node, value)
    elif isinstance(node, AttrPath):
        attribute = _attribute(node)
        if kind == "remove":
            patch.remove(attribute)
        else:
            patch.set(attribute, value)
    else:
        raise _invalid_path(f"{path} names no attribute")


def _set_pathless(patch: _Patch, key: object, value: Any) -> None:
    """One attribute of a path-less add or replace; attributes of other schemas (an extension an identity provider
    sends by default) and undeclared ones are ignored, as on create."""
    if not isinstance(key, str):
        raise _syntax("attribute names are strings")
    name = strip_urn(key)
    if name.lower().startswith("urn:"):
        return
    attribute = name.lower()
    try:
        patch.set(attribute, value)
    except ScimError as exc:
        if exc.scim_type != "invalidPath":
            raise


def _apply_value_path(patch: _Patch, kind: str, node: ValuePath, value: Any) -> None:
    if _attribute(node.attr_path) != "emails":
        raise _invalid_path(f"only emails[...] selects values, not {node.attr_path}")
    if not _matches(node.val_filter, patch.email_entry()):
        raise ScimError(400, f"no email matches {node.val_filter}", "noTarget")
    attribute = f"emails.{node.sub_attr.lower()}" if node.sub_attr else "emails"
    if kind == "remove":
        patch.remove(attribute)
    else:
        patch.set(attribute, value)
