"""CHT's own outgoing backlog, read from its monitoring API (`GET /api/v2/monitoring`, no
authentication): how many outgoing messages CHT holds `due` (waiting for a gateway: this
bridge), `scheduled` (for later) and `muted`. Exported as `smsbridge_cht_outgoing{state}`
(web/metrics.py): messages CHT never hands over stay invisible in the bridge's own figures.

`ChtBacklog.step(now)` reads it once every `every` seconds of the service's clock (service.py
runs it in the worker pool) and hands the reading to `on_reading`: the counts, or None while
CHT cannot be read or answers something unusable (numbers missing or negative, as CHT reports
a failed count) — then the series go absent rather than show a stale backlog as current.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from smsbridge.errors import PeerError
from smsbridge.logs import event

log = logging.getLogger(__name__)

STATES = ("due", "scheduled", "muted")
"""The `state` label of smsbridge_cht_outgoing: CHT's own names for its message groups."""

READ_EVERY = 60.0
"""Seconds between two reads of CHT's monitoring API."""


class MonitoringSource(Protocol):
    def monitoring(self) -> Awaitable[dict[str, Any]]: ...


def outgoing_backlog(body: Mapping[str, Any]) -> dict[str, int] | None:
    """`{due, scheduled, muted}` from a monitoring answer (v2: `messaging.outgoing.total`; v1:
    `messaging.outgoing.state`); None when a number is missing or not a count."""
    outgoing = (body.get("messaging") or {}).get("outgoing") or {}
    counts = outgoing.get("total") or outgoing.get("state")
    if not isinstance(counts, Mapping):
        return None
    found: dict[str, int] = {}
    for state in STATES:
        value = counts.get(state)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        found[state] = value
    return found


class ChtBacklog:
    """Reads CHT's outgoing backlog every `every` seconds; `last` is the latest reading."""

    def __init__(
        self,
        cht: MonitoringSource,
        on_reading: Callable[[Mapping[str, int] | None], None],
        *,
        every: float = READ_EVERY,
    ) -> None:
        self.cht = cht
        self.on_reading = on_reading
        self.every = every
        self.next_read = 0.0
        self.last: dict[str, int] | None = None

    async def step(self, now: float) -> None:
        if now < self.next_read:
            return
        self.next_read = now + self.every
        try:
            reading = outgoing_backlog(await self.cht.monitoring())
        except PeerError as exc:
            reading = None
            event(log, "cht_monitoring_unavailable", logging.DEBUG, error=exc.code)
        self.last = reading
        self.on_reading(reading)
