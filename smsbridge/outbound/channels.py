"""The health of each send channel: a circuit breaker and a channel-wide throttle pause.

    Channels.verdict(channel, now)      may an SMS go out now? (GO, PROBE, OPEN, PAUSED)
    Channels.failed(channel, now)       a transient failure (5xx, timeout): may open the channel
    Channels.worked(channel, now)       a send the carrier accepted: closes it
    Channels.throttled(channel, after, now)   a throttle answer: the whole channel waits

**Circuit breaker.** SMSBRIDGE_CHANNEL_FAILURES transient failures of a channel within
SMSBRIDGE_CHANNEL_FAILURE_WINDOW seconds open it: its SMS go to the route's next channel at once
(outbound/send.py), or, with none, wait. After SMSBRIDGE_CHANNEL_OPEN_SECONDS the channel is
half-open: one SMS (the probe) is let through; accepted, the channel closes; failed, it opens
again. A probe whose worker died is replaced after `probe_lease` seconds.

**Throttle.** A throttle answer (HTTP 429, or any transient refusal that says when to come back:
Retry-After) pauses the whole channel until then, at most SMSBRIDGE_CHANNEL_THROTTLE_MAX seconds
(DEFAULT_PAUSE when it names no time). The channel is healthy, only rate-limited, so its SMS wait
(their tasks come back at the pause's end without counting an attempt) rather than fail over.

**Survives a restart.** Whether a channel is open (since when) or paused (until when) is kept in
the database (`kv` rows `channel.<name>`, written in the same transaction as the outcome that
changed it): a restart must not walk straight back into a dead carrier or a carrier's rate limit,
and `smsbridge outbox ls`, another process, reads it there. The failure count inside the window
lives in memory only: losing it on a restart costs at most a few more failed attempts.
Time is a parameter (`now`, seconds since the epoch like every stored time).
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from smsbridge.errors import RetryableError
from smsbridge.settings import Settings
from smsbridge.store import Store

DEFAULT_PAUSE = 5.0
"""Seconds a throttle answer that names no time pauses its channel."""

_KEY = "channel."  # kv key prefix of a channel's stored state


class Verdict(StrEnum):
    GO = "go"  # closed: send
    PROBE = "probe"  # half-open: this SMS is the probe
    OPEN = "open"  # open: fail over (or wait for the probe)
    PAUSED = "paused"  # throttled: wait


@dataclass(frozen=True)
class ChannelPolicy:
    failures: int = 5  # transient failures within `window` that open a channel (0: never)
    window: float = 60.0
    open_seconds: float = 60.0  # open this long before a probe is let through
    throttle_max: float = 600.0  # longest channel-wide pause a throttle answer causes
    probe_lease: float = 60.0  # a probe with no outcome after this long is replaced

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelPolicy:
        return cls(
            settings.channel_failures,
            settings.channel_failure_window,
            settings.channel_open_seconds,
            settings.channel_throttle_max,
            settings.lease_seconds,
        )


@dataclass(frozen=True)
class ChannelState:
    """What is stored of a channel (and shown): open since when, paused until when."""

    channel: str
    opened_at: float | None = None
    paused_until: float | None = None

    def to_json(self) -> str:
        return json.dumps({"opened_at": self.opened_at, "paused_until": self.paused_until})

    @classmethod
    def from_json(cls, channel: str, text: str | None) -> ChannelState:
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        return cls(channel, data.get("opened_at"), data.get("paused_until"))

    def describe(self, now: float, open_seconds: float | None = None) -> str:
        """`open`, `half-open`, `paused 42s` or `` (closed, not paused)."""
        words = []
        if self.opened_at is not None:
            half = open_seconds is not None and now >= self.opened_at + open_seconds
            words.append("half-open" if half else "open")
        if self.paused_until is not None and self.paused_until > now:
            words.append(f"paused {self.paused_until - now:.0f}s")
        return ", ".join(words)


@dataclass
class _Live:
    state: ChannelState
    failures: deque[float] = field(default_factory=deque)
    probe_until: float | None = None


def load(store: Store, channel: str) -> ChannelState:
    """A channel's stored state (closed and not paused when none is stored)."""
    return ChannelState.from_json(channel, store.get_kv(_KEY + channel))


def save_in(conn: sqlite3.Connection, state: ChannelState, now: float) -> None:
    Store.put_kv(conn, _KEY + state.channel, state.to_json(), now)


class Channels:
    """Each channel's breaker and pause, kept in memory and loaded from the store the first time
    a channel is seen. Methods that change what is stored return the new `ChannelState`: the
    caller writes it (`save_in`) in the transaction of the outcome that changed it."""

    def __init__(self, store: Store, policy: ChannelPolicy) -> None:
        self.store = store
        self.policy = policy
        self._live: dict[str, _Live] = {}

    def _get(self, channel: str) -> _Live:
        live = self._live.get(channel)
        if live is None:
            live = self._live[channel] = _Live(load(self.store, channel))
        return live

    def state(self, channel: str) -> ChannelState:
        return self._get(channel).state

    def states(self, channels: Iterable[str]) -> list[ChannelState]:
        """The state of `channels` and of every other channel seen, each once, sorted."""
        return [self.state(c) for c in sorted({*channels, *list(self._live)})]

    def open_map(self, channels: Iterable[str]) -> dict[str, bool]:
        """Whether each of `channels` (and every other channel seen) is open: the metrics."""
        return {state.channel: state.opened_at is not None for state in self.states(channels)}

    def report(self, channels: Iterable[str], now: float) -> dict[str, str]:
        """Each of `channels` (and every other channel seen) that is open or paused, described
        (ChannelState.describe): /readyz and `outbox ls`."""
        described = {
            s.channel: s.describe(now, self.policy.open_seconds) for s in self.states(channels)
        }
        return {channel: text for channel, text in described.items() if text}

    def paused_until(self, channel: str, now: float) -> float | None:
        until = self.state(channel).paused_until
        return until if until is not None and until > now else None

    def verdict(self, channel: str, now: float) -> Verdict:
        """May an SMS go out on `channel` now? A PROBE verdict hands this caller the one probe
        of a half-open channel (others get OPEN until it has its outcome)."""
        live = self._get(channel)
        if self.paused_until(channel, now) is not None:
            return Verdict.PAUSED
        opened = live.state.opened_at
        if opened is None:
            return Verdict.GO
        if now < opened + self.policy.open_seconds:
            return Verdict.OPEN
        if live.probe_until is not None and now < live.probe_until:
            return Verdict.OPEN
        live.probe_until = now + self.policy.probe_lease
        return Verdict.PROBE

    def probe_over(self, channel: str) -> None:
        """The probe granted by `verdict` did not go out after all: another may take its place."""
        self._get(channel).probe_until = None

    def reopens_at(self, channel: str, now: float) -> float:
        """When an open channel may next take a probe (`now` when it may already)."""
        live = self._get(channel)
        opened = live.state.opened_at
        at = now if opened is None else opened + self.policy.open_seconds
        if live.probe_until is not None:
            at = max(at, live.probe_until)
        return max(at, now)

    def failed(self, channel: str, now: float) -> ChannelState | None:
        """A transient failure on `channel`; the new state to store when it opened (or, after a
        failed probe, opened again)."""
        live = self._get(channel)
        live.probe_until = None
        if live.state.opened_at is not None:  # the probe failed (or a send begun before)
            live.state = ChannelState(channel, now, live.state.paused_until)
            return live.state
        if self.policy.failures <= 0:
            return None
        live.failures.append(now)
        while live.failures and live.failures[0] <= now - self.policy.window:
            live.failures.popleft()
        if len(live.failures) < self.policy.failures:
            return None
        live.failures.clear()
        live.state = ChannelState(channel, now, live.state.paused_until)
        return live.state

    def worked(self, channel: str, now: float) -> ChannelState | None:
        """The carrier accepted a send: the channel closes. The state to store when it changed."""
        live = self._get(channel)
        live.failures.clear()
        live.probe_until = None
        if live.state.opened_at is None:
            return None
        live.state = ChannelState(channel, None, live.state.paused_until)
        return live.state

    def throttled(self, channel: str, after: float | None, now: float) -> ChannelState:
        """A throttle answer: the channel pauses until `now + after` (bounded; DEFAULT_PAUSE
        when no time was given). Returns the state to store."""
        live = self._get(channel)
        live.probe_until = None
        wait = DEFAULT_PAUSE if after is None else after
        until = now + min(max(wait, 0.0), self.policy.throttle_max)
        current = live.state.paused_until
        if current is not None and current > until:
            until = current
        live.state = ChannelState(channel, live.state.opened_at, until)
        return live.state


def is_throttle(exc: RetryableError) -> bool:
    """A transient refusal that is a rate limit: HTTP 429, or one that says when to come back
    (Retry-After). Carriers classify their own answers (carriers/sending.py); this only reads
    the exception."""
    return exc.status == 429 or exc.retry_after is not None
