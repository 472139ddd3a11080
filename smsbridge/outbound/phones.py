"""cht-gateway phones, the bridge's side: apply a phone's status updates and choose the SMS to
hand it in a poll response (carriers/chtgateway.py speaks the protocol; outbound.py calls these
inside one write job each).

A message routed to `chtgateway` goes to the first phone that polls and is then that phone's
(`chtgateway:<user>`); one routed to `chtgateway:<user>` only to that phone. Like CHT, it is
offered again until the phone reports a status for it. Once a phone reports on it, its send
task is over (the phone has it: its later states come in its polls); a phone's FAILED hands it
to the route's next channel when there is one, with a send task due at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smsbridge import tasks
from smsbridge.carriers import chtgateway
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.messages import SEND
from smsbridge.outbound.ratelimit import RateLimiter
from smsbridge.outbound.routing import Routes
from smsbridge.sms import DeliveryState


def updates_in(
    conn: sqlite3.Connection,
    routes: Routes,
    user: str,
    updates: Sequence[chtgateway.PhoneUpdate],
    now: float,
) -> None:
    mine = chtgateway.channel_names(user)
    for update in updates:
        message = outgoing.get_in(conn, update.id)
        if message is None or message.channel not in mine:
            continue  # not ours, or no longer routed to this phone (failed over)
        message = outgoing.route_in(
            conn, message, phone_ack=True, carrier=chtgateway.NAME, external_id=update.id
        )
        if update.state is DeliveryState.FAILED and message.channel:
            following = routes.next_channel(message.to, message.channel)
            if following is not None and message.state not in outgoing.FINAL:
                outgoing.move_to_channel_in(conn, message, following, now)
                # its send task (if still there) is due now, or a new one
                tasks.enqueue_or_expedite_in(conn, SEND, message.ref, now, lead=message.lead)
                continue
        if update.state is not None:
            outgoing.advance_in(conn, message, update.state, now, reason=update.reason)
        # the phone has it and reports on it: its send task (waiting for the TTL, send.py
        # `_await_phone`) is over, in this transaction, so the queue depth counts only SMS
        # still waiting for a phone
        tasks.finish_in(conn, SEND, message.ref)


def hand_out_in(
    conn: sqlite3.Connection,
    limiter: RateLimiter,
    user: str,
    now: float,
    *,
    ttl: float,
    batch: int,
) -> list[tuple[str, str, str]]:
    """(id, to, content) of the SMS for this phone now: queued, routed to it or to any phone,
    not yet confirmed by a phone, younger than the TTL; at most `batch`, within its rate."""
    own, shared = chtgateway.channel_names(user)
    out = []
    for message in outgoing.for_phones_in(conn, (own, shared), now - ttl, batch):
        if not limiter.try_take(own, message.segments, now):
            break
        if message.channel == shared:  # the first phone to take it keeps it
            outgoing.route_in(conn, message, channel=own)
        out.append((message.ref, message.to, message.content))
    return out
