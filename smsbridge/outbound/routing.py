"""Outgoing routing: which channels, in order, carry an SMS to a given number.

Format of `SMSBRIDGE_ROUTES` (rules separated by `;`, the longest matching prefix wins):

    +254=africastalking|twilio;+1=twilio;*=twilio

Each rule is `<prefix>=<channel>[|<failover>...][?<option>&...]`. A prefix is matched against
the E.164 destination (`+2547...`); `*` is the default. A channel is a carrier name
(`africastalking`, `twilio`, `vonage`, `generic`, `kannel`, `rapidpro`) or `chtgateway` (any
cht-gateway phone) or `chtgateway:<user>` (that phone only). With no rules every SMS goes
through the first enabled carrier.

A rule's options (`RouteOptions`) apply to the SMS it sends on its own channels:

    +977=kannel|generic?format=national&split;*=twilio

- `format=e164|national|digits` (default e164): how the destination and the sender number are
  written for the carrier (`for_carrier`; smsbridge/phone.py `written`). A sender that is not
  an international phone number (an alphanumeric sender id, a short code) is left as it is;
  phones (`chtgateway`) get the number CHT gave.
- `split` (`split=yes|no`, default no): long SMS go as standalone segments prefixed `1/3 `...

An SMS that starts elsewhere (a reply on the channel its number wrote in on: outbound/send.py)
fails over to the route's first channel, then along the route. A destination that is not a
phone number (`routable`) has no route at all: it fails at once, before any carrier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from smsbridge.carriers.base import CarrierConfig
from smsbridge.errors import ConfigError
from smsbridge.phone import written
from smsbridge.settings import DEFAULT_ROUTE as DEFAULT
from smsbridge.settings import NUMBER_FORMATS, route_rules
from smsbridge.sms import OutboundSms

E164, NATIONAL, DIGITS = NUMBER_FORMATS

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
class RouteOptions:
    """A rule's options (`?format=national&split`)."""

    number_format: str = E164  # one of NUMBER_FORMATS
    split: bool = False

    @classmethod
    def of(cls, options: Mapping[str, str]) -> RouteOptions:
        """From settings.route_rules' options (names and values already checked there)."""
        return cls(options.get("format", E164), options.get("split", "no") == "yes")

    def for_carrier(
        self, sms: OutboundSms, config: CarrierConfig, sender_setting: str
    ) -> tuple[OutboundSms, CarrierConfig]:
        """The SMS and the carrier's settings as the carrier is to get them: the destination
        and the sender number (the carrier's `sender_setting`) written in `number_format`.
        The stored SMS keeps CHT's number, so delivery reports (found by our ref or the
        carrier's id) and replies are matched as before."""
        to = written(sms.to, self.number_format)
        sender = config.get(sender_setting) if sender_setting else ""
        from_ = written(sender, self.number_format)
        if to != sms.to:
            sms = replace(sms, to=to)
        if from_ != sender:
            config = replace(config, values={**config.values, sender_setting: from_})
        return sms, config


DEFAULT_OPTIONS = RouteOptions()


@dataclass(frozen=True)
class Routes:
    rules: tuple[tuple[str, tuple[str, ...]], ...]  # (prefix, channels), longest prefix first
    enabled: tuple[str, ...] = ()  # the enabled carriers (empty: only the routes' channels)
    options: tuple[tuple[str, RouteOptions], ...] = ()  # (prefix, options) of rules that have some

    @classmethod
    def parse(cls, spec: str, enabled: Iterable[str] = ()) -> Routes:
        """Parse a routes setting. `enabled` carriers: every channel must use one of them (when
        given), and the first is the default when the spec has no `*` rule."""
        enabled = tuple(enabled)
        try:
            parsed = route_rules(spec)
        except ValueError as exc:
            raise ConfigError(f"SMSBRIDGE_ROUTES: {exc}") from None
        rules = {prefix: channels for prefix, channels, _options in parsed}
        options = tuple(
            (prefix, RouteOptions.of(given)) for prefix, _channels, given in parsed if given
        )
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
        return cls(tuple(ordered), enabled, options)

    def _rule_for(self, number: str) -> tuple[str, tuple[str, ...]] | None:
        """The rule (prefix, channels) that matches `number`: the longest prefix, else `*`."""
        for prefix, channels in self.rules:
            if prefix == DEFAULT or number.startswith(prefix):
                return prefix, channels
        return None

    def channels_for(self, number: str) -> tuple[str, ...]:
        """The ordered channels (primary first, then failovers) for `number`; () if none."""
        rule = self._rule_for(number)
        return rule[1] if rule else ()

    def options_for(self, number: str, channel: str | None = None) -> RouteOptions:
        """The options of the rule that matches `number`. With `channel`, the defaults unless
        that channel (or, for one phone, `chtgateway`) is one of the rule's: a reply sent on the
        channel its number wrote in on (outbound/send.py) is not that rule's SMS."""
        rule = self._rule_for(number)
        if rule is None:
            return DEFAULT_OPTIONS
        prefix, channels = rule
        if channel is not None and not {channel, channel_carrier(channel)} & set(channels):
            return DEFAULT_OPTIONS
        return dict(self.options).get(prefix, DEFAULT_OPTIONS)

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
