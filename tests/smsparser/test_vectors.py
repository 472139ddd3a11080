"""CHT's recorded behaviour (tests/vectors/smsparser.json): every
parse, parseArray, getFormCode, isMuvukuFormat, isCompact and parseField vector, one test each,
compared per vectors/README.md. (createByForm/createRecordByJSON: tests/test_vectors_records.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from smsbridge.errors import FormError
from smsbridge.smsparser.parser import (
    UNDEFINED,
    JsCrash,
    ParseOptions,
    get_form_code,
    is_compact,
    is_muvuku_format,
    parse,
    parse_array,
    parse_field,
    parse_sms,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "vectors" / "smsparser.json"
COPY = ROOT / "tests" / "vectors" / "smsparser.json"
MINE = {"parse", "parseArray", "getFormCode", "isMuvukuFormat", "isCompact", "parseField"}


def load_vectors() -> list[dict[str, Any]]:
    source = SHARED if SHARED.is_file() else COPY
    return json.loads(source.read_text(encoding="utf-8"))


VECTORS = [v for v in load_vectors() if v["function"] in MINE]


def from_json(value: Any) -> Any:
    """Vector sentinels -> our JS model ($undefined -> UNDEFINED, $nan -> nan)."""
    if isinstance(value, dict):
        if value == {"$undefined": True}:
            return UNDEFINED
        if value == {"$nan": True}:
            return math.nan
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def same(actual: Any, expected: Any, subset: bool = False, path: str = "$") -> None:
    """Deep equality with key presence (a present-but-undefined key must be present), NaN equal
    to NaN, bools distinct from numbers, 24 == 24.0."""
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), f"{path}: {actual!r} is not NaN"
    elif isinstance(expected, bool) or isinstance(actual, bool):
        assert actual is expected, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        if not subset:
            assert set(actual) == set(expected), (
                f"{path}: keys {sorted(actual)} != {sorted(expected)}"
            )
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            same(actual[key], value, subset, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, subset, f"{path}[{i}]")
    elif expected is UNDEFINED:
        assert actual is UNDEFINED, f"{path}: {actual!r} is not undefined"
    else:
        assert type(actual) in (int, float) if type(expected) in (int, float) else True
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def options_for(v: dict[str, Any]) -> ParseOptions:
    settings = v.get("settings") or {}
    return ParseOptions(
        settings_locale=settings.get("locale"),
        default_country_code=settings.get("default_country_code"),
        phone_validation=settings.get("phone_validation"),
        translations=v.get("translations"),
        timezone="UTC",
    )


def doc_for(v: dict[str, Any]) -> dict[str, Any]:
    doc = {"message": v["message"], **(v.get("doc_extra") or {})}
    if "locale" in v:
        doc["locale"] = v["locale"]
    return doc


def run(v: dict[str, Any]) -> Any:
    fn = v["function"]
    opts = options_for(v)
    if fn == "parse":
        return parse(v["form_def"], doc_for(v), opts)
    if fn == "parseArray":
        return parse_array(v["form_def"], doc_for(v), opts)
    if fn == "getFormCode":
        code = get_form_code(v["input"])
        return UNDEFINED if code is None else code
    if fn == "isMuvukuFormat":
        return is_muvuku_format(v["input"])
    if fn == "isCompact":
        return is_compact(v["form_def"], v["message"], v.get("locale"), opts)
    if fn == "parseField":
        i = v["input"]
        return parse_field(i["field"], from_json(i["raw"]), i["key"], opts)
    raise AssertionError(fn)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    if "expected_error" in vector:
        assert vector["expected_error"].startswith(("TypeError", "SyntaxError"))
        with pytest.raises(JsCrash):
            run(vector)
        return
    same(run(vector), from_json(vector["expected"]), subset=vector.get("assert") == "subset")


CRASHES = [v for v in VECTORS if "expected_error" in v]


@pytest.mark.parametrize("vector", CRASHES, ids=[v["id"] for v in CRASHES])
def test_where_cht_crashes_the_bridge_gives_a_form_error(vector: dict[str, Any]) -> None:
    code = (vector["form_def"].get("meta") or {}).get("code", "X")
    result = parse_sms(vector["message"], {code: vector["form_def"]}, options_for(vector))
    assert isinstance(result, FormError)
    assert result.detail and result.code


def test_the_vector_copy_matches_the_shared_vectors() -> None:
    copy = json.loads(COPY.read_text(encoding="utf-8"))
    assert len(copy) == 313
    if SHARED.is_file():
        assert copy == json.loads(SHARED.read_text(encoding="utf-8"))


def test_every_parser_vector_is_run() -> None:
    assert len(VECTORS) == 282
