"""The CHT sync: the outgoing side's exchange with CHT.

ChtSync exchanges with CHT's `POST /api/sms` every SMSBRIDGE_SYNC_INTERVAL seconds, and at once
when status updates are waiting: each exchange carries the status updates owed to CHT (oldest
first) and brings back messages to send, which are stored under CHT's id (with a send task) in
the same transaction that records the updates as heard. While CHT returns a full batch (25) or
more updates wait, it asks again at once. CHT applies updates before it selects messages, so an
acknowledgement (UNSENT) takes a message out of CHT's next offer.

A CHT failure backs off (RetryableError) or pauses until the credentials work again
(AuthFailure, shared with the inbound workers' gate: no retrying into CHT's lockout).

Replies in seconds: CHT writes its automatic reply to a report within a second of accepting it,
but would hand it over only at the next exchange (up to SMSBRIDGE_SYNC_INTERVAL later). So once
CHT has accepted a report or a relayed SMS, `expedite` asks for follow-up exchanges shortly
after (FOLLOW_UPS), coalesced across messages; a small loop of their own (`follow_up`) wakes
the sync loop when one is due. The periodic exchange stays as the floor.

Several bridges on one PostgreSQL database: each runs this loop, but an exchange happens in one
of them at a time (SYNC_LOCK); the others skip that turn, as the owed updates and the offered
messages are the database's, not a process's.
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
from smsbridge.outbound import reports, transitions
from smsbridge.store import Store

log = logging.getLogger(__name__)

CHT_BATCH = 25  # CHT returns at most 25 messages per exchange
MAX_UPDATES = 100  # status updates per exchange
MAX_ROUNDS = 200  # exchanges per sync before yielding to the interval
# Failures that prove CHT did not process the exchange. After any other failure (timeout,
# dropped connection, a 5xx) CHT may have applied every update: see `reports.superseded`.
NOT_PROCESSED = frozenset({"cht_unreachable", "cht_starting", "cht_rate_limited"})
SWEEP_EVERY = 60.0  # seconds between sweeps for expired held and dropped messages
FOLLOW_UPS = (1.0, 5.0)  # seconds after CHT accepted a report: exchange again then
COALESCE = 0.5  # a follow-up this close to one already planned is the same one
IDLE_WAIT = 3600.0  # the follow-up loop's wait with nothing planned (it is woken when needed)
# States owed to CHT within this many seconds of the last exchange wait for the next one, so
# that under load one exchange carries the states of many SMS (`report_owed`).
REPORT_GAP = 0.25
# Bridges sharing a PostgreSQL database exchange one at a time (smsbridge/store.py `turn`,
# an advisory lock; on SQLite one bridge holds the database anyway, smsbridge/dblock.py).
SYNC_LOCK = "cht_sync"


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
        wake_sync: Callable[[], None] = lambda: None,
        wake_follow_up: Callable[[], None] = lambda: None,
        lanes: outgoing.Lanes | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`on_messages`: new SMS to send were stored (wakes the send workers); `wake_sync`
        wakes the sync loop (an exchange now); `wake_follow_up` wakes the follow-up loop (its
        plan changed); `clock`: the time new SMS are stored at (an exchange's answer may come
        after the `now` it began with; a message's age counts from its storing)."""
        self.store = store
        self.cht = cht
        self.interval = interval
        self.ttl = ttl
        self.gate = gate or ChtGate()
        self.on_messages = on_messages
        self.wake_sync = wake_sync
        self.wake_follow_up = wake_follow_up
        self.lanes = lanes  # which new SMS are replies (outbound/messages.py `Lanes`)
        self.clock = clock
        self.retry_at = 0.0
        self.next_sweep = 0.0
        self.follow_ups: list[float] = []  # when to exchange again, soonest first
        self.last_exchange = float("-inf")  # when the last exchange began

    async def exchange(self, now: float) -> bool:
        """One POST /api/sms. True when another should follow at once."""
        self.last_exchange = now
        owed = reports.owed_reports(self.store, MAX_UPDATES)
        try:
            messages = await self.cht.exchange_sms([], [update for _id, update in owed])
        except RetryableError as exc:
            if exc.code not in NOT_PROCESSED and owed:
                await self.store.write(
                    lambda c: reports.mark_reported_in(c, reports.superseded(owed), now)
                )
            raise
        ids = [row_id for row_id, _update in owed]
        stored_at = self.clock() if self.clock else now

        def job(conn: sqlite3.Connection) -> int:
            reports.mark_reported_in(conn, ids, now)
            return outgoing.store_cht_messages_in(conn, messages, stored_at, self.lanes)

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
            self.store, lambda c: outgoing.store_cht_messages_in(c, messages, now, self.lanes)
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
                async with self.store.turn(SYNC_LOCK) as ours:
                    if ours:  # else another bridge on this database is exchanging right now
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

    # -- follow-up exchanges (replies in seconds) -------------------------------------------------

    def expedite(self, now: float) -> None:
        """CHT has just accepted a report or a relayed SMS: plan exchanges at FOLLOW_UPS after
        `now`, unless one is already planned within COALESCE of each."""
        planned = False
        for delay in FOLLOW_UPS:
            at = now + delay
            if all(abs(at - known) > COALESCE for known in self.follow_ups):
                self.follow_ups.append(at)
                planned = True
        if planned:
            self.follow_ups.sort()
            self.wake_follow_up()

    async def follow_up(self, now: float) -> None:
        """The follow-up loop's step: when a planned exchange is due, wake the sync loop."""
        due = [at for at in self.follow_ups if at <= now]
        if due:
            self.follow_ups = self.follow_ups[len(due) :]
            self.wake_sync()

    def report_owed(self, now: float) -> None:
        """A state is owed to CHT (the send pipeline's `on_report`): exchange now, or, within
        REPORT_GAP of the last exchange, once the gap is over (one follow-up, shared by every
        state owed meanwhile; a follow-up already planned by then serves as well). A clock that
        has not moved since the last exchange (a test's) cannot time the gap: exchange now."""
        due = self.last_exchange + REPORT_GAP
        if now >= due or now <= self.last_exchange:
            self.wake_sync()
        elif not any(now <= at <= due + COALESCE for at in self.follow_ups):
            self.follow_ups.append(due)
            self.follow_ups.sort()
            self.wake_follow_up()

    def follow_up_wait(self, now: float) -> float:
        """Seconds until the next planned exchange (IDLE_WAIT when none)."""
        return max(0.0, self.follow_ups[0] - now) if self.follow_ups else IDLE_WAIT
