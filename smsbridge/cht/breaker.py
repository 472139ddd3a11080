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

    async def translation_docs(self) -> list[dict[str, Any]]: ...

    async def records_by_gateway_ref(self, ref: str) -> list[str]: ...

    async def exchange_sms(
        self, messages: list[dict[str, Any]], updates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...

    async def check_auth(self) -> None: ...

    async def monitoring(self) -> dict[str, Any]: ...


AUTH_PROBE_FIRST = 5.0
"""Seconds from a 401 to the first probe of the credentials; each refused probe doubles it."""
AUTH_PROBE_CAP = 60.0
"""The longest wait between two probes (one failed login a minute is far from CHT's lockout of
ten failures in ten seconds)."""


class ChtGate:
    """Whether CHT work may run now. CHT being down pauses the CHT lane until the failed task's
    retry is due (so the backlog keeps its arrival order and CHT is not hammered); a 401 pauses
    it until a probe finds the credentials accepted again. The probes back off: the first
    `auth_probe_first` s after the 401, then doubling up to `auth_probe_cap` s, so a password
    fixed in CHT is noticed within seconds while a wrong one costs one failed login a minute.

    While paused, nothing but the probe calls CHT with the refused credentials: the workers
    check `open`/`probe` before they claim work, the settings refresher checks `auth_failed`, and
    /readyz goes through `readiness_probe`, which reports the pause without calling."""

    def __init__(
        self, auth_probe_first: float = AUTH_PROBE_FIRST, auth_probe_cap: float = AUTH_PROBE_CAP
    ) -> None:
        self.paused_until = 0.0
        self.auth_failed: str | None = None
        self.auth_probe_first = auth_probe_first
        self.auth_probe_cap = auth_probe_cap
        self.auth_probe_interval = auth_probe_first  # the wait before the next probe
        self.next_auth_probe = 0.0

    def open(self, now: float) -> bool:
        return self.auth_failed is None and now >= self.paused_until

    def back_off(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)

    def auth_failure(self, detail: str, now: float) -> None:
        """A call was refused with 401: pause, and probe `auth_probe_first` s from now (a later
        401 while already paused, from a call that was in flight, does not delay the probe)."""
        if self.auth_failed is None:
            event(log, "cht_auth_failed_pausing", logging.ERROR, detail=detail)
            self.auth_probe_interval = self.auth_probe_first
            self.next_auth_probe = now + self.auth_probe_interval
        self.auth_failed = detail or "CHT refused our credentials"

    async def probe(self, cht: ChtApi, now: float) -> bool:
        """When paused for auth and a probe is due: check the credentials once (concurrent
        callers do not probe twice: the next probe is scheduled before the call)."""
        if self.auth_failed is None:
            return True
        if now < self.next_auth_probe:
            return False
        self.auth_probe_interval = min(self.auth_probe_interval * 2, self.auth_probe_cap)
        self.next_auth_probe = now + self.auth_probe_interval
        reset = getattr(cht, "reset_auth", None)  # ChtClient fails fast after a 401 until reset
        if callable(reset):
            reset()
        try:
            await cht.check_auth()
        except AuthFailure as exc:
            self.auth_failed = exc.detail or "CHT refused our credentials"
            event(
                log,
                "cht_auth_probe_refused",
                logging.WARNING,
                next_probe_s=round(self.auth_probe_interval, 1),
            )
            return False
        except Exception as exc:  # CHT down, or a bug: not a verdict on the credentials
            event(log, "cht_auth_probe_failed", logging.WARNING, error=type(exc).__name__)
            return False
        event(log, "cht_auth_recovered_resuming")
        self.auth_failed = None
        self.auth_probe_interval = self.auth_probe_first
        return True

    async def readiness_probe(self, cht: ChtApi, now: float) -> None:
        """/readyz's CHT check: raises AuthFailure without calling CHT while paused for a 401;
        otherwise checks the credentials, and a 401 there pauses CHT work like any other."""
        if self.auth_failed is not None:
            raise AuthFailure(self.auth_failed)
        try:
            await cht.check_auth()
        except AuthFailure as exc:
            self.auth_failure(exc.detail or exc.code, now)
            raise

    def paused_reason(self) -> str | None:
        return (
            None
            if self.auth_failed is None
            else f"CHT refused our credentials ({self.auth_failed})"
        )
