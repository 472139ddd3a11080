"""The wheel carries the grammars, and an installed smsbridge (not the source tree) finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRAMMARS = sorted(p.name for p in (ROOT / "grammars").glob("*.lark"))

PROBE = """
import json, smsbridge, smsbridge.smsparser.grammar as g
from smsbridge.smsparser.parser import parse_sms
forms = {"ANCR": {"meta": {"code": "ANCR"}, "fields": {
    "name": {"type": "string", "labels": {"tiny": "N"}},
    "lmp": {"type": "integer", "labels": {"tiny": "L"}}}}}
r = parse_sms('ANCR "Sarah Connor" 24', forms)
print(json.dumps({"file": smsbridge.__file__, "fields": r.fields, "format": r.format,
                  "grammar": g.lark_parser("muvuku") is not None}))
"""


@pytest.mark.slow
def test_the_installed_wheel_parses_with_its_own_grammars(tmp_path: Path) -> None:
    assert {"muvuku.lark", "javarosa.lark", "compact.lark", "textforms.lark"} <= set(GRAMMARS)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("smsbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for grammar in GRAMMARS:
        assert f"smsbridge/grammars/{grammar}" in names
    templates = ROOT / "smsbridge" / "web" / "console" / "templates"
    for template in sorted(templates.glob("*.html")):  # the console's pages
        assert f"smsbridge/web/console/templates/{template.name}" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, cwd=tmp_path, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    import json

    result = json.loads(out.stdout)
    assert result["file"].startswith(str(target))
    assert result["fields"] == {"name": "Sarah Connor", "lmp": 24}
    assert result["format"] == "compact"
    assert result["grammar"] is True
