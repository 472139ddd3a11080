"""Settings, read once from the environment (`Settings.from_env`) and passed down.

Every setting is declared once, in `SETTINGS`: its name, default, meaning, how its text is
read (`cast`) and whether it is a secret. That one list drives the conversion in `from_env`,
what `check-config` prints and README's settings table and `systemd/smsbridge.env.example`
(`scripts/docs.py`); the `Settings` dataclass must name the same fields in the same order
(checked when this module is imported). Carrier settings are `SMSBRIDGE_<CARRIER>_<NAME>`: each
carrier declares its own (`Carrier.settings`) and `from_env` receives the carriers as data, so
this module imports no carrier.

`from_env` raises `SettingsError`, a ConfigError carrying every `Problem` (env name, message),
so callers that must tell the operator which setting is wrong need not parse text.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import zip_longest
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from smsbridge.errors import ConfigError
from smsbridge.postgres.url import masked

MASK = "****"


class Secret:
    """A secret value (a password). It never shows itself: `str()`, `repr()`, f-strings and
    `%` formatting give `****`; `reveal()` is the one way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True)
class Setting:
    """One environment variable, `SMSBRIDGE_<name upper>`: its default (as written in the
    environment), its meaning, how its text is read (`cast` raises ValueError on a bad value,
    in plain words) and whether it is a secret (masked in `check-config` and logs)."""

    name: str
    default: str
    doc: str
    cast: Callable[[str], Any] = str
    secret: bool = False

    @property
    def env(self) -> str:
        return "SMSBRIDGE_" + self.name.upper()


@dataclass(frozen=True)
class Problem:
    """What is wrong with one setting."""

    env: str  # the environment variable, e.g. SMSBRIDGE_PORT
    message: str

    def __str__(self) -> str:
        return f"{self.env}: {self.message}"


class SettingsError(ConfigError):
    """The settings do not build: every problem, one per line of `detail`, and as data."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


class CarrierSettings(Protocol):
    """What settings needs of a carrier (smsbridge/carriers/base.py's `Carrier`): its name and
    the settings it declares, without the `<carrier>_` prefix."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> tuple[Setting, ...]: ...


NO_CARRIERS: Mapping[str, CarrierSettings] = MappingProxyType({})


# -- casts: text of the environment -> value ------------------------------------------------------


def _text(raw: str) -> str:
    return raw.strip()


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _whole(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def _seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"expected a number (seconds), got {raw!r}")
    return value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        value = kind(raw)
        if value < 0:
            raise ValueError(f"must not be negative, got {raw!r}")
        return value

    return convert


def _at_least(
    kind: Callable[[str], Any], low: float, *, above: bool = False
) -> Callable[[str], Any]:
    """`kind`, range-checked: at least `low` (above it, with `above`)."""

    def convert(raw: str) -> Any:
        value = kind(raw)
        if value < low or (above and value == low):
            raise ValueError(f"must be {'above' if above else 'at least'} {low:g}, got {raw!r}")
        return value

    return convert


_whole_count = _positive(_whole)
_duration = _positive(_seconds)
_count_from_one = _at_least(_whole, 1)  # a limit or count where 0 makes no sense
_interval = _at_least(_seconds, 0, above=True)  # a period or timeout: 0 would spin or fail


def _commit_wait(raw: str) -> float:
    value = _duration(raw)
    if value > 0.1:
        raise ValueError(f"must be at most 0.1 (seconds), got {raw!r}")
    return float(value)


def _share(raw: str) -> float:
    """A part of a whole: at least 0, below 1."""
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise ValueError(f"expected a number from 0 to below 1, got {raw!r}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw.strip() else None


def _database(raw: str) -> Path | str:
    """SMSBRIDGE_DATABASE: an SQLite file (a Path) or a PostgreSQL URL (kept as text:
    smsbridge/store.py `open_store` takes either)."""
    text = raw.strip()
    if text.lower().startswith(("postgresql://", "postgres://")):
        return text
    if "://" in text:
        scheme = text.split(":")[0]
        raise ValueError(f"expected a file path or a postgresql:// URL, got {scheme}://")
    return Path(text)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


AMBIGUOUS_ACTIONS = ("resend", "fail")  # SMSBRIDGE_AMBIGUOUS_ACTION (outbound/send.py)


def _ambiguous_action(raw: str) -> str:
    action = raw.strip().lower()
    if action not in AMBIGUOUS_ACTIONS:
        raise ValueError(f"expected one of {', '.join(AMBIGUOUS_ACTIONS)}, got {raw!r}")
    return action


REPLY_CHANNELS = ("inbound", "routes")  # SMSBRIDGE_REPLY_CHANNEL (outbound/send.py)


def _reply_channel(raw: str) -> str:
    choice = raw.strip().lower()
    if choice not in REPLY_CHANNELS:
        raise ValueError(f"expected one of {', '.join(REPLY_CHANNELS)}, got {raw!r}")
    return choice


DEFAULT_ROUTE = "*"
# A rule's options (`prefix=channel|failover?format=national&split`): smsbridge/outbound/routing.py
# turns them into its `RouteOptions`.
NUMBER_FORMATS = ("e164", "national", "digits")  # `format=`: how numbers reach the carrier
ROUTE_OPTIONS = {"format": NUMBER_FORMATS, "split": ("yes", "no")}
_FLAG_DEFAULTS = {"split": "yes"}  # an option that may be written without a value


def _route_options(query: str, rule: str) -> dict[str, str]:
    """A rule's `name[=value]&...` options, values lower-cased; ValueError naming the rule."""
    options: dict[str, str] = {}
    for item in query.split("&"):
        name, sep, value = (part.strip().lower() for part in item.partition("="))
        if not sep:
            value = _FLAG_DEFAULTS.get(name, "")
        if name not in ROUTE_OPTIONS:
            known = ", ".join(ROUTE_OPTIONS)
            raise ValueError(f"unknown option {name!r} in {rule!r} (options: {known})")
        if name in options:
            raise ValueError(f"option {name!r} given twice in {rule!r}")
        if value not in ROUTE_OPTIONS[name]:
            accepted = "|".join(ROUTE_OPTIONS[name])
            raise ValueError(f"expected {name}={accepted} in {rule!r}, got {item.strip()!r}")
        options[name] = value
    return options


def route_rules(spec: str) -> tuple[tuple[str, tuple[str, ...], dict[str, str]], ...]:
    """SMSBRIDGE_ROUTES (`prefix=channel|failover[?option&...];...`) as (prefix, channels,
    options) triples, in the order written; the options as given (ROUTE_OPTIONS' names and
    values; `split` alone means `split=yes`). ValueError on bad syntax.
    smsbridge/outbound/routing.py builds its `Routes` from these."""
    rules: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
    for raw in spec.split(";"):
        rule = raw.strip()
        if not rule:
            continue
        prefix, sep, targets = rule.partition("=")
        prefix = prefix.strip()
        targets, ask, query = targets.partition("?")
        channels = tuple(c.strip().lower() for c in targets.split("|") if c.strip())
        if not sep or not prefix or not channels:
            raise ValueError(f"expected prefix=channel[|failover], got {rule!r}")
        if prefix != DEFAULT_ROUTE and not (prefix.lstrip("+").isdigit()):
            raise ValueError(f"prefix must be digits (with +) or *: {prefix!r}")
        if prefix in rules:
            raise ValueError(f"prefix {prefix!r} given twice")
        rules[prefix] = (channels, _route_options(query, rule) if ask else {})
    return tuple((prefix, channels, options) for prefix, (channels, options) in rules.items())


def rate_table(spec: str) -> dict[str, tuple[float, float]]:
    """SMSBRIDGE_RATES (`channel=segments[/seconds],...`) as {channel: (segments, seconds)};
    ValueError on bad syntax. smsbridge/outbound/ratelimit.py builds its `Rate`s from it."""
    rates: dict[str, tuple[float, float]] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        channel, sep, value = item.partition("=")
        amount, _, period = value.partition("/")
        try:
            segments, seconds = float(amount), float(period) if period.strip() else 1.0
        except ValueError:
            segments = seconds = 0.0
        if not sep or not channel.strip() or segments <= 0 or seconds <= 0:
            raise ValueError(f"expected channel=segments[/seconds], got {item!r}")
        rates[channel.strip().lower()] = (segments, seconds)
    return rates


def listen_address(spec: str) -> tuple[str, int] | None:
    """`host:port` (`[::1]:9464` for IPv6) as (host, port); None when empty; ValueError on bad
    syntax. SMSBRIDGE_METRICS_LISTEN is read with it."""
    text = spec.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {spec!r}")
    return host, int(port)


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """A cast that keeps the text as given (stripped) once `parse` accepts it."""

    def convert(raw: str) -> str:
        parse(raw)
        return raw.strip()

    return convert


# -- the settings ---------------------------------------------------------------------------------

# Order is the order of README's table and of the `Settings` fields.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "cht_url",
        "",
        "CHT server URL; credentials may ride in it "
        "(`https://user:pass@host`). Empty: run against the built-in CHT simulator.",
        _text,
    ),
    Setting(
        "require_cht",
        "false",
        "Refuse to start (`serve` and `check-config` exit 2) while SMSBRIDGE_CHT_URL is empty, "
        "instead of running against the built-in CHT simulator. The systemd unit sets it: a "
        "production box must not silently run the sandbox.",
        _bool,
    ),
    Setting("cht_username", "", "CHT user, when not given in the URL."),
    Setting("cht_password", "", "CHT password, when not given in the URL.", Secret, secret=True),
    Setting("cht_timeout", "30", "Seconds before a CHT request times out.", _interval),
    Setting(
        "database",
        "smsbridge.db",
        "The database: the path of an SQLite file, or a `postgresql://user:pass@host/db` URL "
        "(several bridges on one PostgreSQL database; needs the `postgres` extra).",
        _database,
    ),
    Setting(
        "commit_wait",
        "0.01",
        "Seconds, at most, the database writer holds a commit of the background workers' writes "
        "(sends, their outcomes, CHT exchanges) open for more to join it, while writes come "
        "together (group commit: one disk sync for many under load); it commits once none came "
        "for a fifth of this. A webhook's write, and a lone write, never wait. 0: commit at "
        "once. At most 0.1.",
        _commit_wait,
    ),
    Setting("host", "127.0.0.1", "Address `smsbridge serve` listens on."),
    Setting("port", "8080", "Port `smsbridge serve` listens on.", _whole),
    Setting(
        "header_timeout",
        "10",
        "Seconds a client has to send a request's line and headers (from connecting, or from "
        "the first byte of the next request on a kept-alive connection); then it is closed.",
        _duration,
    ),
    Setting(
        "keepalive_timeout",
        "5",
        "Seconds an idle kept-alive connection stays open between requests.",
        _duration,
    ),
    Setting(
        "max_header_bytes",
        "16384",
        "Largest total size of a request's headers (names and values); 431 above it.",
        _whole_count,
    ),
    Setting("max_headers", "100", "Most headers in one request; 431 above it.", _whole_count),
    Setting(
        "max_connections",
        "1000",
        "Most client connections open at once; a connection over it is answered 503 and closed.",
        _whole_count,
    ),
    Setting(
        "phone_login_attempts",
        "5",
        "Wrong cht-gateway phone logins allowed per account and per client address before "
        "backoff: each further failure locks that account (or address) out for twice as long "
        "as the last, from 1 s up to `phone_login_lockout` (429 meanwhile).",
        _whole_count,
    ),
    Setting(
        "phone_login_lockout",
        "300",
        "Longest lock-out, in seconds, after repeated wrong phone logins.",
        _duration,
    ),
    Setting(
        "metrics_token",
        "",
        "A bearer token `GET /metrics` requires (`Authorization: Bearer <token>`). "
        "Empty: /metrics needs none.",
        Secret,
        secret=True,
    ),
    Setting(
        "metrics_listen",
        "",
        "`host:port` for a second listener that serves /metrics alone (the main port then "
        "serves no /metrics), e.g. `127.0.0.1:9464`. Empty: /metrics on the main port.",
        _checked(listen_address),
    ),
    Setting(
        "metrics_phone_labels",
        "false",
        "Name each cht-gateway phone account in the metrics' `channel` label "
        "(`chtgateway:phone1`); false: every phone is `chtgateway`.",
        _bool,
    ),
    Setting(
        "public_url",
        "",
        "The URL carriers use to reach this bridge (Twilio signatures "
        "are computed over it), e.g. `https://sms.example.org`.",
    ),
    Setting(
        "carriers",
        "",
        "Comma-separated carriers to enable: africastalking, twilio, vonage, generic, chtgateway. "
        "Empty: every carrier with a webhook token; with none and no SMSBRIDGE_CHT_URL either, "
        "`serve` enables a demo `generic` carrier (token `demo-token`) on the carrier simulator.",
        _list,
    ),
    Setting("timezone", "UTC", "The CHT server's timezone; SMS dates are read in it."),
    Setting("locale", "en", "Default locale for parsing and replies when CHT does not set one."),
    Setting(
        "forms_file",
        "",
        "A local JSON file of form definitions (a `forms` object or an "
        "app_settings export), used instead of CHT's settings.",
        _optional_path,
    ),
    Setting(
        "forms_refresh",
        "300",
        "Seconds between refreshes of form definitions and settings from CHT.",
        _interval,
    ),
    Setting("contact_cache_ttl", "600", "Seconds a contacts-by-phone answer is cached.", _duration),
    Setting(
        "reject_unknown_senders",
        "false",
        "Reject SMS from numbers CHT does not know, with a reply, instead of accepting them.",
        _bool,
    ),
    Setting(
        "max_body_bytes",
        "65536",
        "Largest webhook body, or query string of a GET webhook, accepted (413 above it).",
        _whole_count,
    ),
    Setting(
        "dedup_window",
        "120",
        "Seconds in which an SMS without a carrier id, from the same "
        "sender with the same text, counts as a duplicate.",
        _duration,
    ),
    Setting(
        "min_free_disk_mb",
        "100",
        "Free space (MB) below which the database's disk makes /readyz answer 503 (0: no check).",
        _whole_count,
    ),
    Setting("sync_interval", "30", "Seconds between exchanges with CHT's /api/sms.", _interval),
    Setting(
        "status_poll_interval",
        "60",
        "Seconds between reads of the delivery states of sent SMS from carriers that report "
        "none themselves (RapidPro).",
        _interval,
    ),
    Setting(
        "message_ttl",
        "86400",
        "Seconds after which an unsent outgoing SMS fails as `expired` instead of being sent late.",
        _interval,
    ),
    Setting(
        "retention_days",
        "90",
        "Days finished SMS (inbound submitted, relayed or rejected; outgoing delivered or "
        "failed, with their delivery and status reports) are kept before a background job "
        "deletes them; counts survive in `smsbridge_pruned_total`. 0: keep them forever. "
        "Nothing unfinished is ever pruned (`smsbridge prune` runs it by hand).",
        _whole_count,
    ),
    Setting(
        "retry_base", "5", "Seconds of the first retry delay (doubles each attempt).", _duration
    ),
    Setting("retry_cap", "3600", "Largest retry delay, in seconds.", _interval),
    Setting(
        "bulk_share",
        "0.2",
        "Part of a rate-limited carrier channel's rate kept for SMS that are not replies: "
        "replies go first but take at most the rest (0 to below 1; 0: replies may take all).",
        _share,
    ),
    Setting(
        "max_attempts",
        "12",
        "Attempts before a task gives up into the dead-letter list.",
        _count_from_one,
    ),
    Setting("lease_seconds", "60", "How long a worker's claim on a task lasts.", _interval),
    Setting(
        "routes",
        "",
        "Outgoing routing: `prefix=channel|failover[?options];...;*=channel`, "
        "e.g. `+254=africastalking|twilio;+977=kannel?format=national;*=twilio`; options "
        "`format=e164|national|digits` (how destination and sender numbers reach the carrier) "
        "and `split` (long SMS as standalone n/N segments). Empty: the first enabled carrier.",
        _checked(route_rules),
    ),
    Setting(
        "channel_failures",
        "5",
        "Transient send failures (5xx, timeouts) of one channel within "
        "SMSBRIDGE_CHANNEL_FAILURE_WINDOW that open its circuit breaker: its SMS then go to the "
        "route's next channel at once. 0: never open.",
        _whole_count,
    ),
    Setting(
        "channel_failure_window",
        "60",
        "Seconds in which SMSBRIDGE_CHANNEL_FAILURES failures open a channel.",
        _interval,
    ),
    Setting(
        "channel_open_seconds",
        "60",
        "Seconds an open channel waits before one SMS is let through as a probe "
        "(accepted: the channel closes; failed: it stays open).",
        _interval,
    ),
    Setting(
        "channel_throttle_max",
        "600",
        "Longest pause of a whole channel after a throttle answer (429, Retry-After); its SMS "
        "wait for the pause to end.",
        _duration,
    ),
    Setting(
        "reply_channel",
        "inbound",
        "Channel of a reply (an SMS to a number that sent one within SMSBRIDGE_REPLY_WINDOW): "
        "`inbound` (the channel that SMS came in on, when it can send) or `routes`.",
        _reply_channel,
    ),
    Setting(
        "reply_window",
        "600",
        "Seconds after an inbound SMS during which an SMS to its sender counts as a reply.",
        _duration,
    ),
    Setting(
        "send_timeout",
        "30",
        "Seconds before a carrier's send request times out "
        "(then retried: a timeout is a transient failure).",
        _interval,
    ),
    Setting(
        "ambiguous_grace",
        "300",
        "Seconds an ambiguous send (it may have reached the carrier: the bridge died or the "
        "request timed out before the answer was stored) waits for its delivery report before "
        "SMSBRIDGE_AMBIGUOUS_ACTION applies; a report settles it and it is never sent again.",
        _duration,
    ),
    Setting(
        "ambiguous_action",
        "resend",
        "What an ambiguous send with no delivery report after SMSBRIDGE_AMBIGUOUS_GRACE "
        "becomes: `resend` (send it again: a lost SMS is worse than a rare duplicate) or "
        "`fail` (report it failed to CHT: never a duplicate).",
        _ambiguous_action,
    ),
    Setting(
        "send_concurrency",
        "64",
        "Sends in flight at once (asyncio tasks, cheap): with a carrier that answers in 0.3 s, "
        "64 allow about 200 SMS/s, so the carrier or the rates, not the bridge, set the pace.",
        _count_from_one,
    ),
    Setting(
        "rates",
        "",
        "Send rates per channel in SMS segments: `channel=segments[/seconds]`, "
        "comma-separated, e.g. `twilio=1,chtgateway=30/1800`. Unlisted channels: no limit.",
        _checked(rate_table),
    ),
    Setting(
        "reply_lead",
        "3600",
        "Seconds a reply (an SMS to a number that sent one within SMSBRIDGE_REPLY_WINDOW) "
        "goes ahead of other SMS in its channel's queue: it is sent before those that became "
        "due less than this before it (0: no reply lane).",
        _duration,
    ),
    Setting(
        "loop_limit",
        "3",
        "Identical SMS to one number allowed within `loop_window`; more are held.",
        _count_from_one,
    ),
    Setting("loop_window", "3600", "Seconds of the loop-guard window.", _interval),
    Setting(
        "autoreply_burst",
        "10",
        "Inbound SMS from one number within a minute after which automatic replies to it stop.",
        _whole_count,
    ),
    Setting(
        "console",
        "true",
        "Serve the operator console at /console (operators sign in with their CHT accounts).",
        _bool,
    ),
    Setting(
        "console_roles",
        "",
        "CHT roles allowed into the console besides the admin roles (`_admin`, "
        "`national_admin`), comma-separated, e.g. `program_officer`.",
        _list,
    ),
    Setting(
        "console_secret",
        "",
        "The key that signs console session cookies. Empty: a random key per process, so "
        "every restart signs every operator out (and several processes refuse each other's "
        "sessions).",
        Secret,
        secret=True,
    ),
    Setting(
        "console_session",
        "28800",
        "Seconds a console session lasts after signing in.",
        _duration,
    ),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR.", _log_level),
)


def carrier_settings(carrier: CarrierSettings) -> tuple[Setting, ...]:
    """A carrier's settings under their full names (`twilio_auth_token`)."""
    return tuple(dataclasses.replace(s, name=f"{carrier.name}_{s.name}") for s in carrier.settings)


def all_settings(carriers: Mapping[str, CarrierSettings] = NO_CARRIERS) -> tuple[Setting, ...]:
    """Every setting: the bridge's, then each of `carriers`' in their order."""
    return SETTINGS + tuple(s for c in carriers.values() for s in carrier_settings(c))


@dataclass(frozen=True)
class Settings:
    # One field per entry of SETTINGS, in its order (checked below), then the carriers'.
    cht_url: str
    require_cht: bool
    cht_username: str
    cht_password: Secret
    cht_timeout: float
    database: Path | str  # a str: a PostgreSQL URL
    commit_wait: float
    host: str
    port: int
    header_timeout: float
    keepalive_timeout: float
    max_header_bytes: int
    max_headers: int
    max_connections: int
    phone_login_attempts: int
    phone_login_lockout: float
    metrics_token: Secret
    metrics_listen: str
    metrics_phone_labels: bool
    public_url: str
    carriers: tuple[str, ...]
    timezone: str
    locale: str
    forms_file: Path | None
    forms_refresh: float
    contact_cache_ttl: float
    reject_unknown_senders: bool
    max_body_bytes: int
    dedup_window: float
    min_free_disk_mb: int
    sync_interval: float
    status_poll_interval: float
    message_ttl: float
    retention_days: int
    retry_base: float
    retry_cap: float
    bulk_share: float
    max_attempts: int
    lease_seconds: float
    routes: str
    channel_failures: int
    channel_failure_window: float
    channel_open_seconds: float
    channel_throttle_max: float
    reply_channel: str
    reply_window: float
    send_timeout: float
    ambiguous_grace: float
    ambiguous_action: str
    send_concurrency: int
    rates: str
    reply_lead: float
    loop_limit: int
    loop_window: float
    autoreply_burst: int
    console: bool
    console_roles: tuple[str, ...]
    console_secret: Secret
    console_session: float
    log_level: str
    # SMSBRIDGE_<CARRIER>_<NAME> values, keyed by carrier (in the order the carriers were
    # given to `from_env`) then by lower-case name; the declarations they were read by.
    carrier: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # None: built without the carriers (SMSBRIDGE_CARRIERS's names unchecked).
    carrier_settings: Mapping[str, tuple[Setting, ...]] | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        carriers: Mapping[str, CarrierSettings] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build the settings from `environ` (default: os.environ) and the settings `carriers`
        declare (smsbridge/carriers/__init__.py's CARRIERS, or `load_settings` there). Without
        `carriers` no carrier setting is read and SMSBRIDGE_CARRIERS's names are not checked:
        enough for what needs only the bridge's own settings (the database, for one). Every
        problem is collected and raised together as one SettingsError."""
        env = os.environ if environ is None else environ
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env, setting.default)
            try:
                values[setting.name] = setting.cast(raw)
            except (ValueError, TypeError) as exc:
                problems.append(Problem(setting.env, str(exc)))
        if carriers is not None:
            declared = {c.name: carrier_settings(c) for c in carriers.values()}
            values["carrier"] = {
                name: {s.name[len(name) + 1 :]: env.get(s.env, s.default) for s in group}
                for name, group in declared.items()
            }
            values["carrier_settings"] = {c.name: c.settings for c in carriers.values()}
        values.update(overrides)
        if problems:
            raise SettingsError(problems)
        settings = cls(**values)
        problems = settings.problems()
        if problems:
            raise SettingsError(problems)
        return settings

    def problems(self) -> list[Problem]:
        """What is wrong across settings that each converted (empty when all is well)."""
        found: list[Problem] = []
        known = self.carrier_settings
        unknown = [n for n in self.carriers if known is not None and n not in known]
        for name in unknown:
            found.append(
                Problem(
                    "SMSBRIDGE_CARRIERS",
                    f"unknown carrier {name!r} (known: {', '.join(sorted(known or ()))})",
                )
            )
        if self.cht_url:
            parts = urlsplit(self.cht_url)
            try:
                parts.port  # noqa: B018  (raises ValueError when out of range)
            except ValueError:
                parts = urlsplit("")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                found.append(
                    Problem("SMSBRIDGE_CHT_URL", "expected http(s)://[user:pass@]host[:port]")
                )
        elif self.require_cht:
            found.append(
                Problem(
                    "SMSBRIDGE_CHT_URL",
                    "empty, and SMSBRIDGE_REQUIRE_CHT is set: set it to your CHT server "
                    "(https://user:pass@host); without it smsbridge would run against the "
                    "built-in CHT simulator",
                )
            )
        if not 0 < self.port < 65536:
            found.append(Problem("SMSBRIDGE_PORT", "must be between 1 and 65535"))
        try:
            ZoneInfo(self.timezone)
        except Exception:
            found.append(Problem("SMSBRIDGE_TIMEZONE", f"unknown timezone {self.timezone!r}"))
        if self.forms_file is not None and not self.forms_file.is_file():
            found.append(Problem("SMSBRIDGE_FORMS_FILE", f"no such file {str(self.forms_file)!r}"))
        return found

    # -- CHT connection ----------------------------------------------------------------------

    @property
    def cht_base_url(self) -> str:
        """The CHT URL without credentials."""
        parts = urlsplit(self.cht_url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    @property
    def cht_credentials(self) -> tuple[str, Secret] | None:
        """(user, password) from the URL, else from the separate settings; None if neither."""
        parts = urlsplit(self.cht_url)
        if parts.username:
            return unquote(parts.username), Secret(unquote(parts.password or ""))
        if self.cht_username:
            return self.cht_username, self.cht_password
        return None

    @property
    def enabled_carriers(self) -> tuple[str, ...]:
        """SMSBRIDGE_CARRIERS in its order, or when that is empty every carrier whose webhook
        token is set, in the order the carriers were given. The first is the default route."""
        if self.carriers:
            return self.carriers
        return tuple(name for name in self.carrier if self.carrier_setting(name, "webhook_token"))

    def carrier_setting(self, carrier: str, name: str) -> str:
        return self.carrier.get(carrier, {}).get(name, "")

    def described(self) -> list[tuple[str, str]]:
        """(env name, value) for every setting, secrets masked: what check-config prints."""
        rows: list[tuple[str, str]] = []
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.name in ("cht_url", "database") and isinstance(value, str) and value:
                value = masked(value)  # a password in a CHT or PostgreSQL URL
            rows.append((setting.env, _show(value, setting.secret)))
        for carrier, group in (self.carrier_settings or {}).items():
            for s in group:
                value = self.carrier_setting(carrier, s.name)
                env = f"SMSBRIDGE_{carrier}_{s.name}".upper()
                rows.append((env, _show(value, s.secret)))
        return rows


def field_mismatches(cls: type, settings: Iterable[Setting]) -> list[str]:
    """How the fields of `cls` differ from `settings` in name or order (empty when they match;
    the two trailing carrier fields aside)."""
    names = [f.name for f in fields(cls)]
    declared = [s.name for s in settings] + ["carrier", "carrier_settings"]
    if names == declared:
        return []
    pairs = enumerate(zip_longest(names, declared, fillvalue="(nothing)"))
    return [f"field {i}: {have!r}, SETTINGS: {want!r}" for i, (have, want) in pairs if have != want]


_MISMATCHES = field_mismatches(Settings, SETTINGS)
if _MISMATCHES:  # a setting added to one list and not the other: fail at import, not later
    raise TypeError("Settings and SETTINGS differ: " + "; ".join(_MISMATCHES))


def _show(value: object, secret: bool) -> str:
    if secret:
        return MASK if value else ""
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None:
        return ""
    return str(value)
