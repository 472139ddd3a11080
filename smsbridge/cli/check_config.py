"""`smsbridge check-config`: the effective settings, secrets masked, and every problem at once.

Settings.from_env stops at the first stage that fails (values that do not convert, then checks
across settings); here the settings its problems name are set aside and the rest checked again,
so that one run lists everything an operator has to fix. The database location is checked as
well, and so are the carriers (smsbridge/outbound/carriercheck.py): what would fail at start or
on every request is a problem (exit 2: `serve` refuses to start); what only leaves a carrier
half-working (no webhook token, no sending credentials for a channel that routing can pick, no
URL for delivery reports) is a warning. Each carrier checks its own settings (`Carrier.check`);
nothing here names one. Settings of a carrier that is not enabled are a warning too (they do
nothing: a phone account with the phones' carrier not enabled cannot log in). When the carrier
list or the routes are set aside as invalid, no carrier warning is given: they would be about
carriers and routes other than the ones configured.

An `SMSBRIDGE_*` variable no setting declares (a typo: `SMSBRIDGE_TWILLIO_AUTH_TOKEN`) is a
warning naming the closest known setting. With `probe_cht` (the `check-config` command; `serve`
does not call CHT before it starts) and CHT configured, CHT itself is asked: our credentials,
the user's gateway permission and `sms.outgoing_service` (smsbridge/cht/requirements.py), each
problem saying what to change in CHT's settings.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smsbridge.carriers import CARRIERS, every_setting, load_settings
from smsbridge.carriers.base import CarrierConfig
from smsbridge.cht.requirements import cht_findings
from smsbridge.cli.tables import render_table
from smsbridge.errors import ConfigError
from smsbridge.migrations import MIGRATIONS, schema_mismatch, schema_version
from smsbridge.outbound.carriercheck import carrier_problems, carrier_warnings
from smsbridge.sandbox import as_served
from smsbridge.settings import Settings, SettingsError

# The settings the carrier warnings (smsbridge/outbound/carriercheck.py) are worked out from.
_CARRIER_CHOICE = frozenset({"SMSBRIDGE_CARRIERS", "SMSBRIDGE_ROUTES"})


@dataclass(frozen=True)
class ConfigReport:
    rows: list[dict[str, str]]  # setting, value (secrets masked), source ("env" | "default")
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: Settings | None = None  # what the environment gave, when it could be read

    @property
    def ok(self) -> bool:
        return not self.problems


def check(environ: Mapping[str, str] | None = None, *, probe_cht: bool = False) -> ConfigReport:
    """Every problem and warning of the settings in `environ` (default: os.environ); with
    `probe_cht`, of CHT's own configuration too (the module doc)."""
    env = dict(os.environ if environ is None else environ)
    problems: list[str] = []
    bad: set[str] = set()
    settings: Settings | None = None
    for _ in range(len(every_setting()) + 1):
        usable = {k: v for k, v in env.items() if k not in bad}
        try:
            settings = load_settings(usable)
            break
        except SettingsError as exc:
            lines = [str(p) for p in exc.problems]
            problems += [line for line in lines if line not in problems]
            culprits = {p.env for p in exc.problems} & set(usable) - bad
            if not culprits:  # problems across settings: nothing more to set aside
                break
            bad |= culprits
    warnings: list[str] = []
    if settings is not None:
        problems += [p for p in _database_problems(settings.database) if p not in problems]
        served = as_served(settings)  # the sandbox's demo carrier, when it would run
        problems += [p for p in carrier_problems(served) if p not in problems]
        if not bad & _CARRIER_CHOICE:
            warnings = carrier_warnings(settings) + idle_carrier_settings(env, settings)
        if probe_cht and settings.cht_url and not problems:
            cht_problems, cht_warnings = asyncio.run(cht_findings(settings))
            problems += cht_problems
            warnings += cht_warnings
    warnings = unknown_names(env) + warnings
    return ConfigReport(_rows(env, settings, bad), problems, warnings, settings)


def unknown_names(env: Mapping[str, str]) -> list[str]:
    """A warning for each SMSBRIDGE_* variable no setting declares, naming the closest one."""
    known = sorted(s.env for s in every_setting())
    found = []
    for name in sorted(n for n in env if n.startswith("SMSBRIDGE_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else ""
        found.append(f"{name} is not a smsbridge setting and is ignored{hint}")
    return found


def idle_carrier_settings(env: Mapping[str, str], settings: Settings) -> list[str]:
    """A warning for each carrier that is not enabled but has settings of its own in `env`."""
    enabled = settings.enabled_carriers
    if settings.carriers:
        why = f"SMSBRIDGE_CARRIERS={','.join(enabled)}"
    else:
        why = "SMSBRIDGE_CARRIERS is empty: only carriers with a webhook token are"
    found = []
    for carrier in CARRIERS.values():
        if carrier.name in enabled:
            continue
        config = CarrierConfig(carrier.name)
        names = [config.env(s.name) for s in carrier.settings if env.get(config.env(s.name))]
        if names:
            verb = "is" if len(names) == 1 else "are"
            found.append(
                f"{', '.join(names)} {verb} set but {carrier.name} is not enabled ({why}): "
                f"{'it is' if len(names) == 1 else 'they are'} ignored until {carrier.name} "
                "is added to SMSBRIDGE_CARRIERS"
            )
    return found


def _rows(env: Mapping[str, str], settings: Settings | None, bad: set[str]) -> list[dict[str, str]]:
    shown = dict(settings.described()) if settings is not None else {}
    rows = []
    for setting in every_setting():
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


def _database_problems(database: Path | str) -> list[str]:
    if isinstance(database, str):  # PostgreSQL: smsbridge/postgres/store.py says what is wrong
        from smsbridge.postgres.store import problems

        return problems(database)
    directory = database.parent if str(database.parent) else Path(".")
    if database.exists() and not os.access(database, os.W_OK):
        return [f"SMSBRIDGE_DATABASE: {str(database)!r} is not writable"]
    if not directory.is_dir():
        return [f"SMSBRIDGE_DATABASE: directory {str(directory)!r} does not exist"]
    if not os.access(directory, os.W_OK | os.X_OK):
        return [f"SMSBRIDGE_DATABASE: directory {str(directory)!r} is not writable"]
    if database.is_dir():
        return [f"SMSBRIDGE_DATABASE: {str(database)!r} is a directory, not a database file"]
    if database.exists():
        try:
            version = schema_version(database)
        except ConfigError as exc:
            return [exc.detail]
        if version > len(MIGRATIONS):
            return [str(schema_mismatch(repr(str(database)), version))]
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
