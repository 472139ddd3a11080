"""Outgoing routing: which channels, in order, carry an SMS to a given number.

Format of `SMSBRIDGE_ROUTES` (rules separated by `;`, the longest matching prefix wins):

    +254=africastalking|twilio;+1=twilio;*=twilio

Each rule is `<prefix>=<channel>[|<failover>...]`. A prefix is matched against the E.164
destination (`+2547...`); `*` is the default. A channel is a carrier name (`africastalking`,
`twilio`, `vonage`, `generic`) or `chtgateway` (any cht-gateway phone) or `chtgateway:<user>`
(that phone only). With no rules every SMS goes through the first enabled carrier.

An SMS that starts elsewhere (a reply on the channel its number wrote in on: outbound/send.py)
fails over to the route's first channel, then along the route. A destination that is not a
phone number (`routable`) has no route at all: it fails at once, before any carrier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from smsbridge.errors import ConfigError
from smsbridge.settings import DEFAULT_ROUTE as DEFAULT
from smsbridge.settings import route_rules

_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_SEPARATORS = re.compile(r"[\s().-]")


def routable(number: str) -> bool:
    """Whether `number` can be an SMS destination: once spaces, dots, dashes and brackets are
    dropped, 3 to 15 digits (E.164's most; short codes from 3), maybe after a `+`. An
    alphanumeric sender id (`abc`, `MPESA`) or an empty number is not."""
    return _NUMBER.fullmatch(_SEPARATORS.sub("", number)) is not None


def channel_carrier(channel: str) -> str:
    """The carrier module behind a channel (`chtgateway:phone1` -> `chtgateway`)."""
    return channel.split(":", 1)[0]


@dataclass(frozen=True)
class Routes:
    rules: tuple[tuple[str, tuple[str, ...]], ...]  # (prefix, channels), longest prefix first
    enabled: tuple[str, ...] = ()  # the enabled carriers (empty: only the routes' channels)

    @classmethod
    def parse(cls, spec: str, enabled: Iterable[str] = ()) -> Routes:
        """Parse a routes setting. `enabled` carriers: every channel must use one of them (when
        given), and the first is the default when the spec has no `*` rule."""
        enabled = tuple(enabled)
        try:
            rules = dict(route_rules(spec))
        except ValueError as exc:
            raise ConfigError(f"SMSBRIDGE_ROUTES: {exc}") from None
        for channels in rules.values():
            for channel in channels:
                if enabled and channel_carrier(channel) not in enabled:
                    raise ConfigError(
                        f"SMSBRIDGE_ROUTES: channel {channel!r} is not an enabled carrier "
                        f"(SMSBRIDGE_CARRIERS={','.join(enabled)})"
                    )
        if DEFAULT not in rules and enabled:
            rules[DEFAULT] = (enabled[0],)
        ordered = sorted(rules.items(), key=lambda kv: (kv[0] == DEFAULT, -len(kv[0])))
        return cls(tuple(ordered), enabled)

    def channels_for(self, number: str) -> tuple[str, ...]:
        """The ordered channels (primary first, then failovers) for `number`; () if none."""
        for prefix, channels in self.rules:
            if prefix == DEFAULT or number.startswith(prefix):
                return channels
        return ()

    def next_channel(self, number: str, current: str | None) -> str | None:
        """The channel after `current` in `number`'s route (the first one if `current` is None)."""
        channels = self.channels_for(number)
        if current is None:
            return channels[0] if channels else None
        if current not in channels:  # a phone that took a `chtgateway` message for itself
            current = channel_carrier(current)
        try:
            index = channels.index(current)
        except ValueError:  # it started off the route (a reply): the route takes over
            return channels[0] if channels and channels[0] != current else None
        return channels[index + 1] if index + 1 < len(channels) else None

    def can_carry(self, channel: str) -> bool:
        """Whether `channel` may carry SMS here: its carrier is enabled (or, with no enabled
        carriers given, it is on some route)."""
        if self.enabled:
            return channel_carrier(channel) in self.enabled
        return channel in self.channels

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel named by some rule, each once."""
        seen: dict[str, None] = {}
        for _prefix, channels in self.rules:
            for channel in channels:
                seen.setdefault(channel, None)
        return tuple(seen)
