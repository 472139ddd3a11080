"""CHT's way of answering errors (api/src/server-utils.js), as the bridge sees it.

- `prefers_json`: Express `req.accepts(['text', 'json'])`. No Accept header, or `*/*`, picks text.
- `error_response`: JSON `{"code", "error", "details"?}` or text `message[: JSON(details)]`;
  any status >= 500 becomes "Server error" with the public message as details.
- `not_logged_in`: the three faces of 401 (JSON, a 302 to the login page, plain text with a
  basic-auth prompt), always with `logout-authorization: CHT-Core API`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

JSON_TYPE = "application/json; charset=utf-8"


class ChtHttpError(Exception):
    """Raised by a handler to answer the way `serverUtils.error` does."""

    def __init__(
        self, status: int, message: str, details: Any = None, *, always_json: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.always_json = always_json


class NotLoggedIn(Exception):
    """Raised by a handler to answer with `serverUtils.notLoggedIn`."""

    def __init__(self, *, basic_prompt: bool = False) -> None:
        super().__init__("not logged in")
        self.basic_prompt = basic_prompt


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer the way Express writes one (compact, `charset=utf-8`)."""
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers=headers,
        media_type=JSON_TYPE,
    )


def _accept_entries(header: str) -> list[tuple[str, str, float, int]]:
    entries = []
    for order, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.partition("/")
        entries.append((kind, sub or "*", q, order))
    return entries


def preferred_type(accept: str | None, offered: list[str]) -> str | None:
    """The negotiator's pick among `offered` full media types (None if none is acceptable)."""
    if accept is None:
        return offered[0]
    entries = _accept_entries(accept)
    ranked = []
    for index, media in enumerate(offered):
        kind, _, sub = media.partition("/")
        best: tuple[float, int, int] | None = None
        for e_kind, e_sub, q, order in entries:
            spec = 0
            if e_kind == kind:
                spec |= 4
            elif e_kind != "*":
                continue
            if e_sub == sub:
                spec |= 2
            elif e_sub != "*":
                continue
            if best is None or (spec, -order) > (best[1], -best[2]):
                best = (q, spec, order)
        if best is not None and best[0] > 0:
            ranked.append((-best[0], -best[1], best[2], index, media))
    if not ranked:
        return None
    return sorted(ranked)[0][4]


def prefers_json(request: Request) -> bool:
    return preferred_type(request.headers.get("accept"), ["text/plain", "application/json"]) == (
        "application/json"
    )


def error_response(
    request: Request, status: int, message: str, details: Any = None, *, always_json: bool = False
) -> Response:
    if status >= 500:
        message = "Server error"
    if always_json or prefers_json(request):
        body: dict[str, Any] = {"code": status, "error": message}
        if details is not None:
            body["details"] = details
        return json_response(body, status)
    text = message if details is None else f"{message}: {json.dumps(details)}"
    return PlainTextResponse(text, status_code=status)


def _is_human(request: Request) -> bool:
    agent = request.headers.get("user-agent")
    if not agent:
        return False
    dalvik = "Dalvik" in agent and ("medic.gateway" in agent or ".collect.android" in agent)
    return not dalvik


def not_logged_in(
    request: Request, *, basic_prompt: bool = False, force_redirect: bool = False
) -> Response:
    """`basic_prompt`: always the text 401 (GET /api/v1/settings). `force_redirect`: always the
    302 to the login page (a fault: what a client that lost its JSON Accept header sees)."""
    headers = {"logout-authorization": "CHT-Core API"}
    if not basic_prompt and not force_redirect and prefers_json(request):
        return json_response({"code": 401, "error": "unauthorized"}, 401, headers)
    if force_redirect or (not basic_prompt and _is_human(request)):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(
            f"/medic/login?redirect={quote(target, safe='')}", status_code=302, headers=headers
        )
        response.set_cookie("login", "force", path="/")
        return response
    headers["WWW-Authenticate"] = 'Basic realm="Medic Web Services"'
    return PlainTextResponse("not logged in", status_code=401, headers=headers)


def plain_json(body: Any, status: int) -> JSONResponse:
    """A JSON body that CHT always sends as JSON, whatever the Accept header."""
    return JSONResponse(body, status_code=status)
