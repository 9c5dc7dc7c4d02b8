"""Phone numbers as the CRM bridge reads them: telephony.numbers' E.164, its errors as the
store's InvalidInput (the API answers 400)."""

from __future__ import annotations

from telephony import numbers

from .errors import PhoneNumberError


def normalize_phone(text: str, default_country_code: str) -> str:
    """`text` as E.164 (`+442079460958`); national numbers get `default_country_code`.
    PhoneNumberError saying what is wrong with junk."""
    try:
        return numbers.normalize_phone(text, default_country_code)
    except numbers.PhoneNumberError as exc:
        raise PhoneNumberError(str(exc)) from None


__all__ = ["normalize_phone"]
