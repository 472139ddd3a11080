"""Delivery states read from carriers that report none themselves (`Carrier.polls_status`:
RapidPro). A periodic step (wired in smsbridge/service.py, every SMSBRIDGE_STATUS_POLL_INTERVAL
seconds) asks each enabled polling carrier about its SMS that are `sent` and not final, sent
within the message TTL (older ones are not followed any further), at most `batch` of them per
carrier and round; a cursor walks on through the rest in later rounds, so a few SMS that stay
`sent` for good cannot starve the others. States that move an SMS forward are applied as that
carrier's delivery reports (the status webhook's path: outbound/delivery.py, bound to the
carrier), one transaction per round; a state it already has is not stored again.

A carrier that refuses (down, throttled, a bad token) is logged and asked again next round, or
after its Retry-After when it named one; the other carriers are polled all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

import httpx

from smsbridge.carriers.base import Carrier, CarrierConfig
from smsbridge.errors import PeerError
from smsbridge.logs import event
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import RANK, StatusUpdate
from smsbridge.store import Store

log = logging.getLogger(__name__)

BATCH = 50
"""SMS asked about per carrier and round (RapidPro: one request each)."""

Report = Callable[[Sequence[StatusUpdate], float], Awaitable[int]]


class StatusPoller:
    def __init__(
        self,
        store: Store,
        *,
        carriers: Mapping[str, Carrier],
        configs: Mapping[str, CarrierConfig],
        enabled: Collection[str],
        http: httpx.AsyncClient,
        report: Report,
        max_age: float,
        batch: int = BATCH,
    ) -> None:
        """`report(updates, now)`: applies delivery reports in one transaction (the outbound
        pipeline's `delivery_reports`); `max_age`: how long after it was sent an SMS is still
        asked about (the message TTL)."""
        self.store = store
        self.pollers = {
            name: carrier
            for name, carrier in carriers.items()
            if name in enabled and carrier.polls_status
        }
        self.configs = configs
        self.http = http
        self.report = report
        self.max_age = max_age
        self.batch = batch
        self._after: dict[str, int] = {}  # per carrier: the last SMS id asked about
        self._resume_at: dict[str, float] = {}  # per carrier: not before (its Retry-After)

    async def step(self, now: float) -> int:
        """One round over every polling carrier; returns how many SMS moved."""
        updates: list[StatusUpdate] = []
        for name, carrier in self.pollers.items():
            if now >= self._resume_at.get(name, 0.0):
                updates += await self._poll(name, carrier, now)
        if not updates:
            return 0
        return await self.report(updates, now)

    async def _poll(self, name: str, carrier: Carrier, now: float) -> list[StatusUpdate]:
        """The news from carrier `name` about its next batch of SMS awaiting a state."""
        after = self._after.get(name, 0)
        batch = await self._awaiting(name, now, after)
        if not batch and after:
            after = 0  # the end of the list: start over
            batch = await self._awaiting(name, now, after)
        if not batch:
            self._after.pop(name, None)
            return []
        known = {m.external_id: m for m in batch if m.external_id}
        try:
            updates = await carrier.poll_status(self.http, self.configs[name], list(known))
        except PeerError as exc:
            if exc.retry_after:
                self._resume_at[name] = now + exc.retry_after
            event(
                log,
                "status_poll_failed",
                logging.WARNING,
                carrier=name,
                error=exc.code,
                status=exc.status,
                messages=len(batch),
            )
            return []
        self._after[name] = batch[-1].id
        news = [
            u
            for u in updates
            if u.carrier == name
            and (m := known.get(u.external_id)) is not None
            and RANK[u.state] > RANK[m.state]
        ]
        event(log, "status_polled", logging.DEBUG, carrier=name, asked=len(batch), moved=len(news))
        return news

    async def _awaiting(self, name: str, now: float, after: int) -> list[outgoing.Outgoing]:
        since = now - self.max_age
        return await self.store.off_loop(
            lambda: self.store.read(
                lambda c: outgoing.awaiting_state_in(c, name, since, after, self.batch)
            )
        )
