"""Carrier simulator: the send APIs of Africa's Talking, Twilio, Vonage and a generic HTTP
gateway, answering in their wire formats (../shared/specs/carriers-and-peers.md §4), then calling
the bridge's delivery-report webhooks; and a fake cht-gateway phone that polls an `/api/sms`.

    sim = CarrierSim()
    sim.set_callback("africastalking", bridge_url + "/carriers/africastalking/TOKEN/status")
    with serve_in_thread(sim.app) as url: ...   # the carriers' base URL for the bridge

Send endpoints (all under the one base URL):
    POST /version1/messaging                                 Africa's Talking (header apiKey)
    POST /2010-04-01/Accounts/{sid}/Messages.json            Twilio (Basic AccountSid:AuthToken)
    POST /sms/json                                           Vonage (api_key, api_secret)
    POST /send                                               generic (form or JSON: to, text, from,
                                                             id = our ref, callback = DLR URL)

Faults, injected per carrier (`fail_next`, `outage`): `5xx`, `timeout` (the request hangs, then
504, nothing sent), `throttle` (the carrier's own 429 / "Throttled"), `invalid_number`; and
behaviour switches: `report_first` (delivery reports before the send response), `duplicate_reports`,
`final` (the final delivery status: delivered, failed, expired), `reports` (off: no callbacks).
Counts for tests: `sent_count(to, text)`, `sends`, `requests`.

The fake cht-gateway phone lives in smsbridge/fakephone.py (`FakePhone`, re-exported here).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from smsbridge.fakephone import FakePhone, PhoneSms

__all__ = ["CarrierSim", "FakePhone", "PhoneSms", "SentSms", "twilio_signature"]

CARRIERS = ("africastalking", "twilio", "vonage", "generic")
FAULTS = ("5xx", "timeout", "throttle", "invalid_number")

DEFAULT_CREDENTIALS = {
    "africastalking": ("sandbox", "at-api-key"),
    "twilio": ("AC" + "0" * 32, "twilio-auth-token"),
    "vonage": ("vonage-key", "vonage-secret"),
    "generic": ("", "generic-token"),
}


@dataclass(frozen=True)
class SentSms:
    carrier: str
    message_id: str
    to: str
    text: str
    sender: str
    ref: str | None  # the sender's own reference, when the API carries one
    at: float


@dataclass
class CarrierState:
    faults: deque[str] = field(default_factory=deque)
    outage: str | None = None
    report_first: bool = False
    duplicate_reports: bool = False
    reports: bool = True
    final: str = "delivered"  # delivered | failed | expired
    callback: str | None = None  # DLR URL when the send request names none
    timeout_seconds: float = 2.0


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: Base64(HMAC-SHA1(AuthToken, URL + sorted key+value))."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class CarrierSim:
    """The simulated carriers' state and test controls; `app` serves their HTTP APIs."""

    def __init__(self, *, credentials: dict[str, tuple[str, str]] | None = None) -> None:
        self.credentials = dict(DEFAULT_CREDENTIALS)
        self.credentials.update(credentials or {})
        self.state = {name: CarrierState() for name in CARRIERS}
        self.sends: list[SentSms] = []
        self.requests: Counter[str] = Counter()
        self.reports_posted: list[tuple[str, str, int]] = []  # (carrier, status, http status)
        self.invalid_numbers: set[str] = set()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._pending_reports = 0
        self.app = Starlette(
            routes=[
                Route("/version1/messaging", self._africastalking, methods=["POST"]),
                Route("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio, methods=["POST"]),
                Route("/sms/json", self._vonage, methods=["POST"]),
                Route("/send", self._generic, methods=["POST"]),
            ]
        )

    # -- test controls -------------------------------------------------------------------------

    def fail_next(self, carrier: str, fault: str, times: int = 1) -> None:
        """The next `times` send requests to `carrier` meet `fault`."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.state[carrier].faults.extend([fault] * times)

    def outage(self, carrier: str, fault: str | None) -> None:
        """Every send request meets `fault` until `outage(carrier, None)`."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.state[carrier].outage = fault

    def configure(self, carrier: str, **options: Any) -> None:
        """Set `report_first`, `duplicate_reports`, `reports`, `final`, `timeout_seconds`."""
        for key, value in options.items():
            if not hasattr(self.state[carrier], key):
                raise ValueError(f"unknown option {key!r}")
            setattr(self.state[carrier], key, value)

    def set_callback(self, carrier: str, url: str) -> None:
        """Where `carrier` posts delivery reports when the send request names no URL (Africa's
        Talking's dashboard setting)."""
        self.state[carrier].callback = url

    def sent_count(self, to: str, text: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.sends if s.to == to and (text is None or s.text == text))

    def sent_by(self, carrier: str) -> list[SentSms]:
        with self._lock:
            return [s for s in self.sends if s.carrier == carrier]

    @property
    def reports_in_flight(self) -> int:
        return self._pending_reports

    # -- shared mechanics ----------------------------------------------------------------------

    async def _fault(self, carrier: str) -> str | None:
        state = self.state[carrier]
        fault = state.faults.popleft() if state.faults else state.outage
        if fault == "timeout":
            await asyncio.sleep(state.timeout_seconds)
        return fault

    def _record(self, carrier: str, to: str, text: str, sender: str, ref: str | None) -> SentSms:
        prefix = {"africastalking": "ATXid_", "twilio": "SM", "vonage": "", "generic": "g-"}
        if carrier == "vonage":
            message_id = f"{next(self._seq):016X}"
        else:
            message_id = prefix[carrier] + uuid.uuid4().hex
        sms = SentSms(carrier, message_id, to, text, sender, ref, time.time())
        with self._lock:
            self.sends.append(sms)
        return sms

    def _invalid(self, to: str) -> bool:
        digits = to.lstrip("+")
        return to in self.invalid_numbers or not digits.isdigit() or not 6 <= len(digits) <= 15

    async def _post(self, carrier: str, status: str, url: str, **kwargs: Any) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.request(kwargs.pop("method", "POST"), url, **kwargs)
            code = response.status_code
        except httpx.HTTPError:
            code = 0
        with self._lock:
            self.reports_posted.append((carrier, status, code))

    async def _report(self, carrier: str, reports: list[tuple[str, Callable[[], Any]]]) -> None:
        """Post each (status, coroutine factory) in order; twice each with duplicate_reports."""
        state = self.state[carrier]
        try:
            for _status, post in reports:
                for _ in range(2 if state.duplicate_reports else 1):
                    await post()
        finally:
            self._pending_reports -= 1

    async def _respond(
        self, carrier: str, response: Response, reports: list[tuple[str, Callable[[], Any]]]
    ) -> Response:
        state = self.state[carrier]
        if not state.reports or not reports:
            return response
        self._pending_reports += 1
        if state.report_first:
            await self._report(carrier, reports)
            return response
        response.background = BackgroundTask(self._report, carrier, reports)
        return response

    # -- Africa's Talking ----------------------------------------------------------------------

    async def _africastalking(self, request: Request) -> Response:
        self.requests["africastalking"] += 1
        username, key = self.credentials["africastalking"]
        form = await request.form()
        if request.headers.get("apikey") != key or form.get("username") != username:
            return PlainTextResponse("The supplied authentication is invalid", status_code=401)
        fault = await self._fault("africastalking")
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
            if fault == "invalid_number" or self._invalid(number):
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
            sms = self._record("africastalking", number, text, sender, None)
            recipients.append(
                {
                    "statusCode": 101,
                    "number": number,
                    "status": "Success",
                    "cost": "KES 0.8000",
                    "messageId": sms.message_id,
                }
            )
            reports.extend(self._at_reports(sms))
        sent = sum(1 for r in recipients if r["statusCode"] == 101)
        body = {
            "SMSMessageData": {
                "Message": f"Sent to {sent}/{len(numbers)} Total Cost: KES {0.8 * sent:.4f}",
                "Recipients": recipients,
            }
        }
        return await self._respond("africastalking", JSONResponse(body, status_code=201), reports)

    def _at_reports(self, sms: SentSms) -> list[tuple[str, Callable[[], Any]]]:
        state = self.state["africastalking"]
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
            out.append((status, _bind(self._post, "africastalking", status, url, data=data)))
        return out

    # -- Twilio --------------------------------------------------------------------------------

    async def _twilio(self, request: Request) -> Response:
        self.requests["twilio"] += 1
        sid, token = self.credentials["twilio"]
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
        fault = await self._fault("twilio")
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
                headers={"Retry-After": "1"},
            )
        form = await request.form()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        sender = str(form.get("From", "") or form.get("MessagingServiceSid", ""))
        if not body:
            return _twilio_error(21602, "Message body is required.")
        if fault == "invalid_number" or self._invalid(to):
            return _twilio_error(21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            return _twilio_error(21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        sms = self._record("twilio", to, body, sender, None)
        callback = str(form.get("StatusCallback", "")) or self.state["twilio"].callback
        reports = []
        if callback:
            final = {"delivered": "delivered", "failed": "undelivered", "expired": "failed"}[
                self.state["twilio"].final
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
                reports.append(
                    (
                        status,
                        _bind(self._post, "twilio", status, callback, data=params, headers=headers),
                    )
                )
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
        return await self._respond("twilio", JSONResponse(body_json, status_code=201), reports)

    # -- Vonage --------------------------------------------------------------------------------

    async def _vonage(self, request: Request) -> Response:
        self.requests["vonage"] += 1
        key, secret = self.credentials["vonage"]
        if request.headers.get("content-type", "").startswith("application/json"):
            params = {k: str(v) for k, v in (await request.json()).items()}
        else:
            params = {k: str(v) for k, v in (await request.form()).items()}
        if params.get("api_key") != key or params.get("api_secret") != secret:
            return _vonage_error("4", "Bad Credentials")
        fault = await self._fault("vonage")
        if fault in ("5xx", "timeout"):
            return PlainTextResponse(
                "Service Unavailable", status_code=503 if fault == "5xx" else 504
            )
        if fault == "throttle":
            return _vonage_error("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry")
        to, text = params.get("to", ""), params.get("text", "")
        if not to or not text or not params.get("from"):
            return _vonage_error("2", "Missing to param")
        if fault == "invalid_number" or self._invalid(to):
            return _vonage_error("3", "Invalid to address")
        sms = self._record("vonage", to, text, params["from"], params.get("client-ref"))
        callback = params.get("callback") or self.state["vonage"].callback
        reports = []
        if callback:
            final = self.state["vonage"].final
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
                reports.append(
                    (
                        status,
                        _bind(self._post, "vonage", status, callback, method="GET", params=query),
                    )
                )
        body = {
            "message-count": "1",
            "messages": [
                {
                    "to": to,
                    "message-id": sms.message_id,
                    "status": "0",
                    "remaining-balance": "3.14159265",
                    "message-price": "0.03330000",
                    "network": "23410",
                    **({"client-ref": sms.ref} if sms.ref else {}),
                }
            ],
        }
        return await self._respond("vonage", JSONResponse(body), reports)

    # -- generic -------------------------------------------------------------------------------

    async def _generic(self, request: Request) -> Response:
        self.requests["generic"] += 1
        token = self.credentials["generic"][1]
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        fault = await self._fault("generic")
        if fault in ("5xx", "timeout"):
            return JSONResponse(
                {"error": "unavailable"}, status_code=503 if fault == "5xx" else 504
            )
        if fault == "throttle":
            return JSONResponse(
                {"error": "throttled"}, status_code=429, headers={"Retry-After": "1"}
            )
        if request.headers.get("content-type", "").startswith("application/json"):
            params = {k: str(v) for k, v in (await request.json()).items()}
        else:
            params = dict(parse_qsl((await request.body()).decode()))
        to, text = params.get("to", ""), params.get("text", "")
        if not to or not text:
            return JSONResponse({"error": "missing to or text"}, status_code=400)
        if fault == "invalid_number" or self._invalid(to):
            return JSONResponse({"error": "invalid_number"}, status_code=400)
        sms = self._record("generic", to, text, params.get("from", ""), params.get("id"))
        callback = params.get("callback") or self.state["generic"].callback
        reports = []
        if callback:
            for status in ("sent", self.state["generic"].final):
                data = {"id": sms.message_id, "status": status}
                if sms.ref:
                    data["ref"] = sms.ref
                reports.append((status, _bind(self._post, "generic", status, callback, json=data)))
        return await self._respond("generic", JSONResponse({"id": sms.message_id}), reports)


def _bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


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


def random_token() -> str:
    return secrets.token_urlsafe(16)
