"""`smsbridge send`: one SMS queued by hand, visible in `outbox ls`; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smsbridge.cli.main import main
from smsbridge.store import Store


@pytest.fixture
def database(cli_database: Path) -> Path:
    Store(cli_database).close()  # a database `serve` has created
    return cli_database


def test_send_queues_one_sms_with_its_send_task(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "--to", "+254 712 345 678", "Clinic closed tomorrow"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("queued operator-")
    assert "+254712345678" not in out and "(1 segment)" in out
    assert main(["outbox", "ls", "--json", "--reveal", "--kind", "send"]) == 0
    (task,) = json.loads(capsys.readouterr().out)
    assert task["state"] == "ready"
    assert task["sms_state"] == "queued"
    assert task["to"] == "+254712345678"
    assert task["text"] == "Clinic closed tomorrow"
    assert task["ref"] in out
    assert main(["outbox", "ls", "--json", "--state", "queued"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["outbox", "ls", "--json", "--state", "delivered"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_send_refuses_a_local_number_with_exit_2(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "--to", "0712345678", "hello"]) == 2
    assert "not an international number" in capsys.readouterr().err
    assert main(["outbox", "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_send_without_text_is_a_usage_error(database: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["send", "--to", "+254712345678"])
    assert caught.value.code == 2


def test_an_sms_sent_by_hand_reaches_the_carrier(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from smsbridge.cli.demo import stage
    from smsbridge.loopback import wait_for

    with stage(io.StringIO(), timeout=20) as s:
        monkeypatch.setenv("SMSBRIDGE_DATABASE", str(s.database))
        assert main(["send", "--to", "+254733345678", "Meeting at 10"]) == 0
        [hint] = [line for line in capsys.readouterr().out.splitlines() if "follow it" in line]
        follow = [*hint.split("smsbridge ", 1)[1].split(), "--json"]
        # the running bridge's send workers pick the task up from the database
        wait_for(
            lambda: s.carriers.sent_count("+254733345678", "Meeting at 10"),
            "the SMS to reach the carrier",
            timeout=20,
        )

        def followed() -> str | None:
            assert main(follow) == 0
            rows = json.loads(capsys.readouterr().out)
            return rows[0]["sms_state"] if rows else None

        # the hint still finds the SMS once it is out (no task left): sent, then delivered
        wait_for(lambda: followed() == "delivered", "the hint to show it delivered", timeout=20)
    assert s.carriers.sent_count("+254733345678", "Meeting at 10") == 1
