"""The outbound background work: the CHT sync loop and the send workers.

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

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig
from smsbridge.cht.breaker import ChtApi, ChtGate
from smsbridge.errors import AuthFailure, RetryableError
from smsbridge.inbound.messages import Accepted
from smsbridge.inbound.submit import accept_inbound
from smsbridge.logs import event
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound import transitions
from smsbridge.outbound.send import OutboundPipeline
from smsbridge.settings import Settings
from smsbridge.sms import InboundSms
from smsbridge.store import Store
from smsbridge.tasks import TaskQueue
from smsbridge.workers import Wakeup, cancel_all, claim_loop, survive

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
        self.wakeup = Wakeup()
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

    async def run(self, clock: Callable[[], float]) -> None:
        while True:
            await survive(lambda: self.step(clock()), "cht_sync_error", log)
            await self.wakeup.wait(self.interval)


class OutboundWorkers:
    """`concurrency` send loops plus the CHT sync loop, as asyncio tasks."""

    def __init__(
        self,
        pipeline: OutboundPipeline,
        sync: ChtSync | None,
        *,
        clock: Callable[[], float],
        concurrency: int = 4,
        idle: float = 0.2,
    ) -> None:
        self.pipeline = pipeline
        self.sync = sync
        self.clock = clock
        self.concurrency = concurrency
        self.idle = idle
        self.wakeup = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        if sync is not None:
            sync.on_messages = self.wakeup.set
            pipeline.on_report = sync.wakeup.set

    def start(self) -> None:
        if self.sync is not None:
            self._tasks.append(asyncio.create_task(self.sync.run(self.clock), name="cht-sync"))
        for n in range(self.concurrency):
            loop = claim_loop(
                self.pipeline.run_once, self.clock, self.wakeup, self.idle, "outbound", log
            )
            self._tasks.append(asyncio.create_task(loop, name=f"outbound-{n}"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        await self.pipeline.http.aclose()

    async def store_offered(self, messages: list[dict[str, Any]]) -> None:
        """The inbound relay's hook: messages CHT handed back on its exchange."""
        if self.sync is not None:
            await self.sync.store_offered(messages, self.clock())


def build_outbound(
    settings: Settings,
    store: Store,
    outbox: TaskQueue,
    cht: ChtApi,
    *,
    configs: Mapping[str, CarrierConfig],
    clock: Callable[[], float],
    gate: ChtGate,
    wake_inbound: Callable[[], None] = lambda: None,
    concurrency: int = 4,
    idle: float = 0.2,
) -> OutboundWorkers:
    """The outbound side of the service, ready to `start()`: send workers, the CHT sync loop,
    the pipeline the HTTP endpoints use (`.pipeline`) and the hook for messages CHT hands back
    on other exchanges (`.store_offered`). `configs`: every carrier's config, by name."""

    async def accept(messages: Sequence[InboundSms], now: float) -> list[Accepted]:
        accepted = await accept_inbound(store, messages, now, settings.dedup_window)
        wake_inbound()
        return accepted

    http = httpx.AsyncClient(timeout=settings.send_timeout, follow_redirects=False)
    pipeline = OutboundPipeline.from_settings(
        settings,
        store,
        outbox,
        http=http,
        carriers=CARRIERS,
        configs=configs,
        accept_inbound=accept,
    )
    # with the real clock, a worker waits for a rate slot up to a second away rather than
    # putting the task back (two fewer commits per SMS on a busy channel)
    pipeline.config = replace(pipeline.config, hold=1.0)
    sync = ChtSync(store, cht, interval=settings.sync_interval, ttl=settings.message_ttl, gate=gate)
    return OutboundWorkers(pipeline, sync, clock=clock, concurrency=concurrency, idle=idle)
