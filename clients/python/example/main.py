"""Calls userservice.v1.UserService with the Python client and a ServiceAccount token read from a file: creates a
user (the client adds the idempotency key), reads it back, lists users with a filter and prints the first three
retained change events.

    USERSERVICE_TARGET=127.0.0.1:50051 USERSERVICE_TOKEN_FILE=/var/run/secrets/userservice/token \
        python clients/python/example/main.py

USERSERVICE_CA_FILE names the CA bundle of a TLS server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

from userservice_client import Client, messages


async def main() -> None:
    target, token_file = os.environ.get("USERSERVICE_TARGET"), os.environ.get("USERSERVICE_TOKEN_FILE")
    if not target or not token_file:
        sys.exit("set USERSERVICE_TARGET (host:port) and USERSERVICE_TOKEN_FILE")
    async with Client(target, token_file=token_file, ca_file=os.environ.get("USERSERVICE_CA_FILE")) as users:
        suffix = secrets.token_hex(3)
        created = await users.create_user(
            messages.User(
                first_name="Grace",
                last_name="Hopper",
                nickname=f"grace{suffix}",
                email=f"grace{suffix}@example.com",
                country="US",
                password=secrets.token_urlsafe(18),  # the new user's own; never printed
            )
        )
        print(f"created {created.id} {created.nickname}")
        read = await users.get_user(created.id)  # carries the create's consistency token
        print(f"read {read.id} {read.email}")
        page = await users.list_users(filter=f'nickname = "{created.nickname}"')
        print(f"listed {len(page.users)}")
        async with users.watch_events("earliest") as events:
            seen = 0
            async for event in events:
                print(f"event {event.cursor} {event.type} {event.subject}")
                seen += 1
                if seen == 3:
                    break


if __name__ == "__main__":
    asyncio.run(main())
