"""The `messages` table's owner: outcomes recorded on a message."""

from __future__ import annotations

from pathlib import Path

from smsbridge.inbound import messages
from smsbridge.store import open_store


def test_a_replayed_dead_letter_that_reaches_cht_loses_its_old_failure_reason(
    database: Path | str,
) -> None:
    with open_store(database) as store:
        uuid = store.write_sync(
            lambda c: messages.insert_message_in(
                c, "generic", "x1", "+254712345678", None, "P 12 Jane", 0, 1.0
            )
        )
        store.write_sync(lambda c: messages.mark_dead_in(c, uuid, "CHT unavailable: cht_timeout"))
        assert messages.get_message(store, uuid).reason == "CHT unavailable: cht_timeout"
        store.write_sync(
            lambda c: messages.set_outcome_in(c, uuid, "submitted", form="P", doc_id="r1")
        )
        done = messages.get_message(store, uuid)
        assert (done.state, done.reason, done.cht_doc_id) == ("submitted", None, "r1")
