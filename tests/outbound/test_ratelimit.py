"""Replies first on a rate-limited carrier channel, with a share kept for the rest
(smsbridge/outbound/ratelimit.py `RateLimiter.book`): pure, time as an argument, in numbers."""

from __future__ import annotations

import itertools

import pytest

from smsbridge.carriers import load_settings
from smsbridge.errors import ConfigError
from smsbridge.outbound.ratelimit import REPLY_WAIT, Booking, RateLimiter, Ticket, parse_rates

MINUTE = "twilio=1/60"  # one segment a minute: a slot is 60 s


def full(spec: str = MINUTE, share: float = 0.2) -> RateLimiter:
    """A limiter whose buckets are full at 0 (started long before)."""
    return RateLimiter(parse_rates(spec), started=-100_000.0, share=share)


def go(limiter: RateLimiter, now: float, **kwargs: object) -> Booking:
    """Book one segment on twilio at `now`."""
    return limiter.book("twilio", 1, now, **kwargs)  # type: ignore[arg-type]


def test_other_sms_book_within_the_horizon_and_otherwise_take_a_place_in_line() -> None:
    limiter = full()
    assert go(limiter, 0.0, reply=False) == Booking(0.0)  # the bucket's token
    places = [go(limiter, 0.0, reply=False) for _ in range(3)]
    # nothing booked: each comes back when its slot, a minute apart, is within the horizon
    assert [p.at for p in places] == [60.0, 120.0, 180.0]
    tickets = [Ticket.parse(p.ticket) for p in places]
    assert [t.slot for t in tickets if t is not None] == [60.0, 120.0, 180.0]
    # within the horizon (the send worker waits that long) a slot is booked at once
    other = full()
    go(other, 0.0, reply=False)
    assert go(other, 0.0, reply=False, horizon=60.0) == Booking(60.0)
    assert go(other, 0.0, reply=False, horizon=60.0).ticket is not None  # 120: beyond it
    # its turn: the slot is booked (60 s after the first)
    assert go(limiter, 60.0, reply=False, memo=places[0].ticket) == Booking(60.0)
    assert go(limiter, 120.0, reply=False, memo=places[1].ticket) == Booking(120.0)


def test_a_reply_goes_before_the_line_and_the_line_moves_back_by_its_length() -> None:
    limiter = full()
    go(limiter, 0.0, reply=False)
    places = [go(limiter, 0.0, reply=False) for _ in range(10)]  # 10 minutes of the channel
    # a reply 31 s later gets the next slot, not one after the other ten
    assert go(limiter, 31.0, reply=True) == Booking(60.0)
    first = go(limiter, 60.0, reply=False, memo=places[0].ticket)
    assert first.ticket is not None and first.at == 120.0  # pushed back one slot, keeps its turn
    assert go(limiter, 120.0, reply=False, memo=first.ticket) == Booking(120.0)
    # the second's ticket says 120, the replies since moved it to 180
    second = go(limiter, 180.0, reply=False, memo=places[1].ticket)
    assert second == Booking(180.0)
    # new SMS queue behind the ten (moved back by the reply too): 60 + 11 slots
    assert go(limiter, 180.0, reply=False).at == 60.0 * 12


def test_replies_never_wait_behind_more_than_the_horizon_of_booked_slots() -> None:
    limiter = RateLimiter(parse_rates("twilio=1"), started=-100.0)  # 1/s, bucket of 1
    booked = [go(limiter, 0.0, reply=False, horizon=3.0) for _ in range(50)]
    assert [b.ticket is None for b in booked[:4]] == [True] * 4  # 0, 1, 2, 3 s: booked
    assert all(b.ticket is not None for b in booked[4:])  # the rest in line
    assert go(limiter, 0.5, reply=True, horizon=3.0).at == pytest.approx(4.0)


def test_the_line_keeps_its_order_and_every_slot_respects_the_rate() -> None:
    """Replies and bulk together, played forward second by second: no two slots closer than
    the rate allows, bulk leaves in the order it came, every SMS goes in the end."""
    limiter = full("twilio=1/10", share=0.5)
    waiting = [(f"b{i:02d}", None) for i in range(30)]  # (name, memo), claimed in this order
    due: dict[str, float] = {name: 0.0 for name, _ in waiting}
    sent: list[tuple[float, str]] = []
    for now in range(0, 2000):
        if now % 7 == 0 and now < 600:  # a reply every 7 s for 10 minutes
            name = f"r{now}"
            waiting.insert(0, (name, None))
            due[name] = float(now)
        still = []
        for name, memo in waiting:
            if due[name] > now:
                still.append((name, memo))
                continue
            booking = go(limiter, float(now), reply=name.startswith("r"), memo=memo)
            if booking.ticket is None and booking.at <= now + 1e-6:
                sent.append((float(now), name))
            elif booking.ticket is None:
                due[name] = booking.at
                still.append((name, "slot"))
            else:
                due[name] = booking.at
                still.append((name, booking.ticket))
        waiting = [(n, m) for n, m in still if m != "slot"] + [
            (n, m) for n, m in still if m == "slot"
        ]
        for name, memo in list(waiting):  # a booked slot that came: sent, no second booking
            if memo == "slot" and due[name] <= now:
                sent.append((float(now), name))
                waiting.remove((name, memo))
    times = [t for t, _ in sent]
    assert all(b - a >= 10 - 1e-6 for a, b in itertools.pairwise(times))
    bulk = [name for _, name in sent if name.startswith("b")]
    assert bulk == sorted(bulk) and len(bulk) == 30
    replies = [name for _, name in sent if name.startswith("r")]
    assert len(replies) == len([n for n in due if n.startswith("r")])
    # in the first 10 minutes bulk kept at least about half the channel (share 0.5)
    early = [name for t, name in sent if t < 600]
    assert sum(n.startswith("b") for n in early) >= 25


def test_replies_beyond_their_budget_wait_for_it_and_the_rest_keeps_its_share() -> None:
    limiter = full(share=0.5)  # replies: at most half a slot a minute once their bucket is spent
    go(limiter, 0.0, reply=False)
    places = [go(limiter, 0.0, reply=False) for _ in range(5)]
    assert go(limiter, 1.0, reply=True) == Booking(60.0)  # the reply budget's full bucket
    waits = go(limiter, 1.0, reply=True)
    # the budget refills at half the rate: the second reply waits for it (2 minutes)
    assert waits == Booking(121.0, REPLY_WAIT)
    # back then, it books a slot at once (its budget is spent): behind what is booked
    assert go(limiter, 121.0, reply=True, memo=REPLY_WAIT) == Booking(121.0)
    # the line lost one slot per reply, no more
    assert go(limiter, 60.0, reply=False, memo=places[0].ticket).at == 180.0


def test_a_ticket_from_another_process_is_void() -> None:
    before = full()
    go(before, 0.0, reply=False)
    old = go(before, 0.0, reply=False)
    after = RateLimiter(parse_rates(MINUTE), started=1000.0)
    # a fresh line: the restarted limiter's empty bucket decides, not the old promise (60)
    assert go(after, 1000.0, reply=False, memo=old.ticket).at == 1060.0
    assert Ticket.parse("slot") is None and Ticket.parse("line 1 2") is None
    assert Ticket.parse("line nan 0 0") is None


def test_an_unlimited_channel_books_nothing() -> None:
    limiter = full()
    assert limiter.book("vonage", 5, 7.0, reply=False) == Booking(7.0)


def test_the_share_is_a_part_of_the_whole() -> None:
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ConfigError):
            RateLimiter({}, started=0.0, share=bad)
    assert load_settings({}).bulk_share == 0.2
    assert load_settings({"SMSBRIDGE_BULK_SHARE": "0.5"}).bulk_share == 0.5
    for text in ("1", "-0.1", "half", "nan"):
        with pytest.raises(ConfigError, match="SMSBRIDGE_BULK_SHARE"):
            load_settings({"SMSBRIDGE_BULK_SHARE": text})
