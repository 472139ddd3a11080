"""`moment(x).valueOf()` as CHT's server computes it (moment 2.30): ASP.NET JSON dates, ISO 8601,
RFC 2822, then the JS Date fallback (`smsbridge.jsdate.parse_date_string`). Local time is the
configured server timezone (spec 11.4). Returns epoch milliseconds, or NaN."""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from typing import Any

from smsbridge.jsdate import NAN, local_ms, parse_date_string, time_clip, utc_ms
from smsbridge.jsnum import JS_WS, UNDEFINED


_W = "[" + re.escape(JS_WS) + "]"
_EXT_ISO = re.compile(
    rf"^{_W}*((?:[+-][0-9]{{6}}|[0-9]{{4}})-(?:[0-9][0-9]-[0-9][0-9]|W[0-9][0-9]-[0-9]|W[0-9][0-9]"
    rf"|[0-9][0-9][0-9]|[0-9][0-9]))((T| )([0-9][0-9](?::[0-9][0-9](?::[0-9][0-9](?:[.,][0-9]+)?)?)?)"
    rf"([+-][0-9][0-9](?::?[0-9][0-9])?|{_W}*Z)?)?\Z"
)
_BASIC_ISO = re.compile(
    rf"^{_W}*((?:[+-][0-9]{{6}}|[0-9]{{4}})(?:[0-9]{{4}}|W[0-9]{{3}}|W[0-9]{{2}}|[0-9]{{3}}|[0-9]{{2}}|))"
    rf"((T| )([0-9][0-9](?:[0-9][0-9](?:[0-9][0-9](?:[.,][0-9]+)?)?)?)"
    rf"([+-][0-9][0-9](?::?[0-9][0-9])?|{_W}*Z)?)?\Z"
)
# (moment format, regex, time allowed)
_ISO_DATES = [
    ("YYYYYY-MM-DD", re.compile(r"[+-][0-9]{6}-[0-9]{2}-[0-9]{2}"), True),
    ("YYYY-MM-DD", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), True),
    ("GGGG-WW-E", re.compile(r"[0-9]{4}-W[0-9]{2}-[0-9]"), True),
    ("GGGG-WW", re.compile(r"[0-9]{4}-W[0-9]{2}"), False),
    ("YYYY-DDD", re.compile(r"[0-9]{4}-[0-9]{3}"), True),
    ("YYYY-MM", re.compile(r"[0-9]{4}-[0-9]{2}"), False),
    ("YYYYYYMMDD", re.compile(r"[+-][0-9]{10}"), True),
    ("YYYYMMDD", re.compile(r"[0-9]{8}"), True),
    ("GGGGWWE", re.compile(r"[0-9]{4}W[0-9]{3}"), True),
    ("GGGGWW", re.compile(r"[0-9]{4}W[0-9]{2}"), False),
    ("YYYYDDD", re.compile(r"[0-9]{7}"), True),
    ("YYYYMM", re.compile(r"[0-9]{6}"), False),
    ("YYYY", re.compile(r"[0-9]{4}"), False),
]
_TIME = re.compile(r"([0-9]{2}):?([0-9]{2})?(?::?([0-9]{2}))?(?:[.,]([0-9]+))?")
_ASPNET = re.compile(r"^/?Date\((-?[0-9]+)", re.I)


def _iso_date_fields(fmt: str, s: str) -> tuple[int, int, int] | None:
    digits = s.replace("-", "").replace("W", "")
    sign = 1
    if digits[0] in "+-":
        sign, digits = (-1 if digits[0] == "-" else 1), digits[1:]
        year, rest = sign * int(digits[:6]), digits[6:]
    else:
        year, rest = int(digits[:4]), digits[4:]
    try:
        if fmt.startswith("GGGG"):
            week = int(rest[:2])
            wd = int(rest[2:3]) if len(rest) > 2 else 1
            d = date.fromisocalendar(year, week, wd)
            return d.year, d.month, d.day
        if fmt.endswith("DDD"):
            doy = int(rest)
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            if not 1 <= doy <= (366 if leap else 365):
                return None
            d = date(2000 if leap else 2001, 1, 1) + timedelta(days=doy - 1)
            return year, d.month, d.day
    except ValueError:
        return None
    month = int(rest[:2]) if rest else 1
    day = int(rest[2:4]) if len(rest) > 2 else 1
    if not 1 <= month <= 12:
        return None
    mdays = [31, 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28, 31, 30,
             31, 30, 31, 31, 30, 31, 30, 31][month - 1]  # fmt: skip
    if not 1 <= day <= mdays:
        return None
    return year, month, day


def _moment_iso(s: str, tz: str) -> float | int | None:
    """None when the string is not ISO-shaped (moment moves on to RFC 2822); else ms/NaN."""
    m = _EXT_ISO.match(s) or _BASIC_ISO.match(s)
    if not m:
        return None
    for fmt, rx, allow_time in _ISO_DATES:
        if rx.search(m.group(1)):
            break
    else:
        return None
    if m.group(3) and not allow_time:
        return None
    ymd = _iso_date_fields(fmt, m.group(1))
    if ymd is None:
        return NAN
    h = mi = sec = ms = 0
    if m.group(3):
        t = _TIME.fullmatch(m.group(4))
        if t is None:
            return NAN
        h = int(t.group(1))
        mi = int(t.group(2) or 0)
        sec = int(t.group(3) or 0)
        if t.group(4):
            ms = int(float("0." + t.group(4)) * 1000)
        if h > 24 or mi > 59 or sec > 59 or (h == 24 and (mi or sec or ms)):
            return NAN
    offset = m.group(5)
    if offset is None:
        return local_ms(*ymd, h, mi, sec, ms, tz=tz)
    offset = offset.strip(JS_WS)
    tzm = 0
    if offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        hh, mm = int(offset[1:3]), int(offset[3:].lstrip(":") or 0)
        tzm = sign * (hh * 60 + mm)
    return time_clip(utc_ms(*ymd, h, mi, sec, ms) - tzm * 60_000)


_RFC2822 = re.compile(
    r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s)?([0-9]{1,2})\s(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
    r"Oct|Nov|Dec)\s([0-9]{2,4})\s([0-9][0-9]):([0-9][0-9])(?::([0-9][0-9]))?\s(?:(UT|GMT|"
    r"[ECMP][SD]T)|([Zz])|([+-][0-9]{4}))\Z",
    re.ASCII,
)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_OBS = {"UT": 0, "GMT": 0, "EDT": -240, "EST": -300, "CDT": -300, "CST": -360, "MDT": -360,
        "MST": -420, "PDT": -420, "PST": -480}  # fmt: skip


def _moment_rfc2822(s: str) -> float | int | None:
    s = re.sub(r"\([^()]*\)|[\n\t]", " ", s)
    s = re.sub(rf"({_W}{_W}+)", " ", s)
    s = re.sub(rf"^{_W}{_W}*", "", s)
    s = re.sub(rf"{_W}{_W}*\Z", "", s)
    m = _RFC2822.match(s)
    if not m:
        return None
    year = int(m.group(4))
    if year <= 49:
        year += 2000
    elif year <= 999:
        year += 1900
    if m.group(8):
        tzm = _OBS[m.group(8)]
    elif m.group(9):
        tzm = 0
    else:
        hm = int(m.group(10))
        sign = -1 if hm < 0 else 1
        hm = abs(hm)
        tzm = sign * ((hm // 100) * 60 + hm % 100)
    month = _MONTHS.index(m.group(3).lower()) + 1
    t = utc_ms(year, month, int(m.group(2)), int(m.group(5)), int(m.group(6)),
               int(m.group(7) or 0))  # fmt: skip
    return time_clip(t - tzm * 60_000)


def moment_ms(raw: Any, tz: str = "UTC") -> float | int:
    """`moment(raw).valueOf()` for the values the parser can hand it."""
    if isinstance(raw, bool) or raw is None or raw is UNDEFINED:
        return NAN
    if isinstance(raw, int | float):
        return time_clip(float(raw))
    if not isinstance(raw, str):
        return NAN
    if raw == "":
        return NAN
    m = _ASPNET.match(raw)
    if m:
        return time_clip(float(m.group(1)))
    iso = _moment_iso(raw, tz)
    if iso is not None:
        return iso
    rfc = _moment_rfc2822(raw)
    if rfc is not None:
        return rfc
    return parse_date_string(raw, tz)

