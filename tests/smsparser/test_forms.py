"""Form definitions load from a `forms` object, an app_settings export or a settings doc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smsbridge.errors import ConfigError
from smsbridge.smsparser.forms import Forms, forms_from_settings, load_forms

ANCR = {"meta": {"code": "ANCR"}, "fields": {"name": {"type": "string", "labels": {"tiny": "N"}}}}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "forms.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "data",
    [
        {"ANCR": ANCR},
        {"forms": {"ANCR": ANCR}},
        {"locale": "en", "default_country_code": 254, "forms": {"ANCR": ANCR}},
        {"_id": "settings", "settings": {"forms": {"ANCR": ANCR}}},
    ],
    ids=["forms-object", "forms-key", "app-settings", "settings-doc"],
)
def test_load_forms_accepts_every_shape(tmp_path: Path, data: object) -> None:
    forms = load_forms(write(tmp_path, data))
    assert list(forms) == ["ANCR"]
    assert forms["ANCR"] == ANCR
    assert len(forms) == 1


def test_forms_from_settings_reads_the_forms_key() -> None:
    assert dict(forms_from_settings({"forms": {"ANCR": ANCR}})) == {"ANCR": ANCR}
    assert len(forms_from_settings({})) == 0


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read forms file"):
        load_forms(tmp_path / "nope.json")


def test_invalid_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_forms(path)


def test_a_definition_that_is_not_an_object_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ANCR"):
        load_forms(write(tmp_path, {"forms": {"ANCR": "x"}}))


def test_lowercase_codes_are_reported_unreachable() -> None:
    assert Forms({"ANCR": ANCR, "anc": ANCR}).unreachable() == ["anc"]
