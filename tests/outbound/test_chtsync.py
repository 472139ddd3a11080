"""The CHT sync loop against the CHT simulator over HTTP: status updates survive lost answers
without adding history entries in CHT. Time is passed in."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from smsbridge.cht.client import ChtClient
from smsbridge.chtsim import ChtSim
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound import reports
from smsbridge.outbound.chtsync import ChtSync
from smsbridge.sms import DeliveryState
from smsbridge.store import open_store

NOW = 1_800_000_000.0


def _advance(ref: str, *states: DeliveryState):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> None:
        for n, state in enumerate(states):
            message = outgoing.get_in(conn, ref)
            assert message is not None
            outgoing.advance_in(conn, message, state, NOW + 1 + n)

    return job


def test_updates_whose_answer_was_lost_are_not_replayed_into_chts_history(
    database: Path | str, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    message_id = sim.add_outgoing("+254712345678", "Your results are ready")

    async def play() -> None:
        async with ChtClient(url, ("admin", "pass"), timeout=10) as cht:
            with open_store(database) as store:
                sync = ChtSync(store, cht, interval=30, ttl=86400)
                await sync.step(NOW)  # the message arrives; its UNSENT ack is owed
                assert outgoing.get(store, message_id) is not None
                await sync.step(NOW + 0.5)  # acknowledged: received-by-gateway in CHT
                states = (DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.DELIVERED)
                await store.write(_advance(message_id, *states))
                # CHT applies the next exchange, but its answer never reaches us
                sim.faults.drop_next(1, path="/api/sms")
                await sync.step(NOW + 10)
                assert reports.owed_reports(store)  # not heard: still owed
                await sync.step(NOW + 100)  # retried after the pause
                assert not reports.owed_reports(store)

    asyncio.run(play())
    assert sim.states(message_id) == [
        "pending",
        "forwarded-to-gateway",
        "received-by-gateway",
        "forwarded-by-gateway",
        "sent",
        "delivered",
    ]


def test_superseded_keeps_the_newest_report_of_each_message() -> None:
    owed = [
        (1, {"id": "a", "status": "SENT"}),
        (2, {"id": "b", "status": "SENT"}),
        (3, {"id": "a", "status": "DELIVERED"}),
    ]
    assert reports.superseded(owed) == [1]


def test_a_cht_message_with_half_a_character_is_stored(database: Path | str) -> None:
    with open_store(database) as store:
        offered = [{"id": "m-half", "to": "+254712345678", "content": "Karibu \ud83d"}]
        new = store.write_sync(lambda c: outgoing.store_cht_messages_in(c, offered, NOW))
        message = outgoing.get(store, "m-half")
    assert new == 1 and message is not None
    assert message.content == "Karibu \ufffd"
