"""End to end, channel health and where an SMS goes (smsbridge/outbound/channels.py,
smsbridge/outbound/send.py): the circuit breaker, the channel-wide throttle pause, the sticky
reply channel and destinations that are not phone numbers. Faults come from the carrier
simulator; time moves on the bridge's fake clock."""

from __future__ import annotations

from pathlib import Path

import httpx

from smsbridge.chtsim import ChtSim
from smsbridge.cli.listings import Filters, outbox
from smsbridge.loopback import wait_for
from smsbridge.outbound import channels
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.send import NOT_ROUTABLE
from smsbridge.store import open_store
from tests.outbound.test_e2e import DELIVERED_HISTORY, E2E, e2e

ALICE = "+254712345678"
BOB = "+15005550006"


def _channel_open(world: E2E, channel: str) -> float | None:
    text = httpx.get(f"{world.url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'smsbridge_channel_open{{channel="{channel}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def _readiness_channels(world: E2E) -> dict[str, object]:
    body = httpx.get(f"{world.url}/readyz", timeout=5).json()
    checks: dict[str, dict[str, object]] = body["checks"]
    return checks["channels"]


def _row(world: E2E, ref: str) -> dict[str, object]:
    """`outbox ls --ref REF`'s row ({} before the bridge has the SMS)."""
    rows = outbox(world.store, Filters(ref=ref), world.clock())
    assert len(rows) <= 1
    return rows[0] if rows else {}


def test_a_failing_channel_opens_and_its_sms_fail_over_at_once_until_a_probe_closes_it(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(
        tmp_path,
        chtsim,
        SMSBRIDGE_ROUTES="+1=generic;*=generic|twilio",
        SMSBRIDGE_CHANNEL_FAILURES="2",
        SMSBRIDGE_CHANNEL_FAILURE_WINDOW="3600",
        SMSBRIDGE_CHANNEL_OPEN_SECONDS="600",
    ) as world:
        assert _channel_open(world, "generic") == 0.0  # exported at 0 from the start
        assert _channel_open(world, "twilio") == 0.0
        world.carriers.outage("generic", "5xx")
        first = world.cht.add_outgoing(ALICE, "Breaker one")
        wait_for(lambda: world.carriers.requests["generic"] >= 1, what="first attempt")
        # its outcome committed (else the clock moves before the retry is scheduled from it)
        wait_for(lambda: (_row(world, first).get("due_in_seconds") or 0) > 0, what="retry set")
        world.clock.advance(120)  # its retry is due: the second failure opens generic
        wait_for(lambda: world.states(first)[-1] == "delivered", what="failed over, delivered")
        assert world.carriers.requests["generic"] == 2  # no third try on the sick channel
        assert len(world.carriers.sent_by("twilio")) == 1
        assert _channel_open(world, "generic") == 1.0
        wait_for(lambda: "generic: open" in str(_readiness_channels(world).get("detail")))
        assert _readiness_channels(world)["ok"] is True  # reported, readiness not failed

        # while open, new SMS skip generic at once; one with no other channel waits for the probe
        second = world.cht.add_outgoing(ALICE, "Breaker two")
        stuck = world.cht.add_outgoing(BOB, "Breaker three")
        wait_for(lambda: world.states(second)[-1] == "delivered", what="second via twilio")
        wait_for(lambda: (_row(world, stuck).get("due_in_seconds") or 0) > 0, what="stuck waits")
        assert world.carriers.requests["generic"] == 2
        assert _row(world, stuck)["channel"] == "generic"
        assert _row(world, stuck)["channel_state"] == "open"
        assert _row(world, stuck)["attempts"] == 0

        # generic heals; after SMSBRIDGE_CHANNEL_OPEN_SECONDS one probe goes and closes it
        world.carriers.outage("generic", None)
        world.clock.advance(601)
        wait_for(lambda: world.states(stuck)[-1] == "delivered", what="the probe delivered")
        assert world.states(stuck) == DELIVERED_HISTORY
        assert _channel_open(world, "generic") == 0.0
        assert channels.load(world.store, "generic").opened_at is None
        third = world.cht.add_outgoing(ALICE, "Breaker four")
        wait_for(lambda: world.states(third)[-1] == "delivered", what="generic again")
        assert world.carriers.sent_count(ALICE, "Breaker four") == 1
        assert [s.text for s in world.carriers.sent_by("generic")] == [
            "Breaker three",
            "Breaker four",
        ]


def test_a_throttle_answer_pauses_the_whole_channel_without_counting_attempts(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=generic") as world:
        world.carriers.fail_next("generic", "throttle")  # 429 with Retry-After: 1
        first = world.cht.add_outgoing(ALICE, "Throttled one")
        wait_for(lambda: world.carriers.requests["generic"] >= 1, what="first attempt")
        wait_for(lambda: (_row(world, first).get("due_in_seconds") or 0) > 0, what="first waits")
        second = world.cht.add_outgoing(BOB, "Throttled two")
        wait_for(lambda: (_row(world, second).get("due_in_seconds") or 0) > 0, what="second waits")
        assert world.carriers.requests["generic"] == 1  # the second never met the wall
        assert _row(world, second)["channel_state"] == "paused 1s"
        for ref in (first, second):
            assert _row(world, ref)["attempts"] == 0
        wait_for(lambda: "generic: paused" in str(_readiness_channels(world).get("detail")))

        world.clock.advance(2)  # the pause is over
        for ref in (first, second):
            wait_for(lambda ref=ref: world.states(ref)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_count(ALICE, "Throttled one") == 1
        assert world.carriers.sent_count(BOB, "Throttled two") == 1


def test_a_reply_leaves_on_the_channel_its_number_wrote_in_on(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=twilio", SMSBRIDGE_REPLY_WINDOW="600") as world:
        inbound = f"{world.url}/carriers/generic/gn-tok/inbound"
        response = httpx.post(inbound, data={"from": ALICE, "text": "hello"}, timeout=5)
        assert response.status_code == 200
        reply = world.cht.add_outgoing(ALICE, "Sticky reply")
        other = world.cht.add_outgoing(BOB, "Not a reply")
        for ref in (reply, other):
            wait_for(lambda ref=ref: world.states(ref)[-1] == "delivered", what="delivered")
        assert [s.text for s in world.carriers.sent_by("generic")] == ["Sticky reply"]
        assert [s.text for s in world.carriers.sent_by("twilio")] == ["Not a reply"]

        world.clock.advance(601)  # no longer a reply: the routes decide again
        later = world.cht.add_outgoing(ALICE, "Later")
        wait_for(lambda: world.states(later)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_count(ALICE, "Later") == 1
        assert [s.text for s in world.carriers.sent_by("twilio")] == ["Not a reply", "Later"]


def test_chts_reply_to_a_sender_written_nationally_leaves_on_its_channel_in_the_reply_lane(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    """Kannel and many gateways write the sender nationally (`0712345678`); CHT files the report
    under, and replies to, `+254712345678` (its `default_country_code` 254): the bridge stores
    the sender as CHT keeps it, so the reply is known for one."""
    chtsim[0].install_demo()  # default_country_code 254; Alice's phone; a reply to `P`
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=twilio") as world:
        wait_for(
            lambda: httpx.get(f"{world.url}/readyz", timeout=5).json()["checks"]["forms"]["ok"],
            what="CHT's settings fetched",
        )
        inbound = f"{world.url}/carriers/generic/gn-tok/inbound"
        sms = {"from": "0712345678", "text": "P 12 Jane", "id": "gw-national-1"}
        assert httpx.post(inbound, data=sms, timeout=5).status_code == 200
        wait_for(lambda: world.cht.messages(), what="CHT's reply queued")
        [reply] = world.cht.messages()
        assert reply["to"] == ALICE
        wait_for(lambda: world.states(reply["id"])[-1] == "delivered", what="reply delivered")
        # on the channel the report came in on, not the route's twilio
        assert [(s.to, s.text) for s in world.carriers.sent_by("generic")] == [
            (ALICE, reply["content"])
        ]
        assert world.carriers.sent_by("twilio") == []
        sent = outgoing.get(world.store, reply["id"])
        assert sent is not None and sent.lead > 0  # in the replies' lane
        [record] = world.cht.records()
        assert record["from"] == ALICE and record["form"] == "P"
        [stored] = world.store.query("SELECT sender FROM messages")
        assert stored[0] == ALICE


def test_a_sender_that_is_no_phone_number_is_stored_as_the_carrier_wrote_it(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    chtsim[0].set_settings({"default_country_code": 254}, merge=True)
    with e2e(tmp_path, chtsim) as world:
        wait_for(
            lambda: httpx.get(f"{world.url}/readyz", timeout=5).json()["checks"]["forms"]["ok"],
            what="CHT's settings fetched",
        )
        inbound = f"{world.url}/carriers/generic/gn-tok/inbound"
        for sender in ("MPESA", "40404", "0712 345 678"):
            response = httpx.post(inbound, data={"from": sender, "text": "hello"}, timeout=5)
            assert response.status_code == 200
        stored = [r[0] for r in world.store.query("SELECT sender FROM messages ORDER BY id")]
        assert stored == ["MPESA", "40404", ALICE]


def test_reply_channel_routes_leaves_replies_to_the_routes(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(
        tmp_path, chtsim, SMSBRIDGE_ROUTES="*=twilio", SMSBRIDGE_REPLY_CHANNEL="routes"
    ) as world:
        inbound = f"{world.url}/carriers/generic/gn-tok/inbound"
        assert httpx.post(inbound, data={"from": ALICE, "text": "hi"}, timeout=5).is_success
        reply = world.cht.add_outgoing(ALICE, "By the routes")
        wait_for(lambda: world.states(reply)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_by("generic") == []


def test_a_destination_that_is_not_a_phone_number_fails_at_once_with_its_reason(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim) as world:
        message_id = world.cht.add_outgoing("abc", "To a sender id")
        wait_for(lambda: world.states(message_id)[-1] == "failed", what="failed in CHT")
        assert world.cht.message(message_id)["state_details"] == {"reason": NOT_ROUTABLE}
        assert world.states(message_id).count("failed") == 1
        assert sum(world.carriers.requests.values()) == 0  # no carrier ever saw it


def test_an_open_or_paused_channel_stays_so_across_a_restart(database: Path | str) -> None:
    policy = channels.ChannelPolicy(failures=2, window=60, open_seconds=300, throttle_max=600)
    with open_store(database) as store:
        before = channels.Channels(store, policy)
        assert before.failed("generic", 1000.0) is None
        opened = before.failed("generic", 1010.0)
        assert opened is not None
        paused = before.throttled("twilio", 5000.0, 1010.0)  # bounded by throttle_max
        assert paused.paused_until == 1610.0
        for state in (opened, paused):
            store.write_sync(lambda c, state=state: channels.save_in(c, state, 1010.0))
        after = channels.Channels(store, policy)  # a new process, the same database
        assert after.verdict("generic", 1020.0) is channels.Verdict.OPEN
        assert after.verdict("twilio", 1020.0) is channels.Verdict.PAUSED
        assert after.report(["generic", "twilio"], 1020.0) == {
            "generic": "open",
            "twilio": "paused 590s",
        }
        assert after.verdict("generic", 1310.0) is channels.Verdict.PROBE  # half-open: one
        assert after.verdict("generic", 1311.0) is channels.Verdict.OPEN
        assert after.worked("generic", 1312.0) is not None
        assert after.verdict("generic", 1313.0) is channels.Verdict.GO
