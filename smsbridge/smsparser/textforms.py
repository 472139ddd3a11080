"""The textforms family: compact (`CODE v1 v2 "two words"`) and labelled
(`CODE L1 v1#L2 v2`), and the compact-or-labelled decision (`isCompact`).
Structure: grammars/compact.lark and grammars/textforms.lark; the scanners are compiled from
those grammars' terminals."""

from __future__ import annotations

import re
from typing import Any

from smsbridge.smsparser.formdef import CompiledForm, LabelCrash
from smsbridge.smsparser.grammar import terminal
from smsbridge.smsparser.js.crash import JsCrash
from smsbridge.smsparser.js.dates import parse_date_string
from smsbridge.smsparser.js.numbers import (
    JS_WS,
    NOT_LT,
    UNDEFINED,
    WS_RE,
    js_get,
    js_lower,
    js_set,
    normalize_number,
    truthy,
)
from smsbridge.smsparser.translate import Tables

_TOKENS = re.compile(f"{terminal('compact', 'QUOTED')}|{terminal('compact', 'WORD')}")
_GREEDY_TOKENS = re.compile(f"{terminal('compact', 'GREEDY_QUOTED')}|{terminal('compact', 'WORD')}")
_BOUNDARY = re.compile(terminal("textforms", "BOUNDARY"))
_SEP = terminal("textforms", "SEP")
# Spec 9.2: WS* KEY SEP* DATE? SEP* NUM? SEP* OTHER? WS* end -- searched, not anchored.
_TAIL_SRC = (
    f"{_SEP}*({terminal('textforms', 'DATE')})?"
    f"{_SEP}*({terminal('textforms', 'NUM')})?"
    f"{_SEP}*({NOT_LT}+?)?{WS_RE}*\\Z"
)
_PAIR = re.compile(f"{WS_RE}*({terminal('textforms', 'KEY')}){_TAIL_SRC}")


def is_compact(
    form: CompiledForm,
    msg: str,
    locale: str | None,
    tables: Tables | None = None,
    settings_locale: str | None = None,
) -> bool:
    """Spec 4.5. `msg` is the message after the form code was stripped."""
    if not msg or not form.fields_truthy:
        return False
    if "#" in msg and len(_BOUNDARY.split(msg)) != 1:
        return False
    if form.has_null_field:
        raise JsCrash("form_definition", "A field of this form has no definition.")
    lowered = js_lower(msg)
    for label, rx in form.labels(locale, tables, settings_locale).compact:
        if lowered == label:
            return False
        if isinstance(rx, LabelCrash):
            raise JsCrash("form_definition", str(rx))
        if rx.search(msg):
            return False
    return True


_TAIL = re.compile(_TAIL_SRC)  # _PAIR after its KEY group
_KEY_RUN = re.compile(terminal("textforms", "KEY"))
_LINE_TERMINATORS = "\n\r\u2028\u2029"
# What SEP*, DATE and NUM can consume: a line break can only sit among these.
_BEFORE_BREAK = re.compile(f"(?:{_SEP}|[0-9/.])*")


def match_pair(segment: str) -> tuple[str, str | None, str | None, str | None] | None:
    """`_PAIR.search(segment).groups()`, without the regex's cubic backtracking on segments
    with line breaks (a 1,600-character SMS could otherwise take a minute).

    The search is leftmost, KEY greedy: the first run of KEY characters with an end `e`
    (longest first) at which the rest of the segment matches `_TAIL` wins. A line break before
    the trailing white space can only be consumed by the SEP/DATE/NUM part, so an end `e` is
    hopeless unless everything from `e` up to the last such break is SEP, digits, "/" or "."."""
    body_end = len(segment.rstrip(JS_WS))
    last_break = max(segment.rfind(c, 0, body_end) for c in _LINE_TERMINATORS)
    if last_break < 0:
        m = _PAIR.search(segment)
        return m.groups() if m else None  # type: ignore[return-value]
    for run in _KEY_RUN.finditer(segment):
        a, b = run.span()
        for e in range(b, a, -1):
            if e <= last_break:
                reach = _BEFORE_BREAK.match(segment, e)
                if reach is None or reach.end() <= last_break:
                    continue
            m = _TAIL.match(segment, e)
            if m is not None:
                return (segment[a:e], *m.groups())  # type: ignore[return-value]
    return None


def tokens(msg: str) -> list[str]:
    return _TOKENS.findall(msg)


def parse_compact(form: CompiledForm, msg: str) -> dict[str, Any]:
    values = tokens(msg)
    keys = form.keys
    if not values:
        raise JsCrash("empty_compact", "The message has nothing after the form code.")
    if len(values) > len(keys):
        values = _GREEDY_TOKENS.findall(msg)
        if not values:  # CHT: the greedy pass's `match` is null too -> TypeError
            raise JsCrash("empty_compact", "The message has nothing CHT can read after the code.")
    out: dict[str, Any] = {}
    last = len(keys) - 1
    for i, key in enumerate(keys):
        if not values:
            break
        # the trailing string field takes all remaining tokens
        value = " ".join(values) if i == last and form.types[i] == "string" else values.pop(0)
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        if js_get(out, key) is UNDEFINED:  # CHT: `typeof results[key] === 'undefined'`
            js_set(out, key, value)
    return out


def segments(msg: str) -> list[str]:
    return _BOUNDARY.split(msg)


def _set_result(results: dict[str, Any], key: str, value: Any, pair: list[Any] | None) -> None:
    key = js_lower(key)
    current = js_get(results, key)
    if current is UNDEFINED:
        js_set(results, key, "".join(pair) if pair is not None else value)
    elif isinstance(current, list):
        current.append({"type": "pair", "values": pair} if pair is not None else value)
    else:
        item = {"type": "pair", "values": pair} if pair is not None else value
        js_set(results, key, [current, item])


def parse_labelled(msg: str, tz: str) -> dict[str, Any]:
    """The textforms parser: lowercased label -> value."""
    results: dict[str, Any] = {}
    for segment in segments(msg):
        groups = match_pair(segment)
        if groups is None:
            continue
        key, date, num, other = groups
        if other is not None and other.strip(JS_WS) == "":
            other = None
        if other is not None and num is not None:
            _set_result(results, key, None, [num, other])
        elif num is not None:
            _set_result(results, key, normalize_number(float(num)), None)
        elif date is not None:
            _set_result(results, key, parse_date_string(date, tz), None)
        else:
            _set_result(results, key, other if other is not None else UNDEFINED, None)
    return results


def map_tiny_labels(
    form: CompiledForm,
    data: dict[str, Any],
    locale: str | None,
    tables: Tables | None,
    settings_locale: str | None,
) -> None:
    """Spec 9.5: move values from tiny labels to field keys (in place)."""
    tiny = form.labels(locale, tables, settings_locale).tiny
    if isinstance(tiny, LabelCrash):
        raise JsCrash("form_definition", str(tiny))
    for key, label in tiny:
        if label is not None and key != label and truthy(js_get(data, label)):
            js_set(data, key, js_get(data, label))
            js_set(data, label, UNDEFINED)
