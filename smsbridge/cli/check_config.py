"""`smsbridge check-config`: the effective settings, secrets masked, and every problem at once.

Settings.from_env stops at the first stage that fails (values that do not convert, then checks
across settings); here the bad values are set aside and the rest checked again, so that one run
lists everything an operator has to fix. The database location is checked as well, and so are
the carriers: what would fail at start or on every request is a problem (exit 2: `serve` refuses
to start); what only leaves a carrier half-working (no webhook token, no sending credentials
for a channel that routing can pick, no URL for delivery reports) is a warning.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from smsbridge.cli.tables import render_table
from smsbridge.errors import ConfigError
from smsbridge.settings import Settings, all_settings


@dataclass(frozen=True)
class ConfigReport:
    rows: list[dict[str, str]]  # setting, value (secrets masked), source ("env" | "default")
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(environ: Mapping[str, str] | None = None) -> ConfigReport:
    env = dict(os.environ if environ is None else environ)
    problems: list[str] = []
    bad: set[str] = set()
    settings: Settings | None = None
    for _ in range(len(all_settings()) + 1):
        usable = {k: v for k, v in env.items() if k not in bad}
        try:
            settings = Settings.from_env(usable)
            break
        except ConfigError as exc:
            lines = [line for line in exc.detail.splitlines() if line.strip()]
            fresh = [line for line in lines if line not in problems]
            problems += fresh
            culprits = {_culprit(line) for line in lines} & set(usable) - bad
            if not culprits:  # problems across settings: nothing more to set aside
                break
            bad |= culprits
    warnings: list[str] = []
    if settings is not None:
        problems += [p for p in _database_problems(settings.database) if p not in problems]
        problems += [p for p in carrier_problems(settings) if p not in problems]
        warnings = carrier_warnings(settings)
    return ConfigReport(_rows(env, settings, bad), problems, warnings)


# -- carriers ------------------------------------------------------------------------------------

URL_SETTINGS = (
    ("", "public_url"),
    ("africastalking", "api_url"),
    ("twilio", "api_url"),
    ("vonage", "api_url"),
    ("generic", "send_url"),
)


def url_ok(raw: str) -> bool:
    """An http(s) URL with a host (and a port in range, if any)."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _env(carrier: str, name: str) -> str:
    return f"SMSBRIDGE_{carrier.upper()}_{name.upper()}"


def carrier_problems(settings: Settings) -> list[str]:
    """What would make `serve` fail at start, or fail every request of some kind."""
    from smsbridge.carriers import vonage
    from smsbridge.outbound.routing import Routes

    found: list[str] = []
    enabled = settings.enabled_carriers
    try:
        Routes.parse(settings.routes, enabled)
    except ConfigError as exc:
        found.append(exc.detail)
    for carrier, name in URL_SETTINGS:
        raw = settings.carrier_setting(carrier, name) if carrier else settings.public_url
        if raw and not url_ok(raw):
            env = _env(carrier, name) if carrier else "SMSBRIDGE_PUBLIC_URL"
            found.append(f"{env}: expected an http(s)://host[:port][/path] URL, got {raw!r}")
    batch = settings.carrier_setting("chtgateway", "batch") or "25"
    if not (batch.strip().isdigit() and int(batch) > 0):
        found.append(f"SMSBRIDGE_CHTGATEWAY_BATCH: expected a whole number above 0, got {batch!r}")
    for item in settings.carrier_setting("chtgateway", "accounts").split(","):
        user, sep, password = item.strip().partition(":")
        if item.strip() and (not sep or not user or not password):
            found.append(
                "SMSBRIDGE_CHTGATEWAY_ACCOUNTS: expected user:password,... "
                f"(an account without a user or a password: {user or item.strip()!r})"
            )
    method = settings.carrier_setting("vonage", "signature_method") or "md5hash"
    if method.lower() not in vonage.METHODS:
        found.append(
            f"SMSBRIDGE_VONAGE_SIGNATURE_METHOD: expected one of {', '.join(vonage.METHODS)}, "
            f"got {method!r}"
        )
    send_format = settings.carrier_setting("generic", "send_format") or "json"
    if send_format not in ("json", "form"):
        found.append(f"SMSBRIDGE_GENERIC_SEND_FORMAT: expected json or form, got {send_format!r}")
    return found


def carrier_warnings(settings: Settings) -> list[str]:
    """What leaves an enabled carrier half-working."""
    from smsbridge.carriers import CARRIERS
    from smsbridge.carriers.sending import unset
    from smsbridge.outbound.routing import Routes, channel_carrier
    from smsbridge.service import carrier_config

    found: list[str] = []
    enabled = settings.enabled_carriers
    if not enabled and settings.cht_url:
        found.append(
            "SMSBRIDGE_CARRIERS is empty and no carrier has a webhook token: no carrier is "
            "enabled, so no SMS can be received or sent"
        )
    for carrier in enabled:
        if carrier != "chtgateway" and not settings.carrier_setting(carrier, "webhook_token"):
            found.append(
                f"{_env(carrier, 'webhook_token')} is empty: {carrier} is enabled but every "
                "webhook to it gets 401"
            )
    if "twilio" in enabled and not (
        settings.carrier_setting("twilio", "auth_token")
        or settings.carrier_setting("twilio", "signing_key")
    ):
        found.append(
            "SMSBRIDGE_TWILIO_AUTH_TOKEN is empty: Twilio webhooks are not signature-checked"
        )
    try:
        senders = {channel_carrier(c) for c in Routes.parse(settings.routes, enabled).channels}
    except ConfigError:
        senders = set()
    for carrier in [c for c in enabled if c in CARRIERS and c in senders]:
        # what each carrier's `send` refuses to go without (its module's SEND_NEEDS)
        needs = getattr(CARRIERS[carrier], "SEND_NEEDS", ())
        missing = unset(carrier_config(settings, carrier), needs)
        if missing:
            found.append(
                f"{carrier} sends SMS (SMSBRIDGE_ROUTES) but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} empty: its SMS will fail"
            )
    reported = sorted(c for c in senders & {"twilio", "vonage", "generic"} if c in enabled)
    if reported and not settings.public_url:
        found.append(
            f"SMSBRIDGE_PUBLIC_URL is empty: {', '.join(reported)} cannot be asked for "
            "delivery reports (SMS stay `sent`, never `delivered`)"
        )
    return found


def _culprit(line: str) -> str:
    name, _, _ = line.partition(":")
    return name.strip()


def _rows(env: Mapping[str, str], settings: Settings | None, bad: set[str]) -> list[dict[str, str]]:
    shown = dict(settings.described()) if settings is not None else {}
    rows = []
    for setting in all_settings():
        if setting.env in bad or setting.env not in shown:
            raw = env.get(setting.env, setting.default)
            value = ("****" if raw else "") if setting.secret else _hide_credentials(raw)
            if setting.env in bad:
                value += "  (invalid)"
        else:
            value = _plain(shown[setting.env])
        source = "env" if setting.env in env else "default"
        rows.append({"setting": setting.env, "value": value, "source": source})
    return rows


def _hide_credentials(raw: str) -> str:
    """`scheme://user:****@host...`: a password in a URL that did not pass the checks (the
    valid ones are masked by Settings.described)."""
    return re.sub(r"(://[^/@\s]*?:)[^@/\s]*@", r"\1****@", raw)


def _plain(value: str) -> str:
    """A converted value the way an operator writes it (`30`, not `30.0`; `false`, not
    `False`), so that check-config's output can be pasted back into the environment."""
    if value in ("True", "False"):
        return value.lower()
    if value.endswith(".0") and value[:-2].isdigit():
        return value[:-2]
    return value


def _database_problems(database: Path) -> list[str]:
    directory = database.parent if str(database.parent) else Path(".")
    if database.exists() and not os.access(database, os.W_OK):
        return [f"SMSBRIDGE_DATABASE: {str(database)!r} is not writable"]
    if not directory.is_dir():
        return [f"SMSBRIDGE_DATABASE: directory {str(directory)!r} does not exist"]
    if not os.access(directory, os.W_OK | os.X_OK):
        return [f"SMSBRIDGE_DATABASE: directory {str(directory)!r} is not writable"]
    return []


def render(report: ConfigReport, *, as_json: bool = False) -> str:
    """The report as a table followed by the problems, or as one JSON object."""
    if as_json:
        return json.dumps(
            {
                "ok": report.ok,
                "settings": report.rows,
                "problems": report.problems,
                "warnings": report.warnings,
            },
            indent=2,
        )
    table = render_table(
        ["SETTING", "VALUE", "SOURCE"],
        [[r["setting"], r["value"], r["source"]] for r in report.rows],
    )
    text = table
    if report.warnings:
        listed = "\n".join(f"  - {warning}" for warning in report.warnings)
        text += f"\n\n{len(report.warnings)} warning(s):\n{listed}"
    if report.ok:
        return text + "\n\nconfiguration OK"
    listed = "\n".join(f"  - {problem}" for problem in report.problems)
    return f"{text}\n\n{len(report.problems)} problem(s):\n{listed}"
