from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smsbridge.carriersim import DEFAULT_CREDENTIALS, CarrierSim, twilio_signature
from smsbridge.carriersim.phone import FakePhone
from smsbridge.loopback import serve_in_thread, wait_for


class Receiver:
    """Records the delivery reports the simulator posts."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{name}", self.hook, methods=["GET", "POST"])])

    async def hook(self, request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            data = {k: str(v) for k, v in (await request.json()).items()}
        else:
            data = {k: str(v) for k, v in (await request.form()).items()}
        data.update(request.query_params)
        with self.lock:
            self.got.append((request.path_params["name"], data, dict(request.headers)))
        return JSONResponse({})

    def wait(self, n: int, timeout: float = 5.0) -> list[dict[str, str]]:
        def arrived() -> list[dict[str, str]]:
            with self.lock:
                return [d for _n, d, _h in self.got] if len(self.got) >= n else []

        return wait_for(arrived, f"{n} reports", timeout)


@pytest.fixture
def peers() -> Iterator[tuple[CarrierSim, str, Receiver, str]]:
    sim, receiver = CarrierSim(), Receiver()
    with serve_in_thread(sim.app) as url, serve_in_thread(receiver.app) as rurl:
        yield sim, url, receiver, rurl


def _at(url: str, to: str, text: str = "hello") -> httpx.Response:
    user, key = DEFAULT_CREDENTIALS["africastalking"]
    return httpx.post(
        url + "/version1/messaging",
        data={"username": user, "to": to, "message": text, "from": "MEDIC"},
        headers={"apiKey": key, "Accept": "application/json"},
    )


def _vonage(url: str, text: str, **extra: str) -> httpx.Response:
    key, secret = DEFAULT_CREDENTIALS["vonage"]
    data = {"api_key": key, "api_secret": secret, "from": "MEDIC", "to": "447700900000"}
    return httpx.post(url + "/sms/json", data={**data, "text": text, **extra})


def test_africastalking_send_and_reports(peers: Any) -> None:
    sim, url, receiver, rurl = peers
    sim.set_callback("africastalking", rurl + "/at")
    response = _at(url, "+254712345678")
    assert response.status_code == 201
    recipient = response.json()["SMSMessageData"]["Recipients"][0]
    assert recipient["statusCode"] == 101 and recipient["messageId"].startswith("ATXid_")
    reports = receiver.wait(2)
    assert [r["status"] for r in reports] == ["Sent", "Success"]
    assert reports[0]["id"] == recipient["messageId"]
    assert sim.sent_count("+254712345678", "hello") == 1


def test_africastalking_invalid_number_and_auth(peers: Any) -> None:
    sim, url, _receiver, _rurl = peers
    recipient = _at(url, "12").json()["SMSMessageData"]["Recipients"][0]
    assert recipient["statusCode"] == 403 and recipient["status"] == "InvalidPhoneNumber"
    bad = httpx.post(url + "/version1/messaging", data={"username": "x"}, headers={"apiKey": "no"})
    assert bad.status_code == 401
    assert sim.sent_count("12") == 0


@pytest.mark.parametrize(("fault", "status"), [("5xx", 500), ("throttle", 429)])
def test_africastalking_faults_send_nothing(peers: Any, fault: str, status: int) -> None:
    sim, url, _receiver, _rurl = peers
    sim.fail_next("africastalking", fault)
    assert _at(url, "+254712345678").status_code == status
    assert _at(url, "+254712345678").status_code == 201  # only the next request failed
    assert sim.sent_count("+254712345678") == 1


def test_timeout_fault_hangs_then_sends_nothing(peers: Any) -> None:
    sim, url, _receiver, _rurl = peers
    sim.configure("africastalking", timeout_seconds=0.5)
    sim.outage("africastalking", "timeout")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            url + "/version1/messaging",
            timeout=0.1,
            data={"username": "sandbox", "to": "+254712345678", "message": "x"},
            headers={"apiKey": "at-api-key"},
        )
    sim.outage("africastalking", None)
    assert sim.sent_count("+254712345678") == 0


def test_twilio_send_signed_status_callbacks(peers: Any) -> None:
    _sim, url, receiver, rurl = peers
    sid, token = DEFAULT_CREDENTIALS["twilio"]
    callback = rurl + "/tw?ref=42"
    response = httpx.post(
        f"{url}/2010-04-01/Accounts/{sid}/Messages.json",
        auth=(sid, token),
        data={
            "To": "+15558675310",
            "From": "+15017122661",
            "Body": "hi",
            "StatusCallback": callback,
        },
    )
    assert response.status_code == 201
    assert response.json()["sid"].startswith("SM") and response.json()["status"] == "queued"
    receiver.wait(2)
    statuses = []
    for _name, data, headers in receiver.got:
        form = {k: v for k, v in data.items() if k != "ref"}
        assert headers["x-twilio-signature"] == twilio_signature(token, callback, form)
        statuses.append(form["MessageStatus"])
    assert statuses == ["sent", "delivered"]


def test_twilio_errors(peers: Any) -> None:
    sim, url, _receiver, _rurl = peers
    sid, token = DEFAULT_CREDENTIALS["twilio"]
    endpoint = f"{url}/2010-04-01/Accounts/{sid}/Messages.json"
    data = {"To": "+15558675310", "From": "+15017122661", "Body": "hi"}
    sim.invalid_numbers.add("+15558675310")
    bad = httpx.post(endpoint, auth=(sid, token), data=data)
    assert bad.status_code == 400 and bad.json()["code"] == 21211
    sim.invalid_numbers.clear()
    sim.fail_next("twilio", "throttle")
    throttled = httpx.post(endpoint, auth=(sid, token), data=data)
    assert throttled.status_code == 429 and throttled.json()["code"] == 20429
    assert httpx.post(endpoint, auth=(sid, "wrong"), data=data).status_code == 401


def test_vonage_send_report_first_and_duplicated(peers: Any) -> None:
    sim, url, receiver, rurl = peers
    sim.configure("vonage", report_first=True, duplicate_reports=True)
    response = _vonage(url, "hi", **{"client-ref": "ref-1", "callback": rurl + "/vonage"})
    # the reports were posted (twice each) before the send response came back
    assert len(receiver.got) == 4
    message = response.json()["messages"][0]
    assert message["status"] == "0"
    reports = [d for _n, d, _h in receiver.got]
    assert [r["status"] for r in reports] == ["accepted", "accepted", "delivered", "delivered"]
    assert {r["messageId"] for r in reports} == {message["message-id"]}
    assert {r["client-ref"] for r in reports} == {"ref-1"}


def test_vonage_throttle_is_status_one(peers: Any) -> None:
    sim, url, _receiver, _rurl = peers
    sim.fail_next("vonage", "throttle")
    response = _vonage(url, "x")
    assert response.status_code == 200
    assert response.json()["messages"][0]["status"] == "1"
    assert sim.sent_count("447700900000") == 0


@pytest.mark.parametrize("missing", ["from", "to", "text"])
def test_vonage_names_the_missing_param(peers: Any, missing: str) -> None:
    _sim, url, _receiver, _rurl = peers
    key, secret = DEFAULT_CREDENTIALS["vonage"]
    data = {"api_key": key, "api_secret": secret, "from": "MEDIC", "to": "447700900000"}
    data = {k: v for k, v in {**data, "text": "hi"}.items() if k != missing}
    [message] = httpx.post(url + "/sms/json", data=data).json()["messages"]
    assert (message["status"], message["error-text"]) == ("2", f"Missing {missing} param")


def test_generic_send_with_failed_final_report(peers: Any) -> None:
    sim, url, receiver, rurl = peers
    sim.configure("generic", final="failed")
    response = httpx.post(
        url + "/send",
        headers={"Authorization": "Bearer generic-token"},
        json={"to": "+256700000001", "text": "hi", "id": "ref-9", "callback": rurl + "/g"},
    )
    assert response.status_code == 200
    reports = receiver.wait(2)
    assert [(r["status"], r["ref"]) for r in reports] == [("sent", "ref-9"), ("failed", "ref-9")]


def test_fake_phone_protocol() -> None:
    """The phone against a tiny /api/sms server: batches of 10 and 20, statuses in order."""
    seen: list[dict[str, Any]] = []
    offered = [{"id": "m1", "to": "+254 700-000001", "content": "hello"}]

    async def api(request: Request) -> Response:
        assert request.headers["content-type"] == "application/json"
        body = json.loads(await request.body())
        seen.append(body)
        out, offered[:] = list(offered), []
        return JSONResponse({"messages": out})

    app = Starlette(routes=[Route("/api/sms", api, methods=["POST"])])
    with serve_in_thread(app) as url:
        phone = FakePhone(url + "/api/sms", "phone1", "pw")
        for i in range(12):
            phone.receive("+254700000009", f"msg {i}")
        assert phone.poll() == 1
        assert [len(b["messages"]) for b in seen] == [10, 2]  # full batch -> asked again
        assert phone.sent_count("+254700000001", "hello") == 1
        for _ in range(3):
            phone.poll()
        statuses = [u["status"] for b in seen for u in b["updates"]]
        assert statuses == ["UNSENT", "PENDING", "SENT", "DELIVERED"]
        offered.append({"id": "m1", "to": "+254700000001", "content": "hello"})
        phone.poll()  # the same id again: not re-sent, its status re-reported next time
        phone.poll()
        assert phone.sent_count("+254700000001") == 1
        assert seen[-1]["updates"] == [{"id": "m1", "status": "DELIVERED"}]
