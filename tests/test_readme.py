"""README stays true: every setting in its table, the generated parts up to date, every CLI
command documented."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from smsbridge.carriers import every_setting
from smsbridge.cli.main import build_parser
from smsbridge.settings import Setting

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("docs_script", ROOT / "scripts" / "docs.py")
assert _spec is not None and _spec.loader is not None
docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs)
README_START, README_END, settings_table, stale = (
    docs.README_START,
    docs.README_END,
    docs.settings_table,
    docs.stale,
)
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _settings_block() -> str:
    return README[README.index(README_START) : README.index(README_END)]


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    block = _settings_block()
    rows = dict(re.findall(r"^\| `(SMSBRIDGE_\w+)` \| (.*?) \|", block, flags=re.M))
    missing = [s.env for s in every_setting() if s.env not in rows]
    assert not missing, f"missing from README (run `python scripts/docs.py --write`): {missing}"
    for s in every_setting():
        shown = f"`{s.default}`" if s.default else "(empty)"
        assert rows[s.env] == shown.replace("|", "\\|"), s.env


def test_readme_and_env_example_are_generated_from_the_settings() -> None:
    assert stale(ROOT) == [], "run `python scripts/docs.py --write`"


def test_the_documented_command_checks_the_generated_files() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "| `SMSBRIDGE_TWILIO_AUTH_TOKEN` |"
        in subprocess.run(
            [sys.executable, "scripts/docs.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )


def test_the_table_check_can_fail() -> None:
    extra = Setting("made_up_for_test", "1", "Nothing.")
    assert "SMSBRIDGE_MADE_UP_FOR_TEST" in settings_table((*every_setting(), extra))
    assert "SMSBRIDGE_MADE_UP_FOR_TEST" not in _settings_block()


def _commands(parser: argparse.ArgumentParser, prefix: str = "smsbridge") -> list[str]:
    """Every command line down to the leaves: `smsbridge outbox retry`, ..."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, f"{prefix} {name}")
    return found or [prefix]


def test_every_cli_command_is_in_the_reference() -> None:
    commands = _commands(build_parser())
    assert "smsbridge outbox release" in commands
    reference = README[README.index("## CLI") :]
    missing = [c for c in commands if f"`{c}" not in reference]
    assert not missing, f"commands missing from README's CLI reference: {missing}"


def test_the_set_up_commands_are_the_two_documented_ones() -> None:
    assert "pip install . && smsbridge serve" in README
    assert "pip install -e '.[test]' && pytest" in README


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("pip ")]
    assert commands == ["pip install -e '.[test]' && pytest"], commands
    assert f"```sh\n{commands[0]}\n```" in README
