"""Per-channel send rates, counted in SMS segments: one token bucket per channel.

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
tasks book again with the new buckets when they come due.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsbridge.errors import ConfigError
from smsbridge.settings import rate_table


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
        if self.tokens >= need:
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
        self._refill(now)
        self.tokens -= cost
        if self.tokens >= 0:
            return now
        return now + (-self.tokens) / self.rate


class RateLimiter:
    """One bucket per channel; channels without a configured rate are never held back. Every
    bucket was empty at `started` (the process's start: no burst after a restart) and has been
    refilling since; a channel first used later gets what it would have gained by then."""

    def __init__(self, rates: dict[str, Rate], *, started: float) -> None:
        self.rates = rates
        self.started = started
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, channel: str, now: float) -> TokenBucket | None:
        rate = self.rates.get(channel) or self.rates.get(channel.split(":", 1)[0])
        if rate is None:
            return None
        bucket = self._buckets.get(channel)
        if bucket is None:
            gained = max(0.0, now - self.started) * rate.per_second
            bucket = TokenBucket(rate.per_second, rate.segments, now, tokens=gained)
            self._buckets[channel] = bucket
        return bucket

    def wait_time(self, channel: str, segments: int, now: float) -> float:
        bucket = self._bucket(channel, now)
        return 0.0 if bucket is None else bucket.wait_time(segments, now)

    def try_take(self, channel: str, segments: int, now: float) -> bool:
        bucket = self._bucket(channel, now)
        return True if bucket is None else bucket.try_take(segments, now)

    def reserve(self, channel: str, segments: int, now: float) -> float:
        """When `segments` may go out on `channel` (booked: see TokenBucket.reserve)."""
        bucket = self._bucket(channel, now)
        return now if bucket is None else bucket.reserve(segments, now)
