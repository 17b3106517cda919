"""SCIM lists and searches: every filter operator, value paths, case-insensitive matching, paging, attribute
selection, and hostile or unsupported filters refused as 400 invalidFilter."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tests.integration.service.scim.conftest import scim_user
from tests.integration.service.scim.test_users import assert_error, send

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture(scope="module")
async def people(scim: aiohttp.ClientSession) -> dict[str, Any]:
    """Five users sharing a tag (so every filter below can be scoped to them), made one after the other. The tag
    starts with a letter, so its upper case differs from it (the case-exact externalId filters need that)."""
    group = "t" + uuid.uuid4().hex[:7]
    made = []
    for i, (given, family, active) in enumerate(
        [
            ("Ada", "Lovelace", True),
            ("Grace", "Hopper", True),
            ("Alan", "Turing", False),
            ("Edsger", "Dijkstra", True),
            ("Barbara", "Liskov", True),
        ]
    ):
        body = scim_user(
            f"{group}{i}",
            userName=f"{given}.{group}{i}@Example.com",
            name={"givenName": given, "familyName": family},
            emails=[{"value": f"{given.lower()}.{group}{i}@example.com", "type": "work", "primary": True}],
            active=active,
            externalId=f"{group}-{i}" if i != 4 else None,
        )
        if body["externalId"] is None:
            del body["externalId"]
        status, user, _ = await send(scim, "POST", "/Users", body)
        assert status == 201, user
        made.append(user)
    return {"group": group, "users": made}


async def matching(scim: aiohttp.ClientSession, people: dict[str, Any], expression: str) -> list[int]:
    """Which of the five users (by index) the filter finds, scoped to them."""
    scoped = f'(emails.value co "{people["group"]}") and ({expression})'
    status, body, _ = await send(
        scim, "GET", f"/Users?filter={aiohttp.helpers.quote(scoped, safe='')}&count=1000"
    )
    assert status == 200, (expression, body)
    ids = [u["id"] for u in people["users"]]
    return sorted(ids.index(r["id"]) for r in body["Resources"])


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "ADA.{g}0@example.COM"', [0]),  # userName is not case-exact
        ('userName ne "ada.{g}0@example.com"', [1, 2, 3, 4]),
        ('userName co "RACE.{g}"', [1]),
        ('userName sw "alan."', [2]),
        ('userName ew "{g}3@example.com"', [3]),
        ("userName pr", [0, 1, 2, 3, 4]),
        ("externalId pr", [0, 1, 2, 3]),
        ("not (externalId pr)", [4]),
        ('externalId eq "{g}-1"', [1]),
        ('externalId eq "{G}-1"', []),  # externalId is case-exact
        ('externalId ne "{g}-1"', [0, 2, 3, 4]),
        ('externalId sw "{g}-"', [0, 1, 2, 3]),
        ('name.familyName eq "hopper"', [1]),
        ('name.givenName sw "ED"', [3]),
        ('emails[type eq "work" and value sw "grace."]', [1]),
        ('emails[type eq "work"].value ew "{g}4@example.com"', [4]),
        ('emails[type eq "home"]', []),
        ('emails.value eq "EDSGER.{g}3@example.com"', [3]),
        ("active eq false", [2]),
        ("active ne false", [0, 1, 3, 4]),
        ('userName sw "ada" or userName sw "alan"', [0, 2]),
        ('(userName sw "ada" or userName sw "alan") and active eq true', [0]),
        ('not (userName sw "ada" or name.familyName eq "turing")', [1, 3, 4]),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "barbara"', [4]),
        ('meta.resourceType eq "User"', [0, 1, 2, 3, 4]),
        ('id eq "not-a-uuid"', []),
    ],
)
async def test_every_operator_finds_exactly_its_users(
    scim: aiohttp.ClientSession, people: dict[str, Any], expression: str, expected: list[int]
) -> None:
    group = people["group"]
    text = expression.replace("{g}", group).replace("{G}", group.upper())
    assert await matching(scim, people, text) == expected, text


async def test_dates_compare_with_gt_ge_lt_le(scim: aiohttp.ClientSession, people: dict[str, Any]) -> None:
    users = people["users"]
    created = users[2]["meta"]["created"]
    assert await matching(scim, people, f'meta.created gt "{created}"') == [3, 4]
    assert await matching(scim, people, f'meta.created ge "{created}"') == [2, 3, 4]
    assert await matching(scim, people, f'meta.created lt "{created}"') == [0, 1]
    assert await matching(scim, people, f'meta.created le "{created}"') == [0, 1, 2]
    assert await matching(scim, people, f'meta.created eq "{created}"') == [2]
    assert await matching(scim, people, f'meta.lastModified ge "{users[0]["meta"]["lastModified"]}"') == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert await matching(scim, people, f'id eq "{users[1]["id"]}"') == [1]


@pytest.mark.parametrize(
    "expression",
    [
        "userName eq",
        'title eq "x"',
        'userName xx "a"',
        'userName co "ab"',
        'active eq "yes"',
        'meta.created gt "yesterday"',
        "userName gt 3",
        'name.familyName gt "lovelace"',
        'externalId le "x"',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"',
        'groups[value eq "x"]',
        'emails.type gt "work"',
        'userName eq "' + "a" * 300 + '"',
        " or ".join(['userName eq "a"'] * 40),
        "not (" * 40 + 'userName eq "a"' + ")" * 40,
        'userName eq "' + "a" * 1100 + '"',
    ],
)
async def test_unsupported_or_hostile_filters_are_invalid_filter(
    scim: aiohttp.ClientSession, expression: str
) -> None:
    started = time.perf_counter()
    status, body, _ = await send(scim, "GET", f"/Users?filter={aiohttp.helpers.quote(expression, safe='')}")
    assert_error(status, body, 400, "invalidFilter")
    assert time.perf_counter() - started < 30  # a bound far above what it takes, not a timing claim


async def test_paging_by_start_index_visits_each_user_once(
    scim: aiohttp.ClientSession, people: dict[str, Any]
) -> None:
    scoped = aiohttp.helpers.quote(f'emails.value co "{people["group"]}"', safe="")
    seen = []
    for start in (1, 3, 5):
        status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&startIndex={start}&count=2")
        assert status == 200 and body["totalResults"] == 5 and body["startIndex"] == start, body
        assert body["itemsPerPage"] == len(body["Resources"]) == (2 if start < 5 else 1)
        seen += [r["id"] for r in body["Resources"]]
    assert seen == [u["id"] for u in people["users"]]
    # A page asked for again (no anchor in order), beyond the end, count 0, and out-of-range values (RFC: 1 and 0).
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&startIndex=2&count=2")
    assert [r["id"] for r in body["Resources"]] == seen[1:3]
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&startIndex=9")
    assert body["totalResults"] == 5 and body["Resources"] == [] and body["itemsPerPage"] == 0
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&count=0")
    assert body["totalResults"] == 5 and body["Resources"] == []
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&count=-3&startIndex=-7")
    assert body["startIndex"] == 1 and body["Resources"] == []
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&count=many")
    assert_error(status, body, 400, "invalidValue")
    # Entra appends parameters of its own: ignored.
    status, body, _ = await send(scim, "GET", f"/Users?filter={scoped}&aadOptscim062020=1&count=1")
    assert status == 200 and body["itemsPerPage"] == 1


async def test_attributes_and_excluded_attributes_on_get_list_and_search(
    scim: aiohttp.ClientSession, people: dict[str, Any]
) -> None:
    user = people["users"][0]
    status, body, _ = await send(
        scim, "GET", f"/Users/{user['id']}?attributes=userName,name.familyName,emails.value"
    )
    assert body == {
        "schemas": user["schemas"],
        "id": user["id"],
        "userName": user["userName"],
        "name": {"familyName": "Lovelace"},
        "emails": [{"value": user["emails"][0]["value"]}],
    }
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}?excludedAttributes=meta,emails.type,name")
    assert (
        "meta" not in body
        and "name" not in body
        and body["emails"] == [{"value": user["emails"][0]["value"]}]
    )
    assert body["id"] == user["id"] and body["userName"] == user["userName"]
    scoped = f'userName eq "{user["userName"]}"'
    status, body, _ = await send(
        scim,
        "GET",
        f"/Users?filter={aiohttp.helpers.quote(scoped, safe='')}&attributes=urn:ietf:params:scim:schemas:core:2.0:User:active",
    )
    assert body["Resources"] == [{"schemas": user["schemas"], "id": user["id"], "active": True}]
    for path in ("/Users/.search", "/.search"):
        status, body, _ = await send(
            scim,
            "POST",
            path,
            {"schemas": [SEARCH], "filter": scoped, "excludedAttributes": ["meta", "emails"], "count": 5},
        )
        assert status == 200, body
        assert body["totalResults"] == 1 and set(body["Resources"][0]) == {
            "schemas",
            "id",
            "userName",
            "name",
            "displayName",
            "active",
            "externalId",
        }
    status, body, _ = await send(scim, "POST", "/Users/.search", {"filter": scoped})
    assert_error(status, body, 400, "invalidSyntax")


async def test_discovery_announces_what_is_supported(scim: aiohttp.ClientSession) -> None:
    status, config, _ = await send(scim, "GET", "/ServiceProviderConfig")
    assert status == 200
    assert config["patch"] == {"supported": True} and config["etag"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    assert config["bulk"]["supported"] is False and config["sort"] == {"supported": False}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    status, types, _ = await send(scim, "GET", "/ResourceTypes")
    assert [t["id"] for t in types["Resources"]] == ["User"]
    status, schema, _ = await send(scim, "GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
    assert [a["name"] for a in schema["attributes"]] == [
        "userName",
        "name",
        "displayName",
        "emails",
        "active",
        "password",
    ]
    user_name = schema["attributes"][0]
    assert (user_name["caseExact"], user_name["uniqueness"], user_name["required"]) == (False, "server", True)


async def test_a_hostile_filter_does_not_stall_the_loop(scim: aiohttp.ClientSession) -> None:
    """Every accepted length and nesting at once, concurrently with plain reads that must keep being answered."""
    nested = "not (" * 30 + 'userName eq "a"' + ")" * 30
    wide = " or ".join(f'userName eq "{i:04d}"' for i in range(32))
    hostile = [
        send(scim, "GET", f"/Users?filter={aiohttp.helpers.quote(f, safe='')}") for f in (nested, wide) * 5
    ]
    plain = [send(scim, "GET", "/ServiceProviderConfig") for _ in range(10)]
    answers = await asyncio.gather(*hostile, *plain)
    assert all(status in (200, 400) for status, _, _ in answers), [a[:2] for a in answers]
    assert all(status == 200 for status, _, _ in answers[len(hostile) :])
    # Parentheses alone nest nothing (the grammar keeps no node for them): accepted at any depth within the length.
    deep = aiohttp.helpers.quote("(" * 400 + 'userName eq "a"' + ")" * 400, safe="")
    status, body, _ = await send(scim, "GET", f"/Users?filter={deep}")
    assert status == 200 and body["totalResults"] == 0
