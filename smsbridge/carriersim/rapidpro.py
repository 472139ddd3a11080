"""RapidPro's API v2 (what CHT's RapidPro integration and smsbridge/carriers/rapidpro.py use),
simulated from its documentation:

    POST /api/v2/broadcasts.json   {"urns": ["tel:+..."], "text": "..."} -> 201, the broadcast
    GET  /api/v2/messages.json?broadcast=<id>   {"next", "previous", "results": [message]}

Every request needs `Authorization: Token <token>` (else 401 `{"detail": "Invalid token."}`,
DRF's answer). Faults: `5xx` (500), `throttle` (429 with Retry-After, DRF's
`{"detail": "Request was throttled. Expected available in 1 second."}`), `invalid_number`
(400 `{"urns": ["Invalid URN: ..."]}`), `timeout`. A broadcast's message moves one status
each time it is read (queued, wired, sent, then the simulator's `final`: delivered, or failed),
unless the simulator's `reports` is off (it stays queued).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from smsbridge.carriersim.sim import CarrierSim

PROGRESS = ("queued", "wired", "sent")
_ids = itertools.count(2690007)


@dataclass
class Broadcast:
    id: int
    urn: str
    text: str
    status: str = "queued"
    created_on: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _authorized(sim: CarrierSim, request: Request) -> bool:
    return request.headers.get("authorization") == f"Token {sim.credentials['rapidpro'][1]}"


def _unauthorized() -> Response:
    return JSONResponse(
        {"detail": "Invalid token."}, status_code=401, headers={"WWW-Authenticate": "Token"}
    )


async def broadcasts(sim: CarrierSim, request: Request) -> Response:
    sim.requests["rapidpro"] += 1
    if not _authorized(sim, request):
        return _unauthorized()
    fault = await sim.take_fault("rapidpro")
    if fault in ("5xx", "timeout"):
        return JSONResponse({"detail": "Server Error"}, status_code=500 if fault == "5xx" else 504)
    if fault == "throttle":
        return JSONResponse(
            {"detail": "Request was throttled. Expected available in 1 second."},
            status_code=429,
            headers={"Retry-After": "1"},
        )
    body: Any = await request.json()
    urns = body.get("urns") if isinstance(body, dict) else None
    text = body.get("text") if isinstance(body, dict) else None
    if isinstance(text, dict):  # translations, {"eng": "..."}
        text = next(iter(text.values()), None)
    if not isinstance(urns, list) or not urns or not isinstance(text, str) or not text:
        return JSONResponse({"non_field_errors": ["Must provide urns and text"]}, status_code=400)
    urn = str(urns[0])
    number = urn[4:] if urn.startswith("tel:") else ""
    if fault == "invalid_number" or not number or sim.is_invalid(number):
        return JSONResponse({"urns": [f"Invalid URN: {urn}"]}, status_code=400)
    broadcast = Broadcast(next(_ids), urn, text, created_on=_now())
    sim.record("rapidpro", number, text, "", None, message_id=str(broadcast.id))
    sim.rapidpro_broadcasts[broadcast.id] = broadcast
    answer = {
        "id": broadcast.id,
        "urns": [urn],
        "contacts": [],
        "groups": [],
        "text": {"eng": text},
        "base_language": "eng",
        "status": broadcast.status,
        "created_on": broadcast.created_on,
    }
    return JSONResponse(answer, status_code=201)


async def messages(sim: CarrierSim, request: Request) -> Response:
    sim.requests["rapidpro_messages"] += 1
    if not _authorized(sim, request):
        return _unauthorized()
    raw = request.query_params.get("broadcast", "")
    broadcast = sim.rapidpro_broadcasts.get(int(raw)) if raw.isdigit() else None
    results = []
    if broadcast is not None:
        results.append(
            {
                "id": broadcast.id * 10,
                "broadcast": broadcast.id,
                "contact": {"uuid": f"c-{broadcast.id}", "name": None},
                "urn": broadcast.urn,
                "channel": {"uuid": "ch-1", "name": "Simulated channel"},
                "direction": "out",
                "type": "text",
                "status": broadcast.status,
                "visibility": "visible",
                "text": broadcast.text,
                "labels": [],
                "attachments": [],
                "created_on": broadcast.created_on,
                "sent_on": None,
                "modified_on": _now(),
            }
        )
        if sim.state["rapidpro"].reports:
            broadcast.status = _next(broadcast.status, sim.state["rapidpro"].final)
    return JSONResponse({"next": None, "previous": None, "results": results})


def _next(status: str, final: str) -> str:
    if status in PROGRESS[:-1]:
        return PROGRESS[PROGRESS.index(status) + 1]
    if status == PROGRESS[-1]:
        return "delivered" if final == "delivered" else "failed"
    return status
