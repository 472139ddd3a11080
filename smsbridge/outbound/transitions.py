"""State changes of outgoing SMS: noted where they happen (`outgoing.advance_in`, `insert_in`,
`hold_in`, `release_held`), logged one line each, and fed to the metrics — after the commit.

A write job run by `write(store, job)` (or wrapped in `tracked(job)`) collects the changes it
makes; they are logged once the transaction is committed, so a rolled-back job logs nothing. A
change noted outside a tracked job (an operator's CLI command, the inbound pipeline's reply to a
sender) is logged at once, inside its job. Each line carries ids, states and the masked number,
never the text (docs/architecture.md, rule 6):

    event=outgoing_sent message=<CHT id> state=sent previous=queued channel=twilio
        carrier=twilio external_id=SM123 to=+2547****678 attempt=1

Held and failed SMS are logged at WARNING, every other state at INFO.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from smsbridge.logs import event, mask_phones
from smsbridge.sms import DeliveryState

if TYPE_CHECKING:
    from smsbridge.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

_WARN = frozenset({DeliveryState.HELD, DeliveryState.FAILED})
_REASON_CHARS = 200  # a carrier's error text can be long; the full reason is in the database


@dataclass(frozen=True)
class Change:
    """One outgoing SMS entering `state` at time `at`."""

    ref: str
    state: DeliveryState
    at: float
    previous: DeliveryState | None = None
    origin: str | None = None
    to: str | None = None
    channel: str | None = None
    carrier: str | None = None
    external_id: str | None = None
    reason: str | None = None
    sent_at: float | None = None  # when it was first sent, before this change (None: not yet)

    @property
    def delivery_lag(self) -> float:
        """Seconds from being sent to this (delivered) change: 0 when both came at once."""
        return max(0.0, self.at - self.sent_at) if self.sent_at is not None else 0.0


_collecting: ContextVar[list[Change] | None] = ContextVar("smsbridge_changes", default=None)


def note(change: Change) -> None:
    """Called where a state changes, inside a write job."""
    pending = _collecting.get()
    if pending is None:
        log_changes([change])
    else:
        pending.append(change)


def tracked(
    job: Callable[[sqlite3.Connection], T],
) -> Callable[[sqlite3.Connection], tuple[T, list[Change]]]:
    """`job`, returning also the changes it made (for the caller to log once committed)."""

    def run(conn: sqlite3.Connection) -> tuple[T, list[Change]]:
        changes: list[Change] = []
        token = _collecting.set(changes)
        try:
            return job(conn), changes
        finally:
            _collecting.reset(token)

    return run


async def write(
    store: Store,
    job: Callable[[sqlite3.Connection], T],
    *,
    on_changes: Callable[[Sequence[Change]], None] | None = None,
    rerunnable: bool = False,
    **log_fields: Any,
) -> T:
    """`await store.write(job)`, then log the changes it made (with `log_fields`) and hand
    them to `on_changes` (the metrics). `rerunnable`: `job` only reads and writes the database
    (smsbridge/store.py `Store.write`; its changes are collected afresh on each run)."""
    result, changes = await store.write(tracked(job), rerunnable=rerunnable)
    log_changes(changes, **log_fields)
    if changes and on_changes is not None:
        on_changes(changes)
    return result


def log_changes(changes: Iterable[Change], **fields: Any) -> None:
    """One line per change; `fields` (e.g. `attempt`) are added to each."""
    for c in changes:
        level = logging.WARNING if c.state in _WARN else logging.INFO
        if not log.isEnabledFor(level):
            continue
        known = {
            "message": c.ref,
            "state": c.state.value,
            "previous": c.previous.value if c.previous is not None else None,
            "origin": c.origin,
            "channel": c.channel,
            "carrier": c.carrier,
            "external_id": c.external_id,
            "to": c.to,  # masked by `event`
            "reason": mask_phones(c.reason[:_REASON_CHARS]) if c.reason else None,
            **fields,
        }
        event(
            log,
            f"outgoing_{c.state.value}",
            level,
            **{k: v for k, v in known.items() if v is not None},
        )
