"""The simulator's records endpoint where a first reading of CHT's records service went wrong:
five classes of input, each with a table of cases sent through `POST /api/v2/records` (JSON) or
`/api/v1/records` (urlencoded) and compared with the document CHT stores.

Each expectation follows from what CHT's records service does (docs/cht-records.md):

- templates: an error's text is `_.template(text)(ctx)` with `{{ }}` interpolation; a name the
  context lacks, or `<% %>` code, makes it throw and the text is stored unchanged;
- absent vs null: `refid` is set to `getRefID(...)`, undefined (so no key) when the field is
  missing, null when it is null;
- `_meta`: only '', null and undefined are empty; `_meta: 0` then fails on its `form`;
- a locale that is not a string: `locale || ...` keeps a number (looked up as its text, then
  English); an object locale becomes the template's context;
- a date field given an object: moment's object input (`{}` is now; no date unit: today).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from smsbridge.chtsim import ChtSim, running_chtsim

GATEWAY = ("gateway", "gw-pass")
NOW = datetime(2024, 3, 15, 13, 45, 30, 250_000, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TIMEZONE = "Africa/Nairobi"  # UTC+3: "today" starts at 21:00 UTC the day before
TODAY_MS = int(datetime(2024, 3, 15, tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000)

FORMS = {
    "TEST": {
        "meta": {"code": "TEST"},
        "fields": {
            "name": {"type": "string", "required": True, "labels": {"tiny": "N"}},
            "age": {"type": "integer", "labels": {"tiny": "A"}},
        },
    },
    "CLINIC": {
        "meta": {"code": "CLINIC"},
        "facility_reference": "clinic",
        "fields": {"clinic": {"type": "string"}, "note": {"type": "string"}},
    },
    "LOC": {
        "meta": {"code": "LOC"},
        "fields": {
            "locale": {"type": "complex"},
            "name": {"type": "string", "required": True},
        },
    },
    "DATED": {"meta": {"code": "DATED"}, "fields": {"when": {"type": "date"}}},
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim = ChtSim(clock=lambda: NOW_MS / 1000, timezone=TIMEZONE)
    with (
        running_chtsim(sim) as url,
        httpx.Client(base_url=url, auth=GATEWAY, headers={"Accept": "application/json"}) as http,
    ):
        yield sim, http


@pytest.fixture
def cht(served: tuple[ChtSim, httpx.Client]) -> tuple[ChtSim, httpx.Client]:
    sim, http = served
    sim.reset()
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.set_settings({"locale": "en", "forms_only_mode": True}, merge=True)
    sim.set_forms(FORMS)
    return sim, http


def post_json(cht: tuple[ChtSim, httpx.Client], body: dict[str, Any]) -> dict[str, Any]:
    sim, http = cht
    answer = http.post("/api/v2/records", json=body)
    assert answer.status_code == 200, answer.text
    return sim.record(answer.json()["id"])


def messages(record: dict[str, Any]) -> dict[str, str]:
    return {e["code"]: e["message"] for e in record["errors"]}


# -- message templates ---------------------------------------------------------------------------

TEMPLATE_CASES = [
    # (translation of the error's code, the record posted, the stored message)
    pytest.param(
        {"sys.missing_fields": "Missing {{fields}} for {{name}}"},
        {"_meta": {"form": "TEST"}},
        {"sys.missing_fields": "Missing {{fields}} for {{name}}"},
        id="a-name-the-context-lacks-keeps-the-template",
    ),
    pytest.param(
        {"sys.missing_fields": "Missing {{ fields }}."},
        {"_meta": {"form": "TEST"}},
        {"sys.missing_fields": "Missing name."},
        id="names-in-the-context-are-filled",
    ),
    pytest.param(
        {"sys.incorrect_type": "{{key}} wants {{expectedType}} ({{ 'quoted' }}, {{7}})"},
        {"_meta": {"form": "TEST"}, "name": "x", "age": "old"},
        {"sys.incorrect_type": "age wants integer (quoted, 7)"},
        id="literals-and-context-names",
    ),
    pytest.param(
        {"sys.missing_fields": "<% not javascript %> {{fields}}"},
        {"_meta": {"form": "TEST"}},
        {"sys.missing_fields": "<% not javascript %> {{fields}}"},
        id="a-code-block-that-does-not-compile-keeps-the-template",
    ),
    pytest.param(
        {"sys.missing_fields": "Missing {{fields.length}} field(s): {{fields}}"},
        {"_meta": {"form": "TEST"}},
        {"sys.missing_fields": "Missing 1 field(s): name"},
        id="the-missing-fields-are-a-list",
    ),
    pytest.param(
        {"sys.missing_fields": "Missing {{fields}}; {{undefinedName.x}}"},
        {"_meta": {"form": "TEST"}},
        {"sys.missing_fields": "Missing {{fields}}; {{undefinedName.x}}"},
        id="a-property-of-a-missing-name-keeps-the-template",
    ),
]


@pytest.mark.parametrize(("translation", "body", "expected"), TEMPLATE_CASES)
def test_message_templates_render_as_lodash_does(
    cht: tuple[ChtSim, httpx.Client],
    translation: dict[str, str],
    body: dict[str, Any],
    expected: dict[str, str],
) -> None:
    cht[0].set_translations({"en": translation})
    assert messages(post_json(cht, body)) == expected


def test_a_form_not_found_fills_its_code_and_an_empty_message_keeps_a_template(
    cht: tuple[ChtSim, httpx.Client],
) -> None:
    sim, http = cht
    sim.set_translations(
        {"en": {"sys.form_not_found": "No form {{form}}", "sys.empty": "Empty {{form}}"}}
    )
    answer = http.post("/api/v1/records", data={"from": "+254700000001", "message": "XYZ 1"})
    assert messages(sim.record(answer.json()["id"])) == {"sys.form_not_found": "No form XYZ"}
    answer = http.post("/api/v1/records", data={"from": "+254700000001", "message": "  "})
    assert messages(sim.record(answer.json()["id"]))["sys.empty"] == "Empty {{form}}"


# -- absent vs null ------------------------------------------------------------------------------

REFID_CASES = [
    pytest.param({"note": "n"}, False, None, id="missing-field-no-refid-key"),
    pytest.param({"clinic": None}, True, None, id="null-field-null-refid"),
    pytest.param({"clinic": "abc"}, True, "ABC", id="a-string-upper-cased"),
    pytest.param({"clinic": 12}, True, 12, id="a-number-as-is"),
    pytest.param({"clinic": ""}, True, "", id="an-empty-string-as-is"),
]


@pytest.mark.parametrize(("fields", "has_refid", "refid"), REFID_CASES)
def test_refid_is_absent_when_the_reference_field_is(
    cht: tuple[ChtSim, httpx.Client], fields: dict[str, Any], has_refid: bool, refid: Any
) -> None:
    record = post_json(cht, {"_meta": {"form": "CLINIC"}, **fields})
    assert ("refid" in record) is has_refid
    assert record.get("refid") == refid


def test_a_falsy_facility_reference_sets_no_refid(cht: tuple[ChtSim, httpx.Client]) -> None:
    sim, _ = cht
    sim.set_forms({"CLINIC": {**FORMS["CLINIC"], "facility_reference": ""}})
    assert "refid" not in post_json(cht, {"_meta": {"form": "CLINIC"}, "clinic": "abc"})


# -- _meta: only '', null and undefined are empty -------------------------------------------------

META_CASES = [
    pytest.param({"_meta": 0}, "Missing required field: form", id="zero"),
    pytest.param({"_meta": False}, "Missing required field: form", id="false"),
    pytest.param({"_meta": []}, "Missing required field: form", id="an-empty-list"),
    pytest.param({"_meta": "TEST"}, "Missing required field: form", id="a-string"),
    pytest.param({"_meta": {}}, "Missing required field: form", id="no-form"),
    pytest.param({"_meta": {"form": ""}}, "Missing required field: form", id="empty-form"),
    pytest.param({"_meta": ""}, "Missing _meta property.", id="empty-string"),
    pytest.param({"_meta": None}, "Missing _meta property.", id="null"),
    pytest.param({"name": "x"}, "Missing _meta property.", id="absent"),
    pytest.param({"_meta": {"form": 0}}, None, id="a-form-that-is-not-a-string-crashes"),
    pytest.param({"_meta": {"form": "nope"}}, "Form not found: NOPE", id="unknown-form"),
]


@pytest.mark.parametrize(("body", "details"), META_CASES)
def test_meta_emptiness_as_chts_records_service(
    cht: tuple[ChtSim, httpx.Client], body: dict[str, Any], details: str | None
) -> None:
    sim, http = cht
    answer = http.post("/api/v2/records", json=body)
    expected: dict[str, Any] = {"code": 500, "error": "Server error"}
    if details is not None:
        expected["details"] = details
    assert (answer.status_code, answer.json()) == (500, expected)
    assert sim.records() == []


# -- a locale that is not a string ---------------------------------------------------------------

LOCALE_CASES = [
    # (settings locale, _meta.locale, the `locale` field, the stored message)
    pytest.param("fr", 5, None, "Missing: name", id="a-number-finds-no-table-english"),
    pytest.param("en", 7, None, "Sieben: name", id="a-number-is-looked-up-as-its-text"),
    pytest.param("fr", 0, None, "Manquant: name", id="zero-is-falsy-the-settings-locale"),
    pytest.param("fr", "sw", None, "Missing: name", id="an-unknown-locale-english"),
    pytest.param("fr", "en", {"a": 1}, "Manquant: {{fields}}", id="an-object-is-the-context"),
    pytest.param("fr", "en", {"fields": "X"}, "Manquant: X", id="the-context-is-the-object"),
    pytest.param("fr", "en", ["a"], "Manquant: {{fields}}", id="a-list-is-an-object-too"),
]


@pytest.mark.parametrize(("settings_locale", "meta_locale", "field", "expected"), LOCALE_CASES)
def test_a_locale_that_is_not_a_string(
    cht: tuple[ChtSim, httpx.Client],
    settings_locale: str,
    meta_locale: Any,
    field: Any,
    expected: str,
) -> None:
    sim, _ = cht
    sim.set_settings({"locale": settings_locale}, merge=True)
    sim.set_translations(
        {
            "en": {"sys.missing_fields": "Missing: {{fields}}"},
            "fr": {"sys.missing_fields": "Manquant: {{fields}}"},
            "7": {"sys.missing_fields": "Sieben: {{fields}}"},
        }
    )
    body: dict[str, Any] = {"_meta": {"form": "LOC", "locale": meta_locale}}
    if field is not None:
        body["locale"] = field
    assert messages(post_json(cht, body)) == {"sys.missing_fields": expected}


# -- a date field given an object ----------------------------------------------------------------

DATE_CASES = [
    pytest.param({}, NOW_MS, id="an-empty-object-is-now"),
    pytest.param([], NOW_MS, id="an-empty-list-is-now"),
    pytest.param({"x": "y"}, TODAY_MS, id="no-date-unit-is-the-start-of-today"),
    pytest.param(
        {"year": 2018, "month": 10, "day": 10},
        int(datetime(2018, 11, 10, tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000),
        id="units-month-from-zero",
    ),
    pytest.param(
        {"Y": 2020, "M": "1", "D": 2, "h": 3},
        int(datetime(2020, 2, 2, 3, tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000),
        id="unit-aliases",
    ),
    pytest.param(
        {"month": 0},
        int(datetime(2024, 1, 1, tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000),
        id="a-month-only-is-this-year",
    ),
    pytest.param(
        {"hour": 5},
        int(datetime(2024, 3, 15, 5, tzinfo=ZoneInfo(TIMEZONE)).timestamp() * 1000),
        id="a-time-only-is-today",
    ),
    pytest.param({"year": "abc"}, None, id="an-unreadable-year-is-invalid"),
    pytest.param({"month": 12}, None, id="a-month-out-of-range-is-invalid"),
]


@pytest.mark.parametrize(("value", "expected"), DATE_CASES)
def test_a_date_field_given_an_object(
    cht: tuple[ChtSim, httpx.Client], value: Any, expected: int | None
) -> None:
    record = post_json(cht, {"_meta": {"form": "DATED"}, "when": value})
    assert record["fields"]["when"] == expected
