"""`smsbridge serve`: the app under uvicorn (one worker process; the workers are asyncio tasks
in its lifespan). With nothing configured it runs against the sandbox (sandbox.py) and prints,
once listening, how to send it a first SMS.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from typing import TextIO

import uvicorn

from smsbridge import logs
from smsbridge.errors import ConfigError
from smsbridge.logs import event
from smsbridge.sandbox import (
    cht_or_simulator,
    connect_host,
    first_run_help,
    keep_loopback_off_proxies,
)
from smsbridge.settings import Settings
from smsbridge.web.app import create_app

log = logging.getLogger(__name__)

SIMULATOR_THREAD = "uvicorn-test-server"  # smsbridge.loopback's thread name


class _Server(uvicorn.Server):
    """uvicorn's server, printing the first-run help once it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def listening_socket(host: str, port: int) -> socket.socket:
    """The bridge's listening socket, bound before anything starts: a port already taken is a
    one-line configuration problem (exit 2), not a start-up half-done and torn down."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(SMSBRIDGE_HOST, SMSBRIDGE_PORT or serve --host/--port)"
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
    logs.setup(settings.log_level, secrets=logs.secrets_of(settings))
    keep_loopback_off_proxies()
    noise = _SimulatorNoise()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(noise)
    listen_host = host or settings.host
    listen_port = port or settings.port
    bridge_url = f"http://{connect_host(listen_host)}:{listen_port}"
    stream = out if out is not None else sys.stdout
    sock = listening_socket(listen_host, listen_port)
    try:
        with cht_or_simulator(settings, bridge_url=bridge_url) as (effective, mode):
            app = create_app(effective)
            config = uvicorn.Config(
                app,
                host=listen_host,
                port=listen_port,
                workers=1,
                lifespan="on",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=10,
            )

            def started() -> None:
                event(log, "listening", url=f"http://{listen_host}:{listen_port}")
                if mode is not None:
                    print(first_run_help(bridge_url, mode, effective), file=stream, flush=True)

            server = _Server(config, on_started=started)
            server.run(sockets=[sock])
            if not server.started:
                return 1  # uvicorn logged why
    finally:
        sock.close()
        uvicorn_log.removeFilter(noise)
    return 0
