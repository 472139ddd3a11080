"""The one Retry-After parser (RFC 9110 §10.2.3) for every peer, CHT and the carriers: the header
holds either delay-seconds or an HTTP date. Imports neither Starlette nor the store, so carrier
modules may use it (docs/architecture.md, rule 3).

    retry_after(headers, now=None) -> seconds to wait (>= 0), or None when absent or unreadable
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import UTC


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until a retry is welcome: `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015
    07:28:00 GMT` (a date in the past is 0). `now` (epoch seconds) defaults to the wall clock:
    a date is a wall-clock time."""
    raw = (headers.get("retry-after") or "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
