"""A CHT form definition (app_settings `forms[CODE]`) prepared for parsing: field keys
in JavaScript property order (C1), the first `bsAggreDate` field, the code-stripping pattern,
and per-locale label tables. Prepared once per definition object and cached."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from smsbridge.smsparser.js.numbers import UNDEFINED, WS_RE, js_lower, to_string, truthy
from smsbridge.smsparser.js.objects import js_key_order, js_object_entries
from smsbridge.smsparser.js.regexps import JsSyntaxError, compile_js, js_literal_ci
from smsbridge.smsparser.translate import Tables, effective_locale, translate


class LabelCrash(Exception):
    """CHT would throw while reading this form's labels (a null field, no `labels`, or a label
    that is not a valid regular expression)."""


Regex = re.Pattern[str] | LabelCrash


@dataclass(frozen=True)
class Labels:
    """The form's labels translated for one locale.

    compact: (lowercased label, `^label[\\s0-9]` regex) per truthy tiny/short label, in order;
    tiny: (field key, lowercased tiny label or None) per field, or a LabelCrash;
    javarosa: (field key, `^tiny$` regex) per field with a truthy tiny label."""

    compact: list[tuple[Any, Regex]]
    tiny: list[tuple[str, str | None]] | LabelCrash
    javarosa: list[tuple[str, Regex]]


def _regex(src: str) -> Regex:
    try:
        return compile_js(src)
    except JsSyntaxError as exc:
        return LabelCrash(f"The form label in /{src}/ is not usable: {exc}")


def _labels_obj(f: Any) -> Any:
    return f.get("labels", UNDEFINED) if isinstance(f, dict) else UNDEFINED


def _build_labels(keys: tuple[str, ...], fields: dict[str, Any], loc: str,
                  tables: Tables | None) -> Labels:  # fmt: skip
    compact: list[tuple[Any, Regex]] = []
    tiny: list[tuple[str, str | None]] | LabelCrash = []
    javarosa: list[tuple[str, Regex]] = []
    for key in keys:
        f = fields[key]
        labels = _labels_obj(f)
        if f is None:
            crash = LabelCrash(f"Field {key!r} of this form has no definition.")
            compact.append((None, crash))
            javarosa.append((key, crash))
            tiny = crash if isinstance(tiny, list) else tiny
            continue
        lab = labels if isinstance(labels, dict) else {}
        for which in ("tiny", "short"):
            text = translate(lab.get(which, UNDEFINED), loc, tables, None)
            if truthy(text):
                lowered = js_lower(text) if isinstance(text, str) else text
                compact.append((lowered, _regex(f"^{to_string(text)}[\\s0-9]")))
        if isinstance(tiny, list):
            if labels is UNDEFINED or labels is None:
                tiny = LabelCrash(
                    f"Field {key!r} has no labels, so labelled messages cannot be read for "
                    "this form."
                )
            else:
                t = translate(lab.get("tiny", UNDEFINED), loc, tables, None)
                tiny.append((key, js_lower(t) if isinstance(t, str) else None))
        if truthy(lab.get("tiny", UNDEFINED)) if isinstance(labels, dict) else False:
            label = to_string(translate(lab["tiny"], loc, tables, None))
            javarosa.append((key, _regex(f"^{label}$")))
    return Labels(compact, tiny, javarosa)


@dataclass(frozen=True)
class CompiledForm:
    definition: dict[str, Any]
    fields: dict[str, Any]
    keys: tuple[str, ...]
    paths: tuple[list[str], ...]
    types: tuple[Any, ...]
    fields_truthy: bool
    aggregate_key: str | None
    has_null_field: bool
    strip_code: re.Pattern[str] | None
    _labels: dict[tuple[str, int], tuple[Any, Labels]] = field(default_factory=dict)

    @classmethod
    def build(cls, definition: dict[str, Any]) -> CompiledForm:
        raw_fields = definition.get("fields", UNDEFINED)
        fields = js_object_entries(raw_fields)
        keys = tuple(js_key_order(list(fields)))
        types = tuple(fields[k].get("type") if isinstance(fields[k], dict) else None for k in keys)
        meta = definition.get("meta")
        code = meta.get("code") if isinstance(meta, dict) else None
        strip = None
        if isinstance(code, str):
            strip = re.compile(
                f"^{WS_RE}*{js_literal_ci(code)}(?:{WS_RE}|[!\\-,:#])*", re.IGNORECASE
            )
        return cls(
            definition=definition,
            fields=fields,
            keys=keys,
            paths=tuple(k.split(".") for k in keys),
            types=types,
            fields_truthy=truthy(raw_fields),
            aggregate_key=next(
                (k for k, t in zip(keys, types, strict=True) if t == "bsAggreDate"), None
            ),
            has_null_field=any(fields[k] is None for k in keys),
            strip_code=strip,
        )

    def strip_form_code(self, message: str) -> str:
        """Spec 5: remove the code (case-insensitive, taken literally) and any delimiters."""
        if self.strip_code is None:
            return message
        return self.strip_code.sub("", message, count=1)

    def labels(
        self, locale: str | None, tables: Tables | None, settings_locale: str | None
    ) -> Labels:
        """Labels translated for `locale` (falling back to the settings locale, then en)."""
        loc = effective_locale(locale, settings_locale)
        hit = self._labels.get((loc, id(tables)))
        if hit is not None and hit[0] is tables:
            return hit[1]
        built = _build_labels(self.keys, self.fields, loc, tables)
        if len(self._labels) > 64:
            self._labels.clear()
        self._labels[(loc, id(tables))] = (tables, built)
        return built


_CACHE: dict[int, CompiledForm] = {}
_CACHE_MAX = 512


def compiled(definition: dict[str, Any]) -> CompiledForm:
    """The CompiledForm for this definition object (cached by identity; do not mutate a
    definition after parsing with it)."""
    hit = _CACHE.get(id(definition))
    if hit is not None and hit.definition is definition:
        return hit
    form = CompiledForm.build(definition)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[id(definition)] = form
    return form
