"""One canonical string names one user: Unicode spellings of an address or nickname cannot register twice,
squat another's, or answer a lookup for it; the migration brings existing rows to the canonical form."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg

from tests.support.users import new_user
from userservice.store.migrator import migrate


async def create(http: aiohttp.ClientSession, **fields: object) -> aiohttp.ClientResponse:
    async with http.post("/v1/users", json=new_user(**fields)) as resp:
        await resp.read()
        return resp


async def test_nfc_and_nfd_spellings_are_one_address(http: aiohttp.ClientSession) -> None:
    tag = uuid.uuid4().hex[:6]
    first = await create(http, email=f"e\u0301mile{tag}@example.com")
    assert first.status == 201
    second = await create(http, email=f"\u00e9mile{tag}@example.com")
    assert second.status == 409


async def test_kelvin_sign_neither_squats_nor_answers_for_k(http: aiohttp.ClientSession) -> None:
    tag = uuid.uuid4().hex[:6]
    assert (await create(http, email=f"kate{tag}@example.com", nickname=f"kate{tag}")).status == 201
    assert (await create(http, email=f"\u212aate{tag}@example.com")).status == 409
    # The canonical nickname "Kate…" is stored as given, and nicknames are unique case-insensitively: "kate…" has it.
    async with http.post("/v1/users", json=new_user(nickname=f"\u212aate{tag}")) as resp:
        assert resp.status == 409 and (await resp.json())["errors"][0]["field"] == "nickname"
    assert (await create(http, nickname=f"\u212aate{tag}x")).status == 201
    async with http.get("/v1/users", params={"nickname": f"Kate{tag}x"}) as resp:
        assert [u["nickname"] for u in (await resp.json())["users"]] == [f"Kate{tag}x"]
    async with http.get("/v1/users", params={"email": f"\u212aate{tag}@example.com"}) as resp:
        found = (await resp.json())["users"]
    assert [u["email"] for u in found] == [
        f"kate{tag}@example.com"
    ]  # the canonical address, compared as ever


async def test_invisible_characters_and_look_alike_countries_are_refused(http: aiohttp.ClientSession) -> None:
    for fields in (
        {"email": "ada\u200b@example.com"},
        {"nickname": "ad\u202ea"},
        {"first_name": "Ada\u2028Lovelace"},
        {"country": "\u0131t"},
        {"country": "\u017fe"},
    ):
        resp = await create(http, **fields)
        assert resp.status == 400, fields


async def test_migration_canonicalises_existing_rows(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        tag = uuid.uuid4().hex[:6]
        rows = [  # as an older build stored them: NFD, and an NFD duplicate of an NFC address
            (f"e\u0301va{tag}@example.com", "Zoe\u0308"),
            (f"\u00e9lo{tag}@example.com", "Ada"),
            (f"e\u0301lo{tag}@example.com", "Ada"),
        ]
        ids = []
        for email, name in rows:
            ids.append(uuid.uuid4())
            await conn.execute(
                "INSERT INTO users (id, first_name, last_name, nickname, email, country, password_hash) "
                "VALUES ($1, $2, 'X', $3, $4, 'GB', 'h')",
                ids[-1],
                name,
                f"n{uuid.uuid4().hex[:12]}",
                email,
            )
        await conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        assert await migrate(conn) == [2]
        stored = {r["id"]: (r["email"], r["first_name"]) for r in await conn.fetch("SELECT * FROM users")}
    finally:
        await conn.close()
    assert stored[ids[0]] == (f"\u00e9va{tag}@example.com", "Zo\u00eb")
    assert stored[ids[1]][0] == f"\u00e9lo{tag}@example.com"
    assert stored[ids[2]][0] == f"e\u0301lo{tag}@example.com"  # its canonical form was taken: kept as stored
