"""CHT's messaging service: outgoing task states, gateway status updates, outgoing selection
and new message tasks (with the `denied` and `duplicate` rules).

As CHT does it: `set_task_state` has CHT's exact no-op rule (details
compared by identity, so a repeated FAILED-with-reason appends history), nothing enforces
forward-only moves, and a medic-gateway update clears `gateway_ref`.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from smsbridge.chtsim.contacts import normalize_phone
from smsbridge.chtsim.state import SimState, iter_tasks

OUTGOING_LIMIT = 25
CONFLICT_RETRIES = 3

STATUS_MAP = {
    "UNSENT": "received-by-gateway",
    "PENDING": "forwarded-by-gateway",
    "SENT": "sent",
    "DELIVERED": "delivered",
    "FAILED": "failed",
}


class WriteConflict(Exception):
    """Saving changed docs still conflicted after CHT's three retries (answered with 500)."""


def iso(ms: int) -> str:
    """JavaScript's `new Date(ms).toISOString()`."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(value: Any) -> float:
    """Epoch ms of a task's `due`/`timestamp` or a doc's `reported_date` (number or ISO)."""
    if isinstance(value, bool):
        return -math.inf
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return -math.inf
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp() * 1000
    return -math.inf


def set_task_state(
    task: dict[str, Any],
    state: str,
    details: Any,
    now_ms: int,
    gateway_ref: str | None = None,
) -> bool:
    """CHT's `setTaskState`. Returns False (and changes nothing) when it is a no-op."""
    history = task.get("state_history") or []
    if (
        task.get("state") == state
        and history
        and isinstance(history[-1], dict)
        and history[-1].get("state") == state
        and (details is None or task.get("state_details") is details)
        and (gateway_ref is None or task.get("gateway_ref") == gateway_ref)
    ):
        return False
    task["state"] = state
    if details is None:
        task.pop("state_details", None)
    else:
        task["state_details"] = details
    if gateway_ref is None:
        task.pop("gateway_ref", None)
    else:
        task["gateway_ref"] = gateway_ref
    entry: dict[str, Any] = {"state": state, "timestamp": iso(now_ms)}
    if details is not None:
        entry["state_details"] = details
    task.setdefault("state_history", []).append(entry)
    return True


def map_gateway_status(update: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """A cht-gateway `{id, status, reason}` update -> (CHT task state, state_details)."""
    status = update.get("status")
    state = STATUS_MAP.get(status) if isinstance(status, str) else None
    if state is None:
        return "unrecognised", ({"gateway_status": status} if "status" in update else {})
    if state == "failed" and update.get("reason"):
        return state, {"reason": update["reason"]}
    return state, None


def apply_updates(
    state: SimState,
    updates: list[Any],
    now_ms: int,
    conflict: Callable[[], bool] = lambda: False,
) -> int:
    """`updateMessageTaskStates`: apply each update in order to the task holding that message.
    Unknown ids are ignored. `conflict()` says whether one bulk write attempt conflicts; after
    CHT's three retries the whole write fails with WriteConflict and nothing is applied."""
    if not updates:
        return 0
    if all(conflict() for _ in range(CONFLICT_RETRIES + 1)):
        raise WriteConflict("conflicts after retries")
    changed: dict[str, dict[str, Any]] = {}
    with state.lock:
        for update in updates:
            if not isinstance(update, dict):
                raise TypeError("update is not an object")
            found = state.find_task(str(update.get("id")))
            if found is None:
                continue  # "Message not found": logged by CHT, ignored
            doc, task = found
            new_state, details = map_gateway_status(update)
            if set_task_state(task, new_state, details, now_ms):
                changed[doc["_id"]] = doc
        for doc in changed.values():
            state.put_doc(doc)
    return len(changed)


def select_outgoing(state: SimState, now_ms: int) -> list[dict[str, str]]:
    """The messages /api/sms hands to a gateway: up to 25 pending or forwarded-to-gateway
    messages ordered by due date then doc id, each then marked forwarded-to-gateway."""
    settings = state.settings
    sms = settings.get("sms")
    if sms is not None and (
        not isinstance(sms, dict) or sms.get("outgoing_service") != ("medic-gateway")
    ):
        return []
    with state.lock:
        rows: list[tuple[float, str, int, int, dict[str, Any], dict[str, Any]]] = []
        for doc_id, list_name, index in list(state.active):
            doc = state.docs.get(doc_id)
            tasks = (doc or {}).get(list_name) or []
            if doc is None or index >= len(tasks):
                continue
            task = tasks[index]
            if task.get("state") not in ("pending", "forwarded-to-gateway"):
                continue
            due = to_ms(task.get("due") or task.get("timestamp") or doc.get("reported_date"))
            order = (0 if list_name == "tasks" else 1_000_000) + index
            for position, message in enumerate(task.get("messages") or []):
                if (
                    isinstance(message, dict)
                    and message.get("uuid")
                    and message.get("to")
                    and message.get("message")
                ):
                    rows.append((due, doc_id, order, position, task, message))
        rows.sort(key=lambda row: row[:4])
        selected = rows[:OUTGOING_LIMIT]
        answer = []
        changed: dict[str, dict[str, Any]] = {}
        for _due, doc_id, _order, _pos, task, message in selected:
            to = str(message["to"])
            answer.append(
                {
                    "id": str(message["uuid"]),
                    "to": normalize_phone(settings, to) or to,
                    "content": message["message"],
                }
            )
            if task.get("state") != "forwarded-to-gateway":
                set_task_state(task, "forwarded-to-gateway", None, now_ms)
                changed[doc_id] = state.docs[doc_id]
        for doc in changed.values():
            state.put_doc(doc)
        return answer


# -- creating outgoing messages ----------------------------------------------------------------


def _denied(settings: dict[str, Any], to: str) -> bool:
    if settings.get("gateway_number") and to == settings.get("gateway_number"):
        return True
    deny_list = settings.get("outgoing_deny_list") or ""
    prefixes = [p.strip() for p in str(deny_list).split(",") if p.strip()]
    if any(to.startswith(prefix) for prefix in prefixes):
        return True
    shorter = settings.get("outgoing_deny_shorter_than") or 0
    if isinstance(shorter, int | float) and len(to) < shorter:
        return True
    return bool(settings.get("outgoing_deny_with_alphas")) and bool(re.search(r"[a-zA-Z]", to))


class DuplicateGuard:
    """CHT's in-memory duplicate check: the same (to, content) generated more than
    `sms.duplicate_limit` times (default 5, at most 20) within 30 minutes is `duplicate`."""

    WINDOW_MS = 30 * 60 * 1000

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], list[int]] = {}

    def is_duplicate(self, settings: dict[str, Any], to: str, content: str, now_ms: int) -> bool:
        limit = (settings.get("sms") or {}).get("duplicate_limit", 5)
        limit = min(int(limit), 20) if isinstance(limit, int | float) else 5
        times = [t for t in self.seen.get((to, content), []) if now_ms - t < self.WINDOW_MS]
        times.append(now_ms)
        self.seen[(to, content)] = times
        return len(times) > limit


def new_task(
    state: SimState,
    guard: DuplicateGuard,
    to: str,
    content: str,
    now_ms: int,
    *,
    task_state: str | None = "pending",
    due: Any = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A task with one message, in the state CHT's message creation would give it."""
    message = {"uuid": message_id or str(uuid.uuid4()), "to": to, "message": content}
    task: dict[str, Any] = {"messages": [message]}
    if due is not None:
        task["due"] = due
    if task_state is not None:
        if task_state in ("pending", "scheduled"):
            if _denied(state.settings, to):
                task_state = "denied"
            elif guard.is_duplicate(state.settings, to, content, now_ms):
                task_state = "duplicate"
        set_task_state(task, task_state, None, now_ms)
    return task


def run_due_tasks(state: SimState, now_ms: int) -> int:
    """Sentinel's due-task job: scheduled tasks whose due time has come become pending."""
    moved = 0
    with state.lock:
        for doc in list(state.docs.values()):
            touched = False
            for _list, _index, task in iter_tasks(doc):
                if task.get("state") == "scheduled" and to_ms(task.get("due")) <= now_ms:
                    set_task_state(task, "pending", None, now_ms)
                    touched = True
                    moved += 1
            if touched:
                state.put_doc(doc)
    return moved
