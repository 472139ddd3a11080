"""The background loops of `smsbridge serve`: inbound submit workers and the CHT settings
refresher. They run as asyncio tasks in the app's lifespan; all their state is in the database,
so killing the process loses nothing (leases expire, tasks are claimed again).

`clock` gives `now` (epoch seconds); tests pass a fake clock and move it instead of sleeping.
`Wakeup`, `claim_loop`, `survive` and `cancel_all` are the parts any pool of task workers is
made of (the outbound send workers and the CHT sync loop too).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.errors import AuthFailure
from smsbridge.inbound.submit import InboundPipeline
from smsbridge.logs import event

log = logging.getLogger(__name__)

T = TypeVar("T")


class Wakeup:
    """Wakes ONE idle worker when new work is committed (instead of waiting for its poll).
    A wake-up with nobody waiting is kept for the next `wait`. Workers that found work wake
    the next one, so the number of busy workers follows the backlog. Event-loop thread only."""

    def __init__(self) -> None:
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pending = False

    def set(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._pending = True

    async def wait(self, timeout: float) -> None:
        if self._pending:
            self._pending = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)


async def survive(
    step: Callable[[], Awaitable[T]], error_event: str, logger: logging.Logger = log
) -> T | None:
    """`await step()` in a loop that must outlive bugs: an exception (cancellation aside) is
    logged as `error_event` (the traceback at DEBUG) and gives None."""
    try:
        return await step()
    except Exception as exc:
        event(logger, error_event, logging.ERROR, error=type(exc).__name__)
        logger.debug("%s", error_event, exc_info=True)
        return None


async def claim_loop(
    run_once: Callable[[float], Awaitable[bool]],
    clock: Callable[[], float],
    wakeup: Wakeup,
    idle: float,
    name: str,
    logger: logging.Logger = log,
) -> None:
    """One worker: `run_once(now)` again and again. After work it goes on at once (and wakes
    another worker: there may be more); otherwise it waits for a wake-up or `idle` seconds. A
    bug is logged (`<name>_worker_error`) and does not kill the worker: the task's lease expires
    and it is claimed again."""
    while True:
        if await survive(lambda: run_once(clock()), f"{name}_worker_error", logger):
            wakeup.set()
        else:
            await wakeup.wait(idle)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks`, wait for each to end, and forget them."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()


class InboundWorkers:
    """`concurrency` loops claiming submit tasks, plus the settings refresher."""

    def __init__(
        self,
        pipeline: InboundPipeline,
        cht_settings: ChtSettingsCache,
        *,
        clock: Callable[[], float],
        concurrency: int = 4,
        idle: float = 0.2,
    ) -> None:
        self.pipeline = pipeline
        self.cht_settings = cht_settings
        self.clock = clock
        self.concurrency = concurrency
        self.idle = idle
        self.wakeup = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="cht-settings"))
        for n in range(self.concurrency):
            loop = claim_loop(self.pipeline.run_once, self.clock, self.wakeup, self.idle, "inbound")
            self._tasks.append(asyncio.create_task(loop, name=f"inbound-{n}"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)

    async def refresh_settings(self) -> None:
        """Fetch CHT's settings now if due (and not paused for a 401)."""
        now = self.clock()
        gate = self.pipeline.gate
        if gate.auth_failed is not None or not self.cht_settings.due(now):
            return
        try:
            await self.cht_settings.refresh(self.pipeline.cht, now)
        except AuthFailure as exc:
            gate.auth_failure(exc.detail or exc.code, now)

    async def _refresh_loop(self) -> None:
        while True:
            await survive(self.refresh_settings, "cht_settings_error")
            await asyncio.sleep(min(self.idle * 5, 1.0))
