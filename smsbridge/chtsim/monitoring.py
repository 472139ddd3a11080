"""`GET /api/v1/monitoring` and `/api/v2/monitoring`: no authentication, CHT's shapes.

`messaging.outgoing` is counted per message from the task store with CHT's grouping: `scheduled`,
`muted` (muted, cleared, denied, duplicate), `due` (every other state, final ones included),
`delivered` (sent, delivered), `failed`. With the monitoring fault on, every number is -1 and
every version "".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.messaging import to_ms
from smsbridge.chtsim.responses import json_response
from smsbridge.chtsim.state import SimState, iter_tasks

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

VERSIONS = {"app": "5.2.0", "node": "v22.11.0", "couchdb": "3.5.0"}
MUTED = ("muted", "cleared", "denied", "duplicate")
PENDING = ("pending", "forwarded-to-gateway", "received-by-gateway", "forwarded-by-gateway")
FINAL = ("sent", "delivered", "failed")


def _counts(tasks: list[tuple[dict[str, Any], float]]) -> dict[str, int]:
    counts = {"due": 0, "scheduled": 0, "muted": 0, "failed": 0, "delivered": 0}
    for task, _due in tasks:
        state = task.get("state")
        n = len(task.get("messages") or []) or 1
        if state == "scheduled":
            counts["scheduled"] += n
        elif state in MUTED:
            counts["muted"] += n
        else:
            counts["due"] += n
            if state in ("sent", "delivered"):
                counts["delivered"] += n
            elif state == "failed":
                counts["failed"] += n
    return counts


def _tasks(state: SimState) -> list[tuple[dict[str, Any], float]]:
    with state.lock:
        return [
            (task, to_ms(task.get("due") or task.get("timestamp") or doc.get("reported_date")))
            for doc in state.docs.values()
            for _list, _index, task in iter_tasks(doc)
        ]


def _last_updated(task: dict[str, Any]) -> float:
    history = task.get("state_history") or [{}]
    return to_ms(history[-1].get("timestamp"))


def _last_hundred(tasks: list[tuple[dict[str, Any], float]]) -> dict[str, dict[str, int]]:
    groups = {"pending": PENDING, "final": FINAL, "muted": MUTED}
    result = {}
    for group, states in groups.items():
        recent = sorted(
            (t for t, _ in tasks if t.get("state") in states), key=_last_updated, reverse=True
        )[:100]
        result[group] = {s: sum(1 for t in recent if t.get("state") == s) for s in states}
    return result


def _db(name: str, docs: int, seq: int) -> dict[str, Any]:
    return {
        "name": name,
        "update_sequence": seq,
        "doc_count": docs,
        "doc_del_count": 0,
        "fragmentation": 1.0,
        "sizes": {"active": docs * 1000, "file": docs * 1200},
        "view_indexes": [],
        "nouveau_indexes": [],
    }


def _broken(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _broken(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_broken(v) for v in value]
    if isinstance(value, str):
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return -1
    return value


def monitoring(sim: ChtSim, version: int) -> dict[str, Any]:
    state = sim.state
    now = sim.now_ms()
    tasks = _tasks(state)
    docs = len(state.docs) + len(state.contacts)
    body: dict[str, Any] = {
        "version": dict(VERSIONS),
        "couchdb": {
            "medic": _db("medic", docs, state.update_seq),
            "sentinel": _db("medic-sentinel", 0, 0),
            "usersmeta": _db("medic-users-meta", 0, 0),
            "users": _db("_users", len(state.users), len(state.users)),
        },
        "date": {"current": now, "uptime": round(time.monotonic() - sim.started, 3)},
        "sentinel": {"backlog": state.sentinel_backlog},
        "messaging": {"outgoing": {"state": _counts(tasks)}},
        "outbound_push": {"backlog": 0},
        "feedback": {"count": 0},
        "conflict": {"count": 0},
        "replication_limit": {"count": 0},
        "connected_users": {"count": 0},
    }
    if version == 2:
        start = datetime.fromtimestamp(now / 1000, tz=UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) - timedelta(days=7)
        low = start.timestamp() * 1000
        body["replication_failure"] = {"count": 0}
        body["messaging"]["outgoing"] = {
            "total": _counts(tasks),
            "seven_days": _counts([(t, d) for t, d in tasks if low <= d <= now]),
            "last_hundred": _last_hundred(tasks),
        }
    return _broken(body) if sim.faults.monitoring_broken else body


async def get_monitoring(sim: ChtSim, request: Request, version: int) -> Response:
    return json_response(monitoring(sim, version))
