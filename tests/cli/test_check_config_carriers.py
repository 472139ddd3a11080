"""`smsbridge check-config` checks the carriers too: what would crash `serve` at start or fail
every request is a problem (exit 2), what leaves a carrier half-working is a warning; and a
password in an invalid CHT URL is masked like a valid one's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smsbridge.cli.check_config import check, render


def env_of(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBRIDGE_")}
    env["SMSBRIDGE_DATABASE"] = str(tmp_path / "bridge.db")
    env.update(settings)
    return env


def test_a_route_to_a_carrier_not_enabled_is_a_problem(tmp_path: Path) -> None:
    report = check(env_of(tmp_path, SMSBRIDGE_CARRIERS="generic", SMSBRIDGE_ROUTES="*=twilio"))
    assert not report.ok
    assert any(
        "SMSBRIDGE_ROUTES: channel 'twilio' is not an enabled carrier" in p for p in report.problems
    )


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SMSBRIDGE_CHTGATEWAY_BATCH", "many", "SMSBRIDGE_CHTGATEWAY_BATCH"),
        ("SMSBRIDGE_CHTGATEWAY_ACCOUNTS", "kampala:", "SMSBRIDGE_CHTGATEWAY_ACCOUNTS"),
        ("SMSBRIDGE_VONAGE_SIGNATURE_METHOD", "crc32", "SMSBRIDGE_VONAGE_SIGNATURE_METHOD"),
        ("SMSBRIDGE_GENERIC_SEND_FORMAT", "xml", "SMSBRIDGE_GENERIC_SEND_FORMAT"),
        ("SMSBRIDGE_PUBLIC_URL", "sms.example.org", "SMSBRIDGE_PUBLIC_URL"),
        ("SMSBRIDGE_TWILIO_API_URL", "ftp://api.twilio.com", "SMSBRIDGE_TWILIO_API_URL"),
        ("SMSBRIDGE_CHT_URL", "http://gw:pw@cht.example.org:99999", "SMSBRIDGE_CHT_URL"),
    ],
)
def test_values_that_would_fail_at_run_time_are_problems(
    tmp_path: Path, name: str, value: str, named: str
) -> None:
    report = check(env_of(tmp_path, **{name: value}))
    assert [p.split(":")[0] for p in report.problems] == [named]


def test_the_password_of_an_invalid_cht_url_is_masked(tmp_path: Path) -> None:
    for url in ("ftp://gw:Hunter2secret@cht.example.org", "http://gw:Hunter2secret@h:99999"):
        report = check(env_of(tmp_path, SMSBRIDGE_CHT_URL=url))
        assert not report.ok
        for as_json in (False, True):
            out = render(report, as_json=as_json)
            assert "Hunter2secret" not in out
            assert "gw:****@" in out


def test_half_configured_carriers_are_warnings_not_problems(tmp_path: Path) -> None:
    report = check(
        env_of(
            tmp_path,
            SMSBRIDGE_CARRIERS="vonage,twilio",
            SMSBRIDGE_VONAGE_WEBHOOK_TOKEN="vn-token-123456",
            SMSBRIDGE_VONAGE_API_KEY="key",
            SMSBRIDGE_VONAGE_API_SECRET="secret",
        )
    )
    assert report.ok, report.problems
    text = "\n".join(report.warnings)
    assert "SMSBRIDGE_TWILIO_WEBHOOK_TOKEN is empty" in text
    assert "SMSBRIDGE_VONAGE_SENDER" in text  # vonage is the default route: it sends
    assert "SMSBRIDGE_TWILIO_ACCOUNT_SID" not in text  # twilio is on no route
    assert "SMSBRIDGE_PUBLIC_URL is empty: vonage" in text
    assert "warning(s):" in render(report) and "configuration OK" in render(report)


def test_a_complete_carrier_has_no_warning(tmp_path: Path) -> None:
    report = check(
        env_of(
            tmp_path,
            SMSBRIDGE_CARRIERS="generic",
            SMSBRIDGE_PUBLIC_URL="https://sms.example.org",
            SMSBRIDGE_GENERIC_WEBHOOK_TOKEN="gn-token-123456",
            SMSBRIDGE_GENERIC_SEND_URL="https://gw.example.org/send",
        )
    )
    assert report.ok and report.warnings == []


def test_serve_refuses_what_would_crash_its_start_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smsbridge", "serve"],
        env=env_of(
            tmp_path,
            SMSBRIDGE_CARRIERS="generic",
            SMSBRIDGE_ROUTES="*=twilio",
            SMSBRIDGE_CHTGATEWAY_BATCH="x",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SMSBRIDGE_ROUTES" in done.stderr and "SMSBRIDGE_CHTGATEWAY_BATCH" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_carrier_at_all_with_a_real_cht_is_a_warning(tmp_path: Path) -> None:
    report = check(env_of(tmp_path, SMSBRIDGE_CHT_URL="https://gw:pw@cht.example.org"))
    assert report.ok
    assert any("no carrier is enabled" in w for w in report.warnings)
    # without a CHT URL it is the sandbox of `serve`: nothing to warn about
    assert check(env_of(tmp_path)).warnings == []
