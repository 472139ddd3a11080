"""Replies first on a rate-limited carrier channel (outbound/ratelimit.py `RateLimiter.book`,
wired in outbound/send.py): the service's own send pipeline against the carrier simulator,
driven by `now`."""

from __future__ import annotations

from pathlib import Path

from smsbridge.carriersim import CarrierSim
from tests.outbound.test_lanes import inbound_from, offer
from tests.outbound.test_send import KE, T0, World, run, world

SLOW = {"SMSBRIDGE_RATES": "twilio=1/60", "SMSBRIDGE_REPLY_LEAD": "3600"}  # one SMS a minute


def sent_to(sim: CarrierSim) -> list[str]:
    """The numbers twilio accepted an SMS for, in order."""
    return [sms.to for sms in sim.sent_by("twilio")]


async def run_until(w: World, start: float, end: float, step: float = 10.0) -> None:
    now = start
    while now <= end:
        await w.drain(now)
        now += step


def test_a_reply_goes_before_bulk_already_waiting_for_a_slot(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body() -> None:
        async with world(tmp_path, carriers[1], started=T0 - 3600, **SLOW) as w:
            bulk = [f"+2547000005{i:02d}" for i in range(10)]
            for i, to in enumerate(bulk):  # scheduled reminders: ten minutes of the channel
                await offer(w, f"r{i:02d}", to, T0)
            await w.drain(T0)  # every one claimed: the first sent, the rest wait for a slot
            assert sent_to(sim) == bulk[:1]
            # a health worker's report gets an error reply from CHT half a minute later
            await inbound_from(w, KE, T0 + 30)
            await offer(w, "err", KE, T0 + 31, content="Unknown form")
            await w.drain(T0 + 31)
            assert sent_to(sim) == bulk[:1]  # the minute's SMS is spent
            await w.drain(T0 + 60)
            assert sent_to(sim) == [bulk[0], KE]  # the reply takes the next slot
            await run_until(w, T0 + 70, T0 + 660)
            # and the reminders follow in their order, one a minute, none lost
            assert sent_to(sim) == [bulk[0], KE, *bulk[1:]]

    run(body)


def test_a_stream_of_replies_goes_first_and_leaves_bulk_its_share(
    tmp_path: Path, carriers: tuple[CarrierSim, str], sim: CarrierSim
) -> None:
    async def body(share: str) -> tuple[int, int]:
        """Bulk and replies sent in the first half hour, under SMSBRIDGE_BULK_SHARE=`share`."""
        sim.sends.clear()
        async with world(
            tmp_path / share, carriers[1], started=T0 - 3600, SMSBRIDGE_BULK_SHARE=share, **SLOW
        ) as w:
            bulk = [f"+2547000006{i:02d}" for i in range(40)]  # 40 minutes of the channel
            for i, to in enumerate(bulk):
                await offer(w, f"b{i:02d}", to, T0)
            # for half an hour, two replies a minute: twice what the channel can send
            replies = []
            for step in range(180):
                now = T0 + 10 * step
                if step % 3 == 0:
                    replies.append(f"+2547999{step:05d}")
                    await inbound_from(w, replies[-1], now)
                    await offer(w, f"re{step}", replies[-1], now, content="Unknown form")
                await w.drain(now)
            sent = sent_to(sim)
            assert len(sent) <= 31  # the rate: one a minute (and the bucket's one)
            assert [to for to in sent if to in bulk] == bulk[: sum(to in bulk for to in sent)]
            return sum(to in bulk for to in sent), sum(to in replies for to in sent)

    (tmp_path / "0.5").mkdir()
    (tmp_path / "0").mkdir()
    bulk, replies = run(lambda: body("0.5"))
    assert bulk >= 13 and replies >= 13  # replies first, but bulk keeps its half of the channel
    bulk, replies = run(lambda: body("0"))
    assert bulk <= 2 and replies >= 28  # no share kept: replies take the channel
