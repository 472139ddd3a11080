"""All the wiring of the running service, in one place: `build_service` makes the task queue,
the CHT gate and settings cache, the inbound and outbound pipelines, the CHT sync and the
worker pool from `Settings`, and hands each its collaborators and hooks through its constructor.
Nothing is patched onto an object after it is built (docs/architecture.md, rule 13).

    build_service(settings, store, cht, clock=..., observer=...) -> Service

The web app's lifespan (web/app.py) builds one `Service`, starts it, and keeps it on
`app.state.service`; the routes call `service.accept` and the pipelines through it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from smsbridge.carriers import CARRIERS, httppool
from smsbridge.carriers.base import CarrierConfig
from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.cht.breaker import ChtApi, ChtGate
from smsbridge.cht.monitoring import ChtBacklog
from smsbridge.inbound.groups import AcceptGroups
from smsbridge.inbound.messages import Accepted
from smsbridge.inbound.submit import InboundPipeline, accept_inbound
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.channels import ChannelPolicy, Channels
from smsbridge.outbound.chtsync import ChtSync
from smsbridge.outbound.ratebuckets import shared_buckets
from smsbridge.outbound.ratelimit import RateLimiter, parse_rates
from smsbridge.outbound.routing import Routes
from smsbridge.outbound.send import SLOT, OutboundConfig, OutboundPipeline
from smsbridge.outbound.statuspoll import StatusPoller
from smsbridge.retention import Retention
from smsbridge.settings import Settings
from smsbridge.sms import InboundSms
from smsbridge.store import POSTGRESQL, Store
from smsbridge.tasks import RetryPolicy, TaskQueue, forget_memo_in
from smsbridge.workers import Wakeup, WorkerPool

if TYPE_CHECKING:
    from smsbridge.outbound.transitions import Change

HOLD = 1.0
"""With the real clock, a send worker waits for a rate slot up to this many seconds away rather
than putting the task back (two fewer commits per SMS on a busy channel)."""

SETTINGS_REFRESH_POLL = 1.0
"""Seconds between checks whether CHT's settings are due for a refresh."""


class Observer(Protocol):
    """What the service tells the metrics (web/metrics.py's `Metrics` is one)."""

    def inbound(self, carrier: str, count: int = 1) -> None: ...

    def send_latency(self, channel: str, seconds: float) -> None: ...

    def outgoing_changes(self, changes: Sequence[Change]) -> None: ...

    def retry(self, kind: str) -> None: ...

    def ambiguous_send(self, channel: str, what: str) -> None: ...

    def unknown_reports(self, carrier: str, why: str, count: int) -> None: ...

    def cht_outgoing(self, counts: Mapping[str, int] | None) -> None: ...


class Unobserved:
    """An observer that counts nothing (the CLI, tests that do not read metrics)."""

    def inbound(self, carrier: str, count: int = 1) -> None:
        pass

    def send_latency(self, channel: str, seconds: float) -> None:
        pass

    def outgoing_changes(self, changes: Sequence[Change]) -> None:
        pass

    def retry(self, kind: str) -> None:
        pass

    def ambiguous_send(self, channel: str, what: str) -> None:
        pass

    def unknown_reports(self, carrier: str, why: str, count: int) -> None:
        pass

    def cht_outgoing(self, counts: Mapping[str, int] | None) -> None:
        pass


@dataclass
class Service:
    """Everything the running service holds. `accept` is the one way inbound SMS come in
    (carrier webhooks and cht-gateway phones): stored with their tasks before it returns."""

    settings: Settings
    store: Store
    tasks: TaskQueue
    cht: ChtApi
    cht_settings: ChtSettingsCache
    gate: ChtGate
    inbound: InboundPipeline
    outbound: OutboundPipeline
    sync: ChtSync
    pool: WorkerPool
    inbound_wakeup: Wakeup
    clock: Callable[[], float]
    enabled: frozenset[str]
    configs: dict[str, CarrierConfig]
    accept: Callable[[Sequence[InboundSms], float], Awaitable[list[Accepted]]]
    http: httpx.AsyncClient

    def start(self) -> None:
        self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()
        await self.http.aclose()


def build_service(
    settings: Settings,
    store: Store,
    cht: ChtApi,
    *,
    clock: Callable[[], float],
    observer: Observer | None = None,
    concurrency: int = 4,
    idle: float = 0.2,
    rng: random.Random | None = None,
    hold: float = HOLD,
) -> Service:
    """The service, ready to `start()`. `hold`: see HOLD (0 with a test clock that only moves
    when the test moves it)."""
    seen: Observer = observer or Unobserved()
    tasks = TaskQueue(
        store,
        RetryPolicy(settings.retry_base, settings.retry_cap, settings.max_attempts),
        rng=rng,
        on_retry=seen.retry,
    )
    gate = ChtGate()
    cht_settings = ChtSettingsCache(store, settings)
    inbound_wakeup, send_wakeup, sync_wakeup, follow_up_wakeup = (Wakeup() for _ in range(4))

    groups = AcceptGroups(store, settings.dedup_window)  # concurrent webhooks: one write job

    async def accept(messages: Sequence[InboundSms], now: float) -> list[Accepted]:
        accepted = await accept_inbound(
            store, messages, now, settings.dedup_window, groups=groups, sender=cht_settings.sender
        )
        inbound_wakeup.set()
        for sms, result in zip(messages, accepted, strict=True):
            if not result.duplicate:
                seen.inbound(sms.carrier)
        return accepted

    enabled = frozenset(name for name in settings.enabled_carriers if name in CARRIERS)
    configs = {name: CarrierConfig.from_settings(settings, name) for name in CARRIERS}
    # a kept-alive connection per send loop, in small pools (carriers/httppool.py)
    http = httppool.client(timeout=settings.send_timeout, connections=settings.send_concurrency)
    # rate slots booked by a previous process's buckets are void: those sends book again with
    # the new buckets, which start empty (outbound/ratelimit.py). On PostgreSQL the buckets are
    # the database's (outbound/ratebuckets.py): the slots other bridges booked stay booked.
    if store.dialect != POSTGRESQL:
        store.write_sync(lambda c: forget_memo_in(c, outgoing.SEND, SLOT))
    lanes = outgoing.Lanes.from_settings(settings)  # replies first
    outbound = OutboundPipeline(
        store,
        tasks,
        config=OutboundConfig.from_settings(settings, hold=hold),
        routes=Routes.parse(settings.routes, settings.enabled_carriers),
        limiter=RateLimiter(
            parse_rates(settings.rates),
            started=clock(),
            share=settings.bulk_share,
            # bridges on one PostgreSQL database share the buckets (outbound/ratebuckets.py)
            shared=shared_buckets(store) if store.dialect == POSTGRESQL else None,
        ),
        http=http,
        carriers=CARRIERS,
        configs=configs,
        channels=Channels(store, ChannelPolicy.from_settings(settings)),
        accept_inbound=accept,
        on_report=lambda: sync.report_owed(clock()),  # coalesced (outbound/chtsync.py)
        on_send=seen.send_latency,
        on_changes=seen.outgoing_changes,
        on_ambiguous=seen.ambiguous_send,
        on_unknown_reports=seen.unknown_reports,
    )
    sync = ChtSync(
        store,
        cht,
        interval=settings.sync_interval,
        ttl=settings.message_ttl,
        gate=gate,
        on_messages=send_wakeup.set,
        wake_sync=sync_wakeup.set,
        wake_follow_up=follow_up_wakeup.set,
        lanes=lanes,
        clock=clock,
    )

    async def store_offered(messages: list[dict[str, object]]) -> None:
        await sync.store_offered(messages, clock())

    inbound = InboundPipeline(
        store,
        tasks,
        cht,
        settings,
        cht_settings,
        gate=gate,
        reply_hook=functools.partial(outgoing.reply_in, lead=lanes.lead),
        outgoing_hook=store_offered,
        on_accepted=lambda: sync.expedite(clock()),
    )
    pool = WorkerPool(clock, idle=idle)
    pool.every(
        "cht_settings",
        lambda now: cht_settings.refresh_if_due(cht, gate, now),
        lambda: min(idle * 5, SETTINGS_REFRESH_POLL),
    )
    pool.claimers("inbound", inbound.run_once, inbound_wakeup, concurrency)
    pool.every("cht_sync", sync.step, lambda: settings.sync_interval, sync_wakeup)
    pool.every(
        "cht_follow_up",
        sync.follow_up,
        lambda: sync.follow_up_wait(clock()),
        follow_up_wakeup,
    )
    # Send loops mostly wait on the carrier, not the CPU: SMSBRIDGE_SEND_CONCURRENCY of them.
    # `concurrency` poll every `idle` seconds; the others wake when sends are queued (or a busy
    # loop wakes the next), polling rarely, so that an idle bridge costs the same.
    polling = min(settings.send_concurrency, concurrency)
    pool.claimers("outbound", outbound.run_once, send_wakeup, polling)
    if settings.send_concurrency > polling:
        extra = settings.send_concurrency - polling
        pool.claimers("outbound", outbound.run_once, send_wakeup, extra, idle=idle * extra)
    status_poller = StatusPoller(
        store,
        carriers=CARRIERS,
        configs=configs,
        enabled=enabled,
        http=http,
        report=outbound.delivery_reports,
        max_age=settings.message_ttl,
    )
    pool.every("status_poll", status_poller.step, lambda: settings.status_poll_interval)
    # Due-or-not checks, polled often: these run when the service's clock says so.
    poll = min(idle * 5, SETTINGS_REFRESH_POLL)
    pool.every("retention", Retention(store, settings.retention_days).step, lambda: poll)
    pool.every("cht_monitoring", ChtBacklog(cht, seen.cht_outgoing).step, lambda: poll)
    return Service(
        settings=settings,
        store=store,
        tasks=tasks,
        cht=cht,
        cht_settings=cht_settings,
        gate=gate,
        inbound=inbound,
        outbound=outbound,
        sync=sync,
        pool=pool,
        inbound_wakeup=inbound_wakeup,
        clock=clock,
        enabled=enabled,
        configs={name: configs[name] for name in enabled},
        accept=accept,
        http=http,
    )
