"""JavaScript object semantics CHT's parser relies on: the order of an object's keys, and what
counts as an object's own properties."""

from __future__ import annotations

import re
from typing import Any

_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_INDEX = 2**32 - 2


def js_key_order(keys: list[str]) -> list[str]:
    """Object key order: canonical array-index keys first (ascending), then the rest in
    insertion order."""
    index = [k for k in keys if _INDEX.fullmatch(k) and int(k) <= _MAX_INDEX]
    if not index:
        return keys
    seen = set(index)
    return sorted(index, key=int) + [k for k in keys if k not in seen]


def js_object_entries(value: Any) -> dict[str, Any]:
    """`value` seen as a JS object's own properties: an array or a string by index, an object
    as is, anything else as no properties (`Object.keys(5)` is [])."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list | str):
        return {str(i): item for i, item in enumerate(value)}
    return {}
