"""`smsbridge inbox ls`, `outbox ls`, `outbox retry|drop`: readable tables, --json, filters,
dead-letter replay by id; bad usage exits 2."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from smsbridge.cli.main import main
from smsbridge.inbound.submit import accept_inbound
from smsbridge.sms import InboundSms
from smsbridge.store import Store
from smsbridge.tasks import TaskQueue

NOW = time.time()


def _sms(carrier: str, ext: str, sender: str, text: str) -> InboundSms:
    return InboundSms(carrier, ext, sender, text, datetime.fromtimestamp(NOW - 7200, UTC))


@pytest.fixture
def database(cli_database: Path) -> Iterator[Path]:
    path = cli_database
    with Store(path) as store:

        async def fill() -> None:
            await accept_inbound(
                store, [_sms("twilio", "SM1", "+254712345678", "P 12 Jane")], NOW - 7200, 120
            )
            await accept_inbound(
                store,
                [_sms("africastalking", "AT1", "+254700000111", "hello there")],
                NOW - 60,
                120,
            )
            box = TaskQueue(store)
            task = await box.claim(["submit"], NOW - 30, lease=60)
            assert task is not None
            await box.give_up(task, "CHT rejected the message: bad form", now=NOW - 30)

        asyncio.run(fill())
    yield path


def test_inbox_ls_is_a_table_with_masked_numbers_and_no_text(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inbox", "ls"]) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["ID", "RECEIVED", "AGE", "CARRIER"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert len(rows) == 2
    assert rows[0].split()[3] == "africastalking"  # newest first
    assert "+254712345678" not in out and "+254700000111" not in out
    assert "P 12 Jane" not in out and "hello there" not in out


def test_inbox_ls_reveal_and_json(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inbox", "ls", "--json", "--reveal", "--carrier", "twilio"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["carrier"], r["from"], r["text"]) for r in rows] == [
        ("twilio", "+254712345678", "P 12 Jane")
    ]
    assert 7100 < rows[0]["age_seconds"] < 7400


def test_inbox_ls_filters_by_age_and_state(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inbox", "ls", "--json", "--older-than", "1h"]) == 0
    assert [r["carrier"] for r in json.loads(capsys.readouterr().out)] == ["twilio"]
    assert main(["inbox", "ls", "--json", "--newer-than", "10m"]) == 0
    assert [r["carrier"] for r in json.loads(capsys.readouterr().out)] == ["africastalking"]
    assert main(["inbox", "ls", "--json", "--state", "submitted"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_outbox_ls_shows_the_dead_letter_with_its_reason(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "ls", "--state", "dead"]) == 0
    out = capsys.readouterr().out
    assert "CHT rejected the message: bad form" in out
    assert main(["outbox", "ls", "--json", "--state", "waiting"]) == 0
    waiting = json.loads(capsys.readouterr().out)
    assert [(t["kind"], t["state"]) for t in waiting] == [("submit", "ready")]


def test_outbox_retry_replays_a_dead_letter(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["outbox", "ls", "--json", "--state", "dead"])
    (dead,) = json.loads(capsys.readouterr().out)
    assert main(["outbox", "retry", str(dead["id"])]) == 0
    assert "queued again" in capsys.readouterr().out
    main(["outbox", "ls", "--json"])
    states = {t["id"]: (t["state"], t["attempts"]) for t in json.loads(capsys.readouterr().out)}
    assert states[dead["id"]] == ("ready", 0)
    # No longer a dead letter: retrying or dropping it again is refused.
    assert main(["outbox", "drop", str(dead["id"])]) == 1
    assert "not a dead letter" in capsys.readouterr().err


def test_outbox_drop_deletes_a_dead_letter(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["outbox", "ls", "--json", "--state", "dead"])
    (dead,) = json.loads(capsys.readouterr().out)
    assert main(["outbox", "drop", str(dead["id"]), "999999"]) == 1  # one good, one unknown
    captured = capsys.readouterr()
    assert "dropped" in captured.out and "999999: not a dead letter" in captured.err
    main(["outbox", "ls", "--json", "--state", "dead"])
    assert json.loads(capsys.readouterr().out) == []


def test_bad_usage_exits_2(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["inbox", "ls", "--older-than", "yesterday"])
    assert caught.value.code == 2
    assert "not a duration" in capsys.readouterr().err
    assert main(["outbox", "retry", "abc"]) == 2
    assert "task ids" in capsys.readouterr().err
    assert main(["outbox", "ls", "--state", "lost"]) == 2
    assert "unknown state 'lost'" in capsys.readouterr().err


def test_inbox_ls_with_an_unknown_state_exits_2_naming_the_states(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inbox", "ls", "--state", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown state 'bogus'" in err
    assert "received, submitted, relayed, rejected, dead" in err
    assert main(["inbox", "ls", "--state", "received"]) == 0


def test_a_missing_database_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMSBRIDGE_DATABASE", str(tmp_path / "nowhere.db"))
    assert main(["outbox", "ls"]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere.db").exists()


def _held(path: Path) -> str:
    from smsbridge.outbound import messages as outgoing

    with Store(path) as store:

        def job(conn: Any) -> str:
            outgoing.insert_in(conn, "cht-1", "+254700000222", "Same text", NOW - 600)
            message = outgoing.get_in(conn, "cht-1")
            assert message is not None
            outgoing.hold_in(conn, message, "loop: same text 4 times in 1h", NOW - 590)
            conn.execute("DELETE FROM tasks WHERE kind = 'send' AND ref = 'cht-1'")
            return message.ref

        return store.write_sync(job)


def test_held_sms_are_listed_and_can_be_released_or_dropped(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _held(database)
    assert main(["outbox", "ls", "--state", "held"]) == 0
    out = capsys.readouterr().out
    assert ref in out and "loop: same text" in out and "+254700000222" not in out
    assert main(["outbox", "release", ref]) == 0
    assert "released" in capsys.readouterr().out
    assert main(["outbox", "ls", "--json", "--state", "queued"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["ref"], row["state"], row["kind"]) == (ref, "ready", "send")  # a fresh task
    assert main(["outbox", "release", ref]) == 1  # no longer held
    assert "not a held SMS" in capsys.readouterr().err


def test_a_held_sms_can_be_dropped_by_ref(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _held(database)
    assert main(["outbox", "drop", ref]) == 0
    assert main(["outbox", "ls", "--json", "--state", "failed"]) == 0
    capsys.readouterr()
    main(["outbox", "ls", "--json", "--state", "failed"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["ref"] == ref and row["error"] == "held: dropped" and row["id"] is None


def test_outbox_ls_filters_by_channel_kind_state_and_age(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smsbridge.outbound import messages as outgoing

    with Store(database) as store:

        def job(conn: Any) -> None:
            for ref, channel in (("cht-a", "twilio"), ("cht-b", "africastalking")):
                outgoing.insert_in(conn, ref, "+254700000333", "Visit tomorrow", NOW - 600)
                conn.execute("UPDATE outgoing SET channel = ? WHERE ref = ?", (channel, ref))

        store.write_sync(job)

    def listed(*args: str) -> list[tuple[Any, ...]]:
        assert main(["outbox", "ls", "--json", *args]) == 0
        rows = json.loads(capsys.readouterr().out)
        return [(r["kind"], r["ref"], r["state"], r["channel"]) for r in rows]

    assert listed("--channel", "twilio") == [("send", "cht-a", "ready", "twilio")]
    assert [ref for _, ref, _, _ in listed("--kind", "send")] == ["cht-a", "cht-b"]
    assert [state for *_, state, _ in listed("--kind", "submit")] == ["dead", "ready"]
    assert [state for *_, state, _ in listed("--state", "waiting", "--kind", "submit")] == ["ready"]
    assert listed("--older-than", "1h") == [
        ("submit", listed("--state", "dead")[0][1], "dead", None)
    ]
    assert listed("--newer-than", "15m", "--channel", "africastalking") == [
        ("send", "cht-b", "ready", "africastalking")
    ]
    assert listed("--newer-than", "5m", "--kind", "send") == []
