"""Password hash formats: the service writes argon2id and verifies the formats users are brought in with.

Accepted (each in its documented encoding):
- argon2id, argon2i, argon2d: PHC strings, `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (argon2-cffi);
- bcrypt: modular crypt, `$2b$12$<22-char salt><31-char hash>` (also `$2a$`, `$2y$`; the `bcrypt` package),
  checked on the first 72 bytes of the password, as every bcrypt implementation has;
- scrypt: passlib's format, `$scrypt$ln=16,r=8,p=1$<salt>$<hash>` (N = 2**ln; salt and hash in base64
  without padding; hashlib.scrypt);
- PBKDF2-HMAC-SHA256: passlib's format, `$pbkdf2-sha256$<rounds>$<salt>$<hash>` (salt and hash in passlib's
  "adapted base64": `.` for `+`, no padding; hashlib.pbkdf2_hmac).

An imported hash is accepted only when it is proven verifiable: every encoded part decodes and encodes back to the
same text (no stray bits a library would refuse, or read as another value), and every parameter is within what its
library accepts (argon2's minimum memory per lane, salt and digest lengths; OpenSSL's scrypt limits). Its work is
bounded by what a check really costs, not by one parameter (`work`): memory x passes for argon2, N x r x p for scrypt,
rounds x digest blocks for PBKDF2, 2**cost for bcrypt; each ceiling is about ten of the service's own argon2id checks.
Every function here blocks: callers run them in Passwords' worker threads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger(__name__)

ARGON2, BCRYPT, SCRYPT, PBKDF2_SHA256 = "argon2", "bcrypt", "scrypt", "pbkdf2-sha256"
CURRENT = "$argon2id$"

_B64 = r"[A-Za-z0-9+/]+"
_AB64 = r"[./A-Za-z0-9]+"
_ARGON2 = re.compile(
    rf"\$argon2(?:id|i|d)\$v=19\$m=([0-9]{{1,7}}),t=([0-9]{{1,3}}),p=([0-9]{{1,3}})\$({_B64})\$({_B64})"
)
_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})")
_SCRYPT = re.compile(rf"\$scrypt\$ln=([0-9]{{1,2}}),r=([0-9]{{1,3}}),p=([0-9]{{1,3}})\$({_B64})\$({_B64})")
_PBKDF2 = re.compile(rf"\$pbkdf2-sha256\$([0-9]{{1,8}})\$({_AB64})\$({_AB64})")

# Work ceilings, in each scheme's own unit (see `work`). The service's default argon2id (19 MiB, 2 passes) is
# 38,912 KiB-passes; each ceiling costs roughly ten such checks on one core.
MAX_WORK = {
    ARGON2: 524_288,  # KiB of memory x passes: 64 MiB x 8, 256 MiB x 2
    BCRYPT: 2**13,  # 2**cost: cost 4 to 13
    SCRYPT: 2**21,  # N x r x p: passlib's default (N=2**16, r=8, p=1) four times over
    PBKDF2_SHA256: 2_000_000,  # rounds x 32-byte blocks of the digest
}
ARGON2_MAX_MEMORY_KIB, ARGON2_MAX_LANES = 262_144, 16
BCRYPT_MIN_COST = 4
SCRYPT_MAX_MEMORY, SCRYPT_MAX_P = 256 * 2**20, 16
SALT_MIN_BYTES, DIGEST_BYTES = 8, (16, 64)  # argon2's minimum salt; a digest long enough to mean something
BCRYPT_MAX_BYTES = 72

FORMATS = (
    "an argon2id, argon2i or argon2d PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash), a bcrypt hash "
    "($2b$12$…), or passlib's scrypt ($scrypt$ln=…,r=…,p=…$salt$hash) or PBKDF2-SHA256 "
    "($pbkdf2-sha256$rounds$salt$hash) format"
)


@dataclass(frozen=True)
class Parsed:
    scheme: str
    work: int  # in the scheme's unit of MAX_WORK


class Refused(ValueError):
    """Why a hash cannot be accepted: never quotes the hash."""


def _b64(text: str) -> bytes:
    """Unpadded base64 that must encode back to the same text: stray low bits are refused, not dropped."""
    raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if base64.b64encode(raw).decode().rstrip("=") != text:
        raise binascii.Error("not canonical")
    return raw


def _ab64(text: str) -> bytes:
    return _b64(text.replace(".", "+"))


# bcrypt's base64 digits, in the order of their values. Its salt (22 digits for 16 bytes) and hash (31 digits for 23
# bytes) leave the low 4 and 2 bits of their last digit unused: canonical when those bits are zero. The pattern has
# checked the digits and lengths, so the last digits are all that is left to check (bcrypt refuses any other salt at
# every check; any other hash never matches).
_BCRYPT_DIGITS = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BCRYPT_SALT_ENDS = frozenset(_BCRYPT_DIGITS[::16])
_BCRYPT_HASH_ENDS = frozenset(_BCRYPT_DIGITS[::4])


def _digest(raw: bytes) -> bytes:
    if not DIGEST_BYTES[0] <= len(raw) <= DIGEST_BYTES[1]:
        raise Refused(f"its digest must be {DIGEST_BYTES[0]} to {DIGEST_BYTES[1]} bytes")
    return raw


def _salt(raw: bytes) -> bytes:
    if len(raw) < SALT_MIN_BYTES:
        raise Refused(f"its salt must be at least {SALT_MIN_BYTES} bytes")
    return raw


def _bounded(scheme: str, work: int) -> Parsed:
    if work > MAX_WORK[scheme]:
        raise Refused(f"its costs are above the {scheme} ceiling of the service ({MAX_WORK[scheme]:,} units)")
    return Parsed(scheme, work)


def _parse(encoded: str) -> Parsed:
    """The scheme and work of a hash this service can verify; Refused, with the reason, otherwise."""
    try:
        if (m := _ARGON2.fullmatch(encoded)) is not None:
            memory, passes, lanes = (int(g) for g in m.groups()[:3])
            if not (1 <= lanes <= ARGON2_MAX_LANES and passes >= 1 and 8 * lanes <= memory):
                raise Refused("argon2 needs 1 to 16 lanes, at least one pass and 8 KiB of memory per lane")
            if memory > ARGON2_MAX_MEMORY_KIB:
                raise Refused(f"argon2 memory must be at most {ARGON2_MAX_MEMORY_KIB} KiB")
            _salt(_b64(m.group(4)))
            _digest(_b64(m.group(5)))
            return _bounded(ARGON2, memory * passes)
        if (m := _BCRYPT.fullmatch(encoded)) is not None:
            cost = int(m.group(1))
            if cost < BCRYPT_MIN_COST:
                raise Refused(f"bcrypt's cost must be at least {BCRYPT_MIN_COST}")
            if m.group(2)[-1] not in _BCRYPT_SALT_ENDS or m.group(3)[-1] not in _BCRYPT_HASH_ENDS:
                raise binascii.Error("not canonical")
            return _bounded(BCRYPT, 2**cost)
        if (m := _SCRYPT.fullmatch(encoded)) is not None:
            log_n, r, p = (int(g) for g in m.groups()[:3])
            # OpenSSL's limits: N a power of two above 1, N < 2**(16 r), r p < 2**30, and the memory it allocates.
            if not (1 <= log_n < 16 * r and 1 <= p <= SCRYPT_MAX_P and r * p < 2**30):
                raise Refused("scrypt needs 1 <= ln < 16 r and 1 <= p <= 16")
            if scrypt_memory(log_n, r, p) > SCRYPT_MAX_MEMORY:
                raise Refused(f"scrypt's memory must be at most {SCRYPT_MAX_MEMORY // 2**20} MiB")
            _salt(_b64(m.group(4)))
            _digest(_b64(m.group(5)))
            return _bounded(SCRYPT, 2**log_n * r * p)
        if (m := _PBKDF2.fullmatch(encoded)) is not None:
            rounds = int(m.group(1))
            if rounds < 1:
                raise Refused("PBKDF2 needs at least one round")
            _salt(_ab64(m.group(2)))
            digest = _digest(_ab64(m.group(3)))
            return _bounded(PBKDF2_SHA256, rounds * math.ceil(len(digest) / 32))
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused("a part of it is not in the format's encoding") from None
    raise Refused(f"it is not {FORMATS}")


def scrypt_memory(log_n: int, r: int, p: int) -> int:
    """The bytes OpenSSL allocates for one scrypt: p blocks of 128 r bytes, and 128 r (N + 2) for the table."""
    return int(128 * r * p + 128 * r * (2**log_n + 2))


def work(encoded: str) -> Parsed | None:
    """The scheme and the work of one check of a hash the service accepts, else None."""
    try:
        return _parse(encoded)
    except Refused:
        return None


def scheme_of(encoded: str) -> str | None:
    """The scheme of a hash the service accepts, else None."""
    parsed = work(encoded)
    return None if parsed is None else parsed.scheme


def check_hash(value: object) -> str:
    """An imported hash, refused with the reason and the accepted formats (never echoing it) when it is not one."""
    if not isinstance(value, str) or len(value) > 512:
        raise ValueError(f"must be {FORMATS}, with costs within the service's bounds")
    try:
        _parse(value)
    except Refused as exc:
        raise ValueError(f"must be {FORMATS}, with costs within the service's bounds: {exc}") from None
    return value


def verify(argon2: PasswordHasher, encoded: str, password: str) -> bool:
    """Whether the password matches; False for a hash this module does not accept, and for one its library
    refuses after all (logged: a stored hash that cannot be checked is a defect, never the caller's 500)."""
    try:
        return _verify(argon2, encoded, password)
    except ValueError as exc:
        log.error(
            "a stored password hash could not be checked",
            extra={"scheme": scheme_of(encoded), "error": str(exc)},
        )
        return False


def _verify(argon2: PasswordHasher, encoded: str, password: str) -> bool:
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
        expected = _b64(m.group(5))
        derived = hashlib.scrypt(
            secret,
            salt=_b64(m.group(4)),
            n=2**log_n,
            r=r,
            p=p,
            maxmem=scrypt_memory(log_n, r, p) + 2**20,
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
