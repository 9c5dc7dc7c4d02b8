"""Phone numbers to E.164: what people and carriers write, and junk refused with a reason."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_bridge import PhoneNumberError, normalize_phone


@pytest.mark.parametrize(
    ("text", "country", "expected"),
    [
        ("+44 20 7946 0958", "44", "+442079460958"),
        ("+44 (0)20 7946 0958", "1", "+442079460958"),  # the "(0)" is not dialled
        ("0044 (20) 7946-0958", "1", "+442079460958"),
        ("020 7946 0958", "44", "+442079460958"),
        ("020.7946.0958", "+44", "+442079460958"),
        ("030 123456", "49", "+4930123456"),
        ("06 1234 5678", "39", "+390612345678"),  # Italy keeps its leading 0
        ("06 30 123 4567", "36", "+36301234567"),  # Hungary's trunk prefix is 06
        ("912 345 678", "34", "+34912345678"),  # Spain has none
        ("0412 345 678", "61", "+61412345678"),
        ("8 (915) 123-45-67", "7", "+79151234567"),  # Russian trunk prefix 8
        ("7 915 123 45 67", "7", "+79151234567"),  # country code without "+"
        ("915 123-45-67", "7", "+79151234567"),
        ("(201) 555-0123", "1", "+12015550123"),
        ("1-201-555-0123", "1", "+12015550123"),
        ("tel:+1-201-555-0123;ext=7", "1", "+12015550123"),
        ("  +7 915 123 45 67  ", "44", "+79151234567"),
        ("+1\u00a0201\u00a0555\u00a00123", "44", "+12015550123"),
        ("+6834002", "1", "+6834002"),  # shortest numbers in service (Niue)
        ("+123456789012345", "1", "+123456789012345"),  # 15 digits, E.164's maximum
    ],
)
def test_written_forms_normalise(text: str, country: str, expected: str) -> None:
    assert normalize_phone(text, country) == expected


@pytest.mark.parametrize(
    ("text", "country", "reason"),
    [
        ("", "44", "empty"),
        ("   ", "44", "empty"),
        ("tel:", "44", "empty"),
        ("anonymous", "44", "unexpected character 'a'"),
        ("+44 20 7946 O958", "44", "unexpected character 'O'"),
        ("+44 20 7946 0958 ext 12", "44", "unexpected character 'e'"),
        ("12+34567890", "44", "unexpected character '+'"),
        ("++442079460958", "44", "unexpected character '+'"),
        ("--", "44", "no digits"),
        ("101", "44", "too short"),
        ("+1 555", "1", "too short"),
        ("+0 20 7946 0958", "44", "no country code"),
        ("0000 1234 5678", "44", "no country code"),
        ("+1234567890123456", "1", "longer than"),
        ("555-0123", "1", "not a +1 number"),
        ("8 915 123 45 678", "7", "not a +7 number"),
    ],
)
def test_junk_is_refused_with_a_reason(text: str, country: str, reason: str) -> None:
    with pytest.raises(PhoneNumberError, match=re.escape(reason)) as info:
        normalize_phone(text, country)
    assert isinstance(info.value, ValueError)
    assert info.value.status == 400


@pytest.mark.parametrize("country", ["", "0", "1234", "+", "x1", "+044"])
def test_bad_default_country_code(country: str) -> None:
    with pytest.raises(PhoneNumberError, match="default country code"):
        normalize_phone("+442079460958", country)


e164 = st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")
separators = st.sampled_from(["", " ", "-", ".", "\u00a0"])


@given(e164, st.lists(separators, min_size=16, max_size=16), st.booleans(), st.booleans())
def test_any_formatting_of_an_e164_number_gets_it_back(
    number: str, seps: list[str], double_zero: bool, parens: bool
) -> None:
    digits = number[1:]
    written = "".join(d + s for d, s in zip(digits, seps, strict=False))
    if parens and len(digits) > 4:
        written = digits[:2] + " (" + digits[2:4] + ") " + digits[4:]
    written = ("00" if double_zero else "+") + written
    assert normalize_phone(written, "44") == number


@given(st.text(alphabet="0123456789 +-()./abc", max_size=20), st.sampled_from(["1", "7", "44"]))
def test_normalised_or_refused_and_idempotent(text: str, country: str) -> None:
    try:
        result = normalize_phone(text, country)
    except PhoneNumberError:
        return
    assert result.startswith("+") and result[1:].isdigit() and 8 <= len(result) <= 16
    assert normalize_phone(result, country) == result
