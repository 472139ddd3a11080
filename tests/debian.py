"""Third-party programs from Debian's packages that some tests run for real (Kannel, nginx,
promtool). `program(name, package)` is the program's path; when it is missing the test skips
with the apt line that brings it, or, with CI set, fails (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def program(name: str, package: str) -> str:
    """The path of `name` (a command on PATH, in /usr/sbin, or an absolute path)."""
    found = name if os.path.isabs(name) and Path(name).is_file() else None
    found = found or shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    why = f"{name} is not installed: apt-get install {package}"
    if os.environ.get("CI"):
        pytest.fail(why + " (.ci/run installs it)")
    pytest.skip(why)
