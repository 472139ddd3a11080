"""CHT's `config.translate` as the parser sees it (spec 13): translation keys looked up in
`{locale: {key: text}}` tables with an `en` fallback, and translation objects resolved by
locale, `default`, `en`, the first `translations[]` entry, then the first value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smsbridge.jsnum import UNDEFINED, truthy

Tables = Mapping[str, Mapping[str, Any]]


def resolve_object(value: Mapping[str, Any], locale: str) -> Any:
    translations = value.get("translations")
    if translations:
        found = None
        if isinstance(translations, list):
            for t in translations:
                if isinstance(t, Mapping) and t.get("locale") == locale:
                    found = t.get("content")
                    break
        result = found
    else:
        result = value.get(locale) or value.get("default") or value.get("en")
    if not truthy(result) and isinstance(translations, list) and translations:
        first = translations[0]
        result = first.get("content") if isinstance(first, Mapping) else None
    if not truthy(result):
        for v in value.values():
            result = v
            break
    return result if truthy(result) else value


def translate(key: Any, locale: str | None, tables: Tables | None, settings_locale: str | None) -> Any:
    """translate(key, locale): '' for undefined, objects resolved, strings looked up."""
    loc = locale or settings_locale or "en"
    if key is UNDEFINED or key is None:
        return ""
    if isinstance(key, Mapping):
        return resolve_object(key, loc)
    if isinstance(key, list):
        return key
    if not isinstance(key, str):
        return key
    if tables:
        for name in (loc, "en"):
            table = tables.get(name)
            if table and key in table:
                return table[key]
    return key
