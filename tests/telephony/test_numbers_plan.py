"""Number rewriting per trunk (telephony.numbers): what carriers send, read to E.164; E.164 written
the way a carrier expects. Table-driven over Russian, US, German and British numbers."""

from __future__ import annotations

import pytest

from telephony.numbers import NumberError, NumberPlan, region_of_country_code

RU = NumberPlan(country="RU")
US = NumberPlan(country="US")
DE = NumberPlan(country="DE")
GB = NumberPlan(country="GB")


@pytest.mark.parametrize(
    ("plan", "sent", "e164"),
    [
        # Russia: national with the trunk prefix 8, country code without "+", 810 international
        (RU, "84951234567", "+74951234567"),
        (RU, "8 (495) 123-45-67", "+74951234567"),
        (RU, "74951234567", "+74951234567"),
        (RU, "4951234567", "+74951234567"),
        (RU, "+74951234567", "+74951234567"),
        (RU, "89151234567", "+79151234567"),
        (RU, "810442079460958", "+442079460958"),
        (RU, "00442079460958", "+442079460958"),  # 00 from a carrier that does not use 810
        (RU, "442079460958", "+442079460958"),  # E.164 without the plus
        # United States: 10 digits, 1 + 10, 011 international
        (US, "2125551234", "+12125551234"),
        (US, "12125551234", "+12125551234"),
        (US, "1-212-555-1234", "+12125551234"),
        (US, "011442079460958", "+442079460958"),
        (US, "+12025550100", "+12025550100"),
        (US, "2025550100;npdi;rn=+12025559999", "+12025550100"),  # ported: still our number
        # Germany: trunk prefix 0, 00 international
        (DE, "030 1234567", "+49301234567"),
        (DE, "0049301234567", "+49301234567"),
        (DE, "0074951234567", "+74951234567"),
        (DE, "49301234567", "+49301234567"),
        # United Kingdom
        (GB, "020 7946 0958", "+442079460958"),
        (GB, "07700 900123", "+447700900123"),
        (GB, "0012125551234", "+12125551234"),
    ],
)
def test_what_a_carrier_sends_is_read_to_e164(plan: NumberPlan, sent: str, e164: str) -> None:
    assert plan.to_e164(sent) == e164


@pytest.mark.parametrize(
    ("plan", "sent"),
    [
        (US, "15550100"),  # a local number without its area code is no whole number
        (US, "5551234"),
        (RU, "123"),
        (RU, "anonymous"),
        (US, ""),
        (US, "+"),
        (DE, "030-CALL-NOW"),
        (US, "1" * 25),
    ],
)
def test_what_is_no_whole_number_is_refused(plan: NumberPlan, sent: str) -> None:
    with pytest.raises(NumberError):
        plan.to_e164(sent)


def test_a_technical_prefix_is_stripped_only_where_it_is() -> None:
    plan = NumberPlan(country="RU", strip_prefix="999")
    assert plan.to_e164("99984951234567") == "+74951234567"
    assert plan.to_e164("84951234567") == "+74951234567"


@pytest.mark.parametrize(
    ("plan", "e164", "written"),
    [
        (NumberPlan("RU", "e164"), "+74951234567", "+74951234567"),
        (NumberPlan("RU", "e164_no_plus"), "+74951234567", "74951234567"),
        (NumberPlan("RU", "national"), "+74951234567", "84951234567"),
        (NumberPlan("RU", "national"), "+79151234567", "89151234567"),
        (NumberPlan("RU", "national"), "+442079460958", "810442079460958"),
        (NumberPlan("RU", "international"), "+74951234567", "81074951234567"),
        (NumberPlan("RU", "international_00"), "+442079460958", "00442079460958"),
        (NumberPlan("RU", "international_810"), "+12125551234", "81012125551234"),
        (NumberPlan("DE", "national"), "+49301234567", "0301234567"),
        (NumberPlan("DE", "national"), "+12125551234", "0012125551234"),
        (NumberPlan("DE", "international"), "+49301234567", "0049301234567"),
        (NumberPlan("GB", "national"), "+442079460958", "02079460958"),
        (NumberPlan("US", "national"), "+442079460958", "011442079460958"),
        (NumberPlan("US", "e164_no_plus"), "+12125551234", "12125551234"),
    ],
)
def test_e164_is_written_the_carriers_way(plan: NumberPlan, e164: str, written: str) -> None:
    assert plan.present(e164) == written
    # ... and reads back to the same number on that trunk.
    assert plan.to_e164(written) == e164


def test_the_dial_prefix_goes_before_the_request_uri_number_only() -> None:
    plan = NumberPlan("RU", "national", dial_prefix="1010#")
    assert plan.dial_string("+74951234567") == "1010#84951234567"
    assert plan.present("+74951234567") == "84951234567"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"country": "XX"}, "country"),
        ({"country": "ru"}, "country"),
        ({"outbound_format": "local"}, "outbound_format"),
        ({"outbound_format": "international_"}, "outbound_format"),
        ({"strip_prefix": "9a"}, "strip_prefix"),
        ({"dial_prefix": "1" * 17}, "dial_prefix"),
    ],
)
def test_a_bad_plan_says_which_field(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        NumberPlan(**fields)


def test_country_codes_name_their_main_region() -> None:
    assert [region_of_country_code(c) for c in ("1", "7", "44", "49")] == ["US", "RU", "GB", "DE"]
    for bad in ("0", "999", "x"):
        with pytest.raises(ValueError):
            region_of_country_code(bad)
