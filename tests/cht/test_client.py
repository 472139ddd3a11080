"""The CHT client against the simulator over real HTTP on 127.0.0.1, every injectable fault."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from smsbridge.cht.client import Call, ChtClient, classify
from smsbridge.chtsim import ChtSim
from smsbridge.errors import AuthFailure, ConfigError, PermanentError, RetryableError
from smsbridge.settings import Settings

GATEWAY = ("gateway", "gw-secret-pass")
FORM_P = {
    "meta": {"code": "P"},
    "fields": {
        "lmp": {"type": "integer", "required": True, "labels": {"tiny": "LMP"}},
        "patient_name": {"type": "string", "required": True, "labels": {"tiny": "N"}},
    },
}


@pytest.fixture
def cht(chtsim: tuple[ChtSim, str]) -> Iterator[tuple[ChtSim, str]]:
    sim, url = chtsim
    sim.add_user(*GATEWAY, roles=["gateway"])
    sim.set_settings({"default_country_code": 254}, merge=True)
    sim.set_forms({"P": FORM_P})
    yield sim, url


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def call(
    url: str, method: str, *args: Any, creds: tuple[str, str] | None = GATEWAY, timeout: float = 5.0
) -> Any:
    async with ChtClient(url, creds, timeout=timeout) as client:
        return await getattr(client, method)(*args)


# -- the calls -------------------------------------------------------------------------------------


def test_app_settings_returns_forms_and_phone_rules(cht: tuple[ChtSim, str]) -> None:
    _sim, url = cht
    settings = run(call(url, "app_settings"))
    assert settings["forms"]["P"] == FORM_P
    assert settings["default_country_code"] == 254


def test_create_record_stores_a_report_and_returns_its_id(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    doc_id = run(
        call(
            url,
            "create_record",
            {
                "_meta": {"form": "p", "from": "0712345678", "reported_date": 1700000000000},
                "lmp": 12,
                "patient_name": "Jane",
            },
        )
    )
    record = sim.record(doc_id)
    assert record["form"] == "P"
    assert record["from"] == "+254712345678"
    assert record["reported_date"] == 1700000000000
    assert record["fields"] == {"lmp": 12, "patient_name": "Jane"}


def test_create_record_is_not_idempotent(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    body = {"_meta": {"form": "P"}, "lmp": 1, "patient_name": "A"}
    first, second = run(call(url, "create_record", body)), run(call(url, "create_record", body))
    assert first != second
    assert len(sim.records()) == 2


def test_unknown_form_is_permanent(cht: tuple[ChtSim, str]) -> None:
    _sim, url = cht
    with pytest.raises(PermanentError) as caught:
        run(call(url, "create_record", {"_meta": {"form": "NOPE"}}))
    assert caught.value.status == 500
    assert "Form not found: NOPE" in caught.value.detail


def test_contacts_by_phone_hydrates_and_unknown_is_empty(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.add_contact({"_id": "hc", "type": "health_center", "name": "HC"})
    sim.add_contact(
        {"_id": "chw", "type": "person", "name": "Alice", "phone": "+254712345678", "parent": "hc"}
    )
    docs = run(call(url, "contacts_by_phone", "0712 345 678"))
    assert [d["_id"] for d in docs] == ["chw"]
    assert docs[0]["parent"]["name"] == "HC"
    assert run(call(url, "contacts_by_phone", "+254799999999")) == []
    assert run(call(url, "contacts_by_phone", "SAFARICOM")) == []


def test_exchange_sms_sends_incoming_updates_and_gets_outgoing(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    acked = sim.add_outgoing("+254712345678", "old one")
    fresh = sim.add_outgoing("0712345678", "Your visit is due")
    outgoing = run(
        call(
            url,
            "exchange_sms",
            [{"id": "gw-1", "from": "+254712345678", "content": "hello"}],
            [{"id": acked, "status": "UNSENT"}],
        )
    )
    assert outgoing == [{"id": fresh, "to": "+254712345678", "content": "Your visit is due"}]
    assert sim.states(acked) == ["pending", "received-by-gateway"]
    assert [r["sms_message"]["gateway_ref"] for r in sim.records()] == ["gw-1"]


def test_exchange_sms_sends_exactly_application_json(cht: tuple[ChtSim, str]) -> None:
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    async def go(url: str) -> None:
        async with ChtClient(url, GATEWAY) as client:
            client._http.event_hooks["request"].append(hook)
            await client.exchange_sms([], [])
            await client.monitoring()

    run(go(cht[1]))
    assert seen[0].headers["content-type"] == "application/json"
    assert all(r.headers["accept"] == "application/json" for r in seen)
    assert (
        seen[0].headers["authorization"]
        == "Basic " + base64.b64encode(b"gateway:gw-secret-pass").decode()
    )


def test_monitoring_needs_no_credentials(cht: tuple[ChtSim, str]) -> None:
    body = run(call(cht[1], "monitoring", creds=None))
    assert body["version"]["app"] == "5.2.0"
    assert "last_hundred" in body["messaging"]["outgoing"]


def test_monitoring_fault_mode_reaches_the_client(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.monitoring_broken = True
    body = run(call(url, "monitoring", creds=None))
    assert body["version"]["app"] == ""
    assert body["sentinel"]["backlog"] == -1


def test_check_auth_passes_for_the_gateway_user(cht: tuple[ChtSim, str]) -> None:
    assert run(call(cht[1], "check_auth")) is None


def test_check_auth_without_gateway_permission_is_permanent(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.add_user("nurse", "nurse-pass", roles=["national_admin"])
    with pytest.raises(PermanentError) as caught:
        run(call(url, "check_auth", creds=("nurse", "nurse-pass")))
    assert caught.value.status == 403


def test_from_settings_takes_credentials_from_the_url(cht: tuple[ChtSim, str]) -> None:
    _sim, url = cht
    settings = Settings.from_env(
        {"SMSBRIDGE_CHT_URL": url.replace("http://", "http://gateway:gw-secret-pass@")}
    )

    async def go() -> None:
        async with ChtClient.from_settings(settings) as client:
            assert "gw-secret-pass" not in repr(client)
            await client.check_auth()

    run(go())


def test_credentials_never_reach_the_logs(
    cht: tuple[ChtSim, str], caplog: pytest.LogCaptureFixture
) -> None:
    sim, url = cht
    sim.faults.fail_next(1, 503, path="/api/sms", method="POST")
    settings = Settings.from_env(
        {"SMSBRIDGE_CHT_URL": url.replace("http://", "http://gateway:gw-secret-pass@")}
    )

    async def go() -> None:
        async with ChtClient.from_settings(settings) as client:
            await client.check_auth()
            with pytest.raises(RetryableError):
                await client.exchange_sms([], [])
        async with ChtClient(url, ("gateway", "a-wrong-secret")) as client:
            with pytest.raises(AuthFailure):
                await client.exchange_sms([], [])

    with caplog.at_level(logging.DEBUG):
        run(go())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cht.failed" in logged and "cht.auth_failed" in logged  # the calls were logged
    assert "gw-secret-pass" not in logged
    assert "a-wrong-secret" not in logged
    assert base64.b64encode(b"gateway:gw-secret-pass").decode() not in logged


def test_from_settings_without_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ChtClient.from_settings(Settings.from_env({}))


# -- auth failures stop the client --------------------------------------------------------------


def test_wrong_password_is_auth_failure_and_the_client_stops(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht

    async def go() -> None:
        async with ChtClient(url, ("gateway", "wrong")) as client:
            with pytest.raises(AuthFailure) as caught:
                await client.exchange_sms([], [])
            assert "wrong" not in caught.value.detail
            assert client.auth_failed
            before = sim.request_count("/api/sms")
            with pytest.raises(AuthFailure):
                await client.exchange_sms([], [])
            with pytest.raises(AuthFailure):
                await client.monitoring()
            assert sim.request_count("/api/sms") == before
            assert sim.request_count("/api/v2/monitoring") == 0
            client.reset_auth()
            await client.monitoring()

    run(go())


def test_check_auth_probes_while_stopped_and_lifts_the_stop(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht

    async def go() -> None:
        async with ChtClient(url, GATEWAY) as client:
            sim.set_password("gateway", "rotated")
            with pytest.raises(AuthFailure):
                await client.app_settings()
            with pytest.raises(AuthFailure):
                await client.check_auth()  # the probe goes out, and fails
            assert sim.request_count("/api/sms", "GET") == 1
            assert client.auth_failed
            sim.set_password("gateway", GATEWAY[1])
            await client.check_auth()
            assert not client.auth_failed
            assert (await client.app_settings())["forms"]["P"] == FORM_P

    run(go())


def test_settings_basic_prompt_401_is_auth_failure(cht: tuple[ChtSim, str]) -> None:
    with pytest.raises(AuthFailure):
        run(call(cht[1], "app_settings", creds=("nobody", "x")))


def test_injected_auth_failure_and_login_redirect(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.auth_fail_next(1, path="/api/sms")
    with pytest.raises(AuthFailure) as caught:
        run(call(url, "exchange_sms", [], []))
    assert caught.value.status == 401
    sim.faults.auth_fail_next(1, redirect=True)
    with pytest.raises(AuthFailure) as caught:
        run(call(url, "app_settings"))
    assert caught.value.status == 302


def test_lockout_429_is_retryable_with_the_lockout_window(cht: tuple[ChtSim, str]) -> None:
    _sim, url = cht
    for _ in range(10):
        with pytest.raises(AuthFailure):
            run(call(url, "check_auth", creds=("gateway", "bad")))
    with pytest.raises(RetryableError) as caught:
        run(call(url, "check_auth"))  # good credentials, locked-out IP
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and caught.value.retry_after >= 10


# -- injected faults -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retryable(cht: tuple[ChtSim, str], status: int) -> None:
    sim, url = cht
    sim.faults.fail_next(1, status, path="/api/sms")
    with pytest.raises(RetryableError) as caught:
        run(call(url, "exchange_sms", [], []))
    assert caught.value.status == status
    assert run(call(url, "exchange_sms", [], [])) == []


def test_retry_after_is_honoured(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.fail_next(1, 503, retry_after=42)
    with pytest.raises(RetryableError) as caught:
        run(call(url, "app_settings"))
    assert caught.value.retry_after == 42
    sim.faults.fail_next(1, 429, retry_after=120)
    with pytest.raises(RetryableError) as caught:
        run(call(url, "app_settings"))
    assert caught.value.retry_after == 120


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413])
def test_client_errors_are_permanent(cht: tuple[ChtSim, str], status: int) -> None:
    sim, url = cht
    sim.faults.fail_next(1, status, path="/api/v2/records")
    with pytest.raises(PermanentError) as caught:
        run(call(url, "create_record", {"_meta": {"form": "P"}}))
    assert caught.value.status == status


def test_server_error_without_details_is_retryable(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.fail_next(1, 500)
    with pytest.raises(RetryableError):
        run(call(url, "create_record", {"_meta": {"form": "P"}}))


def test_write_conflicts_on_api_sms_are_retryable(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    message = sim.add_outgoing("+254712345678", "hi")
    sim.faults.conflict_next(4)
    with pytest.raises(RetryableError) as caught:
        run(call(url, "exchange_sms", [], [{"id": message, "status": "SENT"}]))
    assert caught.value.status == 500
    assert sim.states(message) == ["pending"]


def test_starting_cht_is_retryable(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.starting = True
    with pytest.raises(RetryableError) as caught:
        run(call(url, "app_settings"))
    assert caught.value.status == 503
    assert (
        classify(Call("GET", "/x"), httpx.Response(200, html="<html>Starting API</html>")).code
        == "cht_starting"
    )  # type: ignore[union-attr]


def test_timeout_is_retryable(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.timeout_next(1, path="/api/v2/records")
    with pytest.raises(RetryableError) as caught:
        run(call(url, "create_record", {"_meta": {"form": "P"}}, timeout=0.3))
    assert caught.value.code == "cht_timeout"
    assert sim.records() == []


def test_dropped_connection_after_processing_is_retryable(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.drop_next(1, path="/api/sms")
    incoming = [{"id": "gw-42", "from": "+254712345678", "content": "hello"}]
    with pytest.raises(RetryableError) as caught:
        run(call(url, "exchange_sms", incoming, []))
    assert caught.value.code == "cht_connection_lost"
    assert len(sim.records()) == 1  # CHT did it...
    assert run(call(url, "exchange_sms", incoming, [])) == []
    assert len(sim.records()) == 1  # ...and the retry is de-duplicated by the gateway id


def test_added_latency_within_the_timeout_still_succeeds(cht: tuple[ChtSim, str]) -> None:
    sim, url = cht
    sim.faults.latency(0.2)
    assert run(call(url, "check_auth", timeout=2.0)) is None
    with pytest.raises(RetryableError):
        run(call(url, "check_auth", timeout=0.05))


def test_unreachable_cht_is_retryable() -> None:
    with pytest.raises(RetryableError) as caught:
        run(call("http://127.0.0.1:9", "check_auth", timeout=1.0))
    assert caught.value.code == "cht_unreachable"


def test_other_redirects_are_permanent() -> None:
    response = httpx.Response(301, headers={"location": "https://cht.example.org/api/sms"})
    error = classify(Call("POST", "/api/sms"), response)
    assert isinstance(error, PermanentError)
    assert isinstance(classify(Call("GET", "/"), httpx.Response(501)), PermanentError)
    assert isinstance(classify(Call("GET", "/"), httpx.Response(507)), RetryableError)
