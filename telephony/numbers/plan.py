"""Number rewriting per trunk: what a carrier sends to E.164, and E.164 to what it expects.

Carriers write numbers their own way: Russia's national `8 495 123-45-67` and international
`810 44 ...`, `00 49 ...` in most of Europe, `011` from North America, E.164 without its
plus sign, a technical prefix before every number. Inside the engine every customer number
and every DID is E.164 (`+74951234567`): the journal, the CRM, the screen pop and callback
tasks see one spelling whatever the carrier sent. The numbering plans themselves (trunk and
international prefixes, number lengths per country) come from libphonenumber
(`phonenumbers`), never from tables of our own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import phonenumbers

logger = logging.getLogger(__name__)

__all__ = ["OUTBOUND_FORMATS", "NumberError", "NumberPlan", "region_of_country_code"]

OUTBOUND_FORMATS = ("e164", "e164_no_plus", "national", "international")
"""How numbers are written towards a carrier (R-URI, From, P-Asserted-Identity):
- e164: `+74951234567`;
- e164_no_plus: `74951234567`;
- national: as dialled inside the trunk's country: its own numbers with the trunk prefix
  (`84951234567` in Russia, `030...` in Germany, `2125551234` in the US), foreign ones with
  the country's international prefix (`81044...` from Russia, `0044...` from Germany);
- international: the country's international prefix before every number (`8107495...`);
- international_DIGITS (`international_00`, `international_810`): that prefix instead."""

_INTERNATIONAL = re.compile(r"^international_([0-9]{1,4})$")
_DIGITS = re.compile(r"^[0-9]+$")
_TECH_PREFIX = re.compile(r"^[0-9*#]{1,16}$")
# What people and carriers put between digit groups: removed before parsing.
_SEPARATORS = re.compile(r"[ \-.()/\u00a0]")


class NumberError(ValueError):
    """A text that is no phone number, or no whole one, for this trunk."""


def region_of_country_code(code: str) -> str:
    """The main region of a country calling code ("7" -> "RU", "44" -> "GB"); ValueError for
    a code no country has."""
    region = phonenumbers.region_code_for_country_code(int(code)) if code.isdigit() else "ZZ"
    if region in ("ZZ", "001"):
        raise ValueError(f"no country has the calling code {code!r}")
    return str(region)


@dataclass(frozen=True)
class NumberPlan:
    """How one trunk writes numbers. Checks its fields when built (ValueError)."""

    country: str = "US"
    """ISO 3166 region the carrier's national numbers belong to ("RU", "DE", "GB", "US")."""
    outbound_format: str = "e164"
    """One of OUTBOUND_FORMATS, or international_DIGITS."""
    strip_prefix: str = ""
    """A technical prefix the carrier puts before the numbers it sends: removed when present."""
    dial_prefix: str = ""
    """A technical prefix the carrier wants before the numbers we dial (Request-URI only)."""

    def __post_init__(self) -> None:
        if self.country not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"country must be an ISO 3166 code such as RU or DE, got {self.country!r}"
            )
        if self.outbound_format not in OUTBOUND_FORMATS and not _INTERNATIONAL.match(
            self.outbound_format
        ):
            raise ValueError(
                "outbound_format must be one of "
                + ", ".join(OUTBOUND_FORMATS)
                + f" or international_DIGITS, got {self.outbound_format!r}"
            )
        for name in ("strip_prefix", "dial_prefix"):
            value = getattr(self, name)
            if value and not _TECH_PREFIX.match(value):
                raise ValueError(f"{name} must be up to 16 digits, * or #, got {value!r}")

    # -- from the carrier ---------------------------------------------------------------------

    def to_e164(self, text: str) -> str:
        """A number the carrier sent (a Request-URI or caller ID user part, in any of its
        formats) as E.164. NumberError when it is not a whole phone number. Parameters of a
        telephone-subscriber (`;npdi;rn=...`, `;isub=...`) are not part of the number."""
        raw = text.split(";", 1)[0].strip()
        if self.strip_prefix and raw.startswith(self.strip_prefix):
            raw = raw[len(self.strip_prefix) :]
        raw = _SEPARATORS.sub("", raw)
        plus = raw.startswith("+")
        digits = raw[1:] if plus else raw
        if not _DIGITS.match(digits) or len(digits) > 20:
            raise NumberError(f"{text!r} is not a phone number")
        if plus:
            candidates = [_parse("+" + digits, None)]
        else:
            # As dialled in the trunk's country (national, its international prefix, its own
            # country code without "+"), then as E.164 without the plus, then after "00".
            candidates = [_parse(digits, self.country), _parse("+" + digits, None)]
            if digits.startswith("00"):
                candidates.append(_parse("+" + digits[2:], None))
        parsed = [n for n in candidates if n is not None]
        for number in parsed:
            if phonenumbers.is_valid_number(number):
                return _e164(number)
        for number in parsed:
            # Possible by its length, not in libphonenumber's ranges (a new range, a test
            # number): still a whole number of that country.
            if phonenumbers.is_possible_number_with_reason(number) == _POSSIBLE:
                return _e164(number)
        raise NumberError(f"{text!r} is not a whole phone number (country {self.country})")

    # -- to the carrier -----------------------------------------------------------------------

    def present(self, e164: str) -> str:
        """An E.164 number written in the carrier's outbound format (caller IDs)."""
        number = _parse(e164, None)
        if number is None:
            raise NumberError(f"{e164!r} is not an E.164 number")
        fmt = self.outbound_format
        if fmt == "e164":
            return _e164(number)
        if fmt == "e164_no_plus":
            return _e164(number)[1:]
        if fmt == "national":
            dialled = phonenumbers.format_out_of_country_calling_number(number, self.country)
            return "".join(ch for ch in dialled if ch.isdigit())
        match = _INTERNATIONAL.match(fmt)
        prefix = match.group(1) if match else self._international_prefix()
        return prefix + _e164(number)[1:]

    def dial_string(self, e164: str) -> str:
        """What goes in the Request-URI user part to reach `e164` through the carrier."""
        return self.dial_prefix + self.present(e164)

    def _international_prefix(self) -> str:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(self.country)
        if metadata is None:
            return "00"
        for prefix in (metadata.preferred_international_prefix, metadata.international_prefix):
            digits = (prefix or "").replace("~", "")  # "8~10": wait for the dial tone
            if _DIGITS.match(digits):
                return digits
        return "00"


_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
