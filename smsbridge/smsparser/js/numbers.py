"""JavaScript value semantics the CHT parser depends on.

JS values are modelled as: `UNDEFINED` (JS undefined), `None` (null), bool, int/float (a JS
Number; integral values are kept as int so JSON output matches JS), str, list, dict.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final


class _Undefined:
    """JS `undefined`: falsy, distinct from None (null)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class JsFunction:
    """A built-in function inherited from Object.prototype (`({}).toString`): truthy, prints as
    its source text, and vanishes from JSON."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"function {self.name}() {{ [native code] }}"


class _ObjectPrototype:
    """`Object.prototype` itself, what `obj.__proto__` reads: truthy, `[object Object]`."""

    def __repr__(self) -> str:
        return "[object Object]"


OBJECT_PROTOTYPE: Final = _ObjectPrototype()
# What reading a missing key of a plain JS object finds (Object.prototype members).
INHERITED: Final[dict[str, Any]] = {
    "constructor": JsFunction("Object"),
    "__proto__": OBJECT_PROTOTYPE,
    **{
        name: JsFunction(name)
        for name in (
            "toString", "toLocaleString", "valueOf", "hasOwnProperty", "isPrototypeOf",
            "propertyIsEnumerable", "__defineGetter__", "__defineSetter__", "__lookupGetter__",
            "__lookupSetter__",
        )
    },
}  # fmt: skip


_ARRAY_METHODS = frozenset(
    [
        "at",
        "concat",
        "copyWithin",
        "entries",
        "every",
        "fill",
        "filter",
        "find",
        "findIndex",
        "findLast",
        "findLastIndex",
        "flat",
        "flatMap",
        "forEach",
        "includes",
        "indexOf",
        "join",
        "keys",
        "lastIndexOf",
        "map",
        "pop",
        "push",
        "reduce",
        "reduceRight",
        "reverse",
        "shift",
        "slice",
        "some",
        "sort",
        "splice",
        "toLocaleString",
        "toReversed",
        "toSorted",
        "toSpliced",
        "toString",
        "unshift",
        "values",
        "with",
    ]
)
PROTO: Final = "\x00__proto__"  # where a dict keeps an array assigned to its `__proto__`
_INDEX_KEY = re.compile(r"0|[1-9][0-9]*")


def js_get(obj: dict[str, Any], key: str) -> Any:
    """`obj[key]` for a plain JS object: own property, else its prototype chain (an array
    assigned to `__proto__`, then Object.prototype)."""
    if key in obj:
        return obj[key]
    proto = obj.get(PROTO)
    if proto is not None:
        if key == "__proto__":
            return proto
        if key == "length":
            return len(proto)
        if _INDEX_KEY.fullmatch(key) and int(key) < len(proto):
            return proto[int(key)]
        if key == "constructor":
            return JsFunction("Array")
        if key in _ARRAY_METHODS:
            return JsFunction(key)
    return INHERITED.get(key, UNDEFINED)


def js_set(obj: dict[str, Any], key: str, value: Any) -> None:
    """`obj[key] = value`. Assigning `__proto__` creates no property: an array becomes the
    prototype (later reads fall back to it), anything else is ignored."""
    if key != "__proto__":
        obj[key] = value
    elif isinstance(value, list):
        obj[PROTO] = value


# C2: JS whitespace (\s, trim()) = WhiteSpace + LineTerminator.
JS_WS: Final = (
    "\t\n\x0b\x0c\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
JS_WS_SET: Final = frozenset(JS_WS)
# A character class body (without brackets) for use inside Python regexes.
WS_CLASS: Final = r"\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# One JS whitespace character, as a Python regex.
WS_RE: Final = f"[{WS_CLASS}]"
# C3: JS `.` excludes line terminators.
NOT_LT: Final = r"[^\n\r\u2028\u2029]"
# C4: zero-width characters.
_ZERO_WIDTH = re.compile("[\u200b-\u200d\ufeff]")
_DEVANAGARI = str.maketrans("०१२३४५६७८९", "0123456789")

_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\Z")
_RADIX = {"x": 16, "o": 8, "b": 2}
_RADIX_RE = re.compile(r"0([xXoObB])([0-9a-fA-F]+)\Z")


def js_trim(s: str) -> str:
    return s.strip(JS_WS)


def truthy(v: Any) -> bool:
    """C8: JS truthiness."""
    cls = v.__class__
    if cls is str:
        return v != ""
    if cls is dict or cls is list:
        return True
    if v is UNDEFINED or v is None or v is False:
        return False
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v != 0 and not math.isnan(v)
    if isinstance(v, str):
        return v != ""
    return True


_EXACT = 2.0**53


def normalize_number(x: float) -> float | int:
    """An integral finite double as int (so JSON prints `24`, not `24.0`; -0 becomes 0)."""
    if math.isfinite(x) and x == int(x) and abs(x) < _EXACT:
        return int(x)
    return x


def to_number(v: Any) -> float | int:
    """C6: JS `Number(v)`."""
    if v is UNDEFINED:
        return math.nan
    if v is None or v is False:
        return 0
    if v is True:
        return 1
    if isinstance(v, int | float):
        return v
    if isinstance(v, list | dict):
        v = to_string(v)
    if not isinstance(v, str):
        return math.nan
    s = v.strip(JS_WS)
    if s == "":
        return 0
    if _DECIMAL.match(s):
        if s.endswith("Infinity"):
            return -math.inf if s[0] == "-" else math.inf
        return normalize_number(float(s))
    m = _RADIX_RE.match(s)
    if m:
        try:
            return normalize_number(float(int(m.group(2), _RADIX[m.group(1).lower()])))
        except ValueError:
            return math.nan
    return math.nan


def number_to_string(x: float | int) -> str:
    """ECMAScript Number::toString(10)."""
    if isinstance(x, int):
        if abs(x) < _EXACT:
            return str(x)
        x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    r = repr(abs(x))
    mant, _, exp_s = r.partition("e")
    exp = int(exp_s) if exp_s else 0
    int_part, _, frac = mant.partition(".")
    if frac == "0":
        frac = ""
    digits = (int_part + frac).lstrip("0")
    n = len(int_part) + exp  # position of the decimal point relative to the digit string
    lead_zeros = len(int_part + frac) - len((int_part + frac).lstrip("0"))
    n -= lead_zeros
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = f"+{e}" if e >= 0 else str(e)
    if k == 1:
        return f"{sign}{digits}e{es}"
    return f"{sign}{digits[0]}.{digits[1:]}e{es}"


def to_string(v: Any) -> str:
    """JS `String(v)`."""
    if isinstance(v, str):
        return v
    if v is UNDEFINED:
        return "undefined"
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return number_to_string(v)
    if isinstance(v, list):
        return ",".join("" if e is None or e is UNDEFINED else to_string(e) for e in v)
    if isinstance(v, JsFunction):
        return repr(v)
    return "[object Object]"


def _double(n: int | float) -> float:
    """The JS number (IEEE double) an integer from JSON is; beyond the double range, ±Infinity."""
    try:
        return float(n)
    except OverflowError:
        return math.inf if n > 0 else -math.inf


def strict_equal(a: Any, b: Any) -> bool:
    """JS `a === b` for primitives (objects compare by identity)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return _double(a) == _double(b)  # JS numbers are doubles: 2**53 + 1 === 2**53
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or a is UNDEFINED:
        return a is b
    return a is b


def strip_zero_width(v: Any) -> Any:
    """Strip C4 characters from a string; other values are returned unchanged."""
    if isinstance(v, str) and not v.isascii():
        return _ZERO_WIDTH.sub("", v)
    return v


def standardise(v: Any) -> Any:
    """C5 D(x): falsy values unchanged; else String(x), Devanagari digits -> ASCII, Z stripped."""
    if not truthy(v):
        return v
    s = to_string(v).translate(_DEVANAGARI)
    return _ZERO_WIDTH.sub("", s) if not s.isascii() else s


def parse_num(raw: Any) -> Any:
    """C7 parseNum: undefined -> undefined; unparseable/empty/non-finite -> None; else a number."""
    if raw.__class__ is str and raw.isdigit() and raw.isascii() and len(raw) < 16:
        return int(raw)  # the common case, exact: plain ASCII digits
    if raw is UNDEFINED:
        return UNDEFINED
    s = standardise(raw)
    if isinstance(s, str) and s == "":
        return None
    n = to_number(s)
    if isinstance(n, float) and not math.isfinite(n):
        return None
    return n


def to_int32(x: float) -> int:
    if not math.isfinite(x):
        return 0
    n = int(x) & 0xFFFFFFFF
    return n - (1 << 32) if n >= (1 << 31) else n


# Case pairs (lower, upper) that node's ICU (Unicode 17) maps and this Python's Unicode 14
# tables do not: `toUpperCase`/`toLowerCase` of form codes and labels must map them too.
NEW_CASE_PAIRS = [
    (0x019B, 0xA7DC), (0x0264, 0xA7CB), (0x1C8A, 0x1C89), (0xA7CD, 0xA7CC), (0xA7CF, 0xA7CE),
    (0xA7D3, 0xA7D2), (0xA7D5, 0xA7D4), (0xA7DB, 0xA7DA),
    *((cp, cp - 0x20) for cp in range(0x10D70, 0x10D86)),
    *((cp, cp - 0x1B) for cp in range(0x16EBB, 0x16ED4)),
]  # fmt: skip
_TO_UPPER_NEW = {lo: up for lo, up in NEW_CASE_PAIRS if chr(lo).upper() == chr(lo)}
_TO_LOWER_NEW = {up: lo for lo, up in NEW_CASE_PAIRS if chr(up).lower() == chr(up)}


def js_upper(s: str) -> str:
    """JS `s.toUpperCase()` (Unicode 17 case mappings)."""
    u = s.upper()
    return u if u.isascii() else u.translate(_TO_UPPER_NEW)


def js_lower(s: str) -> str:
    """JS `s.toLowerCase()` (Unicode 17 case mappings)."""
    lowered = s.lower()
    return lowered if lowered.isascii() else lowered.translate(_TO_LOWER_NEW)
