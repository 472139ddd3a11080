"""The inbound pipeline against the CHT simulator (a real HTTP server on 127.0.0.1): form
reports become records with the right fields, form, sender and reported_date; other texts are
relayed; CHT outages, dropped connections and 401s never lose or duplicate a report. Time is
passed in (`now`); nothing sleeps for a retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from smsbridge.carriers import load_settings
from smsbridge.cht.client import ChtClient
from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.demo_data import CHW_PHONES, GATEWAY_USER
from smsbridge.chtsim.medic_db import GATEWAY_REF_VIEW
from smsbridge.inbound.messages import SUBMIT, get_message
from smsbridge.inbound.submit import accept_inbound
from smsbridge.service import Service, build_service
from smsbridge.sms import InboundSms
from smsbridge.store import Store, open_store
from tests.conftest import CRASHED, inject_crash

ALICE = CHW_PHONES["chw-alice"]
T0 = 1_700_000_000.0  # "now" at the start of every scenario
RECEIVED = datetime(2023, 11, 14, 20, 0, 0, tzinfo=UTC)  # when the SMS reached the carrier


@dataclass
class Harness:
    sim: ChtSim
    store: Store
    service: Service
    now: float = T0

    async def receive(
        self,
        text: str,
        sender: str = ALICE,
        external_id: str | None = None,
        received: datetime = RECEIVED,
    ) -> str:
        sms = InboundSms("generic", external_id, sender, text, received)
        [accepted] = await accept_inbound(self.store, [sms], self.now, 120)
        return accepted.uuid

    async def run(self, limit: int = 50) -> int:
        """Run due tasks until none is left (at the current `now`); how many ran."""
        done = 0
        while done < limit and await self.service.inbound.run_once(self.now):
            done += 1
        return done

    def state(self, message_uuid: str) -> str:
        message = get_message(self.store, message_uuid)
        assert message is not None
        return message.state

    def due(self) -> float | None:
        rows = self.store.query(
            "SELECT MAX(not_before) FROM tasks WHERE kind = ? AND state = 'ready'", (SUBMIT,)
        )
        return rows[0][0]

    async def crash_after_creating_the_record(self) -> str:
        """ "P 12 Jane" arrives; a worker claims its task and creates the record in CHT, then
        dies before recording that it did (the task stays leased, its memo lost)."""
        message_id = await self.receive("P 12 Jane")
        task = await self.service.tasks.claim([SUBMIT], self.now, 60)
        assert task is not None
        await self.service.cht.create_record(
            {
                "_meta": {"form": "P", "from": ALICE, "gateway_ref": message_id},
                "last_menstrual_period": 12,
                "patient_name": "Jane",
            }
        )
        return message_id

    def records_from(self, sender: str = ALICE) -> list[dict[str, Any]]:
        return [r for r in self.sim.records() if r.get("from") == sender]


Scenario = Callable[[Harness], Awaitable[None]]


Play = Callable[..., None]


@pytest.fixture
def play(database: Path | str, demo_sim: ChtSim, demo_cht_url: str) -> Play:
    """`play(scenario, **env)`: run `scenario` against a bridge (its store in tmp_path; workers
    driven by the scenario) talking to `demo_sim`, with extra SMSBRIDGE_* settings `env`. A
    second call is the same bridge restarted."""

    def run(scenario: Scenario, **env: str) -> None:
        settings = load_settings(
            {
                "SMSBRIDGE_DATABASE": str(database),
                "SMSBRIDGE_CHT_URL": demo_cht_url,
                "SMSBRIDGE_CHT_TIMEOUT": "2",
                **env,
            }
        )

        async def main() -> None:
            with open_store(settings.database) as store:
                async with ChtClient.from_settings(settings) as cht:
                    service = build_service(settings, store, cht, clock=lambda: T0)
                    harness = Harness(demo_sim, store, service)
                    await service.cht_settings.refresh(cht, harness.now)
                    await scenario(harness)

        asyncio.run(main())

    return run


def test_form_report_becomes_a_record_with_fields_form_sender_and_reported_date(play: Play) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.receive("P 12 Jane", sender="+254 712 345 678")
        assert await h.run() == 1
        assert h.state(message_id) == "submitted"
        [record] = h.records_from()
        assert record["form"] == "P"
        assert record["from"] == ALICE
        assert record["reported_date"] == int(RECEIVED.timestamp() * 1000)
        assert record["fields"] == {"last_menstrual_period": 12, "patient_name": "Jane"}
        assert record["sms_message"]["message"] == "P 12 Jane"
        assert record["sms_message"]["gateway_ref"] == message_id
        assert record["contact"]["_id"] == "chw-alice"
        message = get_message(h.store, message_id)
        assert message is not None and message.cht_doc_id == record["_id"]

    play(scenario)


def test_text_that_is_not_a_form_is_relayed_with_our_message_id(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.receive("Hello, the clinic is out of ORS")
        assert await h.run() == 1
        assert h.state(message_id) == "relayed"
        [record] = h.records_from()
        assert record["sms_message"]["gateway_ref"] == message_id
        assert record["sms_message"]["message"] == "Hello, the clinic is out of ORS"
        assert not record.get("form")
        assert demo_sim.request_count("/api/v2/records") == 0

    play(scenario)


def test_cht_failing_for_a_while_delivers_later_once(play: Play, demo_sim: ChtSim) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(3, 503, path="/api/v2/records")
        message_id = await h.receive("P 12 Jane")
        attempts = 0
        while h.state(message_id) == "received":
            attempts += 1
            assert attempts < 10
            await h.run()
            if h.state(message_id) == "received":
                # paused until the retry is due: nothing is tried before then
                assert await h.service.inbound.run_once(h.now) is False
                due = h.due()
                assert due is not None and due > h.now
                h.now = due
        assert attempts == 4
        assert h.state(message_id) == "submitted"
        assert len(h.records_from()) == 1
        assert demo_sim.request_count("/api/v2/records") == 4

    play(scenario)


def test_backoff_grows_and_the_backlog_drains_in_arrival_order(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(4, 503)
        ids = [await h.receive(f"P {10 + n} Mother{n}") for n in range(5)]
        delays = []
        for _ in range(4):
            await h.run()
            due = h.due()
            assert due is not None
            delays.append(due - h.now)
            h.now = due
        assert delays[0] < delays[-1]  # exponential (with jitter)
        await h.run()
        assert [h.state(i) for i in ids] == ["submitted"] * 5
        names = [r["fields"]["patient_name"] for r in h.records_from()]
        assert names == [f"Mother{n}" for n in range(5)]

    play(scenario, SMSBRIDGE_RETRY_BASE="5")


def test_connection_dropped_after_cht_created_the_record_still_one_report(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.drop_next(1, path="/api/v2/records")  # processed, then no answer
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "received"
        assert len(h.records_from()) == 1  # CHT did create it
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "submitted"  # found by its gateway_ref, not re-posted
        assert demo_sim.request_count("/api/v2/records") == 1
        assert demo_sim.request_count("/api/sms") == 0
        [record] = h.records_from()
        assert record["form"] == "P" and record["sms_message"]["gateway_ref"] == message_id
        assert record["reported_date"] == int(RECEIVED.timestamp() * 1000)
        assert get_message(h.store, message_id).cht_doc_id == record["_id"]  # type: ignore[union-attr]

    play(scenario)


def test_connection_dropped_on_a_relay_still_one_message(play: Play, demo_sim: ChtSim) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.drop_next(1, path="/api/sms")
        message_id = await h.receive("where is the nurse today")
        await h.run()
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "relayed"
        assert len(h.records_from()) == 1

    play(scenario)


def test_a_record_that_did_not_reach_cht_is_posted_again_as_a_record(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(1, 502, path="/api/v2/records")  # answered: nothing created
        message_id = await h.receive("P 12 Jane")
        await h.run()
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "submitted"  # a proper record, reported_date kept
        [record] = h.records_from()
        assert record["reported_date"] == int(RECEIVED.timestamp() * 1000)

    play(scenario)


def test_a_crashed_attempt_is_picked_up_after_its_lease_without_a_second_report(play: Play) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.crash_after_creating_the_record()
        assert await h.run() == 0  # still leased
        h.now += 61
        assert await h.run() == 1
        assert h.state(message_id) == "submitted"  # the record found by its gateway_ref
        assert len(h.records_from()) == 1

    play(scenario)


def test_a_401_after_a_crashed_attempt_still_rechecks_instead_of_posting_again(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.crash_after_creating_the_record()
        user, password = GATEWAY_USER
        demo_sim.set_password(user, "changed-by-admin")
        h.now += 61  # the lease expired; the retry meets a 401 and is put back
        await h.run()
        assert h.service.inbound.gate.paused_reason() is not None
        demo_sim.set_password(user, password)
        h.now += 61
        await h.run()
        assert h.state(message_id) == "submitted"  # re-checked by gateway_ref
        assert len(h.records_from()) == 1

    play(scenario)


def test_401_pauses_cht_work_and_reports_it_until_credentials_work(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        gate = h.service.inbound.gate
        user, _ = GATEWAY_USER
        demo_sim.set_password(user, "changed-by-admin")
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert gate.paused_reason() is not None
        assert h.state(message_id) == "received"
        calls = sum(
            demo_sim.request_count(p)
            for p in ("/api/v1/contacts-by-phone", "/api/v2/records", "/api/sms")
        )
        for _ in range(5):  # no hammering while paused
            assert await h.service.inbound.run_once(h.now) is False
            h.now += 10
        h.now += 60  # the probe is due, but the password is still wrong
        assert await h.service.inbound.run_once(h.now) is False
        # one probe each time one is due, backing off (smsbridge/cht/breaker.py): at +10 s
        # (due at +5), +20 (due at +5+10), +40 (due at +20+20), +110 (due at +40+40)
        assert demo_sim.request_count("/api/sms", "GET") == 4
        demo_sim.set_password(user, GATEWAY_USER[1])  # fixed
        h.now += 61
        await h.run()
        assert gate.paused_reason() is None
        assert h.state(message_id) == "submitted"
        later = sum(
            demo_sim.request_count(p)
            for p in ("/api/v1/contacts-by-phone", "/api/v2/records", "/api/sms")
        )
        assert later > calls
        [task_count] = h.store.query("SELECT COUNT(*) FROM tasks")[0]
        assert task_count == 0

    play(scenario)


def test_unknown_senders_are_accepted_by_default(play: Play) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.receive("P 12 Jane", sender="+254799999999")
        await h.run()
        assert h.state(message_id) == "submitted"
        assert len(h.records_from("+254799999999")) == 1

    play(scenario)


def test_unknown_senders_can_be_rejected_with_a_reply(play: Play) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.receive("P 12 Jane", sender="+254799999999")
        await h.run()
        assert h.state(message_id) == "rejected"
        message = get_message(h.store, message_id)
        assert message is not None and message.reason == "unknown sender"
        assert message.reply and "not registered" in message.reply
        assert h.records_from("+254799999999") == []
        replies = h.store.query("SELECT * FROM outgoing WHERE source = ?", (message_id,))
        assert len(replies) == 1 and replies[0]["to_number"] == "+254799999999"

    play(scenario, SMSBRIDGE_REJECT_UNKNOWN_SENDERS="true")


def test_contacts_are_looked_up_once_per_ttl(play: Play, demo_sim: ChtSim) -> None:
    async def scenario(h: Harness) -> None:
        await h.receive("P 12 Jane")
        await h.receive("P 13 Mary")
        await h.run()
        assert demo_sim.request_count("/api/v1/contacts-by-phone") == 1
        h.now += 601
        await h.receive("P 14 Ann")
        await h.run()
        assert demo_sim.request_count("/api/v1/contacts-by-phone") == 2

    play(scenario, SMSBRIDGE_CONTACT_CACHE_TTL="600")


def test_form_definitions_cached_in_sqlite_survive_a_restart_during_an_outage(
    play: Play, demo_sim: ChtSim
) -> None:
    async def first(h: Harness) -> None:
        assert "P" in h.service.cht_settings.forms

    play(first)
    demo_sim.faults.fail_next(100, 503, path="/api/v1/settings")

    async def after_restart(h: Harness) -> None:
        # (play's refresh failed: CHT is down for settings) - the cache still has the forms
        assert "P" in h.service.cht_settings.forms
        assert h.service.cht_settings.status()[0] is True
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "submitted"

    play(after_restart)


def test_replaying_a_dead_recheck_after_a_crash_does_not_post_the_record_again(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        message_id = await h.crash_after_creating_the_record()
        h.now += 61
        # the re-check is refused, and so is the fallback through /api/sms
        demo_sim.faults.fail_next(1, 400, path=GATEWAY_REF_VIEW)
        demo_sim.faults.fail_next(1, 400, path="/api/sms")
        await h.run()
        assert h.state(message_id) == "dead"
        [dead] = h.service.tasks.dead_letters()
        assert h.service.tasks.retry_dead(dead.id, h.now)  # an operator replays it
        await h.run()
        assert h.state(message_id) == "submitted"  # re-checked again, not posted again
        assert len(h.records_from()) == 1

    play(scenario)


def test_a_record_cht_refuses_outright_is_dead_lettered_with_the_reason(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(
            1,
            500,
            path="/api/v2/records",
            body={"code": 500, "error": "Server error", "details": "Form not found: P"},
        )
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "dead"
        [dead] = h.service.tasks.dead_letters()
        assert "Form not found" in (dead.dead_reason or "")
        # an operator fixes CHT and replays it
        assert h.service.tasks.retry_dead(dead.id, h.now)
        await h.run()
        assert len(h.records_from()) == 1

    play(scenario)


def test_a_text_chts_parser_would_crash_on_gets_a_reply_and_a_dead_letter(
    play: Play, demo_sim: ChtSim
) -> None:
    # a form whose field has no labels: CHT's textforms parser throws on a labelled message
    demo_sim.set_forms(
        {"X": {"meta": {"code": "X"}, "fields": {"a": {"type": "string", "position": 0}}}}
    )

    async def scenario(h: Harness) -> None:
        await h.service.cht_settings.refresh(h.service.cht, h.now)
        message_id = await h.receive("X#A#1")
        await h.run()
        assert h.state(message_id) == "dead"
        assert h.records_from() == []
        assert (
            demo_sim.request_count("/api/sms") == 0
            and demo_sim.request_count("/api/v2/records") == 0
        )
        [dead] = h.service.tasks.dead_letters()
        assert dead.ref == message_id and "form_definition" in (dead.dead_reason or "")
        message = get_message(h.store, message_id)
        assert message is not None and "no labels" in (message.reply or "")
        [reply] = h.store.query("SELECT * FROM outgoing WHERE source = ?", (message_id,))
        assert reply["to_number"] == ALICE and "no labels" in reply["content"]

    play(scenario)


def test_without_form_definitions_a_report_waits_instead_of_being_relayed(
    play: Play, demo_sim: ChtSim
) -> None:
    demo_sim.faults.fail_next(2, 503, path="/api/v1/settings")  # a fresh bridge, CHT starting

    async def scenario(h: Harness) -> None:
        assert h.service.cht_settings.status()[0] is False
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "received"
        assert demo_sim.request_count("/api/sms") == 0  # not mistaken for a plain message
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "submitted"
        assert h.records_from()[0]["form"] == "P"

    play(scenario)


def test_a_refused_contact_lookup_does_not_block_the_report(play: Play, demo_sim: ChtSim) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(1, 403, path="/api/v1/contacts-by-phone")
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "submitted"

    play(scenario)


def test_an_attempt_slower_than_its_lease_is_cut_short_and_not_duplicated(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        # CHT creates the record but answers only after our attempt deadline (0.8 x lease)
        demo_sim.faults.timeout_next(1, path="/api/v2/records", seconds=1.5, process=True)
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "received"
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "submitted"
        assert len(h.records_from()) == 1

    play(
        scenario,
        SMSBRIDGE_LEASE_SECONDS="1",
        SMSBRIDGE_CHT_TIMEOUT="5",
    )


def test_replaying_a_crash_dead_letter_does_not_reply_twice(play: Play, demo_sim: ChtSim) -> None:
    demo_sim.set_forms({"X": {"meta": {"code": "X"}, "fields": {"a": {"type": "string"}}}})

    async def scenario(h: Harness) -> None:
        await h.service.cht_settings.refresh(h.service.cht, h.now)
        message_id = await h.receive("X#A#1")
        await h.run()
        [dead] = h.service.tasks.dead_letters()
        assert h.service.tasks.retry_dead(dead.id, h.now)
        await h.run()
        assert h.state(message_id) == "dead"
        assert len(h.store.query("SELECT * FROM outgoing WHERE source = ?", (message_id,))) == 1

    play(scenario)


def test_forms_file_is_used_instead_of_chts_settings(
    tmp_path: Path, play: Play, demo_sim: ChtSim
) -> None:
    import json

    from smsbridge.chtsim.demo_data import FORMS

    forms_file = tmp_path / "forms.json"
    forms_file.write_text(json.dumps({"P": FORMS["P"]}))
    demo_sim.faults.fail_next(100, 503, path="/api/v1/settings")

    async def scenario(h: Harness) -> None:
        assert h.service.cht_settings.status()[0] is True
        assert list(h.service.cht_settings.forms) == ["P"]
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "submitted"
        assert h.records_from()[0]["fields"]["patient_name"] == "Jane"

    play(scenario, SMSBRIDGE_FORMS_FILE=str(forms_file))


def test_a_message_cht_keeps_failing_on_does_not_hold_up_the_others(
    play: Play, demo_sim: ChtSim
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.fail_next(1, 500, path="/api/v2/records")  # a bare 500: maybe this message
        first = await h.receive("P 12 Jane")
        second = await h.receive("P 13 Mary")
        await h.run()
        assert h.state(first) == "received"  # backing off on its own
        assert h.state(second) == "submitted"  # not stuck behind it
        h.now = h.due() or h.now
        await h.run()
        assert h.state(first) == "submitted"

    play(scenario)


def test_a_long_sms_missing_a_part_is_joined_and_submitted_after_the_wait(play: Play) -> None:
    from smsbridge.inbound.messages import PART_WAIT

    async def scenario(h: Harness) -> None:
        extra = {"concat-ref": "9", "concat-total": "2", "concat-part": "1"}
        sms = InboundSms("vonage", "v-1", ALICE, "P 12 Jane", RECEIVED, extra=extra)
        [accepted] = await accept_inbound(h.store, [sms], h.now, 120)
        assert not accepted.duplicate
        assert await h.run() == 0  # part 2 may still come
        h.now += PART_WAIT
        await h.run()
        [record] = h.records_from()
        assert record["fields"]["patient_name"] == "Jane"
        assert record["reported_date"] == int(RECEIVED.timestamp() * 1000)

    play(scenario)


def test_giving_up_and_marking_the_message_dead_are_one_transaction(
    play: Play, demo_sim: ChtSim
) -> None:
    """The last attempt fails: the task gives up AND the message is marked dead, or neither.
    The database refuses the message's write (a trigger, as a crash between two commits would):
    the task must not be left dead with its message still "received"."""

    async def scenario(h: Harness) -> None:
        lift = inject_crash(h.store, "messages", "NEW.state = 'dead'")
        demo_sim.faults.fail_next(1, 503, path="/api/v2/records")
        message_id = await h.receive("P 12 Jane")
        with pytest.raises(CRASHED, match="injected crash"):
            await h.service.inbound.run_once(h.now)
        assert h.state(message_id) == "received"
        assert h.service.tasks.dead_letters() == []  # the task did not give up on its own
        [task] = h.service.tasks.pending()
        assert task.ref == message_id and task.state == "leased"
        # the fault is gone; the lease runs out and the next worker (which re-checks by
        # gateway_ref: the record may have been created) meets CHT down again: the same outcome
        lift()
        demo_sim.faults.fail_next(1, 503, path=GATEWAY_REF_VIEW)
        h.now += h.service.settings.lease_seconds
        await h.run()
        assert h.state(message_id) == "dead"
        [dead] = h.service.tasks.dead_letters()
        assert dead.ref == message_id and (dead.dead_reason or "").startswith("gave up after 2")
        message = get_message(h.store, message_id)
        assert message is not None and message.reason == "CHT unavailable: cht_unavailable"

    play(scenario, SMSBRIDGE_MAX_ATTEMPTS="1")
