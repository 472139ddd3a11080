"""The CHT sync: the outgoing side's exchange with CHT.

ChtSync exchanges with CHT's `POST /api/sms` every SMSBRIDGE_SYNC_INTERVAL seconds, and at once
when status updates are waiting: each exchange carries the status updates owed to CHT (oldest
first) and brings back messages to send, which are stored under CHT's id (with a send task) in
the same transaction that records the updates as heard. While CHT returns a full batch (25) or
more updates wait, it asks again at once. CHT applies updates before it selects messages, so an
acknowledgement (UNSENT) takes a message out of CHT's next offer.

A CHT failure backs off (RetryableError) or pauses until the credentials work again
(AuthFailure, shared with the inbound workers' gate: no retrying into CHT's lockout).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from smsbridge.cht.breaker import ChtApi, ChtGate
from smsbridge.errors import AuthFailure, RetryableError
from smsbridge.logs import event
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound import transitions
from smsbridge.store import Store

log = logging.getLogger(__name__)

CHT_BATCH = 25  # CHT returns at most 25 messages per exchange
MAX_UPDATES = 100  # status updates per exchange
MAX_ROUNDS = 200  # exchanges per sync before yielding to the interval
# Failures that prove CHT did not process the exchange. After any other failure (timeout,
# dropped connection, a 5xx) CHT may have applied every update: see `outgoing.superseded`.
NOT_PROCESSED = frozenset({"cht_unreachable", "cht_starting", "cht_rate_limited"})
SWEEP_EVERY = 60.0  # seconds between sweeps for expired held and dropped messages


class ChtSync:
    def __init__(
        self,
        store: Store,
        cht: ChtApi,
        *,
        interval: float,
        ttl: float,
        gate: ChtGate | None = None,
        on_messages: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.cht = cht
        self.interval = interval
        self.ttl = ttl
        self.gate = gate or ChtGate()
        self.on_messages = on_messages
        self.retry_at = 0.0
        self.next_sweep = 0.0

    async def exchange(self, now: float) -> bool:
        """One POST /api/sms. True when another should follow at once."""
        owed = outgoing.owed_reports(self.store, MAX_UPDATES)
        try:
            messages = await self.cht.exchange_sms([], [update for _id, update in owed])
        except RetryableError as exc:
            if exc.code not in NOT_PROCESSED and owed:
                await self.store.write(
                    lambda c: outgoing.mark_reported_in(c, outgoing.superseded(owed), now)
                )
            raise
        ids = [row_id for row_id, _update in owed]

        def job(conn: sqlite3.Connection) -> int:
            outgoing.mark_reported_in(conn, ids, now)
            return outgoing.store_cht_messages_in(conn, messages, now)

        new = await transitions.write(self.store, job)  # each new SMS: outgoing_queued
        if new:
            self.on_messages()
        event(log, "cht_sync", logging.DEBUG, updates=len(owed), messages=len(messages), new=new)
        return len(messages) >= CHT_BATCH or len(owed) >= MAX_UPDATES

    async def sync(self, now: float) -> int:
        """Exchange until CHT has nothing more and no updates wait; returns the exchanges made.
        Raises the CHT client's errors."""
        rounds = 0
        while rounds < MAX_ROUNDS:
            rounds += 1
            if not await self.exchange(now):
                break
        return rounds

    async def store_offered(self, messages: list[dict[str, Any]], now: float) -> int:
        """Messages CHT handed back on some other exchange (the inbound relay's)."""
        new = await transitions.write(
            self.store, lambda c: outgoing.store_cht_messages_in(c, messages, now)
        )
        if new:
            self.on_messages()
        return new

    async def step(self, now: float) -> None:
        """What the loop does each time it wakes: sync if due (and CHT is not paused), and
        now and then sweep held messages past the TTL and dropped dead letters."""
        if self.gate.auth_failed is not None and not await self.gate.probe(self.cht, now):
            return
        if now >= self.retry_at:
            try:
                await self.sync(now)
            except RetryableError as exc:
                self.retry_at = now + max(exc.retry_after or 0.0, min(self.interval, 30.0))
                event(log, "cht_sync_failed", logging.WARNING, error=exc.code)
            except AuthFailure as exc:
                self.gate.auth_failure(exc.detail or exc.code, now)
        if now >= self.next_sweep:
            self.next_sweep = now + SWEEP_EVERY
            swept = await transitions.write(
                self.store, lambda c: outgoing.expire_stale_in(c, now, self.ttl)
            )
            if swept:
                event(log, "outgoing_swept", logging.WARNING, count=swept)
