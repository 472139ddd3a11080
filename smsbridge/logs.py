"""Logging set-up and redaction. Health data stays out of logs (DESIGN.md, rule 6): log ids,
states and counts; mask phone numbers with `phone.mask`; never log SMS text or secrets at INFO
or above. Lines are `key=value` structured: use `event(logger, "name", key=value, ...)`."""

from __future__ import annotations

import logging
import sys
from typing import Any


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("smsbridge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = True


def _value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured line: `name key=value ...`."""
    if logger.isEnabledFor(level):
        parts = [name] + [f"{key}={_value(value)}" for key, value in fields.items()]
        logger.log(level, " ".join(parts))
