"""The "!"-headed formats: muvuku positional (`1!CODE!v1#v2`) and javarosa labelled
(`J1!CODE!L1#v1#L2#v2`). Structure: grammars/muvuku.lark and grammars/javarosa.lark;
the scanners below are the fast equivalents the tests hold to those grammars."""

from __future__ import annotations

import re
from typing import Any

from smsbridge.smsparser.formdef import CompiledForm, LabelCrash
from smsbridge.smsparser.js.crash import JsCrash
from smsbridge.smsparser.js.numbers import JS_WS, NOT_LT, UNDEFINED, WS_RE, js_set, truthy
from smsbridge.smsparser.translate import Tables

# isMuvukuFormat: /^\s*([A-Za-z]?\d)!.+!.+/ (JS \s, \d and .)
MUVUKU_SHAPE = re.compile(f"^{WS_RE}*([A-Za-z]?[0-9])!{NOT_LT}+!{NOT_LT}+")
_JAVAROSA_HASH = re.compile(r"([^\\])#")


def split_muvuku(message: str) -> list[Any]:
    """Values in order: the first value (text after the second "!", or UNDEFINED), then the
    "#"-separated values."""
    parts = message.split("#")
    header = parts[0].split("!")
    first: Any = "!".join(header[2:]) if len(header) > 2 else UNDEFINED
    return [first, *parts[1:]]


def split_javarosa(message: str) -> list[str]:
    """Label/value parts of the data after the second "!"."""
    data = "!".join(message.split("!")[2:])
    if "\\" not in data and "\x0b" not in data and "##" not in data and data[:1] != "#":
        return data.split("#")  # every "#" separates: same result, much faster
    return _JAVAROSA_HASH.sub("\\1\x0b", data).split("\x0b")


def parse_muvuku(form: CompiledForm, message: str) -> dict[str, Any]:
    values = split_muvuku(message)
    out: dict[str, Any] = {}
    keys = form.keys
    for i in range(max(len(keys), len(values))):
        if i >= len(keys):
            out["_extra_fields"] = True
            continue
        val = values[i] if i < len(values) else UNDEFINED
        val = val.strip(JS_WS) if isinstance(val, str) else val
        field = form.fields[keys[i]]
        if isinstance(field, dict | list):
            if keys[i] == "__proto__":
                js_set(out, keys[i], val)
            else:
                out[keys[i]] = val
        elif not truthy(field):  # CHT treats a falsy definition as "no field here"
            out["_extra_fields"] = True
        else:  # a primitive cannot carry CHT's `_key` tag: the value lands under "undefined"
            out["undefined"] = val
    return out


def parse_javarosa(
    form: CompiledForm, message: str, tables: Tables | None, settings_locale: str | None
) -> dict[str, Any]:
    parts = split_javarosa(message)
    labels = [p.strip(JS_WS) for p in parts[0::2]]
    pairs = list(zip(labels, parts[1::2], strict=False))
    out: dict[str, Any] = {}
    for key, rx in form.labels(None, tables, settings_locale).javarosa:
        for label, value in pairs:
            if isinstance(rx, LabelCrash):
                raise JsCrash("form_definition", str(rx))
            if rx.search(label):
                js_set(out, key, value.replace("\\#", "#"))
    return out
