"""`smsbridge check-config` warns about what is really configured: no "SMSBRIDGE_CARRIERS is
empty" when it is set (to something invalid), a warning for settings of a carrier that is not
enabled (phone accounts without `chtgateway`), and SMSBRIDGE_ROUTES named only when a rule of
it sends SMS to the carrier."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsbridge.cli.check_config import check, render
from tests.cli.test_check_config_carriers import env_of

CHT = "https://gw:pw@cht.example.org"


@pytest.mark.parametrize("carriers", ["pigeon", "generic,pigeon", "twilio, vonage ,pigeon"])
def test_an_invalid_carrier_list_is_a_problem_not_an_empty_one(
    tmp_path: Path, carriers: str
) -> None:
    report = check(env_of(tmp_path, SMSBRIDGE_CHT_URL=CHT, SMSBRIDGE_CARRIERS=carriers))
    assert [p.split(":")[0] for p in report.problems] == ["SMSBRIDGE_CARRIERS"]
    assert not any("SMSBRIDGE_CARRIERS is empty" in w for w in report.warnings), report.warnings
    assert not any("no carrier is enabled" in w for w in report.warnings)
    # the carrier list really empty, with a real CHT: that warning is still given
    empty = check(env_of(tmp_path, SMSBRIDGE_CHT_URL=CHT))
    assert any("SMSBRIDGE_CARRIERS is empty" in w for w in empty.warnings)


def test_invalid_routes_give_no_warning_about_a_route_not_configured(tmp_path: Path) -> None:
    report = check(
        env_of(tmp_path, SMSBRIDGE_CARRIERS="twilio,generic", SMSBRIDGE_ROUTES="abc=generic")
    )
    assert [p.split(":")[0] for p in report.problems] == ["SMSBRIDGE_ROUTES"]
    assert not any("sends SMS" in w for w in report.warnings), report.warnings


def test_phone_accounts_without_the_phones_carrier_enabled_are_a_warning(tmp_path: Path) -> None:
    accounts = {"SMSBRIDGE_CHTGATEWAY_ACCOUNTS": "kampala:pw-123456"}
    report = check(env_of(tmp_path, SMSBRIDGE_CARRIERS="generic", **accounts))
    assert report.ok, report.problems
    (warning,) = [w for w in report.warnings if "SMSBRIDGE_CHTGATEWAY_ACCOUNTS" in w]
    assert "chtgateway is not enabled (SMSBRIDGE_CARRIERS=generic)" in warning
    assert "pw-123456" not in render(report) and "pw-123456" not in warning
    # the carrier list empty: enabled by webhook tokens, which phones have none of
    implicit = check(
        env_of(tmp_path, SMSBRIDGE_GENERIC_WEBHOOK_TOKEN="gn-token-123456", **accounts)
    )
    assert any(
        "SMSBRIDGE_CHTGATEWAY_ACCOUNTS is set but chtgateway is not enabled" in w
        for w in implicit.warnings
    ), implicit.warnings
    enabled = check(env_of(tmp_path, SMSBRIDGE_CARRIERS="generic,chtgateway", **accounts))
    assert not any("not enabled" in w for w in enabled.warnings), enabled.warnings


def test_every_setting_of_a_carrier_not_enabled_is_named_once(tmp_path: Path) -> None:
    report = check(
        env_of(
            tmp_path,
            SMSBRIDGE_CARRIERS="generic",
            SMSBRIDGE_TWILIO_ACCOUNT_SID="AC123",
            SMSBRIDGE_TWILIO_FROM_NUMBER="+15017122661",
        )
    )
    idle = [w for w in report.warnings if "twilio is not enabled" in w]
    assert idle == [
        "SMSBRIDGE_TWILIO_ACCOUNT_SID, SMSBRIDGE_TWILIO_FROM_NUMBER are set but twilio is not "
        "enabled (SMSBRIDGE_CARRIERS=generic): they are ignored until twilio is added to "
        "SMSBRIDGE_CARRIERS"
    ]


def test_the_default_route_is_not_called_smsbridge_routes(tmp_path: Path) -> None:
    unset = check(env_of(tmp_path, SMSBRIDGE_CARRIERS="twilio"))
    (sends,) = [w for w in unset.warnings if "twilio sends SMS" in w]
    assert "SMSBRIDGE_ROUTES" not in sends and "default route" in sends
    assert not any("SMSBRIDGE_ROUTES" in w for w in unset.warnings), unset.warnings
    # a rule of SMSBRIDGE_ROUTES sends to it: then the setting is named
    routed = check(env_of(tmp_path, SMSBRIDGE_CARRIERS="twilio", SMSBRIDGE_ROUTES="*=twilio"))
    (sends,) = [w for w in routed.warnings if "twilio sends SMS" in w]
    assert "(SMSBRIDGE_ROUTES)" in sends
    # routes without `*`: the first enabled carrier is the default, not a rule's
    partial = check(
        env_of(tmp_path, SMSBRIDGE_CARRIERS="twilio,generic", SMSBRIDGE_ROUTES="+1=generic")
    )
    by_carrier = {w.split()[0]: w for w in partial.warnings if " sends SMS " in w}
    assert "(SMSBRIDGE_ROUTES)" in by_carrier["generic"]
    assert "SMSBRIDGE_ROUTES" not in by_carrier["twilio"]
