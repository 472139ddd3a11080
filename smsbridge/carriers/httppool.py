"""The HTTP client the send side shares (every carrier's `send`, the status pollers): an
`httpx.AsyncClient` whose transport keeps its own kept-alive HTTP/1.1 connections.

httpx's default transport (httpcore) walks every connection of its pool on each request and
asks the socket of each idle one whether the peer closed it (a system call apiece), and closes
any connection that falls idle while the pool holds more than its keep-alive limit: with
SMSBRIDGE_SEND_CONCURRENCY sends in flight (64 by default) its bookkeeping cost several times
the request itself, and a smaller pool reconnected on most sends. `LeanTransport` takes an idle
connection to the same origin from a stack (or opens one), writes the request in one call and
reads the answer (Content-Length, chunked, or to the end of the connection).

`LeanClient` is the `httpx.AsyncClient` in front of it. A plain request (a method, a URL, and
any of headers, params, content, data or json) is built as httpx builds it (the client's
headers merged with the request's, the body encoded by `httpx.Request`, the client's timeouts)
and handed straight to the transport: httpx's auth, redirect and event-hook machinery is for
requests that need it, and a parsed URL is kept per URL string (the carriers' send URLs are a
handful). Anything else (auth, files, a timeout of its own...) takes httpx's own path. The
send side keeps no cookies: each send stands alone, whatever a carrier sets.

Everything else is httpx's: the request's encoding and headers, timeouts, response decoding,
and the exceptions a send classifies (carriers/sending.py `request`):
`ConnectError`/`ConnectTimeout` when no connection was made (the SMS cannot have left),
`ReadTimeout`, `WriteError`, `RemoteProtocolError`... once the request may have reached the
carrier. TLS uses httpx's default context. With a proxy configured in the environment
(HTTPS_PROXY...), the client is httpx's own, which honours it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx

KEEPALIVE = 4.0  # seconds an idle connection is kept: below the 5 s after which uvicorn (and
# httpx's own pool) let an idle one go, so a reused one is not being closed at that moment

CLOSE_WAIT = 1.0  # seconds `aclose` waits for a connection to be closed for good

Origin = tuple[str, str, int]  # scheme, host, port


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Still open, and not idle so long that the peer may be closing it right now."""
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and now - self.idle_since < KEEPALIVE
        )


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams, with up to `keep` idle connections per origin."""

    def __init__(self, *, keep: int = 64) -> None:
        self.keep = keep
        self._idle: dict[Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()  # in use by a request now: closed by `aclose` too
        self._tls: ssl.SSLContext | None = None
        self._other = httpx.AsyncHTTPTransport()  # what this one does not speak (see below)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https") or "transfer-encoding" in request.headers:
            return await self._other.handle_async_request(request)  # e.g. a streamed body
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
        wire = b"".join(head) + b"\r\n" + body
        conn = self._take(origin) or await self._connect(request, origin, timeouts.get("connect"))
        self._busy.add(conn)
        try:
            response = await self._exchange(request, conn, wire, timeouts)
        except BaseException:
            conn.writer.close()
            raise
        finally:
            self._busy.discard(conn)
        return response

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.writer.close()
        return None

    def _give_back(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self.keep:
            conn.writer.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(
        self, request: httpx.Request, origin: Origin, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            tls = self._tls
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _Connection(reader, writer)

    async def _exchange(
        self,
        request: httpx.Request,
        conn: _Connection,
        wire: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        try:
            conn.writer.write(wire)
            if conn.writer.transport.get_write_buffer_size():  # the rest waits for the socket
                async with asyncio.timeout(timeouts.get("write")):
                    await conn.writer.drain()
            else:  # all sent at once: no timer to set (drain still raises if the peer went)
                await conn.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("writing the request", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        try:
            async with asyncio.timeout(timeouts.get("read")):
                code, reason, headers, content, close = await _read_response(
                    conn.reader, request.method == "HEAD"
                )
        except TimeoutError as exc:
            raise httpx.ReadTimeout("waiting for the answer", request=request) from exc
        except (asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            raise httpx.RemoteProtocolError(
                f"incomplete or malformed answer: {type(exc).__name__}", request=request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        if close:
            conn.writer.close()
        else:
            self._give_back(origin, conn)
        return httpx.Response(
            code,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        """Close every connection: the idle ones, and those a request still waits on (a
        request the client's owner never cancelled: its wait ends with a ReadError)."""
        closing = [conn for idle in self._idle.values() for conn in idle] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for conn in closing:
            conn.writer.close()
        for conn in closing:  # closed for good before the event loop may end
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.writer.wait_closed(), CLOSE_WAIT)
        await self._other.aclose()


async def _read_response(
    reader: asyncio.StreamReader, head_only: bool
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """One answer: (status, reason, headers, body, whether the connection must close). Skips
    interim (1xx) answers. Raises ValueError on a malformed one, IncompleteReadError when the
    peer closed before its end."""
    while True:
        status = await reader.readline()
        if not status.endswith(b"\n"):
            raise asyncio.IncompleteReadError(status, None)
        version, code_text, *rest = status.split(None, 2)
        if not version.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1.x answer")
        code = int(code_text)
        headers: list[tuple[bytes, bytes]] = []
        while (line := await reader.readline()) not in (b"\r\n", b"\n"):
            if not line.endswith(b"\n"):
                raise asyncio.IncompleteReadError(line, None)
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError("malformed header line")
            headers.append((name.strip(), value.strip()))
        if not 100 <= code < 200:
            break
    fields = {name.lower(): value for name, value in headers}
    close = b"close" in fields.get(b"connection", b"").lower() or version == b"HTTP/1.0"
    if head_only or code in (204, 304):
        return code, rest[0].strip() if rest else b"", headers, b"", close
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        chunks = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            chunks.append((await reader.readexactly(size + 2))[:-2])
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        content = b"".join(chunks)
    elif b"content-length" in fields:
        content = await reader.readexactly(int(fields[b"content-length"]))
    else:
        content = await reader.read()  # the body runs to the end of the connection
        close = True
    return code, rest[0].strip() if rest else b"", headers, content, close


# What `LeanClient.request` builds itself; any other argument goes to httpx's own path.
_LEAN_ARGUMENTS = frozenset({"headers", "params", "content", "data", "json"})


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> httpx.URL:
    """`url` parsed (httpx's parser is pure Python; a URL object is immutable)."""
    return httpx.URL(url)


class LeanClient(httpx.AsyncClient):
    """The send side's `httpx.AsyncClient` over a `LeanTransport` (see the module doc)."""

    def __init__(self, *, timeout: float, transport: LeanTransport) -> None:
        super().__init__(timeout=timeout, follow_redirects=False, transport=transport)
        self.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._lean = transport
        self._timeouts = self.timeout.as_dict()

    async def request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        target = _parsed(url) if isinstance(url, str) else url
        if not kwargs.keys() <= _LEAN_ARGUMENTS or target.is_relative_url or self.is_closed:
            return await super().request(method, url, **kwargs)
        headers = httpx.Headers(self.headers)
        headers.update(kwargs.pop("headers", None))
        request = httpx.Request(
            method, target, headers=headers, extensions={"timeout": self._timeouts}, **kwargs
        )
        response = await self._lean.handle_async_request(request)
        response.request = request
        try:
            response.read()  # the body is in memory (a ByteStream): decoded without a coroutine
        except BaseException:
            await response.aclose()
            raise
        return response


def _env_proxies() -> bool:
    return any(key != "no" for key in urllib.request.getproxies())


def client(
    *, timeout: float, connections: int, proxies: Callable[[], bool] = _env_proxies
) -> httpx.AsyncClient:
    """The send side's client: up to `connections` kept alive per carrier host (a
    `LeanClient`). httpx's own when the environment names a proxy (`proxies()`)."""
    if proxies():
        return httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    return LeanClient(timeout=timeout, transport=LeanTransport(keep=connections))
