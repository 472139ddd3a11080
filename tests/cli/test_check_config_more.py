"""check-config catches the usual mistakes: misspelled SMSBRIDGE_* names, values out of range,
Africa's Talking's sandbox username with its production API (or the reverse), and CHT's own
configuration (the user's gateway permission, `sms.outgoing_service`), asked of a running CHT
simulator; /readyz reports an outgoing service that is not medic-gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsbridge.chtsim import ChtSim
from smsbridge.cli.check_config import check
from smsbridge.loopback import wait_for
from tests.conftest import running_bridge


def report_of(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return check({"SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"), **env}, probe_cht=True)


# -- names and ranges -------------------------------------------------------------------------


def test_a_misspelled_setting_is_a_warning_naming_the_closest(tmp_path: Path) -> None:
    report = report_of(tmp_path, SMSBRIDGE_TWILLIO_AUTH_TOKEN="x", SMSBRIDGE_SYNCINTERVAL="5")
    assert report.ok
    assert any(
        w.startswith("SMSBRIDGE_TWILLIO_AUTH_TOKEN ")
        and w.endswith("did you mean SMSBRIDGE_TWILIO_AUTH_TOKEN?")
        for w in report.warnings
    ), report.warnings
    assert any("did you mean SMSBRIDGE_SYNC_INTERVAL?" in w for w in report.warnings)
    assert not [w for w in report.warnings if "SMSBRIDGE_DATABASE" in w]  # a known one


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SMSBRIDGE_MAX_ATTEMPTS", "0", "at least 1"),
        ("SMSBRIDGE_SYNC_INTERVAL", "0", "above 0"),
        ("SMSBRIDGE_LEASE_SECONDS", "0", "above 0"),
        ("SMSBRIDGE_CHT_TIMEOUT", "0", "above 0"),
        ("SMSBRIDGE_LOOP_LIMIT", "0", "at least 1"),
    ],
)
def test_values_out_of_range_are_problems(
    tmp_path: Path, name: str, value: str, words: str
) -> None:
    report = report_of(tmp_path, **{name: value})
    assert not report.ok
    assert [p for p in report.problems if p.startswith(f"{name}: ") and words in p], report.problems


def test_values_in_range_pass(tmp_path: Path) -> None:
    report = report_of(tmp_path, SMSBRIDGE_MAX_ATTEMPTS="1", SMSBRIDGE_SYNC_INTERVAL="0.5")
    assert report.ok, report.problems


# -- Africa's Talking: sandbox or production, not half of each -------------------------------


AT = "SMSBRIDGE_AFRICASTALKING_"


@pytest.mark.parametrize(
    ("username", "api_url", "wrong"),
    [
        ("sandbox", "https://api.africastalking.com", "API_URL=https://api.sandbox."),
        ("myapp", "https://api.sandbox.africastalking.com", "USERNAME=sandbox"),
        ("sandbox", "https://api.sandbox.africastalking.com", None),
        ("myapp", "https://api.africastalking.com", None),
        ("sandbox", "http://127.0.0.1:8099", None),  # a simulator or proxy: not judged
    ],
)
def test_africastalking_sandbox_and_production_must_agree(
    tmp_path: Path, username: str, api_url: str, wrong: str | None
) -> None:
    report = report_of(
        tmp_path,
        **{AT + "USERNAME": username, AT + "API_URL": api_url, AT + "API_KEY": "k"},
    )
    found = [p for p in report.problems if "sandbox" in p]
    if wrong is None:
        assert not found, found
    else:
        assert len(found) == 1 and wrong in found[0], found


# -- CHT's own configuration ------------------------------------------------------------------


def cht_env(url: str, user: str = "bridge", password: str = "bridge-pass") -> dict[str, str]:
    return {"SMSBRIDGE_CHT_URL": url.replace("http://", f"http://{user}:{password}@")}


def test_a_well_configured_cht_passes(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    sim, url = chtsim
    sim.add_user("bridge", "bridge-pass", ["gateway"])
    report = report_of(tmp_path, **cht_env(url))
    assert report.ok, report.problems
    assert not [w for w in report.warnings if "CHT" in w], report.warnings


@pytest.mark.parametrize("service", ["africas-talking", None])
def test_an_outgoing_service_other_than_medic_gateway_is_a_problem_saying_what_to_set(
    tmp_path: Path, chtsim: tuple[ChtSim, str], service: str | None
) -> None:
    sim, url = chtsim
    sim.add_user("bridge", "bridge-pass", ["gateway"])
    sim.set_outgoing_service(service)
    report = report_of(tmp_path, **cht_env(url))
    assert not report.ok
    (problem,) = [p for p in report.problems if "outgoing_service" in p]
    assert '"sms": {"outgoing_service": "medic-gateway"}' in problem
    assert ('"africas-talking"' in problem) == (service is not None)


def test_a_user_without_the_gateway_permission_is_told_which_role_to_add(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    sim.add_user("bridge", "bridge-pass", ["national_admin", "bogus_role"])
    report = report_of(tmp_path, **cht_env(url))
    assert not report.ok
    (problem,) = [p for p in report.problems if "can_access_gateway_api" in p]
    assert "'bridge'" in problem and "national_admin" in problem
    assert "permissions.can_access_gateway_api" in problem
    assert "(now: gateway)" in problem
    assert "bogus_role is not in app_settings `roles`" in problem


def test_wrong_cht_credentials_are_a_problem(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    sim, url = chtsim
    sim.add_user("bridge", "bridge-pass", ["gateway"])
    report = report_of(tmp_path, **cht_env(url, password="wrong"))
    assert [p for p in report.problems if "refused the credentials of user 'bridge'" in p]
    assert "wrong" not in " ".join(report.problems)


def test_an_unreachable_cht_is_a_warning(tmp_path: Path) -> None:
    report = report_of(tmp_path, SMSBRIDGE_CHT_URL="http://u:p@127.0.0.1:9")
    assert report.ok, report.problems
    assert [w for w in report.warnings if "its settings were not checked" in w], report.warnings


def test_readyz_reports_an_outgoing_service_that_hands_out_nothing(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    sim.add_user("bridge", "bridge-pass", ["gateway"])
    sim.set_outgoing_service("africas-talking")
    with running_bridge(
        tmp_path, start_workers=True, **cht_env(url), SMSBRIDGE_CARRIERS="generic"
    ) as bridge:

        def outgoing_check() -> dict[str, object] | None:
            body = bridge.http.get("/readyz").json()
            check = body["checks"].get("cht_outgoing", {})
            return body if "outgoing_service" in str(check.get("detail", "")) else None

        body = wait_for(outgoing_check, "/readyz judged CHT's outgoing service", timeout=20)
        assert body["ready"] is False
        assert body["checks"]["cht_outgoing"]["ok"] is False
        assert "medic-gateway" in body["checks"]["cht_outgoing"]["detail"]
