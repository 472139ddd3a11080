"""Vonage: inbound webhooks (GET or POST, form or JSON) -> stored messages, the optional `sig`
signature checked against Vonage's published vectors, sending through the carrier simulator and
its delivery reports, its send error codes (a throttle pauses the channel). Driven by
tests/carriers/harness.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from smsbridge.carriers import vonage
from smsbridge.carriers.base import CarrierConfig, WebhookRequest
from smsbridge.carriers.sending import failure
from smsbridge.carriersim import CarrierSim
from smsbridge.chtsim import ChtSim
from smsbridge.errors import AuthFailure, Forbidden, PeerError, PermanentError, RetryableError
from smsbridge.loopback import wait_for
from smsbridge.outbound.channels import is_throttle
from smsbridge.sms import DeliveryState, StatusUpdate
from tests.carriers.harness import Case, incoming_tests, query_request, send, sending_tests
from tests.conftest import RunningBridge
from tests.outbound.test_channels import _row as row  # `outbox ls --ref`'s row
from tests.outbound.test_e2e import e2e

# As Vonage sends them (developer.vonage.com/messaging/sms/guides/inbound-sms).
BASE = {
    "msisdn": "447700900001",
    "to": "447700900000",
    "messageId": "0A0000000123ABCD1",
    "text": "P 12 Jane",
    "type": "text",
    "keyword": "P",
    "api-key": "abcd1234",
    "message-timestamp": "2020-01-01 12:00:00",
}
STORED = [
    {
        "sender": "+447700900001",
        "text": "P 12 Jane",
        "external_id": "0A0000000123ABCD1",
        "received_at": 1577880000000,
    }
]

CASES = [
    Case("get-with-query", method="GET", params=BASE, status=204, stored=STORED),
    Case("post-form", data=BASE, status=204, stored=STORED),
    Case("post-json", json=BASE, status=204, stored=STORED),
    Case(
        "malformed JSON is 400",
        content=b"{not json",
        headers={"content-type": "application/json"},
        status=400,
        error="bad_request",
        stored=(),
    ),
]

TestIncoming = incoming_tests("vonage", CASES)


def test_long_sms_parts_are_joined_into_one_message(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("vonage")

    def part(n: int, text: str) -> dict[str, str]:
        return {**BASE, "messageId": f"part{n}", "text": text, "concat": "true",
                "concat-ref": "7", "concat-total": "3", "concat-part": str(n)}  # fmt: skip

    assert bridge.http.post(url, data=part(3, "of it.")).status_code == 204  # out of order
    assert bridge.http.post(url, data=part(1, "P 12 Jane, the first ")).status_code == 204
    assert bridge.http.post(url, data=part(1, "P 12 Jane, the first ")).status_code == 204
    assert bridge.messages() == []  # acknowledged and kept, but not a message yet
    assert bridge.http.post(url, data=part(2, "half and the rest ")).status_code == 204
    [row] = bridge.messages()
    assert row["text"] == "P 12 Jane, the first half and the rest of it."
    assert row["sender"] == "+447700900001"
    [task] = bridge.store.query("SELECT kind, ref FROM tasks WHERE kind = 'submit'")
    assert task["ref"] == row["uuid"]
    # a late retry of a part changes nothing
    assert bridge.http.post(url, data=part(2, "half and the rest ")).status_code == 204
    assert len(bridge.messages()) == 1


def test_duplicate_delivery_is_stored_once(bridge: RunningBridge) -> None:
    url = bridge.inbound_path("vonage")
    bridge.http.get(url, params=BASE).raise_for_status()
    bridge.http.post(url, data=BASE).raise_for_status()
    assert len(bridge.messages()) == 1


# Vonage's own SDK test vectors: params a=1, b=2, timestamp=1461605396, secret "secret".
VECTORS = [
    ("md5hash", "6af838ef94998832dbfc29020b564830"),
    ("md5", "c15c21ced558c93a226c305f58f902f2"),
    ("sha1", "3e19a4e6880fdc2c1426bfd0587c98b9532f0210"),
    ("sha256", "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24"),
    (
        "sha512",
        "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c63ed26ec9702"
        "168781b6edcf1633db8ff95af9341701004eec3fcf9550572ee8",
    ),
]


@pytest.mark.parametrize(("method", "expected"), VECTORS)
def test_signature_matches_vonage_vectors(method: str, expected: str) -> None:
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage.compute_signature(params, "secret", method) == expected
    assert vonage.compute_signature({**params, "sig": "x"}, "secret", method) == expected


def test_ampersands_and_equals_in_values_are_replaced() -> None:
    a = vonage.compute_signature({"text": "a&b=c", "timestamp": "1"}, "s")
    b = vonage.compute_signature({"text": "a_b_c", "timestamp": "1"}, "s")
    assert a == b


def test_signed_webhook_is_accepted_and_a_bad_sig_refused(
    bridge_factory: Callable[..., RunningBridge],
) -> None:
    bridge = bridge_factory(
        SMSBRIDGE_VONAGE_SIGNATURE_SECRET="secret", SMSBRIDGE_VONAGE_SIGNATURE_METHOD="sha256"
    )
    url = bridge.inbound_path("vonage")
    params = {**BASE, "timestamp": "1577880000", "nonce": "9d3b1a"}
    signed = {**params, "sig": vonage.compute_signature(params, "secret", "sha256")}
    assert bridge.http.get(url, params={**signed, "text": "P 99 Mallory"}).status_code == 403
    assert bridge.http.get(url, params=params).status_code == 403  # unsigned
    assert bridge.messages() == []
    assert bridge.http.get(url, params=signed).status_code == 204
    assert bridge.http.post(url, json=signed).status_code == 204  # JSON body, same signature
    assert len(bridge.messages()) == 1


def test_verify_is_skipped_without_a_secret() -> None:
    from datetime import UTC, datetime

    req = WebhookRequest.build(
        "GET", "http://x/", "/", {}, "msisdn=1&messageId=2", b"", datetime.now(UTC)
    )
    vonage.verify(req, CarrierConfig("vonage", {}))
    with pytest.raises(Forbidden):
        vonage.verify(req, CarrierConfig("vonage", {"signature_secret": "s"}))


# -- sending and delivery reports ----------------------------------------------------------------

STATUS_CASES = [
    (
        query_request(
            "msisdn=447700900000&to=MEDIC&messageId=0A01&status=delivered&err-code=0&client-ref=m1"
        ),
        StatusUpdate(
            "vonage", "0A01", DeliveryState.DELIVERED, carrier_status="delivered", ref="m1"
        ),
    ),
    (
        query_request("messageId=0A01&status=expired&err-code=1"),
        StatusUpdate(
            "vonage",
            "0A01",
            DeliveryState.FAILED,
            reason="expired (err-code 1)",
            carrier_status="expired",
        ),
    ),
    (query_request("messageId=0A01&status=unknown"), None),
]

TestSending = sending_tests(
    "vonage",
    bad_credentials={"api_secret": "wrong"},
    missing_settings=[
        ({"api_secret": ""}, "SMSBRIDGE_VONAGE_API_SECRET"),
        ({"sender": ""}, "SMSBRIDGE_VONAGE_SENDER"),
    ],
    status_cases=STATUS_CASES,
)


def test_sends_unicode_type_and_client_ref(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    send("vonage", carriers[1])
    [sent] = sim.sent_by("vonage")
    assert sent.to == "254712345678" and sent.ref == "ref-1"


def test_a_throttle_says_how_long_to_wait(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    sim.configure("vonage", throttle_wait=2.5)
    try:
        sim.fail_next("vonage", "throttle")
        with pytest.raises(RetryableError) as throttled:
            send("vonage", carriers[1])
    finally:
        sim.configure("vonage", throttle_wait=1.0)
    assert throttled.value.code == "vonage_1" and throttled.value.retry_after == 2.5
    assert is_throttle(throttled.value)  # the channel pauses, not only this SMS
    assert sim.sent_by("vonage") == []
    # a throttle that names no time (or zero) still waits a moment
    assert vonage.throttle_wait("Throttled") is None
    assert vonage.throttle_wait("please wait [ 0 ] and retry") == vonage.MIN_THROTTLE_WAIT


# Vonage's SMS API error codes (developer.vonage.com/messaging/sms/guides/troubleshooting-sms)
# -> what the bridge does with the SMS.
CODES: list[tuple[str, type[PeerError], bool]] = [
    ("1", RetryableError, True),  # Throttled: the channel pauses
    ("5", RetryableError, False),  # Internal error: this SMS again later
    ("10", RetryableError, False),  # Too many existing binds: back off
    ("2", PermanentError, False),  # Missing parameters
    ("3", PermanentError, False),  # Invalid parameters
    ("6", PermanentError, False),  # Invalid message
    ("7", PermanentError, False),  # Number barred
    ("12", PermanentError, False),  # Message too long
    ("15", PermanentError, False),  # Invalid sender address (another channel may carry it)
    ("29", PermanentError, False),  # Non-whitelisted destination
    ("33", PermanentError, False),  # Number de-activated
    ("4", AuthFailure, False),  # Invalid credentials
    ("8", AuthFailure, False),  # Partner account barred: suspended
    ("9", AuthFailure, False),  # Partner quota violation: no credit
    ("11", AuthFailure, False),  # Account not enabled for HTTP
    ("14", AuthFailure, False),  # Invalid signature
    ("23", AuthFailure, False),  # Invalid callback URL (ours, the same for every SMS)
    ("32", AuthFailure, False),  # Signature and API secret disallowed
]


@pytest.mark.parametrize(("code", "kind", "throttle"), CODES)
def test_send_error_codes_are_classified(code: str, kind: type[PeerError], throttle: bool) -> None:
    error = failure("vonage", code=code, detail="x", errors=vonage.ERRORS)
    assert type(error) is kind
    assert (isinstance(error, RetryableError) and is_throttle(error)) is throttle


def test_a_throttle_pauses_the_channel_for_the_time_vonage_names_then_sends(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=vonage") as world:
        world.carriers.configure("vonage", throttle_wait=30.0)  # "please wait [ 30000 ]"
        world.carriers.fail_next("vonage", "throttle")
        first = world.cht.add_outgoing("+254712345678", "Throttled one")
        wait_for(lambda: world.carriers.requests["vonage"] >= 1, what="the first attempt")
        wait_for(lambda: (row(world, first).get("due_in_seconds") or 0) > 0, what="first waits")
        second = world.cht.add_outgoing("+15005550006", "Throttled two")
        wait_for(lambda: (row(world, second).get("due_in_seconds") or 0) > 0, what="second waits")
        # the whole channel waits, as long as Vonage asked
        assert row(world, second)["channel_state"] == "paused 30s"
        world.clock.advance(5)  # a 1 s pause would be over
        wait_for(lambda: row(world, second)["channel_state"] == "paused 25s", what="still paused")
        assert world.carriers.requests["vonage"] == 1  # nothing else met the wall
        assert [row(world, ref)["attempts"] for ref in (first, second)] == [0, 0]
        world.clock.advance(26)  # the pause is over: both go
        for ref in (first, second):
            wait_for(lambda ref=ref: world.states(ref)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_count("254712345678", "Throttled one") == 1
        assert world.carriers.sent_count("15005550006", "Throttled two") == 1


LONG = "Your next ANC visit is on Monday at the health centre. " * 4  # 220 characters: 2 parts


def test_a_long_sms_vonage_took_in_part_is_failed_not_sent_again(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    """Vonage accepted part 1 of 2 and refused part 2 with a transient error (status 5): a
    retry (or a failover) would send the whole text again and the patient would get part 1
    twice. The SMS fails at once, its reason saying what Vonage took; nothing is sent again,
    however long we wait."""
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=vonage|twilio") as world:
        world.carriers.configure("vonage", refused_parts=(2,))
        ref = world.cht.add_outgoing("+254712345678", LONG)
        wait_for(lambda: world.states(ref)[-1] == "failed", what="failed in CHT")
        reason = world.cht.message(ref)["state_details"]["reason"]
        assert reason.startswith("vonage took 1 of 2 parts; part 2/2 refused: 5 Internal Error")
        assert world.bridge_state(ref) is DeliveryState.FAILED
        assert row(world, ref)["id"] is None  # no task: nothing of it left to send
        world.clock.advance(3600)  # any retry would be due by now
        [part] = world.carriers.sent_by("vonage")  # the handset got part 1, once
        assert LONG.startswith(part.text) and part.text != LONG
        assert world.carriers.sent_by("twilio") == []  # no failover either
        assert world.carriers.requests["vonage"] == 1
        assert world.states(ref).count("failed") == 1


def test_a_long_sms_vonage_took_whole_is_sent_and_one_refused_in_every_part_is_retried(
    carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    """Every part accepted: sent, named by the first part's id. Every part refused: nothing
    reached the phone, so the usual rules hold (status 5: this SMS again later)."""
    result = send("vonage", carriers[1], text=LONG)
    assert result.state is DeliveryState.SENT and result.reason is None
    assert [s.message_id for s in sim.sent_by("vonage")] == [result.external_id]
    sim.configure("vonage", refused_parts=(1, 2))
    with pytest.raises(RetryableError) as refused:
        send("vonage", carriers[1], text=LONG)
    assert refused.value.code == "vonage_5"
    assert len(sim.sent_by("vonage")) == 1  # only the first, whole send
