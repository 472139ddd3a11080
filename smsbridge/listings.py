"""What the operator's listings show: `smsbridge inbox ls` (inbound SMS) and `smsbridge outbox ls`
(the task queue: work waiting, running and dead-lettered, with the outgoing SMS it is about).

Each listing is a list of plain dicts (the `--json` output), rendered as a table for people.
Phone numbers are masked and SMS text left out unless `reveal` is asked for: a terminal is
not a log, but screens get shared.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smsbridge.errors import ConfigError
from smsbridge.logs import mask_phone
from smsbridge.store import Store
from smsbridge.tables import render_table

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d`, `1w` -> seconds (an argparse type: bad input exits 2)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 1d)")
    return float(match[1]) * _UNITS[match[2] or "s"]


def open_store(database: Path) -> Store:
    """The bridge's database for reading and operator actions; a missing file is a
    configuration problem (a listing must not create an empty database somewhere)."""
    if not database.exists():
        raise ConfigError(
            f"SMSBRIDGE_DATABASE: no database at {str(database)!r} (has `smsbridge serve` run "
            "here? set SMSBRIDGE_DATABASE to its file)"
        )
    return Store(database)


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    channel: str | None = None  # outbox: the outgoing SMS's channel; inbox: the carrier
    kind: str | None = None
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


def _phone(number: str | None, reveal: bool) -> str | None:
    if number is None or reveal:
        return number
    return mask_phone(number)


# -- inbox ----------------------------------------------------------------------------------------


def inbox(
    store: Store, filters: Filters, now: float, *, reveal: bool = False
) -> list[dict[str, Any]]:
    """Inbound SMS, newest first."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
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


def outbox(
    store: Store, filters: Filters, now: float, *, reveal: bool = False
) -> list[dict[str, Any]]:
    """Tasks, oldest first, each with the outgoing SMS it is about when there is one."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if filters.state in TASK_STATES:
        where.append("t.state = ?")
        params.append(filters.state)
    elif filters.state == "waiting":
        where.append("t.state != 'dead'")
    if filters.kind:
        where.append("t.kind = ?")
        params.append(filters.kind)
    if filters.older_than is not None:
        where.append("t.created_at <= ?")
        params.append(now - filters.older_than)
    if filters.newer_than is not None:
        where.append("t.created_at >= ?")
        params.append(now - filters.newer_than)
    # Filters on the outgoing SMS (channel, delivery state) are applied after the join below;
    # read generously so that the limit still applies to what is shown.
    scan = filters.limit if filters.channel is None and _sms_state(filters) is None else 100_000
    rows = store.query(
        f"SELECT t.* FROM tasks t WHERE {' AND '.join(where)} ORDER BY t.id LIMIT ?",
        (*params, scan),
    )
    outgoing = _outgoing_for(store, [r["ref"] for r in rows])
    out = []
    for row in rows:
        sms = outgoing.get(row["ref"], {})
        item: dict[str, Any] = {
            "id": row["id"],
            "kind": row["kind"],
            "ref": row["ref"],
            "state": row["state"],
            "attempts": row["attempts"],
            "age_seconds": round(now - row["created_at"], 3),
            "due_in_seconds": (
                None if row["state"] == "dead" else round(row["not_before"] - now, 3)
            ),
            "error": row["dead_reason"] if row["state"] == "dead" else row["last_error"],
            "channel": sms.get("channel"),
            "sms_state": sms.get("state"),
            "to": _phone(sms.get("to"), reveal),
        }
        if reveal and "content" in sms:
            item["text"] = sms["content"]
        if filters.channel and item["channel"] != filters.channel:
            continue
        wanted = _sms_state(filters)
        if wanted and item["sms_state"] != wanted:
            continue
        out.append(item)
        if len(out) >= filters.limit:
            break
    return out


def _sms_state(filters: Filters) -> str | None:
    if filters.state and filters.state not in (*TASK_STATES, "waiting"):
        return filters.state
    return None


def _outgoing_for(store: Store, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """ref -> the outgoing SMS (channel, state, to, content) for refs that are outgoing SMS."""
    from smsbridge import outgoing

    return {
        ref: {"channel": sms.channel, "state": str(sms.state), "to": sms.to, "content": sms.content}
        for ref, sms in outgoing.by_refs(store, refs).items()
    }


def render_outbox(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["ID", "KIND", "STATE", "TRIES", "AGE", "DUE", "CHANNEL", "SMS", "TO", "ERROR"]
    table = [
        [
            r["id"],
            r["kind"],
            r["state"],
            r["attempts"],
            age_text(r["age_seconds"]),
            _due(r["due_in_seconds"]),
            r["channel"],
            r["sms_state"],
            r["to"],
            r["error"],
        ]
        for r in rows
    ]
    return render_table(headers, table) if rows else "no tasks"


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
        raise ConfigError("--limit must be positive")
    filters = Filters(
        state=args.state,
        channel=getattr(args, "channel", None),
        kind=getattr(args, "kind", None),
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
