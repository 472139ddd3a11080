"""`new Date(string)` as V8 parses it: the ES5 ISO format first, then V8's legacy parser (which
accepts `2012-3-12`, `12/03/2012`, `March 12, 2012`, `0`...). Local times are read in the
configured server timezone (jstime.py)."""

from __future__ import annotations

import math

from smsbridge.smsparser.js.timevalues import DAY_MS, local_to_utc, make_day, make_time, time_clip

# Tokens: ("num", value, length) | ("sym", ch) | ("word", prefix3, length) | ("ws",)
#         | ("unknown",) | ("end",)
_KEYWORDS: dict[str, tuple[str, int]] = {
    **{m: ("month", i + 1) for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])},
    "am": ("ampm", 0), "pm": ("ampm", 12), "ut": ("tz", 0), "utc": ("tz", 0), "z": ("tz", 0),
    "gmt": ("tz", 0), "cdt": ("tz", -5), "cst": ("tz", -6), "edt": ("tz", -4), "est": ("tz", -5),
    "mdt": ("tz", -6), "mst": ("tz", -7), "pdt": ("tz", -7), "pst": ("tz", -8), "t": ("tsep", 0),
}  # fmt: skip
# V8 skips these as white space; U+2028/U+2029 are not WhiteSpace there, so they read as words.
_V8_WS = set("\t\n\x0b\x0c\r \u00a0\u1680\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)
}


def _tokens(s: str) -> list[tuple]:
    out: list[tuple] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if "0" <= c <= "9":
            j = i
            while j < n and "0" <= s[j] <= "9":
                j += 1
            # V8 skips leading zeros, then reads at most 9 significant digits
            sig = s[i:j].lstrip("0")[:9]
            out.append(("num", int(sig) if sig else 0, j - i))
            i = j
        elif c in ":-+.)":
            out.append(("sym", c))
            i += 1
        elif c >= "A" and c not in _V8_WS:
            j = i
            while j < n and s[j] >= "A" and s[j] not in _V8_WS:
                j += 1
            word = s[i:j]
            pre = "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in word[:3])
            kw = _KEYWORDS.get(pre)
            if kw and (j - i <= 3 or kw[0] == "month"):
                out.append(("word", kw[0], kw[1], j - i))
            else:
                out.append(("word", "", 0, j - i))
            i = j
        elif c in _V8_WS:
            while i < n and s[i] in _V8_WS:
                i += 1
            out.append(("ws",))
        elif c == "(":
            depth = 0
            while i < n:
                if s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
            out.append(("unknown",))
        else:
            out.append(("unknown",))
            i += 1
    out.append(("end",))
    return out


class _Scanner:
    def __init__(self, s: str) -> None:
        self.toks = _tokens(s)
        self.i = 0

    def peek(self) -> tuple:
        return self.toks[self.i]

    def next(self) -> tuple:
        t = self.toks[self.i]
        if t[0] != "end":
            self.i += 1
        return t

    def skip(self, ch: str) -> bool:
        if self.peek() == ("sym", ch):
            self.i += 1
            return True
        return False

    def fixed(self, n: int) -> bool:
        t = self.peek()
        return t[0] == "num" and t[2] == n


class _Invalid(Exception):
    pass


def _ms3(num: int, length: int) -> int:
    if length == 1:
        return num * 100
    if length == 2:
        return num * 10
    length = min(length, 9)
    while length > 3:
        num //= 10
        length -= 1
    return num


def _es5(sc: _Scanner, day: list[int], time: list[int], tz: dict) -> tuple | None:
    """V8 ParseES5DateTime. Returns the next unhandled token, or None when fully ISO."""
    t = sc.peek()
    if t == ("sym", "+") or t == ("sym", "-"):
        sign_tok = sc.next()
        if not sc.fixed(6):
            return sign_tok
        year = sc.next()[1]
        if sign_tok[1] == "-" and year == 0:
            return sign_tok
        day.append(-year if sign_tok[1] == "-" else year)
    elif sc.fixed(4):
        day.append(sc.next()[1])
    else:
        return sc.next()
    if sc.skip("-"):
        if not sc.fixed(2) or not 1 <= sc.peek()[1] <= 12:
            return sc.next()
        day.append(sc.next()[1])
        if sc.skip("-"):
            if not sc.fixed(2) or not 1 <= sc.peek()[1] <= 31:
                return sc.next()
            day.append(sc.next()[1])
    p = sc.peek()
    if not (p[0] == "word" and p[1] == "tsep"):
        if p[0] != "end":
            return sc.next()
    else:
        sc.next()
        if not sc.fixed(2) or not 0 <= sc.peek()[1] <= 24:
            raise _Invalid
        h24 = sc.peek()[1] == 24
        time.append(sc.next()[1])
        if not sc.skip(":"):
            raise _Invalid
        if not sc.fixed(2) or sc.peek()[1] > 59 or (h24 and sc.peek()[1] > 0):
            raise _Invalid
        time.append(sc.next()[1])
        if sc.skip(":"):
            if not sc.fixed(2) or sc.peek()[1] > 59 or (h24 and sc.peek()[1] > 0):
                raise _Invalid
            time.append(sc.next()[1])
            if sc.skip("."):
                if sc.peek()[0] != "num" or (h24 and sc.peek()[1] > 0):
                    raise _Invalid
                t = sc.next()
                time.append(_ms3(t[1], t[2]))
        p = sc.peek()
        if p[0] == "word" and p[1] == "tz" and p[3] == 1 and p[2] == 0:
            sc.next()
            tz.update(sign=1, hour=0, minute=0)
        elif p == ("sym", "+") or p == ("sym", "-"):
            tz["sign"] = 1 if sc.next()[1] == "+" else -1
            if sc.fixed(4):
                hm = sc.next()[1]
                if hm // 100 > 23 or hm % 100 > 59:
                    raise _Invalid
                tz.update(hour=hm // 100, minute=hm % 100)
            else:
                if not sc.fixed(2) or sc.peek()[1] > 23:
                    raise _Invalid
                tz["hour"] = sc.next()[1]
                if not sc.skip(":"):
                    raise _Invalid
                if not sc.fixed(2) or sc.peek()[1] > 59:
                    raise _Invalid
                tz["minute"] = sc.next()[1]
        if sc.peek()[0] != "end":
            raise _Invalid
    if "hour" not in tz and not time:
        tz.update(sign=1, hour=0, minute=0)
    tz["iso"] = True
    return None


def parse_date_string(s: str, tz_name: str = "UTC") -> float | int:
    """`new Date(s).valueOf()` in V8."""
    if "\0" in s:  # V8's date scanner reads U+0000 as the end of the input
        s = s[: s.index("\0")]
    try:
        return _parse(s, tz_name)
    except _Invalid:
        return math.nan


def _parse(s: str, tz_name: str) -> float | int:
    sc = _Scanner(s)
    day: list[int] = []
    time: list[int] = []
    tz: dict = {}
    named_month = None
    hour_offset = None
    tok = _es5(sc, day, time, tz)
    iso = tz.pop("iso", False)
    has_num = bool(day)

    def time_expecting(n: int) -> bool:
        k = len(time)
        return (k == 1 and 0 <= n <= 59) or (k == 2 and 0 <= n <= 59) or (k == 3 and n <= 999)

    def time_final(n: int) -> None:  # TimeComposer::AddFinal; V8 ignores a full composer
        if len(time) < 4:
            time.append(n)
            time.extend([0] * (4 - len(time)))

    while tok is not None and tok[0] != "end":
        kind = tok[0]
        if kind == "num":
            has_num = True
            n = tok[1]
            if sc.skip(":"):
                if sc.skip(":"):
                    if time:
                        raise _Invalid
                    time.extend([n, 0])
                else:
                    if len(time) >= 4:
                        raise _Invalid
                    time.append(n)
                    if sc.peek() == ("sym", "."):
                        sc.next()
            elif sc.skip(".") and time_expecting(n):  # V8 consumes the "." either way
                time.append(n)
                if sc.peek()[0] != "num":
                    raise _Invalid
                t = sc.next()
                time_final(_ms3(t[1], t[2]))
            elif "hour" in tz and tz.get("minute") is None and 0 <= n <= 59:
                tz["minute"] = n
            elif time_expecting(n):
                time_final(n)
                p = sc.peek()
                is_z = p[0] == "word" and p[1] == "tz" and p[3] == 1 and p[2] == 0
                if not (p[0] in ("end", "ws") or p in (("sym", "+"), ("sym", "-")) or is_z):
                    raise _Invalid
            else:
                if len(day) >= 3:
                    raise _Invalid
                day.append(n)
                sc.skip("-")
        elif kind == "word":
            _, ktype, kval, _len = tok
            if ktype == "ampm" and time:
                hour_offset = kval
            elif ktype == "month":
                named_month = kval
                sc.skip("-")
            elif ktype == "tz" and has_num:
                tz.update(sign=-1 if kval < 0 else 1, hour=abs(kval), minute=0)
            else:
                if has_num or sc.peek()[0] == "num":
                    raise _Invalid
        elif (
            tok[0] == "sym"
            and tok[1] in "+-"
            and ((tz.get("hour") == 0 and tz.get("minute") == 0) or time)
        ):
            tz["sign"] = 1 if tok[1] == "+" else -1
            n, length = 0, 0
            if sc.peek()[0] == "num":
                t = sc.next()
                n, length = t[1], t[2]
            has_num = True
            if sc.peek() == ("sym", ":"):
                tz.update(hour=n, minute=None)
            elif length in (1, 2):
                tz.update(hour=n, minute=0)
            elif length in (3, 4):
                tz.update(hour=n // 100, minute=n % 100)
            else:
                raise _Invalid
        elif tok[0] == "sym" and tok[1] in "+-)" and has_num:
            raise _Invalid
        tok = sc.next()

    # DayComposer::Write
    if not day:
        raise _Invalid
    comp = day + [1] * (3 - len(day))
    if named_month is None:
        if iso or not 1 <= comp[0] <= 31:
            year, month, dd = comp
        else:
            month, dd, year = comp
    else:
        month = named_month
        if not 1 <= comp[0] <= 31:
            year, dd = comp[0], comp[1]
        else:
            dd, year = comp[0], comp[1]
    if not iso:
        if 0 <= year <= 49:
            year += 2000
        elif 50 <= year <= 99:
            year += 1900
    if not 1 <= month <= 12 or not 1 <= dd <= 31:
        raise _Invalid
    # TimeComposer::Write
    hh, mi, ss, ms = [*time, 0, 0, 0, 0][:4]
    if hour_offset is not None:
        if not 0 <= hh <= 12:
            raise _Invalid
        hh = hh % 12 + hour_offset
    if not (hh <= 23 and mi <= 59 and ss <= 59 and ms <= 999) and not (
        hh == 24 and mi == 0 and ss == 0 and ms == 0
    ):
        raise _Invalid
    tv = make_day(year, month - 1, dd) * DAY_MS + make_time(hh, mi, ss, ms)
    if "sign" in tz or "hour" in tz:
        offset = tz.get("sign", 1) * ((tz.get("hour") or 0) * 3600 + (tz.get("minute") or 0) * 60)
        return time_clip(tv - offset * 1000)
    if not math.isfinite(tv) or abs(tv) > 864e13 + 864e5:
        return math.nan
    return time_clip(local_to_utc(tv, tz_name))
