"""Per-channel send rates, counted in SMS segments: one token bucket per channel, and on it
replies before the rest (a lane), with a share of the rate kept for the rest.

Format of `SMSBRIDGE_RATES` (comma-separated): `<channel>=<segments>[/<seconds>]`, e.g.
`twilio=1,africastalking=20,chtgateway=30/1800` (Twilio long code 1 segment/s; Android's
30 SMS per 30 minutes). A channel without a rate is not limited. The bucket holds at most one
period's worth (`segments`), so a channel idle for a while may send that many at once.
Time is an argument: `now` is passed in (seconds, any monotonic origin).

A restart starts every bucket EMPTY, refilling from the moment the limiter was built
(`RateLimiter(rates, started=now)`): what the channel sent just before the restart (or a
`kill -9`) is unknown to the new process, and only an empty bucket cannot burst past the
carrier's window. Persisting the buckets instead would cost a write per send on the hot path,
and would still lose the sends a crash interrupted. The price: right after a restart a channel
ramps up from zero (the first SMS waits `seconds / segments`, e.g. 60 s on a 30/1800 phone).
Rate slots booked by the previous process (send tasks carrying the `slot` memo of
outbound/send.py) are forgotten at start-up (`tasks.forget_memo_in`, from service.py): those
tasks book again with the new buckets when they come due; a place in line (`Ticket`) names the
process that gave it and is void in another one.

**Replies first on a carrier channel** (`RateLimiter.book`, used by outbound/send.py). A slot is
booked at most `horizon` seconds ahead (the send worker waits that long for it). Other SMS
(scheduled, bulk) further from a slot are not booked: each gets a place in the channel's line,
a `Ticket` naming the slot it would have, and comes back for it then. A reply books its slot
straight away (behind the few slots already booked, at most `horizon` of them, and earlier
replies) and so goes ahead of everything in line; every place in line moves back by the
reply's length (`jumped`, so a ticket coming back learns how far it was pushed and keeps its
order). Replies jump the line only within their budget, a second bucket refilled at
`1 - share` of the channel's rate: beyond it a reply waits for its budget (its own place, in
the replies' line), so the rest keeps at least `share` of the rate (SMSBRIDGE_BULK_SHARE)
however many replies come. The channel's bucket alone decides every slot, so the line and
the budget only order SMS: they can never send faster than the rate. Places in line are a
slot apart, so their tasks come back one by one, not all at once; one that comes back for
another reason (a paused channel) takes a new place at the end. cht-gateway phones take
tokens with `try_take` as they poll, replies first by the hand-out order
(outbound/messages.py `Lanes`).

Bridges sharing a PostgreSQL database share each channel's bucket (`shared`:
outbound/ratebuckets.py): every slot is taken from the bucket the database holds, so together
they send no faster than the rate; each bridge's line and replies' budget stay its own (they
only order SMS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from smsbridge.errors import ConfigError
from smsbridge.settings import rate_table

EPSILON = 1e-6
"""Seconds below which two times are the same (float arithmetic on slots)."""

REPLY_WAIT = "reply-wait"
"""Memo of a reply that waited for its budget (`Booking.ticket`): it is booked on its return."""

_TICKET = "line"  # prefix of a place in line, as a memo: "line <slot> <jumped> <limiter>"

T = TypeVar("T")
SharedBuckets = Callable[[str, "TokenBucket", Callable[[], Any]], Any]
"""`(channel, bucket, act)`: load the channel's bucket state from where the bridges share it
into `bucket`, run `act`, store the state `act` left, in one transaction; `act`'s result."""


@dataclass(frozen=True)
class Rate:
    segments: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.segments / self.seconds


def parse_rates(spec: str) -> dict[str, Rate]:
    try:
        table = rate_table(spec)
    except ValueError as exc:
        raise ConfigError(f"SMSBRIDGE_RATES: {exc}") from None
    return {channel: Rate(segments, seconds) for channel, (segments, seconds) in table.items()}


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second. A cost larger than the capacity is
    allowed once the bucket is full (a long SMS on a slow channel must still go out)."""

    def __init__(
        self, rate: float, capacity: float, now: float, *, tokens: float | None = None
    ) -> None:
        """Full unless `tokens` says how many it holds at `now`."""
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity if tokens is None else min(capacity, tokens)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until `cost` tokens are available (0 if now)."""
        self._refill(now)
        need = min(cost, self.capacity)
        if self.tokens >= need - EPSILON * self.rate:  # float dust is no wait
            return 0.0
        return (need - self.tokens) / self.rate

    def try_take(self, cost: float, now: float) -> bool:
        if self.wait_time(cost, now) > 0:
            return False
        self.tokens -= cost  # may go negative for cost > capacity: the debt is paid by waiting
        return True

    def reserve(self, cost: float, now: float) -> float:
        """Book `cost` tokens and return when they may be spent (`now` if at once). Bookings go
        into debt, so each caller gets its own slot: n callers at once are spread evenly over
        n·cost/rate seconds instead of all retrying at the same moment."""
        wait = self.wait_time(cost, now)
        self.tokens -= cost
        return now + wait


@dataclass(frozen=True)
class Ticket:
    """A place in a channel's line: the slot it would have had when given (`slot`), the
    channel's `jumped` then, and the limiter that gave it (`limiter`, its start time)."""

    slot: float
    jumped: float
    limiter: float

    @property
    def memo(self) -> str:
        return f"{_TICKET} {self.slot!r} {self.jumped!r} {self.limiter!r}"

    @classmethod
    def parse(cls, memo: str | None) -> Ticket | None:
        """The ticket a memo holds (None: no ticket, or not one this module wrote)."""
        words = (memo or "").split()
        if len(words) != 4 or words[0] != _TICKET:
            return None
        try:
            slot, jumped, limiter = (float(word) for word in words[1:])
        except ValueError:
            return None
        if not all(math.isfinite(value) for value in (slot, jumped, limiter)):
            return None
        return cls(slot, jumped, limiter)


@dataclass(frozen=True)
class Booking:
    """What `RateLimiter.book` decided for one SMS. `ticket` None: a slot is booked, the SMS
    goes at `at` (now or later); else nothing is booked: come back at `at` carrying `ticket`
    (a memo: a place in line, or REPLY_WAIT)."""

    at: float
    ticket: str | None = None


class Channel:
    """One rate-limited channel: its bucket (every slot), the replies' budget and the line of
    the other SMS waiting for a slot (see the module's docstring). `limiter`: the id its
    tickets carry (the limiter's start time)."""

    def __init__(
        self, rate: Rate, now: float, *, tokens: float, share: float, limiter: float
    ) -> None:
        self.length = 1.0 / rate.per_second  # seconds of the channel one segment takes
        self.bucket = TokenBucket(rate.per_second, rate.segments, now, tokens=tokens)
        self.replies = TokenBucket(rate.per_second * (1.0 - share), rate.segments, now)
        self.limiter = limiter
        self.line = -math.inf  # the slot of the last SMS given a place in line
        self.jumped = 0.0  # seconds of the channel replies took ahead of the line, in all

    def book_reply(self, cost: float, now: float, horizon: float, *, waited: bool) -> Booking:
        """A reply's slot, ahead of the line; or, beyond the replies' budget, when to come
        back for it (`waited`: it has waited for its budget, which is spent)."""
        if not waited:
            budget = self.replies.reserve(cost, now)
            if budget - now > horizon + EPSILON:
                return Booking(budget, REPLY_WAIT)
        slot = self.bucket.reserve(cost, now)
        if self.line > slot:  # the places in line after this slot move back by its length
            self.jumped += cost * self.length
            self.line += cost * self.length
        return Booking(slot)

    def book_other(self, cost: float, now: float, horizon: float, memo: str | None) -> Booking:
        """Another SMS's slot when it is at most `horizon` away and its turn in line has come;
        else its place in line: a new one at the end, or the one its `memo` holds (moved back
        by the replies that jumped the line since)."""
        ticket = Ticket.parse(memo)
        if ticket is None or ticket.limiter != self.limiter:  # another process's line is gone
            due = now + self.bucket.wait_time(cost, now)
            if self.line > now:  # others wait in line: behind them
                due = max(due, self.line + cost * self.length)
            if due - now > horizon + EPSILON:
                self.line = due
        else:
            due = ticket.slot + max(0.0, self.jumped - ticket.jumped)
        if due - now <= horizon + EPSILON:
            wait = self.bucket.wait_time(cost, now)
            if wait <= horizon + EPSILON:
                return Booking(self.bucket.reserve(cost, now))
            due = now + wait  # the bucket is busier than the line knew: wait for it
            self.line = max(self.line, due)
        return Booking(due, Ticket(due, self.jumped, self.limiter).memo)


class RateLimiter:
    """One `Channel` per rate-limited channel; channels without a configured rate are never
    held back. Every bucket was empty at `started` (the process's start: no burst after a
    restart) and has been refilling since; a channel first used later gets what it would have
    gained by then. `share`: the part of each channel's rate replies leave to the rest."""

    def __init__(
        self,
        rates: dict[str, Rate],
        *,
        started: float,
        share: float = 0.2,
        shared: SharedBuckets | None = None,
    ) -> None:
        """`shared`: the buckets live in the database, shared by every bridge on it
        (outbound/ratebuckets.py); each use of a channel's bucket goes through it."""
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"a share of the rate is at least 0 and below 1, got {share!r}")
        self.rates = rates
        self.started = started
        self.share = share
        self.shared = shared
        self._channels: dict[str, Channel] = {}

    def _on(self, channel: str, found: Channel, act: Callable[[], T]) -> T:
        """`act` on `found`'s bucket, as the database has it when the buckets are shared."""
        return act() if self.shared is None else self.shared(channel, found.bucket, act)

    def _channel(self, channel: str, now: float) -> Channel | None:
        rate = self.rates.get(channel) or self.rates.get(channel.split(":", 1)[0])
        if rate is None:
            return None
        found = self._channels.get(channel)
        if found is None:
            gained = max(0.0, now - self.started) * rate.per_second
            found = Channel(rate, now, tokens=gained, share=self.share, limiter=self.started)
            self._channels[channel] = found
        return found

    def wait_time(self, channel: str, segments: int, now: float) -> float:
        found = self._channel(channel, now)
        if found is None:
            return 0.0
        return self._on(channel, found, lambda: found.bucket.wait_time(segments, now))

    def try_take(self, channel: str, segments: int, now: float) -> bool:
        found = self._channel(channel, now)
        if found is None:
            return True
        return self._on(channel, found, lambda: found.bucket.try_take(segments, now))

    def reserve(self, channel: str, segments: int, now: float) -> float:
        """When `segments` may go out on `channel` (booked: see TokenBucket.reserve)."""
        found = self._channel(channel, now)
        if found is None:
            return now
        return self._on(channel, found, lambda: found.bucket.reserve(segments, now))

    def book(
        self,
        channel: str,
        segments: int,
        now: float,
        *,
        reply: bool,
        memo: str | None = None,
        horizon: float = 0.0,
    ) -> Booking:
        """A slot for an SMS of `segments` on `channel` at most `horizon` seconds ahead, replies
        first (see the module's docstring); or when to come back, and the memo to carry then.
        `memo`: what the SMS came back with (the `Booking.ticket` of an earlier call)."""
        found = self._channel(channel, now)
        if found is None:
            return Booking(now)
        horizon = max(0.0, horizon)
        if reply:
            waited = memo == REPLY_WAIT
            return self._on(
                channel, found, lambda: found.book_reply(segments, now, horizon, waited=waited)
            )
        return self._on(channel, found, lambda: found.book_other(segments, now, horizon, memo))
