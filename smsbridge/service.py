"""The running service's parts and how they are wired together: the store's outbox, the CHT
settings cache, the inbound pipeline and workers, the outbound side (sync.py) and the carriers'
configs. `create_app`'s lifespan builds one `Runtime` and keeps it on `app.state`.

    build_runtime(settings, store, cht, clock) -> Runtime
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from smsbridge.carriers import CARRIERS
from smsbridge.carriers.base import CarrierConfig
from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.cht.breaker import ChtApi, ChtGate
from smsbridge.inbound.submit import InboundPipeline
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.chtsync import OutboundWorkers, build_outbound
from smsbridge.outbound.send import OutboundPipeline
from smsbridge.settings import Settings
from smsbridge.store import Store
from smsbridge.tasks import TaskQueue, RetryPolicy
from smsbridge.workers import InboundWorkers


@dataclass
class Runtime:
    """Everything the running service holds: built in the lifespan, kept on `app.state`."""

    settings: Settings
    store: Store
    outbox: TaskQueue
    cht: ChtApi
    cht_settings: ChtSettingsCache
    pipeline: InboundPipeline
    workers: InboundWorkers
    clock: Callable[[], float]
    enabled: frozenset[str]
    configs: dict[str, CarrierConfig] = field(default_factory=dict)
    outbound_workers: OutboundWorkers | None = None  # send workers + CHT sync (sync.py)

    @property
    def outbound(self) -> OutboundPipeline | None:
        return None if self.outbound_workers is None else self.outbound_workers.pipeline

    def start(self) -> None:
        self.workers.start()
        if self.outbound_workers is not None:
            self.outbound_workers.start()

    async def stop(self) -> None:
        await self.workers.stop()
        if self.outbound_workers is not None:
            await self.outbound_workers.stop()


def carrier_config(settings: Settings, carrier: str) -> CarrierConfig:
    return CarrierConfig(
        carrier=carrier,
        values=dict(settings.carrier.get(carrier, {})),
        public_url=settings.public_url,
    )


def build_runtime(
    settings: Settings,
    store: Store,
    cht: ChtApi,
    clock: Callable[[], float],
    concurrency: int = 4,
    idle: float = 0.2,
    rng: random.Random | None = None,
) -> Runtime:
    outbox = TaskQueue(
        store,
        RetryPolicy(settings.retry_base, settings.retry_cap, settings.max_attempts),
        rng=rng,
    )
    cht_settings = ChtSettingsCache(store, settings)
    gate = ChtGate()
    configs = {name: carrier_config(settings, name) for name in CARRIERS}
    outbound_workers = build_outbound(
        settings,
        store,
        outbox,
        cht,
        configs=configs,
        clock=clock,
        gate=gate,
        wake_inbound=lambda: workers.wakeup.set(),
        concurrency=concurrency,
        idle=idle,
    )
    pipeline = InboundPipeline(
        store,
        outbox,
        cht,
        settings,
        cht_settings,
        gate=gate,
        reply_hook=outgoing.reply_in,
        outgoing_hook=outbound_workers.store_offered,
    )
    workers = InboundWorkers(
        pipeline, cht_settings, clock=clock, concurrency=concurrency, idle=idle
    )
    enabled = frozenset(settings.enabled_carriers)
    return Runtime(
        settings=settings,
        store=store,
        outbox=outbox,
        cht=cht,
        cht_settings=cht_settings,
        pipeline=pipeline,
        workers=workers,
        clock=clock,
        enabled=enabled,
        configs={name: configs[name] for name in enabled if name in CARRIERS},
        outbound_workers=outbound_workers,
    )
