"""Split mode's parts: a long SMS on a route with `split` (outbound/routing.py) goes as standalone
numbered SMS (`1/3 `, `2/3 `...: segments.py `standalone_parts`), each a send of its own with
its own ref (`<the SMS's ref>.<k>`, what the carrier gets as our reference), the carrier's id
for it and its own delivery state. This module owns the `outgoing_parts` table; sending them
is outbound/split.py's.

The SMS's state follows its parts' (`settle_in`, in the transaction that moved a part): it is
`sending` once some part was accepted, `sent` when every part was, `delivered` when every part
was delivered, and `failed` as soon as one part failed (its reason, e.g. `part 2/3:
undelivered`): a message with a part missing is not the message. Parts not yet sent then never
are (the SMS is final, so its send task ends); those already sent keep taking their reports.
CHT hears one state per SMS, as for any other.

A part moves forward only (`sms.RANK`), as an SMS does. Functions named `*_in` run inside a
store write job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.messages import Outgoing
from smsbridge.sms import RANK, DeliveryState
from smsbridge.store import Store, serialize_in

ACCEPTED = frozenset({DeliveryState.SENT, DeliveryState.DELIVERED})
"""A part in one of these states reached its carrier: it is never sent again."""


@dataclass(frozen=True)
class Part:
    id: int
    outgoing_id: int
    part: int  # k of `k/N `
    parts: int  # N
    ref: str
    content: str
    state: DeliveryState
    reason: str | None
    channel: str | None
    carrier: str | None
    external_id: str | None
    sent_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Part:
        return cls(
            row["id"], row["outgoing_id"], row["part"], row["parts"], row["ref"], row["content"],
            DeliveryState(row["state"]), row["reason"], row["channel"], row["carrier"],
            row["external_id"], row["sent_at"],
        )  # fmt: skip

    @property
    def accepted(self) -> bool:
        return self.state in ACCEPTED

    @property
    def label(self) -> str:
        return f"{self.part}/{self.parts}"


@dataclass(frozen=True)
class Progress:
    """How far the parts of one SMS are (`outbox ls`)."""

    parts: int
    accepted: int  # sent or delivered
    delivered: int

    def __str__(self) -> str:
        n = self.parts
        return f"parts {self.accepted}/{n} sent, {self.delivered}/{n} delivered"


def part_ref(ref: str, k: int) -> str:
    """Our reference for part `k` of the SMS `ref`."""
    return f"{ref}.{k}"


def of_in(conn: sqlite3.Connection, outgoing_id: int) -> list[Part]:
    """The parts of the SMS `outgoing_id`, in order; [] when it was not split."""
    rows = conn.execute(
        "SELECT * FROM outgoing_parts WHERE outgoing_id = ? ORDER BY part", (outgoing_id,)
    ).fetchall()
    return [Part.from_row(row) for row in rows]


def of(store: Store, outgoing_id: int) -> list[Part]:
    return store.read(lambda c: of_in(c, outgoing_id))


def plan_in(
    conn: sqlite3.Connection, message: Outgoing, texts: Sequence[str], now: float
) -> list[Part]:
    """The parts of `message`: stored now as `texts` (labels included), queued, unless it has
    parts already (a send resumed after a retry or a crash keeps the split it began with)."""
    known = of_in(conn, message.id)
    if known:
        return known
    queued = DeliveryState.QUEUED.value
    conn.executemany(
        "INSERT INTO outgoing_parts(outgoing_id, part, parts, ref, content, state, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (message.id, k, len(texts), part_ref(message.ref, k), text, queued, now)
            for k, text in enumerate(texts, start=1)
        ],
    )
    return of_in(conn, message.id)


def find_in(
    conn: sqlite3.Connection, carrier: str, ref: str | None, external_id: str | None
) -> tuple[Part, Outgoing] | None:
    """The part a delivery report from `carrier` names (by our part ref, else by the carrier's
    id), with its SMS; only a part `carrier` may speak for: one it accepted, or, not yet
    accepted, of an SMS handed to it (a report that overtook the send response)."""
    row = None
    if ref:
        row = conn.execute("SELECT * FROM outgoing_parts WHERE ref = ?", (ref,)).fetchone()
    if row is None and external_id:
        row = conn.execute(
            "SELECT * FROM outgoing_parts WHERE carrier = ? AND external_id = ?",
            (carrier, external_id),
        ).fetchone()
    if row is None:
        return None
    part = Part.from_row(row)
    message = _message_in(conn, part.outgoing_id)
    if message is None:
        return None
    if part.carrier is not None and part.carrier != carrier:
        return None  # another carrier's part
    if part.carrier is None and not message.handed_to(carrier):
        return None
    return part, message


def accepted_in(
    conn: sqlite3.Connection,
    part: Part,
    channel: str,
    carrier: str,
    external_id: str | None,
    state: DeliveryState,
    now: float,
) -> DeliveryState | None:
    """`channel` (carrier module `carrier`) accepted `part`: its id recorded, the part moved
    to `state` (sent at least: the carrier has it), the SMS settled. Returns the SMS's state."""
    if RANK[state] < RANK[DeliveryState.SENT]:
        state = DeliveryState.SENT
    _hold_in(conn, part.outgoing_id)
    conn.execute(
        "UPDATE outgoing_parts SET channel = ?, carrier = ?, external_id = ?, "
        "sent_at = COALESCE(sent_at, ?), updated_at = ? WHERE id = ?",
        (channel, carrier, external_id, now, now, part.id),
    )
    return advance_in(conn, part, state, now)


def reported_in(
    conn: sqlite3.Connection,
    part: Part,
    message: Outgoing,
    state: DeliveryState,
    now: float,
    *,
    reason: str | None = None,
) -> DeliveryState | None:
    """A delivery report moves `part` of `message` (outbound/delivery.py). When it shows a
    part not yet accepted reached the carrier, that was the part whose send went unanswered
    (parts go one at a time), so `message` is no longer ambiguous: its next send goes on with
    the parts after it (unless a worker is sending it right now)."""
    _hold_in(conn, part.outgoing_id)
    settles = not part.accepted and state in ACCEPTED
    if settles and message.ambiguous_since is not None and message.attempt_started_at is None:
        outgoing.attempt_over_in(conn, message)
    return advance_in(conn, part, state, now, reason=reason)


def advance_in(
    conn: sqlite3.Connection,
    part: Part,
    state: DeliveryState,
    now: float,
    *,
    reason: str | None = None,
) -> DeliveryState | None:
    """Move `part` to `state` if that is forward, then settle its SMS. Returns the SMS's
    state (None: the SMS is gone)."""
    _hold_in(conn, part.outgoing_id)
    current = _state_in(conn, part.id)
    final = (DeliveryState.DELIVERED, DeliveryState.FAILED)
    if current is not None and current not in final and RANK[state] > RANK[current]:
        conn.execute(
            "UPDATE outgoing_parts SET state = ?, reason = COALESCE(?, reason), "
            "sent_at = CASE WHEN ? = 1 AND sent_at IS NULL THEN ? ELSE sent_at END, "
            "updated_at = ? WHERE id = ?",
            (state.value, reason, int(state in ACCEPTED), now, now, part.id),
        )
    return settle_in(conn, part.outgoing_id, now)


def settle_in(conn: sqlite3.Connection, outgoing_id: int, now: float) -> DeliveryState | None:
    """Move the SMS `outgoing_id` to what its parts say (this module's docstring); forward
    only, each state owed to CHT once (outbound/messages.py `advance_in`). Returns its state."""
    message = _message_in(conn, outgoing_id)
    if message is None:
        return None
    parts = of_in(conn, outgoing_id)
    if not parts:
        return message.state
    failed = next((p for p in parts if p.state is DeliveryState.FAILED), None)
    reason = None
    if failed is not None:
        target = DeliveryState.FAILED
        reason = f"part {failed.label}: {failed.reason or 'failed'}"
    elif all(p.state is DeliveryState.DELIVERED for p in parts):
        target = DeliveryState.DELIVERED
    elif all(p.accepted for p in parts):
        target = DeliveryState.SENT
    elif any(RANK[p.state] > RANK[DeliveryState.QUEUED] for p in parts):
        target = DeliveryState.SENDING
    else:
        return message.state
    if outgoing.advance_in(conn, message, target, now, reason=reason):
        return target
    return message.state


def _hold_in(conn: sqlite3.Connection, outgoing_id: int) -> None:
    """The parts of one SMS move one transaction at a time: two bridges applying the reports
    of two of its parts at once would each see the other part as it was and neither settle
    the SMS (each update reads its siblings: `settle_in`). Taken before the first write, so
    that the second waits before touching anything (no deadlock); held to the commit."""
    serialize_in(conn, "outgoing", str(outgoing_id))


def _message_in(conn: sqlite3.Connection, outgoing_id: int) -> Outgoing | None:
    row = conn.execute("SELECT * FROM outgoing WHERE id = ?", (outgoing_id,)).fetchone()
    return None if row is None else Outgoing.from_row(row)


def _state_in(conn: sqlite3.Connection, part_id: int) -> DeliveryState | None:
    row = conn.execute("SELECT state FROM outgoing_parts WHERE id = ?", (part_id,)).fetchone()
    return None if row is None else DeliveryState(row[0])


# -- for operators (smsbridge/cli/) ----------------------------------------------------------------


def progress(store: Store, refs: Sequence[str]) -> dict[str, Progress]:
    """ref -> its parts' progress, for the SMS among `refs` sent in split mode (`outbox ls`)."""
    found: dict[str, Progress] = {}
    unique = list(dict.fromkeys(refs))
    accepted = ",".join("?" for _ in ACCEPTED)
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ",".join("?" for _ in chunk)
        rows = store.query(
            f"SELECT o.ref, SUM(CASE WHEN p.state IN ({accepted}) THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN p.state = ? THEN 1 ELSE 0 END), COUNT(*) "
            f"FROM outgoing_parts p JOIN outgoing o ON o.id = p.outgoing_id "
            f"WHERE o.ref IN ({marks}) GROUP BY o.ref",
            (*(s.value for s in ACCEPTED), DeliveryState.DELIVERED.value, *chunk),
        )
        for row in rows:
            found[str(row[0])] = Progress(int(row[3]), int(row[1]), int(row[2]))
    return found


# -- retention (smsbridge/retention.py) -----------------------------------------------------------


def forget_in(conn: sqlite3.Connection, outgoing_ids: Sequence[int]) -> int:
    """Inside a write job: delete the parts of the SMS `outgoing_ids` (being pruned)."""
    return sum(
        conn.execute("DELETE FROM outgoing_parts WHERE outgoing_id = ?", (i,)).rowcount
        for i in outgoing_ids
    )


def count_for_in(conn: sqlite3.Connection, ids_sql: str, params: Sequence[object]) -> int:
    """How many parts the SMS whose ids `ids_sql` selects have (`prune --dry-run`)."""
    row = conn.execute(
        f"SELECT COUNT(*) FROM outgoing_parts WHERE outgoing_id IN ({ids_sql})", tuple(params)
    ).fetchone()
    return int(row[0])
