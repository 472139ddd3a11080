"""Minimal inputs on which the differential tester (CHT's own parser run
under node) once disagreed with us. Each case is a `smsbridge parse --jsonl`
input line and the output CHT gives for it (`raw` debugging info left out)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from smsbridge.cli.parse import parse_line, run_jsonl
from smsbridge.errors import FormError
from smsbridge.smsparser.fields import ParseOptions
from smsbridge.smsparser.forms import Forms
from smsbridge.smsparser.parser import parse_sms

OPTIONS = ParseOptions()


def ours(line: dict[str, Any]) -> dict[str, Any]:
    return parse_line(json.dumps(line), None, OPTIONS)


def run_stream(lines: list[str]) -> list[dict[str, Any]]:
    """run_jsonl writing to a strict UTF-8 byte stream, as stdout is."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
    run_jsonl(lines, out, None, OPTIONS)
    out.flush()
    return [json.loads(text) for text in raw.getvalue().decode("utf-8").splitlines()]


# --- ours-crash-or-timeout (UnicodeEncodeError) ---------------------------------------------

SURROGATE_LINE = (
    '{"message": "\\ud800A x", "form_def": {"meta": {"code": "A"}, "fields": {"a": {"type": '
    '"string", "labels": {"tiny": "N"}}, "b": {"type": "integer", "labels": {"tiny": "B"}}}}}'
)
STRING_FORM = {"meta": {"code": "A"}, "fields": {"a": {"type": "string"}}}
PLAIN_LINE = json.dumps({"message": "x", "form_def": STRING_FORM})


def test_lone_surrogate_line_is_written_and_the_stream_goes_on() -> None:
    results = run_stream([SURROGATE_LINE, PLAIN_LINE])
    assert results == [
        {
            "code": "\ud800A",
            "form": "A",
            "format": "compact",
            "fields": {"a": "\ud800A", "b": None},
        },
        {"code": "X", "form": "A", "format": "compact", "fields": {"a": "x"}},
    ]


def test_non_ascii_output_stays_readable() -> None:
    line = json.dumps({"message": "é x", "form_def": STRING_FORM}, ensure_ascii=False)
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    run_jsonl([line], out, None, OPTIONS)
    out.flush()
    assert '"É"' in raw.getvalue().decode("utf-8")


def test_parse_sms_with_lone_surrogate_does_not_raise() -> None:
    forms = Forms({"A": STRING_FORM})
    result = parse_sms("\ud800A x", forms, OPTIONS)
    assert isinstance(result, FormError)  # code "\ud800A" is not a form
    result = parse_sms("A \ud800 x", forms, OPTIONS)
    assert not isinstance(result, FormError)
    assert result.fields == {"a": "\ud800 x"}


def test_a_line_that_breaks_the_parser_is_answered_not_fatal() -> None:
    bad_form = {"meta": {"code": "A"}, "fields": {"a": {"type": "integer", "list": "abc"}}}
    bad = json.dumps({"message": "x", "form_def": bad_form})
    results = run_stream([bad, "not json", PLAIN_LINE])
    assert len(results) == 3
    assert "error" in results[0] and "error" in results[1]
    assert results[2]["fields"] == {"a": "x"}


# --- compact-greedy-pass-no-token-crash ------------------------------------------------------


def test_compact_greedy_pass_finding_nothing_is_an_error() -> None:
    # CHT: TypeError: Cannot read properties of null (reading 'length')
    line = {
        "message": '"\n""\n"',
        "form_def": {"meta": {"code": "C"}, "fields": {"a": {"type": "string"}}},
    }
    result = ours(line)
    assert result["code"] == '"'
    assert "error" in result and "fields" not in result


# --- phone-cht-invalid-ours-e164 (phonenumbers pinned to CHT's metadata) --------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("J1!F!V#+2550709899999", "+2550709899999"),  # invalid for CHT: kept as sent
        ("144683038", "144683038"),  # valid for phonenumbers 9.0.43, not for CHT
        ("0712345678", "+254712345678"),
    ],
)
def test_phone_validity_matches_cht_metadata(message: str, expected: str) -> None:
    line = {
        "message": message,
        "settings": {"default_country_code": 254},
        "form_def": {
            "meta": {"code": "F"},
            "fields": {"v": {"type": "phone_number", "labels": {"tiny": "V"}}},
        },
    }
    assert ours(line)["fields"] == {"v": expected}


# --- date-moment-rfc2822 (moment's overflow and weekday-mismatch checks) ---------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("38 May 18 15:46 +0000", None),  # day overflow
        ("Thu, 12 Nov 71 17:08 GMT", None),  # 12 Nov 1971 was a Friday
        ("Fri, 12 Nov 71 17:08 GMT", 58813680000),
        ("Mon, 16 Jan 2026 10:00 +0100", None),
        ("Mon, 12 Mar 2012 24:00 +0000", None),  # hour 24 overflows in this path
        ("12 Mar 2012 23:60 +0000", None),
        ("12 Mar 2012 23:59:60 +0000", None),
        ("29 Feb 2013 10:00 +0000", None),
        ("0 Feb 2012 10:00 +0000", None),
        ("Sun, 29 Feb 0049 10:00 +0000", None),
        ("Tue, 29 Feb 2000 10:00 EST", 951836400000),
        ("Mon, 12 Mar 2012 10:00 +0000", 1331546400000),
    ],
)
def test_rfc2822_dates_as_moment_checks_them(text: str, expected: int | None) -> None:
    line = {
        "message": f"1!F!{text}",
        "form_def": {"meta": {"code": "F"}, "fields": {"v": {"type": "date"}}},
    }
    assert ours(line)["fields"] == {"v": expected}


# --- fields:textforms:string+list (JSON numbers are doubles in CHT) --------------------------


@pytest.mark.parametrize(
    ("message", "key", "expected"),
    [
        ("I9007199254740993", 9007199254740993, "k"),  # both are the double 2**53
        ("I 123456789012345678901", 123456789012345680000, "c"),
        ("I 5", 5, "k"),
        ("I 6", 5, 6),
    ],
)
def test_string_list_keys_compare_as_doubles(message: str, key: int, expected: Any) -> None:
    field = {
        "type": "string",
        "list": [[key, "k" if key < 10**17 else "c"]],
        "labels": {"tiny": "I"},
    }
    line = {"message": message, "form_def": {"meta": {"code": "R"}, "fields": {"v": field}}}
    assert ours(line)["fields"] == {"v": expected}


# --- js-regex-ignorecase (JS non-unicode /i does not fold ſ, K, ı, İ, ß, ẞ) -------------------


def _form(code: str, tiny: str | None) -> dict[str, Any]:
    field: dict[str, Any] = {"type": "string"} if tiny is None else {"type": "integer"}
    if tiny is not None:
        field["labels"] = {"tiny": tiny}
    return {"meta": {"code": code}, "fields": {"name": field}}


N = None
C, T, J = "compact", "textforms", "javarosa"


@pytest.mark.parametrize(
    ("message", "form_code", "tiny", "code", "fmt", "fields"),
    [
        # form-code stripping
        ("ſx", "S", N, "SX", C, {"name": "ſx"}),
        ("I x", "ı", N, "I", C, {"name": "I x"}),
        ("s x", "S", N, "S", C, {"name": "x"}),
        # compact detection (labels)
        ("ſ5", "R", "s", "S5", C, {"name": N}),
        ("R ſ 5", "R", "s", "R", C, {"name": N}),
        ("R S 5", "R", "s", "R", T, {"name": 5}),
        ("R \u212a 5", "R", "k", "R", C, {"name": N}),
        ("R İ 5", "R", "i", "R", C, {"name": N}),
        ("R ẞ 5", "R", "ß", "R", C, {"name": N}),
        ("R ſ 5", "R", "\\w", "R", C, {"name": N}),
        ("R ſ 5", "R", "[s]", "R", C, {"name": N}),
        ("K x", "S", "[a-z]", "K", T, {}),
        ("S K 5", "S", "[a-z]", "S", T, {}),
        ("R i 5", "R", "[İ]", "R", C, {"name": N}),
        ("i x", "S", "[IİK]", "I", T, {}),
        ("ſ ß 5", "ſ", "[Ɤ-]", "S", C, {"name": N}),
        ("J1!R!k#5", "R", "[k]", "R", J, {"name": 5}),
        # javarosa labels
        ("J1!R!ſ#", "R", "s", "R", J, {}),
        ("J1!R!S#5", "R", "s", "R", J, {"name": 5}),
    ],
)
def test_case_insensitive_matching_is_javascripts(
    message: str, form_code: str, tiny: str | None, code: str, fmt: str, fields: Any
) -> None:
    line = {"message": message, "form_def": _form(form_code, tiny)}
    assert ours(line) == {"code": code, "form": form_code, "format": fmt, "fields": fields}


# --- date-js-date-fallback: V8's date scanner stops at U+0000 --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6\u0000", 991353600000), ("\u00006", None), ("X\u00004", None), ("\u00006(abc)", None)],
)
def test_js_date_fallback_stops_at_nul(text: str, expected: int | None) -> None:
    line = {
        "message": f"1!F!{text}",
        "form_def": {"meta": {"code": "F"}, "fields": {"v": {"type": "date"}}},
    }
    assert ours(line)["fields"] == {"v": expected}


# --- code: JS toUpperCase/toLowerCase use Unicode 17 case mappings ---------------------------


@pytest.mark.parametrize(
    ("message", "form_code", "tiny", "code", "fmt", "fields"),
    [
        ("\ua7cf", "R", "n", "\ua7ce", C, {"name": "\ua7cf"}),
        ("A\ua7d5T x", "R", "n", "A\ua7d4T", C, {"name": "A\ua7d5T x"}),
        ("\ua7cb 5", "\u0264", None, "\ua7cb", C, {"name": "5"}),
    ],
)
def test_case_mappings_newer_than_python(
    message: str, form_code: str, tiny: str | None, code: str, fmt: str, fields: Any
) -> None:
    form = _form(form_code, tiny)
    form["fields"]["name"]["type"] = "string"
    line = {"message": message, "form_def": form}
    assert ours(line) == {"code": code, "form": form_code, "format": fmt, "fields": fields}


def test_label_matching_knows_newer_case_pairs() -> None:
    # label `ɤ` (U+0264) matches `Ɤ` (U+A7CB) under JS /i, so not compact (CHT's output)
    line = {"message": "R \ua7cb 5", "form_def": _form("R", "\u0264")}
    assert ours(line) == {"code": "R", "form": "R", "format": T, "fields": {}}


# --- locale-test-pseudo-translation: CHT's `test` locale wraps the English text in dashes ----


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ({"en": "One"}, "-One-"),
        ({"en": "One", "test": "T"}, "-One-"),  # the `test` key is not looked up
        ({"fr": "F"}, "-F-"),
        ({}, "-undefined-"),
        ({"en": ""}, "--"),
        ({"translations": [{"locale": "test", "content": "TT"}]}, "-TT-"),
        ({"default": "D", "en": "E"}, "-E-"),
        (["x"], "-x-"),
        ({"en": 5}, "-5-"),
        ("plain", "plain"),  # a plain key is looked up in the `test` table, no dashes
    ],
)
def test_settings_locale_test_pseudo_translates_list_labels(label: Any, expected: str) -> None:
    field = {"type": "integer", "list": [[5, label]]}
    line = {
        "message": "R 5",
        "settings": {"locale": "test"},
        "form_def": {"meta": {"code": "R"}, "fields": {"name": field}},
    }
    assert ours(line)["fields"] == {"name": expected}


def test_doc_locale_test_pseudo_translates_tiny_labels() -> None:
    # tiny {en: N} is `-N-` for locale `test`, so `N` is not a label: compact
    field = {"type": "string", "labels": {"tiny": {"en": "N"}}}
    form = {"meta": {"code": "R"}, "fields": {"name": field}}
    assert ours({"message": "N", "locale": "test", "form_def": form}) == {
        "code": "N",
        "form": "R",
        "format": C,
        "fields": {"name": "N"},
    }
    # (the dashes after the code are stripped with it: CHT's own output)
    line = {"message": "R -N- jane", "locale": "test", "form_def": form}
    assert ours(line)["fields"] == {"name": "N- jane"}


# --- odd-locale-value: a number or boolean locale is a JS property key ----------------------


@pytest.mark.parametrize(
    ("extra", "label_key", "expected"),
    [
        ({"settings": {"locale": 5}}, "5", "F"),
        ({"settings": {"locale": 1.5}}, "1.5", "F"),
        ({"settings": {"locale": False}}, "false", "E"),  # falsy: falls back to en
        ({"locale": 0, "settings": {"locale": True}}, "true", "F"),
    ],
)
def test_non_string_locale_is_a_property_key(
    extra: dict[str, Any], label_key: str, expected: str
) -> None:
    field = {"type": "integer", "list": [[5, {"en": "E", label_key: "F"}]]}
    line = {"message": "R 5", "form_def": {"meta": {"code": "R"}, "fields": {"name": field}}}
    assert ours({**line, **extra})["fields"] == {"name": expected}


@pytest.mark.parametrize("locale", [True, 5])
def test_non_string_doc_locale_selects_tiny_label(locale: Any) -> None:
    field = {"type": "string", "labels": {"tiny": {"en": "n", str(locale).lower(): "j"}}}
    form = {"meta": {"code": "R"}, "fields": {"name": field}}
    line = {"message": "R j jane", "locale": locale, "form_def": form}
    assert ours(line) == {"code": "R", "form": "R", "format": T, "fields": {"name": "jane"}}
