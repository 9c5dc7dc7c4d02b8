"""Lead files: encodings, delimiters, bad rows by line, duplicates, extra columns, consent."""

from __future__ import annotations

from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_bridge import normalize_phone
from dialer import LeadFileError, NewLead, merge_leads, read_leads_csv
from dialer.leads import default_normalize

normalize = partial(normalize_phone, default_country_code="44")


def read(text: str | bytes, **kwargs: object) -> object:
    return read_leads_csv(text, normalize=normalize, **kwargs)  # type: ignore[arg-type]


def test_comma_file_with_bom_and_extra_columns() -> None:
    data = "\ufeffPhone,Name,Company,Deal size\n+44 20 7946 0958,Ann,Acme,100\n".encode()
    result = read_leads_csv(data, normalize=normalize)
    assert result.errors == []
    [lead] = result.leads
    assert lead.phone == "+442079460958"
    assert lead.name == "Ann"
    assert lead.tz == "Europe/London"
    assert dict(lead.data) == {"Company": "Acme", "Deal size": "100"}
    assert lead.line == 2


def test_semicolon_file_without_bom_is_sniffed() -> None:
    data = "phone_number;name;city\n020 7946 0958;Bob;London, UK\n+49 30 1234567;Eve;Berlin\n"
    result = read_leads_csv(data.encode(), normalize=normalize)
    assert result.errors == []
    assert [(x.phone, x.name, x.data["city"], x.tz) for x in result.leads] == [
        ("+442079460958", "Bob", "London, UK", "Europe/London"),
        ("+49301234567", "Eve", "Berlin", "Europe/Berlin"),
    ]


def test_comma_file_with_semicolons_in_values() -> None:
    data = 'tel,note\n+442079460958,"a;b;c"\n'
    [lead] = read_leads_csv(data, normalize=normalize).leads
    assert lead.data == {"note": "a;b;c"}


@pytest.mark.parametrize("header", ["PHONE", "Phone Number", "number", "Tel", "phone-number"])
def test_phone_header_variants(header: str) -> None:
    [lead] = read_leads_csv(f"{header}\n+442079460958\n", normalize=normalize).leads
    assert lead.phone == "+442079460958"


def test_bad_rows_are_reported_by_physical_line_and_the_rest_imports() -> None:
    data = (
        "phone,name,tz,note\n"  # 1
        "+442079460958,Ann,,\n"  # 2 good
        ",Nobody,,\n"  # 3 empty phone
        "\n"  # 4 blank: skipped, still counted
        "call me maybe,Junk,,\n"  # 5 junk phone
        '+442079460959,Multi,,"two\nlines"\n'  # 6-7 good, quoted newline
        "+442079460960,Zoned,Mars/Olympus,\n"  # 8 unknown zone
        "+442079460961,Long," + "," + "x" * 5000 + "\n"  # 9 too long
        "+442079460962,Extra,,,surplus\n"  # 10 more fields than the header
        "+1234567890123456789,Huge,,\n"  # 11 too many digits
        "+442079460963,Last,Europe/Paris,\n"  # 12 good
    )
    result = read_leads_csv(data, normalize=normalize)
    assert [x.phone for x in result.leads] == ["+442079460958", "+442079460959", "+442079460963"]
    assert result.leads[1].data == {"note": "two\nlines"}
    assert result.leads[2].tz == "Europe/Paris"
    lines = [line for line, _ in result.errors]
    assert lines == [3, 5, 8, 9, 10, 11]
    reasons = dict(result.errors)
    assert "empty phone" in reasons[3]
    assert "call me maybe" in reasons[5]
    assert "Mars/Olympus" in reasons[8]
    assert "too long" in reasons[9]
    assert "fields" in reasons[10]
    assert "15 digits" in reasons[11]


def test_invalid_utf8_row_is_reported_and_others_import() -> None:
    data = b"phone,name\n+442079460958,Ann\n+442079460959,B\xffb\n+442079460960,Cy\n"
    result = read_leads_csv(data, normalize=normalize)
    assert [x.name for x in result.leads] == ["Ann", "Cy"]
    assert result.errors == [(3, "not valid UTF-8")]


def test_crlf_line_endings_count_lines_right() -> None:
    data = b"phone\r\n+442079460958\r\njunk\r\n"
    result = read_leads_csv(data, normalize=normalize)
    assert len(result.leads) == 1
    assert [line for line, _ in result.errors] == [3]


def test_duplicates_merge_with_later_data_and_are_reported() -> None:
    data = (
        "phone,name,tier,city\n"
        "+442079460958,Ann,gold,\n"  # 2
        "+442079460999,Bob,,\n"  # 3
        "020 7946 0958,,platinum,Leeds\n"  # 4: same number written nationally
        "0044 20 7946 0958,Ann Smith,,\n"  # 5
    )
    result = read_leads_csv(data, normalize=normalize)
    assert [x.phone for x in result.leads] == ["+442079460958", "+442079460999"]
    ann = result.leads[0]
    assert ann.name == "Ann Smith"
    assert ann.data == {"tier": "platinum", "city": "Leeds"}
    assert ann.line == 5
    [dup] = result.duplicates
    assert dup.phone == "+442079460958" and dup.lines == (2, 4, 5)
    assert any(line == 5 and "2, 4" in note for line, note in result.warnings)


def test_consent_and_responsible() -> None:
    data = (
        "phone,consent,responsible\n"
        "+442079460958,yes,101\n"
        "+442079460959,no,\n"
        "+442079460960,,\n"
        "+442079460961,maybe,\n"
        "+442079460962,1,not an extension!\n"
    )
    result = read_leads_csv(data, normalize=normalize)
    assert [(x.consent, x.responsible) for x in result.leads] == [
        (True, "101"),
        (False, None),
        (None, None),
    ]
    assert [line for line, _ in result.errors] == [5, 6]


def test_time_zone_from_column_number_or_campaign_default() -> None:
    data = (
        "phone,timezone\n"
        "+12125550123,\n"  # NANP, New York area code
        "+14155550123,\n"  # San Francisco
        "+19165550123,\n"  # Sacramento: Pacific, not Eastern
        "+19075550123,\n"  # Alaska: two zones, the narrowest window of both
        "+79151234567,\n"  # a Russian mobile: UTC+2..+12, too wide: the campaign's zone
        "+442079460958,Asia/Tokyo\n"  # the column wins
    )
    result = read_leads_csv(data, normalize=normalize, default_tz="Europe/Madrid")
    assert [x.tz for x in result.leads] == [
        "America/New_York",
        "America/Los_Angeles",
        "America/Los_Angeles",
        "America/Adak,America/Anchorage",
        "Europe/Madrid",
        "Asia/Tokyo",
    ]
    assert [line for line, _ in result.warnings] == [6]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ("", 1),
        ("name,city\nAnn,Paris\n", 1),
        ("phone,tel\n+442079460958,+442079460958\n", 1),
        ("phone,,x\n+442079460958,,\n", 1),
    ],
)
def test_unreadable_files_raise(data: str, line: int) -> None:
    with pytest.raises(LeadFileError) as info:
        read_leads_csv(data, normalize=normalize)
    assert info.value.line == line


def test_unknown_default_zone_raises() -> None:
    with pytest.raises(LeadFileError):
        read_leads_csv("phone\n", normalize=normalize, default_tz="Nowhere/Land")


def test_default_normalizer_takes_international_numbers_only() -> None:
    assert default_normalize("+44 (20) 7946-0958") == "+442079460958"
    assert default_normalize("0049 30 1234567") == "+49301234567"
    for junk in ("020 7946 0958", "+44 20 CALL ME", "+0123456789", "+123"):
        with pytest.raises(ValueError):
            default_normalize(junk)
    result = read_leads_csv("phone\n+442079460958\n02079460958\n")
    assert len(result.leads) == 1 and [line for line, _ in result.errors] == [3]


def test_merge_leads_keeps_old_values_the_new_row_leaves_empty() -> None:
    old = NewLead("+442079460958", "Europe/London", "Ann", True, "101", {"a": "1"}, 2)
    new = NewLead("+442079460958", "Europe/London", None, None, None, {"b": "2"}, 7)
    merged = merge_leads(old, new)
    assert (merged.name, merged.consent, merged.responsible, merged.line) == ("Ann", True, "101", 7)
    assert merged.data == {"a": "1", "b": "2"}


_cell = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20
)


@given(rows=st.lists(st.tuples(_cell, _cell), max_size=15), delimiter=st.sampled_from(",;"))
def test_any_file_either_imports_or_reports_every_row(
    rows: list[tuple[str, str]], delimiter: str
) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["phone", "note"])
    writer.writerows(rows)
    result = read_leads_csv(buffer.getvalue().encode(), normalize=normalize)
    non_blank = sum(1 for phone, note in rows if phone.strip() or note.strip())
    merged_away = sum(len(d.lines) - 1 for d in result.duplicates)
    assert len(result.leads) + len(result.errors) + merged_away == non_blank
    assert all(line >= 2 for line, _ in result.errors)
