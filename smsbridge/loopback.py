"""Run an ASGI app under uvicorn on 127.0.0.1 in a background thread, on a free port.

Used by the tests, the demo and the benchmarks to stand up our simulators (and the bridge
itself) as real HTTP servers: `with serve_in_thread(app) as url: ...`. `free_port()` is a port
for a server started some other way (a subprocess). `wait_for(condition, what)` polls until a
server (in a thread or another process) has got somewhere by itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # signals belong to the main thread
        pass


@contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str | None = None
) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (`http://127.0.0.1:PORT`)."""
    # log_config=None: uvicorn must not install its own handlers (they would bypass the
    # redaction filter of `smsbridge serve`, which runs the CHT simulator through here).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        access_log=False,
    )
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("test server failed to start")
            threading.Event().wait(0.01)
        sock = server.servers[0].sockets[0]
        bound_port = sock.getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str = "", timeout: float = 30.0) -> T:
    """Poll `condition` until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` seconds. For what a server reaches by itself (never to wait
    for a retry: move the clock instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)
