"""`POST /api/v1/records` and `/api/v2/records` (tests/chtsim/test_records.py).

Body parse errors first (500), then `can_create_records` (401/403), then dispatch on the
content type: urlencoded -> createByForm (v1 also passes `?locale=`), JSON -> createRecordByJSON,
anything else -> 500 without details. Service errors -> 500 with the message as details.
Transitions run before the answer `{"success": true, "id": ...}`. Not idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.bodies import form_body, is_json, is_urlencoded, json_body
from smsbridge.chtsim.medic_db import translation_tables
from smsbridge.chtsim.records import RecordError, create_by_form, create_record_by_json
from smsbridge.chtsim.responses import ChtHttpError, json_response
from smsbridge.chtsim.transitions import run_transitions

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim


async def post_records(sim: ChtSim, request: Request, version: int) -> Response:
    body: Any = None
    if is_urlencoded(request):
        body = await form_body(request)
    elif is_json(request):
        body = await json_body(request)
    sim.auth.require(request, "can_create_records")
    state = sim.state
    now = sim.now_ms()
    try:
        if is_urlencoded(request) and body is not None:
            locale = request.query_params.get("locale") if version == 1 else None
            doc = create_by_form(
                body,
                settings=state.settings,
                translations=translation_tables(state),
                now_ms=now,
                locale=locale,
                timezone=sim.timezone,
            )
        elif is_json(request):
            doc = create_record_by_json(
                body if isinstance(body, dict) else {},
                settings=state.settings,
                translations=translation_tables(state),
                now_ms=now,
                timezone=sim.timezone,
            )
        else:
            raise ChtHttpError(500, "Content-Type header not supported")
    except RecordError as exc:
        raise ChtHttpError(500, "Server error", str(exc)) from exc
    except ChtHttpError:
        raise
    except Exception as exc:  # CHT crashes on some inputs: "Server error", no details
        raise ChtHttpError(500, "Server error") from exc
    with state.lock:
        run_transitions(state, sim.guard, doc, now)
        saved = state.put_doc(doc)
    sim.changed()
    return json_response({"success": True, "id": saved["_id"]})
