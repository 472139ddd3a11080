"""Kannel's smsbox `sendsms` interface, simulated (the real Kannel is what tests/carriers/
test_kannel.py runs; this stands in where a test needs faults):

    GET /cgi-bin/sendsms?username=&password=&to=&text=&from=&dlr-mask=&dlr-url=

Answers as smsbox does, in text: 202 "0: Accepted for delivery"; 403 "Authorization failed
for sendsms"; 403 "Number(s) has/have been denied by white- and/or black-lists."; 503
"Temporal failure, try again later." (throttle); 500 "Sending failed." (5xx). Kannel gives
the message no id in its answer: the simulator records it under the `ref` of its dlr-url.
Delivery reports are GETs of the dlr-url with Kannel's escapes filled in (%d the DLR type: 8
then 1 delivered or 2 failed; %A the SMSC's answer; %F its id; %i the SMSC; %% a percent).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

if TYPE_CHECKING:
    from smsbridge.carriersim.sim import CarrierSim, Report

SMSC = "sim"


def fill(url: str, escapes: dict[str, str]) -> str:
    """Kannel's URL escapes in `url` replaced: `%x` by `escapes[x]`, `%%` by `%`; any other
    `%x` stays as written."""
    out, i = [], 0
    while i < len(url):
        if url[i] == "%" and i + 1 < len(url):
            key = url[i + 1]
            if key == "%":
                out.append("%")
                i += 2
                continue
            if key in escapes:
                out.append(escapes[key])
                i += 2
                continue
        out.append(url[i])
        i += 1
    return "".join(out)


def _text(answer: str, status: int) -> Response:
    return PlainTextResponse(answer, status_code=status)


async def sendsms(sim: CarrierSim, request: Request) -> Response:
    sim.requests["kannel"] += 1
    username, password = sim.credentials["kannel"]
    params = request.query_params
    if params.get("username") != username or params.get("password") != password:
        return _text("Authorization failed for sendsms", 403)
    fault = await sim.take_fault("kannel")
    if fault in ("5xx", "timeout"):
        return _text("Sending failed.", 500 if fault == "5xx" else 504)
    if fault == "throttle":
        return _text("Temporal failure, try again later.", 503)
    to, text = params.get("to", ""), params.get("text", "")
    if not to:
        return _text("Missing receiver number, rejected", 400)
    if fault == "invalid_number" or sim.is_invalid(to):
        return _text("Number(s) has/have been denied by white- and/or black-lists.", 403)
    callback = params.get("dlr-url", "")
    ref = parse_qs(urlsplit(fill(callback, {})).query).get("ref", [None])[0]
    sim.record("kannel", to, text, params.get("from", ""), ref, message_id=ref or str(uuid.uuid4()))
    reports: list[Report] = []
    mask = int(params.get("dlr-mask") or 0)
    if callback and mask:
        final = "1" if sim.state["kannel"].final == "delivered" else "2"
        foreign = uuid.uuid4().hex[:10]
        for kind, reply, smsc_id in (("8", "ACK/", ""), (final, "", foreign)):
            if int(kind) & mask:
                url = fill(callback, {"d": kind, "A": reply, "F": smsc_id, "i": SMSC})
                reports.append(sim.report("kannel", kind, url, method="GET"))
    return await sim.respond("kannel", _text("0: Accepted for delivery", 202), reports)
