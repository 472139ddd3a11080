"""The background loops of `smsbridge serve`: claim loops for the inbound and send workers,
and periodic loops (the CHT sync, the CHT settings refresher), all in one `WorkerPool` of
asyncio tasks in the app's lifespan. All their state is in the database, so killing the process
loses nothing (leases expire, tasks are claimed again).

`clock` gives `now` (epoch seconds); tests pass a fake clock and move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from smsbridge.errors import Unavailable
from smsbridge.logs import event
from smsbridge.store import BACKGROUND

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
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        # a timer, not asyncio.wait_for (a task and callbacks per wait: workers wait often)
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:  # not taken by `set` (`remove` would build an error)
                self._waiters.remove(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def survive(
    step: Callable[[], Awaitable[T]], error_event: str, logger: logging.Logger = log
) -> T | None:
    """`await step()` in a loop that must outlive bugs: an exception (cancellation aside) is
    logged at ERROR as `error_event` with its traceback (redacted like every log line) and
    gives None. `Unavailable` is no bug (the database is out for a moment, its cause logged
    where it was met): a WARNING line without traceback; the step runs again later."""
    try:
        return await step()
    except Unavailable as exc:
        event(logger, error_event, logging.WARNING, error=exc.code)
        return None
    except Exception as exc:
        event(logger, error_event, logging.ERROR, exc_info=True, error=type(exc).__name__)
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


class WorkerPool:
    """The service's background loops as asyncio tasks: claim loops (`claimers`: run a step that
    claims one task, again and again) and periodic loops (`every`: a step, then wait for a
    wake-up or the interval). Built in service.py; started and stopped with the app."""

    def __init__(self, clock: Callable[[], float], *, idle: float = 0.2) -> None:
        self.clock = clock
        self.idle = idle
        self._loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def claimers(
        self,
        name: str,
        run_once: Callable[[float], Awaitable[bool]],
        wakeup: Wakeup,
        count: int,
        idle: float | None = None,
    ) -> None:
        """`count` loops of `run_once(now)`; `wakeup` rouses an idle one when work arrives.
        Each idle loop polls every `idle` seconds (default: the pool's)."""
        poll = self.idle if idle is None else idle
        for n in range(count):
            self._loops.append(
                (f"{name}-{n}", lambda: claim_loop(run_once, self.clock, wakeup, poll, name))
            )

    def every(
        self,
        name: str,
        step: Callable[[float], Awaitable[object]],
        interval: Callable[[], float],
        wakeup: Wakeup | None = None,
    ) -> None:
        """One loop: `step(now)`, then wait `interval()` seconds or until `wakeup` is set. A bug
        in `step` is logged (`<name>_error`) and the loop goes on."""
        waker = wakeup or Wakeup()

        async def loop() -> None:
            while True:
                await survive(lambda: step(self.clock()), f"{name}_error")
                await waker.wait(interval())

        self._loops.append((name, loop))

    def start(self) -> None:
        """Each loop as a task, its writes marked background (store.py `BACKGROUND`: they may
        wait a moment for other writes to share their commit)."""
        for name, loop in self._loops:
            context = contextvars.copy_context()
            context.run(BACKGROUND.set, True)
            self._tasks.append(asyncio.create_task(loop(), name=name, context=context))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
