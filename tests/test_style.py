"""ruff (lint and format) and mypy are clean: the code style DESIGN.md asks for is checked on
every run, not only when someone remembers. The tool versions are pinned in the `test` extra so
that a new release cannot turn a clean tree red on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    "ruff check": ["-m", "ruff", "check", "smsbridge", "tests", "bench"],
    "ruff format": ["-m", "ruff", "format", "--check", "smsbridge", "tests", "bench"],
    "mypy": ["-m", "mypy"],  # what it checks (smsbridge/) is set in pyproject.toml
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_tree_is_clean(name: str, tmp_path: Path) -> None:
    command = [sys.executable, *CHECKS[name]]
    if name == "mypy":
        command += ["--cache-dir", str(tmp_path / "mypy-cache")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
