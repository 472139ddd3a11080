"""What the operator's listings show: `smsbridge inbox ls` (inbound SMS) and `smsbridge outbox ls`
(the task queue: work waiting, running and dead-lettered, with the outgoing SMS it is about).

Each listing is a list of plain dicts (the `--json` output), rendered as a table for people.
Phone numbers are masked and SMS text left out unless `reveal` is asked for: a terminal is
not a log, but screens get shared. A filter value that can match nothing (an unknown state,
task kind or carrier) is a usage error naming the values it accepts, not an empty listing; a
channel is accepted when its carrier is known (`chtgateway:<user>` for any phone user), even
one no longer enabled: its SMS are still in the database.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smsbridge.carriers import CARRIERS
from smsbridge.cli.tables import render_table
from smsbridge.errors import ConfigError, UsageError
from smsbridge.logs import mask_phone
from smsbridge.outbound import channels, parts
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.routing import channel_carrier
from smsbridge.store import Store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d`, `1w` -> seconds (an argparse type: bad input exits 2)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 1d)")
    return float(match[1]) * _UNITS[match[2] or "s"]


def open_store(database: Path | str) -> Store:
    """The bridge's database for reading and operator actions; a missing file is a
    configuration problem (a listing must not create an empty database somewhere), and so is
    a schema of another version (only `serve` and `migrate` change the schema)."""
    if isinstance(database, str):  # PostgreSQL (smsbridge/store.py `open_store`)
        from smsbridge.store import open_store as open_database

        return open_database(database, migrate=False)
    if not database.exists():
        raise ConfigError(
            f"SMSBRIDGE_DATABASE: no database at {str(database)!r} (has `smsbridge serve` run "
            "here? set SMSBRIDGE_DATABASE to its file)"
        )
    return Store(database, migrate=False)


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    channel: str | None = None  # outbox: the outgoing SMS's channel; inbox: the carrier
    kind: str | None = None
    ref: str | None = None  # outbox: one outgoing SMS (`smsbridge send` prints it) or its tasks
    older_than: float | None = None  # seconds
    newer_than: float | None = None
    limit: int = 50


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return (
                f"{seconds / size:.0f}{unit}"
                if seconds >= 10 * size
                else f"{seconds / size:.1f}{unit}"
            )
    return f"{seconds:.0f}s"


def _check_filters(filters: Filters, channel_option: str, *, phones: bool) -> None:
    """UsageError for a --kind or channel filter value that can match nothing; `phones`: a
    channel may name one phone (`chtgateway:<user>`)."""
    if filters.kind is not None:
        from smsbridge.web.metrics import TASK_KINDS  # every task kind (loaded only when asked)

        if filters.kind not in TASK_KINDS:
            known = ", ".join(sorted(TASK_KINDS))
            raise UsageError(f"--kind: unknown task kind {filters.kind!r} (one of {known})")
    if filters.channel is None:
        return
    carrier = channel_carrier(filters.channel) if phones else filters.channel
    if carrier not in CARRIERS:
        known = ", ".join(sorted(CARRIERS)) + ("; one phone: chtgateway:<user>" if phones else "")
        raise UsageError(f"{channel_option}: unknown carrier {carrier!r} (one of {known})")


def _phone(number: str | None, reveal: bool) -> str | None:
    if number is None or reveal:
        return number
    return mask_phone(number)


# -- inbox ----------------------------------------------------------------------------------------


INBOX_STATES = ("received", "submitted", "relayed", "rejected", "dead")


def inbox(
    store: Store, filters: Filters, now: float, *, reveal: bool = False
) -> list[dict[str, Any]]:
    """Inbound SMS, newest first."""
    _check_filters(filters, "--carrier", phones=False)
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if filters.state and filters.state not in INBOX_STATES:
        known = ", ".join(INBOX_STATES)
        raise UsageError(f"--state: unknown state {filters.state!r} (one of {known})")
    if filters.state:
        where.append("state = ?")
        params.append(filters.state)
    if filters.channel:
        where.append("carrier = ?")
        params.append(filters.channel)
    if filters.older_than is not None:
        where.append("accepted_at <= ?")
        params.append(int((now - filters.older_than) * 1000))
    if filters.newer_than is not None:
        where.append("accepted_at >= ?")
        params.append(int((now - filters.newer_than) * 1000))
    rows = store.query(
        f"SELECT * FROM messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*params, filters.limit),
    )
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "id": row["id"],
            "uuid": row["uuid"],
            "carrier": row["carrier"],
            "from": _phone(row["sender"], reveal),
            "received_at": _iso(row["received_at"] / 1000),
            "age_seconds": round(now - row["accepted_at"] / 1000, 3),
            "state": row["state"],
            "form": row["form"],
            "cht_doc_id": row["cht_doc_id"],
            "reason": row["reason"],
        }
        if reveal:
            item["text"] = row["text"]
        out.append(item)
    return out


def render_inbox(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["ID", "RECEIVED", "AGE", "CARRIER", "FROM", "STATE", "FORM", "REASON"]
    if rows and "text" in rows[0]:
        headers.append("TEXT")
    table = [
        [
            r["id"],
            r["received_at"],
            age_text(r["age_seconds"]),
            r["carrier"],
            r["from"],
            r["state"],
            r["form"],
            r["reason"],
            *([r["text"]] if "text" in r else []),
        ]
        for r in rows
    ]
    return render_table(headers, table) if rows else "no messages"


# -- outbox ---------------------------------------------------------------------------------------

TASK_STATES = ("ready", "leased", "dead")
SMS_STATES = ("queued", "held", "sending", "sent", "delivered", "failed")


def outbox(
    store: Store, filters: Filters, now: float, *, reveal: bool = False
) -> list[dict[str, Any]]:
    """The task queue, oldest first, each task with the outgoing SMS it is about when there is
    one; or, when `filters.state` is a delivery state, the outgoing SMS in that state (held ones
    have no task: `outbox release|drop REF`). `filters.ref` alone: that outgoing SMS whatever
    its state (else the tasks with that ref). Each row's `channel_state` says whether its
    channel is open (circuit breaker) or paused (throttle): outbound/channels.py."""
    _check_filters(filters, "--channel", phones=True)
    rows = _with_channel_states(store, _outbox_rows(store, filters, now, reveal), now)
    progress = parts.progress(store, [r["ref"] for r in rows if r.get("sms_state")])
    for row in rows:  # an SMS sent in split mode: how far its parts are (outbound/parts.py)
        row["parts"] = str(progress[row["ref"]]) if row["ref"] in progress else None
    return rows


def _with_channel_states(
    store: Store, rows: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    described: dict[str, str] = {}
    for row in rows:
        channel = row.get("channel")
        if channel and channel not in described:
            described[channel] = channels.load(store, channel).describe(now)
        row["channel_state"] = described.get(channel) or None if channel else None
    return rows


def _outbox_rows(store: Store, filters: Filters, now: float, reveal: bool) -> list[dict[str, Any]]:
    if filters.state in SMS_STATES:
        return _outgoing_rows(store, filters, now, reveal)
    if filters.ref is not None and filters.state is None:
        sms = _outgoing_rows(store, filters, now, reveal)
        if sms:
            return sms
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if filters.ref is not None:
        where.append("t.ref = ?")
        params.append(filters.ref)
    if filters.state in TASK_STATES:
        where.append("t.state = ?")
        params.append(filters.state)
    elif filters.state == "waiting":
        where.append("t.state != 'dead'")
    elif filters.state:
        known = ", ".join((*TASK_STATES, "waiting", *SMS_STATES))
        raise UsageError(f"--state: unknown state {filters.state!r} (one of {known})")
    if filters.kind:
        where.append("t.kind = ?")
        params.append(filters.kind)
    if filters.older_than is not None:
        where.append("t.created_at <= ?")
        params.append(now - filters.older_than)
    if filters.newer_than is not None:
        where.append("t.created_at >= ?")
        params.append(now - filters.newer_than)
    if filters.channel:  # the channel is the outgoing SMS's: only send tasks have one
        where.append("t.kind = ? AND t.ref IN (SELECT ref FROM outgoing WHERE channel = ?)")
        params += [outgoing.SEND, filters.channel]
    rows = store.query(
        f"SELECT t.* FROM tasks t WHERE {' AND '.join(where)} ORDER BY t.id LIMIT ?",
        (*params, filters.limit),
    )
    sms_by_ref = outgoing.by_refs(store, [r["ref"] for r in rows])
    return [_row(row, sms_by_ref.get(row["ref"]), now, reveal) for row in rows]


def _outgoing_rows(
    store: Store, filters: Filters, now: float, reveal: bool
) -> list[dict[str, Any]]:
    messages = outgoing.listing(
        store,
        state=filters.state,
        ref=filters.ref,
        channel=filters.channel,
        created_before=None if filters.older_than is None else now - filters.older_than,
        created_after=None if filters.newer_than is None else now - filters.newer_than,
        limit=filters.limit,
    )
    refs = [m.ref for m in messages]
    tasks: dict[str, Any] = {}
    for start in range(0, len(refs), 500):
        chunk = refs[start : start + 500]
        marks = ",".join("?" for _ in chunk)
        for row in store.query(
            f"SELECT * FROM tasks WHERE kind = ? AND ref IN ({marks})", (outgoing.SEND, *chunk)
        ):
            tasks[row["ref"]] = row
    return [_row(tasks.get(m.ref), m, now, reveal) for m in messages]


def _row(task: Any, sms: outgoing.Outgoing | None, now: float, reveal: bool) -> dict[str, Any]:
    """One listing row: a task (None: a held or finished SMS) and the outgoing SMS it is about
    (None: a task about something else, e.g. an inbound SMS to submit)."""
    item: dict[str, Any] = {
        "id": None,
        "kind": outgoing.SEND,
        "ref": None if sms is None else sms.ref,
        "state": None,
        "attempts": None,
        "age_seconds": 0.0 if sms is None else round(now - sms.created_at, 3),
        "due_in_seconds": None,
        "error": None if sms is None else sms.reason,
    }
    if task is not None:
        dead = task["state"] == "dead"
        item.update(
            id=task["id"],
            kind=task["kind"],
            ref=task["ref"],
            state=task["state"],
            attempts=task["attempts"],
            age_seconds=round(now - task["created_at"], 3),
            due_in_seconds=None if dead else round(task["not_before"] - now, 3),
            error=task["dead_reason"] if dead else task["last_error"],
        )
    item |= {
        "channel": None if sms is None else sms.channel,
        "sms_state": None if sms is None else str(sms.state),
        "to": None if sms is None else _phone(sms.to, reveal),
        "carrier_id": None if sms is None else sms.external_id,
        # a send that may have reached the carrier, its answer never stored (outbound/send.py)
        "ambiguous_since": None if sms is None else _iso(sms.ambiguous_since),
    }
    if reveal:
        item["text"] = None if sms is None else sms.content
    return item


def render_outbox(rows: Sequence[dict[str, Any]]) -> str:
    headers = [
        "ID", "KIND", "REF", "STATE", "TRIES", "AGE", "DUE", "CHANNEL", "SMS", "CARRIER ID", "TO",
        "ERROR",
    ]  # fmt: skip
    revealed = bool(rows) and "text" in rows[0]  # `--reveal`: the SMS text, last
    if revealed:
        headers.append("TEXT")
    table = [
        [
            r["id"],
            r["kind"],
            r["ref"],
            r["state"],
            r["attempts"],
            age_text(r["age_seconds"]),
            _due(r["due_in_seconds"]),
            f"{r['channel']} ({r['channel_state']})" if r.get("channel_state") else r["channel"],
            _sms_cell(r),
            r.get("carrier_id"),
            r["to"],
            r["error"],
            *([r.get("text")] if revealed else []),
        ]
        for r in rows
    ]
    return render_table(headers, table) if rows else "nothing to list"


def _sms_cell(row: dict[str, Any]) -> str | None:
    """The SMS's state, marked when ambiguous, with its parts' progress (split mode)."""
    words = [row["sms_state"]]
    if row.get("ambiguous_since"):
        words.append("(ambiguous)")
    if row.get("parts"):
        words.append(f"({row['parts']})")
    return " ".join(word for word in words if word) or None


def _due(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return "now" if seconds <= 0 else "in " + age_text(seconds)


# -- the CLI's side -------------------------------------------------------------------------------


def list_command(which: str, args: argparse.Namespace) -> int:
    """`inbox ls` / `outbox ls`: print the table (or JSON); exit 0."""
    import json
    import time

    from smsbridge.settings import Settings

    if args.limit <= 0:
        raise UsageError("--limit must be positive")
    filters = Filters(
        state=args.state,
        channel=getattr(args, "channel", None),
        kind=getattr(args, "kind", None),
        ref=getattr(args, "ref", None),
        older_than=args.older_than,
        newer_than=args.newer_than,
        limit=args.limit,
    )
    settings = Settings.from_env()
    with open_store(settings.database) as store:
        now = time.time()
        if which == "inbox":
            rows = inbox(store, filters, now, reveal=args.reveal)
            text = render_inbox(rows)
        else:
            rows = outbox(store, filters, now, reveal=args.reveal)
            text = render_outbox(rows)
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0
