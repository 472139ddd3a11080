"""A route's options (`?format=national&split`): how SMSBRIDGE_ROUTES parses them, and how
`format` writes the destination and the sender for the carrier (smsbridge/outbound/routing.py,
smsbridge/phone.py `written`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriers.base import CarrierConfig
from smsbridge.errors import ConfigError
from smsbridge.outbound.routing import RouteOptions, Routes
from smsbridge.phone import written
from smsbridge.sms import OutboundSms

ENABLED = ["twilio", "kannel", "generic", "africastalking", "chtgateway"]


def test_options_apply_to_the_rule_they_end() -> None:
    routes = Routes.parse(
        "+977=kannel|generic?format=national&split;+254=africastalking?format=digits;*=twilio",
        ENABLED,
    )
    assert routes.options_for("+9779841234567") == RouteOptions("national", split=True)
    assert routes.options_for("+254712345678") == RouteOptions("digits", split=False)
    assert routes.options_for("+15551234567") == RouteOptions()  # `*`: no options given
    assert routes.channels_for("+9779841234567") == ("kannel", "generic")  # the options aside


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("", RouteOptions("e164", False)),
        ("?format=e164", RouteOptions("e164", False)),
        ("?format=NATIONAL", RouteOptions("national", False)),
        ("?format=digits", RouteOptions("digits", False)),
        ("?split", RouteOptions("e164", True)),
        ("?split=yes", RouteOptions("e164", True)),
        ("?split=no", RouteOptions("e164", False)),
        ("? split & format = digits ", RouteOptions("digits", True)),
    ],
)
def test_good_option_specs(suffix: str, expected: RouteOptions) -> None:
    routes = Routes.parse(f"+254=generic{suffix};*=twilio", ENABLED)
    assert routes.options_for("+254712345678") == expected


def test_the_default_rule_takes_options_and_an_added_default_has_none() -> None:
    assert Routes.parse("*=generic?format=digits", ENABLED).options_for("+1555") == RouteOptions(
        "digits"
    )
    routes = Routes.parse("+254=generic?split", ENABLED)  # `*` comes from SMSBRIDGE_CARRIERS
    assert routes.options_for("+15551234567") == RouteOptions()
    assert routes.channels_for("+15551234567") == ("twilio",)


def test_a_reply_off_the_route_gets_no_options() -> None:
    """A reply sent on the channel its number wrote in on (not the rule's) is not the rule's."""
    routes = Routes.parse("+254=generic|chtgateway?format=national;*=twilio", ENABLED)
    assert routes.options_for("+254712345678", "generic").number_format == "national"
    assert routes.options_for("+254712345678", "chtgateway:phone1").number_format == "national"
    assert routes.options_for("+254712345678", "twilio") == RouteOptions()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("+254=generic?format", "expected format=e164|national|digits"),
        ("+254=generic?format=international", "expected format=e164|national|digits"),
        ("+254=generic?split=maybe", "expected split=yes|no"),
        ("+254=generic?colour=red", "unknown option 'colour'"),
        ("+254=generic?", "unknown option ''"),
        ("+254=generic?split&&format=digits", "unknown option ''"),
        ("+254=generic?split&split=no", "option 'split' given twice"),
        ("+254=generic?format=digits&format=national", "option 'format' given twice"),
        ("+254=?split", "expected prefix=channel"),
    ],
)
def test_bad_option_specs_are_config_errors_naming_the_setting(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Routes.parse(spec, ENABLED)
    assert str(caught.value).startswith("SMSBRIDGE_ROUTES: ")
    assert says in str(caught.value)
    with pytest.raises(ConfigError) as at_start:  # and the settings refuse it at start-up
        load_settings({"SMSBRIDGE_DATABASE": ":memory:", "SMSBRIDGE_ROUTES": spec})
    assert "SMSBRIDGE_ROUTES" in str(at_start.value) and says in str(at_start.value)


@pytest.mark.parametrize(
    ("number", "e164", "national", "digits"),
    [
        ("+254712345678", "+254712345678", "0712345678", "254712345678"),
        ("+9779841234567", "+9779841234567", "9841234567", "9779841234567"),
        ("+44 20 7946 0000", "+442079460000", "02079460000", "442079460000"),
        ("+1 (201) 555-0123", "+12015550123", "2015550123", "12015550123"),
        # not an international number: as it is (sender ids, short codes, national numbers)
        ("MPESA", "MPESA", "MPESA", "MPESA"),
        ("12345", "12345", "12345", "12345"),
        ("0712345678", "0712345678", "0712345678", "0712345678"),
        ("+1", "+1", "+1", "+1"),
        ("", "", "", ""),
    ],
)
def test_numbers_written_in_each_format(number: str, e164: str, national: str, digits: str) -> None:
    assert [written(number, f) for f in ("e164", "national", "digits")] == [
        e164,
        national,
        digits,
    ]


def _sms(to: str) -> OutboundSms:
    return OutboundSms("ref-1", to, "Hello", datetime(2026, 1, 1, tzinfo=UTC))


def test_for_carrier_rewrites_the_destination_and_the_carriers_sender_setting_only() -> None:
    sms, config = (
        _sms("+254712345678"),
        CarrierConfig(
            "generic", {"sender": "+254700000001", "send_url": "http://127.0.0.1:9/send"}
        ),
    )
    out, out_config = RouteOptions("national").for_carrier(sms, config, "sender")
    assert out.to == "0712345678" and out.cht_id == "ref-1" and out.content == "Hello"
    assert out_config.get("sender") == "0700000001"
    assert out_config.get("send_url") == "http://127.0.0.1:9/send"
    assert sms.to == "+254712345678" and config.get("sender") == "+254700000001"  # untouched
    twilio = CarrierConfig("twilio", {"from_number": "+15017122661"})
    _, digits = RouteOptions("digits").for_carrier(sms, twilio, "from_number")
    assert digits.get("from_number") == "15017122661"
    alphanumeric = CarrierConfig("generic", {"sender": "CLINIC"})
    _, kept = RouteOptions("digits").for_carrier(sms, alphanumeric, "sender")
    assert kept.get("sender") == "CLINIC"
    same_sms, same_config = RouteOptions().for_carrier(sms, config, "sender")
    assert same_sms is sms and same_config is config  # e164 of E.164 numbers: nothing copied
