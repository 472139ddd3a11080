"""Each carrier checks its own settings (`Carrier.check`): what check-config reports as
problems and warnings, from the carrier object alone; and check-config names no carrier."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import smsbridge.cli.check_config
from smsbridge.carriers import CARRIERS, load_settings
from smsbridge.carriers.base import CarrierConfig


def config_of(carrier: str, **env: str) -> CarrierConfig:
    """The carrier's config as the service builds it: its declared defaults, then `env`
    (SMSBRIDGE_<CARRIER>_<NAME> given by NAME)."""
    prefix = f"SMSBRIDGE_{carrier.upper()}_"
    settings = load_settings({prefix + k.upper(): v for k, v in env.items()})
    return CarrierConfig.from_settings(settings, carrier)


COMPLETE = {
    "africastalking": {"webhook_token": "t", "api_key": "k", "username": "myapp"},
    "twilio": {"webhook_token": "t", "auth_token": "a", "account_sid": "AC1", "from_number": "+1"},
    "vonage": {"webhook_token": "t", "api_key": "k", "api_secret": "s", "sender": "X"},
    "generic": {"webhook_token": "t", "send_url": "https://gw.example.org/send"},
    "kannel": {
        "webhook_token": "t",
        "sendsms_url": "http://127.0.0.1:13013/cgi-bin/sendsms",
        "username": "u",
        "password": "p",
    },
    "rapidpro": {"webhook_token": "t", "api_url": "https://textit.com", "api_token": "k"},
    "chtgateway": {"accounts": "phone1:secret1"},
}


@pytest.mark.parametrize("carrier", list(CARRIERS))
def test_a_complete_carrier_finds_nothing(carrier: str) -> None:
    assert CARRIERS[carrier].check(config_of(carrier, **COMPLETE[carrier])) == ([], [])


@pytest.mark.parametrize(
    ("carrier", "values", "problem"),
    [
        (
            "africastalking",
            {"api_url": "api.africastalking.com"},
            "SMSBRIDGE_AFRICASTALKING_API_URL",
        ),
        ("twilio", {"api_url": "ftp://api.twilio.com"}, "SMSBRIDGE_TWILIO_API_URL"),
        ("vonage", {"api_url": "https://rest.nexmo.com:99999"}, "SMSBRIDGE_VONAGE_API_URL"),
        ("vonage", {"signature_method": "crc32"}, "SMSBRIDGE_VONAGE_SIGNATURE_METHOD"),
        ("generic", {"send_url": "gw.example.org/send"}, "SMSBRIDGE_GENERIC_SEND_URL"),
        ("generic", {"send_format": "xml"}, "SMSBRIDGE_GENERIC_SEND_FORMAT"),
        ("chtgateway", {"batch": "0"}, "SMSBRIDGE_CHTGATEWAY_BATCH"),
        ("chtgateway", {"accounts": "phone1:secret1,kampala:"}, "SMSBRIDGE_CHTGATEWAY_ACCOUNTS"),
    ],
)
def test_each_carrier_finds_its_own_problems(
    carrier: str, values: dict[str, str], problem: str
) -> None:
    problems, _ = CARRIERS[carrier].check(config_of(carrier, **{**COMPLETE[carrier], **values}))
    assert [p.split(":")[0] for p in problems] == [problem]
    # the others do not read that carrier's settings
    others = [c for c in CARRIERS if c != carrier]
    env = {f"SMSBRIDGE_{carrier.upper()}_{k.upper()}": v for k, v in values.items()}
    settings = load_settings(env)
    for other in others:
        found, _ = CARRIERS[other].check(CarrierConfig.from_settings(settings, other))
        assert not [p for p in found if p.startswith(problem)], other


@pytest.mark.parametrize(
    ("carrier", "unset", "warning"),
    [
        ("africastalking", "webhook_token", "SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN is empty"),
        ("twilio", "webhook_token", "SMSBRIDGE_TWILIO_WEBHOOK_TOKEN is empty"),
        ("twilio", "auth_token", "SMSBRIDGE_TWILIO_AUTH_TOKEN is empty: Twilio webhooks are not"),
        ("vonage", "webhook_token", "SMSBRIDGE_VONAGE_WEBHOOK_TOKEN is empty"),
        ("generic", "webhook_token", "SMSBRIDGE_GENERIC_WEBHOOK_TOKEN is empty"),
    ],
)
def test_each_carrier_warns_of_what_leaves_it_half_working(
    carrier: str, unset: str, warning: str
) -> None:
    values = {k: v for k, v in COMPLETE[carrier].items() if k != unset}
    problems, warnings = CARRIERS[carrier].check(config_of(carrier, **values))
    assert problems == []
    assert len(warnings) == 1 and warnings[0].startswith(warning), warnings


def test_a_twilio_signing_key_is_signature_checking_too() -> None:
    values = {k: v for k, v in COMPLETE["twilio"].items() if k != "auth_token"}
    assert CARRIERS["twilio"].check(config_of("twilio", signing_key="sk", **values)) == ([], [])


def test_phones_need_no_webhook_token() -> None:
    # cht-gateway phones poll /api/sms: no webhook, so no token to warn about
    assert not CARRIERS["chtgateway"].inbound_methods
    assert CARRIERS["chtgateway"].check(config_of("chtgateway")) == ([], [])


def test_check_config_names_no_carrier() -> None:
    source = Path(smsbridge.cli.check_config.__file__).read_text(encoding="utf-8")
    code = re.sub(r'"""(.|\n)*?"""', "", source)  # docstrings may mention carriers
    named = [c for c in CARRIERS if re.search(rf"\b{c}\b", code, re.I)]
    assert named == []
