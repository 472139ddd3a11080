"""`smsbridge check-config`: the effective settings, secrets masked, and every problem at once.

Settings.from_env stops at the first stage that fails (values that do not convert, then checks
across settings); here the bad values are set aside and the rest checked again, so that one run
lists everything an operator has to fix. The database location is checked as well.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smsbridge.errors import ConfigError
from smsbridge.settings import Settings, all_settings
from smsbridge.tables import render_table


@dataclass(frozen=True)
class ConfigReport:
    rows: list[dict[str, str]]  # setting, value (secrets masked), source ("env" | "default")
    problems: list[str] = field(default_factory=list)

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
    if settings is not None:
        problems += [p for p in _database_problems(settings.database) if p not in problems]
    return ConfigReport(_rows(env, settings, bad), problems)


def _culprit(line: str) -> str:
    name, _, _ = line.partition(":")
    return name.strip()


def _rows(env: Mapping[str, str], settings: Settings | None, bad: set[str]) -> list[dict[str, str]]:
    shown = dict(settings.described()) if settings is not None else {}
    rows = []
    for setting in all_settings():
        if setting.env in bad or setting.env not in shown:
            raw = env.get(setting.env, setting.default)
            value = ("****" if raw else "") if setting.secret else raw
            if setting.env in bad:
                value += "  (invalid)"
        else:
            value = shown[setting.env]
        source = "env" if setting.env in env else "default"
        rows.append({"setting": setting.env, "value": value, "source": source})
    return rows


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
            {"ok": report.ok, "settings": report.rows, "problems": report.problems}, indent=2
        )
    table = render_table(
        ["SETTING", "VALUE", "SOURCE"],
        [[r["setting"], r["value"], r["source"]] for r in report.rows],
    )
    if report.ok:
        return table + "\n\nconfiguration OK"
    listed = "\n".join(f"  - {problem}" for problem in report.problems)
    return f"{table}\n\n{len(report.problems)} problem(s):\n{listed}"
