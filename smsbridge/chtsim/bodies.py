"""Request bodies the way CHT's body-parser reads them: gzip/deflate request bodies inflated,
32 MiB at most (413), malformed JSON answered 500 "Server error" (not 400). A client that goes
away while its body is read is a dropped request (499, logged at DEBUG), not a server error."""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from smsbridge.chtsim.responses import ChtHttpError

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
CLIENT_CLOSED = 499  # nginx's "client closed request": an answer nobody will read


async def raw_body(request: Request) -> bytes:
    try:
        body = await request.body()
    except ClientDisconnect as exc:
        log.debug("request dropped: the client went away while sending %s", request.url.path)
        raise ChtHttpError(CLIENT_CLOSED, "client closed the request") from exc
    encoding = request.headers.get("content-encoding", "identity").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as exc:
        raise ChtHttpError(400, "invalid request body") from exc
    if len(body) > MAX_BODY:
        raise ChtHttpError(413, "Payload Too Large")
    return body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(request: Request) -> bool:
    kind = media_type(request)
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def is_urlencoded(request: Request) -> bool:
    return media_type(request) == "application/x-www-form-urlencoded"


async def json_body(request: Request) -> Any:
    """The parsed JSON body (objects and arrays only, as body-parser's strict mode), `{}` when
    the request is not JSON or has no body."""
    if not is_json(request):
        return {}
    body = await raw_body(request)
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChtHttpError(500, "Server error") from exc
    if not isinstance(value, dict | list):
        raise ChtHttpError(500, "Server error")
    return value


async def form_body(request: Request) -> dict[str, Any]:
    """A urlencoded body; a repeated key becomes a list, as qs does."""
    body = (await raw_body(request)).decode("utf-8", errors="replace")
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        if key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result
