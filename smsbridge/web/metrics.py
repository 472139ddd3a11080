"""Prometheus metrics (`GET /metrics`), one `CollectorRegistry` per app: no global state
(docs/architecture.md, rule 5), so two bridges in one process (tests) never mix their numbers.

Two kinds of figures:

- events, counted as they happen by the code that makes them happen, through the methods of
  `Metrics` (`inbound`, `send_latency`, `outgoing_changes`, `retry`, `cht_error`;
  `wrap_cht` counts a CHT client's failures);
- the state of the queue, read from the store at scrape time (`StoreCollector`): tasks waiting
  by kind, the age of the oldest, dead letters, and outgoing SMS by state and channel. These
  survive a restart and cannot drift from the database.

Every labelled series a dashboard or an alert reads is exported from the start, at 0 (each task
kind, each delivery state, each CHT error kind, each enabled carrier): a series that appears
only once something goes wrong cannot be told from one that is not exported at all. Beside them:
`smsbridge_build_info{version}`, the `process_*` figures of this process, and the HTTP requests
by route template (httpmetrics.py). The `_created` samples prometheus_client adds to counters
and histograms are left out of the exposition (they double the series for no use).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from smsbridge import __version__, tasks
from smsbridge.errors import AuthFailure, PeerError, PermanentError, RetryableError
from smsbridge.inbound.messages import ASSEMBLE, SUBMIT
from smsbridge.outbound.messages import SEND
from smsbridge.outbound.send import AMBIGUOUS_EVENTS
from smsbridge.sms import DeliveryState
from smsbridge.web.httpmetrics import RequestMetrics
from smsbridge.web.logins import REASONS as LOGIN_REFUSALS

if TYPE_CHECKING:
    from smsbridge.outbound.transitions import Change
    from smsbridge.store import Store

T = TypeVar("T")

# Seconds: carrier API calls take 50 ms to a few seconds; delivery reports minutes to hours.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

TASK_KINDS = (ASSEMBLE, SEND, SUBMIT)
"""Every task kind: each has its queue and dead-letter series, at 0 when empty."""
CHT_ERROR_KINDS = ("retryable", "permanent", "auth")


class Metrics:
    """Every metric of one bridge, in its own registry. Pass `store` to export queue state."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        phone_labels: bool = False,
    ):
        # SMSBRIDGE_METRICS_PHONE_LABELS: `chtgateway:phone1` as is, else `chtgateway`
        self.channel_label: Callable[[str], str] = (
            str if phone_labels else lambda channel: channel.partition(":")[0]
        )
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._inbound = Counter(
            "smsbridge_inbound_messages",
            "Inbound SMS accepted (stored) from carrier webhooks and cht-gateway phones, by "
            "carrier; duplicates not counted.",
            ["carrier"],
            registry=r,
        )
        self._inbound_of: dict[str, Any] = {}  # carrier -> its child of _inbound
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
        self._cht_ok = Gauge(
            "smsbridge_cht_last_success_timestamp_seconds",
            "When a CHT request last succeeded (Unix time; the bridge's start until one has).",
            registry=r,
        )
        self._cht_ok.set(clock())
        self._cht_paused = Gauge(
            "smsbridge_cht_auth_paused",
            "1 while CHT work is paused because CHT refused our credentials (401), else 0.",
            registry=r,
        )
        Info("smsbridge_build", "The running smsbridge's version.", registry=r).info(
            {"version": __version__}
        )
        ProcessCollector(registry=r)
        self.http = RequestMetrics(r)
        for kind in TASK_KINDS:
            self._retries.labels(kind)
        for kind in CHT_ERROR_KINDS:
            self._cht_errors.labels(kind)
        self._webhooks_rejected = Counter(
            "smsbridge_webhooks_rejected",
            "Requests to carrier webhooks refused (401 token, 403 signature, 404, 405, 413, "
            "415, 400 malformed), by carrier (`unknown` when the path names none) and reason.",
            ["carrier", "reason"],
            registry=r,
        )
        self._phone_logins_refused = Counter(
            "smsbridge_phone_logins_refused",
            "cht-gateway phone logins refused, by reason: wrong_password (wrong user or "
            "password), locked (too many wrong logins for the account or address: 429).",
            ["reason"],
            registry=r,
        )
        for reason in LOGIN_REFUSALS:
            self._phone_logins_refused.labels(reason)
        self._ambiguous = Counter(
            "smsbridge_outgoing_ambiguous",
            "Sends that may have reached the carrier without an answer stored, by channel and "
            "event: lost (the worker died or lost its lease mid-send), timeout (no answer), "
            "settled (a delivery report showed it went), resent or failed (no report within "
            "SMSBRIDGE_AMBIGUOUS_GRACE; SMSBRIDGE_AMBIGUOUS_ACTION).",
            ["channel", "event"],
            registry=r,
        )
        self._unknown_reports = Counter(
            "smsbridge_delivery_reports_unknown",
            "Carrier delivery reports with a status the carrier's table does not know "
            "(why=status) or naming no SMS sent through that carrier yet (why=id; one that "
            "overtook its send response is applied later).",
            ["carrier", "why"],
            registry=r,
        )
        self._cht_outgoing = Gauge(
            "smsbridge_cht_outgoing",
            "Outgoing messages CHT itself holds, by state (due: waiting for a gateway, "
            "scheduled, muted), read from CHT's /api/v2/monitoring every minute; absent while "
            "CHT cannot be read.",
            ["state"],
            registry=r,
        )
        self._clock = clock
        self._store_collector: StoreCollector | None = None
        if store is not None:
            self.attach_store(store)

    def expect(self, carriers: Iterable[str] = (), channels: Iterable[str] = ()) -> None:
        """Export the series of these carriers (inbound SMS) and channels (send latency,
        delivery-report lag) at 0 until something is counted (the app calls this with the
        enabled carriers and the routes' channels)."""
        for carrier in carriers:
            self._inbound.labels(carrier)
            for why in ("status", "id"):
                self._unknown_reports.labels(carrier, why)
        for channel in map(self.channel_label, channels):
            self._send_latency.labels(channel)
            self._delivery_lag.labels(channel)
            for what in AMBIGUOUS_EVENTS:
                self._ambiguous.labels(channel, what)

    def attach_store(self, store: Store) -> None:
        """Export the queue state of `store` (the app calls this once the store is open)."""
        if self._store_collector is not None:
            self.registry.unregister(self._store_collector)
        self._store_collector = StoreCollector(store, self._clock, self.channel_label)
        self.registry.register(self._store_collector)

    def watch_cht_gate(self, paused: Callable[[], str | None]) -> None:
        """Export `smsbridge_cht_auth_paused` from `paused` (the CHT gate's `paused_reason`),
        read at scrape time."""
        self._cht_paused.set_function(lambda: 1.0 if paused() else 0.0)

    def watch_channels(self, open_channels: Callable[[], Mapping[str, bool]]) -> None:
        """Export `smsbridge_channel_open{channel}` (1 while a channel's circuit breaker is
        open, else 0; outbound/channels.py) from `open_channels`, read at scrape time: every
        routed channel is in it, so each series exists at 0 from the start."""
        self.registry.register(_ChannelCollector(open_channels, self.channel_label))

    def cht_ok(self) -> None:
        """A CHT request succeeded (`wrap_cht` calls this)."""
        self._cht_ok.set(self._clock())

    def wrap_cht(self, cht: T) -> T:
        """`cht` with every failed call counted in `smsbridge_cht_errors_total{kind}`."""
        return cast(T, _CountingCht(cht, self))

    # -- events ----------------------------------------------------------------------------

    def inbound(self, carrier: str, count: int = 1) -> None:
        if count:  # every webhook: the carrier's child kept (labels() is slower than a dict)
            child = self._inbound_of.get(carrier)
            if child is None:
                child = self._inbound_of[carrier] = self._inbound.labels(carrier)
            child.inc(count)

    def send_latency(self, channel: str, seconds: float) -> None:
        self._send_latency.labels(self.channel_label(channel)).observe(max(0.0, seconds))

    def delivery_lag(self, channel: str, seconds: float) -> None:
        self._delivery_lag.labels(self.channel_label(channel)).observe(max(0.0, seconds))

    def outgoing_changes(self, changes: Sequence[Change]) -> None:
        """Committed state changes of outgoing SMS (the outbound pipeline's hook): each SMS
        delivered observes its lag since it was sent, whoever reported it (a carrier's status
        webhook, a phone's poll, a report that overtook the send response)."""
        for change in changes:
            if change.state == "delivered":
                self.delivery_lag(change.channel or change.carrier or "none", change.delivery_lag)

    def phone_login_refused(self, reason: str) -> None:
        self._phone_logins_refused.labels(reason).inc()

    def retry(self, kind: str) -> None:
        self._retries.labels(kind).inc()

    def ambiguous_send(self, channel: str, what: str) -> None:
        self._ambiguous.labels(self.channel_label(channel), what).inc()

    def unknown_reports(self, carrier: str, why: str, count: int) -> None:
        if count:
            self._unknown_reports.labels(carrier, why).inc(count)

    def cht_outgoing(self, counts: Mapping[str, int] | None) -> None:
        """CHT's outgoing backlog as last read (cht/monitoring.py); None: unknown, no series."""
        if counts is None:
            self._cht_outgoing.clear()
            return
        for state, count in counts.items():
            self._cht_outgoing.labels(state).set(count)

    def webhook_rejected(self, carrier: str, reason: str) -> None:
        self._webhooks_rejected.labels(carrier, reason).inc()

    def expect_rejections(self, carriers: Iterable[str], reasons: Iterable[str]) -> None:
        """Export `smsbridge_webhooks_rejected_total` at 0 for each of `carriers` and
        `reasons` before the first refusal (an alert on its rate needs the series)."""
        reasons = tuple(reasons)
        for carrier in carriers:
            for reason in reasons:
                self._webhooks_rejected.labels(carrier, reason)

    def cht_error(self, error: BaseException | str) -> None:
        """Count a failed CHT call; an exception is classified by type (rule 4)."""
        self._cht_errors.labels(error if isinstance(error, str) else cht_error_kind(error)).inc()

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated(Collector):
    """A registry's metrics without their `_created` samples: prometheus_client's switch for
    them (`disable_created_metrics`) is process-wide, and each app has its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            kept = [s for s in metric.samples if not s.name.endswith("_created")]
            if len(kept) != len(metric.samples):
                metric.samples = kept
            yield metric


class _ChannelCollector(Collector):
    """`smsbridge_channel_open`, read at scrape time (Metrics.watch_channels)."""

    def __init__(
        self, open_channels: Callable[[], Mapping[str, bool]], label: Callable[[str], str]
    ) -> None:
        self._open_channels = open_channels
        self._label = label

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "smsbridge_channel_open",
            "1 while a send channel's circuit breaker is open (its SMS go to the route's next "
            "channel; SMSBRIDGE_CHANNEL_FAILURES), else 0.",
            labels=["channel"],
        )
        by_label: dict[str, bool] = {}
        for channel, is_open in self._open_channels().items():
            label = self._label(channel)
            by_label[label] = by_label.get(label, False) or is_open
        for label, is_open in sorted(by_label.items()):
            family.add_metric([label], 1.0 if is_open else 0.0)
        yield family


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
                result = await attr(*args, **kwargs)
            except PeerError as exc:
                self._metrics.cht_error(exc)
                raise
            self._metrics.cht_ok()
            return result

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

    def __init__(
        self, store: Store, clock: Callable[[], float], channel_label: Callable[[str], str] = str
    ) -> None:
        self.store = store
        self.clock = clock
        self.channel_label = channel_label

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        rows = tasks.backlog(self.store)
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
        for kind in TASK_KINDS:  # every kind, at 0 until it has tasks
            kind_rows = [r for r in rows if r.kind == kind]
            if not any(not r.dead for r in kind_rows):
                depth.add_metric([kind], 0)
                oldest.add_metric([kind], 0.0)
            if not any(r.dead for r in kind_rows):
                dead.add_metric([kind], 0)
        for row in rows:  # one row per kind and dead-or-not
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
        yield self._pruned()

    def _pruned(self) -> Metric:
        from smsbridge import retention

        family = CounterMetricFamily(
            "smsbridge_pruned",
            "Rows deleted by retention (SMSBRIDGE_RETENTION_DAYS, `smsbridge prune`), by kind "
            "(table); kept in the database, so they survive restarts.",
            labels=["kind"],
        )
        for kind, count in retention.totals(self.store).items():
            family.add_metric([kind], count)
        return family

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
        by_label: dict[tuple[str, str], int] = {}
        for (state, channel), count in counted.items():
            key = (str(state), self.channel_label(channel) if channel else "none")
            by_label[key] = by_label.get(key, 0) + count
        # every state at 0 on each channel seen ("none" before any): a dashboard's sum by
        # state finds each state's series
        channels = sorted({channel for _, channel in by_label} or {"none"})
        for state in DeliveryState:
            for channel in channels:
                by_label.setdefault((state.value, channel), 0)
        for (state, channel), count in sorted(by_label.items()):
            family.add_metric([state, channel], count)
        yield family


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: the Prometheus text format. Rendered in a worker thread: the store queries
    must not hold up the event loop (webhooks are answered there)."""
    metrics: Metrics = request.app.state.metrics
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
