"""Outgoing routing: which channels, in order, carry an SMS to a given number.

Format of `SMSBRIDGE_ROUTES` (rules separated by `;`, the longest matching prefix wins):

    +254=africastalking|twilio;+1=twilio;*=twilio

Each rule is `<prefix>=<channel>[|<failover>...]`. A prefix is matched against the E.164
destination (`+2547...`); `*` is the default. A channel is a carrier name (`africastalking`,
`twilio`, `vonage`, `generic`) or `chtgateway` (any cht-gateway phone) or `chtgateway:<user>`
(that phone only). With no rules every SMS goes through the first enabled carrier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smsbridge.errors import ConfigError
from smsbridge.settings import DEFAULT_ROUTE as DEFAULT
from smsbridge.settings import route_rules


def channel_carrier(channel: str) -> str:
    """The carrier module behind a channel (`chtgateway:phone1` -> `chtgateway`)."""
    return channel.split(":", 1)[0]


@dataclass(frozen=True)
class Routes:
    rules: tuple[tuple[str, tuple[str, ...]], ...]  # (prefix, channels), longest prefix first

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
        return cls(tuple(ordered))

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
        except ValueError:
            return None
        return channels[index + 1] if index + 1 < len(channels) else None

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel named by some rule, each once."""
        seen: dict[str, None] = {}
        for _prefix, channels in self.rules:
            for channel in channels:
                seen.setdefault(channel, None)
        return tuple(seen)
