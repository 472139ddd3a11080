"""The request-body limit: a body over SMSBRIDGE_MAX_BODY_BYTES is refused with 413 (JSON, like
every error), by its Content-Length before the app runs or while a chunked body is read. A query
string over the same limit is refused too (GET webhooks carry the SMS in it)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsbridge.errors import BadRequest, PayloadTooLarge


class BodyLimit:
    """Refuse request bodies (and query strings) over `max_bytes` with 413, by Content-Length
    before reading and by counting while reading (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_bytes:
            too_long = PayloadTooLarge(f"query string over {self.max_bytes} bytes")
            await _send_json(send, 413, too_long.to_json())
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    await _send_json(send, 400, BadRequest("bad Content-Length").to_json())
                    return
                if length > self.max_bytes:
                    await _send_json(send, 413, _too_large(self.max_bytes).to_json())
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


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over {limit} bytes")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
