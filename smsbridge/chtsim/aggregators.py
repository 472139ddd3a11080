"""CHT's own aggregator integrations, for completeness:

- `PUT /api/v1/credentials/{key}` (DB admins only; text body) stores a secret such as
  `africastalking.com:incoming` or `rapidpro:incoming`.
- Africa's Talking: `POST /api/v1/sms/africastalking/incoming-messages?key=` (urlencoded `id`,
  `from`, `text` -> `{"saved": n}`) and `.../delivery-reports?key=` (`id`, `status`,
  `failureReason`; unknown status -> 400).
- RapidPro: `POST /api/v2/sms/rapidpro/incoming-messages` (and the legacy typo route
  `/api/v1/sms/radpidpro/...`) with `Authorization: Token <secret>`; JSON `{id, from, content}`
  -> `{"saved": 1}`, not saved -> 400 "Message was not saved".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.bodies import form_body, is_urlencoded, json_body, raw_body
from smsbridge.chtsim.messaging import set_task_state
from smsbridge.chtsim.responses import ChtHttpError, json_response
from smsbridge.chtsim.sms_api import process_incoming

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

AT_INCOMING = "africastalking.com:incoming"
RAPIDPRO_INCOMING = "rapidpro:incoming"
AT_STATES = {
    "Sent": "forwarded-by-gateway",
    "Submitted": "sent",
    "Buffered": "sent",
    "Rejected": "failed",
    "Success": "delivered",
    "Failed": "failed",
}


async def put_credential(sim: ChtSim, request: Request) -> Response:
    ctx = sim.auth.require(request)
    if not ctx.is_admin:
        raise ChtHttpError(403, "Insufficient permissions")
    value = (await raw_body(request)).decode("utf-8")
    sim.state.credentials[request.path_params["key"]] = value
    sim.changed()
    return json_response({"ok": True})


def _check_key(sim: ChtSim, name: str, given: str | None) -> None:
    expected = sim.state.credentials.get(name)
    if not expected:
        raise ChtHttpError(403, "No incoming key configured")
    if given != expected:
        raise ChtHttpError(403, "Incorrect token")


async def at_incoming(sim: ChtSim, request: Request) -> Response:
    _check_key(sim, AT_INCOMING, request.query_params.get("key"))
    body = await form_body(request) if is_urlencoded(request) else {}
    message = {"id": body.get("id"), "from": body.get("from"), "content": body.get("text")}
    saved = process_incoming(sim, [message], sim.now_ms())
    sim.changed()
    return json_response({"saved": len(saved)})


async def at_delivery(sim: ChtSim, request: Request) -> Response:
    _check_key(sim, AT_INCOMING, request.query_params.get("key"))
    body = await form_body(request) if is_urlencoded(request) else {}
    ref, status = body.get("id"), body.get("status")
    state = AT_STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise ChtHttpError(
            400, f'Unknown status code: "{status}", gateway message reference: "{ref}"'
        )
    saved = 0
    with sim.state.lock:
        doc_id = sim.state.task_refs.get(ref) if isinstance(ref, str) else None
        doc = sim.state.docs.get(doc_id or "")
        if doc is not None:
            for list_name in ("tasks", "scheduled_tasks"):
                for task in doc.get(list_name) or []:
                    if isinstance(task, dict) and task.get("gateway_ref") == ref:
                        reason = body.get("failureReason")
                        details = reason if isinstance(reason, str) else None
                        if set_task_state(task, state, details, sim.now_ms(), ref):
                            saved += 1
            if saved:
                sim.state.put_doc(doc)
    sim.changed()
    return json_response({"saved": saved})


async def rapidpro_incoming(sim: ChtSim, request: Request) -> Response:
    header = request.headers.get("authorization", "")
    match = re.match(r"^Token\s+(.*)$", header)
    if match is None:
        raise ChtHttpError(403, "Missing authorization token")
    _check_key(sim, RAPIDPRO_INCOMING, match.group(1))
    body = await json_body(request)
    body = body if isinstance(body, dict) else {}
    message = {k: body.get(k) for k in ("id", "from", "content")}
    saved = process_incoming(sim, [message], sim.now_ms())
    if not saved:
        raise ChtHttpError(400, "Message was not saved")
    sim.changed()
    return json_response({"saved": 1})
