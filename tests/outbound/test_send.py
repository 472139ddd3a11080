"""The outbound steps against the carrier simulator, driven by `now` (no sleeping)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smsbridge import tasks
from smsbridge.carriers import chtgateway, load_settings
from smsbridge.carriersim import CarrierSim, bridge_env
from smsbridge.outbound import delivery, reports, transitions
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.messages import SEND
from smsbridge.outbound.send import OutboundPipeline
from smsbridge.service import Service, build_service
from smsbridge.sms import DeliveryState, StatusUpdate
from smsbridge.store import Store, open_store
from smsbridge.tasks import TaskQueue
from tests.conftest import CRASHED, inject_crash, new_database

T0 = 1_700_000_000.0
KE = "+254712345678"


@dataclass
class World:
    store: Store
    outbox: TaskQueue
    pipeline: OutboundPipeline
    service: Service

    def add(self, ref: str, to: str = KE, content: str = "Visit tomorrow", now: float = T0) -> None:
        self.store.write_sync(
            lambda c: outgoing.store_cht_messages_in(
                c, [{"id": ref, "to": to, "content": content}], now
            )
        )

    def get(self, ref: str) -> outgoing.Outgoing:
        message = outgoing.get(self.store, ref)
        assert message is not None
        return message

    def owed(self, ref: str) -> list[tuple[str, str | None]]:
        return [
            (u["status"], u.get("reason"))
            for _i, u in reports.owed_reports(self.store, 1000)
            if u["id"] == ref
        ]

    async def drain(self, now: float) -> int:
        n = 0
        while await self.pipeline.run_once(now):
            n += 1
        return n


@asynccontextmanager
async def world(
    tmp_path: Path, url: str, *, started: float = T0, **env: str
) -> AsyncIterator[World]:
    """The send side of a service built at `started` (its rate buckets are empty then)."""
    values = {
        "SMSBRIDGE_CARRIERS": "africastalking,twilio,vonage,generic,chtgateway",
        "SMSBRIDGE_DATABASE": str(new_database(tmp_path, "out.db")),
        "SMSBRIDGE_ROUTES": "*=twilio",
        "SMSBRIDGE_SEND_TIMEOUT": "10",
        **bridge_env(url),
        **env,
    }
    settings = load_settings({"SMSBRIDGE_MAX_ATTEMPTS": "5", **values})
    store = open_store(settings.database)
    # the service's own wiring, only its send pipeline driven (by the test, on its clock); the
    # send side never calls CHT, so there is none
    service = build_service(
        settings, store, None, clock=lambda: started, rng=random.Random(7), hold=0
    )
    try:
        yield World(store, service.tasks, service.outbound, service)
    finally:
        await service.stop()
        store.close()


def run(test: Callable[[], Any]) -> Any:
    return asyncio.run(test())


def test_cht_message_is_sent_once_and_each_state_owed_once(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            w.add("m1")
            w.add("m1")  # CHT offers it again: still one message
            assert w.owed("m1") == [("UNSENT", None)]
            assert await w.drain(T0) == 1
            assert sim.sent_count(KE, "Visit tomorrow") == 1
            message = w.get("m1")
            assert message.state is DeliveryState.SENT and message.carrier == "twilio"
            assert message.external_id and message.external_id.startswith("SM")
            assert w.owed("m1") == [("UNSENT", None), ("PENDING", None), ("SENT", None)]
            assert await w.drain(T0 + 10_000) == 0  # nothing left to do: never sent again
            assert sim.sent_count(KE) == 1

    run(body)


def test_a_send_slower_than_its_lease_is_cut_short_and_not_sent_twice_at_once(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    from smsbridge.loopback import wait_for
    from tests.fakeclock import FakeClock

    clock = FakeClock(T0)  # the event loop's time too: the send is cut short when it moves

    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_LEASE_SECONDS="0.5") as w:
            w.add("m1")
            sim.configure("twilio", timeout_seconds=1.0)
            sim.fail_next("twilio", "slow")  # the carrier takes 1 s, then sends it
            asked = sim.requests["twilio"] + 1
            first = asyncio.create_task(w.pipeline.run_once(clock()))

            def reached() -> bool:
                return sim.requests["twilio"] >= asked

            await asyncio.to_thread(wait_for, reached, "the send to reach the carrier")
            clock.advance(0.6)  # meanwhile the lease (0.5 s) has run out
            assert await first is True
            # another worker: the first one gave the task back (retry later), nothing to claim
            assert await w.pipeline.run_once(clock()) is False
            assert sim.requests["twilio"] == asked  # one send request, never a second one
            assert sim.sent_count(KE) <= 1
            assert w.get("m1").state is DeliveryState.SENDING  # its answer was not heard

    try:
        with asyncio.Runner(loop_factory=clock.event_loop) as runner:
            runner.run(body())
    finally:
        sim.configure("twilio", timeout_seconds=2.0)


def test_carrier_outage_is_retried_with_backoff_and_sent_once(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            w.add("m1")
            sim.outage("twilio", "5xx")
            assert await w.drain(T0) == 1
            assert w.get("m1").state is DeliveryState.SENDING
            assert await w.drain(T0 + 1) == 0  # the retry is not due yet
            assert await w.drain(T0 + 10) == 1  # due (5 s base, jitter), still failing
            sim.outage("twilio", None)
            sim.fail_next("twilio", "throttle")
            await w.drain(T0 + 100)
            await w.drain(T0 + 1000)
            assert w.get("m1").state is DeliveryState.SENT
            assert sim.sent_count(KE) == 1
            assert [s for s, _r in w.owed("m1")] == ["UNSENT", "PENDING", "SENT"]

    run(body)


def test_permanent_failure_hands_message_to_failover_channel(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(
            tmp_path, carriers[1], SMSBRIDGE_ROUTES="+254=africastalking|vonage;*=twilio"
        ) as w:
            w.add("m1")
            sim.fail_next("africastalking", "invalid_number")
            await w.drain(T0)
            message = w.get("m1")
            assert message.state is DeliveryState.SENT and message.channel == "vonage"
            assert len(sim.sent_by("africastalking")) == 0
            assert [s.to for s in sim.sent_by("vonage")] == ["254712345678"]

    run(body)


def test_permanent_failure_on_last_channel_fails_with_reason(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            sim.invalid_numbers.add(KE)
            w.add("m1")
            await w.drain(T0)
            message = w.get("m1")
            assert message.state is DeliveryState.FAILED
            assert message.reason is not None and "21211" in message.reason
            assert w.owed("m1")[-1][0] == "FAILED"
            assert w.outbox.dead_letters() == []

    run(body)


def test_a_carrier_without_its_sending_credentials_is_never_tried(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        routes = "+254=africastalking|twilio;*=africastalking"
        env = {"SMSBRIDGE_ROUTES": routes, "SMSBRIDGE_AFRICASTALKING_API_KEY": ""}
        async with world(tmp_path, carriers[1], **env) as w:
            before = sim.requests["africastalking"]
            w.add("m1")  # the route has a next channel: it goes there at once
            w.add("m2", to="+256712345678")  # AT is the only channel: failed, saying why
            assert await w.drain(T0) == 3  # m1 twice (AT refused, then twilio), m2 once
            assert sim.requests["africastalking"] == before  # no request without a key
            m1, m2 = w.get("m1"), w.get("m2")
            assert m1.state is DeliveryState.SENT and m1.channel == "twilio"
            assert m2.state is DeliveryState.FAILED and m2.reason is not None
            assert "SMSBRIDGE_AFRICASTALKING_API_KEY is empty" in m2.reason
            assert w.owed("m2") == [("UNSENT", None), ("FAILED", m2.reason)]
            assert w.outbox.dead_letters() == [] and w.outbox.pending() == []

    run(body)


def test_a_held_sms_that_fails_is_logged_as_coming_from_held(
    tmp_path: Path,
    carriers: tuple[CarrierSim, str],
    sim: CarrierSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_LOOP_LIMIT="1") as w:
            for ref in ("m1", "m2", "m3"):
                w.add(ref, content="Same again")
            await w.drain(T0)
            assert [h.ref for h in outgoing.held(w.store)] == ["m2", "m3"]
            caplog.clear()
            assert outgoing.drop_held(w.store, "m2", T0 + 1)
            await transitions.write(
                w.store, lambda c: outgoing.expire_stale_in(c, T0 + 90_000, 86_400)
            )
            failed = [r.getMessage() for r in caplog.records if "outgoing_failed" in r.getMessage()]
            assert len(failed) == 2 and all("previous=held" in line for line in failed), failed

    run(body)


def test_expired_message_fails_and_is_never_sent(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_MESSAGE_TTL="3600") as w:
            w.add("m1")
            sim.outage("twilio", "5xx")
            await w.drain(T0)  # one failed attempt
            sim.outage("twilio", None)
            w.add("m2", now=T0)
            await w.drain(T0 + 3600)
            for ref in ("m1", "m2"):
                assert w.get(ref).state is DeliveryState.FAILED
                assert w.get(ref).reason == "expired"
            assert sim.sent_count(KE) == 0
            assert w.owed("m2") == [("UNSENT", None), ("FAILED", "expired")]

    run(body)


def test_loop_guard_holds_repeated_text_and_operator_can_release(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_LOOP_LIMIT="3") as w:
            for i in range(5):
                w.add(f"m{i}", content="Your report was not understood")
            await w.drain(T0)
            assert sim.sent_count(KE, "Your report was not understood") == 3
            held = outgoing.held(w.store)
            assert [h.ref for h in held] == ["m3", "m4"]
            assert {h.reason for h in held} == {"loop"}
            assert outgoing.release_held(w.store, "m3", T0 + 1)
            assert outgoing.drop_held(w.store, "m4", T0 + 1)
            await w.drain(T0 + 1)
            assert sim.sent_count(KE) == 4
            assert w.get("m4").state is DeliveryState.FAILED
            # a different text to the same number is not held
            w.add("other", content="Something else")
            await w.drain(T0 + 2)
            assert w.get("other").state is DeliveryState.SENT

    run(body)


def test_inbound_burst_stops_automatic_replies(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_AUTOREPLY_BURST="5") as w:
            now_ms = int(T0 * 1000)

            def burst(conn: Any) -> None:
                for i in range(6):
                    conn.execute(
                        "INSERT INTO messages(uuid, carrier, sender, text, received_at, "
                        "accepted_at, state) VALUES (?, 'twilio', ?, 'auto', ?, ?, 'received')",
                        (f"in{i}", KE, now_ms, now_ms),
                    )

            w.store.write_sync(burst)
            w.store.write_sync(lambda c: outgoing.reply_in(c, KE, "Thanks", "in0", T0))
            w.add("m1", to="+254700000001")
            await w.drain(T0 + 1)
            assert sim.sent_count(KE) == 0
            assert [h.reason for h in outgoing.held(w.store)] == ["autoreply-burst"]
            assert sim.sent_count("+254700000001") == 1
            # bridge replies are not reported to CHT
            assert all(u["id"] != "in0" for _i, u in reports.owed_reports(w.store, 100))

    run(body)


def test_rate_limit_books_slots_in_segments(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        # started an hour ago: the bucket is full
        async with world(tmp_path, carriers[1], started=T0 - 3600, SMSBRIDGE_RATES="twilio=2") as w:
            for i in range(6):
                w.add(f"m{i}", to=f"+2547000000{i:02d}", content="x" * 200)  # 2 segments each
            assert w.get("m0").segments == 2
            await w.drain(T0)
            assert len(sim.sent_by("twilio")) == 1  # bucket of 2 segments: one message
            slots = sorted(t.not_before for t in w.outbox.pending())
            assert slots == pytest.approx([T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5])
            for second in (1, 2, 2.5):  # each slot when it comes: a 2-segment SMS a second
                await w.drain(T0 + second)
            assert len(sim.sent_by("twilio")) == 3
            for second in (3, 4, 5):
                await w.drain(T0 + second)
            assert len(sim.sent_by("twilio")) == 6

    run(body)


def test_delivery_reports_are_forward_only_and_kept_until_matched(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            w.add("m1")
            w.add("m2")
            early = StatusUpdate(
                "twilio", "SMearly", DeliveryState.DELIVERED, carrier_status="delivered"
            )
            assert await w.pipeline.delivery_reports([early], T0) == 0  # unknown id: kept

            def accepted(conn: Any) -> None:
                delivery.accepted_in(
                    conn, "m1", "twilio", "twilio", "SMearly", DeliveryState.SENT, T0
                )

            w.store.write_sync(accepted)
            assert w.get("m1").state is DeliveryState.DELIVERED
            assert [s for s, _ in w.owed("m1")] == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
            late = StatusUpdate("twilio", "SMearly", DeliveryState.SENT)
            again = StatusUpdate("twilio", "SMearly", DeliveryState.DELIVERED)
            assert await w.pipeline.delivery_reports([late, again], T0) == 2
            assert w.get("m1").state is DeliveryState.DELIVERED
            assert [s for s, _ in w.owed("m1")] == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
            # matched by our ref (Vonage client-ref) before the carrier id is known: m2 was
            # handed to Vonage (a send tried there)
            w.store.write_sync(lambda c: delivery.tried_in(c, "m2", "vonage", T0))
            by_ref = StatusUpdate(
                "vonage", "0A01", DeliveryState.FAILED, reason="expired (err-code 1)", ref="m2"
            )
            assert await w.pipeline.delivery_reports([by_ref], T0) == 1
            assert w.get("m2").state is DeliveryState.FAILED
            assert w.owed("m2")[-1] == ("FAILED", "expired (err-code 1)")

    run(body)


def test_gateway_phone_gets_its_messages_and_reports_states(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(
            tmp_path,
            carriers[1],
            started=T0 - 3600,
            SMSBRIDGE_ROUTES="+254=chtgateway|twilio",
            SMSBRIDGE_RATES="chtgateway=2/60",
        ) as w:
            for i in range(3):
                w.add(f"m{i}", to=f"+25470000000{i}")
            await w.drain(T0)
            assert sim.sent_count("+254700000000") == 0
            empty = chtgateway.Exchange([], [])
            handed = await w.pipeline.phone_exchange("phone1", empty, T0)
            assert [m[0] for m in handed] == ["m0", "m1"]  # rate: 2 per minute
            # each phone has its own bucket (Android's limit is per phone)
            assert [m[0] for m in await w.pipeline.phone_exchange("phone2", empty, T0)] == ["m2"]
            w.add("m3", to="+254700000003")
            await w.drain(T0)
            assert await w.pipeline.phone_exchange("phone1", empty, T0) == []  # rate spent
            # a minute later phone1 is offered m0 again (no status heard yet) and m3
            again = await w.pipeline.phone_exchange("phone1", empty, T0 + 60)
            assert [m[0] for m in again] == ["m0", "m1"]
            ups = [
                chtgateway.PhoneUpdate("m0", s, chtgateway.STATUS_MAP[s], None)
                for s in ("UNSENT", "PENDING", "SENT", "DELIVERED")
            ]
            ups.append(
                chtgateway.PhoneUpdate("m1", "FAILED", DeliveryState.FAILED, "generic; errorCode=1")
            )
            await w.pipeline.phone_exchange("phone1", chtgateway.Exchange([], ups), T0 + 1)
            assert w.get("m0").state is DeliveryState.DELIVERED
            assert [s for s, _ in w.owed("m0")] == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
            # m1's send task (waiting for the TTL) is due now; no second task for one SMS
            [(m1_tasks,)] = w.store.query(
                "SELECT COUNT(*) FROM tasks WHERE kind = ? AND ref = 'm1'", (SEND,)
            )
            assert m1_tasks == 1
            # the phone failed m1: handed to the route's next channel
            await w.drain(T0 + 1)
            assert w.get("m1").state is DeliveryState.SENT and w.get("m1").channel == "twilio"
            assert sim.sent_count("+254700000001") == 1
            # m2 (phone2 never confirmed it) and m3 (no phone took it): expired at the TTL
            await w.drain(T0 + 86_400)
            for ref in ("m2", "m3"):
                assert w.get(ref).state is DeliveryState.FAILED and w.get(ref).reason == "expired"
            assert w.get("m0").state is DeliveryState.DELIVERED

    run(body)


def test_dead_letters_can_be_retried_or_dropped(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            w.add("m1")
            w.add("m2", to="+254700000002")
            sim.outage("twilio", "5xx")
            now = T0
            for _ in range(6):  # max_attempts is 5 in this world
                await w.drain(now)
                now += 4000
            dead = {t.ref: t for t in w.outbox.dead_letters()}
            assert set(dead) == {"m1", "m2"}
            assert w.get("m1").state is DeliveryState.SENDING  # not final: an operator decides
            sim.outage("twilio", None)
            assert w.outbox.retry_dead(dead["m1"].id, now)
            assert w.outbox.drop(dead["m2"].id)
            await w.drain(now)
            assert w.get("m1").state is DeliveryState.SENT
            assert sim.sent_count(KE) == 1
            w.store.write_sync(lambda c: outgoing.expire_stale_in(c, now, 86_400))
            assert w.get("m2").state is DeliveryState.FAILED and w.get("m2").reason == "dropped"
            assert sim.sent_count("+254700000002") == 0

    run(body)


# -- one outcome, one transaction: the database refuses the outcome's task write (a trigger, as a
# crash between two commits would); whatever the step did to the SMS must not stay without it


def refuse_putting_tasks_back(store: Store) -> Callable[[], None]:
    """Until the returned function is called, putting a leased task back (retry or release)
    fails in the database; returns that function (it lifts the fault)."""
    return inject_crash(store, "tasks", "OLD.state = 'leased' AND NEW.state = 'ready'")


def test_choosing_the_next_channel_and_releasing_the_task_are_one_transaction(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        routes = "+254=africastalking|vonage;*=twilio"
        async with world(tmp_path, carriers[1], SMSBRIDGE_ROUTES=routes) as w:
            w.add("m1")
            sim.fail_next("africastalking", "invalid_number", times=2)
            lift = refuse_putting_tasks_back(w.store)
            with pytest.raises(CRASHED, match="injected crash"):
                await w.pipeline.run_once(T0)
            # not "moved to vonage" with its task still held by the failed attempt
            assert w.get("m1").channel is None
            [task] = w.outbox.pending()
            assert task.state == "leased" and task.attempts == 1
            lift()
            # the lease ran out; the first attempt's outcome is unknown (ambiguous): its
            # report is awaited for the grace period, then it is tried again
            await w.drain(T0 + w.pipeline.config.lease)
            assert w.get("m1").ambiguous_since == T0 and w.get("m1").state is DeliveryState.QUEUED
            await w.drain(T0 + w.pipeline.config.ambiguous_grace)
            message = w.get("m1")
            assert message.state is DeliveryState.SENT and message.channel == "vonage"
            assert len(sim.sent_by("africastalking")) == 0 and len(sim.sent_by("vonage")) == 1
            assert w.outbox.pending() == [] and w.outbox.dead_letters() == []

    run(body)


def test_noting_a_failed_send_and_scheduling_its_retry_are_one_transaction(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1]) as w:
            w.add("m1")
            sim.outage("twilio", "5xx")
            lift = refuse_putting_tasks_back(w.store)
            with pytest.raises(CRASHED, match="injected crash"):
                await w.pipeline.run_once(T0)
            # not "sending" (and PENDING owed to CHT) with no retry scheduled
            assert w.get("m1").state is DeliveryState.QUEUED
            assert w.owed("m1") == [("UNSENT", None)]
            [task] = w.outbox.pending()
            assert task.state == "leased" and task.last_error is None
            lift()
            # the lease ran out, the outcome unknown: awaited for the grace period, tried again
            await w.drain(T0 + w.pipeline.config.lease)
            assert w.get("m1").state is DeliveryState.QUEUED
            await w.drain(T0 + w.pipeline.config.ambiguous_grace)
            assert w.get("m1").state is DeliveryState.SENDING
            [task] = w.outbox.pending()
            assert task.state == "ready" and task.last_error is not None
            sim.outage("twilio", None)
            await w.drain(task.not_before)
            assert w.get("m1").state is DeliveryState.SENT and sim.sent_count(KE) == 1
            assert [status for status, _reason in w.owed("m1")] == ["UNSENT", "PENDING", "SENT"]

    run(body)


def test_send_claims_walk_the_due_index_and_expired_leases_come_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "claim.db")
    try:
        plan = " ".join(
            str(tuple(r))
            for r in store.query("EXPLAIN QUERY PLAN " + tasks.LANE_FIRST_SQL, ("send", -1.0))
        )
        assert "tasks_lane" in plan and "SCAN" not in plan and "TEMP B-TREE" not in plan
        for ref in ("a", "b"):
            store.write_sync(lambda c, r=ref: outgoing.insert_in(c, r, KE, "x " + r, T0))

        def claim(now: float) -> Any:
            return store.write_sync(lambda c: tasks.claim_in(c, [SEND], now, 60, order="due"))

        first, second = claim(T0), claim(T0)
        assert first is not None and second is not None
        assert (first.ref, second.ref) == ("a", "b")
        assert claim(T0 + 59) is None
        again = claim(T0 + 61)  # a worker died
        assert again is not None and again.ref == "a" and again.attempts == 2
    finally:
        store.close()
