"""Translate JavaScript regular-expression source (non-unicode mode, as `new RegExp(src)`
sees it) into an equivalent Python pattern. CHT builds regexes from form labels without
escaping them; a label JS rejects raises `JsSyntaxError` here as well."""

from __future__ import annotations

import re
from functools import lru_cache

from smsbridge.smsparser.js.numbers import NEW_CASE_PAIRS, NOT_LT, WS_CLASS


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

# Letters Python's re.IGNORECASE folds together but JS's non-unicode /i does not: JS compares
# toUpperCase() and keeps a non-ASCII letter whose uppercase is ASCII (ſ, ı) or is not one
# letter (ß). So under /i `s` never matches `ſ`, `k` never `K` (Kelvin), `i` never `ı`/`İ`.
_JS_ONLY_SELF = "\u017f\u212a\u0131\u0130\u00df\u1e9e"
_JS_FOLD = {
    **dict.fromkeys("sS", "(?-i:[sS])"),
    **dict.fromkeys("kK", "(?-i:[kK])"),
    **dict.fromkeys("iI", "(?-i:[iI])"),
    **{c: f"(?-i:{c})" for c in _JS_ONLY_SELF},
    # case pairs newer than this Python's Unicode tables
    **{chr(c): f"[{chr(lo)}{chr(up)}]" for lo, up in NEW_CASE_PAIRS for c in (lo, up)},
}
_PY_PARTNERS = {"\u017f": "sS", "\u212a": "kK", "\u0131": "iI", "\u0130": "iI",
                "\u00df": "\u1e9e", "\u1e9e": "\u00df"}  # fmt: skip
_NEW_PARTNER = {
    **{chr(lo): chr(up) for lo, up in NEW_CASE_PAIRS},
    **{chr(up): chr(lo) for lo, up in NEW_CASE_PAIRS},
}
_WORD_CI = {"w": "(?-i:[A-Za-z0-9_])", "W": "(?-i:[^A-Za-z0-9_])"}


def js_literal_ci(text: str) -> str:
    """A Python pattern (for re.IGNORECASE) matching `text` as a JS non-unicode /i regex does."""
    return "".join(_JS_FOLD.get(c) or re.escape(c) for c in text)


def _class_ci(cls: str) -> str:
    """A positive class under /i: the letters JS does not fold (`_JS_FOLD`) never match it
    unless written in it (`[a-z]` matches `ſ` for Python's re.IGNORECASE, not for JS), nor do
    their Python partners (`[İ]` matches `i` for Python) unless the class may hold them.
    Newer case pairs (`NEW_CASE_PAIRS`) are added to the class."""
    excluded = {c for c in _JS_ONLY_SELF if c not in cls}
    if "-" not in cls:  # no range: what is not written in the class is not in it
        excluded.update(p for c in _JS_ONLY_SELF if c in cls for p in _PY_PARTNERS[c])
        ascii_cls = "".join(ch for ch in cls if ch.isascii())
        excluded.difference_update(cls, ascii_cls.lower(), ascii_cls.upper())
    extra = "".join(_NEW_PARTNER[c] for c in cls if c in _NEW_PARTNER)
    if extra:
        cls = f"(?:{cls}|[{extra}])"
    if not excluded:
        return cls
    return f"(?:(?-i:(?![{''.join(sorted(excluded))}])){cls})"


def _convert(src: str, ignore_case: bool = False) -> str:
    out: list[str] = []
    i, n = 0, len(src)
    in_class = False
    class_start = -1  # where the positive class being read starts in `out` (ignore_case)
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
            elif not in_class and ignore_case and e in _WORD_CI:
                out.append(_WORD_CI[e])
            elif not in_class and e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e == "c" or e == "k" or e == "p" or e == "P":
                out.append(_JS_FOLD[e] if ignore_case and not in_class and e == "k" else e)
            elif e in _PY_OK_ESCAPES:
                out.append("\\" + e)
            elif ignore_case and not in_class and e in _JS_FOLD:
                out.append(_JS_FOLD[e])  # identity escape
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
            if not in_class and class_start >= 0:
                out[class_start:] = [_class_ci("".join(out[class_start:]))]
                class_start = -1
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
            if ignore_case and not src.startswith("[^", i):
                class_start = len(out)
            out.append(c)
            if i + 1 < n and src[i + 1] == "^":
                out.append("^")
                i += 1
        elif c == ".":
            out.append(NOT_LT)
        elif c == "$":
            out.append(r"\Z")
        elif c == "(" and src.startswith("(?", i) and not (
            src.startswith("(?:", i) or src.startswith("(?=", i) or src.startswith("(?!", i)
            or src.startswith("(?<=", i) or src.startswith("(?<!", i)
        ):  # fmt: skip
            raise JsSyntaxError("Invalid group")
        elif ignore_case and c in _JS_FOLD:
            out.append(_JS_FOLD[c])
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
        return re.compile(_convert(src, ignore_case), re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise JsSyntaxError(f"Invalid regular expression: /{src}/: {exc}") from None
