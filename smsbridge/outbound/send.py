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
retries with backoff (the outbox's policy; a carrier's Retry-After is honoured); a
PermanentError (or AuthFailure: that channel is unusable) hands the SMS to the route's next
channel; with none left a permanent failure fails it with the carrier's
reason (an auth failure keeps retrying: an operator can fix credentials). Given-up tasks wait
in the dead-letter list (`smsbridge outbox retry/drop`).

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
from types import ModuleType
from typing import Any

import httpx

from smsbridge.carriers import chtgateway
from smsbridge.carriers.base import CarrierConfig
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.logs import event
from smsbridge.outbound import delivery, phones, transitions
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound.loopguard import BURST_WINDOW, LoopLimits, verdict
from smsbridge.outbound.messages import SEND, Outgoing
from smsbridge.outbound.ratelimit import RateLimiter, parse_rates
from smsbridge.outbound.routing import Routes, channel_carrier
from smsbridge.outbound.transitions import Change
from smsbridge.settings import Settings
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, StatusUpdate
from smsbridge.store import Store
from smsbridge.tasks import TaskQueue, Task

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
    def from_settings(cls, settings: Settings) -> OutboundConfig:
        batch = settings.carrier_setting(chtgateway.NAME, "batch") or "25"
        return cls(
            settings.message_ttl,
            settings.lease_seconds,
            LoopLimits.from_settings(settings),
            max(1, int(batch)),
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
        carriers: Mapping[str, ModuleType],
        configs: Mapping[str, CarrierConfig],
        accept_inbound: AcceptInbound | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.config = config
        self.routes = routes
        self.limiter = limiter
        self.http = http
        self.carriers = carriers
        self.configs = configs
        self.accept_inbound = accept_inbound
        self.on_report: Callable[[], None] = lambda: None  # wakes the CHT sync loop
        # metrics (OPS): a send's duration by channel; the state changes once committed; new
        # inbound SMS from phones, by carrier
        self.on_send: Callable[[str, float], None] | None = None
        self.on_changes: Callable[[Sequence[Change]], None] | None = None
        self.on_inbound: Callable[[str, int], None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store,
        outbox: TaskQueue,
        *,
        http: httpx.AsyncClient,
        carriers: Mapping[str, ModuleType],
        configs: Mapping[str, CarrierConfig],
        accept_inbound: AcceptInbound | None = None,
    ) -> OutboundPipeline:
        return cls(
            store,
            outbox,
            config=OutboundConfig.from_settings(settings),
            routes=Routes.parse(settings.routes, settings.enabled_carriers),
            limiter=RateLimiter(parse_rates(settings.rates)),
            http=http,
            carriers=carriers,
            configs=configs,
            accept_inbound=accept_inbound,
        )

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
                    TaskQueue.done_in(conn, task)

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
                await self._set_channel(message, channel, now)
                await self.outbox.release(task, now, slot, memo=SLOT)
                return
            if slot > now:
                await asyncio.sleep(slot - now)
                now = slot
        await self._send(task, message, channel, now)

    async def _send(self, task: Task, message: Outgoing, channel: str, now: float) -> None:
        carrier = channel_carrier(channel)
        module = self.carriers.get(carrier)
        config = self.configs.get(carrier)
        if module is None or config is None or not hasattr(module, "send"):
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
                result = await module.send(self.http, config, sms)
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
            TaskQueue.done_in(conn, task)

        await self._write(accepted, attempt=task.attempts)  # logged as outgoing_sent

    async def _retry_send(
        self, task: Task, message: Outgoing, channel: str, exc: RetryableError, now: float
    ) -> None:
        """The send failed for now: the SMS is `sending` (it may have left); try again later."""
        await self._write(
            lambda c: delivery.tried_in(c, message.ref, channel, now), attempt=task.attempts
        )
        due = await self.outbox.retry_later(
            task, now, exc.detail or exc.code, retry_after=exc.retry_after
        )
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
            await self._set_channel(message, following, now)
            await self.outbox.release(task, now, now)
        elif isinstance(exc, AuthFailure):
            await self.outbox.retry_later(task, now, exc.detail or exc.code)
        else:
            await self._fail(task, message, exc.detail or exc.code, now)

    async def _set_channel(self, message: Outgoing, channel: str, now: float) -> None:
        if message.channel == channel:
            return
        await self.store.write(
            lambda c: c.execute(
                "UPDATE outgoing SET channel = ?, phone_ack = 0, updated_at = ? WHERE id = ?",
                (channel, now, message.id),
            )
        )

    async def _fail(self, task: Task, message: Outgoing, reason: str, now: float) -> None:
        def job(conn: sqlite3.Connection) -> None:
            current = outgoing.get_in(conn, message.ref) or message
            outgoing.advance_in(conn, current, DeliveryState.FAILED, now, reason=reason)
            TaskQueue.done_in(conn, task)

        await self._write(job, attempt=task.attempts)

    async def _await_phone(self, task: Task, message: Outgoing, channel: str, now: float) -> None:
        """A phone will pull it. The task comes back when the TTL runs out: if no phone has
        taken it by then, it expires."""
        await self._set_channel(message, channel, now)
        await self.outbox.release(task, now, message.created_at + self.config.ttl)
        self.on_report()

    def _loop_verdict(self, message: Outgoing, now: float) -> str | None:
        limits = self.config.limits
        same = self.store.query(
            "SELECT COUNT(*) FROM outgoing WHERE text_key = ? AND created_at >= ? AND id < ? "
            "AND state != ?",
            (message.text_key, now - limits.loop_window, message.id, DeliveryState.HELD.value),
        )[0][0]
        inbound = 0
        if message.automatic and limits.autoreply_burst:
            inbound = self.store.query(
                "SELECT COUNT(*) FROM messages WHERE sender = ? AND accepted_at >= ?",
                (message.to, int((now - BURST_WINDOW) * 1000)),
            )[0][0]
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
            accepted = await self.accept_inbound(exchange.messages, now)
            if self.on_inbound is not None:
                new = sum(1 for a in accepted or () if not a.duplicate)
                self.on_inbound(chtgateway.NAME, new)
        if exchange.updates:
            await self._write(
                lambda c: phones.updates_in(c, self.routes, user, exchange.updates, now)
            )
        ttl, batch = self.config.ttl, self.config.phone_batch
        return await self.store.write(
            lambda c: phones.hand_out_in(c, self.limiter, user, now, ttl=ttl, batch=batch)
        )
