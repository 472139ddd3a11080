"""Replies before bulk (outbound/messages.py `Lanes`), phone sends that end with the phone's report
(outbound/phones.py), and rate buckets across a restart (outbound/ratelimit.py): the service's
own wiring against the carrier simulator, driven by `now`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from smsbridge import tasks
from smsbridge.carriers import chtgateway
from smsbridge.carriersim import CarrierSim
from smsbridge.outbound.messages import SEND
from smsbridge.sms import DeliveryState, InboundSms
from smsbridge.web.metrics import StoreCollector
from tests.outbound.test_send import KE, T0, World, run, world

PHONE_ROUTES = {"SMSBRIDGE_ROUTES": "+254=chtgateway", "SMSBRIDGE_REPLY_CHANNEL": "routes"}


async def offer(w: World, ref: str, to: str, now: float, content: str = "Reminder") -> None:
    """CHT hands over a message to send (as on an /api/sms exchange)."""
    await w.service.sync.store_offered([{"id": ref, "to": to, "content": content}], now)


async def inbound_from(w: World, sender: str, now: float) -> None:
    """An SMS from `sender` comes in (a report, say)."""
    sms = InboundSms("twilio", f"in-{sender}-{now}", sender, "P 12 Jane", datetime.now(UTC))
    await w.service.accept([sms], now)


async def poll(w: World, phone: str, now: float, sent: list[str]) -> list[str]:
    """A phone's poll: it reports SENT for `sent` and gets the ids it is to send."""
    updates = [chtgateway.PhoneUpdate(ref, "SENT", DeliveryState.SENT, None) for ref in sent]
    handed = await w.pipeline.phone_exchange(phone, chtgateway.Exchange([], updates), now)
    return [ref for ref, _to, _content in handed]


def test_a_reply_goes_before_scheduled_reminders_on_a_slow_phone_and_bulk_still_moves(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(
            tmp_path,
            carriers[1],
            started=T0 - 3600,
            SMSBRIDGE_RATES="chtgateway=1/60",  # one SMS a minute
            SMSBRIDGE_REPLY_LEAD="600",
            **PHONE_ROUTES,
        ) as w:
            for i in range(20):  # a batch of scheduled reminders: 20 minutes of the phone
                await offer(w, f"r{i:02d}", f"+2547000001{i:02d}", T0)
            await w.drain(T0)
            assert await poll(w, "p1", T0, []) == ["r00"]
            # a health worker's report gets an error reply from CHT
            await inbound_from(w, KE, T0 + 30)
            await offer(w, "err", KE, T0 + 31, content="Unknown form")
            await w.drain(T0 + 31)
            assert w.get("err").lead == 600 and w.get("r01").lead == 0
            assert await poll(w, "p1", T0 + 31, ["r00"]) == []  # the minute's SMS is spent
            assert await poll(w, "p1", T0 + 60, []) == ["err"]  # the reply is sent next
            assert await poll(w, "p1", T0 + 120, ["err"]) == ["r01"]
            # replies never hold the rest back more than the lead: reminders due more than
            # 600 s before a reply still go first
            await inbound_from(w, "+254799999999", T0 + 900)
            await offer(w, "late", "+254799999999", T0 + 900, content="Unknown form")
            await w.drain(T0 + 900)
            assert await poll(w, "p1", T0 + 900, ["r01"]) == ["r02"]
            # an SMS to a number that has not written lately is no reply
            await offer(w, "news", "+254711111111", T0 + 901)
            assert w.get("news").lead == 0

    run(body)


def test_replies_are_claimed_first_from_the_send_queue_within_the_lead(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], SMSBRIDGE_REPLY_LEAD="600") as w:
            for i in range(3):
                await offer(w, f"b{i}", f"+2547000002{i:02d}", T0)
            await inbound_from(w, KE, T0 + 5)
            await offer(w, "reply", KE, T0 + 10)

            def claim(now: float) -> str:
                task = w.store.write_sync(
                    lambda c: tasks.claim_in(c, [SEND], now, 3600, order="due")
                )
                assert task is not None
                return task.ref

            assert claim(T0 + 10) == "reply"
            assert [claim(T0 + 10) for _ in range(3)] == ["b0", "b1", "b2"]
            # bulk due longer than the lead before a reply goes first
            await offer(w, "b3", "+254700000300", T0 + 20)
            await inbound_from(w, "+254799999999", T0 + 700)
            await offer(w, "reply2", "+254799999999", T0 + 700)
            assert [claim(T0 + 700), claim(T0 + 700)] == ["b3", "reply2"]

    run(body)


def send_queue(w: World, now: float) -> tuple[float, float]:
    """smsbridge_queue_depth and smsbridge_queue_oldest_age_seconds for kind="send"."""
    found: dict[str, float] = {}
    for family in StoreCollector(w.store, lambda: now).collect():
        for sample in family.samples:
            if sample.labels.get("kind") == SEND:
                found[sample.name] = sample.value
    return found["smsbridge_queue_depth"], found["smsbridge_queue_oldest_age_seconds"]


def test_a_phone_send_finishes_when_the_phone_reports_and_the_queue_counts_only_waiting(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], **PHONE_ROUTES) as w:
            await offer(w, "m0", "+254700000000", T0)
            await offer(w, "m1", "+254700000001", T0)
            await w.drain(T0)
            assert await poll(w, "p1", T0, []) == ["m0", "m1"]
            assert send_queue(w, T0) == (2, 0)
            ups = [
                chtgateway.PhoneUpdate("m0", "DELIVERED", DeliveryState.DELIVERED, None),
                chtgateway.PhoneUpdate("m1", "FAILED", DeliveryState.FAILED, "generic"),
            ]
            await w.pipeline.phone_exchange("p1", chtgateway.Exchange([], ups), T0 + 10)
            assert w.get("m0").state is DeliveryState.DELIVERED
            assert w.get("m1").state is DeliveryState.FAILED
            # final states: their send tasks ended in the same exchange, not at the 24 h TTL
            assert w.outbox.pending() == []
            await offer(w, "m2", "+254700000002", T0 + 100)  # no phone has taken it yet
            await w.drain(T0 + 100)
            # only m2 is waiting; the queue's age is its age, not m0's
            assert send_queue(w, T0 + 3600) == (1, 3500)
            assert await poll(w, "p2", T0 + 3600, []) == ["m2"]
            assert await poll(w, "p2", T0 + 3601, ["m2"]) == []
            assert send_queue(w, T0 + 3602) == (0, 0)  # the phone has it and reports on it
            assert w.get("m2").state is DeliveryState.SENT
            assert await w.drain(T0 + 86_400) == 0  # no send task left to wake at the TTL

    run(body)


def test_a_restart_with_a_backlog_sends_no_faster_than_the_rate(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim, backend: str
) -> None:
    rate = {"SMSBRIDGE_RATES": "twilio=5"}

    async def body() -> None:
        async with world(tmp_path, carriers[1], started=T0 - 3600, **rate) as w:
            for i in range(20):
                await offer(w, f"a{i:02d}", f"+2547000003{i:02d}", T0)
            await w.drain(T0)  # a full bucket: 5 at once, the rest booked 0.2 s apart
            assert len(sim.sent_by("twilio")) == 5
        restart = T0 + 0.5
        async with world(tmp_path, carriers[1], started=restart, **rate) as w:
            for i in range(20):  # and more arrives at once
                await offer(w, f"b{i:02d}", f"+2547000004{i:02d}", restart)
            before = len(sim.sent_by("twilio"))
            for step in range(20):  # the first second after the restart
                await w.drain(restart + step * 0.05)
            first_second = len(sim.sent_by("twilio")) - before
            # the rate: no full bucket, no slots booked twice. On PostgreSQL the bucket is the
            # database's (outbound/ratebuckets.py): it outlived the restart, empty since T0
            most = 5 if backend == "sqlite" else int(5 * (restart + 1 - T0))
            assert 4 <= first_second <= most
            for step in range(20, 200):
                await w.drain(restart + step * 0.05)
            assert len(sim.sent_by("twilio")) == 40  # everything went, in the end

    run(body)
