"""The console's pages that read: the overview, the message lists, one message's life, the
queue (dead letters and held SMS) and the settings. Everything is read through the owner
modules of the tables (inbound/messages.py, outbound/messages.py, outbound/reports.py,
outbound/delivery.py, tasks.py, audit.py). An SMS's text appears on its own page only, and
each such view is written to the audit table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from smsbridge import tasks
from smsbridge.inbound import messages as inbound
from smsbridge.outbound import delivery, reports
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.carriercheck import carrier_problems, carrier_warnings
from smsbridge.outbound.ratelimit import parse_rates
from smsbridge.outbound.routing import channel_carrier
from smsbridge.service import Service
from smsbridge.sms import DeliveryState
from smsbridge.web.console import audit
from smsbridge.web.console.charts import hourly_bars
from smsbridge.web.console.core import Console
from smsbridge.web.console.session import Session
from smsbridge.web.health import Readiness

HOURS = 24
LIST_LIMIT = 100
INBOUND_STATES = ("received", "submitted", "relayed", "rejected", "dead")
OUTGOING_STATES = tuple(state.value for state in DeliveryState)
PERIODS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}


def when(console: Console, seconds: float | None) -> str:
    """Epoch seconds as local time in SMSBRIDGE_TIMEZONE (`2024-05-01 14:03:09`)."""
    if seconds is None:
        return ""
    zone = ZoneInfo(console.settings.timezone)
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A duration in words an operator reads at a glance (`3 min`, `2 h 5 min`)."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{seconds / 86400:.0f} days"


def _service(request: Request) -> Service | None:
    service: Service | None = getattr(request.app.state, "service", None)
    return service


def _starting(console: Console, request: Request, session: Session) -> Response:
    return console.render(
        request, "refused.html", session, 503, title="Starting", why="The bridge is starting."
    )


# -- the overview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    label: str
    total: int
    svg: str


async def overview(console: Console, request: Request, session: Session) -> Response:
    service = _service(request)
    if service is None:
        return _starting(console, request, session)
    store, now = service.store, console.clock()
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    checks = await readiness.check() if readiness is not None else {}
    backlog = [
        {"kind": b.kind, "dead": b.dead, "count": b.count, "oldest": age(now - b.oldest)}
        for b in tasks.backlog(store)
        if b.oldest is not None
    ]
    counts = outgoing.counts(store)
    held = sum(n for (state, _), n in counts.items() if state == DeliveryState.HELD.value)
    return console.render(
        request,
        "overview.html",
        session,
        title="Overview",
        ready=all(c.ok for c in checks.values()) and bool(checks),
        checks=checks,
        paused=service.gate.paused_reason(),
        backlog=backlog,
        dead=sum(b["count"] for b in backlog if b["dead"]),
        held=held,
        channels=_channels(service, counts, now),
        charts=_charts(console, store, now),
    )


def _channels(
    service: Service, counts: dict[tuple[str, str | None], int], now: float
) -> list[dict[str, Any]]:
    rates = parse_rates(service.settings.rates)
    routed = service.outbound.routes.channels
    breakers = service.outbound.channels.report(routed, now)  # open or paused ones only
    out = []
    for channel in routed:
        by_state = {state: n for (state, ch), n in counts.items() if ch == channel}
        failed = outgoing.recent(
            service.store, state=DeliveryState.FAILED.value, channel=channel, limit=1
        )
        rate = rates.get(channel) or rates.get(channel_carrier(channel))
        out.append(
            {
                "name": channel,
                "breaker": breakers.get(channel, "closed"),
                "states": by_state,
                "rate": f"{rate.segments:g} SMS per {rate.seconds:g} s" if rate else "no limit",
                "last_error": failed[0].reason if failed else None,
                "last_error_at": failed[0].created_at if failed else None,
            }
        )
    return out


def _charts(console: Console, store: Any, now: float) -> list[Chart]:
    since = (now // 3600 - (HOURS - 1)) * 3600  # the start of the hour 23 hours ago
    labels = [when(console, since + hour * 3600)[11:16] for hour in range(HOURS)]
    series: dict[str, list[int]] = {}

    def add(name: str, hour: int, count: int) -> None:
        if 0 <= hour < HOURS:
            series.setdefault(name, [0] * HOURS)[hour] += count

    for hour, state, count in inbound.hourly(store, since):
        add("inbound", hour, count)
        add(state, hour, count)
    for hour, what, count in outgoing.hourly(store, since):
        add(what, hour, count)
    names = (
        ("inbound", "Inbound SMS"),
        ("submitted", "Submitted as reports"),
        ("relayed", "Relayed as messages"),
        ("sent", "Sent"),
        ("delivered", "Delivered"),
        ("failed", "Failed"),
    )
    charts = []
    for key, label in names:
        counts = series.get(key, [0] * HOURS)
        charts.append(Chart(label, sum(counts), hourly_bars(label, counts, labels)))
    return charts


# -- the lists -------------------------------------------------------------------------------


async def messages(console: Console, request: Request, session: Session) -> Response:
    service = _service(request)
    if service is None:
        return _starting(console, request, session)
    params = request.query_params
    kind = "outgoing" if params.get("kind") == "outgoing" else "inbound"
    states = OUTGOING_STATES if kind == "outgoing" else INBOUND_STATES
    state = params.get("state") if params.get("state") in states else None
    channel = (params.get("channel") or "").strip() or None
    number = (params.get("number") or "").replace(" ", "") or None
    period = params.get("period") if params.get("period") in PERIODS else None
    after = console.clock() - PERIODS[period] if period else None
    rows: list[dict[str, Any]]
    if kind == "inbound":
        found = inbound.listing(
            service.store, state=state, carrier=channel, sender=number, accepted_after=after,
            limit=LIST_LIMIT,
        )  # fmt: skip
        rows = [
            {
                "href": f"inbound/{m.uuid}",
                "at": when(console, m.accepted_at / 1000),
                "number": m.sender,
                "channel": m.carrier,
                "state": m.state,
                "detail": m.form or m.reason or "",
            }
            for m in found
        ]
    else:
        sent = outgoing.recent(
            service.store, state=state, channel=channel, to=number, created_after=after,
            limit=LIST_LIMIT,
        )  # fmt: skip
        rows = [
            {
                "href": f"outgoing/{m.ref}",
                "at": when(console, m.created_at),
                "number": m.to,
                "channel": m.channel or "",
                "state": m.state.value,
                "detail": m.reason or m.origin,
            }
            for m in sent
        ]
    return console.render(
        request,
        "messages.html",
        session,
        title="Messages",
        kind=kind,
        states=states,
        periods=list(PERIODS),
        filters={
            "state": state or "",
            "channel": channel or "",
            "number": number or "",
            "period": period or "",
        },
        rows=rows,
        limit=LIST_LIMIT,
    )


async def queue(console: Console, request: Request, session: Session) -> Response:
    service = _service(request)
    if service is None:
        return _starting(console, request, session)
    now = console.clock()
    dead = [
        {
            "task": task,
            "href": f"{'outgoing' if task.kind == outgoing.SEND else 'inbound'}/{task.ref}",
            "age": age(now - task.updated_at),
        }
        for task in service.tasks.dead_letters(limit=LIST_LIMIT)
    ]
    held = [
        {"sms": sms, "age": age(now - sms.created_at)}
        for sms in outgoing.held(service.store, limit=LIST_LIMIT)
    ]
    return console.render(
        request, "queue.html", session, title="Queue", dead=dead, held=held,
        done=request.query_params.get("done", ""),
    )  # fmt: skip


# -- one message -----------------------------------------------------------------------------


async def inbound_page(console: Console, request: Request, session: Session) -> Response:
    service = _service(request)
    if service is None:
        return _starting(console, request, session)
    uuid = request.path_params["uuid"]
    message = inbound.get_message(service.store, uuid)
    if message is None:
        return _missing(console, request, session)
    await _viewed(console, service, session, "inbound", uuid)
    life = [
        ("Received", message.received_at / 1000, f"from {message.carrier}"),
        ("Stored", message.accepted_at / 1000, ""),
    ]
    return console.render(
        request,
        "inbound.html",
        session,
        title="Inbound SMS",
        message=message,
        life=[(what, when(console, at), detail) for what, at, detail in life],
        tasks=_tasks(console, service, uuid),
        replies=outgoing.replies_to(service.store, uuid),
        audit=_audit(console, service, uuid),
        done=request.query_params.get("done", ""),
    )


async def outgoing_page(console: Console, request: Request, session: Session) -> Response:
    service = _service(request)
    if service is None:
        return _starting(console, request, session)
    ref = request.path_params["ref"]
    message = outgoing.get(service.store, ref)
    if message is None:
        return _missing(console, request, session)
    await _viewed(console, service, session, "outgoing", ref)
    return console.render(
        request,
        "outgoing.html",
        session,
        title="Outgoing SMS",
        sms=message,
        created=when(console, message.created_at),
        sent=when(console, message.sent_at),
        tasks=_tasks(console, service, ref),
        delivery=[
            {"at": when(console, at), "state": state, "status": status, "reason": reason, "id": eid}
            for at, state, status, reason, eid in delivery.reports_for(service.store, message.id)
        ],
        reported=[
            {"status": s, "reason": r, "owed": when(console, owed), "heard": when(console, heard)}
            for s, r, owed, heard in reports.reports_for(service.store, ref)
        ],
        audit=_audit(console, service, ref),
        done=request.query_params.get("done", ""),
    )


def _missing(console: Console, request: Request, session: Session) -> Response:
    return console.render(
        request, "refused.html", session, 404, title="Not found", why="No such message."
    )


async def _viewed(
    console: Console, service: Service, session: Session, target: str, ref: str
) -> None:
    now = console.clock()
    await service.store.write(
        lambda conn: audit.record_in(
            conn, now, session.user, audit.VIEWED, target, ref, message=ref
        )
    )


def _tasks(console: Console, service: Service, ref: str) -> list[dict[str, Any]]:
    now = console.clock()
    return [
        {
            "task": task,
            "created": when(console, task.created_at),
            "due": "" if task.state == "dead" else age(task.not_before - now),
        }
        for task in tasks.tasks_for(service.store, ref)
    ]


def _audit(console: Console, service: Service, ref: str) -> list[dict[str, Any]]:
    return [{"at": when(console, e.at), "entry": e} for e in audit.for_message(service.store, ref)]


# -- settings --------------------------------------------------------------------------------


async def settings_page(console: Console, request: Request, session: Session) -> Response:
    settings = console.settings
    problems = [str(p) for p in settings.problems()] + carrier_problems(settings)
    return console.render(
        request,
        "settings.html",
        session,
        title="Settings",
        rows=settings.described(),
        problems=problems,
        warnings=carrier_warnings(settings),
    )
