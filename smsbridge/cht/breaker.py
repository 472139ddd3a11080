"""How the workers use CHT: what they need of the client (`ChtApi`) and the gate that pauses
CHT work — until a retry is due after a transient failure, or until CHT accepts our credentials
again after a 401 (no retrying into CHT's failed-login lockout). Inbound and outbound share one
gate."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from smsbridge.errors import AuthFailure
from smsbridge.logs import event

log = logging.getLogger(__name__)


class ChtApi(Protocol):
    """What the workers (inbound and outbound) need of `smsbridge.cht.client.ChtClient`."""

    async def app_settings(self) -> dict[str, Any]: ...

    async def contacts_by_phone(self, phone: str) -> list[dict[str, Any]]: ...

    async def create_record(self, body: dict[str, Any]) -> str: ...

    async def exchange_sms(
        self, messages: list[dict[str, Any]], updates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...

    async def check_auth(self) -> None: ...


class ChtGate:
    """Whether CHT work may run now. CHT being down pauses the CHT lane until the failed task's
    retry is due (so the backlog keeps its arrival order and CHT is not hammered); a 401 pauses
    it until a probe (every `auth_probe_interval` s) finds the credentials accepted again."""

    def __init__(self, auth_probe_interval: float = 60.0) -> None:
        self.paused_until = 0.0
        self.auth_failed: str | None = None
        self.auth_probe_interval = auth_probe_interval
        self.next_auth_probe = 0.0

    def open(self, now: float) -> bool:
        return self.auth_failed is None and now >= self.paused_until

    def back_off(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)

    def auth_failure(self, detail: str, now: float) -> None:
        if self.auth_failed is None:
            event(log, "cht_auth_failed_pausing", logging.ERROR, detail=detail)
        self.auth_failed = detail or "CHT refused our credentials"
        self.next_auth_probe = now + self.auth_probe_interval

    async def probe(self, cht: ChtApi, now: float) -> bool:
        """When paused for auth and a probe is due: check the credentials once."""
        if self.auth_failed is None:
            return True
        if now < self.next_auth_probe:
            return False
        self.next_auth_probe = now + self.auth_probe_interval
        reset = getattr(cht, "reset_auth", None)  # ChtClient fails fast after a 401 until reset
        if callable(reset):
            reset()
        try:
            await cht.check_auth()
        except AuthFailure as exc:
            self.auth_failed = exc.detail or "CHT refused our credentials"
            return False
        except Exception:
            return False
        event(log, "cht_auth_recovered_resuming")
        self.auth_failed = None
        return True

    def paused_reason(self) -> str | None:
        return (
            None
            if self.auth_failed is None
            else f"CHT refused our credentials ({self.auth_failed})"
        )
