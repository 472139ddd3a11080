"""Whatever a phone sends, the parser answers with a Report or a FormError: never an exception,
never anything else (issue 2, conformance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsbridge.errors import FormError
from smsbridge.smsparser.parser import JsCrash, ParseOptions, Report, parse, parse_sms

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "smsparser.json"


def _forms() -> list[tuple[str, Any]]:
    seen: dict[str, Any] = {}
    for v in json.loads(VECTORS.read_text(encoding="utf-8")):
        for definition in [v.get("form_def"), *((v.get("forms") or {}).values())]:
            if isinstance(definition, dict):
                seen.setdefault(json.dumps(definition, sort_keys=True), definition)
    out = []
    for definition in seen.values():
        meta = definition.get("meta") if isinstance(definition.get("meta"), dict) else {}
        code = meta.get("code")
        out.append((code.upper() if isinstance(code, str) and code else "X", definition))
    return out


FORMS = _forms()
OPTIONS = ParseOptions(default_country_code=977, settings_locale="en", timezone="Africa/Nairobi")
ANY_TEXT = st.text(alphabet=st.characters(codec=None), min_size=0, max_size=2000)


def test_the_vectors_hold_many_forms() -> None:
    assert len(FORMS) >= 30


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT, st.sampled_from(["", "{code} ", "1!{code}!", "J1!{code}!", "{code}#"]))
def test_any_text_gives_a_report_or_a_form_error(text: str, prefix: str) -> None:
    for code, definition in FORMS:
        message = prefix.format(code=code) + text
        result = parse_sms(message, {code: definition}, OPTIONS)
        assert isinstance(result, Report | FormError)
        if isinstance(result, FormError):
            assert result.code and result.detail
        else:
            json.dumps(result.fields, allow_nan=False)
        try:
            assert isinstance(parse(definition, {"message": message}, OPTIONS), dict)
        except JsCrash as exc:
            assert exc.detail
