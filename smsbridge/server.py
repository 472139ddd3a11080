"""`smsbridge serve`: the app under uvicorn (one worker process; the workers are asyncio tasks
in its lifespan). With no SMSBRIDGE_CHT_URL the built-in CHT simulator, loaded with its demo
deployment, is started in-process on a loopback port and the bridge talks to it — said loudly
in the log, since nothing then reaches a real CHT."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import uvicorn

from smsbridge import logs
from smsbridge.app import create_app
from smsbridge.logs import event
from smsbridge.settings import Settings

log = logging.getLogger("smsbridge.server")


@contextlib.contextmanager
def cht_or_simulator(settings: Settings) -> Iterator[Settings]:
    """The settings to run with: as given when a CHT URL is set; otherwise pointing at the
    built-in simulator, started here on 127.0.0.1 and stopped on exit."""
    if settings.cht_url:
        yield settings
        return
    from smsbridge.chtsim import ChtSim
    from smsbridge.chtsim.demo_data import GATEWAY_USER
    from smsbridge.testserver import serve_in_thread

    user, password = GATEWAY_USER
    sim = ChtSim()
    sim.install_demo()
    with serve_in_thread(sim.app) as url:
        host_port = url.split("://", 1)[1]
        event(
            log,
            "cht_simulator_started",
            logging.WARNING,
            url=url,
            note="SMSBRIDGE_CHT_URL is empty: using the built-in CHT simulator (demo data); "
            "no report reaches a real CHT",
        )
        yield dataclasses.replace(settings, cht_url=f"http://{user}:{password}@{host_port}")


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    logs.setup(settings.log_level, secrets=logs.secrets_of(settings))
    with cht_or_simulator(settings) as effective:
        app = create_app(effective)
        config = uvicorn.Config(
            app,
            host=host or settings.host,
            port=port or settings.port,
            workers=1,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        uvicorn.Server(config).run()
    return 0
