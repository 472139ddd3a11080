"""What the carriers and the routes lack, read from `Settings`: problems (what would make `serve`
fail at start, or fail every request of some kind) and warnings (what leaves an enabled carrier
half-working). `smsbridge check-config` (smsbridge/cli/check_config.py) prints them; the
operator console's settings page (smsbridge/web/console) shows them. Each carrier checks its own
settings (`Carrier.check`); nothing here names one.
"""

from __future__ import annotations

from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig, url_ok
from smsbridge.carriers.sending import unset
from smsbridge.errors import ConfigError
from smsbridge.outbound.routing import Routes, channel_carrier
from smsbridge.settings import Settings, rate_table


def carrier_problems(settings: Settings) -> list[str]:
    """What would make `serve` fail at start, or fail every request of some kind."""
    found: list[str] = []
    try:
        Routes.parse(settings.routes, settings.enabled_carriers)
    except ConfigError as exc:
        found.append(exc.detail)
    if settings.public_url and not url_ok(settings.public_url):
        found.append(
            "SMSBRIDGE_PUBLIC_URL: expected an http(s)://host[:port][/path] URL, "
            f"got {settings.public_url!r}"
        )
    for carrier in CARRIERS.values():
        found += carrier.check(CarrierConfig.from_settings(settings, carrier.name))[0]
    found += _rate_problems(settings)
    return found


def _rate_problems(settings: Settings) -> list[str]:
    """A rate for a channel that is not an enabled carrier limits nothing: a typo there would
    leave a channel unthrottled without a word."""
    enabled = settings.enabled_carriers
    try:
        channels = rate_table(settings.rates)
    except ValueError:
        return []  # a syntax problem, reported with the setting itself
    return [
        f"SMSBRIDGE_RATES: channel {channel!r} is not an enabled carrier "
        f"(enabled: {', '.join(enabled) or 'none'}), so its rate would limit nothing"
        for channel in channels
        if channel_carrier(channel) not in enabled
    ]


def carrier_warnings(settings: Settings) -> list[str]:
    """What leaves an enabled carrier half-working."""
    found: list[str] = []
    enabled = [c for c in settings.enabled_carriers if c in CARRIERS]
    if not enabled and settings.cht_url:
        found.append(
            "SMSBRIDGE_CARRIERS is empty and no carrier has a webhook token: no carrier is "
            "enabled, so no SMS can be received or sent"
        )
    configs = {name: CarrierConfig.from_settings(settings, name) for name in enabled}
    for name in enabled:
        found += CARRIERS[name].check(configs[name])[1]
    try:
        routes = Routes.parse(settings.routes, settings.enabled_carriers)
        senders = {channel_carrier(c) for c in routes.channels}
        named = {channel_carrier(c) for c in Routes.parse(settings.routes).channels}
    except ConfigError:
        senders = named = set()
    for name in [c for c in enabled if c in senders]:
        # what the carrier cannot deliver SMS without (its `send_needs`)
        missing = unset(configs[name], CARRIERS[name].send_needs)
        why = "SMSBRIDGE_ROUTES" if name in named else "the default route: first enabled carrier"
        if missing:
            found.append(
                f"{name} sends SMS ({why}) but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} empty: its SMS will fail"
            )
    reported = sorted(c for c in enabled if c in senders and CARRIERS[c].asks_status_url)
    if reported and not settings.public_url:
        found.append(
            f"SMSBRIDGE_PUBLIC_URL is empty: {', '.join(reported)} cannot be asked for "
            "delivery reports (SMS stay `sent`, never `delivered`)"
        )
    return found
