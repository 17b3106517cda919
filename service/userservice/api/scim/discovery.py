"""The discovery resources (RFC 7644 §4): ServiceProviderConfig, Schemas and ResourceTypes. The User schema declares
only the attributes that round-trip exactly through the user (api/scim/resources.py maps them)."""

from __future__ import annotations

from typing import Any

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

MAX_RESULTS = 1000
"""The most resources one page holds (a larger count is lowered to it, RFC 7644 §3.4.2.4)."""
DEFAULT_COUNT = 100


def _attribute(
    name: str,
    description: str,
    *,
    kind: str = "string",
    required: bool = False,
    case_exact: bool = False,
    mutability: str = "readWrite",
    returned: str = "default",
    uniqueness: str = "none",
    multi: bool = False,
    sub: list[dict[str, Any]] | None = None,
    canonical: list[str] | None = None,
) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": required,
        "mutability": mutability,
        "returned": returned,
    }
    if kind in ("string", "reference", "binary"):
        attribute["caseExact"] = case_exact
        attribute["uniqueness"] = uniqueness
    if sub is not None:
        attribute["subAttributes"] = sub
    if canonical is not None:
        attribute["canonicalValues"] = canonical
    return attribute


USER_ATTRIBUTES: list[dict[str, Any]] = [
    _attribute(
        "userName",
        "The user's nickname: unique case-insensitively, 3-128 characters of A-Z, a-z, 0-9, '.', '_', '+', '-', "
        "optionally followed by '@' and a domain (an email address or UPN).",
        required=True,
        uniqueness="server",
    ),
    _attribute(
        "name",
        "The user's name.",
        kind="complex",
        required=True,
        sub=[
            _attribute("givenName", "Given name: 1-100 characters with a letter.", required=True),
            _attribute("familyName", "Family name: 1-100 characters with a letter.", required=True),
        ],
    ),
    _attribute("displayName", "How the user is shown: 1-100 characters; optional."),
    _attribute(
        "emails",
        "Exactly one email address, unique case-insensitively: the user's work address. On the way in the primary "
        "entry is taken (else the work one, else the first).",
        kind="complex",
        multi=True,
        required=True,
        sub=[
            _attribute("value", "The address.", required=True),
            _attribute("type", 'Always "work".', canonical=["work"]),
        ],
    ),
    _attribute(
        "active",
        "False deactivates the user: readable, but no password verifies for it until it is true again. Every user "
        "has a value (a create without one makes the user active), so it cannot be removed.",
        kind="boolean",
        required=True,
    ),
    _attribute(
        "password",
        "Write-only: 12-128 characters, held to the native API's policy; stored as an argon2id hash.",
        mutability="writeOnly",
        returned="never",
        case_exact=True,
    ),
]


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": True},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Kubernetes ServiceAccount bearer token",
                "description": "Authorization: Bearer <token>; checked by TokenReview, authorised by "
                "SubjectAccessReview on the userservice.io users resource.",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base}/ServiceProviderConfig",
        },
    }


def user_schema(base: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A user of userservice.",
        "attributes": USER_ATTRIBUTES,
        "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{USER_SCHEMA}"},
    }


def user_resource_type(base: str) -> dict[str, Any]:
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A user of userservice.",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"},
    }


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
