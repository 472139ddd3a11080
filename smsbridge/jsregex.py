"""Translate JavaScript regular-expression source (non-unicode mode, as `new RegExp(src)`
sees it) into an equivalent Python pattern. CHT builds regexes from form labels without
escaping them (spec 4.5, 7.5); a label JS rejects raises `JsSyntaxError` here as well."""

from __future__ import annotations

import re
from functools import lru_cache

from smsbridge.jsnum import WS_CLASS


class JsSyntaxError(ValueError):
    """`new RegExp(src)` would throw a SyntaxError."""


_CLASS_ESCAPES = {
    "d": "0-9",
    "w": "A-Za-z0-9_",
    "s": WS_CLASS,
}
_ESCAPES = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[A-Za-z0-9_]",
    "W": "[^A-Za-z0-9_]",
    "s": f"[{WS_CLASS}]",
    "S": f"[^{WS_CLASS}]",
    "b": r"\b",
    "B": r"\B",
}
_PY_OK_ESCAPES = set("tnrfv0123456789xu") | set("\\^$.|?*+()[]{}/-")


def _convert(src: str) -> str:
    out: list[str] = []
    i, n = 0, len(src)
    in_class = False
    while i < n:
        c = src[i]
        if c == "\\":
            if i + 1 >= n:
                raise JsSyntaxError("\\ at end of pattern")
            e = src[i + 1]
            i += 2
            if in_class and e in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[e])
            elif in_class and e in "DWS":
                raise JsSyntaxError("negated class escape inside a class is not supported")
            elif not in_class and e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e == "c" or e == "k" or e == "p" or e == "P":
                out.append(re.escape(e))
            elif e in _PY_OK_ESCAPES:
                out.append("\\" + e)
            else:
                out.append(re.escape(e))  # identity escape
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                out.append("\\[")
                i += 1
                continue
            out.append(c)
        elif c == "[":
            if src.startswith("[^]", i):
                out.append(r"[\s\S]")
                i += 3
                continue
            if src.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append(c)
            if i + 1 < n and src[i + 1] == "^":
                out.append("^")
                i += 1
        elif c == ".":
            out.append(r"[^\n\r\u2028\u2029]")
        elif c == "$":
            out.append(r"\Z")
        elif c == "(" and src.startswith("(?", i) and not (
            src.startswith("(?:", i) or src.startswith("(?=", i) or src.startswith("(?!", i)
            or src.startswith("(?<=", i) or src.startswith("(?<!", i)
        ):  # fmt: skip
            raise JsSyntaxError("Invalid group")
        else:
            out.append(c)
        i += 1
    if in_class:
        raise JsSyntaxError("Unterminated character class")
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_js(src: str, ignore_case: bool = True) -> re.Pattern[str]:
    """Compile JS regex source; raises JsSyntaxError where JS would throw."""
    try:
        return re.compile(_convert(src), re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise JsSyntaxError(f"Invalid regular expression: /{src}/: {exc}") from None
