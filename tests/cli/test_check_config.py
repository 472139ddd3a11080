"""`smsbridge check-config`: effective settings with secrets masked, every problem at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smsbridge.cli.main import main


@pytest.fixture
def env(cli_database: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return monkeypatch


def test_good_config_prints_the_settings_and_exits_0(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("SMSBRIDGE_PORT", "9090")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out
    line = next(line for line in out.splitlines() if line.startswith("SMSBRIDGE_PORT "))
    assert line.split() == ["SMSBRIDGE_PORT", "9090", "env"]
    assert "SMSBRIDGE_SYNC_INTERVAL" in out


def test_secrets_are_masked(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("SMSBRIDGE_CHT_URL", "https://gw:urlpass99@cht.example.org")
    env.setenv("SMSBRIDGE_CHT_PASSWORD", "separate-pass-77")
    assert main(["check-config", "--json"]) == 0
    out = capsys.readouterr().out
    assert "urlpass99" not in out
    assert "separate-pass-77" not in out
    rows = {row["setting"]: row for row in json.loads(out)["settings"]}
    assert rows["SMSBRIDGE_CHT_URL"]["value"] == "https://gw:****@cht.example.org"
    assert rows["SMSBRIDGE_CHT_PASSWORD"]["value"] == "****"


def test_every_problem_is_listed_at_once_and_exits_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.setenv("SMSBRIDGE_PORT", "eighty")  # does not convert
    env.setenv("SMSBRIDGE_RETRY_BASE", "-1")  # does not convert
    env.setenv("SMSBRIDGE_TIMEZONE", "Mars/Olympus")  # converts, fails the cross check
    env.setenv("SMSBRIDGE_CARRIERS", "pigeon")  # converts, fails the cross check
    env.setenv("SMSBRIDGE_DATABASE", str(tmp_path / "missing" / "bridge.db"))
    assert main(["check-config", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    named = [problem.split(":")[0] for problem in report["problems"]]
    assert sorted(named) == sorted(
        [
            "SMSBRIDGE_PORT",
            "SMSBRIDGE_RETRY_BASE",
            "SMSBRIDGE_TIMEZONE",
            "SMSBRIDGE_CARRIERS",
            "SMSBRIDGE_DATABASE",
        ]
    )
    rows = {row["setting"]: row for row in report["settings"]}
    assert rows["SMSBRIDGE_PORT"]["value"] == "eighty  (invalid)"


def test_the_console_script_exits_2_with_the_problems(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMSBRIDGE_")}
    environ.update(SMSBRIDGE_PORT="0", SMSBRIDGE_DATABASE=str(tmp_path / "db.sqlite"))
    done = subprocess.run(
        [sys.executable, "-m", "smsbridge", "check-config"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "1 problem(s):" in done.stdout
    assert "SMSBRIDGE_PORT: must be between 1 and 65535" in done.stdout
