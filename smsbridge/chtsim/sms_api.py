"""`GET|POST /api/sms`: the medic-gateway protocol (tests/chtsim/test_sms_api.py).

POST: the exact `Content-Type: application/json` check (400) comes before authentication; then,
strictly in order, incoming messages (kept only with truthy id/from/content, de-duplicated by
id against stored gateway refs but not within the batch, each through createByForm and the
transitions), status updates, and the outgoing selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.bodies import json_body
from smsbridge.chtsim.medic_db import translation_tables
from smsbridge.chtsim.messaging import WriteConflict, apply_updates, select_outgoing
from smsbridge.chtsim.records import create_by_form
from smsbridge.chtsim.responses import ChtHttpError, json_response
from smsbridge.chtsim.transitions import run_transitions
from smsbridge.smsparser.js.numbers import truthy

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

PERMISSION = "can_access_gateway_api"


def process_incoming(sim: ChtSim, messages: list[Any], now_ms: int) -> list[str]:
    """`messaging.processIncomingMessages`: returns the ids of the docs saved."""
    state = sim.state
    good = []
    for message in messages:
        if not isinstance(message, dict):
            if message is None:
                raise TypeError("Cannot read properties of null")
            continue
        if all(truthy(message.get(k)) for k in ("id", "content", "from")):
            good.append(message)
    with state.lock:
        known = {
            m["id"] for m in good if isinstance(m["id"], str) and state.has_gateway_ref(m["id"])
        }
        docs = []
        for message in good:
            if message["id"] in known:
                continue
            doc = create_by_form(
                {
                    "from": message["from"],
                    "message": message["content"],
                    "gateway_ref": message["id"],
                },
                settings=state.settings,
                translations=translation_tables(state),
                now_ms=now_ms,
                timezone=sim.timezone,
            )
            run_transitions(state, sim.guard, doc, now_ms)
            docs.append(doc)
        return [state.put_doc(doc)["_id"] for doc in docs]


async def get_sms(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request, PERMISSION)
    return json_response({"medic-gateway": True})


async def post_sms(sim: ChtSim, request: Request) -> Response:
    if request.headers.get("content-type") != "application/json":
        raise ChtHttpError(400, "Content-Type must be application/json")
    body = await json_body(request)
    sim.auth.require(request, PERMISSION)
    if not isinstance(body, dict):
        body = {}
    messages, updates = body.get("messages"), body.get("updates")
    if messages is not None and not isinstance(messages, list):
        raise ChtHttpError(500, "messages.filter is not a function")
    if updates is not None and not isinstance(updates, list):
        raise ChtHttpError(500, "updates.map is not a function")
    now = sim.now_ms()
    try:
        process_incoming(sim, messages or [], now)
        apply_updates(sim.state, updates or [], now, sim.faults.take_conflict)
    except WriteConflict as exc:
        raise ChtHttpError(500, "Failed to update message states") from exc
    except ChtHttpError:
        raise
    except Exception as exc:  # CHT's own crashes (e.g. its parser on odd input) are 500s
        raise ChtHttpError(500, str(exc)) from exc
    outgoing = select_outgoing(sim.state, now)
    sim.changed()
    return json_response({"messages": outgoing})
