"""Async Python client for userservice.v1.UserService (docs/clients.md).

async with Client("users.team-a.svc:50051", token_file="/var/run/secrets/userservice/token",
                  ca_file="/etc/userservice-ca/ca.crt") as users:
    created = await users.create_user(messages.User(nickname="ada", ...))
    same = await users.get_user(created.id)          # read-your-writes, through any replica
    async for event in users.watch_events("earliest"):
        ...
"""

from userservice_client import errors, messages
from userservice_client.client import Client
from userservice_client.credentials import TokenFile, TokenFileError
from userservice_client.events import EventStream
from userservice_client.retry import NO_RETRIES, RetryPolicy

__all__ = [
    "NO_RETRIES",
    "Client",
    "EventStream",
    "RetryPolicy",
    "TokenFile",
    "TokenFileError",
    "errors",
    "messages",
]
