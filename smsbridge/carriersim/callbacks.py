"""The carrier simulator's callback sender: delivery reports posted to the bridge over a few
kept-alive HTTP/1.1 connections, as a carrier's callback workers do.

A report is built by httpx (`httpx.Request`: the same URL, query, form or JSON encoding and
headers an httpx client would send) and written on a plain asyncio connection; the answer is
read just far enough to know its status code and keep the connection. A full httpx client costs
several times the CPU per request, which made the simulator, not the bridge, the limit of the
outbound benchmark (bench/outbound.py). https URLs go through an httpx client.

At most `connections` reports are in flight at once; a kept-alive connection the peer closed
meanwhile is replaced, and the report written again, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

USER_AGENT = b"smsbridge-carriersim"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class CallbackError(Exception):
    """The report got no HTTP answer (refused, dropped, timed out, malformed)."""


class CallbackClient:
    """Posts requests and returns their status codes; for one event loop."""

    def __init__(self, *, connections: int = 16, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._slots = asyncio.Semaphore(connections)
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        )
        self._tls: httpx.AsyncClient | None = None

    async def request(self, method: str, url: str, **kwargs: Any) -> int:
        """Send `method url` (httpx.Request's arguments: params, data, json, headers); the
        answer's status code. Raises CallbackError when no answer came."""
        req = httpx.Request(method, url, **kwargs)
        async with self._slots:
            if req.url.scheme != "http":
                return await self._via_httpx(req)
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._send(req)
            except CallbackError:
                raise
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                raise CallbackError(f"{type(exc).__name__}: {exc}") from exc

    async def _via_httpx(self, req: httpx.Request) -> int:
        if self._tls is None:
            self._tls = httpx.AsyncClient(timeout=self.timeout, limits=self._limits)
        try:
            return (await self._tls.send(req)).status_code
        except httpx.HTTPError as exc:
            raise CallbackError(f"{type(exc).__name__}: {exc}") from exc

    async def _send(self, req: httpx.Request) -> int:
        host = req.url.host
        port = req.url.port or 80
        head = [b"%s %s HTTP/1.1\r\n" % (req.method.encode(), req.url.raw_path)]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in req.headers.raw)
        head.append(b"User-Agent: %s\r\n\r\n" % USER_AGENT)
        wire = b"".join(head) + req.read()
        idle = self._idle.setdefault((host, port), [])
        while idle:  # a kept-alive connection, unless the peer closed it meanwhile
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, CallbackError):
                return await self._exchange(idle.pop(), wire, idle)
        return await self._exchange(await asyncio.open_connection(host, port), wire, idle)

    async def _exchange(self, conn: Connection, wire: bytes, idle: list[Connection]) -> int:
        """Write the request, read the whole answer; the connection goes back to `idle` unless
        the answer closes it. Raises CallbackError when the peer closed before answering."""
        reader, writer = conn
        try:
            writer.write(wire)
            await writer.drain()
            status = await reader.readline()
            if not status:
                raise CallbackError("connection closed before an answer")
            code = int(status.split(None, 2)[1])
            length: int | None = None
            chunked = close = False
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                while size := int((await reader.readline()).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
            elif length is not None:
                await reader.readexactly(length)
            else:
                await reader.read()  # the body runs to the end of the connection
                close = True
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            idle.append(conn)
        return code

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _reader, writer in conns:
                writer.close()
        self._idle.clear()
        if self._tls is not None:
            await self._tls.aclose()
            self._tls = None
