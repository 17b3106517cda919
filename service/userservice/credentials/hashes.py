"""Password hash formats: the service writes argon2id and verifies the formats users are brought in with.

Accepted (each in its documented encoding):
- argon2id, argon2i, argon2d: PHC strings, `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (argon2-cffi);
- bcrypt: modular crypt, `$2b$12$<22-char salt><31-char hash>` (also `$2a$`, `$2y$`; the `bcrypt` package),
  checked on the first 72 bytes of the password, as every bcrypt implementation has;
- scrypt: passlib's format, `$scrypt$ln=16,r=8,p=1$<salt>$<hash>` (N = 2**ln; salt and hash in base64
  without padding; hashlib.scrypt);
- PBKDF2-HMAC-SHA256: passlib's format, `$pbkdf2-sha256$<rounds>$<salt>$<hash>` (salt and hash in passlib's
  "adapted base64": `.` for `+`, no padding; hashlib.pbkdf2_hmac).

Cost parameters are bounded, so that an imported hash cannot make one check take minutes or gigabytes.
Every function here blocks: callers run them in Passwords' worker threads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ARGON2, BCRYPT, SCRYPT, PBKDF2_SHA256 = "argon2", "bcrypt", "scrypt", "pbkdf2-sha256"
CURRENT = "$argon2id$"

_B64 = r"[A-Za-z0-9+/]+"
_AB64 = r"[./A-Za-z0-9]+"
_ARGON2 = re.compile(
    rf"\$argon2(?:id|i|d)\$v=19\$m=([0-9]{{1,7}}),t=([0-9]{{1,3}}),p=([0-9]{{1,3}})\${_B64}\${_B64}"
)
_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_SCRYPT = re.compile(rf"\$scrypt\$ln=([0-9]{{1,2}}),r=([0-9]{{1,3}}),p=([0-9]{{1,3}})\$({_B64})\$({_B64})")
_PBKDF2 = re.compile(rf"\$pbkdf2-sha256\$([0-9]{{1,8}})\$({_AB64})\$({_AB64})")

# Ceilings well above what any of these libraries writes by default, far below what would stall a worker.
ARGON2_MAX_MEMORY_KIB, ARGON2_MAX_TIME, ARGON2_MAX_LANES = 262_144, 16, 16
BCRYPT_COST = (4, 16)
SCRYPT_MAX_MEMORY, SCRYPT_MAX_P = 256 * 2**20, 16
PBKDF2_MAX_ROUNDS = 5_000_000
BCRYPT_MAX_BYTES = 72

FORMATS = (
    "an argon2id, argon2i or argon2d PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash), a bcrypt hash "
    "($2b$12$…), or passlib's scrypt ($scrypt$ln=…,r=…,p=…$salt$hash) or PBKDF2-SHA256 "
    "($pbkdf2-sha256$rounds$salt$hash) format"
)


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _ab64(text: str) -> bytes:
    return _b64(text.replace(".", "+"))


def scheme_of(encoded: str) -> str | None:
    """The scheme of a well-formed hash whose costs are within bounds, else None."""
    if (m := _ARGON2.fullmatch(encoded)) is not None:
        memory, time_cost, lanes = (int(g) for g in m.groups())
        ok = (
            memory <= ARGON2_MAX_MEMORY_KIB
            and 1 <= time_cost <= ARGON2_MAX_TIME
            and 1 <= lanes <= ARGON2_MAX_LANES
        )
        return ARGON2 if ok else None
    if (m := _BCRYPT.fullmatch(encoded)) is not None:
        return BCRYPT if BCRYPT_COST[0] <= int(m.group(1)) <= BCRYPT_COST[1] else None
    try:
        if (m := _SCRYPT.fullmatch(encoded)) is not None:
            log_n, r, p = (int(g) for g in m.groups()[:3])
            ok = log_n >= 1 and r >= 1 and 1 <= p <= SCRYPT_MAX_P and 128 * r * 2**log_n <= SCRYPT_MAX_MEMORY
            return SCRYPT if ok and len(_b64(m.group(5))) >= 16 and _b64(m.group(4)) else None
        if (m := _PBKDF2.fullmatch(encoded)) is not None:
            ok = 1 <= int(m.group(1)) <= PBKDF2_MAX_ROUNDS
            return PBKDF2_SHA256 if ok and len(_ab64(m.group(3))) >= 16 and _ab64(m.group(2)) else None
    except (binascii.Error, ValueError):
        return None
    return None


def check_hash(value: object) -> str:
    """An imported hash, refused with the list of accepted formats (never echoing it) when it is not one."""
    if not isinstance(value, str) or len(value) > 512 or scheme_of(value) is None:
        raise ValueError(f"must be {FORMATS}, with costs within the service's bounds")
    return value


def verify(argon2: PasswordHasher, encoded: str, password: str) -> bool:
    """Whether the password matches; False for a hash this module does not accept."""
    scheme = scheme_of(encoded)
    secret = password.encode()
    if scheme == ARGON2:
        try:
            return argon2.verify(encoded, secret)  # the variant is read from the hash
        except (VerificationError, InvalidHashError):
            return False
    if scheme == BCRYPT:
        return bcrypt.checkpw(secret[:BCRYPT_MAX_BYTES], encoded.encode())
    if scheme == SCRYPT and (m := _SCRYPT.fullmatch(encoded)) is not None:
        log_n, r, p = (int(g) for g in m.groups()[:3])
        expected = _ab64(m.group(5))
        derived = hashlib.scrypt(
            secret,
            salt=_ab64(m.group(4)),
            n=2**log_n,
            r=r,
            p=p,
            maxmem=2 * SCRYPT_MAX_MEMORY,
            dklen=len(expected),
        )
        return hmac.compare_digest(derived, expected)
    if scheme == PBKDF2_SHA256 and (m := _PBKDF2.fullmatch(encoded)) is not None:
        expected = _ab64(m.group(3))
        derived = hashlib.pbkdf2_hmac("sha256", secret, _ab64(m.group(2)), int(m.group(1)), len(expected))
        return hmac.compare_digest(derived, expected)
    return False


def needs_rehash(argon2: PasswordHasher, encoded: str) -> bool:
    """Whether a hash that just verified should be replaced by one of the current scheme and costs."""
    return not encoded.startswith(CURRENT) or argon2.check_needs_rehash(encoded)
