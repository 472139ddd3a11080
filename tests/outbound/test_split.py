"""Split mode (outbound/split.py, outbound/parts.py): on a route with `split`, a long SMS goes as
standalone `k/N ` SMS, one carrier send each, each part's state tracked, the SMS delivered when
every part is. The send side is driven on its own clock here (tests/outbound/test_send.py's
`world`); end to end through the simulators at the end."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from smsbridge.carriersim import CarrierSim
from smsbridge.chtsim import ChtSim
from smsbridge.cli import listings
from smsbridge.loopback import wait_for
from smsbridge.outbound import parts, reports
from smsbridge.outbound import split as splitmode
from smsbridge.segments import GSM7_EXTENSION, standalone_parts
from smsbridge.sms import DeliveryState, StatusUpdate
from tests.conftest import CRASHED, inject_crash
from tests.outbound.test_e2e import DELIVERED_HISTORY, TOKENS, e2e
from tests.outbound.test_send import KE, T0, World, refuse_putting_tasks_back, run, world

SPLIT = {"SMSBRIDGE_ROUTES": "*=generic?split"}
WORDS = "Habari Jane, ziara ya ANC ni kesho saa nne asubuhi katika kituo cha afya. "
LONG = (WORDS * 6)[:400]  # GSM-7, 400 septets: three standalone SMS
LABEL = re.compile(r"([0-9]+)/([0-9]+) ")


@pytest.fixture
def db(database: Path | str) -> dict[str, str]:
    """The module's database engine for `world` (SQLite, then PostgreSQL)."""
    return {"SMSBRIDGE_DATABASE": str(database)}


def sends(sim: CarrierSim) -> list[tuple[str | None, str]]:
    """(our ref, text) of each SMS the generic carrier accepted, in order."""
    return [(s.ref, s.text) for s in sim.sent_by("generic")]


def septets(text: str) -> int:
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def part_states(w: World, ref: str) -> list[DeliveryState]:
    return [p.state for p in parts.of(w.store, w.get(ref).id)]


async def report(w: World, ref: str, status: DeliveryState, external_id: str = "") -> int:
    """The generic carrier's delivery report naming our ref `ref` (its status webhook's step)."""
    update = StatusUpdate("generic", external_id, status, carrier_status=status.value, ref=ref)
    return await w.pipeline.delivery_reports([update], T0, carrier="generic")


def test_a_long_sms_on_a_split_route_goes_as_numbered_standalone_sms(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            await w.drain(T0)
            sent = sends(sim)
            assert [ref for ref, _text in sent] == ["m1.1", "m1.2", "m1.3"]
            texts = [text for _ref, text in sent]
            assert [t[:4] for t in texts] == ["1/3 ", "2/3 ", "3/3 "]
            assert all(septets(t) <= 160 for t in texts)
            assert "".join(LABEL.sub("", t, count=1) for t in texts) == LONG
            message = w.get("m1")
            assert message.state is DeliveryState.SENT and message.carrier == "generic"
            assert part_states(w, "m1") == [DeliveryState.SENT] * 3
            stored = parts.of(w.store, message.id)
            assert len({p.external_id for p in stored}) == 3  # each its own carrier id
            assert w.owed("m1") == [("UNSENT", None), ("PENDING", None), ("SENT", None)]
            assert await w.drain(T0 + 10_000) == 0 and len(sends(sim)) == 3  # never again

    run(body)


def test_a_long_sms_on_a_route_without_split_goes_whole(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        routes = "+255=generic?split;*=generic"
        async with world(tmp_path, carriers[1], **db, SMSBRIDGE_ROUTES=routes) as w:
            w.add("m1", content=LONG)  # to +254: the `*` rule, no split
            w.add("m2", to="+255712345678", content="Short enough")  # split route, one SMS
            await w.drain(T0)
            assert sorted(sends(sim)) == [("m1", LONG), ("m2", "Short enough")]
            assert parts.of(w.store, w.get("m1").id) == parts.of(w.store, w.get("m2").id) == []

    run(body)


def test_a_transient_failure_on_the_second_part_resends_only_that_part_and_the_rest(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "5xx", after=1)
            await w.drain(T0)
            assert [ref for ref, _ in sends(sim)] == ["m1.1"]
            assert w.get("m1").state is DeliveryState.SENDING  # a part has left
            assert part_states(w, "m1") == [DeliveryState.SENT] + [DeliveryState.QUEUED] * 2
            [task] = w.outbox.pending()
            await w.drain(task.not_before)  # the retry
            assert [ref for ref, _ in sends(sim)] == ["m1.1", "m1.2", "m1.3"]
            assert sim.requests["generic"] == 4  # 1, 2 (refused), 2, 3
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_an_sms_begun_in_parts_ends_in_parts_when_its_route_loses_split(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "5xx", after=1)
            await w.drain(T0)
            [task] = w.outbox.pending()
        # restarted with `split` taken off the route: the whole text would repeat part 1
        async with world(tmp_path, carriers[1], **db, SMSBRIDGE_ROUTES="*=generic") as w:
            await w.drain(task.not_before)
            assert [ref for ref, _ in sends(sim)] == ["m1.1", "m1.2", "m1.3"]
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_a_crash_after_two_parts_of_three_sends_only_the_third(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "5xx", after=2)
            lift = refuse_putting_tasks_back(w.store)  # the worker dies recording part 3's fate
            with pytest.raises(CRASHED, match="injected crash"):
                await w.pipeline.run_once(T0)
            lift()
            assert part_states(w, "m1") == [DeliveryState.SENT] * 2 + [DeliveryState.QUEUED]
            # the lease ran out with the attempt open: ambiguous, its report awaited
            await w.drain(T0 + w.pipeline.config.lease)
            assert w.get("m1").ambiguous_since == T0 and len(sends(sim)) == 2
            await w.drain(T0 + w.pipeline.config.ambiguous_grace)  # no report: resent
            assert [ref for ref, _ in sends(sim)] == ["m1.1", "m1.2", "m1.3"]
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_a_send_that_fails_before_calling_the_carrier_leaves_no_ambiguous_sms(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    """The database refuses the parts' plan (as after a failover), before any carrier call:
    the SMS was never sent, so when its task comes back it is sent at once, not held for a
    delivery report that cannot come (AMBIGUOUS_GRACE) and, with `fail`, failed."""

    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            lift = inject_crash(w.store, "outgoing_parts", "1 = 1", on="INSERT")
            with pytest.raises(CRASHED, match="injected crash"):
                await w.pipeline.run_once(T0)
            lift()
            assert sends(sim) == [] and w.get("m1").attempt_started_at is None
            await w.drain(T0 + w.pipeline.config.lease)  # the lease ran out: claimed again
            assert w.get("m1").ambiguous_since is None
            assert [ref for ref, _ in sends(sim)] == ["m1.1", "m1.2", "m1.3"]
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_an_sms_begun_in_parts_does_not_fail_over_to_a_phone(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    """Part 2 of 3 is refused for good: a phone, next on the route, would send the whole text
    and the recipient would read part 1 twice. The SMS fails instead."""

    async def body() -> None:
        routes = "*=generic|chtgateway?split"
        async with world(tmp_path, carriers[1], **db, SMSBRIDGE_ROUTES=routes) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "invalid_number", after=1)
            await w.drain(T0)
            message = w.get("m1")
            assert message.channel != "chtgateway" and message.state is DeliveryState.FAILED
            assert [ref for ref, _ in sends(sim)] == ["m1.1"]
            w.add("m2", content="Short enough")  # one part: its route's phone still takes it
            sim.fail_next("generic", "invalid_number")
            await w.drain(T0)
            assert w.get("m2").channel == "chtgateway"

    run(body)


def test_a_part_whose_send_went_unanswered_is_settled_by_its_report_and_not_resent(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        env = {**SPLIT, "SMSBRIDGE_SEND_TIMEOUT": "0.3"}
        async with world(tmp_path, carriers[1], **db, **env) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "5xx", after=1)
            await w.drain(T0)  # part 1 accepted, part 2 refused
            [task] = w.outbox.pending()
            sim.configure("generic", latency=0.8)  # part 2 taken, its answer too late
            await w.drain(task.not_before)
            sim.configure("generic", latency=0.0)
            since = w.get("m1").ambiguous_since
            assert since == task.not_before
            wait_for(lambda: len(sends(sim)) == 2, "part 2 reached the carrier")
            await w.drain(since + 60)  # within the grace period: nothing is sent
            assert len(sends(sim)) == 2
            assert await report(w, "m1.2", DeliveryState.SENT) == 1
            assert w.get("m1").ambiguous_since is None
            await w.drain(since + w.pipeline.config.ambiguous_grace)
            assert [ref for ref, _ in sends(sim)] == ["m1.1", "m1.2", "m1.3"]
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_the_sms_is_delivered_when_its_last_part_is_and_fails_when_a_part_fails(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            w.add("m2", content=LONG + " (2)")
            await w.drain(T0)
            for k in (3, 1):
                await report(w, f"m1.{k}", DeliveryState.DELIVERED)
                assert w.get("m1").state is DeliveryState.SENT
            await report(w, "m1.2", DeliveryState.DELIVERED)
            assert w.get("m1").state is DeliveryState.DELIVERED
            assert [s for s, _ in w.owed("m1")] == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
            # a part that failed: the SMS failed, saying which part; later reports move parts only
            await report(w, "m2.2", DeliveryState.FAILED)
            message = w.get("m2")
            assert message.state is DeliveryState.FAILED
            assert message.reason is not None and message.reason.startswith("part 2/3")
            await report(w, "m2.1", DeliveryState.DELIVERED)
            assert w.get("m2").state is DeliveryState.FAILED
            assert part_states(w, "m2") == [
                DeliveryState.DELIVERED,
                DeliveryState.FAILED,
                DeliveryState.SENT,
            ]

    run(body)


def test_a_part_failing_before_the_rest_are_sent_stops_the_rest(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            sim.fail_next("generic", "5xx", after=1)
            await w.drain(T0)  # part 1 accepted, part 2 to be retried
            await report(w, "m1.1", DeliveryState.FAILED)
            assert w.get("m1").state is DeliveryState.FAILED
            await w.drain(T0 + 3600)
            assert [ref for ref, _ in sends(sim)] == ["m1.1"]  # the rest is never sent
            assert w.outbox.pending() == []

    run(body)


def test_another_carriers_report_cannot_move_a_part(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            await w.drain(T0)
            forged = StatusUpdate("twilio", "", DeliveryState.FAILED, ref="m1.1")
            assert await w.pipeline.delivery_reports([forged], T0, carrier="twilio") == 0
            assert part_states(w, "m1") == [DeliveryState.SENT] * 3

    run(body)


def test_a_report_naming_a_part_by_the_carriers_id_alone_moves_that_part(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            await w.drain(T0)
            second = sim.sent_by("generic")[1]
            by_id = StatusUpdate("generic", second.message_id, DeliveryState.DELIVERED)
            assert await w.pipeline.delivery_reports([by_id], T0, carrier="generic") == 1
            assert part_states(w, "m1")[1] is DeliveryState.DELIVERED
            assert w.get("m1").state is DeliveryState.SENT

    run(body)


def test_rate_limits_count_each_part_still_to_send(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            text = "a" * 156 * 9 + "b"  # 10 standalone SMS, 10 concatenated segments too
            w.add("m1", content=text)
            message = w.get("m1")
            assert splitmode.cost(w.store, message, split=False) == message.segments == 10
            assert splitmode.cost(w.store, message, split=True) == 10
            sim.fail_next("generic", "5xx", after=4)
            await w.drain(T0)
            assert splitmode.cost(w.store, w.get("m1"), split=True) == 6
            w.add("m2", content="x" * 306)  # 2 concatenated segments, 2 standalone SMS
            assert splitmode.cost(w.store, w.get("m2"), split=True) == 2

    run(body)


def test_a_split_sms_books_a_rate_slot_per_part_not_per_concatenated_segment(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        env = {**SPLIT, "SMSBRIDGE_RATES": "generic=11/60"}
        async with world(tmp_path, carriers[1], **db, started=T0 - 3600, **env) as w:  # bucket full
            # 20-character words: each part ends at a word, 140 characters of text in it
            text = ("x" * 19 + " ") * 76 + "x" * 10
            assert len(standalone_parts(text)) == 11
            w.add("m1", content=text)
            assert w.get("m1").segments == 10  # as one concatenated SMS
            w.add("m2", content="Short one")
            await w.drain(T0)
            assert len(sends(sim)) == 11  # m1 took the minute's eleven slots
            [task] = w.outbox.pending()
            assert task.ref == "m2" and task.not_before > T0
            await w.drain(task.not_before)
            assert sends(sim)[-1] == ("m2", "Short one")

    run(body)


def test_outbox_ls_shows_the_parts_progress(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, db: dict[str, str]
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **db, **SPLIT) as w:
            w.add("m1", content=LONG)
            w.add("m2", content="Short one")
            await w.drain(T0)
            await report(w, "m1.1", DeliveryState.DELIVERED)
            rows = listings.outbox(w.store, listings.Filters(state="sent"), T0)
            assert {r["ref"]: r["parts"] for r in rows} == {
                "m1": "parts 3/3 sent, 1/3 delivered",
                "m2": None,
            }
            table = listings.render_outbox(rows)
            assert "sent (parts 3/3 sent, 1/3 delivered)" in table

    run(body)


# -- end to end: CHT simulator -> bridge -> carrier simulator -> delivery reports -> CHT ---------


def test_e2e_a_400_character_sms_reaches_the_carrier_as_three_sms_and_cht_hears_delivered(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **SPLIT) as world_:
        message_id = world_.cht.add_outgoing(KE, LONG)
        wait_for(lambda: world_.states(message_id)[-1] == "delivered", what="delivered in CHT")
        sent = world_.carriers.sent_by("generic")
        assert [s.ref for s in sent] == [f"{message_id}.{k}" for k in (1, 2, 3)]
        assert [s.text[:4] for s in sent] == ["1/3 ", "2/3 ", "3/3 "]
        assert all(septets(s.text) <= 160 for s in sent)
        assert [s.text for s in sent] == standalone_parts(LONG)
        wait_for(lambda: not reports.owed_reports(world_.store, 1), what="all reported")
        assert world_.states(message_id) == DELIVERED_HISTORY  # one entry per state


def test_e2e_cht_hears_delivered_only_after_the_last_parts_report(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **SPLIT) as world_:
        world_.carriers.configure("generic", reports=False)  # the test posts them, one by one
        message_id = world_.cht.add_outgoing(KE, LONG)
        wait_for(lambda: world_.states(message_id)[-1] == "sent", what="sent in CHT")
        sent = world_.carriers.sent_by("generic")
        assert len(sent) == 3
        status_url = f"{world_.url}/carriers/generic/{TOKENS['generic']}/status"
        with httpx.Client(timeout=10) as http:
            for sms in sent[:2]:  # the carrier's reports, as it posts them (by its id)
                posted = http.post(status_url, json={"id": sms.message_id, "status": "delivered"})
                assert posted.status_code == 200
            wait_for(lambda: not reports.owed_reports(world_.store, 1), what="synced")
            assert world_.bridge_state(message_id) is DeliveryState.SENT
            assert world_.states(message_id)[-1] == "sent"
            last = {"id": sent[2].message_id, "status": "delivered"}
            assert http.post(status_url, json=last).status_code == 200
        wait_for(lambda: world_.states(message_id)[-1] == "delivered", what="delivered in CHT")
        wait_for(lambda: not reports.owed_reports(world_.store, 1), what="all reported")
        assert world_.states(message_id) == DELIVERED_HISTORY


def test_e2e_a_transient_fault_on_the_second_part_retries_only_that_part(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, **SPLIT) as world_:
        world_.carriers.fail_next("generic", "5xx", after=1)
        message_id = world_.cht.add_outgoing(KE, LONG)
        wait_for(lambda: world_.carriers.requests["generic"] >= 2, what="part 2 refused")
        wait_for(lambda: world_.bridge_state(message_id) is DeliveryState.SENDING, what="retry")
        assert [s.ref for s in world_.carriers.sent_by("generic")] == [f"{message_id}.1"]
        world_.clock.advance(3600)  # the retry is due
        wait_for(lambda: world_.states(message_id)[-1] == "delivered", what="delivered in CHT")
        refs = world_.carriers.sends_per_ref("generic")
        assert refs == {f"{message_id}.{k}": 1 for k in (1, 2, 3)}  # part 1 never again


def test_e2e_reports_that_overtake_each_parts_send_response_are_applied_to_that_part(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    # Africa's Talking's reports name only its own id, which the send response tells us
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=africastalking?split") as world_:
        world_.carriers.configure("africastalking", report_first=True)
        message_id = world_.cht.add_outgoing(KE, LONG)
        wait_for(lambda: world_.states(message_id)[-1] == "delivered", what="delivered in CHT")
        assert [s.text[:4] for s in world_.carriers.sent_by("africastalking")] == [
            "1/3 ",
            "2/3 ",
            "3/3 ",
        ]
        wait_for(lambda: not reports.owed_reports(world_.store, 1), what="all reported")
        assert world_.states(message_id) == DELIVERED_HISTORY
