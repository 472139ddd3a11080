from __future__ import annotations

import pytest

from smsbridge.errors import ConfigError
from smsbridge.outbound.loopguard import REASON_BURST, REASON_LOOP, LoopLimits, text_key, verdict
from smsbridge.outbound.ratelimit import RateLimiter, TokenBucket, parse_rates
from smsbridge.outbound.routing import Routes, channel_carrier, routable


def test_longest_prefix_wins_and_default_applies() -> None:
    routes = Routes.parse("+254=africastalking|twilio;+2547=vonage;*=twilio")
    assert routes.channels_for("+254712345678") == ("vonage",)
    assert routes.channels_for("+254212345678") == ("africastalking", "twilio")
    assert routes.channels_for("+15551234567") == ("twilio",)


def test_failover_order() -> None:
    routes = Routes.parse("+254=africastalking|twilio|generic")
    assert routes.next_channel("+254700000000", None) == "africastalking"
    assert routes.next_channel("+254700000000", "africastalking") == "twilio"
    assert routes.next_channel("+254700000000", "twilio") == "generic"
    assert routes.next_channel("+254700000000", "generic") is None


def test_empty_routes_use_first_enabled_carrier() -> None:
    routes = Routes.parse("", ["twilio", "vonage"])
    assert routes.channels_for("+447700900000") == ("twilio",)
    assert Routes.parse("").channels_for("+1") == ()


def test_explicit_default_beats_enabled_order() -> None:
    routes = Routes.parse("*=vonage", ["twilio", "vonage"])
    assert routes.channels_for("+1") == ("vonage",)


def test_gateway_phone_channels() -> None:
    routes = Routes.parse("+256=chtgateway:phone1|chtgateway;*=twilio", ["twilio", "chtgateway"])
    assert routes.channels_for("+256700000000") == ("chtgateway:phone1", "chtgateway")
    assert channel_carrier("chtgateway:phone1") == "chtgateway"
    assert set(routes.channels) == {"chtgateway:phone1", "chtgateway", "twilio"}


@pytest.mark.parametrize(
    "spec",
    ["twilio", "+254=", "=twilio", "abc=twilio", "+1=twilio;+1=vonage", "+1=nosuch"],
)
def test_bad_routes_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        Routes.parse(spec, ["twilio", "vonage"])


def test_rates_parse() -> None:
    rates = parse_rates("twilio=1, chtgateway=30/1800")
    assert rates["twilio"].per_second == 1
    assert rates["chtgateway"].per_second == pytest.approx(30 / 1800)
    for bad in ("twilio", "twilio=0", "twilio=x", "twilio=1/0"):
        with pytest.raises(ConfigError):
            parse_rates(bad)


def test_token_bucket_counts_segments() -> None:
    bucket = TokenBucket(rate=1.0, capacity=3, now=0.0)
    assert bucket.try_take(2, 0.0)
    assert not bucket.try_take(2, 0.0)
    assert bucket.wait_time(2, 0.0) == pytest.approx(1.0)
    assert bucket.try_take(2, 1.0)
    # a message longer than the capacity waits for a full bucket, then goes (debt paid later)
    assert bucket.wait_time(5, 1.0) == pytest.approx(3.0)
    assert bucket.try_take(5, 4.0)
    assert bucket.wait_time(1, 4.0) == pytest.approx(3.0)


def test_rate_limiter_holds_channel_to_its_rate() -> None:
    limiter = RateLimiter(parse_rates("twilio=10"), started=0.0)
    now, sent = 0.0, 0
    while now < 100.0:
        if limiter.try_take("twilio", 1, now):
            sent += 1
        now += 0.01
    assert 999 <= sent <= 1001  # 10/s for 100 s, no initial burst: the bucket starts empty
    assert limiter.try_take("vonage", 1000, 0.0)  # unlimited channel


def test_rate_limiter_per_phone_bucket_uses_carrier_rate() -> None:
    limiter = RateLimiter(parse_rates("chtgateway=2/60"), started=0.0)
    assert limiter.try_take("chtgateway:a", 2, 60.0)
    assert not limiter.try_take("chtgateway:a", 1, 60.0)
    assert limiter.try_take("chtgateway:b", 1, 60.0)


def test_rate_limiter_starts_empty_and_refills() -> None:
    """A restart must not burst: every bucket is empty when the limiter is built and refills
    at its rate; a channel first used later has gained what it would have by then."""
    limiter = RateLimiter(parse_rates("twilio=5, chtgateway=30/1800"), started=100.0)
    assert not limiter.try_take("twilio", 1, 100.0)
    assert limiter.wait_time("twilio", 1, 100.0) == pytest.approx(0.2)
    sent = sum(limiter.try_take("twilio", 1, 100.0 + i / 100) for i in range(101))
    assert sent == 5  # the first second: the rate, not a full bucket on top of it
    assert limiter.reserve("chtgateway:p", 1, 100.0) == pytest.approx(160.0)
    # first used an hour later: full (30), not more
    assert limiter.wait_time("chtgateway:q", 30, 3700.0) == 0.0
    assert limiter.wait_time("chtgateway:q", 31, 3700.0) == 0.0  # > capacity: allowed when full
    assert limiter.try_take("chtgateway:q", 30, 3700.0)
    assert not limiter.try_take("chtgateway:q", 1, 3700.0)


def test_loop_guard() -> None:
    limits = LoopLimits(loop_limit=3, loop_window=3600, autoreply_burst=10)
    assert verdict(limits, same_text_sent=2, inbound_last_minute=0, automatic=True) is None
    assert verdict(limits, same_text_sent=3, inbound_last_minute=0, automatic=True) == REASON_LOOP
    assert verdict(limits, same_text_sent=0, inbound_last_minute=11, automatic=True) == REASON_BURST
    assert verdict(limits, same_text_sent=0, inbound_last_minute=11, automatic=False) is None
    assert text_key("+1", "a") == text_key("+1", "a") != text_key("+1", "b")


def test_an_sms_that_started_off_its_route_fails_over_to_the_routes_first_channel() -> None:
    routes = Routes.parse("*=twilio|vonage", ["twilio", "vonage", "generic"])
    assert routes.next_channel("+254700000000", "generic") == "twilio"
    assert routes.next_channel("+254700000000", "twilio") == "vonage"
    assert routes.next_channel("+254700000000", "vonage") is None
    assert routes.can_carry("generic") and not routes.can_carry("africastalking")


def test_only_phone_numbers_are_routable() -> None:
    for number in ("+254712345678", "0712 345 678", "(555) 123-4567", "112"):
        assert routable(number), number
    for number in ("abc", "MPESA", "", "+", "12", "+2547123abc", "1234567890123456"):
        assert not routable(number), number
