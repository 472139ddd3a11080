"""The rate buckets bridges share on one PostgreSQL database (table `rate_buckets`, owned
here): each channel's tokens and when they were counted, so any number of bridges together send
no faster than the channel's rate (outbound/ratelimit.py).

`shared_buckets(store)` is the limiter's `shared` hook: each use of a channel's bucket locks its
row (`FOR UPDATE`: the other bridges wait a moment), loads the tokens into the limiter's
bucket, lets the limiter decide, and stores what it left, in one short transaction of its own
(`PgStore.transact`), because a slot is booked before the send, outside any write job. A row
starts from the first bridge's own bucket (empty when it started: no burst).
service.py wires it on PostgreSQL only; on SQLite one bridge holds the buckets in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smsbridge.outbound.ratelimit import SharedBuckets, TokenBucket


def shared_buckets(store: Any) -> SharedBuckets:
    """The `shared` hook of `RateLimiter` on `store` (a PgStore)."""

    def on_bucket(channel: str, bucket: TokenBucket, act: Callable[[], Any]) -> Any:
        def job(conn: Any) -> Any:
            conn.execute(
                "INSERT INTO rate_buckets(channel, tokens, stamp) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (channel, bucket.tokens, bucket.stamp),
            )
            tokens, stamp = conn.execute(
                "SELECT tokens, stamp FROM rate_buckets WHERE channel = ? FOR UPDATE", (channel,)
            ).fetchone()
            bucket.tokens, bucket.stamp = float(tokens), float(stamp)
            result = act()
            conn.execute(
                "UPDATE rate_buckets SET tokens = ?, stamp = ? WHERE channel = ?",
                (bucket.tokens, bucket.stamp, channel),
            )
            return result

        return store.transact(job)

    return on_bucket
