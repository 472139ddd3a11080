"""End to end: a route's `format` (SMSBRIDGE_ROUTES `?format=national`) decides how the carrier
gets the destination and the sender, whichever carrier sends; the SMS is still delivered in CHT
(delivery reports find it by our ref or the carrier's id, not by its number)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsbridge.chtsim import ChtSim
from smsbridge.loopback import wait_for
from tests.outbound.test_e2e import DELIVERED_HISTORY, e2e

CHW = "+254712345678"
SENDER = "+254700000001"


@pytest.mark.parametrize(
    ("number_format", "to", "sender"),
    [
        ("e164", "+254712345678", "+254700000001"),
        ("national", "0712345678", "0700000001"),
        ("digits", "254712345678", "254700000001"),
    ],
)
def test_the_generic_carrier_gets_both_numbers_in_the_routes_format(
    tmp_path: Path, chtsim: tuple[ChtSim, str], number_format: str, to: str, sender: str
) -> None:
    with e2e(
        tmp_path,
        chtsim,
        SMSBRIDGE_ROUTES=f"+254=generic?format={number_format};*=twilio",
        SMSBRIDGE_GENERIC_SENDER=SENDER,
    ) as world:
        message_id = world.cht.add_outgoing(CHW, "Clinic at nine")
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered in CHT")
        assert world.states(message_id) == DELIVERED_HISTORY
        (sent,) = world.carriers.sent_by("generic")
        assert (sent.to, sent.sender, sent.text) == (to, sender, "Clinic at nine")
        # another rule's SMS is untouched: E.164 to Twilio, its own sender as configured
        other_id = world.cht.add_outgoing("+15551234567", "Other route")
        wait_for(lambda: world.states(other_id)[-1] == "delivered", what="other delivered")
        (other,) = world.carriers.sent_by("twilio")
        assert (other.to, other.sender) == ("+15551234567", "+15017122661")


@pytest.mark.parametrize(
    ("carrier", "to", "sender"),
    [
        ("twilio", "0712345678", "0700000001"),  # its sender is SMSBRIDGE_TWILIO_FROM_NUMBER
        ("vonage", "0712345678", "MEDIC"),  # an alphanumeric sender id stays as it is
        ("africastalking", "0712345678", "0700000001"),
        ("kannel", "0712345678", "0700000001"),
        ("rapidpro", "0712345678", ""),  # RapidPro's channel has the sender: none is sent
    ],
)
def test_every_sending_carrier_gets_the_routes_format(
    tmp_path: Path, chtsim: tuple[ChtSim, str], carrier: str, to: str, sender: str
) -> None:
    senders = {
        "SMSBRIDGE_TWILIO_FROM_NUMBER": SENDER,
        "SMSBRIDGE_AFRICASTALKING_SENDER": SENDER,
        "SMSBRIDGE_KANNEL_SENDER": SENDER,
    }
    with e2e(
        tmp_path,
        chtsim,
        SMSBRIDGE_CARRIERS=f"{carrier},twilio",
        SMSBRIDGE_ROUTES=f"+254={carrier}?format=national;*=twilio",
        **senders,
    ) as world:
        message_id = world.cht.add_outgoing(CHW, "Clinic at ten")
        wait_for(lambda: world.carriers.sent_by(carrier), what=f"sent through {carrier}")
        (sent,) = world.carriers.sent_by(carrier)
        assert (sent.to, sent.sender) == (to, sender)
        wait_for(lambda: world.states(message_id)[-1] != "pending", what="reported to CHT")
        assert "failed" not in world.states(message_id)
