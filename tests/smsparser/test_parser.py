"""JS semantics the parser reproduces, checked against values recorded from node (moment 2.30.1,
V8, bikram-sambat 1.8.1, lodash templates) -- beyond what the conformance vectors cover."""

from __future__ import annotations

import math
from typing import Any

import pytest

from smsbridge.errors import FormError
from smsbridge.smsparser.bikram import bs_to_epoch
from smsbridge.smsparser.js.dates import parse_date_string
from smsbridge.smsparser.js.moment import moment_ms
from smsbridge.smsparser.js.numbers import UNDEFINED, number_to_string, parse_num, to_number
from smsbridge.smsparser.parser import parse, parse_sms
from smsbridge.smsparser.translate import translate

NAN = float("nan")


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) if isinstance(b, float) and math.isnan(b) else a == b


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2012-03-12", 1331510400000),
        ("20120312", 1331510400000),
        ("2012-W10", 1330905600000),
        ("2012-072", 1331510400000),
        ("2012-03-12T24:00", 1331596800000),
        ("2012-03-12T10:00:00,1234", 1331546400123),
        ("2012-03-12T10:00+05:30", 1331526600000),
        ("+002012-235", -61515849600000),
        ("-000001-11-26", -62170329600000),
        ("-000001W187", -62156246400000),
        ("2012-W53", NAN),
        ("2015-W53", 1451260800000),
        ("2012-02-30", NAN),
        ("201203121000", NAN),
        ("/Date(123)", 123),
        ("12/03/2012", 1354492800000),
        ("March 12, 2012", 1331510400000),
        ("0", 946684800000),
        ("24", NAN),
    ],
)
def test_moment_parses_like_moment(text: str, expected: float) -> None:
    assert same(moment_ms(text, "UTC"), expected)


def test_moment_uses_local_mean_time_before_year_1() -> None:
    assert moment_ms("-000001", "America/New_York") == -62167201438000


@pytest.mark.parametrize(
    ("items", "expected"),
    [([399, "09"], -49552387200000), ([2012, 13], NAN), ([50], -60589296000000),
     ([" 12abc", 3], -61780665600000), ([2012, 1, 1, 24], 1328140800000)],
)  # fmt: skip
def test_moment_reads_arrays_as_date_parts(items: list[object], expected: float) -> None:
    assert same(moment_ms(items, "UTC"), expected)


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2012-3-12", "UTC", 1331510400000),
        ("2012-03-12", "America/New_York", 1331510400000),  # ES5 date-only: UTC
        ("2012-3-12", "America/New_York", 1331524800000),  # legacy: local
        ("0000010721", "UTC", 276154876800000),  # leading zeros are not significant
        ("-000001-", "UTC", -62198755200000),
        (" -0000011203.-000001", "UTC", 291365337600000),
        ("-000001", "America/New_York", -62198755200000),  # ES5 date-only form: UTC
        ("2012/8\u2028/30 22:\u202919Z", "UTC", NAN),  # U+2028 is not white space here
        ("12 March 2012 10:00 pm", "UTC", 1331589600000),
    ],
)
def test_js_date_parses_like_v8(text: str, tz: str, expected: float) -> None:
    assert same(parse_date_string(text, tz), expected)


def test_bikram_sambat_checks_from_the_converter() -> None:
    assert bs_to_epoch("2068", "11", "29") == 1331510400000
    assert bs_to_epoch("2090", "01", "01") == 1997049600000
    assert bs_to_epoch("2068", "x", "5") == 1303084800000  # non-numeric month acts as 1
    assert bs_to_epoch("2068", "", "5") is None
    assert math.isnan(bs_to_epoch("2068", UNDEFINED, UNDEFINED))
    assert bs_to_epoch("2068", "11", "29", "Asia/Kathmandu") == 1331510400000 - 20_700_000


def test_js_numbers() -> None:
    assert to_number("0x1A") == 26 and to_number(" 1e3 ") == 1000 and to_number("") == 0
    assert math.isnan(to_number("1,5")) and math.isnan(to_number("١٢"))
    assert parse_num("Infinity") is None and parse_num("  ") == 0
    assert number_to_string(12345678901234567890.0) == "12345678901234567000"
    assert number_to_string(1.5e-7) == "1.5e-7" and number_to_string(1e21) == "1e+21"


def test_translate_runs_labels_through_lodash_templates() -> None:
    assert translate("{{ 'Q' }}", None, None, None) == "Q"
    assert translate("{{u}}", None, None, None) == "{{u}}"  # a throwing template is kept
    assert translate("toString", "en", {"en": {}}, None) == "function toString() { [native code] }"
    assert translate("toString", "en", None, None) == "toString"
    assert translate({"translations": [{"locale": "sw", "content": "J"}]}, "fr", None, None) == "J"


def test_a_primitive_field_definition_gets_no_value_in_muvuku() -> None:
    form = {"meta": {"code": "YYYX"}, "fields": {"facility_required": True, "x": {}}}
    assert parse(form, {"message": "1!Y!n#m"}) == {"facility_required": UNDEFINED, "x": "m"}
    assert parse({"fields": {"a": False}}, {"message": "1!Y!n"}) == {
        "a": UNDEFINED,
        "_extra_fields": True,
    }


def test_surplus_muvuku_values_are_flagged_in_the_report() -> None:
    report = parse_sms("1!R!x#", {"R": {"fields": {"name": {"type": "string"}}}})
    assert report.fields == {"name": "x", "_extra_fields": True}  # type: ignore[union-attr]


def test_form_definitions_are_read_as_js_objects() -> None:
    # `fields` as an array or a string has index keys; `Object.keys` of a number is []
    array_form = {"fields": [{"type": "string"}, {"type": "integer"}]}
    assert parse(array_form, {"message": "1!x!d"}) == {"0": "d", "1": UNDEFINED}
    assert parse({"fields": "ab"}, {"message": "x y"}) == {"0": "x", "1": "y"}
    assert parse({"fields": 5}, {"message": "x y"}) == {}


def test_a_non_string_field_type_does_not_break_bs_aggregation() -> None:
    # CHT switches on `field.type`: a type that is a list or an object matches no case
    form = {
        "meta": {"code": "X"},
        "fields": {
            "a": {"type": ["weird"]},
            "y": {"type": "bsYear"},
            "d": {"type": "bsAggreDate"},
        },
    }
    expected = {"a": "1", "y": "2070", "d": bs_to_epoch("2070", 1, 1, "UTC")}
    assert parse(form, {"message": "X 1 2070"}) == expected
    report = parse_sms("X 1 2070", {"X": form})
    assert not isinstance(report, FormError)
    assert report.fields == {"a": "1", "y": "2070", "d": 1365897600000}  # 2070-01-01 BS


def test_a_form_code_with_zero_width_characters_finds_its_form() -> None:
    # createByForm retries the lookup once with zero-width characters removed
    form = {"meta": {"code": "AB"}, "fields": {"n": {"type": "integer"}}}
    report = parse_sms("A\u200bB\ufeff 7", {"AB": form})
    assert not isinstance(report, FormError)
    assert (report.code, report.fields) == ("AB", {"n": 7})
    assert isinstance(parse_sms("A\u200bC 7", {"AB": form}), FormError)


def test_a_list_that_is_not_a_list_is_a_form_error() -> None:
    form = {"meta": {"code": "M"}, "fields": {"a": {"type": "integer", "list": "abc"}}}
    result = parse_sms("M 1", {"M": form})
    assert isinstance(result, FormError)
    assert "supervisor" in result.detail


def test_object_prototype_keys_behave_as_in_js() -> None:
    form: dict[str, Any] = {"fields": {"valueOf": {"type": "integer", "labels": {"tiny": "V"}}}}
    assert parse(form, {"message": "#"}) == {"valueOf": None}  # reads the inherited function
    form = {"fields": {"__proto__": {"type": "string", "labels": {"tiny": "P"}}}}
    assert parse_sms("e", {"E": form}).fields == {}  # type: ignore[union-attr]
    form = {
        "meta": {"code": "PK"},
        "fields": {
            "constructor": {"type": "string", "labels": {"tiny": "constructor"}},
            "length": {"type": "integer", "labels": {"tiny": "LEN"}},
        },
    }
    report = parse_sms("PK __proto__ a#constructor bar", {"PK": form})
    assert report.fields == {"constructor": [None, "bar"], "length": 2}  # type: ignore[union-attr]
