"""The systemd unit: statically checked keys, `systemd-analyze verify` where it exists, and the
environment file template listing every setting at its default."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smsbridge.carriers import every_setting

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "smsbridge.service"
ENV_EXAMPLE = ROOT / "systemd" / "smsbridge.env.example"


def _unit() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_runs_serve_unprivileged_with_a_state_directory() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"][0].split()[-1] == "serve"
    assert service["ExecStart"][0].split()[0].endswith("/smsbridge")
    unprivileged = service.get("DynamicUser") == ["yes"] or "User" in service
    assert unprivileged and service.get("User", ["smsbridge"]) != ["root"]
    assert service["StateDirectory"] == ["smsbridge"]
    assert "SMSBRIDGE_DATABASE=/var/lib/smsbridge/smsbridge.db" in service["Environment"]
    assert service["Restart"] == ["on-failure"]
    assert any(v.startswith("-/etc/smsbridge/") for v in service["EnvironmentFile"])


def test_the_unit_refuses_to_run_the_sandbox() -> None:
    service = _unit()["Service"]
    assert "SMSBRIDGE_REQUIRE_CHT=true" in service["Environment"]
    env = dict(v.split("=", 1) for v in service["Environment"])
    from smsbridge.cli.check_config import check

    refused = check({**env, "SMSBRIDGE_DATABASE": "smsbridge.db"})  # no CHT URL
    assert not refused.ok and any("SMSBRIDGE_REQUIRE_CHT" in p for p in refused.problems)
    configured = check(
        {
            **env,
            "SMSBRIDGE_DATABASE": "smsbridge.db",
            "SMSBRIDGE_CHT_URL": "https://u:p@cht.example.org",
        }
    )
    assert not any("REQUIRE_CHT" in p for p in configured.problems)


def test_the_unit_is_hardened() -> None:
    service = _unit()["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == [value], key
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); static checks ran")
    # verify wants ExecStart to exist: point it at this environment's smsbridge.
    here = Path(sys.executable).parent / "smsbridge"
    if not here.exists():
        pytest.skip(f"no smsbridge console script at {here} (pip install . first)")
    text = re.sub(r"/opt/smsbridge/venv/bin/smsbridge", str(here), UNIT.read_text())
    unit = tmp_path / "smsbridge.service"
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even on unknown keys: any diagnostic about our unit is a failure.
    complaints = [line for line in done.stderr.splitlines() if "smsbridge.service" in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_the_env_example_lists_every_setting_at_its_default() -> None:
    listed = dict(
        re.findall(r"^#?(SMSBRIDGE_\w+)=(.*)$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M)
    )
    expected = {s.env: s.default for s in every_setting()}
    assert listed == expected
