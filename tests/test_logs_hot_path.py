"""The per-line cost of logging (smsbridge/logs.py): `smsbridge serve` writes the lines of one
turn of its event loop together (`setup(turns=True)`, `TurnHandler`), and `mask_phones` skips
its expression on a text that cannot hold a phone number. Neither may change what is written."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import random
import re
import threading
from collections.abc import Iterator

import pytest

from smsbridge.logs import _PHONE, event, mask_phone, mask_phones, setup

log = logging.getLogger("smsbridge.tests.turns")


class _Writes(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def turns() -> Iterator[_Writes]:
    stream = _Writes()
    handler = setup("INFO", stream=stream, turns=True)
    stream.handler = handler  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        handler.flush()
        logging.getLogger().removeHandler(handler)


def _events(text: str) -> list[str]:
    return [line.split(" event=")[1].split()[0] for line in text.splitlines()]


def test_the_lines_of_one_loop_turn_are_written_together_in_order(turns: _Writes) -> None:
    async def flow() -> tuple[str, str]:
        for n in range(3):
            event(log, f"line{n}", message=f"m{n}")
        during = turns.getvalue()
        await asyncio.sleep(0)  # the turn ends
        return during, turns.getvalue()

    during, after = asyncio.run(flow())
    assert during == ""  # not one write per line
    assert _events(after) == ["line0", "line1", "line2"]
    assert len(turns.writes) == 1
    assert " message=m1\n" in after


def test_outside_an_event_loop_each_line_is_written_at_once(turns: _Writes) -> None:
    event(log, "first")
    assert _events(turns.getvalue()) == ["first"]
    event(log, "second")
    assert _events(turns.getvalue()) == ["first", "second"]


def test_a_line_from_another_thread_is_written_at_once_after_those_waiting(
    turns: _Writes,
) -> None:
    async def flow() -> str:
        event(log, "in_the_loop")
        worker = threading.Thread(target=lambda: event(log, "from_a_thread"))
        worker.start()
        worker.join()  # within the same turn of the loop
        return turns.getvalue()

    assert _events(asyncio.run(flow())) == ["in_the_loop", "from_a_thread"]


def test_lines_still_waiting_are_written_by_a_flush(turns: _Writes) -> None:
    async def flow() -> None:
        event(log, "last_words")
        turns.handler.flush()  # type: ignore[attr-defined]  # as logging.shutdown does at exit
        assert _events(turns.getvalue()) == ["last_words"]

    asyncio.run(flow())


def test_without_turns_each_line_is_written_at_once_in_a_loop_too() -> None:
    stream = _Writes()
    handler = setup("INFO", stream=stream)
    try:

        async def flow() -> str:
            event(log, "at_once")
            return stream.getvalue()

        assert _events(asyncio.run(flow())) == ["at_once"]
    finally:
        logging.getLogger().removeHandler(handler)


def test_mask_phones_masks_exactly_what_its_expression_finds() -> None:
    # the cheap test that skips the expression must never skip a text it would change
    rng = random.Random(14)
    alphabet = [*"0123456789" * 3, *" -.()+/_=*xZ", "\u0663", "\u00e9"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert mask_phones(text) == _PHONE.sub(lambda m: mask_phone(m.group(0)), text), text
    for text in (
        "call +254 712 345 678 now",
        "(020) 123-4567",
        "id 254712345678",
        "\u0660\u0667\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
    ):
        assert mask_phones(text) != text


# -- `event` without a LogRecord ---------------------------------------------------------------
# Under `smsbridge serve` the turn handler is the only handler: `event` then hands its line to
# it (`TurnHandler.write_event`) without the logging module's record, filters and formatter.
# What it writes must be, to the character, what the record would have given.

SECRET = "s3cr3t-token-value"
LINES = [
    ("inbound_accepted", logging.INFO, {"sender": "+254712345678", "message": "m-1"}),
    ("outgoing_failed", logging.WARNING, {"to": "0712345678", "reason": f"key={SECRET} refused"}),
    ("odd", logging.INFO, {"detail": 'a "quoted" line\nwith ESC \x1b and +254 712 345 678'}),
    ("webhook", logging.ERROR, {"path": f"/carriers/twilio/{SECRET}x/inbound", "n": 3}),
    ("debugging", logging.DEBUG, {"sender": "+254712345678"}),  # DEBUG keeps the number
]


@pytest.fixture
def alone() -> Iterator[tuple[_Writes, logging.Handler]]:
    """The turn handler, set up as `smsbridge serve` sets it up (at DEBUG)."""
    stream = _Writes()
    handler = setup("DEBUG", secrets=[SECRET], stream=stream, turns=True)
    try:
        yield stream, handler
    finally:
        handler.flush()
        logging.getLogger().removeHandler(handler)
        logging.getLogger("smsbridge").setLevel(logging.NOTSET)


@contextlib.contextmanager
def only(handler: logging.Handler) -> Iterator[None]:
    """`handler` as the root's only handler, as under `smsbridge serve` (pytest's capture
    handlers, added around each test's call, set aside meanwhile)."""
    root = logging.getLogger()
    kept = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = kept


def _without_ts(text: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in text.splitlines()]


def _log_all() -> None:
    for name, level, fields in LINES:
        event(log, name, level, **fields)


def test_a_line_made_without_a_record_is_the_line_a_record_gives(
    alone: tuple[_Writes, logging.Handler],
) -> None:
    stream, handler = alone

    async def direct() -> None:
        _log_all()
        await asyncio.sleep(0)

    with only(handler):
        assert handler.takes_alone(log, logging.INFO)  # type: ignore[attr-defined]
        asyncio.run(direct())
    fast = stream.getvalue()

    stream.seek(0)
    stream.truncate()
    with only(handler):
        logging.getLogger().addHandler(logging.NullHandler())  # another: through records
        assert not handler.takes_alone(log, logging.INFO)  # type: ignore[attr-defined]
        asyncio.run(direct())
    through_records = stream.getvalue()

    assert _without_ts(fast) == _without_ts(through_records)
    assert len(fast.splitlines()) == len(LINES)
    assert SECRET not in fast and "+254712345678" in fast  # DEBUG only keeps the number
    assert fast.count("+254712345678") == 1
    for line in fast.splitlines():
        assert re.fullmatch(
            r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=\w+ logger=\S+ .*", line
        )


def test_a_line_without_a_record_from_another_thread_or_no_loop_is_written_at_once(
    alone: tuple[_Writes, logging.Handler],
) -> None:
    stream, handler = alone
    with only(handler):
        event(log, "no_loop")
        assert _events(stream.getvalue()) == ["no_loop"]
        worker = threading.Thread(target=lambda: event(log, "from_a_thread"))
        worker.start()
        worker.join()
    assert _events(stream.getvalue()) == ["no_loop", "from_a_thread"]


def test_a_capture_handler_still_hears_every_event(
    alone: tuple[_Writes, logging.Handler], caplog: pytest.LogCaptureFixture
) -> None:
    stream, handler = alone
    with only(handler):
        logging.getLogger().addHandler(caplog.handler)
        event(log, "heard", message="m-2")
    assert [r.getMessage() for r in caplog.records] == ["event=heard message=m-2"]
    assert _events(stream.getvalue()) == ["heard"]  # and the turn handler too
