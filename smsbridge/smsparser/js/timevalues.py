"""JS time values (ECMAScript's MakeDay/MakeTime/TimeClip) and local time in the configured
server timezone, as `new Date(y, m, d, ...)` and `Date.UTC(...)` compute them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from smsbridge.smsparser.js.numbers import normalize_number

NAN = math.nan
MAX_TIME = 8.64e15
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1)
_CYCLE_MS = 146_097 * 86_400_000  # 400 Gregorian years


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def make_day(year: float, month: float, day: float) -> float:
    """ECMAScript MakeDay (month is 0-based; overflow rolls over)."""
    if not all(math.isfinite(v) for v in (year, month, day)):
        return NAN
    y, m, dt = int(year), int(month), int(day)
    ym = y + m // 12
    mn = m % 12
    if abs(ym) > 400_000:
        return NAN
    return _days_from_civil(ym, mn + 1, 1) + dt - 1


def make_time(h: float, mi: float, s: float, ms: float) -> float:
    return h * 3_600_000 + mi * 60_000 + s * 1000 + ms


def time_clip(t: float) -> float | int:
    if not math.isfinite(t) or abs(t) > MAX_TIME:
        return NAN
    return normalize_number(float(int(t)))


def local_to_utc(t: float, tz: str) -> float:
    """UTC(t) for a local time value t (ms), using the zone's offset at that wall time."""
    if tz == "UTC" or not math.isfinite(t):
        return t
    try:
        naive = _EPOCH + timedelta(milliseconds=t)
    except OverflowError:
        # beyond year 9999: the same wall time 400-year cycles earlier has the same rules
        if t < 0:  # before year 1: the zone's earliest (local mean time) offset
            first = datetime(1, 1, 2, tzinfo=zone(tz)).utcoffset()
            return t - (first.total_seconds() * 1000 if first else 0)
        cycles = int(t // _CYCLE_MS)
        return local_to_utc(t - cycles * _CYCLE_MS, tz) + cycles * _CYCLE_MS
    off = naive.replace(tzinfo=zone(tz)).utcoffset()
    return t - (off.total_seconds() * 1000 if off else 0)


def local_ms(y: float, mo: float, d: float, h: float = 0, mi: float = 0, s: float = 0,
             ms: float = 0, tz: str = "UTC") -> float | int:  # fmt: skip
    """Local wall time (month 1-based) -> epoch ms, JS overflow semantics."""
    t = make_day(y, mo - 1, d) * DAY_MS + make_time(h, mi, s, ms)
    if not math.isfinite(t) or abs(t) > MAX_TIME + DAY_MS:
        return NAN
    return time_clip(local_to_utc(t, tz))


def utc_ms(y: float, mo: float, d: float, h: float = 0, mi: float = 0, s: float = 0,
           ms: float = 0) -> float | int:  # fmt: skip
    return time_clip(make_day(y, mo - 1, d) * DAY_MS + make_time(h, mi, s, ms))
