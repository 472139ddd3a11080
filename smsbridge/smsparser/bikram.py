"""Bikram Sambat -> Gregorian, as bikram-sambat 1.8.1 (Apache-2.0, (c) Medic) computes it,
including how it treats non-numeric and missing parts.

The month-length table is vendored from bikram-sambat 1.8.1 (`js/src/index.js`): one integer
per BS year from 1970, 2 bits per month, month length = 29 + bits.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

from smsbridge.smsparser.js.moment import moment_ms
from smsbridge.smsparser.js.numbers import to_int32, to_number
from smsbridge.smsparser.js.timevalues import NAN, time_clip

_MS_PER_DAY = 86_400_000
_EPOCH_TS = -1789990200000  # Date.parse('1913-4-13') in the library's build environment
_YEAR_ZERO = 1970
_MONTH_LENGTHS = (
    5315258, 5314490, 9459438, 8673005, 5315258, 5315066, 9459438, 8673005, 5315258, 5314298,
    9459438, 5327594, 5315258, 5314298, 9459438, 5327594, 5315258, 5314286, 9459438, 5315306,
    5315258, 5314286, 8673006, 5315306, 5315258, 5265134, 8673006, 5315258, 5315258, 9459438,
    8673005, 5315258, 5314298, 9459438, 8673005, 5315258, 5314298, 9459438, 8473322, 5315258,
    5314298, 9459438, 5327594, 5315258, 5314298, 9459438, 5327594, 5315258, 5314286, 8673006,
    5315306, 5315258, 5265134, 8673006, 5315306, 5315258, 9459438, 8673005, 5315258, 5314490,
    9459438, 8673005, 5315258, 5314298, 9459438, 8473325, 5315258, 5314298, 9459438, 5327594,
    5315258, 5314298, 9459438, 5327594, 5315258, 5314286, 9459438, 5315306, 5315258, 5265134,
    8673006, 5315306, 5315258, 5265134, 8673006, 5315258, 5314490, 9459438, 8673005, 5315258,
    5314298, 9459438, 8669933, 5315258, 5314298, 9459438, 8473322, 5315258, 5314298, 9459438,
    5327594, 5315258, 5314286, 9459438, 5315306, 5315258, 5265134, 8673006, 5315306, 5315258,
    5265134, 8673006, 5315258, 5315258, 5527226, 5528046, 5527277, 5528250, 5528057, 5527277,
    5527277,
)  # fmt: skip


class BsRangeError(ValueError):
    """The converter rejected the date (bikram-sambat throws)."""


def days_in_month(year: float, month: float) -> int:
    if month < 1 or month > 12:
        raise BsRangeError(f"Invalid month value {month}")
    idx = year - _YEAR_ZERO
    if not (math.isfinite(idx) and idx == int(idx) and 0 <= idx < len(_MONTH_LENGTHS)):
        raise BsRangeError(f"No data for year: {year} BS")
    shift = (to_int32(month - 1) << 1) & 31
    return 29 + ((_MONTH_LENGTHS[int(idx)] >> shift) & 3)


def _days_before() -> list[list[int]]:
    """_DAYS_BEFORE[y - 1970][m]: days of all BS months before (y, m), for m in 1..12."""
    table: list[list[int]] = []
    total = 0
    for y in range(_YEAR_ZERO, _YEAR_ZERO + len(_MONTH_LENGTHS)):
        row = [0, total]
        for m in range(1, 12):
            total += days_in_month(y, m)
            row.append(total)
        total += days_in_month(y, 12)
        table.append(row)
    return table


_DAYS_BEFORE = _days_before()


def to_greg_text(year: Any, month: Any, day: Any) -> str:
    """`toGreg_text(year, month, day)` with JS coercions; raises BsRangeError."""
    y, m, d = to_number(year), to_number(month), to_number(day)
    if m < 1:
        raise BsRangeError(f"Invalid month value {month}")
    if y < _YEAR_ZERO:
        raise BsRangeError(f"Invalid year value {year}")
    if d < 1 or d > days_in_month(y, m):
        raise BsRangeError("Invalid day value")
    ts = _EPOCH_TS + _MS_PER_DAY * d
    if math.isnan(m) or m == int(m):
        # y is a table year (days_in_month accepted it); whole months: use the prefix sums
        ts += _MS_PER_DAY * _DAYS_BEFORE[int(y) - _YEAR_ZERO][1 if math.isnan(m) else int(m)]
        y = _YEAR_ZERO - 1
    m -= 1
    while y >= _YEAR_ZERO:
        while m > 0:
            ts += _MS_PER_DAY * days_in_month(y, m)
            m -= 1
        m = 12
        y -= 1
    t = time_clip(ts)
    if isinstance(t, float) and math.isnan(t):
        return "NaN-0NaN-0NaN"
    days, _ = divmod(int(t), _MS_PER_DAY)
    g = date(1970, 1, 1) + timedelta(days=days)
    return f"{g.year}-{g.month:02d}-{g.day:02d}"


def bs_to_epoch(year: Any, month: Any, day: Any, tz: str = "UTC") -> Any:
    """CHT's bsToEpoch: local midnight of the AD date in ms; None if the converter rejects the
    date; NaN when missing or non-numeric parts make the arithmetic NaN."""
    try:
        text = to_greg_text(year, month, day)
    except BsRangeError:
        return None
    if text.startswith("NaN"):
        return NAN
    return moment_ms(text, tz)
