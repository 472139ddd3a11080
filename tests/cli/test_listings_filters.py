"""`inbox ls` / `outbox ls`: a filter value that can match nothing exits 2 naming what it accepts
(instead of an empty listing that looks like "all clear"), and `outbox ls --reveal` shows the
SMS text in the table, as `inbox ls --reveal` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smsbridge.cli.main import main
from smsbridge.outbound import messages as outgoing
from smsbridge.store import Store
from tests.cli.test_listings import NOW, database  # noqa: F401  (the fixture)


def _outgoing(path: Path, *rows: tuple[str, str, str]) -> None:
    """Outgoing SMS (ref, channel, text) with their send tasks."""
    with Store(path) as store:

        def job(conn: Any) -> None:
            for ref, channel, text in rows:
                outgoing.insert_in(conn, ref, "+254700000333", text, NOW - 600)
                conn.execute("UPDATE outgoing SET channel = ? WHERE ref = ?", (channel, ref))

        store.write_sync(job)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["outbox", "ls", "--kind", "sned"], "--kind: unknown task kind 'sned'"),
        (["outbox", "ls", "--kind", "Send"], "--kind: unknown task kind 'Send'"),
        (["outbox", "ls", "--channel", "twillio"], "--channel: unknown carrier 'twillio'"),
        (["outbox", "ls", "--channel", "phone:kampala"], "--channel: unknown carrier 'phone'"),
        (["inbox", "ls", "--carrier", "twillio"], "--carrier: unknown carrier 'twillio'"),
        (["inbox", "ls", "--carrier", "chtgateway:kampala"], "unknown carrier 'chtgateway:k"),
        (["outbox", "ls", "--state", "Dead"], "--state: unknown state 'Dead'"),
        (["inbox", "ls", "--state", "done"], "--state: unknown state 'done'"),
    ],
)
def test_a_filter_that_can_match_nothing_exits_2_naming_the_accepted_values(
    database: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    says: str,
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert says in captured.err
    if "--kind" in args:
        assert "(one of assemble, send, submit)" in captured.err
    elif "--state" not in args:
        assert "africastalking, chtgateway, generic, kannel, rapidpro, twilio, vonage" in (
            captured.err
        )


def test_accepted_filter_values_still_list(
    database: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _outgoing(database, ("cht-p", "chtgateway:kampala", "Via the phone"))

    def refs(*args: str) -> list[Any]:
        assert main([*args, "--json"]) == 0, capsys.readouterr().err
        return [r.get("ref", r.get("carrier")) for r in json.loads(capsys.readouterr().out)]

    assert refs("outbox", "ls", "--channel", "chtgateway:kampala") == ["cht-p"]
    assert refs("outbox", "ls", "--channel", "chtgateway:other") == []  # a phone: any user
    assert refs("outbox", "ls", "--channel", "vonage") == []  # known, just nothing on it
    assert refs("outbox", "ls", "--kind", "assemble") == []
    assert refs("inbox", "ls", "--carrier", "twilio") == ["twilio"]


def test_outbox_ls_reveal_shows_the_text_column(
    database: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _outgoing(database, ("cht-t", "twilio", "Bring the child on Monday"))
    assert main(["outbox", "ls", "--kind", "send"]) == 0
    hidden = capsys.readouterr().out
    assert "TEXT" not in hidden.splitlines()[0] and "Bring the child" not in hidden
    assert main(["outbox", "ls", "--reveal"]) == 0
    header, _rule, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.split()[-1] == "TEXT"
    (sms_row,) = [row for row in rows if "cht-t" in row]
    assert sms_row.endswith("Bring the child on Monday")
    assert "+254700000333" in sms_row  # revealed: the number too
    assert main(["outbox", "ls", "--reveal", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["kind"]: r["text"] for r in listed} == {
        "submit": None,  # a task about an inbound SMS: no outgoing text
        "send": "Bring the child on Monday",
    }
