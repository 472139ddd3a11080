"""check-config checks what `serve` will really run: routes against the sandbox's demo carrier
when nothing is configured, and rates only for channels that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsbridge.cli.check_config import check


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"), **extra}


@pytest.mark.parametrize("routes", ["+254=twilio", "*=nosuch"])
def test_a_route_the_sandbox_cannot_serve_is_a_problem(tmp_path: Path, routes: str) -> None:
    report = check(_env(tmp_path, SMSBRIDGE_ROUTES=routes))
    assert not report.ok
    assert any("SMSBRIDGE_ROUTES" in p and "not an enabled carrier" in p for p in report.problems)


def test_the_sandbox_with_a_route_to_its_demo_carrier_is_fine(tmp_path: Path) -> None:
    assert check(_env(tmp_path, SMSBRIDGE_ROUTES="*=generic")).ok


def test_a_rate_for_a_channel_that_is_not_enabled_is_a_problem(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        SMSBRIDGE_CHT_URL="http://gateway:pass@127.0.0.1:9",
        SMSBRIDGE_GENERIC_WEBHOOK_TOKEN="tok12345678",
        SMSBRIDGE_GENERIC_SEND_URL="http://127.0.0.1:9/send",
        SMSBRIDGE_PUBLIC_URL="https://sms.example.org",
    )
    assert check({**env, "SMSBRIDGE_RATES": "generic=1"}).ok
    report = check({**env, "SMSBRIDGE_RATES": "genric=1"})
    assert [p for p in report.problems if "SMSBRIDGE_RATES" in p] == [
        "SMSBRIDGE_RATES: channel 'genric' is not an enabled carrier (enabled: generic), "
        "so its rate would limit nothing"
    ]
