"""The inbound steps: accept an SMS (store it and its task, in one transaction) and submit it
to CHT (a worker step, safe to run twice).

    accept_inbound(store, messages, now, dedup_window)   the webhook's step, before its 2xx
    InboundPipeline.submit_report(task, now)               the worker's step, for a `submit` task

submit_report: resolve the sender (contacts-by-phone, cached), parse with CHT's form
definitions, then
  - a known form -> POST /api/v2/records (JSON; `_meta.reported_date` = when the SMS arrived,
    `_meta.message` = the raw text, `_meta.gateway_ref` = our message id);
  - anything else -> POST /api/sms as a gateway message whose id is our message id (CHT drops
    ids it has seen, so this is idempotent);
  - a text CHT's own parser would crash on -> not submitted; the sender gets a reply and the
    task waits in the dead-letter list with the reason.

/api/v2/records is not idempotent. When an earlier attempt at a report may have reached CHT (a
timeout or dropped connection after the request was sent, or a crash mid-call), the retry first
asks CHT's messages_by_gateway_ref view (the one CHT's /api/sms de-duplicates with) whether a
record holds our id as `gateway_ref`: if one does, the message is done with that record's id;
if none does, the report is posted again, still dated when the SMS arrived. Only a CHT user who
may not query the view (an offline user) falls back to sending the SMS through /api/sms with
the same id (CHT drops it if the first attempt got through, else parses it itself, and the
report is then dated when CHT processed it). docs/cht-records.md has the evidence.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from smsbridge import phone, tasks
from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.cht.breaker import ChtApi, ChtGate
from smsbridge.cht.contacts import ContactCache
from smsbridge.errors import AuthFailure, FormError, PermanentError, RetryableError
from smsbridge.inbound.groups import AcceptGroups
from smsbridge.inbound.messages import (
    ASSEMBLE,
    SUBMIT,
    Accepted,
    Message,
    accept_in,
    assemble_in,
    gateway_message,
    get_message,
    mark_dead_in,
    record_body,
    reject_in,
    set_outcome_in,
)
from smsbridge.logs import event
from smsbridge.settings import Settings
from smsbridge.sms import InboundSms
from smsbridge.smsparser.parser import ParseOptions, Report, parse_sms
from smsbridge.store import Store
from smsbridge.tasks import Task, TaskQueue

log = logging.getLogger(__name__)

NOT_SENT = "not_sent"  # memo: the last attempt certainly did not reach CHT
MAYBE_SENT = "maybe_sent"  # memo: the last attempt may have created a record in CHT

# The FormErrors of parse_sms that CHT handles itself (it stores the message, with its own
# error and reply). Every other FormError is a text on which CHT's own parser would throw (its
# request would fail and nothing would be stored): we reply to the sender instead of submitting.
HANDLED_BY_CHT = frozenset({"sys.empty", "sys.form_not_found"})

# Retryable failures that mean CHT itself is down or overloaded: all CHT work waits for the
# retry (the backlog then drains in arrival order). Any other retryable failure (a bare 500,
# which may be CHT failing on this one message) backs off only its own task, so one poison
# message never holds up the others.
CHT_DOWN = frozenset(
    {
        "cht_unreachable",
        "cht_timeout",
        "cht_connection_lost",
        "cht_unavailable",
        "cht_rate_limited",
        "cht_starting",
        "no_forms",
    }
)

UNKNOWN_SENDER_REPLY = (
    "Your phone number is not registered. Please ask your supervisor to add it before "
    "sending reports."
)


# -- accept: the webhook's step ------------------------------------------------------------------


async def accept_inbound(
    store: Store,
    messages: Sequence[InboundSms],
    now: float,
    dedup_window: float,
    *,
    groups: AcceptGroups | None = None,
    sender: Callable[[str], str] | None = None,
) -> list[Accepted]:
    """Store `messages` and their submit tasks in one transaction; returns once committed and
    on disk (group commit with concurrent callers). Only then may the carrier hear 2xx.
    `groups`: with the messages of concurrent webhooks, in one write job (the service's).
    `sender`: each sender as it is stored, from the carrier's (the service's: as CHT keeps it,
    `ChtSettingsCache.sender`, so a national `0712345678` is stored as the `+254712345678` CHT
    replies to, and the reply channel, the reply lane and the loop guard find it)."""
    if not messages:
        return []
    if sender is not None:
        messages = [
            sms if (kept := sender(sms.sender)) == sms.sender else replace(sms, sender=kept)
            for sms in messages
        ]
    if groups is not None:
        accepted = await groups.accept(messages, now)
    else:
        accepted = await store.write(
            lambda c: accept_in(c, messages, now, dedup_window), rerunnable=True
        )
    log_accepted(messages, accepted)
    return accepted


def log_accepted(messages: Sequence[InboundSms], accepted: Sequence[Accepted]) -> None:
    """One line per SMS, once committed: a new message at INFO (`state=received`), a part of a
    long SMS at INFO, a carrier's retry of one already stored at DEBUG. No extra reads."""
    if not log.isEnabledFor(logging.INFO):
        return
    for sms, a in zip(messages, accepted, strict=True):
        if a.duplicate:
            event(
                log,
                "inbound_duplicate",
                logging.DEBUG,
                carrier=sms.carrier,
                message=a.uuid,
                external_id=sms.external_id,
            )
        else:
            event(
                log,
                "inbound_part_accepted" if a.uuid.startswith("part-") else "inbound_accepted",
                carrier=sms.carrier,
                message=a.uuid,
                external_id=sms.external_id,
                sender=sms.sender,  # masked by `event`
                state="received",
            )


# -- submit: the worker's step -------------------------------------------------------------------


ReplyHook = Callable[[sqlite3.Connection, str, str, str, float], object]
"""(conn, to, text, message uuid, now): queue an outgoing SMS inside the current write job
(its result is ignored; `outgoing.reply_in` is the service's)."""
OutgoingHook = Callable[[list[dict[str, Any]]], Awaitable[None]]
"""Called with the outgoing messages CHT handed back on a relay exchange."""


def _maybe_reached_peer(exc: RetryableError) -> bool:
    """Could the failed request have been processed by CHT? A failure to connect proves it was
    not, and so does an error status (5xx, 429: CHT answered without creating anything); a
    timeout, a dropped connection or a 2xx we could not read may have created the record."""
    if exc.code == "cht_unreachable":
        return False
    return exc.status is None or 200 <= exc.status < 300


@dataclass
class _Attempt:
    posted_record: bool = False  # a POST /api/v2/records was started in this attempt


class InboundPipeline:
    """The worker's side of inbound SMS: runs `submit` tasks (and `assemble` tasks for long SMS
    whose parts stopped arriving) against CHT, one claimed task at a time."""

    def __init__(
        self,
        store: Store,
        outbox: TaskQueue,
        cht: ChtApi,
        settings: Settings,
        cht_settings: ChtSettingsCache,
        *,
        gate: ChtGate | None = None,
        reply_hook: ReplyHook | None = None,
        outgoing_hook: OutgoingHook | None = None,
        on_accepted: Callable[[], None] | None = None,
    ) -> None:
        """`reply_hook` queues a reply to the sender inside a write job; `outgoing_hook` takes
        the SMS CHT hands back on a relay; `on_accepted()` is told each time CHT has taken
        a report or a relayed SMS (its automatic reply is then due soon)."""
        self.store = store
        self.outbox = outbox
        self.cht = cht
        self.settings = settings
        self.cht_settings = cht_settings
        self.gate = gate or ChtGate()
        self.contacts = ContactCache(settings.contact_cache_ttl)
        self.reply_hook = reply_hook
        self.outgoing_hook = outgoing_hook
        self.on_accepted = on_accepted

    # -- one task --------------------------------------------------------------------------------

    async def run_once(self, now: float) -> bool:
        """Claim one due inbound task (submit, or assemble a long SMS) and run it. False when
        there was nothing to do (or CHT work is paused)."""
        if not await self.gate.probe(self.cht, now) or not self.gate.open(now):
            return False
        task = await self.outbox.claim([SUBMIT, ASSEMBLE], now, self.settings.lease_seconds)
        if task is None:
            return False
        if task.kind == ASSEMBLE:
            await self.assemble(task, now)
        else:
            await self.submit_report(task, now)
        return True

    async def assemble(self, task: Task, now: float) -> None:
        """A long SMS whose last parts never came: join the parts that did (one message, with
        its submit task) so the health worker's report is not lost."""

        def job(conn: sqlite3.Connection) -> str | None:
            joined = assemble_in(conn, int(task.ref), now)
            tasks.done_in(conn, task)
            return joined

        joined = await self.store.write(job)
        if joined is not None:
            event(
                log,
                "inbound_parts_joined_incomplete",
                logging.WARNING,
                message=joined,
                state="received",
            )

    async def submit_report(self, task: Task, now: float) -> None:
        """Run one submit task to an outcome: done, retry later, paused, or dead-lettered."""
        message = get_message(self.store, task.ref)
        if message is None or message.state not in ("received", "dead"):  # dead: a replay
            await self.outbox.done(task)
            return
        maybe_sent = task.memo == MAYBE_SENT or (task.attempts > 1 and task.memo != NOT_SENT)
        attempt = _Attempt()
        try:
            # Finish well inside the lease, so no other worker can claim this task while this
            # attempt may still be talking to CHT.
            async with asyncio.timeout(self.settings.lease_seconds * 0.8):
                await self._submit(task, message, now, maybe_sent, attempt)
        except TimeoutError:
            await self._retry(
                task,
                message.uuid,
                now,
                "attempt took too long",
                memo=MAYBE_SENT if maybe_sent or attempt.posted_record else NOT_SENT,
                dead_reason="CHT too slow: attempt timed out",
                error="attempt_timeout",
            )
        except AuthFailure as exc:
            self.gate.auth_failure(exc.detail or exc.code, now)
            # A 401 created nothing, but an earlier attempt may have: keep what we know.
            await self.outbox.release(
                task,
                now,
                now + self.gate.auth_probe_interval,
                memo=MAYBE_SENT if maybe_sent else NOT_SENT,
            )
        except RetryableError as exc:
            reached = attempt.posted_record and _maybe_reached_peer(exc)
            due = await self._retry(
                task,
                message.uuid,
                now,
                f"{exc.code}: {exc.detail}",
                retry_after=exc.retry_after,
                memo=MAYBE_SENT if maybe_sent or reached else NOT_SENT,
                dead_reason=f"CHT unavailable: {exc.code}",
                error=exc.code,
                status=exc.status,
            )
            if due is not None and exc.code in CHT_DOWN:
                self.gate.back_off(due)  # everyone waits: keeps arrival order, spares CHT
        except PermanentError as exc:
            reason = f"CHT rejected the message: {exc.code}: {exc.detail}"
            # a refusal created nothing, but an earlier attempt may have: an operator's replay
            # must know it (TaskQueue.retry_dead keeps the memo)
            memo = MAYBE_SENT if maybe_sent else NOT_SENT
            await self.store.write(
                lambda c: self._dead_in(c, task, message.uuid, reason, now, memo)
            )
            event(
                log,
                "inbound_dead_letter",
                logging.WARNING,
                message=message.uuid,
                state="dead",
                attempt=task.attempts,
                error=exc.code,
                status=exc.status,
            )

    async def _submit(
        self, task: Task, message: Message, now: float, maybe_sent: bool, attempt: _Attempt
    ) -> None:
        cs = self.cht_settings
        if not cs.status()[0] and not await cs.refresh(self.cht, now):
            # Without CHT's form definitions a report would be mistaken for a plain message.
            raise RetryableError("form definitions not loaded from CHT yet", code="no_forms")
        # stored so already (accept_inbound), unless accepted before CHT's settings were known
        sender = cs.sender(message.sender)
        try:
            contact = await self.contacts.lookup(self.cht, sender, now)
        except PermanentError as exc:
            if self.settings.reject_unknown_senders:
                raise
            # Only needed to reject unknown senders; CHT links the report to its contact itself.
            event(
                log,
                "contact_lookup_failed",
                logging.WARNING,
                message=message.uuid,
                error=exc.code,
                status=exc.status,
            )
            contact = None
        if contact is None and self.settings.reject_unknown_senders:
            await self._reject(task, message, sender, "unknown sender", UNKNOWN_SENDER_REPLY, now)
            return
        options = ParseOptions(
            locale=cs.locale,
            settings_locale=cs.locale,
            timezone=self.settings.timezone,
            default_country_code=cs.default_country_code,
            phone_validation=cs.phone_validation,
            translations=cs.translations,
        )
        result = parse_sms(message.text, cs.forms, options)
        if isinstance(result, FormError) and result.code not in HANDLED_BY_CHT:
            reason = f"CHT's parser would fail on this text ({result.code}): {result.detail}"
            await self._reject(task, message, sender, reason, result.detail, now, dead=True)
            return
        earlier = (
            await self._earlier_records(message.uuid)
            if isinstance(result, Report) and maybe_sent
            else []
        )
        if isinstance(result, Report) and earlier is not None:
            if earlier:  # the earlier attempt did create it: not posted again
                doc_id = earlier[0]
            else:
                attempt.posted_record = True
                body = record_body(message, sender, result, cs.locale)
                doc_id = await self.cht.create_record(body)
            await self._finish(task, message.uuid, "submitted", form=result.code, doc_id=doc_id)
            self._accepted()
            event(
                log,
                "inbound_submitted",
                message=message.uuid,
                state="submitted",
                form=result.code,
                sender=phone.mask(sender),
                doc=doc_id,
                recheck=maybe_sent,
                attempt=task.attempts,
            )
            return
        await self._relay(message, sender)
        form = result.code if isinstance(result, Report) else None
        await self._finish(task, message.uuid, "relayed", form=form, doc_id=None)
        self._accepted()
        event(
            log,
            "inbound_relayed",
            message=message.uuid,
            state="relayed",
            sender=phone.mask(sender),
            recheck=maybe_sent,
            attempt=task.attempts,
        )

    def _accepted(self) -> None:
        if self.on_accepted is not None:
            self.on_accepted()

    async def _earlier_records(self, message_uuid: str) -> list[str] | None:
        """After an attempt that may have reached CHT: the records CHT holds with our id as
        `gateway_ref` (its messages_by_gateway_ref view), so a report is posted again only if
        none is there. None when this CHT user may not query the view (an offline user gets
        403): the SMS then goes through /api/sms, which CHT de-duplicates by the same view."""
        try:
            return await self.cht.records_by_gateway_ref(message_uuid)
        except PermanentError as exc:
            event(
                log,
                "inbound_recheck_by_relay",
                logging.WARNING,
                message=message_uuid,
                error=exc.code,
                status=exc.status,
            )
            return None

    async def _relay(self, message: Message, sender: str) -> None:
        outgoing = await self.cht.exchange_sms([gateway_message(message, sender)], [])
        if outgoing and self.outgoing_hook is not None:
            await self.outgoing_hook(outgoing)

    # -- outcomes --------------------------------------------------------------------------------

    async def _retry(
        self,
        task: Task,
        message_uuid: str,
        now: float,
        last_error: str,
        *,
        memo: str,
        dead_reason: str,
        retry_after: float | None = None,
        **log_fields: Any,
    ) -> float | None:
        """Put the task back for another attempt (when it is due), or, after its last attempt,
        give up and mark the message dead with `dead_reason`: one transaction either way."""

        def job(conn: sqlite3.Connection) -> float | None:
            due = self.outbox.retry_in(
                conn, task, now, last_error, retry_after=retry_after, memo=memo
            )
            if due is None:
                mark_dead_in(conn, message_uuid, dead_reason)
            return due

        due = await self.store.write(job)
        self.outbox.retried(task, due)
        event(
            log,
            "inbound_retry",
            logging.WARNING,
            message=message_uuid,
            state="received" if due is not None else "dead",
            attempts=task.attempts,
            **log_fields,
            gave_up=due is None,
        )
        return due

    async def _finish(
        self, task: Task, message_uuid: str, state: str, *, form: str | None, doc_id: str | None
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            set_outcome_in(conn, message_uuid, state, form=form, doc_id=doc_id)
            tasks.done_in(conn, task)

        await self.store.write(job)

    @staticmethod
    def _dead_in(
        conn: sqlite3.Connection,
        task: Task,
        message_uuid: str,
        reason: str,
        now: float,
        memo: str,
    ) -> None:
        mark_dead_in(conn, message_uuid, reason)
        tasks.give_up_in(conn, task, reason, now, memo)

    async def _reject(
        self,
        task: Task,
        message: Message,
        sender: str,
        reason: str,
        reply: str,
        now: float,
        *,
        dead: bool = False,
    ) -> None:
        """Do not submit: record why, queue `reply` to the sender, and finish the task (or, with
        `dead`, leave it in the dead-letter list so an operator can see and retry it)."""

        def job(conn: sqlite3.Connection) -> None:
            reject_in(conn, message.uuid, reason, reply, dead=dead)
            if self.reply_hook is not None and message.reply is None:  # once, not per replay
                self.reply_hook(conn, sender, reply, message.uuid, now)
            if dead:
                tasks.give_up_in(conn, task, reason, now)
            else:
                tasks.done_in(conn, task)

        await self.store.write(job)
        event(
            log,
            "inbound_rejected",
            logging.WARNING,
            message=message.uuid,
            state="dead" if dead else "rejected",
            reason=reason,
            sender=phone.mask(sender),
            dead_letter=dead,
            attempt=task.attempts,
        )
