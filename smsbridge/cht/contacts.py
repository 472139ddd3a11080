"""Who sent an SMS: CHT's contacts-by-phone answers, cached for a while (unknown numbers too)."""

from __future__ import annotations

from typing import Any

from smsbridge.cht.breaker import ChtApi

MAX_ENTRIES = 50_000  # past this, the expired answers are dropped


class ContactCache:
    """contacts-by-phone answers, kept `ttl` seconds (unknown numbers too)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def lookup(self, cht: ChtApi, number: str, now: float) -> dict[str, Any] | None:
        hit = self._entries.get(number)
        if hit is not None and hit[0] > now:
            return hit[1]
        docs = await cht.contacts_by_phone(number)
        contact = docs[0] if docs else None
        self._entries[number] = (now + self.ttl, contact)
        if len(self._entries) > MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        return contact
