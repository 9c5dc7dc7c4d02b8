"""Phone numbers to E.164 (+ country code + national number, at most 15 digits): the one
reading of numbers every part of the engine shares (caller IDs, DIDs, leads, CRM contacts).

Accepts what people and carriers write: `+44 20 7946 0958`, `0044 (20) 7946-0958`,
`tel:+1-201-555-0123`, and national numbers (`020 7946 0958`, `8 915 123-45-67`,
`06 30 123 4567`) completed with a default country code. National numbers go through
libphonenumber (`phonenumbers`), which knows each country's trunk prefix and number lengths;
what it finds impossible falls back to the generic rules below (trunk prefix "0", NANP and +7
lengths), which also give the error messages.
"""

from __future__ import annotations

import logging
import re

import phonenumbers

logger = logging.getLogger(__name__)


class PhoneNumberError(ValueError):
    """Text that cannot be read as a phone number; the message says what is wrong."""


# E.164: "+" then a country code that never starts with 0, at most 15 digits in all; the shortest
# numbers in service (small islands) have 7.
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_COUNTRY_CODE = re.compile(r"^\+?([1-9][0-9]{0,2})$")
# Separators people put between digit groups; "+" is handled on its own (first place only).
_WRITTEN = re.compile(r"^[0-9 ()\-./\u00a0]+$")

# Dialled before a national number inside the country; "0" unless listed. Italy and a few others
# keep their leading 0 as part of the number.
_TRUNK_PREFIX = {"1": "1", "7": "8", "39": "", "378": "", "379": ""}
# Zones whose national numbers all have one length: lets us tell "national" from "already has
# the country code" when someone writes 7 915 ... or 1 201 ... without a "+".
_NATIONAL_LENGTH = {"1": 10, "7": 10}


def normalize_phone(text: str, default_country_code: str) -> str:
    """`text` as E.164 (`+442079460958`); national numbers get `default_country_code`.

    Raises PhoneNumberError (a ValueError) saying what is wrong with junk.
    """
    match = _COUNTRY_CODE.match(default_country_code.strip())
    if match is None:
        raise PhoneNumberError(f"default country code {default_country_code!r} is not 1-3 digits")
    cc = match.group(1)
    raw = text.strip()
    if raw.lower().startswith("tel:"):
        raw = raw[4:].split(";", 1)[0]
    if not raw:
        raise PhoneNumberError("empty phone number")
    # "+44 (0)20 ...": the bracketed trunk prefix is not dialled from abroad.
    raw = raw.replace("(0)", " ")
    plus = raw.startswith("+")
    body = raw[1:] if plus else raw
    if not _WRITTEN.match(body):
        bad = next((ch for ch in body if not _WRITTEN.match(ch)), "+")
        raise PhoneNumberError(f"phone number {text!r} has an unexpected character {bad!r}")
    digits = "".join(ch for ch in body if ch.isdigit())
    if not digits:
        raise PhoneNumberError(f"phone number {text!r} has no digits")
    if plus:
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    else:
        number = _by_region(digits, cc) or _national(digits, cc, text)
    e164 = "+" + number
    if not E164.match(e164):
        if len(number) > 15:
            raise PhoneNumberError(f"phone number {text!r} is longer than E.164's 15 digits")
        if number.startswith("0"):
            raise PhoneNumberError(f"phone number {text!r} has no country code after the prefix")
        raise PhoneNumberError(f"phone number {text!r} is too short")
    return e164


def _by_region(digits: str, cc: str) -> str | None:
    """A national number by libphonenumber's rules for the country, without "+"; None when it
    does not know the country or finds the number impossible there."""
    region = phonenumbers.region_code_for_country_code(int(cc))
    if region in ("ZZ", "001"):
        return None
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    # Whole numbers only: a local-only form (555-0123 without its area code) is not one.
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def _national(digits: str, cc: str, text: str) -> str:
    trunk = _TRUNK_PREFIX.get(cc, "0")
    length = _NATIONAL_LENGTH.get(cc)
    if length is not None:
        if len(digits) == length:
            return cc + digits
        if len(digits) == length + len(cc) and digits.startswith(cc):
            return digits
        if trunk and len(digits) == length + len(trunk) and digits.startswith(trunk):
            return cc + digits[len(trunk) :]
        raise PhoneNumberError(
            f"phone number {text!r} is not a +{cc} number ({length} digits, national)"
        )
    if trunk and digits.startswith(trunk):
        digits = digits[len(trunk) :]
    return cc + digits
