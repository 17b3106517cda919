"""One service and one database for each SCIM test module, a SCIM session on it and a pool to look underneath."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.service import RunningService

SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(scope="module")
async def scim(service: RunningService) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=service.http, headers={"Content-Type": SCIM}) as session:
        yield session


@pytest.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database, min_size=1, max_size=2) as created:
        yield created


def scim_user(n: str, **overrides: Any) -> dict[str, Any]:
    """A SCIM User as an identity provider sends it: userName in email shape, no password, no country."""
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "userName": f"grace.{n}@example.com",
        "name": {"givenName": "Grace", "familyName": "Hopper"},
        "displayName": "Grace Hopper",
        "emails": [{"value": f"grace.{n}@example.com", "type": "work", "primary": True}],
        "active": True,
        "externalId": f"ext-{n}",
    }
    body.update(overrides)
    return body
