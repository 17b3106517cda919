"""Every accepted hash format verifies hashes written by an independent implementation (libpass, bcrypt,
argon2-cffi), and hashes whose costs are out of bounds are refused before any work."""

from __future__ import annotations

import bcrypt
import pytest
from argon2 import PasswordHasher, Type
from passlib import hash as passlib_hash

from userservice.credentials import hashes

PASSWORD = "correct horse battery staple"
CURRENT = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)

REFERENCE = {
    "argon2id": CURRENT.hash(PASSWORD),
    "argon2id, weaker costs": PasswordHasher(time_cost=1, memory_cost=256, type=Type.ID).hash(PASSWORD),
    "argon2i": PasswordHasher(time_cost=1, memory_cost=256, type=Type.I).hash(PASSWORD),
    "argon2d": PasswordHasher(time_cost=1, memory_cost=256, type=Type.D).hash(PASSWORD),
    "bcrypt 2b": passlib_hash.bcrypt.using(rounds=4, ident="2b").hash(PASSWORD),
    "bcrypt 2a": passlib_hash.bcrypt.using(rounds=4, ident="2a").hash(PASSWORD),
    "bcrypt 2y": passlib_hash.bcrypt.using(rounds=4, ident="2y").hash(PASSWORD),
    "scrypt": passlib_hash.scrypt.using(rounds=10).hash(PASSWORD),
    "pbkdf2-sha256": passlib_hash.pbkdf2_sha256.using(rounds=1000).hash(PASSWORD),
}


@pytest.mark.parametrize("name", REFERENCE)
def test_verifies_each_format_and_only_the_right_password(name: str) -> None:
    encoded = REFERENCE[name]
    assert hashes.check_hash(encoded) == encoded
    assert hashes.verify(CURRENT, encoded, PASSWORD)
    assert not hashes.verify(CURRENT, encoded, PASSWORD + "!")
    assert hashes.needs_rehash(CURRENT, encoded) == (name != "argon2id")


def test_bcrypt_reads_the_first_72_bytes_as_every_implementation_does() -> None:
    long = "é" * 40  # 80 bytes: bcrypt 5 refuses to hash them, so hash what older bcrypts saw
    encoded = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    assert hashes.verify(CURRENT, encoded, long)
    assert hashes.verify(CURRENT, encoded, long[:36] + "differs after 72 bytes")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain text",
        "$argon2id$v=19$m=9999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",  # 10 GB of memory
        "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",  # an old version of the algorithm
        "$2b$31$" + "a" * 53,  # 2**31 rounds
        "$2x$04$" + "a" * 53,  # the buggy 2x variant
        "$scrypt$ln=30,r=8,p=1$c2FsdA$" + "a" * 43,  # 128 GiB
        "$scrypt$ln=10,r=8,p=1$c2FsdA$" + "a.b" * 15,  # not base64
        "$pbkdf2-sha256$900000000$c2FsdA$" + "a" * 43,
        "$pbkdf2-sha256$1000$c2FsdA$short",  # a digest shorter than 16 bytes
        "$pbkdf2-sha256$1000$c2F*dA$" + "a" * 43,
        "$md5$whatever",
    ],
)
def test_unknown_malformed_or_too_costly_hashes_are_refused(encoded: str) -> None:
    assert hashes.scheme_of(encoded) is None
    with pytest.raises(ValueError, match="must be an argon2id") as info:
        hashes.check_hash(encoded)
    assert encoded not in str(info.value) or not encoded
    assert not hashes.verify(CURRENT, encoded, PASSWORD)
