"""Webhooks accepted together: the inbound SMS of concurrent webhooks stored by ONE write job
(`accept_many_in` of inbound/messages.py), each webhook answered once its own are committed.

    groups = AcceptGroups(store, dedup_window)      # one per service (service.py)
    accepted = await groups.accept(messages, now)   # a webhook's messages, once on disk
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence

from smsbridge.inbound.messages import Accepted, accept_in, accept_many_in
from smsbridge.sms import InboundSms
from smsbridge.store import Store


class AcceptGroups:
    """Accepts the inbound SMS of concurrent webhooks with ONE write job (`accept_many_in`)
    instead of a job each: the webhooks that arrive while a group's job waits for the store's
    writer all join that group, which the job takes only when the writer runs it. Under load
    the writer then commits one job of three statements for dozens of webhooks, where a job
    each cost three statements each, and the writer takes the GIL back from the busy event
    loop after every statement (smsbridge/store.py). Each caller still returns only once its
    messages are committed (docs/architecture.md, rule 1). If the group's job fails, each
    caller's messages are accepted in a job of their own, so that a webhook that cannot be
    stored fails alone."""

    def __init__(self, store: Store, dedup_window: float) -> None:
        self.store = store
        self.dedup_window = dedup_window
        self._open: list[Waiting] = []  # the group a queued job will take
        self._queued = False  # a job for `_open` waits for the writer
        self._lock = threading.Lock()  # the writer's thread takes the group
        self._writing: set[asyncio.Task[None]] = set()

    async def accept(self, messages: Sequence[InboundSms], now: float) -> list[Accepted]:
        future: asyncio.Future[list[Accepted]] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._open.append((messages, now, future))
            start, self._queued = not self._queued, True
        if start:
            task = asyncio.ensure_future(self._write())
            self._writing.add(task)  # held until done (the loop keeps weak references only)
            task.add_done_callback(self._writing.discard)
        return await future

    def _take(self) -> list[Waiting]:
        """The open group, for its job: webhooks from now on join the next one."""
        with self._lock:
            group, self._open, self._queued = self._open, [], False
        return group

    async def _write(self) -> None:
        taken: list[list[Waiting]] = []  # the group, once the job took it (reruns keep it)

        def job(conn: sqlite3.Connection) -> list[list[Accepted]]:
            if not taken:
                taken.append(self._take())
            calls = [(messages, now) for messages, now, _ in taken[0]]
            return accept_many_in(conn, calls, self.dedup_window)

        try:
            outcomes = await self.store.write(job, rerunnable=True)
        except BaseException as exc:
            group = taken[0] if taken else self._take()  # the job never ran: take it here
            if not isinstance(exc, Exception):  # cancelled (shutdown): so are its callers
                for _, _, future in group:
                    future.cancel()
                raise
            if len(group) == 1:
                _settle(group[0][2], exc)
                return
            await asyncio.gather(*(self._write_alone(waiting) for waiting in group))
            return
        for (_, _, future), accepted in zip(taken[0], outcomes, strict=True):
            _settle(future, accepted)

    async def _write_alone(self, waiting: Waiting) -> None:
        messages, now, future = waiting
        try:
            accepted = await self.store.write(
                lambda c: accept_in(c, messages, now, self.dedup_window), rerunnable=True
            )
        except Exception as exc:
            _settle(future, exc)
        else:
            _settle(future, accepted)


Waiting = tuple[Sequence[InboundSms], float, "asyncio.Future[list[Accepted]]"]
"""A caller of `AcceptGroups.accept`: its messages, its `now`, where its outcome goes."""


def _settle(future: asyncio.Future[list[Accepted]], outcome: list[Accepted] | Exception) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
