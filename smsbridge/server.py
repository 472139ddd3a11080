"""`smsbridge serve`: the app under uvicorn (one worker process; the workers are asyncio tasks
in its lifespan). With nothing configured it runs against the sandbox (sandbox.py) and prints,
once listening, how to send it a first SMS.

It holds its database's lock for its whole life (dblock.py: a second `serve` on the same SQLite
file exits 2), runs uvicorn's httptools protocol with the connection limits of
web/connections.py, and, with SMSBRIDGE_METRICS_LISTEN set, serves /metrics from a second
listener in the same event loop (web/app.py's `create_metrics_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import uvicorn

from smsbridge import logs
from smsbridge.dblock import hold_database
from smsbridge.errors import ConfigError
from smsbridge.logs import event
from smsbridge.sandbox import (
    cht_or_simulator,
    connect_host,
    first_run_help,
    keep_loopback_off_proxies,
)
from smsbridge.settings import Settings, listen_address
from smsbridge.web.app import create_app, create_metrics_app
from smsbridge.web.connections import Limits, limited_protocol

log = logging.getLogger(__name__)

SIMULATOR_THREAD = "uvicorn-test-server"  # smsbridge.loopback's thread name


class _Sidecar(uvicorn.Server):
    """A second server in the bridge's event loop (the /metrics listener): the signals are
    the main server's, which stops this one when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Server(uvicorn.Server):
    """uvicorn's server, printing the first-run help once it listens, and running `sidecar`
    (on its own sockets) for as long as it runs itself."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[], None],
        sidecar: tuple[_Sidecar, socket.socket] | None = None,
    ) -> None:
        super().__init__(config)
        self.on_started = on_started
        self.sidecar = sidecar
        self._sidecar_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.sidecar is not None:
            side, side_socket = self.sidecar
            self._sidecar_task = asyncio.create_task(side.serve(sockets=[side_socket]))
            while not side.started and not self._sidecar_task.done():
                await asyncio.sleep(0.01)
        if self.started:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.sidecar is not None and self._sidecar_task is not None:
            self.sidecar[0].should_exit = True
            await self._sidecar_task
        await super().shutdown(sockets)


def server_config(
    app: Any, settings: Settings, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """How the bridge runs under uvicorn: one worker, httptools with the connection limits of
    web/connections.py, the keep-alive timeout of SMSBRIDGE_KEEPALIVE_TIMEOUT."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        http=limited_protocol(Limits.from_settings(settings)),
        timeout_keep_alive=max(1, round(settings.keepalive_timeout)),
        **options,
    )


def listening_socket(
    host: str, port: int, names: str = "SMSBRIDGE_HOST, SMSBRIDGE_PORT or serve --host/--port"
) -> socket.socket:
    """A listening socket of the bridge, bound before anything starts: a port already taken is
    a one-line configuration problem (exit 2, naming the settings `names`), not a start-up
    half-done and torn down."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} ({names})"
        ) from exc
    return sock


class _SimulatorNoise(logging.Filter):
    """Drops uvicorn's start/stop lines from the simulators' threads: they would read like the
    bridge's own ("Uvicorn running on ..." with the simulator's port)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == SIMULATOR_THREAD and record.levelno < logging.WARNING)


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    out: TextIO | None = None,
) -> int:
    logs.setup(settings.log_level, secrets=logs.secrets_of(settings), turns=True)
    keep_loopback_off_proxies()
    noise = _SimulatorNoise()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(noise)
    listen_host = host or settings.host
    listen_port = port or settings.port
    bridge_url = f"http://{connect_host(listen_host)}:{listen_port}"
    stream = out if out is not None else sys.stdout
    metrics_at = listen_address(settings.metrics_listen)
    with contextlib.ExitStack() as stack:
        stack.callback(uvicorn_log.removeFilter, noise)
        stack.enter_context(hold_database(settings.database))
        sock = listening_socket(listen_host, listen_port)
        stack.callback(sock.close)
        metrics_sock: socket.socket | None = None
        if metrics_at is not None:
            metrics_sock = listening_socket(*metrics_at, names="SMSBRIDGE_METRICS_LISTEN")
            stack.callback(metrics_sock.close)
        effective, mode = stack.enter_context(cht_or_simulator(settings, bridge_url=bridge_url))
        app = create_app(effective)
        config = server_config(app, effective, listen_host, listen_port, lifespan="on")
        sidecar: tuple[_Sidecar, socket.socket] | None = None
        if metrics_at is not None and metrics_sock is not None:
            metrics_config = server_config(
                create_metrics_app(app), effective, *metrics_at, lifespan="off"
            )
            sidecar = (_Sidecar(metrics_config), metrics_sock)

        def started() -> None:
            event(log, "listening", url=f"http://{listen_host}:{listen_port}")
            if metrics_at is not None:
                event(log, "metrics_listening", url="http://{}:{}/metrics".format(*metrics_at))
            if mode is not None:
                print(first_run_help(bridge_url, mode, effective), file=stream, flush=True)

        server = _Server(config, on_started=started, sidecar=sidecar)
        server.run(sockets=[sock])
        if not server.started:
            return 1  # uvicorn logged why
    return 0
