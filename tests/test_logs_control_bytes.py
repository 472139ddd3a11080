"""Control bytes never reach a log line raw (issue 10, item 7): smsbridge/logs.py escapes C0,
DEL, C1 and the Unicode line separators in every value, as it already did newlines."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from smsbridge.logs import event, setup

HOSTILE = "a\x00b\x1b[2Jc\x07d\re\x7ff\x85g\u2028h\u2029i\tj\nk"
ESCAPED = "a\\x00b\\x1b[2Jc\\x07d\\re\\x7ff\\x85g\\u2028h\\u2029i\\tj\\nk"
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup("DEBUG", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def _only_line(stream: io.StringIO) -> str:
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    line = text[:-1]
    assert not RAW_CONTROL.search(line), repr(line)
    return line


def test_event_values_escape_control_bytes(lines: io.StringIO) -> None:
    event(logging.getLogger("smsbridge.test"), "probe", logging.WARNING, detail=HOSTILE)
    assert _only_line(lines).endswith(f'event=probe detail="{ESCAPED}"')


def test_plain_messages_escape_control_bytes(lines: io.StringIO) -> None:
    logging.getLogger("smsbridge.test").warning("got %s", HOSTILE)
    assert _only_line(lines).endswith(f'msg="got {ESCAPED}"')


def test_tracebacks_escape_control_bytes(lines: io.StringIO) -> None:
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        logging.getLogger("smsbridge.test").exception("boom")
    line = _only_line(lines)
    assert ESCAPED in line
