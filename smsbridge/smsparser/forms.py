"""CHT form definitions (app_settings `forms`): from a file holding
either the `forms` object or a whole app_settings export, or from app_settings fetched from CHT."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from smsbridge.errors import ConfigError


class Forms(Mapping[str, Mapping[str, Any]]):
    """Form code (the settings key, uppercase to be reachable by SMS) -> definition."""

    def __init__(self, forms: Mapping[str, Any] | None = None) -> None:
        forms = forms or {}
        if not isinstance(forms, Mapping):
            raise ConfigError("`forms` must be a JSON object keyed by form code")
        bad = [code for code, definition in forms.items() if not isinstance(definition, Mapping)]
        if bad:
            raise ConfigError(f"form definitions must be JSON objects: {', '.join(sorted(bad))}")
        self._forms: dict[str, Mapping[str, Any]] = dict(forms)

    def __getitem__(self, code: str) -> Mapping[str, Any]:
        return self._forms[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._forms)

    def __len__(self) -> int:
        return len(self._forms)

    def __repr__(self) -> str:
        return f"Forms({sorted(self._forms)})"

    def unreachable(self) -> list[str]:
        """Codes that no SMS can select (CHT uppercases the code it reads from a message)."""
        return sorted(code for code in self._forms if code != code.upper())


def _forms_object(data: Any) -> Any:
    if isinstance(data, Mapping):
        if isinstance(data.get("settings"), Mapping) and "forms" in data["settings"]:
            return data["settings"]["forms"]
        if "forms" in data and isinstance(data["forms"], Mapping):
            return data["forms"]
    return data


def forms_from_settings(app_settings: Mapping[str, Any]) -> Forms:
    """The forms of an app_settings object (as `GET /api/v1/settings` returns it)."""
    return Forms(_forms_object(app_settings) if app_settings else {})


def load_forms(path: str | Path) -> Forms:
    """Read forms from a JSON file: a `forms` object, `{"forms": {...}}`, a whole app_settings
    export, or the CouchDB settings doc (`{"settings": {"forms": ...}}`)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read forms file {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"forms file {p} is not valid JSON: {exc}") from None
    return Forms(_forms_object(data))
