"""`smsbridge parse`: one JSON object per message; `--jsonl` for JSON lines in and out."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from smsbridge.cli.main import main

ANCR = {
    "meta": {"code": "ANCR"},
    "fields": {
        "name": {"labels": {"short": "Name", "tiny": "N"}, "type": "string"},
        "lmp": {"labels": {"short": "LMP", "tiny": "LMP"}, "type": "integer"},
        "somedate": {"labels": {"short": "Date", "tiny": "D"}, "type": "date"},
    },
}


@pytest.fixture
def forms_file(tmp_path: Path) -> Path:
    path = tmp_path / "app_settings.json"
    path.write_text(json.dumps({"locale": "en", "forms": {"ANCR": ANCR}}), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[Any], str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_each_message_gives_one_json_object(
    capsys: pytest.CaptureFixture[str], forms_file: Path
) -> None:
    code, out, _ = run(
        capsys,
        ["parse", "--forms", str(forms_file), "ANCR sarah 24 2012-03-12", "J1!ANCR!N#sarah",
         "1!ANCR!sarah#24", "ancr n sarah#lmp 24"],
    )  # fmt: skip
    assert code == 0
    assert out[0] == {
        "code": "ANCR",
        "form": "ANCR",
        "format": "compact",
        "fields": {"name": "sarah", "lmp": 24, "somedate": 1331510400000},
    }
    assert [o["format"] for o in out] == ["compact", "javarosa", "muvuku", "textforms"]
    assert out[1]["fields"] == {"name": "sarah"}
    assert out[3]["fields"] == {"name": "sarah", "lmp": 24}


def test_timezone_and_errors(capsys: pytest.CaptureFixture[str], forms_file: Path) -> None:
    _, out, _ = run(
        capsys,
        ["parse", "--forms", str(forms_file), "--tz", "Africa/Nairobi", "ANCR sarah 24 2012-03-12",
         "HELLO there", 'ANCR ""'],
    )  # fmt: skip
    assert out[0]["fields"]["somedate"] == 1331510400000 - 3 * 3600 * 1000
    assert out[1] == {
        "code": "HELLO",
        "error": {"code": "sys.form_not_found", "detail": "Form 'HELLO' not found."},
    }
    assert out[2]["code"] == "ANCR" and out[2]["error"]["detail"]


def test_jsonl_reads_and_writes_json_lines(
    capsys: pytest.CaptureFixture[str], forms_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"message": "ANCR sarah 24"},
        "this is not json",
        {"message": "X 1!", "forms": {"X": {"fields": {"a": {"type": "string"}}}}},
        {"message": "7", "form_def": {"fields": {"a": {"type": "integer"}}}},
        {"message": "1!ANCR!a#b#c#d", "form_def": ANCR},
        {"message": "NP 20 9841202020", "settings": {"default_country_code": 977},
         "forms": {"NP": {"meta": {"code": "NP"}, "fields": {
             "age": {"type": "integer"}, "phone": {"type": "phone_number"}}}}},
        {"message": "R j jane", "locale": "sw", "translations": {"sw": {"t": "J"}},
         "forms": {"R": {"meta": {"code": "R"}, "fields": {
             "name": {"type": "string", "labels": {"tiny": "t"}}}}}},
        [1, 2],
    ]  # fmt: skip
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out, _ = run(capsys, ["parse", "--forms", str(forms_file), "--jsonl"])
    assert code == 0
    assert len(out) == len(lines)
    assert out[0]["fields"] == {"name": "sarah", "lmp": 24}
    assert out[1]["code"] is None and out[1]["error"]["code"] == "bad_json"
    # no meta.code: nothing is stripped, and the trailing string field takes the rest
    assert out[2]["form"] == "X" and out[2]["fields"] == {"a": "X 1!"}
    assert out[3] == {"code": "7", "form": None, "format": "compact", "fields": {"a": 7}}
    assert out[4]["fields"]["_extra_fields"] is True
    assert out[5]["fields"] == {"age": 20, "phone": "+9779841202020"}
    assert out[6]["fields"] == {"name": "jane"}
    assert out[7]["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "argv",
    [
        ["parse"],
        ["parse", "x"],
        ["parse", "--jsonl", "x"],
        ["parse", "--forms", "f", "--tz", "Mars/Base", "x"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    assert "smsbridge parse" in capsys.readouterr().err


def test_a_missing_forms_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["parse", "--forms", str(tmp_path / "none.json"), "ANCR x"]) == 2
    assert "cannot read forms file" in capsys.readouterr().err


def test_jsonl_needs_no_forms_file_when_lines_bring_their_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [{"message": "ANCR sarah", "forms": {"ANCR": ANCR}}, {"message": "ANCR sarah"}]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(x) for x in lines) + "\n"))
    code, out, _ = run(capsys, ["parse", "--jsonl", "--tz", "Asia/Kathmandu"])
    assert code == 0
    assert out[0]["fields"] == {"name": "sarah"}
    assert out[1]["error"]["code"] == "bad_request"
