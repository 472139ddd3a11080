"""The stack's limit, for `bench/inbound.py --baseline`: a bare Starlette app under uvicorn
(httptools, uvloop) that does the least a durable webhook must do. Its handler reads the form,
hands ONE insert to a single writer thread that group-commits (WAL, synchronous=FULL: the same
durability as the bridge) and answers 200 only after the commit. No dedupe, no logging, no
metrics, no tasks: whatever the bridge spends beyond this is its own.

    python bench/bare_stack.py PORT DATABASE
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Writer:
    """One thread, one connection: drains the waiting inserts, commits once, then answers
    every caller of the batch."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS inbound (id INTEGER PRIMARY KEY, sender TEXT, "
            "text TEXT, external_id TEXT)"
        )
        self.jobs: queue.SimpleQueue[tuple[tuple[Any, ...], asyncio.Future[None]]] = (
            queue.SimpleQueue()
        )
        self.loop = asyncio.get_event_loop()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while True:
            batch = [self.jobs.get()]
            while len(batch) < 512:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT INTO inbound (sender, text, external_id) VALUES (?, ?, ?)",
                [row for row, _future in batch],
            )
            self.conn.execute("COMMIT")
            futures = [future for _row, future in batch]
            self.loop.call_soon_threadsafe(_resolve, futures)

    async def insert(self, row: tuple[Any, ...]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.jobs.put((row, future))
        await future


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    writer: list[Writer] = []

    async def inbound(request: Request) -> JSONResponse:
        form = await request.form()
        await writer[0].insert((form.get("from"), form.get("text"), form.get("id")))
        return JSONResponse({"ok": True, "received": 1})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.append(Writer(path))
        yield

    app = Starlette(
        routes=[
            Route("/carriers/generic/{token}/inbound", inbound, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="error",
        access_log=False,
    )


if __name__ == "__main__":
    main()
