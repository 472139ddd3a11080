"""The delivery states of carriers that report none (RapidPro) read back by the service's
periodic poll (smsbridge/outbound/statuspoll.py): CHT simulator -> bridge (workers on) -> the
RapidPro simulator (smsbridge/carriersim/rapidpro.py), whose messages API the bridge reads until
the SMS is delivered or failed, and CHT hears it."""

from __future__ import annotations

from pathlib import Path

from smsbridge.chtsim import ChtSim
from smsbridge.loopback import wait_for
from smsbridge.outbound import delivery
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState
from tests.outbound.test_e2e import DELIVERED_HISTORY, E2E, e2e

RAPIDPRO = {
    "SMSBRIDGE_CARRIERS": "rapidpro",
    "SMSBRIDGE_ROUTES": "*=rapidpro",
    "SMSBRIDGE_STATUS_POLL_INTERVAL": "0.05",
}
TO = "+254712345678"


def sent_through_rapidpro(world: E2E, text: str) -> tuple[str, str]:
    """A message seeded in CHT, sent as a RapidPro broadcast: (CHT's id, the broadcast's id)."""
    message_id = world.cht.add_outgoing(TO, text)
    wait_for(lambda: world.bridge_state(message_id) is DeliveryState.SENT, what="sent")
    message = outgoing.get(world.store, message_id)
    assert message is not None and message.carrier == "rapidpro" and message.external_id
    return message_id, message.external_id


def test_a_rapidpro_message_is_polled_until_delivered_and_cht_hears_it(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **RAPIDPRO) as world:
        world.carriers.configure("rapidpro", reports=False)  # RapidPro keeps it queued
        message_id, broadcast = sent_through_rapidpro(world, "Visit the clinic")
        wait_for(lambda: world.states(message_id)[-1] == "sent", what="sent in CHT")
        polls = world.carriers.requests["rapidpro_messages"]
        wait_for(lambda: world.carriers.requests["rapidpro_messages"] >= polls + 3, what="polls")
        assert world.bridge_state(message_id) is DeliveryState.SENT
        # asking again and again about a state it has stores nothing
        row = outgoing.get(world.store, message_id)
        assert row is not None and delivery.reports_for(world.store, row.id) == []

        world.carriers.configure("rapidpro", reports=True)  # queued, wired, sent, delivered
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered in CHT")
        assert world.states(message_id) == DELIVERED_HISTORY
        assert world.bridge_state(message_id) is DeliveryState.DELIVERED
        [(_, state, status, _, external_id)] = delivery.reports_for(world.store, row.id)
        assert (state, status, external_id) == ("delivered", "delivered", broadcast)
        assert world.carriers.sent_count(TO, "Visit the clinic") == 1


def test_a_rapidpro_failure_read_back_fails_the_message_in_cht(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **RAPIDPRO) as world:
        world.carriers.configure("rapidpro", final="failed")
        message_id, _ = sent_through_rapidpro(world, "Unreachable")
        wait_for(lambda: world.states(message_id)[-1] == "failed", what="failed in CHT")
        message = outgoing.get(world.store, message_id)
        assert message is not None and message.reason == "rapidpro: failed"


def test_messages_sent_longer_ago_than_the_ttl_are_no_longer_asked_about(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **RAPIDPRO, SMSBRIDGE_MESSAGE_TTL="3600") as world:
        world.carriers.configure("rapidpro", reports=False)
        old_id, old_broadcast = sent_through_rapidpro(world, "Sent long ago")
        world.clock.advance(3601)
        new_id, _ = sent_through_rapidpro(world, "Sent just now")
        world.carriers.configure("rapidpro", reports=True)  # each read moves a broadcast on
        wait_for(lambda: world.states(new_id)[-1] == "delivered", what="delivered in CHT")
        # the rounds that delivered the new one never read the old one
        assert world.carriers.rapidpro_broadcasts[int(old_broadcast)].status == "queued"
        assert world.bridge_state(old_id) is DeliveryState.SENT
