"""The request-body limit: a body over SMSBRIDGE_MAX_BODY_BYTES is refused with 413 (JSON, like
every error), by its Content-Length before the app runs or while a chunked body is read. A query
string over the same limit is refused too (GET webhooks carry the SMS in it).

`error_json` is the one place an error becomes a JSON body: `{"error": "<code>", "detail": ...}`,
except on the phones' `/api/sms`, which answers in the shape cht-gateway reads
(smsbridge/carriers/chtgateway.py `error_body`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsbridge.carriers import chtgateway
from smsbridge.errors import BadRequest, PayloadTooLarge, RequestError


class BodyLimit:
    """Refuse request bodies (and query strings) over `max_bytes` with 413, by Content-Length
    before reading and by counting while reading (chunked bodies). `on_refuse(scope, error)`
    hears of each request this answers itself (a body found too large while the app reads it
    goes through the app's error handler instead)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        on_refuse: Callable[[Scope, RequestError], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_bytes:
            too_long = PayloadTooLarge(f"query string over {self.max_bytes} bytes")
            await self._refuse(scope, send, too_long)
            return
        declared = chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    await self._refuse(scope, send, BadRequest("bad Content-Length"))
                    return
                if length > self.max_bytes:
                    await self._refuse(scope, send, _too_large(self.max_bytes))
                    return
                declared = True
            elif name == b"transfer-encoding":
                chunked = True
        if declared and not chunked:  # the server reads no more than Content-Length bytes
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, send: Send, error: RequestError) -> None:
        if self.on_refuse is not None:
            self.on_refuse(scope, error)
        await _send_json(send, error.http_status, error_json(scope, error.code, error.detail))


def error_json(scope: Scope, code: str, detail: str) -> dict[str, Any]:
    """The JSON body of an error (`code`, `detail`: SmsBridgeError's) answered to the request
    of `scope` (see the module doc)."""
    if scope.get("path") in chtgateway.PATHS:
        return chtgateway.error_body(detail or code)
    return {"error": code, "detail": detail}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over {limit} bytes")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
