"""Lead files: CSV (UTF-8 with or without BOM, `;` or `,`) to `NewLead`s.

Every bad row is reported with its physical line in the file (the header is line 1) and the
reason; the good rows are kept. Rows for the same number (after E.164 normalisation) are merged
into one lead, the later row's non-empty values winning, and reported as duplicates.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .compliance import is_known_zone, timezone_for_number
from .errors import LeadFileError
from .model import NewLead

logger = logging.getLogger(__name__)

MAX_FIELD_LENGTH = 1000
"""Longest cell accepted (characters): longer is someone's pasted document, not lead data."""
MAX_NAME_LENGTH = 200

# Header names (lower case, spaces and hyphens as "_") -> the lead field they fill.
_COLUMNS = {
    "phone": "phone",
    "phone_number": "phone",
    "phonenumber": "phone",
    "number": "phone",
    "tel": "phone",
    "telephone": "phone",
    "name": "name",
    "full_name": "name",
    "tz": "tz",
    "timezone": "tz",
    "time_zone": "tz",
    "consent": "consent",
    "responsible": "responsible",
    "manager": "responsible",
}
_YES = {"1", "y", "yes", "true", "t", "да", "+"}
_NO = {"0", "n", "no", "false", "f", "нет", "-"}
_EXTENSION = re.compile(r"^[0-9A-Za-z_.\-]{1,32}$")


@dataclass(frozen=True)
class Duplicate:
    """Rows of one file that were the same number, merged into one lead."""

    phone: str
    """E.164."""
    lines: tuple[int, ...]
    """Every line that had it, first to last."""


@dataclass(frozen=True)
class ImportResult:
    """What a lead file gave."""

    leads: list[NewLead]
    """One per distinct number, in the order numbers first appear."""
    errors: list[tuple[int, str]]
    """(line, reason) for each row not imported."""
    duplicates: list[Duplicate] = field(default_factory=list)
    """Numbers found on several rows (merged)."""
    warnings: list[tuple[int, str]] = field(default_factory=list)
    """(line, note) for rows imported with a guess (time zone from the campaign default...)."""


def _key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def _sniff(first_line: str) -> str:
    """The delimiter: the one that splits the header into a recognised phone column (and more
    cells, when both do)."""
    best, best_score = ",", (-1, -1)
    for delimiter in (";", ",", "\t"):
        cells = next(csv.reader([first_line], delimiter=delimiter), [])
        has_phone = any(_COLUMNS.get(_key(c)) == "phone" for c in cells)
        score = (int(has_phone), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Keep going: rows holding the bad bytes are reported, the rest imports.
        return data.decode("utf-8-sig", errors="replace")


def _consent(text: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(f"consent {text!r} is not yes/no")


def default_normalize(text: str) -> str:
    """A strict fallback normaliser: international numbers only (`+` or `00`, then 7-15
    digits, separators allowed). Sites pass their own national-aware one."""
    raw = text.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        raise ValueError("not an international number (+country code)")
    body = raw[1:]
    if not re.fullmatch(r"[0-9 ()\-./]+", body):
        raise ValueError("unexpected characters")
    digits = re.sub(r"\D", "", body)
    if not 7 <= len(digits) <= 15 or digits.startswith("0"):
        raise ValueError("not 7-15 digits after a country code")
    return "+" + digits


def read_leads_csv(
    data: bytes | str,
    *,
    normalize: Callable[[str], str] = default_normalize,
    default_tz: str = "UTC",
) -> ImportResult:
    """Leads of a CSV file.

    `normalize` turns written numbers into E.164 and raises ValueError on junk (the composition
    root passes `crm_bridge.normalize_phone` with the site's country code); `default_tz` is the
    campaign's zone for numbers whose country is not known. LeadFileError when the file as a
    whole cannot be read (empty, no phone column, repeated column names).
    """
    if not is_known_zone(default_tz):
        raise LeadFileError(f"unknown default time zone {default_tz!r}")
    text = _decode(data)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise LeadFileError("no header row (it must name a phone column)", line=1)
    delimiter = _sniff(lines[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    header = next(reader)
    keys = [_key(h) for h in header]
    fields = [_COLUMNS.get(k) for k in keys]
    if "phone" not in fields:
        raise LeadFileError(
            f"no phone column in the header {header!r} (phone, phone_number, number or tel)",
            line=1,
        )
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        target = fields[i] or k
        if not k:
            raise LeadFileError(f"column {i + 1} of the header has no name", line=1)
        if target in seen:
            raise LeadFileError(f"two columns for {target!r} in the header", line=1)
        seen[target] = i

    merged: dict[str, NewLead] = {}
    line_lists: dict[str, list[int]] = {}
    errors: list[tuple[int, str]] = []
    warnings: list[tuple[int, str]] = []
    previous_end = reader.line_num
    for row in reader:
        line = previous_end + 1
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        try:
            lead, warning = _lead(row, header, fields, line, normalize, default_tz)
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        if warning:
            warnings.append((line, warning))
        old = merged.get(lead.phone)
        if old is None:
            merged[lead.phone] = lead
            line_lists[lead.phone] = [line]
        else:
            merged[lead.phone] = merge_leads(old, lead)
            line_lists[lead.phone].append(line)
    duplicates = [Duplicate(p, tuple(ls)) for p, ls in line_lists.items() if len(ls) > 1]
    for dup in duplicates:
        warnings.append(
            (dup.lines[-1], f"{dup.phone} repeats lines {', '.join(map(str, dup.lines[:-1]))}")
        )
    logger.info(
        "lead file: %d leads, %d bad rows, %d duplicates",
        len(merged),
        len(errors),
        len(duplicates),
    )
    return ImportResult(list(merged.values()), errors, duplicates, sorted(warnings))


def merge_leads(old: NewLead, new: NewLead) -> NewLead:
    """`old` updated by a later row for the same number: its non-empty values win, extra data
    is merged key by key."""
    return dataclasses.replace(
        old,
        name=new.name or old.name,
        tz=new.tz if new.tz != old.tz and new.tz else old.tz,
        consent=old.consent if new.consent is None else new.consent,
        responsible=new.responsible or old.responsible,
        data={**old.data, **new.data},
        line=new.line,
    )


def _lead(
    row: list[str],
    header: list[str],
    fields: list[str | None],
    line: int,
    normalize: Callable[[str], str],
    default_tz: str,
) -> tuple[NewLead, str | None]:
    if len(row) > len(header):
        raise ValueError(f"{len(row)} fields, the header has {len(header)}")
    if any("\ufffd" in cell for cell in row):
        raise ValueError("not valid UTF-8")
    values: dict[str, str] = {}
    data: dict[str, str] = {}
    for i, cell in enumerate(row):
        cell = cell.strip()
        if len(cell) > MAX_FIELD_LENGTH:
            raise ValueError(f"column {header[i].strip()!r} is too long ({len(cell)} characters)")
        target = fields[i]
        if target is None:
            if cell:
                data[header[i].strip()] = cell
        else:
            values[target] = cell
    raw_phone = values.get("phone", "")
    if not raw_phone:
        raise ValueError("empty phone")
    try:
        phone = normalize(raw_phone)
    except ValueError as exc:
        raise ValueError(f"bad phone {raw_phone!r}: {exc}") from None
    name = values.get("name") or None
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name is too long ({len(name)} characters)")
    warning = None
    tz = values.get("tz", "")
    if tz:
        if not is_known_zone(tz):
            raise ValueError(f"unknown time zone {tz!r}")
    else:
        derived = timezone_for_number(phone)
        if derived is None:
            tz = default_tz
            warning = f"time zone of {phone} unknown, using the campaign's {default_tz}"
        else:
            tz = derived
    responsible = values.get("responsible") or None
    if responsible is not None and not _EXTENSION.match(responsible):
        raise ValueError(f"responsible {responsible!r} is not an extension")
    consent = _consent(values.get("consent", ""))
    lead = NewLead(phone, tz, name, consent, responsible, data, line)
    return lead, warning
