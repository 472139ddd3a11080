"""Webhooks accepted together (smsbridge/inbound/groups.py `AcceptGroups`): the inbound SMS
of all the webhooks that arrive in one turn of the event loop are stored by ONE write job, yet
each webhook is answered only once its own messages are committed, each message is stored once
(a carrier's retry within the same group included), and a webhook that cannot be stored fails
alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from smsbridge.inbound.groups import AcceptGroups
from smsbridge.inbound.messages import Accepted
from smsbridge.sms import InboundSms
from smsbridge.store import ROWS_PER_INSERT, open_store
from tests.conftest import inject_crash

AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def sms(
    external_id: str | None, text: str = "P 12 Jane", sender: str = "+254712345678"
) -> InboundSms:
    return InboundSms("generic", external_id, sender, text, AT)


def stored(store: Any) -> list[tuple[str | None, str]]:
    """(external id, uuid) of every stored message, read on a connection of its own: only
    what is committed."""
    rows = store.query("SELECT external_id, uuid FROM messages ORDER BY id")
    return [(r[0], r[1]) for r in rows]


def submit_tasks(store: Any) -> list[str]:
    return [r[0] for r in store.query("SELECT ref FROM tasks WHERE kind = 'submit' ORDER BY id")]


def test_webhooks_of_one_loop_turn_are_stored_by_one_job_and_each_answered_after_commit(
    database: Path | str,
) -> None:
    with open_store(database) as store:
        groups = AcceptGroups(store, dedup_window=60.0)
        seen_at_answer: dict[str, list[str | None]] = {}

        async def webhook(name: str, messages: list[InboundSms]) -> list[Accepted]:
            accepted = await groups.accept(messages, 1000.0)
            # answered: what this webhook brought is committed (another connection sees it)
            seen_at_answer[name] = [external_id for external_id, _ in stored(store)]
            return accepted

        async def one_turn() -> list[list[Accepted]]:
            jobs = store.jobs_done
            answers = await asyncio.gather(
                webhook("a", [sms("a-1")]),
                webhook("b", [sms("b-1", "P 13 Mary"), sms("b-2", "P 14 Ann")]),
                webhook("c", [sms(None, "no id: deduplicated by its text")]),
                webhook("retry", [sms("a-1")]),  # the carrier's retry of "a", same group
            )
            assert store.jobs_done == jobs + 1  # one write job for the four webhooks
            return answers

        a, b, c, retry = asyncio.run(one_turn())

        rows = stored(store)
        assert sorted(str(external_id) for external_id, _ in rows) == [
            "None",
            "a-1",
            "b-1",
            "b-2",
        ]  # each once: the retry stored nothing more
        assert [x.duplicate for x in a + b + c] == [False, False, False, False]
        assert retry[0].duplicate and retry[0].uuid == a[0].uuid
        assert sorted(submit_tasks(store)) == sorted(uuid for _, uuid in rows)  # one task each
        for name, mine in (("a", ["a-1"]), ("b", ["b-1", "b-2"]), ("retry", ["a-1"])):
            assert set(mine) <= set(seen_at_answer[name]), name
        assert None in seen_at_answer["c"]


def test_a_webhook_that_cannot_be_stored_fails_alone(database: Path | str) -> None:
    with open_store(database) as store:
        inject_crash(store, "messages", "NEW.external_id = 'poison'", on="INSERT")
        groups = AcceptGroups(store, dedup_window=60.0)

        async def one_turn() -> list[list[Accepted] | BaseException]:
            return await asyncio.gather(
                groups.accept([sms("ok-1")], 1000.0),
                groups.accept([sms("poison", "P 15 Eve")], 1000.0),
                groups.accept([sms("ok-2", "P 16 Zoe")], 1000.0),
                return_exceptions=True,
            )

        ok1, poisoned, ok2 = asyncio.run(one_turn())

        assert isinstance(poisoned, Exception)
        assert "injected crash" in str(poisoned)
        assert isinstance(ok1, list) and isinstance(ok2, list)
        assert not ok1[0].duplicate and not ok2[0].duplicate
        assert sorted(str(external_id) for external_id, _ in stored(store)) == ["ok-1", "ok-2"]
        assert len(submit_tasks(store)) == 2


# more webhooks than one INSERT statement takes rows (store.py `insert_rows`): several chunks
@pytest.mark.parametrize("webhooks", [1, 40, 2 * ROWS_PER_INSERT + 7])
def test_every_caller_of_a_group_hears_its_own_messages(
    database: Path | str, webhooks: int
) -> None:
    with open_store(database) as store:
        groups = AcceptGroups(store, dedup_window=60.0)

        async def one_turn() -> list[list[Accepted]]:
            return await asyncio.gather(
                *(groups.accept([sms(f"m-{i}", f"P {i} Jane")], 1000.0) for i in range(webhooks))
            )

        answers = asyncio.run(one_turn())
        by_id = dict(stored(store))
        assert [answer[0].uuid for answer in answers] == [by_id[f"m-{i}"] for i in range(webhooks)]
        assert len(by_id) == webhooks
        assert sorted(submit_tasks(store)) == sorted(by_id.values())  # a task each, no more


def test_webhooks_that_come_while_the_writer_is_busy_share_the_next_job(
    database: Path | str,
) -> None:
    with open_store(database) as store:
        groups = AcceptGroups(store, dedup_window=60.0)
        busy = threading.Event()

        async def flow() -> list[list[Accepted]]:
            jobs = store.jobs_done
            blocker = asyncio.ensure_future(store.write(lambda c: busy.wait(10)))
            await asyncio.sleep(0.05)  # the writer is inside the blocker's job
            webhooks = []
            for i in range(5):  # one per turn of the loop, none of them stored yet
                webhooks.append(asyncio.ensure_future(groups.accept([sms(f"w-{i}")], 1000.0)))
                await asyncio.sleep(0.01)
            busy.set()
            answers = await asyncio.gather(*webhooks)
            await blocker
            assert store.jobs_done == jobs + 2  # the blocker, and ONE job for the five
            return answers

        answers = asyncio.run(flow())
        by_id = dict(stored(store))
        assert [a[0].uuid for a in answers] == [by_id[f"w-{i}"] for i in range(5)]


def test_message_ids_are_time_ordered_uuids(database: Path | str) -> None:
    with open_store(database) as store:
        groups = AcceptGroups(store, dedup_window=60.0)

        async def one_by_one() -> list[str]:
            ids = []
            for i in range(4):
                ids.append((await groups.accept([sms(f"t-{i}")], 1000.0))[0].uuid)
                await asyncio.sleep(0.003)  # a later millisecond
            return ids

        ids = asyncio.run(one_by_one())
        assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)
        assert ids == sorted(ids)  # each after the one before: new rows at the indexes' end
        assert abs(int(ids[0].replace("-", "")[:12], 16) / 1000 - time.time()) < 60
