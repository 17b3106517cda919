"""The new-password rules of NIST SP 800-63B, as pure functions."""

# ruff: noqa: RUF001 # look-alike characters (fullwidth, ligatures) are what NFKC is tested with

from __future__ import annotations

import pytest

from userservice.domain import password_policy
from userservice.domain.password_policy import (
    COMMON_PASSWORDS,
    check_new_password,
    check_not_personal,
)
from userservice.passwords import strength


def test_any_unicode_is_allowed_and_normalised_with_nfkc() -> None:
    assert check_new_password("ｃｏｒｒｅｃｔ ｈｏｒｓｅ ｂａｔｔｅｒｙ") == "correct horse battery"
    assert check_new_password("ﬁve ﬁne ﬁgs and a ﬁsh") == "five fine figs and a fish"  # ligatures
    assert check_new_password("cafe\u0301 au lait, s'il vous pla\u00eet") == "café au lait, s'il vous plaît"
    assert check_new_password("馬 ステープル 電池 正しい") == "馬 ステープル 電池 正しい"


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short", "must be 12 to 128"),
        ("x" * 129, "must be 12 to 128"),
        ("Ｘ" * 11, "must be 12 to 128"),  # counted after normalising
        (" " * 12, "only whitespace"),
        ("qwerty123456", "most commonly used"),
        ("QWERTY123456", "most commonly used"),  # the list is compared case-insensitively
        ("ｑｗｅｒｔｙ１２３４５６", "most commonly used"),  # and after NFKC
    ],
)
def test_each_refusal_names_its_rule_and_never_echoes_the_password(password: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule) as info:
        check_new_password(password)
    assert not password.strip() or password not in str(info.value)


def test_the_common_list_comes_from_the_package() -> None:
    assert len(COMMON_PASSWORDS) >= 30_000 and "password" in COMMON_PASSWORDS


def test_the_users_own_identifiers_are_refused() -> None:
    with pytest.raises(ValueError, match="nickname") as info:
        check_not_personal("my name is AdaLovelace!!", "someone@example.com", "adalovelace")
    assert "AdaLovelace" not in str(info.value)
    with pytest.raises(ValueError, match="email"):
        check_not_personal("ada.l@home and away", "Ada.L@example.com", "ada99")
    check_not_personal("abc is a fine start for a passphrase", "abc@example.com", "abc")  # too short to count


@pytest.mark.parametrize(
    "password",
    [
        "123456789012",
        "iloveyou1234",
        "qwertyuiopas",
        "aaaaaaaaaaaa",
        "abcdefghijkl",
        "a" * 128,
    ],
)
def test_passwords_the_estimator_guesses_are_refused_though_not_on_the_list(password: str) -> None:
    assert password.casefold() not in COMMON_PASSWORDS
    with pytest.raises(ValueError, match="too easy to guess") as info:
        password_policy.check_score(strength.score(password))
    assert password not in str(info.value)


def test_the_users_own_names_count_as_known_words() -> None:
    password_policy.check_score(strength.score("amazing-grace2024"))
    with pytest.raises(ValueError, match="too easy to guess"):
        password_policy.check_score(
            strength.score("amazing-grace2024", ("Grace", "Hopper", "amazing-grace", "grace@example.com"))
        )


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "Tr0ub4dor&3 is not it", "set by an administrator"]
)
def test_passphrases_pass(password: str) -> None:
    password_policy.check_score(strength.score(password))
