"""The outbound steps: send one queued SMS (a `send` task), hand SMS to cht-gateway phones and
take their reports, and take carriers' delivery reports.

    OutboundPipeline.run_once(now)                  claim one `send` task and run it
    OutboundPipeline.phone_exchange(user, ex, now)  a phone's POST /api/sms
    OutboundPipeline.delivery_reports(updates, now) a carrier's status webhook, before its 2xx

Sending one SMS: TTL (older than SMSBRIDGE_MESSAGE_TTL: failed "expired", never sent) → loop
guard (held) → route (the message's current channel, else the route's first) → rate (a slot is
booked on the channel's token bucket; the worker waits for a slot up to `hold` seconds away,
else the task comes back at its slot) → the carrier's `send` → accepted (SENT, the carrier's id,
the task done: one transaction). A RetryableError marks it SENDING (it may have left) and
retries with backoff (the task queue's policy; a carrier's Retry-After is honoured); a
PermanentError (or AuthFailure: that channel is unusable) hands the SMS to the route's next
channel; with none left a permanent failure fails it with the carrier's
reason (an auth failure keeps retrying: an operator can fix credentials). Given-up tasks wait
in the dead-letter list (`smsbridge outbox retry/drop`). Each outcome — the SMS's new state or
channel together with its task done, retried or put back — is one write job.

A task may run twice (a lease expired mid-send): a message already SENT or final is not sent
again, so only a send whose response was lost can repeat — and carriers that echo our ref
(Twilio's StatusCallback `?ref=`, Vonage `client-ref`, generic `id`) usually report it first.
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
from smsbridge.outbound import delivery, phones, transitions
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.loopguard import BURST_WINDOW, LoopLimits, verdict
from smsbridge.outbound.messages import SEND, Outgoing
from smsbridge.outbound.ratelimit import RateLimiter
from smsbridge.outbound.routing import Routes, channel_carrier
from smsbridge.outbound.transitions import Change
from smsbridge.settings import Settings
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, StatusUpdate
from smsbridge.store import Store
from smsbridge.tasks import Task, TaskQueue

log = logging.getLogger(__name__)

SLOT = "slot"  # task memo: a rate slot was booked for this attempt

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

    @classmethod
    def from_settings(cls, settings: Settings, *, hold: float = 0.0) -> OutboundConfig:
        batch = settings.carrier_setting(chtgateway.NAME, "batch") or "25"
        return cls(
            settings.message_ttl,
            settings.lease_seconds,
            LoopLimits.from_settings(settings),
            max(1, int(batch)),
            hold,
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
        accept_inbound: AcceptInbound | None = None,
        on_report: Callable[[], None] = lambda: None,
        on_send: Callable[[str, float], None] | None = None,
        on_changes: Callable[[Sequence[Change]], None] | None = None,
    ) -> None:
        """`accept_inbound`: where SMS a phone received go (the service's `accept`);
        `on_report`: wakes the CHT sync (a state is owed to CHT); `on_send`: a send's duration
        by channel; `on_changes`: the state changes once committed (the metrics)."""
        self.store = store
        self.outbox = outbox
        self.config = config
        self.routes = routes
        self.limiter = limiter
        self.http = http
        self.carriers = carriers
        self.configs = configs
        self.accept_inbound = accept_inbound
        self.on_report = on_report
        self.on_send = on_send
        self.on_changes = on_changes

    async def _write(self, job: Callable[[sqlite3.Connection], Any], **log_fields: Any) -> Any:
        """Run `job`; once committed, log the state changes it made (with `log_fields`), feed
        them to the metrics and wake the CHT sync loop."""
        result = await transitions.write(self.store, job, on_changes=self.on_changes, **log_fields)
        self.on_report()
        return result

    # -- sending -------------------------------------------------------------------------------

    async def run_once(self, now: float) -> bool:
        """Claim one due send task and run it; False when there is nothing to do."""
        task = await self.outbox.claim([SEND], now, self.config.lease, order="due")
        if task is None:
            return False
        await self.send_sms(task, now)
        return True

    async def send_sms(self, task: Task, now: float) -> None:
        message = outgoing.get(self.store, task.ref)
        if (
            message is None
            or message.state in outgoing.FINAL
            or message.state in (DeliveryState.SENT, DeliveryState.HELD)
        ):
            await self.outbox.done(task)
            return
        on_phone = message.channel is not None and channel_carrier(message.channel) == "chtgateway"
        if on_phone and message.phone_ack:
            await self.outbox.done(task)  # the phone has it and reports on it
            return
        if now - message.created_at >= self.config.ttl:
            await self._fail(task, message, "expired", now)
            return
        if message.channel is None and not message.released:
            why = self._loop_verdict(message, now)
            if why is not None:

                def hold(conn: sqlite3.Connection) -> None:
                    outgoing.hold_in(conn, message, why, now)
                    tasks.done_in(conn, task)

                await self._write(hold)  # logged as outgoing_held
                return
        channel = message.channel or self.routes.next_channel(message.to, None)
        if channel is None:
            await self._fail(task, message, "no route", now)
            return
        if channel_carrier(channel) == "chtgateway":
            await self._await_phone(task, message, channel, now)
            return
        if task.memo != SLOT:
            slot = self.limiter.reserve(channel, message.segments, now)
            if slot - now > self.config.hold:
                await self._move_and_release(task, message, channel, now, slot, memo=SLOT)
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
        started = time.perf_counter()
        try:
            # Finish well inside the lease: once it expires another worker may claim the task
            # and send the SMS again while this request is still in flight.
            async with asyncio.timeout(self.config.lease * 0.8):
                result = await sender.send(self.http, config, sms)
        except TimeoutError:
            exc = RetryableError(f"{carrier}: the send outlasted its lease", code="timeout")
            await self._retry_send(task, message, channel, exc, now)
            return
        except RetryableError as exc:
            await self._retry_send(task, message, channel, exc, now)
            return
        except (PermanentError, AuthFailure) as exc:
            await self._next_channel(task, message, channel, exc, now)
            return
        if self.on_send is not None:
            self.on_send(channel, time.perf_counter() - started)

        def accepted(conn: sqlite3.Connection) -> None:
            delivery.accepted_in(
                conn, message.ref, channel, result.carrier, result.external_id, result.state, now
            )
            tasks.done_in(conn, task)

        await self._write(accepted, attempt=task.attempts)  # logged as outgoing_sent

    async def _retry_send(
        self, task: Task, message: Outgoing, channel: str, exc: RetryableError, now: float
    ) -> None:
        """The send failed for now: the SMS is `sending` (it may have left); try again later
        (or give up). One transaction."""

        def job(conn: sqlite3.Connection) -> float | None:
            delivery.tried_in(conn, message.ref, channel, now)
            return self.outbox.retry_in(
                conn, task, now, exc.detail or exc.code, retry_after=exc.retry_after
            )

        due = await self._write(job, attempt=task.attempts)
        self.outbox.retried(task, due)
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
        following = self.routes.next_channel(message.to, channel)
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
            await self.outbox.retry_later(task, now, exc.detail or exc.code)
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
    ) -> None:
        """The SMS goes to `channel`, and its task comes back at `not_before` without counting
        this attempt: one transaction."""

        def job(conn: sqlite3.Connection) -> None:
            outgoing.move_to_channel_in(conn, message, channel, now)
            tasks.release_in(conn, task, now, not_before, memo=memo)

        await self.store.write(job)

    async def _fail(self, task: Task, message: Outgoing, reason: str, now: float) -> None:
        def job(conn: sqlite3.Connection) -> None:
            current = outgoing.get_in(conn, message.ref) or message
            outgoing.advance_in(conn, current, DeliveryState.FAILED, now, reason=reason)
            tasks.done_in(conn, task)

        await self._write(job, attempt=task.attempts)

    async def _await_phone(self, task: Task, message: Outgoing, channel: str, now: float) -> None:
        """A phone will pull it. The task comes back when the TTL runs out: if no phone has
        taken it by then, it expires."""
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

    async def delivery_reports(self, updates: Sequence[StatusUpdate], now: float) -> int:
        """A carrier's status webhook, before its 2xx: every report stored in one transaction;
        returns how many named a message we know."""
        if not updates:
            return 0
        return int(await self._write(lambda c: delivery.delivery_reports_in(c, updates, now)))

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
