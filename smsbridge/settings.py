"""Settings, read once from the environment (`Settings.from_env`) and passed down.

Every setting is declared once in `SETTINGS` (name, default, meaning). README's settings table,
`smsbridge check-config` and `systemd/smsbridge.env.example` all come from, or are checked
against, this one list. Carrier settings are `SMSBRIDGE_<CARRIER>_<NAME>`; each carrier module
declares its own in `CARRIER_SETTINGS` below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from smsbridge.errors import ConfigError


class Secret(str):
    """A string that never shows itself in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "Secret('****')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Setting:
    """One environment variable: `SMSBRIDGE_<name upper>`."""

    name: str
    default: str
    doc: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "SMSBRIDGE_" + self.name.upper()


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


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


# name, default, meaning. Order is the order of README's table.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "cht_url",
        "",
        "CHT server URL; credentials may ride in it "
        "(`https://user:pass@host`). Empty: run against the built-in CHT simulator.",
    ),
    Setting(
        "require_cht",
        "false",
        "Refuse to start (`serve` and `check-config` exit 2) while SMSBRIDGE_CHT_URL is empty, "
        "instead of running against the built-in CHT simulator. The systemd unit sets it: a "
        "production box must not silently run the sandbox.",
    ),
    Setting("cht_username", "", "CHT user, when not given in the URL."),
    Setting("cht_password", "", "CHT password, when not given in the URL.", secret=True),
    Setting("cht_timeout", "30", "Seconds before a CHT request times out."),
    Setting("database", "smsbridge.db", "Path of the SQLite database file."),
    Setting("host", "127.0.0.1", "Address `smsbridge serve` listens on."),
    Setting("port", "8080", "Port `smsbridge serve` listens on."),
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
    ),
    Setting("timezone", "UTC", "The CHT server's timezone; SMS dates are read in it."),
    Setting("locale", "en", "Default locale for parsing and replies when CHT does not set one."),
    Setting(
        "forms_file",
        "",
        "A local JSON file of form definitions (a `forms` object or an "
        "app_settings export), used instead of CHT's settings.",
    ),
    Setting(
        "forms_refresh",
        "300",
        "Seconds between refreshes of form definitions and settings from CHT.",
    ),
    Setting("contact_cache_ttl", "600", "Seconds a contacts-by-phone answer is cached."),
    Setting(
        "reject_unknown_senders",
        "false",
        "Reject SMS from numbers CHT does not know, with a reply, instead of accepting them.",
    ),
    Setting(
        "max_body_bytes",
        "65536",
        "Largest webhook body, or query string of a GET webhook, accepted (413 above it).",
    ),
    Setting(
        "dedup_window",
        "120",
        "Seconds in which an SMS without a carrier id, from the same "
        "sender with the same text, counts as a duplicate.",
    ),
    Setting("sync_interval", "30", "Seconds between exchanges with CHT's /api/sms."),
    Setting(
        "message_ttl",
        "86400",
        "Seconds after which an unsent outgoing SMS fails as `expired` instead of being sent late.",
    ),
    Setting("retry_base", "5", "Seconds of the first retry delay (doubles each attempt)."),
    Setting("retry_cap", "3600", "Largest retry delay, in seconds."),
    Setting("max_attempts", "12", "Attempts before a task gives up into the dead-letter list."),
    Setting("lease_seconds", "60", "How long a worker's claim on a task lasts."),
    Setting(
        "routes",
        "",
        "Outgoing routing: `prefix=channel|failover;...;*=channel`, "
        "e.g. `+254=africastalking|twilio;*=twilio`. Empty: the first enabled carrier.",
    ),
    Setting(
        "send_timeout",
        "30",
        "Seconds before a carrier's send request times out "
        "(then retried: a timeout is a transient failure).",
    ),
    Setting(
        "rates",
        "",
        "Send rates per channel in SMS segments: `channel=segments[/seconds]`, "
        "comma-separated, e.g. `twilio=1,chtgateway=30/1800`. Unlisted channels: no limit.",
    ),
    Setting(
        "loop_limit",
        "3",
        "Identical SMS to one number allowed within `loop_window`; more are held.",
    ),
    Setting("loop_window", "3600", "Seconds of the loop-guard window."),
    Setting(
        "autoreply_burst",
        "10",
        "Inbound SMS from one number within a minute after which automatic replies to it stop.",
    ),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR."),
)

# Carrier-specific settings: carrier -> settings, each read as SMSBRIDGE_<CARRIER>_<NAME>.
CARRIER_SETTINGS: dict[str, tuple[Setting, ...]] = {}


def declare_carrier_settings(carrier: str, settings: tuple[Setting, ...]) -> None:
    """Called by a carrier module at import time to declare its SMSBRIDGE_<CARRIER>_* settings."""
    CARRIER_SETTINGS[carrier] = tuple(
        Setting(f"{carrier}_{s.name}", s.default, s.doc, s.secret) for s in settings
    )


def all_settings() -> tuple[Setting, ...]:
    """Every setting, carriers' included (importing the carrier modules declares theirs)."""
    import smsbridge.carriers  # noqa: F401  (declares carrier settings)

    extra = tuple(s for group in CARRIER_SETTINGS.values() for s in group)
    return SETTINGS + extra


@dataclass(frozen=True)
class Settings:
    cht_url: str
    require_cht: bool
    cht_username: str
    cht_password: Secret
    cht_timeout: float
    database: Path
    host: str
    port: int
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
    sync_interval: float
    message_ttl: float
    retry_base: float
    retry_cap: float
    max_attempts: int
    lease_seconds: float
    routes: str
    send_timeout: float
    rates: str
    loop_limit: int
    loop_window: float
    autoreply_burst: int
    log_level: str
    # SMSBRIDGE_<CARRIER>_<NAME> values, keyed by carrier then by lower-case name.
    carrier: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build the settings from `environ` (default: os.environ). Every problem is collected
        and raised together as one ConfigError, one problem per line."""
        env = os.environ if environ is None else environ
        problems: list[str] = []
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env, setting.default)
            try:
                values[setting.name] = _CONVERT.get(setting.name, str)(raw)
            except (ValueError, TypeError) as exc:
                problems.append(f"{setting.env}: {exc}")
        carrier_values: dict[str, dict[str, str]] = {}
        for carrier, group in _carrier_groups().items():
            prefix = f"{carrier}_"
            carrier_values[carrier] = {
                s.name[len(prefix) :]: env.get(s.env, s.default) for s in group
            }
        values["carrier"] = carrier_values
        values.update(overrides)
        if problems:
            raise ConfigError("\n".join(problems))
        settings = cls(**values)
        problems = settings.problems()
        if problems:
            raise ConfigError("\n".join(problems))
        return settings

    def problems(self) -> list[str]:
        """Everything wrong with these settings, one line each (empty when all is well)."""
        found: list[str] = []
        known = set(_carrier_groups())
        for name in self.carriers:
            if name not in known:
                found.append(
                    f"SMSBRIDGE_CARRIERS: unknown carrier {name!r} "
                    f"(known: {', '.join(sorted(known))})"
                )
        if self.cht_url:
            parts = urlsplit(self.cht_url)
            try:
                parts.port  # noqa: B018  (raises ValueError when out of range)
            except ValueError:
                parts = urlsplit("")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                found.append("SMSBRIDGE_CHT_URL: expected http(s)://[user:pass@]host[:port]")
        elif self.require_cht:
            found.append(
                "SMSBRIDGE_CHT_URL: empty, and SMSBRIDGE_REQUIRE_CHT is set: set it to your CHT "
                "server (https://user:pass@host); without it smsbridge would run against the "
                "built-in CHT simulator"
            )
        if not 0 < self.port < 65536:
            found.append("SMSBRIDGE_PORT: must be between 1 and 65535")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            found.append(f"SMSBRIDGE_TIMEZONE: unknown timezone {self.timezone!r}")
        if self.forms_file is not None and not self.forms_file.is_file():
            found.append(f"SMSBRIDGE_FORMS_FILE: no such file {str(self.forms_file)!r}")
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
        token is set, in the order carriers are registered. The first is the default route."""
        if self.carriers:
            return self.carriers
        from smsbridge.carriers import CARRIERS

        return tuple(name for name in CARRIERS if self.carrier_setting(name, "webhook_token"))

    def carrier_setting(self, carrier: str, name: str) -> str:
        return self.carrier.get(carrier, {}).get(name, "")

    def described(self) -> list[tuple[str, str]]:
        """(env name, value) for every setting, secrets masked: what check-config prints."""
        rows: list[tuple[str, str]] = []
        by_name = {f.name: getattr(self, f.name) for f in fields(self)}
        for setting in SETTINGS:
            value = by_name[setting.name]
            if setting.name == "cht_url" and value:
                value = _mask_url(value)
            rows.append((setting.env, _show(value, setting.secret)))
        for carrier, group in _carrier_groups().items():
            for s in group:
                value = self.carrier_setting(carrier, s.name[len(carrier) + 1 :])
                rows.append((s.env, _show(value, s.secret)))
        return rows


def _carrier_groups() -> dict[str, tuple[Setting, ...]]:
    import smsbridge.carriers  # noqa: F401  (declares carrier settings)

    return CARRIER_SETTINGS


def _show(value: object, secret: bool) -> str:
    if secret:
        return "****" if value else ""
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None:
        return ""
    return str(value)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw.strip() else None


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        value = kind(raw)
        if value < 0:
            raise ValueError(f"must not be negative, got {raw!r}")
        return value

    return convert


def _checked(raw: str, module: str, parser: str) -> str:
    """Keep `raw` as given after checking its syntax with `module.parser` (outgoing routes and
    rates are parsed where they are used)."""
    import importlib

    target: Any = importlib.import_module(module)
    for part in parser.split("."):
        target = getattr(target, part)
    try:
        target(raw)
    except ConfigError as exc:
        raise ValueError(exc.detail.split(": ", 1)[-1]) from exc
    return raw.strip()


_CONVERT: dict[str, Callable[[str], Any]] = {
    "cht_url": lambda raw: raw.strip(),
    "cht_password": Secret,
    "cht_timeout": _positive(_seconds),
    "database": Path,
    "port": _whole,
    "carriers": _list,
    "forms_file": _optional_path,
    "forms_refresh": _positive(_seconds),
    "contact_cache_ttl": _positive(_seconds),
    "require_cht": _bool,
    "reject_unknown_senders": _bool,
    "max_body_bytes": _positive(_whole),
    "dedup_window": _positive(_seconds),
    "sync_interval": _positive(_seconds),
    "message_ttl": _positive(_seconds),
    "retry_base": _positive(_seconds),
    "retry_cap": _positive(_seconds),
    "max_attempts": _positive(_whole),
    "lease_seconds": _positive(_seconds),
    "send_timeout": _positive(_seconds),
    "routes": lambda raw: _checked(raw, "smsbridge.outbound.routing", "Routes.parse"),
    "rates": lambda raw: _checked(raw, "smsbridge.outbound.ratelimit", "parse_rates"),
    "loop_limit": _positive(_whole),
    "loop_window": _positive(_seconds),
    "autoreply_burst": _positive(_whole),
    "log_level": _log_level,
}
