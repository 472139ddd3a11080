"""The outbound steps: send one queued SMS (a `send` task), hand SMS to cht-gateway phones and
take their reports, and take carriers' delivery reports.

    OutboundPipeline.run_once(now)                  claim one `send` task and run it
    OutboundPipeline.phone_exchange(user, ex, now)  a phone's POST /api/sms
    OutboundPipeline.delivery_reports(updates, now) a carrier's status webhook, before its 2xx

Sending one SMS: TTL (older than SMSBRIDGE_MESSAGE_TTL: failed "expired", never sent) → a
destination that is not a phone number fails at once (NOT_ROUTABLE) → loop guard (held) → route
(the message's current channel; else, for a reply under SMSBRIDGE_REPLY_CHANNEL=inbound, the
channel its number last wrote in on; else the route's first) → channel health
(outbound/channels.py: a channel paused by a throttle makes the SMS wait for the pause's end, an
open one sends it to the route's next channel at once, no attempt counted) → rate (a slot is
booked on the channel's token bucket; the worker waits for a slot up to `hold` seconds away,
else the task comes back at its slot; replies first: other SMS book no further than `hold` and
wait in the channel's line, outbound/ratelimit.py) → the carrier's `send` → accepted (SENT,
the carrier's id, the task done: one transaction). A RetryableError marks it SENDING (it may
have left) and retries with backoff (the task queue's policy) and counts toward the channel's
breaker (the failure that opens it moves the SMS on at once); a throttle answer pauses the
whole channel; a PermanentError (or AuthFailure: that channel is unusable) hands the SMS to
the route's next channel; with none left a permanent failure fails it with the carrier's
reason (an auth failure keeps retrying: an operator can fix credentials). Given-up tasks wait
in the dead-letter list (`smsbridge outbox retry/drop`). Each outcome — the SMS's new state or
channel together with its task done, retried or put back — is one write job.

No blind resend. A task may run twice (a lease expired mid-send, the process was killed): a
message already SENT or final is not sent again. The claim records the attempt (when, on which
channel) in its own transaction, before the carrier is called, and every outcome closes it; an
attempt found still open at the next claim, or a send that got no answer (a timeout, a dropped
connection; not "connection refused"), makes the SMS ambiguous: it may have reached the carrier.
An ambiguous SMS is not sent again for SMSBRIDGE_AMBIGUOUS_GRACE: a delivery report matched by our
ref or the carrier's id moves it to sent/delivered meanwhile, and its task then ends. With no
report by the end of the grace period, SMSBRIDGE_AMBIGUOUS_ACTION decides: `resend` (default: a
carrier that got the SMS reports it with our ref well within minutes, so silence means it most
likely never arrived, and a health message lost is worse than a rare duplicate) or `fail`.
Counted in smsbridge_outgoing_ambiguous_total{channel,event}; `outbox ls` marks them.

What settles an ambiguous send, per carrier: Twilio, our ref in the StatusCallback URL
(`?ref=`); Vonage, `client-ref` in its reports; generic, the `ref` (the `id` we sent) in its
reports; cht-gateway phones are never ambiguous (they pull their SMS and report by our id).
Africa's Talking offers nothing: its send API takes no client-side id or idempotency key, its
reports carry only its own message id (which an ambiguous send never learnt), and its
fetch-messages API lists inbound SMS only; see carriers/africastalking.py for the remaining risk.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from smsbridge import tasks
from smsbridge.carriers import chtgateway
from smsbridge.carriers.base import Carrier, CarrierConfig
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.inbound import messages as incoming
from smsbridge.logs import event
from smsbridge.outbound import channels as channel_state
from smsbridge.outbound import delivery, parts, phones, transitions
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound import split as splitmode
from smsbridge.outbound.channels import ChannelPolicy, Channels, ChannelState, Verdict
from smsbridge.outbound.loopguard import BURST_WINDOW, LoopLimits, verdict
from smsbridge.outbound.messages import SEND, Outgoing
from smsbridge.outbound.ratelimit import RateLimiter
from smsbridge.outbound.routing import Routes, channel_carrier, routable
from smsbridge.outbound.transitions import Change
from smsbridge.settings import AMBIGUOUS_ACTIONS, REPLY_CHANNELS, Settings
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate
from smsbridge.store import Store
from smsbridge.tasks import Task, TaskQueue

log = logging.getLogger(__name__)

SLOT = "slot"  # task memo: a rate slot was booked for this attempt

# What an ambiguous send becomes once its grace period passed without a report
# (SMSBRIDGE_AMBIGUOUS_ACTION, one of settings.AMBIGUOUS_ACTIONS).
RESEND, FAIL = AMBIGUOUS_ACTIONS

# Events of ambiguous sends, for the metrics: found open after a crash or a lost lease, or timed
# out; settled by a report; resent or failed when the grace period ended.
LOST, TIMEOUT, SETTLED, RESENT, FAILED = "lost", "timeout", "settled", "resent", "failed"
AMBIGUOUS_EVENTS = (LOST, TIMEOUT, SETTLED, RESENT, FAILED)

# Where a reply goes (SMSBRIDGE_REPLY_CHANNEL): the channel its number wrote in on, or the routes'.
INBOUND, BY_ROUTES = REPLY_CHANNELS

NOT_ROUTABLE = "not a phone number: no route to this destination"

# A send error that leaves no way to know whether the carrier got the SMS (no answer came).
AMBIGUOUS_ERRORS = frozenset({"timeout", "network"})

AcceptInbound = Callable[[Sequence[InboundSms], float], Awaitable[Any]]


@dataclass(frozen=True)
class OutboundConfig:
    ttl: float
    lease: float
    limits: LoopLimits
    phone_batch: int = 25
    # a worker whose rate slot is at most this far off waits for it (a real clock); further
    # off, the task is put back until its slot (0: always put back, as with a test clock)
    hold: float = 0.0
    # an ambiguous send waits this long for its delivery report, then is resent or failed
    ambiguous_grace: float = 300.0
    ambiguous_action: str = RESEND
    reply_channel: str = INBOUND
    reply_window: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings, *, hold: float = 0.0) -> OutboundConfig:
        batch = settings.carrier_setting(chtgateway.NAME, "batch") or "25"
        return cls(
            settings.message_ttl,
            settings.lease_seconds,
            LoopLimits.from_settings(settings),
            max(1, int(batch)),
            hold,
            settings.ambiguous_grace,
            settings.ambiguous_action,
            settings.reply_channel,
            settings.reply_window,
        )


class OutboundPipeline:
    def __init__(
        self,
        store: Store,
        outbox: TaskQueue,
        *,
        config: OutboundConfig,
        routes: Routes,
        limiter: RateLimiter,
        http: httpx.AsyncClient,
        carriers: Mapping[str, Carrier],
        configs: Mapping[str, CarrierConfig],
        channels: Channels | None = None,
        accept_inbound: AcceptInbound | None = None,
        on_report: Callable[[], None] = lambda: None,
        on_send: Callable[[str, float], None] | None = None,
        on_changes: Callable[[Sequence[Change]], None] | None = None,
        on_ambiguous: Callable[[str, str], None] | None = None,
        on_unknown_reports: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """`channels`: each channel's breaker and throttle pause (outbound/channels.py);
        `accept_inbound`: where SMS a phone received go (the service's `accept`);
        `on_report`: wakes the CHT sync (a state is owed to CHT); `on_send`: a send's duration
        by channel; `on_changes`: the state changes once committed (the metrics);
        `on_ambiguous(channel, event)`: an ambiguous send's events (AMBIGUOUS_EVENTS);
        `on_unknown_reports(carrier, why, count)`: delivery reports with a status the carrier's
        table lacks (`status`) or naming no SMS we know yet (`id`)."""
        self.store = store
        self.outbox = outbox
        self.config = config
        self.routes = routes
        self.limiter = limiter
        self.http = http
        self.carriers = carriers
        self.configs = configs
        self.channels = channels or Channels(store, ChannelPolicy())
        self.accept_inbound = accept_inbound
        self.on_report = on_report
        self.on_send = on_send
        self.on_changes = on_changes
        self.on_ambiguous = on_ambiguous or (lambda channel, what: None)
        self.on_unknown_reports = on_unknown_reports or (lambda carrier, why, count: None)
        self._at_carrier: set[int] = set()  # tasks whose send has called its carrier

    async def _write(
        self,
        job: Callable[[sqlite3.Connection], Any],
        *,
        rerunnable: bool = False,
        **log_fields: Any,
    ) -> Any:
        """Run `job`; once committed, log the state changes it made (with `log_fields`), feed
        them to the metrics and wake the CHT sync loop. `rerunnable`: see Store.write (the
        steps that run once per SMS: no savepoint, store.py)."""
        result = await transitions.write(
            self.store, job, on_changes=self.on_changes, rerunnable=rerunnable, **log_fields
        )
        self.on_report()
        return result

    # -- sending -------------------------------------------------------------------------------

    async def run_once(self, now: float) -> bool:
        """Claim one due send task and run it; False when there is nothing to do."""
        if not await self.store.off_loop(lambda: self.outbox.has_due([SEND], now)):
            return False  # a cheap read first: idle workers polling cost no write
        claimed = await self.store.write(lambda c: self._claim_in(c, now), rerunnable=True)
        if claimed is None:
            return False
        task, message, channel, newly_ambiguous = claimed
        if newly_ambiguous and message is not None:
            self.on_ambiguous(message.attempt_channel or "none", LOST)
            event(
                log,
                "outgoing_ambiguous",
                logging.WARNING,
                message=message.ref,
                channel=message.attempt_channel,
                why="an earlier send attempt never recorded its outcome",
            )
        try:
            await self.send_sms(task, now, message, channel)
        except Exception:
            if task.id not in self._at_carrier and message is not None:
                await self._attempt_unsent(message)
            raise
        finally:
            self._at_carrier.discard(task.id)
        return True

    async def _attempt_unsent(self, message: Outgoing) -> None:
        """Something failed (the database, a bug) before the carrier was called: close the
        attempt the claim recorded, so that the SMS, never sent, is not taken for one whose
        send went unanswered (ambiguous) at its next claim. Best effort: the failure itself
        goes on up."""
        opened = message.attempt_started_at
        if opened is None:
            return

        def job(conn: sqlite3.Connection) -> None:
            current = outgoing.get_in(conn, message.ref)
            if current is not None and current.attempt_started_at == opened:
                outgoing.attempt_over_in(conn, current, ambiguous_since=current.ambiguous_since)

        try:
            await self.store.write(job)
        except Exception as exc:  # the database is still down: it stays open
            why = type(exc).__name__
            event(
                log, "outgoing_attempt_left_open", logging.WARNING, message=message.ref, error=why
            )

    def _claim_in(
        self, conn: sqlite3.Connection, now: float
    ) -> tuple[Task, Outgoing | None, str | None, bool] | None:
        """Lease the next send task and, when its SMS is to go to a carrier, record the attempt
        before any call: one transaction, no extra commit per SMS. The channel chosen for it
        (None: not chosen, or no route) and whether the SMS has just been found ambiguous (an
        attempt left open by a dead worker) come back too."""
        task = tasks.claim_in(conn, [SEND], now, self.config.lease, order="due")
        if task is None:
            return None
        message = outgoing.get_in(conn, task.ref)
        if message is None or message.state not in (DeliveryState.QUEUED, DeliveryState.SENDING):
            return task, message, None, False
        channel = self._first_channel_in(conn, message, now)
        if channel is None or channel_carrier(channel) == chtgateway.NAME:
            return task, message, channel, False
        message, newly = outgoing.attempt_in(conn, message, channel, now)
        return task, message, channel, newly

    async def send_sms(
        self,
        task: Task,
        now: float,
        message: Outgoing | None = None,
        channel: str | None = None,
    ) -> None:
        """Send (or settle) the SMS of `task`. `message` and `channel`: as the claim read and
        chose them at `now` (`_claim_in`), so neither is looked up again."""
        message = message or await self.store.off_loop(lambda: outgoing.get(self.store, task.ref))
        if (
            message is None
            or message.state in outgoing.FINAL
            or message.state in (DeliveryState.SENT, DeliveryState.HELD)
        ):
            if message is not None and message.ambiguous_since is not None:
                await self._settled(task, message)
                return
            await self.outbox.done(task)
            return
        on_phone = (
            message.channel is not None and channel_carrier(message.channel) == chtgateway.NAME
        )
        if on_phone and message.phone_ack:
            await self.outbox.done(task)  # the phone has it and reports on it
            return
        if now - message.created_at >= self.config.ttl:
            await self._fail(task, message, "expired", now)
            return
        if not routable(message.to):  # e.g. an alphanumeric sender id: no carrier can take it
            await self._fail(task, message, NOT_ROUTABLE, now)
            return
        if message.channel is None and not message.released:
            why = await self.store.off_loop(lambda: self._loop_verdict(message, now))
            if why is not None:

                def hold(conn: sqlite3.Connection) -> None:
                    outgoing.attempt_over_in(conn, message)
                    outgoing.hold_in(conn, message, why, now)
                    tasks.done_in(conn, task)

                await self._write(hold)  # logged as outgoing_held
                return
        if channel is None:
            channel = await self.store.off_loop(
                lambda: self.store.read(lambda c: self._first_channel_in(c, message, now))
            )
        if channel is None:
            await self._fail(task, message, "no route", now)
            return
        if channel_carrier(channel) == chtgateway.NAME:
            await self._await_phone(task, message, channel, now)
            return
        if message.ambiguous_since is not None and await self._ambiguous(
            task, message, channel, now
        ):
            return
        verdict = self.channels.verdict(channel, now)
        if verdict in (Verdict.PAUSED, Verdict.OPEN):
            await self._channel_unavailable(task, message, channel, verdict, now)
            return
        if task.memo != SLOT:
            split = self.routes.options_for(message.to, channel).split
            booking = await self.store.off_loop(  # PostgreSQL: the shared buckets' rows
                lambda: self.limiter.book(  # replies first, the rest in line (ratelimit.py)
                    channel,
                    splitmode.cost(self.store, message, split),
                    now,
                    reply=message.lead > 0,
                    memo=task.memo,
                    horizon=self.config.hold,
                )
            )
            slot = booking.at
            if booking.ticket is not None or slot - now > self.config.hold:
                if verdict is Verdict.PROBE:
                    self.channels.probe_over(channel)  # the next SMS probes instead
                memo = booking.ticket or SLOT  # its place in line, or its booked slot
                await self._move_and_release(task, message, channel, now, slot, memo=memo)
                return
            if slot > now:
                await asyncio.sleep(slot - now)
                now = slot
        await self._send(task, message, channel, now)

    async def _send(self, task: Task, message: Outgoing, channel: str, now: float) -> None:
        carrier = channel_carrier(channel)
        sender = self.carriers.get(carrier)
        config = self.configs.get(carrier)
        if sender is None or config is None or not sender.sends:
            await self._next_channel(
                task,
                message,
                channel,
                AuthFailure(f"{carrier}: not an enabled sending carrier"),
                now,
            )
            return

        sms = OutboundSms(
            message.ref,
            message.to,
            message.content,
            datetime.fromtimestamp(message.created_at, UTC),
        )
        options = self.routes.options_for(message.to, channel)  # outbound/routing.py
        sms, config = options.for_carrier(sms, config, sender.sender_setting)
        started = time.perf_counter()
        try:
            # Finish well inside the lease: once it expires another worker may claim the task
            # and send the SMS again while this request is still in flight.
            async with asyncio.timeout(self.config.lease * 0.8):
                result = await splitmode.send(  # whole, or in parts (outbound/split.py)
                    self.store,
                    self._write,
                    lambda part: self._call_carrier(task, sender, config, part),
                    sms,
                    message,
                    channel,
                    now,
                    split=options.split,
                )
        except TimeoutError:
            exc = RetryableError(f"{carrier}: the send outlasted its lease", code="timeout")
            await self._retry_send(task, message, channel, exc, now)
            return
        except RetryableError as exc:
            if channel_state.is_throttle(exc):
                await self._throttled(task, message, channel, exc, now)
                return
            await self._transient_failure(task, message, channel, exc, now)
            return
        except (PermanentError, AuthFailure) as exc:
            if isinstance(exc, PermanentError):  # the carrier answers: the channel is up
                self._channel_changed(self.channels.worked(channel, now), now)
            else:
                self.channels.probe_over(channel)
            await self._next_channel(task, message, channel, exc, now)
            return
        if self.on_send is not None:
            self.on_send(channel, time.perf_counter() - started)
        state = self.channels.worked(channel, now)

        def accepted(conn: sqlite3.Connection) -> None:
            delivery.accepted_in(
                conn,
                message.ref,
                channel,
                result.carrier,
                result.external_id,
                result.state,
                now,
                result.reason,
            )
            tasks.done_in(conn, task)
            if state is not None:
                channel_state.save_in(conn, state, now)

        # logged as outgoing_sent
        await self._write(accepted, rerunnable=True, attempt=task.attempts)
        self._channel_changed(state, now, saved=True)

    def _call_carrier(
        self, task: Task, sender: Carrier, config: CarrierConfig, sms: OutboundSms
    ) -> Awaitable[SendResult]:
        self._at_carrier.add(task.id)  # from here a failure may have reached the carrier
        return sender.send(self.http, config, sms)

    # -- channel health (outbound/channels.py) --------------------------------------------------

    def _first_channel_in(
        self, conn: sqlite3.Connection, message: Outgoing, now: float
    ) -> str | None:
        """Where `message` goes: its current channel; else, for a reply under
        SMSBRIDGE_REPLY_CHANNEL=inbound, the channel its number last wrote in on (when that
        can send); else the route's first. None: no route (or not a phone number)."""
        if message.channel is not None:
            return message.channel
        if not routable(message.to):
            return None
        if self.config.reply_channel == INBOUND:
            since = now - self.config.reply_window
            came_in = incoming.last_inbound_channel(conn, message.to, since)
            if came_in is not None and self._can_send_on(came_in):
                return came_in
        return self.routes.next_channel(message.to, None)

    async def _failover(self, message: Outgoing, channel: str) -> str | None:
        """The channel after `channel` on `message`'s route; a phone's skipped once the SMS
        has parts (outbound/split.py: begun in parts, it ends in parts), since a phone would
        send the whole text and the recipient would get the parts already sent twice."""
        following = self.routes.next_channel(message.to, channel)
        if following is None or channel_carrier(following) != chtgateway.NAME:
            return following
        if not await self.store.off_loop(lambda: parts.of(self.store, message.id)):
            return following
        seen = {channel}
        while following is not None and channel_carrier(following) == chtgateway.NAME:
            seen.add(following)
            following = self.routes.next_channel(message.to, following)
            if following in seen:
                return None
        return following

    def _can_send_on(self, channel: str) -> bool:
        carrier = self.carriers.get(channel_carrier(channel))
        if carrier is None or not self.routes.can_carry(channel):
            return False
        return carrier.sends or channel_carrier(channel) == chtgateway.NAME

    async def _channel_unavailable(
        self, task: Task, message: Outgoing, channel: str, verdict: Verdict, now: float
    ) -> None:
        """`channel` is paused by a throttle (the SMS waits for the pause's end) or open (the
        SMS moves to the route's next channel at once; with none, it waits for the probe). The
        task comes back without counting an attempt."""
        if verdict is Verdict.PAUSED:
            until = self.channels.paused_until(channel, now) or now
            await self._move_and_release(task, message, channel, now, until)
            event(log, "outgoing_channel_paused", message=message.ref, channel=channel, until=until)
            return
        following = await self._failover(message, channel)
        if following is not None and following != channel:
            await self._move_and_release(task, message, following, now, now)
        else:
            await self._move_and_release(
                task, message, channel, now, self.channels.reopens_at(channel, now)
            )
        event(
            log,
            "outgoing_channel_open",
            message=message.ref,
            channel=channel,
            failover=following or "none",
        )

    async def _throttled(
        self, task: Task, message: Outgoing, channel: str, exc: RetryableError, now: float
    ) -> None:
        """A throttle answer: the carrier took nothing. The whole channel pauses (bounded) and
        this SMS waits with the others, its attempt not counted: one transaction."""
        state = self.channels.throttled(channel, exc.retry_after, now)
        until = state.paused_until or now
        await self._move_and_release(task, message, channel, now, until, state=state)
        event(
            log,
            "channel_throttled",
            logging.WARNING,
            channel=channel,
            message=message.ref,
            error=exc.code,
            until=until,
        )

    async def _transient_failure(
        self, task: Task, message: Outgoing, channel: str, exc: RetryableError, now: float
    ) -> None:
        """A transient failure counts toward the channel's breaker. When it opens the channel,
        this SMS moves to the route's next channel at once, unless it may have gone out (no
        answer came: the ambiguous-send rules decide); else it is retried with backoff."""
        state = self.channels.failed(channel, now)
        following = await self._failover(message, channel)
        if state is not None and exc.code not in AMBIGUOUS_ERRORS and following is not None:
            await self._move_and_release(task, message, following, now, now, state=state)
        else:
            await self._retry_send(task, message, channel, exc, now, state=state)
        self._channel_changed(state, now, saved=True)

    def _channel_changed(self, state: ChannelState | None, now: float, saved: bool = False) -> None:
        """Log a breaker's change (and store it, unless the outcome's transaction did)."""
        if state is None:
            return
        if not saved:
            self.store.submit(lambda c: channel_state.save_in(c, state, now))
        opened = state.opened_at is not None
        event(
            log,
            "channel_opened" if opened else "channel_closed",
            logging.WARNING if opened else logging.INFO,
            channel=state.channel,
        )

    async def _retry_send(
        self,
        task: Task,
        message: Outgoing,
        channel: str,
        exc: RetryableError,
        now: float,
        *,
        state: ChannelState | None = None,
    ) -> None:
        """The send failed for now: the SMS is `sending` (it may have left); try again later
        (or give up). One transaction."""

        ambiguous = exc.code in AMBIGUOUS_ERRORS

        def job(conn: sqlite3.Connection) -> float | None:
            delivery.tried_in(conn, message.ref, channel, now, ambiguous=ambiguous)
            if state is not None:
                channel_state.save_in(conn, state, now)
            return self.outbox.retry_in(
                conn, task, now, exc.detail or exc.code, retry_after=exc.retry_after
            )

        due = await self._write(job, attempt=task.attempts)
        self.outbox.retried(task, due)
        if ambiguous:
            self.on_ambiguous(channel, TIMEOUT)
        event(
            log,
            "outgoing_retry",
            logging.WARNING,
            message=message.ref,
            channel=channel,
            error=exc.code,
            gave_up=due is None,
        )

    async def _next_channel(
        self,
        task: Task,
        message: Outgoing,
        channel: str,
        exc: PermanentError | AuthFailure,
        now: float,
    ) -> None:
        following = await self._failover(message, channel)
        event(
            log,
            "outgoing_channel_failed",
            logging.WARNING,
            message=message.ref,
            channel=channel,
            error=exc.code,
            failover=following or "none",
        )
        if following is not None:
            await self._move_and_release(task, message, following, now, now)
        elif isinstance(exc, AuthFailure):

            def job(conn: sqlite3.Connection) -> float | None:
                outgoing.attempt_over_in(conn, message, ambiguous_since=message.ambiguous_since)
                return self.outbox.retry_in(conn, task, now, exc.detail or exc.code)

            self.outbox.retried(task, await self.store.write(job))
        else:
            await self._fail(task, message, exc.detail or exc.code, now)

    async def _move_and_release(
        self,
        task: Task,
        message: Outgoing,
        channel: str,
        now: float,
        not_before: float,
        *,
        memo: str | None = None,
        state: ChannelState | None = None,
    ) -> None:
        """The SMS goes to `channel`, and its task comes back at `not_before` without counting
        this attempt (with `state`, a channel's new breaker or pause state): one transaction."""

        def job(conn: sqlite3.Connection) -> None:
            moved = outgoing.move_to_channel_in(conn, message, channel, now)
            outgoing.attempt_over_in(conn, moved, ambiguous_since=message.ambiguous_since)
            tasks.release_in(conn, task, now, not_before, memo=memo)
            if state is not None:
                channel_state.save_in(conn, state, now)

        await self.store.write(job)

    async def _fail(self, task: Task, message: Outgoing, reason: str, now: float) -> None:
        def job(conn: sqlite3.Connection) -> None:
            current = outgoing.get_in(conn, message.ref) or message
            current = outgoing.attempt_over_in(conn, current)
            outgoing.advance_in(conn, current, DeliveryState.FAILED, now, reason=reason)
            tasks.done_in(conn, task)

        await self._write(job, attempt=task.attempts)

    async def _ambiguous(self, task: Task, message: Outgoing, channel: str, now: float) -> bool:
        """An earlier send of `message` may have reached the carrier. Within the grace period
        the task waits for the delivery report (matched by our ref, or the carrier's id), which
        settles it; after it, SMSBRIDGE_AMBIGUOUS_ACTION: `fail` fails it, `resend` sends it
        again. True when this step is over (it waits, or failed it); False: send it now."""
        since = message.ambiguous_since
        assert since is not None
        until = since + self.config.ambiguous_grace
        if now < until:

            def wait(conn: sqlite3.Connection) -> None:
                outgoing.attempt_over_in(conn, message, ambiguous_since=since)
                tasks.release_in(conn, task, now, until)

            await self.store.write(wait)
            event(log, "outgoing_ambiguous_wait", message=message.ref, channel=channel, until=until)
            return True
        event(
            log,
            "outgoing_ambiguous_expired",
            logging.WARNING,
            message=message.ref,
            channel=channel,
            action=self.config.ambiguous_action,
        )
        if self.config.ambiguous_action == FAIL:
            self.on_ambiguous(channel, FAILED)
            await self._fail(
                task, message, "ambiguous: no delivery report in the grace period", now
            )
            return True
        self.on_ambiguous(channel, RESENT)
        return False

    async def _settled(self, task: Task, message: Outgoing) -> None:
        """A delivery report settled an ambiguous send: it reached the carrier. Done."""

        def job(conn: sqlite3.Connection) -> None:
            outgoing.attempt_over_in(conn, message)
            tasks.done_in(conn, task)

        await self.store.write(job)
        self.on_ambiguous(message.attempt_channel or message.channel or "none", SETTLED)
        event(log, "outgoing_ambiguous_settled", message=message.ref, state=message.state.value)

    async def _await_phone(self, task: Task, message: Outgoing, channel: str, now: float) -> None:
        """A phone will pull it. The task waits for the TTL: it ends as soon as a phone reports
        on the SMS (outbound/phones.py `updates_in`, in that report's transaction); if no phone
        has by then, it comes back and the SMS expires."""
        await self._move_and_release(
            task, message, channel, now, message.created_at + self.config.ttl
        )
        self.on_report()

    def _loop_verdict(self, message: Outgoing, now: float) -> str | None:
        limits = self.config.limits
        same = outgoing.count_same_text(self.store, message, now - limits.loop_window)
        inbound = 0
        if message.automatic and limits.autoreply_burst:
            inbound = incoming.count_from(self.store, message.to, now - BURST_WINDOW)
        return verdict(
            limits, same_text_sent=same, inbound_last_minute=inbound, automatic=message.automatic
        )

    # -- delivery reports ----------------------------------------------------------------------

    async def delivery_reports(
        self, updates: Sequence[StatusUpdate], now: float, *, carrier: str | None = None
    ) -> int:
        """A carrier's status webhook, before its 2xx: every report stored in one transaction;
        returns how many named a message we know. With `carrier` (the endpoint's), a webhook
        whose status the carrier's table lacks (no update) and reports naming no SMS we know
        (yet: one may overtake its send response) are logged and counted."""
        matched = 0
        if updates:
            matched = int(
                await self._write(
                    lambda c: delivery.delivery_reports_in(c, updates, now), rerunnable=True
                )
            )
        if carrier is None:
            return matched
        if not updates:
            self.on_unknown_reports(carrier, "status", 1)
            event(log, "delivery_report_unknown_status", logging.WARNING, carrier=carrier)
        elif matched < len(updates):
            self.on_unknown_reports(carrier, "id", len(updates) - matched)
            event(
                log,
                "delivery_report_unknown_id",
                logging.INFO,  # also a report that overtook its send response: kept
                carrier=carrier,
                reports=len(updates),
                unmatched=len(updates) - matched,
                ids=",".join(u.external_id for u in updates if u.external_id)[:200] or None,
            )
        return matched

    # -- cht-gateway phones --------------------------------------------------------------------

    async def phone_exchange(
        self, user: str, exchange: chtgateway.Exchange, now: float
    ) -> list[tuple[str, str, str]]:
        """A phone's poll: its received SMS into the inbound pipeline, its status updates
        applied, then the SMS routed to it (up to the batch size and its channel's rate)."""
        if exchange.messages and self.accept_inbound is not None:
            await self.accept_inbound(exchange.messages, now)
        if exchange.updates:
            await self._write(
                lambda c: phones.updates_in(c, self.routes, user, exchange.updates, now)
            )
        ttl, batch = self.config.ttl, self.config.phone_batch
        return await self.store.write(
            lambda c: phones.hand_out_in(c, self.limiter, user, now, ttl=ttl, batch=batch)
        )
