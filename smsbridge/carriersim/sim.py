"""The carrier simulator's state and machinery: credentials, each carrier's faults and behaviour
switches, the SMS it accepted, and the delivery reports it posts to the bridge (in order, before
or after the send response, once or twice). `CarrierSim.app` serves the send APIs (apis.py).

Faults, injected per carrier (`fail_next`, `outage`): `5xx`, `timeout` (the request hangs, then
504, nothing sent), `slow` (the request hangs, then the SMS is sent as usual), `throttle` (the
carrier's own 429 / "Throttled"), `invalid_number`; and behaviour switches: `report_first`
(delivery reports before the send response), `duplicate_reports`, `final` (the final delivery
status: delivered, failed, expired), `reports` (off: no callbacks), `latency` (seconds between
accepting an SMS and answering the send request: a crash in between leaves the sender not knowing
it went), `report_delay` (seconds before the delivery reports are posted), `report_retry_for`
(seconds a report that got no 2xx is posted again, as real carriers retry their callbacks),
`throttle_wait` (the seconds Vonage's throttle answer, status 1, asks to wait, in its text),
`throttle_retry_after` (off: a 429 throttle answer of Twilio or generic has no Retry-After),
`refused_parts` (Vonage: the parts of a long SMS it refuses, status 5, while it accepts the
others, each recorded as a part: Vonage sends a long text as one SMS per part, and answers per
part).
Counts for tests: `sent_count(to, text)`, `sends_per_ref(carrier)`, `sends`, `requests`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsbridge.carriersim import apis, kannel, rapidpro
from smsbridge.carriersim.callbacks import CallbackClient, CallbackError

CARRIERS = ("africastalking", "twilio", "vonage", "generic", "kannel", "rapidpro")
FAULTS = ("5xx", "timeout", "slow", "throttle", "invalid_number")
_NO_FAULT = ""  # a request `fail_next(..., after=N)` lets through
REPORT_CONNECTIONS = 16  # delivery reports in flight at once (each a kept-alive connection)

DEFAULT_CREDENTIALS = {
    "africastalking": ("sandbox", "at-api-key"),
    "twilio": ("AC" + "0" * 32, "twilio-auth-token"),
    "vonage": ("vonage-key", "vonage-secret"),
    "generic": ("", "generic-token"),
    "kannel": ("smsbridge", "kannel-password"),
    "rapidpro": ("", "rapidpro-api-token"),
}

# A delivery report a send queued: (carrier status, post it).
Report = tuple[str, Callable[[], Awaitable[None]]]


def bridge_env(url: str) -> dict[str, str]:
    """The bridge's settings (SMSBRIDGE_*) that send through the simulator served at `url`, with
    its default credentials: every carrier module of the four it fakes."""
    at_user, at_key = DEFAULT_CREDENTIALS["africastalking"]
    sid, token = DEFAULT_CREDENTIALS["twilio"]
    key, secret = DEFAULT_CREDENTIALS["vonage"]
    return {
        "SMSBRIDGE_AFRICASTALKING_API_URL": url,
        "SMSBRIDGE_AFRICASTALKING_USERNAME": at_user,
        "SMSBRIDGE_AFRICASTALKING_API_KEY": at_key,
        "SMSBRIDGE_TWILIO_API_URL": url,
        "SMSBRIDGE_TWILIO_ACCOUNT_SID": sid,
        "SMSBRIDGE_TWILIO_AUTH_TOKEN": token,
        "SMSBRIDGE_TWILIO_FROM_NUMBER": "+15017122661",
        "SMSBRIDGE_VONAGE_API_URL": url,
        "SMSBRIDGE_VONAGE_API_KEY": key,
        "SMSBRIDGE_VONAGE_API_SECRET": secret,
        "SMSBRIDGE_VONAGE_SENDER": "MEDIC",
        "SMSBRIDGE_GENERIC_SEND_URL": url + "/send",
        "SMSBRIDGE_GENERIC_SEND_TOKEN": DEFAULT_CREDENTIALS["generic"][1],
        "SMSBRIDGE_KANNEL_SENDSMS_URL": url + "/cgi-bin/sendsms",
        "SMSBRIDGE_KANNEL_USERNAME": DEFAULT_CREDENTIALS["kannel"][0],
        "SMSBRIDGE_KANNEL_PASSWORD": DEFAULT_CREDENTIALS["kannel"][1],
        "SMSBRIDGE_RAPIDPRO_API_URL": url,
        "SMSBRIDGE_RAPIDPRO_API_TOKEN": DEFAULT_CREDENTIALS["rapidpro"][1],
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
    latency: float = 0.0  # seconds from accepting an SMS to answering the send request
    report_delay: float = 0.0  # seconds before delivery reports are posted
    report_retry_for: float = 0.0  # seconds a report refused (or unreachable) is posted again
    throttle_wait: float = 1.0  # seconds a `throttle` answer asks to wait (Vonage: in its text)
    throttle_retry_after: bool = True  # a 429 `throttle` answer names the wait in Retry-After
    # Vonage: the parts (1-based) of a long SMS it refuses (status 5) while it accepts the rest
    refused_parts: tuple[int, ...] = ()


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
        self.rapidpro_broadcasts: dict[int, rapidpro.Broadcast] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._later: set[asyncio.Task[None]] = set()  # reports posted after report_delay
        self._http: tuple[asyncio.AbstractEventLoop, CallbackClient] | None = None

        def serve(
            api: Callable[[CarrierSim, Request], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                return await api(self, request)

            return endpoint

        self.app = Starlette(
            lifespan=self._lifespan,
            routes=[
                Route("/version1/messaging", serve(apis.africastalking), methods=["POST"]),
                Route(
                    "/2010-04-01/Accounts/{sid}/Messages.json",
                    serve(apis.twilio),
                    methods=["POST"],
                ),
                Route("/sms/json", serve(apis.vonage), methods=["POST"]),
                Route("/send", serve(apis.generic), methods=["POST"]),
                Route("/cgi-bin/sendsms", serve(kannel.sendsms), methods=["GET"]),
                Route("/api/v2/broadcasts.json", serve(rapidpro.broadcasts), methods=["POST"]),
                Route("/api/v2/messages.json", serve(rapidpro.messages), methods=["GET"]),
            ],
        )

    # -- test controls -------------------------------------------------------------------------

    def reset(self, **options: Any) -> None:
        """As constructed: nothing sent, requested or posted, every carrier's state fresh; then
        `options` (fields of `CarrierState`, e.g. `reports=False`) set for every carrier."""
        with self._lock:
            self.sends.clear()
            self.requests.clear()
            self.reports_posted.clear()
            self.invalid_numbers.clear()
            self.rapidpro_broadcasts.clear()
            self.state = {name: CarrierState() for name in CARRIERS}
        for carrier in CARRIERS:
            self.configure(carrier, **options)

    def fail_next(self, carrier: str, fault: str, times: int = 1, *, after: int = 0) -> None:
        """The next `times` send requests to `carrier` meet `fault`, once `after` more have
        gone through (e.g. the 2nd part of an SMS sent in split mode)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.state[carrier].faults.extend([_NO_FAULT] * after + [fault] * times)

    def outage(self, carrier: str, fault: str | None) -> None:
        """Every send request meets `fault` until `outage(carrier, None)`."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.state[carrier].outage = fault

    def configure(self, carrier: str, **options: Any) -> None:
        """Set `report_first`, `duplicate_reports`, `reports`, `final`, `timeout_seconds`, ...
        (the fields of `CarrierState`)."""
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

    def sends_per_ref(self, carrier: str) -> Counter[str | None]:
        """How many times `carrier` accepted an SMS, by the sender's reference (its `id`)."""
        with self._lock:
            return Counter(s.ref for s in self.sends if s.carrier == carrier)

    def sent_by(self, carrier: str) -> list[SentSms]:
        with self._lock:
            return [s for s in self.sends if s.carrier == carrier]

    # -- shared mechanics ----------------------------------------------------------------------

    async def take_fault(self, carrier: str) -> str | None:
        """The fault this send request meets (after the hang of a `timeout` or `slow`), if any."""
        state = self.state[carrier]
        fault = state.faults.popleft() if state.faults else state.outage
        if fault in ("timeout", "slow"):
            await asyncio.sleep(state.timeout_seconds)
        return None if fault in ("slow", _NO_FAULT) else fault

    def record(
        self,
        carrier: str,
        to: str,
        text: str,
        sender: str,
        ref: str | None,
        *,
        message_id: str | None = None,
    ) -> SentSms:
        """An SMS the carrier accepted, with the carrier's id for it (`message_id` when the
        carrier's module names it)."""
        sms = SentSms(
            carrier, message_id or self.message_id(carrier), to, text, sender, ref, time.time()
        )
        with self._lock:
            self.sends.append(sms)
        return sms

    def message_id(self, carrier: str) -> str:
        """A new id of `carrier`'s kind for an SMS (or a part of one) it accepts."""
        if carrier == "vonage":
            return f"{next(self._seq):016X}"
        prefix = {"africastalking": "ATXid_", "twilio": "SM", "generic": "g-"}
        return prefix[carrier] + uuid.uuid4().hex

    def is_invalid(self, to: str) -> bool:
        digits = to.lstrip("+")
        return to in self.invalid_numbers or not digits.isdigit() or not 6 <= len(digits) <= 15

    async def _post(self, carrier: str, status: str, url: str, **kwargs: Any) -> None:
        method = kwargs.pop("method", "POST")
        deadline = time.monotonic() + self.state[carrier].report_retry_for
        while True:
            try:
                code = await self._client().request(method, url, **kwargs)
            except CallbackError:
                code = 0
            with self._lock:
                self.reports_posted.append((carrier, status, code))
            if 200 <= code < 300 or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.5)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """On shutdown: reports still waiting (report_delay) are dropped, the client closed."""
        yield
        for task in list(self._later):
            task.cancel()
        if self._http is not None:
            await self._http[1].aclose()
            self._http = None

    def _client(self) -> CallbackClient:
        """One callback sender for the reports posted from the running event loop (a client
        per report costs a TLS context each: a burst of them stalls the simulator's answers):
        REPORT_CONNECTIONS kept-alive connections, as a carrier's callback workers
        (callbacks.py)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http[0] is not loop:
            self._http = (loop, CallbackClient(connections=REPORT_CONNECTIONS))
        return self._http[1]

    def report(self, carrier: str, status: str, url: str, **request: Any) -> Report:
        """A delivery report to post (`request`: httpx.request's arguments, `method` POST)."""
        return status, lambda: self._post(carrier, status, url, **request)

    async def _report(self, carrier: str, reports: list[Report]) -> None:
        """Post each report in order; twice each with duplicate_reports."""
        state = self.state[carrier]
        if state.report_delay:
            await asyncio.sleep(state.report_delay)
        for _status, post in reports:
            for _ in range(2 if state.duplicate_reports else 1):
                await post()

    async def respond(self, carrier: str, response: Response, reports: list[Report]) -> Response:
        """The send response, with its delivery reports posted after it (or before it, with
        `report_first`; none with `reports` off)."""
        state = self.state[carrier]
        if state.latency:
            await asyncio.sleep(state.latency)  # accepted (recorded) already: answered late
        if not state.reports or not reports:
            return response
        if state.report_first:
            await self._report(carrier, reports)
            return response
        if state.report_delay:
            # posted later, detached from this request: a carrier's delivery reports do not
            # hold up its answers to the next send requests (on this connection or any other)
            task = asyncio.create_task(self._report(carrier, reports))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return response
        response.background = BackgroundTask(self._report, carrier, reports)
        return response
