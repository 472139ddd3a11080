"""Prometheus metrics (`GET /metrics`), one `CollectorRegistry` per app: no global state
(docs/architecture.md, rule 5), so two bridges in one process (tests) never mix their numbers.

Two kinds of figures:

- events, counted as they happen by the code that makes them happen, through the methods of
  `Metrics` (`inbound`, `send_latency`, `outgoing_changes`, `retry`, `cht_error`;
  `wrap_cht` counts a CHT client's failures);
- the state of the queue, read from the store at scrape time (`StoreCollector`): tasks waiting
  by kind, the age of the oldest, dead letters, and outgoing SMS by state and channel. These
  survive a restart and cannot drift from the database.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from smsbridge import tasks
from smsbridge.errors import AuthFailure, PeerError, PermanentError, RetryableError

if TYPE_CHECKING:
    from smsbridge.outbound.transitions import Change
    from smsbridge.store import Store

T = TypeVar("T")

# Seconds: carrier API calls take 50 ms to a few seconds; delivery reports minutes to hours.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class Metrics:
    """Every metric of one bridge, in its own registry. Pass `store` to export queue state."""

    def __init__(self, store: Store | None = None, *, clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._inbound = Counter(
            "smsbridge_inbound_messages",
            "Inbound SMS accepted (stored) from carrier webhooks and cht-gateway phones, by "
            "carrier; duplicates not counted.",
            ["carrier"],
            registry=r,
        )
        self._send_latency = Histogram(
            "smsbridge_send_latency_seconds",
            "Time a carrier or phone took to accept an outgoing SMS (one send call).",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._delivery_lag = Histogram(
            "smsbridge_delivery_report_lag_seconds",
            "Time from an SMS being sent to its delivery report (a carrier's or a phone's) "
            "arriving, by channel.",
            ["channel"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            "smsbridge_task_retries",
            "Task attempts that failed and were scheduled again, by task kind.",
            ["kind"],
            registry=r,
        )
        self._cht_errors = Counter(
            "smsbridge_cht_errors",
            "Failed CHT requests, by kind: retryable, permanent, auth.",
            ["kind"],
            registry=r,
        )
        self._clock = clock
        self._store_collector: StoreCollector | None = None
        if store is not None:
            self.attach_store(store)

    def attach_store(self, store: Store) -> None:
        """Export the queue state of `store` (the app calls this once the store is open)."""
        if self._store_collector is not None:
            self.registry.unregister(self._store_collector)
        self._store_collector = StoreCollector(store, self._clock)
        self.registry.register(self._store_collector)

    def wrap_cht(self, cht: T) -> T:
        """`cht` with every failed call counted in `smsbridge_cht_errors_total{kind}`."""
        return cast(T, _CountingCht(cht, self))

    # -- events ----------------------------------------------------------------------------

    def inbound(self, carrier: str, count: int = 1) -> None:
        if count:
            self._inbound.labels(carrier).inc(count)

    def send_latency(self, channel: str, seconds: float) -> None:
        self._send_latency.labels(channel).observe(max(0.0, seconds))

    def delivery_lag(self, channel: str, seconds: float) -> None:
        self._delivery_lag.labels(channel).observe(max(0.0, seconds))

    def outgoing_changes(self, changes: Sequence[Change]) -> None:
        """Committed state changes of outgoing SMS (the outbound pipeline's hook): each SMS
        delivered observes its lag since it was sent, whoever reported it (a carrier's status
        webhook, a phone's poll, a report that overtook the send response)."""
        for change in changes:
            if change.state == "delivered":
                self.delivery_lag(change.channel or change.carrier or "none", change.delivery_lag)

    def retry(self, kind: str) -> None:
        self._retries.labels(kind).inc()

    def cht_error(self, error: BaseException | str) -> None:
        """Count a failed CHT call; an exception is classified by type (rule 4)."""
        self._cht_errors.labels(error if isinstance(error, str) else cht_error_kind(error)).inc()

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CountingCht:
    """A CHT client whose coroutine methods count their PeerErrors (and re-raise them)."""

    def __init__(self, cht: Any, metrics: Metrics) -> None:
        self._cht = cht
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cht, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except PeerError as exc:
                self._metrics.cht_error(exc)
                raise

        return counted


def cht_error_kind(error: BaseException) -> str:
    if isinstance(error, AuthFailure):
        return "auth"
    if isinstance(error, RetryableError):
        return "retryable"
    if isinstance(error, PermanentError):
        return "permanent"
    return "other"


class StoreCollector(Collector):
    """Queue state read from the database at scrape time."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        depth = GaugeMetricFamily(
            "smsbridge_queue_depth", "Tasks waiting or running, by kind.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "smsbridge_queue_oldest_age_seconds",
            "Age of the oldest task waiting or running, by kind (0 when none).",
            labels=["kind"],
        )
        dead = GaugeMetricFamily(
            "smsbridge_dead_letter_depth",
            "Tasks in the dead-letter list now, by kind (`smsbridge outbox ls --state dead`).",
            labels=["kind"],
        )
        for row in tasks.backlog(self.store):  # one row per kind and dead-or-not
            if row.dead:
                dead.add_metric([row.kind], row.count)
            else:
                depth.add_metric([row.kind], row.count)
                age = max(0.0, now - row.oldest) if row.oldest is not None else 0.0
                oldest.add_metric([row.kind], age)
        yield depth
        yield oldest
        yield dead
        yield from self._outgoing()

    def _outgoing(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "smsbridge_outbound_messages",
            "Outgoing SMS in the database, by delivery state and channel.",
            labels=["state", "channel"],
        )
        from smsbridge.outbound import messages as outgoing

        try:
            counted = outgoing.counts(self.store)
        except sqlite3.OperationalError:  # not migrated yet
            counted = {}
        for (state, channel), count in sorted(counted.items(), key=str):
            family.add_metric([str(state), channel or "none"], count)
        yield family


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: the Prometheus text format. Rendered in a worker thread: the store queries
    must not hold up the event loop (webhooks are answered there)."""
    metrics: Metrics = request.app.state.metrics
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
