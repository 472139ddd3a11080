"""Sending in split mode: on a route with `split` (outbound/routing.py), an SMS too long for one
SMS goes as its standalone parts (segments.py `standalone_parts`; the parts themselves:
outbound/parts.py), one carrier send each, in order, with the part's own ref.

The parts are stored before the first is sent (one transaction, once per SMS: a resumed send
keeps the split it began with). Each part the carrier accepts is recorded at once, its id and
the reports that overtook its send response with it, in a transaction of its own: a part
accepted is an outcome. A part's failure ends the send there, and outbound/send.py treats it as
the SMS's (retry with backoff, the next channel, a throttle's pause, the ambiguity rules); the
next send goes on with the parts not yet accepted, never resending one the carrier took. Parts
go one at a time, so a send that got no answer (or a crash) leaves at most one part in doubt,
and the ambiguity rules hold for it as for any SMS: its report, matched by the part's ref or
the carrier's id, settles it (outbound/parts.py `reported_in`).

An SMS that began in parts ends in parts (were `split` taken off its route meanwhile, a
whole resend would repeat the parts sent); one on a route without `split`, or that fits one SMS,
is sent whole as before (no part rows, no extra transaction). Phones (`chtgateway`) get the
whole text: they split it themselves.

Rate limits count SMS: a split SMS books one slot per part still to send (`cost`). The parts
of one SMS share its send's time limit (outbound/send.py: within the task's lease); a send cut
short there leaves its part in doubt like any send that got no answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from smsbridge.outbound import delivery, parts
from smsbridge.outbound.messages import FINAL, Outgoing
from smsbridge.outbound.routing import channel_carrier
from smsbridge.segments import standalone_parts
from smsbridge.sms import DeliveryState, OutboundSms, SendResult
from smsbridge.store import Store

Write = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
Send = Callable[[OutboundSms], Awaitable[SendResult]]


def cost(store: Store, message: Outgoing, split: bool) -> int:
    """The SMS a send of `message` costs now (the rate limiter's count): its segments, or, on a
    split route, its parts not yet accepted."""
    known = _parts(store, message)
    if known:
        return max(1, sum(1 for part in known if not part.accepted))
    return len(standalone_parts(message.content)) if split else message.segments


async def send(
    store: Store,
    write: Write,
    carrier_send: Send,
    sms: OutboundSms,
    message: Outgoing,
    channel: str,
    now: float,
    *,
    split: bool,
) -> SendResult:
    """Send `sms` (the stored `message`, as the carrier is to get it) through `carrier_send`:
    whole, or with `split`, as its parts. `write(job)` commits a part's outcome (logging the
    SMS's state changes). Raises what the carrier raised for the part it failed on."""
    planned = await store.off_loop(lambda: _parts(store, message))
    if not planned:
        texts = standalone_parts(sms.content) if split else [sms.content]
        if len(texts) == 1:
            return await carrier_send(sms)
        planned = await store.write(lambda c: parts.plan_in(c, message, texts, now))
    carrier = channel_carrier(channel)
    for part in planned:
        if part.accepted or part.state is DeliveryState.FAILED:
            continue  # the carrier has it: never again
        result = await carrier_send(replace(sms, cht_id=part.ref, content=part.content))
        carrier = result.carrier
        state = await write(_accepted(part, channel, result, now))
        if state in FINAL:
            break  # a part failed meanwhile: the SMS has failed, the rest is not sent
    return SendResult(carrier, None, DeliveryState.SENT)


def _parts(store: Store, message: Outgoing) -> list[parts.Part]:
    """The parts `message` has stored (a short SMS has none: no read for it)."""
    if message.segments == 1:
        return []
    return parts.of(store, message.id)


def _accepted(
    part: parts.Part, channel: str, result: SendResult, now: float
) -> Callable[[sqlite3.Connection], DeliveryState | None]:
    """The write job of a part the carrier accepted; it returns the SMS's state."""

    def job(conn: sqlite3.Connection) -> DeliveryState | None:
        state = parts.accepted_in(
            conn, part, channel, result.carrier, result.external_id, result.state, now
        )
        early = delivery.early_in(conn, result.carrier, result.external_id, part.outgoing_id)
        for reported, reason in early:
            state = parts.advance_in(conn, part, reported, now, reason=reason)
        return state

    return job
