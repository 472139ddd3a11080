"""The writer waits a moment for company (smsbridge/store.py `Gathering`, SMSBRIDGE_COMMIT_WAIT):
while writes have lately been coming together, a batch of the background loops' writes stays
open for more of them to share its commit; a write someone waits on (a webhook's) and a lone
writer never wait. Runs on SQLite and PostgreSQL (tests/conftest.py POSTGRES_MODULES).

The waits here are long (a 0.5 s window, so a 0.1 s gap) and the margins wide, so that a slow
machine cannot turn a wait into none or none into a wait."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from smsbridge.store import BACKGROUND, COMPANY_HOLD, Gathering, Store, open_store

WAIT = 0.5  # the window; its gap (a fifth) is 0.1 s


def test_the_window_opens_only_after_writes_came_together() -> None:
    gathering = Gathering(0.01)
    assert gathering.gap == 0.01 / 5
    assert gathering.deadline(100.0) == 100.0  # no company yet: commit at once
    gathering.had(1, 100.0)  # a batch of one is no company
    assert gathering.deadline(100.1) == 100.1
    gathering.had(2, 100.2)
    assert gathering.deadline(100.5) == 100.5 + 0.01
    later = 100.2 + COMPANY_HOLD + 0.1  # none since: a lone writer again
    assert gathering.deadline(later) == later
    assert Gathering(0.0).deadline(5.0) == 5.0 and Gathering(-1.0).wait == 0.0


def put(key: str) -> Callable[[Any], None]:
    return lambda c: Store.put_kv(c, key, "v", 1.0)


def in_background(make: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
    """A task whose writes are a background loop's (workers.py `WorkerPool.start`)."""
    context = contextvars.copy_context()
    context.run(BACKGROUND.set, True)
    return asyncio.get_running_loop().create_task(make(), context=context)  # type: ignore[arg-type]


async def timed(write: Awaitable[Any]) -> float:
    started = time.monotonic()
    await write
    return time.monotonic() - started


def test_background_writes_wait_for_company_and_others_do_not(database: Path | str) -> None:
    with open_store(database, commit_wait=WAIT) as store:

        async def flow() -> dict[str, float]:
            took: dict[str, float] = {}
            # a lone writer, in the background: nobody has come together yet, no waiting
            took["lone"] = await in_background(lambda: timed(store.write(put("a"))))
            # two at once: one batch, company
            await asyncio.gather(
                in_background(lambda: store.write(put("b"))),
                in_background(lambda: store.write(put("c"))),
            )
            # now a background write waits a gap for company that does not come...
            took["background"] = await in_background(lambda: timed(store.write(put("d"))))
            # ... and a webhook's write (not in the background) never waits
            took["foreground"] = await timed(store.write(put("e")))
            return took

        took = asyncio.run(flow())
        assert took["lone"] < 0.08
        assert 0.08 <= took["background"] < WAIT + 0.5
        assert took["foreground"] < 0.08
        assert len(store.query("SELECT key FROM kv WHERE key IN ('a','b','c','d','e')")) == 5


def trickle(store: Store, writes: int = 30) -> int:
    """Background writes that come one by one, every 10 ms, each on its own (as the send
    loops' do: a carrier's answer here, a claim there), after two at once (company): the
    commits they took."""

    async def flow() -> None:
        await asyncio.gather(
            in_background(lambda: store.write(put("x"))),
            in_background(lambda: store.write(put("y"))),
        )
        pending = []
        for i in range(writes):
            pending.append(in_background(lambda i=i: store.write(put(f"k-{i}"))))
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)

    batches = store.batches
    asyncio.run(flow())
    return store.batches - batches - 1  # less the batch of the two


def test_background_writes_that_trickle_in_share_commits(tmp_path: Path) -> None:
    from tests.conftest import new_database

    with open_store(new_database(tmp_path, "waits.db"), commit_wait=WAIT) as store:
        waiting = trickle(store)
        assert len(store.query("SELECT key FROM kv WHERE key LIKE 'k-%'")) == 30
    with open_store(new_database(tmp_path, "at-once.db"), commit_wait=0.0) as store:
        at_once = trickle(store)
    assert waiting <= 4  # 300 ms of writes 10 ms apart: a window of 0.5 s, or two
    assert at_once >= 15  # the same writes, each committed as soon as the writer took it


def test_the_service_s_store_waits_as_smsbridge_commit_wait_says(tmp_path: Path) -> None:
    """create_app opens the store of SMSBRIDGE_DATABASE with SMSBRIDGE_COMMIT_WAIT."""
    from smsbridge.settings import Settings
    from smsbridge.web.app import create_app

    settings = Settings.from_env(
        {
            "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
            "SMSBRIDGE_CHT_URL": "http://127.0.0.1:9",
            "SMSBRIDGE_COMMIT_WAIT": "0.05",
        }
    )
    app = create_app(settings, start_workers=False)

    async def lifespan() -> float:
        incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        outgoing: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        await incoming.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        running = asyncio.ensure_future(app(scope, incoming.get, outgoing.put))
        assert (await outgoing.get())["type"] == "lifespan.startup.complete"
        wait = app.state.service.store._gathering.wait
        await incoming.put({"type": "lifespan.shutdown"})
        await running
        return float(wait)

    assert asyncio.run(lifespan()) == 0.05
