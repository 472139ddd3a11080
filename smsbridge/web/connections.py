"""Connection limits for `smsbridge serve`: uvicorn's httptools protocol with the guards uvicorn
lacks, so that slow or oversized requests cannot hold the server (slowloris).

    protocol = limited_protocol(Limits.from_settings(settings))
    uvicorn.Config(app, http=protocol, timeout_keep_alive=settings.keepalive_timeout, ...)

- **Header-read timeout** (SMSBRIDGE_HEADER_TIMEOUT): a connection must deliver its request
  line and headers within this many seconds of connecting (and, on a kept-alive connection, of
  the first byte of its next request), or it is answered 408 and closed. Idle kept-alive
  connections are uvicorn's `timeout_keep_alive` (SMSBRIDGE_KEEPALIVE_TIMEOUT).
- **Header caps** (SMSBRIDGE_MAX_HEADER_BYTES, SMSBRIDGE_MAX_HEADERS): more header bytes (names
  and values) or more headers than that is answered 431 and closed, and so is a request head
  still growing past the caps before its headers end (the parser would buffer it all). The
  URL has a cap of its own, above the largest query string a GET webhook may carry (414).
- **Connection cap** (SMSBRIDGE_MAX_CONNECTIONS): a connection over it is answered 503 and
  closed at once.

Each refusal is a JSON error body like every other (`{"error": ..., "detail": ...}`) with
`connection: close`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from smsbridge.settings import Settings

log = logging.getLogger(__name__)

URL_ALLOWANCE = 8192
"""Bytes a URL may take beyond the longest query string accepted (SMSBRIDGE_MAX_BODY_BYTES)."""
LINE_OVERHEAD = 4
"""Bytes each header line takes beyond its name and value (`: ` and CRLF)."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_headers: int
    max_url_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_url_bytes=max(settings.max_body_bytes, 0) + URL_ALLOWANCE,
            max_connections=settings.max_connections,
        )

    @property
    def max_head_bytes(self) -> int:
        """Most bytes a request head (request line, headers, blank line) can take within the
        caps; past this, a head not yet complete is refused without parsing further."""
        return (
            self.max_url_bytes
            + self.max_header_bytes
            + LINE_OVERHEAD * (self.max_headers + 1)
            + 64  # the method and `HTTP/1.1`
        )


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is refused."""


def _refusal(status: int, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `limits` (set by `limited_protocol`)."""

    limits: Limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since: float | None = None  # loop time the head now being read began
        self._reading_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: bytes | None = None

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(_refusal(503, "unavailable", "too many connections"), "connections")
            return
        self._head_begins()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._refusal is None
            and self._reading_head
            and self._head_bytes > self.limits.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(_header_refusal("request head too large"), "head_bytes")

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to any parser error, ours (raised by a callback) included
        if self._refusal is not None:
            self.transport.write(self._refusal)
            self.transport.close()
        else:
            super().send_400_response(msg)

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._header_bytes = 0
        self._header_count = 0
        if self._head_since is None:
            self._head_begins()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(_refusal(414, "uri_too_long", "request URL too long"), "url")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > self.limits.max_headers:
            self._stop(_header_refusal("too many request headers"), "header_count")
        if self._header_bytes > self.limits.max_header_bytes:
            self._stop(_header_refusal("request headers too large"), "header_bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_since = None  # the timer, if running, finds no head to time
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    # -- refusing ------------------------------------------------------------------------------

    def _stop(self, response: bytes, reason: str) -> None:
        """Refuse from inside a parser callback: the parser stops, uvicorn's error path sends
        `response` (send_400_response above)."""
        self._refusal = response
        self._log_refusal(reason)
        raise _Refused(reason)

    def _refuse(self, response: bytes, reason: str) -> None:
        self._refusal = response
        self._log_refusal(reason)
        self._cancel_head_timer()
        self.transport.write(response)
        self.transport.close()

    def _log_refusal(self, reason: str) -> None:
        client = self.client[0] if self.client else None
        log.debug("connection refused: %s (client %s)", reason, client)

    # -- the header-read timer -----------------------------------------------------------------
    # One timer per connection, not one per request: a head that begins notes the time and
    # starts the timer only if none runs; when it fires it checks the head being read then (if
    # any) and waits again for what that head has left. A busy kept-alive connection costs no
    # timer work per request.

    def _head_begins(self) -> None:
        self._head_since = self.loop.time()
        if self._head_timer is None:
            self._arm_head_timer(self.limits.header_timeout)

    def _arm_head_timer(self, delay: float) -> None:
        self._head_timer = self.loop.call_later(delay, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._head_since is None:
            return
        left = self._head_since + self.limits.header_timeout - self.loop.time()
        if left > 0:
            self._arm_head_timer(left)
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's head is late while the one before is answered: close
            # once that answer is out
            self.cycle.keep_alive = False
            return
        self._refuse(_refusal(408, "request_timeout", "request headers too slow"), "timeout")


def _header_refusal(detail: str) -> bytes:
    return _refusal(431, "headers_too_large", detail)


def limited_protocol(limits: Limits) -> type[LimitedProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), holding `limits`."""
    return type("LimitedProtocol", (LimitedProtocol,), {"limits": limits})
