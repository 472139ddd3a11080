"""Logging set-up and redaction. Health data stays out of logs (docs/architecture.md, rule 6).

Log ids, states and counts, one line per state change, with `event(logger, "name", key=value)`:

    ts=2026-11-27T23:14:56.123Z level=info logger=smsbridge.inbound.submit event=inbound_accepted
        carrier=twilio message=<our uuid> external_id=SM123 sender=+2547*****678 state=received

A line for a state change says the state entered as `state=`: inbound SMS (pipeline.py)
received -> submitted | relayed | rejected | dead; outgoing SMS (transitions.py) queued, held,
sending, sent, delivered, failed (`reason=expired`, a carrier's error, ...). Their ids: our
`message` id, `doc` (CHT's record), `carrier`/`channel`, the carrier's `external_id`, `attempt`.

Values of keys that name a phone number (`sender`, `to`, `phone`, ...) are masked with
`phone.mask`; never pass SMS text or a secret to a log call at INFO or above.

`RedactionFilter` is the safety net on the handler `setup` installs: from every record at INFO
and above it masks anything that looks like a phone number, and from every record it removes the
configured secrets, credentials in URLs, `Authorization` values and webhook tokens in
`/carriers/<name>/<token>/...` paths — in the message, its arguments and the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from smsbridge.postgres import url as dburl

if TYPE_CHECKING:
    from smsbridge.settings import Settings

PHONE_KEYS = frozenset(
    {"phone", "sender", "from", "from_", "to", "recipient", "msisdn", "number", "contact_phone"}
)
"""`event` masks the value of these keys with `phone.mask`."""

MASK = "****"

# A phone number: an optional +, then 8-15 digits, possibly grouped by single spaces, dashes
# or dots after a leading +. Not part of a longer word, number, decimal or hex id.
_PHONE = re.compile(
    r"(?<![\w.+/-])"  # not glued to a word, a decimal, a path or a hex id
    r"(?:\+\d(?:[ \-.]?\d){7,14}"  # +254 712 345 678, +254712345678
    r"|\(?0\d{2,4}\)?[ \-]\d{3}[ \-]?\d{3,4}"  # 0712 345 678, (020) 123-4567
    r"|\d{8,15})"  # 254712345678, 0712345678
    r"(?![\w.-]?\w)"
)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@"
)
_AUTHORIZATION = re.compile(
    r"(?i)(?P<key>authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<kind>basic|bearer|token)?\s*[^\s\"',}]+"
)
_WEBHOOK_TOKEN = re.compile(r"(?P<head>/carriers/[^/\s]+/)[^/\s?]+(?P<tail>/(?:inbound|status))")
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&](?:key|token|api_?key|api_secret|password|sig|signature)=)[^&\s\"]+"
)


_mask: Callable[[str], str] | None = None


def mask_phone(number: str) -> str:
    """`phone.mask`, imported on first use (phone.py loads phonenumbers)."""
    global _mask
    if _mask is None:
        from smsbridge.phone import mask

        _mask = mask
    return _mask(number)


# Every match of _PHONE holds 8 digits with nothing but ` -.()` between them: an ASCII text
# that, with those deleted and its digits read as `d`, has no 8 `d` in a row has no phone number
# (a cheap test first: every INFO line passes here).
_DIGIT_RUNS = str.maketrans(
    {**{chr(c): "x" for c in range(128)}, **dict.fromkeys("0123456789", "d")}
    | dict.fromkeys(" -.()")
)


def mask_phones(text: str) -> str:
    """`text` (a carrier's error message, ...) with everything like a phone number masked."""
    if text.isascii() and "dddddddd" not in text.translate(_DIGIT_RUNS):
        return text
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


class RedactionFilter(logging.Filter):
    """Rewrites records so that no secret, and at INFO and above no phone number, gets out.

    `secrets` are exact strings to remove (passwords, tokens, API keys); they are replaced by
    `****` at every level. Phone numbers are masked with `phone.mask` at INFO and above, so
    DEBUG keeps them for troubleshooting on a developer's machine."""

    def __init__(self, secrets: Iterable[str] = (), *, phone_level: int = logging.INFO) -> None:
        super().__init__()
        # Longest first, so a secret containing another is removed whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.phone_level = phone_level

    def redact(self, text: str, level: int = logging.INFO) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        # Each pattern only where it can match (every INFO line passes here: keep it cheap).
        if "://" in text:
            text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        if "authorization" in text.lower():
            text = _AUTHORIZATION.sub(
                lambda m: m["key"] + (m["kind"] + " " if m["kind"] else "") + MASK, text
            )
        if "/carriers/" in text:
            text = _WEBHOOK_TOKEN.sub(lambda m: m["head"] + MASK + m["tail"], text)
        if "?" in text or "&" in text:
            text = _SECRET_QUERY.sub(lambda m: m["key"] + MASK, text)
        if level >= self.phone_level:
            text = mask_phones(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        redacted = self.redact(message, record.levelno)
        if redacted != record.msg or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text, record.levelno)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text, record.levelno)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info, record.levelno)
        return True


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=... <message>`; the message of `event` is itself key=value."""

    _second: int | None = None
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """`created` (time.time()) as the line's `ts`, to the millisecond, UTC."""
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def head(self, created: float, level: int, name: str) -> str:
        """The start of every line: `ts=... level=... logger=... ` (then the message)."""
        return f"ts={self.stamp(created)} level={_level_name(level)} logger={name} "

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not _is_structured(message):
            message = f"msg={_value(message)}"
        line = self.head(record.created, record.levelno, record.name) + message
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += " exc=" + _value(record.exc_text)
        return line


class TurnHandler(logging.StreamHandler):
    """The handler of `setup(turns=True)` (`smsbridge serve`): a StreamHandler that, in an
    event loop of the main thread, writes the lines logged during one turn of the loop
    together, in order, once the turn's callbacks have run, instead of one write per line:
    each write lets another thread take the GIL (the store's writer, store.py), and under
    load the loop then waits to get it back, once per line. Elsewhere (other threads, no
    running loop) a line is written at once, after any still waiting. When it is the only
    handler, `event` gives it its lines without a LogRecord (`write_event`: one per state
    change, so the logging module's record, filter and formatter calls are most of a line's
    cost); any other handler (a test's capture) puts every line back through the records."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._turn: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        loop = _main_thread_loop()
        if loop is None:
            self._write_turn()
            super().emit(record)
            return
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._add(loop, line)

    def _add(self, loop: asyncio.AbstractEventLoop, line: str) -> None:
        if self._scheduled is not loop:
            loop.call_soon(self._write_turn)
            self._scheduled = loop
        self._turn.append(line)

    def takes_alone(self, logger: logging.Logger, level: int) -> bool:
        """True when a record of `logger` at `level` would reach this handler and no other
        handler or filter on its way: then `event` may hand over its line (`write_event`)
        without a LogRecord. Anything else installed (a test's capture handler, a filter, a
        logger that does not propagate) sends every line through the logging module."""
        root = logging.root
        handlers = root.handlers
        if len(handlers) != 1 or handlers[0] is not self or root.filters:
            return False
        if level < self.level or not self._as_set_up():
            return False
        node: logging.Logger | None = logger
        while node is not root and node is not None:
            if node.handlers or node.filters or not node.propagate or node.disabled:
                return False
            node = node.parent
        return True

    def _as_set_up(self) -> bool:
        """`setup`'s filter and formatter, and nothing else."""
        return (
            len(self.filters) == 1
            and isinstance(self.filters[0], RedactionFilter)
            and isinstance(self.formatter, KeyValueFormatter)
        )

    def write_event(self, logger: logging.Logger, level: int, message: str) -> None:
        """What `emit` writes for a record of `logger` at `level` whose message is `message`
        (an `event` line, no traceback), made without the record: the same redaction, the
        same line, the same turn."""
        redaction, formatter = self.filters[0], self.formatter
        assert isinstance(redaction, RedactionFilter) and isinstance(formatter, KeyValueFormatter)
        line = (
            formatter.head(time.time(), level, logger.name)
            + redaction.redact(message, level)
            + self.terminator
        )
        loop = _main_thread_loop()
        if loop is not None:
            self._add(loop, line)
            return
        self.acquire()
        try:
            self._turn.append(line)
        finally:
            self.release()
        self._write_turn()

    def flush(self) -> None:
        self._write_turn()
        super().flush()

    def _write_turn(self) -> None:
        self.acquire()
        try:
            self._scheduled = None
            if not self._turn:
                return
            text = "".join(self._turn)
            self._turn.clear()
            self.stream.write(text)
            super().flush()
        except Exception:  # as `emit` does: a broken stream must not stop the service
            if logging.raiseExceptions:
                traceback.print_exc(file=sys.stderr)
        finally:
            self.release()


_MAIN_THREAD = threading.main_thread().ident


def _main_thread_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop when called from the main thread in one, else None."""
    if threading.get_ident() != _MAIN_THREAD:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_LEVEL_NAMES: dict[int, str] = {}


def _level_name(level: int) -> str:
    """`info`, `warning`, ...: the line's `level=`."""
    name = _LEVEL_NAMES.get(level)
    if name is None:
        name = _LEVEL_NAMES[level] = logging.getLevelName(level).lower()
    return name


def _is_structured(message: str) -> bool:
    return message.startswith("event=")


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in `settings`: the CHT password (separate or in the URL), the
    database's password (in a PostgreSQL URL) and every carrier setting declared secret
    (tokens, API keys)."""
    found: list[str] = []
    credentials = settings.cht_credentials
    if credentials is not None:
        found.append(credentials[1].reveal())
    if isinstance(settings.database, str):  # a PostgreSQL URL
        found += dburl.passwords(settings.database)
    for carrier, declared in (settings.carrier_settings or {}).items():
        for setting in declared:
            value = settings.carrier_setting(carrier, setting.name)
            if setting.secret and value:
                found += _parts(value)
    return [s for s in found if s]


def _parts(value: str) -> list[str]:
    """A secret setting's value and, for lists of `user:password` (cht-gateway accounts),
    each password on its own."""
    parts = [value]
    for item in value.split(","):
        parts.append(item.strip())
        _user, sep, password = item.strip().partition(":")
        if sep and password:
            parts.append(password)
    return list(dict.fromkeys(p for p in parts if p))


def setup(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    turns: bool = False,
) -> logging.Handler:
    """Send every log record (ours, uvicorn's, httpx's) to `stream` (stderr) as key=value
    lines through the redaction filter. Run uvicorn with `log_config=None` so its loggers
    propagate here. `turns`: the lines of one turn of the main thread's event loop are
    written together (`TurnHandler`: `smsbridge serve`), else each at once. Returns the
    handler (tests read what it wrote)."""
    # The line shows none of these record attributes: not computing them makes every log call
    # cheaper (the logging module's documented optimisation: no stack walk per record for the
    # caller's file and line, no process or multiprocessing name look-ups).
    logging._srcfile = None
    logging.logProcesses = False
    logging.logMultiprocessing = False
    out = stream if stream is not None else sys.stderr
    handler: logging.StreamHandler[TextIO] = (
        TurnHandler(out) if turns else logging.StreamHandler(out)
    )
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RedactionFilter(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_smsbridge", False)]:
        root.removeHandler(old)
    handler._smsbridge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    global _direct
    _direct = handler if isinstance(handler, TurnHandler) else None
    root.setLevel(logging.WARNING)
    logging.getLogger("smsbridge").setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(level.upper())
    # httpx logs every request URL at INFO (CHT URLs may carry credentials): keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return handler


# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: a NUL or an ESC
# from a request must not reach a terminal or a log shipper raw, nor start a forged line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES = re.compile(r'[ "=\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _value(value: Any) -> str:
    """A log value: as is when it is plain; else quoted, with backslash, quote and every
    control character escaped (`\\n`, `\\t`, `\\r`, `\\x1b`, `\\u2028`)."""
    text = value if type(value) is str else str(value)
    if not text or _NEEDS_QUOTES.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + _CONTROL.sub(_escape_control, escaped) + '"'
    return text


def _masked(value: str) -> str:
    return value if MASK in value or not any(map(str.isdigit, value)) else mask_phone(value)


_KEYS: dict[str, str] = {}  # field name -> how the line spells it (`from_` -> `from`)
_direct: TurnHandler | None = None  # setup(turns=True)'s handler: `event` may skip the record


def event(
    logger: logging.Logger,
    name: str,
    level: int = logging.INFO,
    *,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log one structured line, `event=name key=value ...`. Values of phone keys are masked;
    `exc_info` adds the current exception's traceback (redacted by `RedactionFilter`).
    Built with as little work as the line allows (one per state change: the hot paths log)."""
    if not logger.isEnabledFor(level):
        return
    masking = level >= logging.INFO
    line = "event=" + name
    for key, value in fields.items():
        if masking and value is not None and key in PHONE_KEYS:
            value = _masked(str(value))
        spelled = _KEYS.get(key)
        if spelled is None:
            spelled = _KEYS.setdefault(key, " " + key.rstrip("_") + "=")
        line += spelled + _value(value)
    direct = _direct
    if direct is not None and not exc_info and direct.takes_alone(logger, level):
        direct.write_event(logger, level, line)  # the line a record would give, sooner
        return
    # `logger.log` less its second isEnabledFor check: the same record, the same handlers
    logger._log(level, line, (), exc_info=exc_info)
