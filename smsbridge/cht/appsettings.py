"""CHT's app settings (form definitions, locale, phone rules) and its translations, cached in
SQLite and refreshed together on an interval, so that a bridge restarted during a CHT outage
still parses the same. Or, with SMSBRIDGE_FORMS_FILE, form definitions from a local file instead
of CHT's (the translations still come from CHT).

CHT's parser runs every label through its translations (a label that is a translation key means
that key's text), so the parser needs the same tables: they are built from CHT's translation
documents by `smsparser.translate.load_translations`. A failure to read the translations keeps
the cached ones (and the settings just fetched) and tries again sooner."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from smsbridge import phone
from smsbridge.cht.breaker import ChtGate
from smsbridge.errors import AuthFailure, PeerError, RetryableError
from smsbridge.logs import event
from smsbridge.settings import Settings
from smsbridge.smsparser.forms import Forms, forms_from_settings, load_forms
from smsbridge.smsparser.translate import load_translations
from smsbridge.store import Store

log = logging.getLogger(__name__)

KV_KEY = "cht.app_settings"
RETRY_SOONER = 30.0
"""Seconds to the next attempt after a failed refresh (when the interval is longer)."""


class SettingsSource(Protocol):
    async def app_settings(self) -> dict[str, Any]: ...

    async def translation_docs(self) -> list[dict[str, Any]]: ...


class ChtSettingsCache:
    """The latest CHT app settings we know, and the form definitions in them."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.refresh_interval = settings.forms_refresh
        self.app_settings: dict[str, Any] = {}
        self.forms: Forms = Forms()
        self.translations: dict[str, dict[str, Any]] = {}
        self.fetched_at: float | None = None
        self.next_refresh = 0.0
        self.last_error: str | None = None
        self._file_forms: Forms | None = None
        if settings.forms_file is not None:
            self._file_forms = load_forms(settings.forms_file)
            self.forms = self._file_forms
            try:  # a whole app_settings export also gives locale and phone rules
                raw = json.loads(settings.forms_file.read_text(encoding="utf-8"))
                if isinstance(raw, dict) and isinstance(raw.get("forms"), dict):
                    self.app_settings = {k: v for k, v in raw.items() if k != "forms"}
            except (OSError, ValueError):
                pass
        self._load_cached()

    def _load_cached(self) -> None:
        raw = self.store.get_kv(KV_KEY)
        if raw is None:
            return
        try:
            cached = json.loads(raw)
        except ValueError:
            return
        self._apply(cached["settings"], cached.get("fetched_at"))
        translations = cached.get("translations")
        if isinstance(translations, dict):
            self.translations = translations

    def _apply(self, app_settings: dict[str, Any], fetched_at: float | None) -> None:
        if self._file_forms is None:
            self.app_settings = app_settings
            self.forms = forms_from_settings(app_settings)
        else:
            # forms from the file; the rest (locale, phone rules) from CHT when we have it
            self.app_settings = {k: v for k, v in app_settings.items() if k != "forms"}
        self.fetched_at = fetched_at

    def due(self, now: float) -> bool:
        return now >= self.next_refresh

    async def refresh(self, cht: SettingsSource, now: float) -> bool:
        """Fetch CHT's settings and cache them. False (and the cached copy kept) on failure;
        AuthFailure propagates so CHT work can pause."""
        self.next_refresh = now + self.refresh_interval
        try:
            app_settings = await cht.app_settings()
        except AuthFailure:
            raise
        except PeerError as exc:
            self.last_error = exc.detail or exc.code
            event(
                log,
                "cht_settings_refresh_failed",
                logging.WARNING,
                error=exc.code,
                cached=self.fetched_at is not None,
            )
            self.next_refresh = now + min(self.refresh_interval, RETRY_SOONER)
            return False
        translations = await self._fetch_translations(cht, now)
        payload = json.dumps(
            {
                "settings": app_settings,
                "translations": self.translations if translations is None else translations,
                "fetched_at": now,
            }
        )
        await self.store.write(lambda c: Store.put_kv(c, KV_KEY, payload, now))
        self._apply(app_settings, now)
        if translations is not None:
            self.translations = translations
        self.last_error = None
        event(
            log,
            "cht_settings_refreshed",
            forms=len(self.forms),
            locales=len(self.translations),
            translations_fresh=translations is not None,
        )
        return True

    async def _fetch_translations(
        self, cht: SettingsSource, now: float
    ) -> dict[str, dict[str, Any]] | None:
        """The translation tables from CHT's documents; None (cached ones kept) on failure."""
        try:
            return load_translations(await cht.translation_docs())
        except AuthFailure:
            raise
        except PeerError as exc:
            event(
                log,
                "cht_translations_refresh_failed",
                logging.WARNING,
                error=exc.code,
                status=exc.status,
                cached=bool(self.translations),
            )
            if isinstance(exc, RetryableError):
                self.next_refresh = now + min(self.refresh_interval, RETRY_SOONER)
            return None

    async def refresh_if_due(self, cht: SettingsSource, gate: ChtGate, now: float) -> None:
        """The settings refresher's step: fetch when due, unless CHT work is paused for a 401
        (a 401 here pauses it)."""
        if gate.auth_failed is not None or not self.due(now):
            return
        try:
            await self.refresh(cht, now)
        except AuthFailure as exc:
            gate.auth_failure(exc.detail or exc.code, now)

    def status(self) -> tuple[bool, str]:
        """(ready, detail) for /readyz: ready once we have form definitions from somewhere."""
        if self._file_forms is not None:
            return True, f"{len(self.forms)} forms from {self.settings.forms_file}"
        if self.fetched_at is None:
            return False, "form definitions not fetched from CHT yet" + (
                f" ({self.last_error})" if self.last_error else ""
            )
        return True, f"{len(self.forms)} forms"

    # -- what parsing needs --------------------------------------------------------------------

    @property
    def locale(self) -> str:
        value = self.app_settings.get("locale")
        return value if isinstance(value, str) and value else self.settings.locale

    @property
    def default_country_code(self) -> Any:
        return self.app_settings.get("default_country_code")

    @property
    def phone_validation(self) -> Any:
        return self.app_settings.get("phone_validation")

    def sender(self, number: str) -> str:
        """An SMS sender as CHT keeps it under these settings (phone.py `as_cht_keeps`: E.164
        when it is a valid number for `default_country_code`, else as the carrier wrote it).
        Before CHT's settings are known (never fetched, none cached) there is no country code:
        a national number stays as written."""
        return phone.as_cht_keeps(number, self.default_country_code, self.phone_validation)
