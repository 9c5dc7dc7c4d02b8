"""Phone numbers, the one reading every part of the engine shares (sans-IO, `phonenumbers`):
`normalize_phone` reads what people and CRMs write as E.164 (leads, DNC, contacts);
`NumberPlan` reads what a carrier sends into E.164 and writes E.164 back its way (DIDs,
caller IDs, numbers dialled out)."""

from __future__ import annotations

from .e164 import E164, PhoneNumberError, normalize_phone
from .plan import OUTBOUND_FORMATS, NumberError, NumberPlan, region_of_country_code

__all__ = [
    "E164",
    "OUTBOUND_FORMATS",
    "NumberError",
    "NumberPlan",
    "PhoneNumberError",
    "normalize_phone",
    "region_of_country_code",
]
