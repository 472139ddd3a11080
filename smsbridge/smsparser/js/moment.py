"""`moment(x).valueOf()` as CHT's server computes it (moment 2.30): ASP.NET JSON dates, ISO 8601,
RFC 2822, then the JS Date fallback (`dates.parse_date_string`). Local time is the configured
server timezone. Returns epoch milliseconds, or NaN."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from smsbridge.smsparser.js.dates import parse_date_string
from smsbridge.smsparser.js.numbers import NOT_LT, UNDEFINED, WS_RE, to_string
from smsbridge.smsparser.js.timevalues import NAN, local_ms, make_day, time_clip, utc_ms

_EXT_ISO = re.compile(
    rf"^{WS_RE}*((?:[+-][0-9]{{6}}|[0-9]{{4}})-(?:[0-9][0-9]-[0-9][0-9]|W[0-9][0-9]-[0-9]"
    rf"|W[0-9][0-9]|[0-9][0-9][0-9]|[0-9][0-9]))"
    rf"((T| )([0-9][0-9](?::[0-9][0-9](?::[0-9][0-9](?:[.,][0-9]+)?)?)?)"
    rf"([+-][0-9][0-9](?::?[0-9][0-9])?|{WS_RE}*Z)?)?\Z"
)
_BASIC_ISO = re.compile(
    rf"^{WS_RE}*((?:[+-][0-9]{{6}}|[0-9]{{4}})(?:[0-9]{{4}}|W[0-9]{{3}}|W[0-9]{{2}}|[0-9]{{3}}|[0-9]{{2}}|))"
    rf"((T| )([0-9][0-9](?:[0-9][0-9](?:[0-9][0-9](?:[.,][0-9]+)?)?)?)"
    rf"([+-][0-9][0-9](?::?[0-9][0-9])?|{WS_RE}*Z)?)?\Z"
)
# (moment format as tokens, regex selecting it, time allowed). Format chosen by unanchored search.
_ISO_DATES: list[tuple[list[str], re.Pattern[str], bool]] = [
    (["YYYYYY", "-", "MM", "-", "DD"], re.compile(r"[+-][0-9]{6}-[0-9]{2}-[0-9]{2}"), True),
    (["YYYY", "-", "MM", "-", "DD"], re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), True),
    (["GGGG", "-", "W", "WW", "-", "E"], re.compile(r"[0-9]{4}-W[0-9]{2}-[0-9]"), True),
    (["GGGG", "-", "W", "WW"], re.compile(r"[0-9]{4}-W[0-9]{2}"), False),
    (["YYYY", "-", "DDD"], re.compile(r"[0-9]{4}-[0-9]{3}"), True),
    (["YYYY", "-", "MM"], re.compile(r"[0-9]{4}-[0-9]{2}"), False),
    (["YYYYYY", "MM", "DD"], re.compile(r"[+-][0-9]{10}"), True),
    (["YYYY", "MM", "DD"], re.compile(r"[0-9]{8}"), True),
    (["GGGG", "W", "WW", "E"], re.compile(r"[0-9]{4}W[0-9]{3}"), True),
    (["GGGG", "W", "WW"], re.compile(r"[0-9]{4}W[0-9]{2}"), False),
    (["YYYY", "DDD"], re.compile(r"[0-9]{7}"), True),
    (["YYYY", "MM"], re.compile(r"[0-9]{6}"), False),
    (["YYYY"], re.compile(r"[0-9]{4}"), False),
]
_ISO_TIMES: list[tuple[list[str], re.Pattern[str]]] = [
    (["HH", ":", "mm", ":", "ss", ".", "SSSS"], re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]+")),
    (["HH", ":", "mm", ":", "ss", ",", "SSSS"], re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]+")),
    (["HH", ":", "mm", ":", "ss"], re.compile(r"[0-9][0-9]:[0-9][0-9]:[0-9][0-9]")),
    (["HH", ":", "mm"], re.compile(r"[0-9][0-9]:[0-9][0-9]")),
    (["HH", "mm", "ss", ".", "SSSS"], re.compile(r"[0-9]{6}\.[0-9]+")),
    (["HH", "mm", "ss", ",", "SSSS"], re.compile(r"[0-9]{6},[0-9]+")),
    (["HH", "mm", "ss"], re.compile(r"[0-9]{6}")),
    (["HH", "mm"], re.compile(r"[0-9]{4}")),
    (["HH"], re.compile(r"[0-9]{2}")),
]
# moment's non-strict parse regexes per token; other tokens are literal regexes (so "." is any
# character, as in moment).
_TOKEN_RX = {
    "YYYY": re.compile(r"[0-9]{1,4}"),
    "YYYYYY": re.compile(r"[+-]?[0-9]{1,6}"),
    "GGGG": re.compile(r"[0-9]{1,4}"),
    "MM": re.compile(r"[0-9][0-9]?"),
    "DD": re.compile(r"[0-9][0-9]?"),
    "WW": re.compile(r"[0-9][0-9]?"),
    "E": re.compile(r"[0-9]"),
    "DDD": re.compile(r"[0-9]{1,3}"),
    "HH": re.compile(r"[0-9][0-9]?"),
    "mm": re.compile(r"[0-9][0-9]?"),
    "ss": re.compile(r"[0-9][0-9]?"),
    "SSSS": re.compile(r"[0-9]+"),
    "Z": re.compile(r"Z|[+-][0-9][0-9](?::?[0-9][0-9])?", re.IGNORECASE),
}
_PLAIN_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_ASPNET = re.compile(r"^/?Date\((-?[0-9]+)", re.I)
_LITERAL_RX = {
    "-": re.compile("-"),
    "W": re.compile("W"),
    ":": re.compile(":"),
    ".": re.compile(NOT_LT),
    ",": re.compile(","),
    "T": re.compile("T"),
    " ": re.compile(" "),
}


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_in_month(y: int, m0: int) -> int:
    mm = m0 % 12
    y += (m0 - mm) // 12
    return (29 if _leap(y) else 28) if mm == 1 else 31 - ((mm % 7) % 2)


def _weekday_utc(y: int, m0: int, d: int) -> int:
    return (int(make_day(y, m0, d)) + 4) % 7


def _first_week_offset(year: int) -> int:  # ISO weeks: dow=1, doy=4
    fwdlw = (7 + _weekday_utc(year, 0, 4) - 1) % 7
    return -fwdlw + 4 - 1


def _weeks_in_year(year: int) -> float:
    days = 366 if _leap(year) else 365
    return (days - _first_week_offset(year) + _first_week_offset(year + 1)) / 7


def _format_parse(tokens: list[str], s: str, tz: str) -> float | int:
    """moment `configFromStringAndFormat` (non-strict), `configFromArray`, `checkOverflow`."""
    a: dict[str, int] = {}
    tzm: int | None = None
    for token in tokens:
        rx = _TOKEN_RX.get(token) or _LITERAL_RX[token]
        m = rx.search(s)
        if m is None:
            continue
        text = m.group(0)
        s = s[m.end() :]
        if token in ("YYYY", "YYYYYY", "GGGG"):
            a["Y" if token != "GGGG" else "GG"] = int(text)
        elif token == "SSSS":
            a["ms"] = int(float("0." + text) * 1000)
        elif token == "Z":
            if text.upper() == "Z":
                tzm = 0
            else:
                sign = -1 if text[0] == "-" else 1
                digits = text[1:].replace(":", "")
                tzm = sign * (int(digits[:2]) * 60 + int(digits[2:4] or 0))
        elif token in _TOKEN_RX:
            a[token] = int(text)
    year = a.get("Y", a.get("GG", 0))
    month0 = a.get("MM", 1) - 1
    day = a.get("DD", 1)
    overflow = False
    if "DDD" in a:
        doy = a["DDD"]
        if doy > (366 if _leap(year) else 365) or doy == 0:
            overflow = True
        days = int(make_day(year, 0, doy))
        month0, day = _civil_month_day(days)
    elif "GG" in a or "WW" in a or "E" in a:
        week_year = a.get("GG", year)
        week = a.get("WW", 1)
        weekday = a.get("E", 1)
        if week < 1 or week > _weeks_in_year(week_year):
            return NAN
        if weekday < 1 or weekday > 7:
            return NAN
        local_weekday = (7 + weekday - 1) % 7
        doy = 1 + 7 * (week - 1) + local_weekday + _first_week_offset(week_year)
        days = int(make_day(week_year, 0, doy))
        year = _civil_year(days)
        month0, day = _civil_month_day(days)
    h, mi, sec, ms = a.get("HH", 0), a.get("mm", 0), a.get("ss", 0), a.get("ms", 0)
    if not 0 <= month0 <= 11 or not 1 <= day <= _days_in_month(year, month0):
        return NAN
    if h > 24 or (h == 24 and (mi or sec or ms)) or mi > 59 or sec > 59 or ms > 999:
        return NAN
    if overflow:
        return NAN
    if tzm is None:
        return local_ms(year, month0 + 1, day, h, mi, sec, ms, tz=tz)
    return time_clip(utc_ms(year, month0 + 1, day, h, mi, sec, ms) - tzm * 60_000)


def _civil_from_days(days: int) -> tuple[int, int, int]:
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + (m <= 2), m - 1, d)


def _civil_year(days: int) -> int:
    return _civil_from_days(days)[0]


def _civil_month_day(days: int) -> tuple[int, int]:
    _, m0, d = _civil_from_days(days)
    return m0, d


def _moment_iso(s: str, tz: str) -> float | int | None:
    """None when moment would not take the string as ISO 8601 (it moves on to RFC 2822)."""
    m = _EXT_ISO.match(s) or _BASIC_ISO.match(s)
    if not m:
        return None
    found = next((entry for entry in _ISO_DATES if entry[1].search(m.group(1))), None)
    if found is None:
        return None
    tokens, _, allow_time = found
    tokens = list(tokens)
    if m.group(3):
        if not allow_time:
            return None
        time = next(t for t, rx in _ISO_TIMES if rx.search(m.group(4)))
        tokens += [m.group(3), *time]
    if m.group(5):
        tokens.append("Z")
    return _format_parse(tokens, s, tz)


_RFC2822 = re.compile(
    r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s)?([0-9]{1,2})\s(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
    r"Oct|Nov|Dec)\s([0-9]{2,4})\s([0-9][0-9]):([0-9][0-9])(?::([0-9][0-9]))?\s(?:(UT|GMT|"
    r"[ECMP][SD]T)|([Zz])|([+-][0-9]{4}))\Z",
    re.ASCII,
)
_WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_OBS = {"UT": 0, "GMT": 0, "EDT": -240, "EST": -300, "CDT": -300, "CST": -360, "MDT": -360,
        "MST": -420, "PDT": -420, "PST": -480}  # fmt: skip


def _moment_rfc2822(s: str) -> float | int | None:
    s = re.sub(r"\([^()]*\)|[\n\t]", " ", s)
    s = re.sub(rf"({WS_RE}{WS_RE}+)", " ", s)
    s = re.sub(rf"^{WS_RE}{WS_RE}*", "", s)
    s = re.sub(rf"{WS_RE}{WS_RE}*\Z", "", s)
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
    day, hour, minute = int(m.group(2)), int(m.group(5)), int(m.group(6))
    # moment's checkOverflow on [y, M, D, h, m(, s)]: hour 24 always overflows (no ms part)
    if not 1 <= day <= _days_in_month(year, month - 1) or hour > 23 or minute > 59:
        return NAN
    if m.group(7) and int(m.group(7)) > 59:
        return NAN
    # a weekday that is not the date's sets moment's weekdayMismatch flag: invalid
    if m.group(1) and _WEEKDAYS.index(m.group(1)) != _weekday_utc(year, month - 1, day):
        return NAN
    t = utc_ms(year, month, int(m.group(2)), int(m.group(5)), int(m.group(6)),
               int(m.group(7) or 0))  # fmt: skip
    return time_clip(t - tzm * 60_000)


def moment_ms(raw: Any, tz: str = "UTC") -> float | int:
    """`moment(raw).valueOf()` for the values the parser can hand it."""
    if isinstance(raw, bool) or raw is None or raw is UNDEFINED:
        return NAN
    if isinstance(raw, int | float):
        return time_clip(float(raw))
    if isinstance(raw, list):
        return _moment_array(raw, tz)
    if not isinstance(raw, str):
        return NAN
    if raw == "":
        return NAN
    m = _ASPNET.match(raw)
    if m:
        return time_clip(float(m.group(1)))
    plain = _PLAIN_DATE.match(raw)
    if plain is not None:  # the common YYYY-MM-DD, same result as the general path below
        y, mo, d = int(plain.group(1)), int(plain.group(2)), int(plain.group(3))
        if not 1 <= mo <= 12 or not 1 <= d <= _days_in_month(y, mo - 1):
            return NAN
        return local_ms(y, mo, d, tz=tz)
    iso = _moment_iso(raw, tz)
    if iso is not None:
        return iso
    rfc = _moment_rfc2822(raw)
    if rfc is not None:
        return rfc
    return parse_date_string(raw, tz)


_PARSE_INT = re.compile(f"^{WS_RE}*([+-]?[0-9]+)")


def _parse_int(v: Any) -> float:
    """JS `parseInt(v, 10)`."""
    m = _PARSE_INT.match(to_string(v))
    return int(m.group(1)) if m else NAN


def _moment_array(items: list[Any], tz: str) -> float | int:
    """`moment([y, M, d, h, m, s, ms])`: elements through parseInt, local time, overflow NaN."""
    if not items:
        return int(time.time() * 1000)  # moment([]) is now
    a = [_parse_int(v) for v in items[:7]]
    a += [1 if i == 2 else 0 for i in range(len(a), 7)]
    if any(isinstance(v, float) and math.isnan(v) for v in a):
        return NAN
    y, mo, d, h, mi, sec, ms = (int(v) for v in a)
    if not 0 <= mo <= 11 or not 1 <= d <= _days_in_month(y, mo):
        return NAN
    if not 0 <= h <= 24 or (h == 24 and (mi or sec or ms)) or not 0 <= mi <= 59:
        return NAN
    if not 0 <= sec <= 59 or not 0 <= ms <= 999:
        return NAN
    if h == 24:
        return local_ms(y, mo + 1, d + 1, 0, mi, sec, ms, tz=tz)
    return local_ms(y, mo + 1, d, h, mi, sec, ms, tz=tz)
