"""The simulated carriers' send APIs, each answering in its carrier's wire format
(status codes, error bodies and ids as the real APIs give them) and queueing the delivery
reports it will post:

    POST /version1/messaging                                 Africa's Talking (header apiKey)
    POST /2010-04-01/Accounts/{sid}/Messages.json            Twilio (Basic AccountSid:AuthToken)
    POST /sms/json                                           Vonage (api_key, api_secret)
    POST /send                                               generic (form or JSON: to, text, from,
                                                             id = our ref, callback = DLR URL)

Each is `async def <carrier>(sim, request) -> Response`; the state, faults and the posting of
reports are the simulator's (sim.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from smsbridge.segments import segment

if TYPE_CHECKING:
    from smsbridge.carriersim.sim import CarrierSim, Report, SentSms


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: Base64(HMAC-SHA1(AuthToken, URL + sorted key+value))."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# -- Africa's Talking ------------------------------------------------------------------------------


async def africastalking(sim: CarrierSim, request: Request) -> Response:
    sim.requests["africastalking"] += 1
    username, key = sim.credentials["africastalking"]
    form = await request.form()
    if request.headers.get("apikey") != key or form.get("username") != username:
        return PlainTextResponse("The supplied authentication is invalid", status_code=401)
    fault = await sim.take_fault("africastalking")
    if fault in ("5xx", "timeout"):
        return PlainTextResponse(
            "Internal Server Error", status_code=500 if fault == "5xx" else 504
        )
    if fault == "throttle":
        return PlainTextResponse("Too Many Requests", status_code=429)
    numbers = [n.strip() for n in str(form.get("to", "")).split(",") if n.strip()]
    text, sender = str(form.get("message", "")), str(form.get("from", ""))
    if not numbers or not text:
        return PlainTextResponse("Request is missing required form field 'to'", status_code=400)
    recipients, reports = [], []
    for number in numbers:
        if fault == "invalid_number" or sim.is_invalid(number):
            recipients.append(
                {
                    "statusCode": 403,
                    "number": number,
                    "status": "InvalidPhoneNumber",
                    "cost": "0",
                    "messageId": "None",
                }
            )
            continue
        sms = sim.record("africastalking", number, text, sender, None)
        recipients.append(
            {
                "statusCode": 101,
                "number": number,
                "status": "Success",
                "cost": "KES 0.8000",
                "messageId": sms.message_id,
            }
        )
        reports.extend(_at_reports(sim, sms))
    sent = sum(1 for r in recipients if r["statusCode"] == 101)
    body = {
        "SMSMessageData": {
            "Message": f"Sent to {sent}/{len(numbers)} Total Cost: KES {0.8 * sent:.4f}",
            "Recipients": recipients,
        }
    }
    return await sim.respond("africastalking", JSONResponse(body, status_code=201), reports)


def _at_reports(sim: CarrierSim, sms: SentSms) -> list[Report]:
    state = sim.state["africastalking"]
    url = state.callback
    if not url:
        return []
    final = {"delivered": "Success", "failed": "Failed", "expired": "Failed"}[state.final]
    out = []
    for status in ("Sent", final):
        data = {
            "id": sms.message_id,
            "status": status,
            "phoneNumber": sms.to,
            "networkCode": "63902",
            "retryCount": "0",
        }
        if status == "Failed":
            data["failureReason"] = (
                "DeliveryFailure" if state.final == "failed" else "AbsentSubscriber"
            )
        out.append(sim.report("africastalking", status, url, data=data))
    return out


# -- Twilio ----------------------------------------------------------------------------------------


async def twilio(sim: CarrierSim, request: Request) -> Response:
    sim.requests["twilio"] += 1
    sid, token = sim.credentials["twilio"]
    expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
    if request.headers.get("authorization") != expected or request.path_params["sid"] != sid:
        return JSONResponse(
            {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
            status_code=401,
        )
    fault = await sim.take_fault("twilio")
    if fault in ("5xx", "timeout"):
        code = 503 if fault == "5xx" else 504
        return JSONResponse(
            {"code": 20500, "message": "Internal Server Error", "status": code},
            status_code=code,
        )
    if fault == "throttle":
        return JSONResponse(
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            status_code=429,
            headers=_retry_after(sim, "twilio"),
        )
    form = await request.form()
    to, body = str(form.get("To", "")), str(form.get("Body", ""))
    sender = str(form.get("From", "") or form.get("MessagingServiceSid", ""))
    if not body:
        return _twilio_error(21602, "Message body is required.")
    if fault == "invalid_number" or sim.is_invalid(to):
        return _twilio_error(21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender:
        return _twilio_error(21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
    sms = sim.record("twilio", to, body, sender, None)
    callback = str(form.get("StatusCallback", "")) or sim.state["twilio"].callback
    reports = []
    if callback:
        final = {"delivered": "delivered", "failed": "undelivered", "expired": "failed"}[
            sim.state["twilio"].final
        ]
        for status in ("sent", final):
            params = {
                "MessageSid": sms.message_id,
                "SmsSid": sms.message_id,
                "MessageStatus": status,
                "SmsStatus": status,
                "AccountSid": sid,
                "From": sender,
                "To": to,
                "ApiVersion": "2010-04-01",
            }
            if status in ("undelivered", "failed"):
                params["ErrorCode"] = "30003" if status == "undelivered" else "30008"
            headers = {"X-Twilio-Signature": twilio_signature(token, callback, params)}
            reports.append(sim.report("twilio", status, callback, data=params, headers=headers))
    body_json = {
        "sid": sms.message_id,
        "account_sid": sid,
        "to": to,
        "from": sender,
        "body": body,
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{sid}/Messages/{sms.message_id}.json",
    }
    return await sim.respond("twilio", JSONResponse(body_json, status_code=201), reports)


# -- Vonage ----------------------------------------------------------------------------------------


async def vonage(sim: CarrierSim, request: Request) -> Response:
    sim.requests["vonage"] += 1
    key, secret = sim.credentials["vonage"]
    if request.headers.get("content-type", "").startswith("application/json"):
        params = {k: str(v) for k, v in (await request.json()).items()}
    else:
        params = {k: str(v) for k, v in (await request.form()).items()}
    if params.get("api_key") != key or params.get("api_secret") != secret:
        return _vonage_error("4", "Bad Credentials")
    fault = await sim.take_fault("vonage")
    if fault in ("5xx", "timeout"):
        return PlainTextResponse("Service Unavailable", status_code=503 if fault == "5xx" else 504)
    if fault == "throttle":
        wait = round(sim.state["vonage"].throttle_wait * 1000)
        return _vonage_error("1", f"Throughput Rate Exceeded - please wait [ {wait} ] and retry")
    to, text = params.get("to", ""), params.get("text", "")
    for name in ("from", "to", "text"):
        if not params.get(name):
            return _vonage_error("2", f"Missing {name} param")
    if fault == "invalid_number" or sim.is_invalid(to):
        return _vonage_error("3", "Invalid to address")
    parts = segment(text).parts
    refused = [k for k in sim.state["vonage"].refused_parts if 1 <= k <= len(parts)]
    if len(parts) > 1 and refused:
        return await _vonage_in_part(sim, params, parts, refused)
    sms = sim.record("vonage", to, text, params["from"], params.get("client-ref"))
    body = {
        "message-count": str(len(parts)),
        "messages": [
            _vonage_message(sms, sms.message_id if k == 1 else sim.message_id("vonage"))
            for k in range(1, len(parts) + 1)
        ],
    }
    return await sim.respond("vonage", JSONResponse(body), _vonage_reports(sim, sms, params))


async def _vonage_in_part(
    sim: CarrierSim, params: dict[str, str], parts: tuple[str, ...], refused: list[int]
) -> Response:
    """A long SMS Vonage takes in part: one answer per part (as Vonage sends a long text, each
    part its own SMS), the parts in `refused` with status 5 (internal error), the others
    accepted (each recorded as a part the handset gets: its text, its id)."""
    messages: list[dict[str, str]] = []
    reports: list[Report] = []
    for k, part in enumerate(parts, start=1):
        if k in refused:
            messages.append({"status": "5", "error-text": "Internal Error"})
            continue
        sms = sim.record("vonage", params["to"], part, params["from"], params.get("client-ref"))
        messages.append(_vonage_message(sms, sms.message_id))
        reports.extend(_vonage_reports(sim, sms, params))
    body = {"message-count": str(len(parts)), "messages": messages}
    return await sim.respond("vonage", JSONResponse(body), reports)


def _vonage_message(sms: SentSms, message_id: str) -> dict[str, str]:
    """One part's answer, accepted (status 0)."""
    return {
        "to": sms.to,
        "message-id": message_id,
        "status": "0",
        "remaining-balance": "3.14159265",
        "message-price": "0.03330000",
        "network": "23410",
        **({"client-ref": sms.ref} if sms.ref else {}),
    }


def _vonage_reports(sim: CarrierSim, sms: SentSms, params: dict[str, str]) -> list[Report]:
    """The delivery receipts of `sms` (accepted, then the final status), to the send's
    `callback` (else the account's), with its `client-ref`."""
    to = sms.to
    callback = params.get("callback") or sim.state["vonage"].callback
    reports = []
    if callback:
        final = sim.state["vonage"].final
        for status in ("accepted", final):
            query = {
                "msisdn": to,
                "to": params["from"],
                "network-code": "23410",
                "messageId": sms.message_id,
                "price": "0.03330000",
                "status": status,
                "scts": time.strftime("%y%m%d%H%M", time.gmtime()),
                "err-code": "0" if status in ("accepted", "delivered") else "1",
                "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            }
            if sms.ref:
                query["client-ref"] = sms.ref
            reports.append(sim.report("vonage", status, callback, method="GET", params=query))
    return reports


# -- generic ---------------------------------------------------------------------------------------


async def generic(sim: CarrierSim, request: Request) -> Response:
    sim.requests["generic"] += 1
    token = sim.credentials["generic"][1]
    if token and request.headers.get("authorization") != f"Bearer {token}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    fault = await sim.take_fault("generic")
    if fault in ("5xx", "timeout"):
        return JSONResponse({"error": "unavailable"}, status_code=503 if fault == "5xx" else 504)
    if fault == "throttle":
        return JSONResponse(
            {"error": "throttled"}, status_code=429, headers=_retry_after(sim, "generic")
        )
    if request.headers.get("content-type", "").startswith("application/json"):
        params = {k: str(v) for k, v in (await request.json()).items()}
    else:
        params = dict(parse_qsl((await request.body()).decode()))
    to, text = params.get("to", ""), params.get("text", "")
    if not to or not text:
        return JSONResponse({"error": "missing to or text"}, status_code=400)
    if fault == "invalid_number" or sim.is_invalid(to):
        return JSONResponse({"error": "invalid_number"}, status_code=400)
    sms = sim.record("generic", to, text, params.get("from", ""), params.get("id"))
    callback = params.get("callback") or sim.state["generic"].callback
    reports = []
    if callback:
        for status in ("sent", sim.state["generic"].final):
            data = {"id": sms.message_id, "status": status}
            if sms.ref:
                data["ref"] = sms.ref
            reports.append(sim.report("generic", status, callback, json=data))
    return await sim.respond("generic", JSONResponse({"id": sms.message_id}), reports)


def _retry_after(sim: CarrierSim, carrier: str) -> dict[str, str]:
    """The Retry-After of `carrier`'s 429 throttle answer (none with `throttle_retry_after`
    off: Twilio, for one, documents none)."""
    return {"Retry-After": "1"} if sim.state[carrier].throttle_retry_after else {}


def _twilio_error(code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": 400,
        },
        status_code=400,
    )


def _vonage_error(status: str, text: str) -> JSONResponse:
    return JSONResponse(
        {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
    )
