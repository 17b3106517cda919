"""Every accepted hash format verifies hashes written by an independent implementation (libpass, bcrypt,
argon2-cffi), and hashes whose costs are out of bounds are refused before any work."""

from __future__ import annotations

import base64
import hashlib

import bcrypt
import pytest
from argon2 import PasswordHasher, Type, low_level
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib import hash as passlib_hash

from userservice.passwords import formats as hashes

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
        "$scrypt$ln=30,r=8,p=1$c2FsdA$" + "A" * 43,  # 128 GiB
        "$scrypt$ln=10,r=8,p=1$c2FsdA$" + "a.b" * 15,  # not base64
        "$pbkdf2-sha256$900000000$c2FsdA$" + "A" * 43,
        "$pbkdf2-sha256$1000$c2FsdA$short",  # a digest shorter than 16 bytes
        "$pbkdf2-sha256$1000$c2F*dA$" + "A" * 43,
        "$md5$whatever",
    ],
)
def test_unknown_malformed_or_too_costly_hashes_are_refused(encoded: str) -> None:
    assert hashes.scheme_of(encoded) is None
    with pytest.raises(ValueError, match="must be an argon2id") as info:
        hashes.check_hash(encoded)
    assert encoded not in str(info.value) or not encoded
    assert not hashes.verify(CURRENT, encoded, PASSWORD)


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("$2b$04$" + "z" * 53, "encoding"),  # a salt with stray bits: bcrypt refuses it at every check
        ("$2b$14$" + REFERENCE["bcrypt 2b"][7:], "ceiling"),
        ("$scrypt$ln=20,r=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "ln < 16 r"),  # OpenSSL refuses N >= 2**(16 r)
        ("$scrypt$ln=16,r=16,p=4$c2FsdHNhbHRzYWx0$" + "A" * 43, "ceiling"),
        ("$argon2id$v=19$m=0,t=2,p=1$c2FsdHNhbHQ$" + "A" * 43, "8 KiB of memory per lane"),
        ("$argon2id$v=19$m=16,t=2,p=4$c2FsdHNhbHQ$" + "A" * 43, "8 KiB of memory per lane"),
        ("$argon2id$v=19$m=65536,t=2,p=1$cw$" + "A" * 43, "salt"),  # a one-byte salt
        ("$argon2id$v=19$m=262144,t=4,p=1$c2FsdHNhbHQ$" + "A" * 43, "ceiling"),
        ("$pbkdf2-sha256$5000000$c2FsdHNhbHQ$" + "A" * 43, "ceiling"),
        ("$pbkdf2-sha256$1000000$c2FsdHNhbHQ$" + "A" * 454, "digest"),  # 340 bytes: 11 blocks a round
        ("$pbkdf2-sha256$1500000$c2FsdHNhbHQ$" + "A" * 86, "ceiling"),  # 64 bytes: two blocks a round
    ],
)
def test_hashes_that_would_crash_never_verify_or_cost_more_than_their_ceiling_are_refused(
    encoded: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        hashes.check_hash(encoded)
    assert encoded[8:] not in str(info.value)


def test_a_bcrypt_hash_is_accepted_only_when_its_salt_and_hash_encode_back_to_the_same_digits() -> None:
    """bcrypt's last digit of the salt and of the hash is checked on its own: the outcome must be the round trip's."""
    digits = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    standard = str.maketrans(digits, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    def round_trips(part: str) -> bool:
        text = part.translate(standard)
        return b64(base64.b64decode(text + "=" * (-len(text) % 4))) == text

    encoded = REFERENCE["bcrypt 2b"]
    salt, digest = encoded[7:29], encoded[29:]
    for last in digits:
        for salt_end, digest_end in ((last, digest[-1]), (salt[-1], last)):
            candidate = encoded[:7] + salt[:-1] + salt_end + digest[:-1] + digest_end
            assert (hashes.work(candidate) is not None) == (
                round_trips(salt[:-1] + salt_end) and round_trips(digest[:-1] + digest_end)
            ), candidate


def test_each_scheme_is_bounded_by_its_real_work() -> None:
    assert hashes.work(REFERENCE["argon2id"]) == hashes.Parsed(hashes.ARGON2, 19456 * 2)
    assert hashes.work(REFERENCE["bcrypt 2b"]) == hashes.Parsed(hashes.BCRYPT, 2**4)
    assert hashes.work(REFERENCE["scrypt"]) == hashes.Parsed(hashes.SCRYPT, 2**10 * 8 * 1)
    two_blocks = passlib_hash.pbkdf2_sha256.using(rounds=1000).hash(PASSWORD)
    assert hashes.work(two_blocks) == hashes.Parsed(hashes.PBKDF2_SHA256, 1000)
    # The ceilings sit about ten of the service's own default checks above it.
    assert hashes.MAX_WORK[hashes.ARGON2] / (19456 * 2) < 15


SALTS = st.binary(min_size=8, max_size=32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


@st.composite
def reference_hashes(draw: st.DrawFn) -> tuple[str, str]:
    """A password and its hash, written by each scheme's own library with any cheap accepted parameters."""
    password = draw(st.text(min_size=1, max_size=40))
    secret, salt = password.encode(), draw(SALTS)
    scheme = draw(st.sampled_from([hashes.ARGON2, hashes.BCRYPT, hashes.SCRYPT, hashes.PBKDF2_SHA256]))
    if scheme == hashes.ARGON2:
        lanes = draw(st.integers(1, 4))
        memory, passes = draw(st.integers(8 * lanes, 256)), draw(st.integers(1, 3))
        variant = draw(st.sampled_from([low_level.Type.ID, low_level.Type.I, low_level.Type.D]))
        digest = draw(st.integers(16, 64))
        encoded = low_level.hash_secret(secret, salt, passes, memory, lanes, digest, variant).decode()
    elif scheme == hashes.BCRYPT:
        encoded = bcrypt.hashpw(secret[:72], bcrypt.gensalt(4)).decode()
    elif scheme == hashes.SCRYPT:
        log_n, r, p = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
        digest = hashlib.scrypt(secret, salt=salt, n=2**log_n, r=r, p=p, dklen=draw(st.integers(16, 64)))
        encoded = f"$scrypt$ln={log_n},r={r},p={p}${b64(salt)}${b64(digest)}"
    else:
        rounds = draw(st.integers(1, 50))
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, rounds, draw(st.integers(16, 64)))
        encoded = f"$pbkdf2-sha256${rounds}${b64(salt).replace('+', '.')}${b64(digest).replace('+', '.')}"
    return password, encoded


@settings(max_examples=150, deadline=None)
@given(reference_hashes())
def test_every_hash_its_library_writes_within_bounds_is_accepted_and_verifies(case: tuple[str, str]) -> None:
    password, encoded = case
    assert hashes.check_hash(encoded) == encoded
    assert hashes._verify(CURRENT, encoded, password)
    # A wrong first character: bcrypt reads only the first 72 bytes, so a character appended may not count.
    assert not hashes._verify(CURRENT, encoded, "x" + password)


PARTS = st.text(
    alphabet="./+ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=90
)


@st.composite
def hash_shaped(draw: st.DrawFn) -> str:
    """Text in the shape of an accepted format, with any parameters and any characters where the data goes."""
    n = st.integers(0, 40)
    return draw(
        st.sampled_from(
            [
                f"$argon2id$v=19$m={draw(n) * 8},t={draw(n)},p={draw(st.integers(0, 5))}${draw(PARTS)}${draw(PARTS)}",
                f"$2b${draw(st.integers(4, 13)):02d}${draw(st.text(alphabet='./ABCabcz019', min_size=53, max_size=53))}",
                f"$scrypt$ln={draw(n)},r={draw(st.integers(0, 9))},p={draw(st.integers(0, 5))}${draw(PARTS)}${draw(PARTS)}",
                f"$pbkdf2-sha256${draw(st.integers(0, 3000))}${draw(PARTS)}${draw(PARTS)}",
            ]
        )
    )


@settings(max_examples=300, deadline=None)
@given(hash_shaped())
def test_whatever_is_accepted_its_library_checks_without_failing(encoded: str) -> None:
    """The import's proof: a hash that passes check_hash is one its library can check, so no stored hash makes a
    check fail with an error (a 500) or refuse every password for ever."""
    try:
        hashes.check_hash(encoded)
    except ValueError:
        return
    assert hashes._verify(CURRENT, encoded, PASSWORD) in (True, False)  # raises if the library refuses it
