"""Standard Webhooks signatures (https://www.standardwebhooks.com/), a leaf: it imports nothing of the service.

A signing key is `whsec_` followed by the base64 of at least 24 random bytes. The signed content is
`{webhook-id}.{webhook-timestamp}.{body}`; the signature is HMAC-SHA256 under the decoded key, sent as
`v1,<base64>`. A key value may hold several keys separated by spaces (rotation: the receiver accepts any one),
and then every one of them signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "whsec_"
MIN_KEY_BYTES = 24


class BadSigningKey(ValueError):
    """The key text is not `whsec_` + base64 of at least 24 bytes. The message never holds the key."""


def parse_keys(text: str) -> tuple[bytes, ...]:
    """The keys of a key value: one or more `whsec_…` separated by whitespace."""
    keys = []
    for position, word in enumerate(text.split(), start=1):
        if not word.startswith(PREFIX):
            raise BadSigningKey(f"key {position} does not start with {PREFIX}")
        encoded = word[len(PREFIX) :]
        try:  # padding optional, as the reference implementations accept
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise BadSigningKey(f"key {position} is not base64 after {PREFIX}") from None
        if len(key) < MIN_KEY_BYTES:
            raise BadSigningKey(f"key {position} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
        keys.append(key)
    if not keys:
        raise BadSigningKey("the key value is empty")
    return tuple(keys)


def signature_header(keys: tuple[bytes, ...], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>` per key, space separated."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode() for key in keys
    )


def headers(keys: tuple[bytes, ...], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, message_id, timestamp, body),
    }
