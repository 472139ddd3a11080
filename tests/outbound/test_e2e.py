"""End to end: CHT simulator → bridge (uvicorn, workers on, fake clock) → carrier simulator or a
fake cht-gateway phone → delivery states back in the CHT simulator. Faults only through the
simulators; retries are made due by moving the bridge's clock, never by sleeping."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriersim import CarrierSim, bridge_env
from smsbridge.carriersim.phone import FakePhone
from smsbridge.chtsim import ChtSim
from smsbridge.loopback import free_port, serve_in_thread, wait_for
from smsbridge.outbound import messages as outgoing
from smsbridge.outbound import reports
from smsbridge.sms import DeliveryState
from smsbridge.store import Store, open_store
from smsbridge.web.app import create_app
from tests.conftest import new_database
from tests.fakeclock import FakeClock

TOKENS = {"africastalking": "at-tok", "twilio": "tw-tok", "vonage": "vn-tok", "generic": "gn-tok"}
DELIVERED_HISTORY = [
    "pending",
    "forwarded-to-gateway",
    "received-by-gateway",
    "forwarded-by-gateway",
    "sent",
    "delivered",
]


@dataclass
class E2E:
    cht: ChtSim
    carriers: CarrierSim
    url: str
    store: Store
    clock: FakeClock

    def states(self, message_id: str) -> list[str]:
        return self.cht.states(message_id)

    def bridge_state(self, ref: str) -> DeliveryState | None:
        message = outgoing.get(self.store, ref)
        return None if message is None else message.state


@contextmanager
def e2e(tmp_path: Path, chtsim: tuple[ChtSim, str], **env: str) -> Iterator[E2E]:
    (cht, cht_url), carriers, clock = chtsim, CarrierSim(), FakeClock(1_800_000_000.0)
    with ExitStack() as stack:
        sim_url = stack.enter_context(serve_in_thread(carriers.app))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        values = {
            "SMSBRIDGE_DATABASE": str(new_database(tmp_path)),
            "SMSBRIDGE_CHT_URL": cht_url.replace("http://", "http://admin:pass@"),
            "SMSBRIDGE_CARRIERS": "africastalking,twilio,vonage,generic,chtgateway",
            "SMSBRIDGE_PUBLIC_URL": url,
            "SMSBRIDGE_SYNC_INTERVAL": "0.05",
            "SMSBRIDGE_SEND_TIMEOUT": "10",
            "SMSBRIDGE_ROUTES": "*=twilio",
            **bridge_env(sim_url),
            "SMSBRIDGE_CHTGATEWAY_ACCOUNTS": "phone1:pw1,phone2:pw2",
            **{f"SMSBRIDGE_{c.upper()}_WEBHOOK_TOKEN": t for c, t in TOKENS.items()},
            **env,
        }
        settings = load_settings(values)
        carriers.set_callback("africastalking", f"{url}/carriers/africastalking/at-tok/status")
        store = open_store(settings.database)
        stack.callback(store.close)
        app = create_app(settings, clock=clock, store=store, idle=0.02)
        stack.enter_context(serve_in_thread(app, port=port))
        yield E2E(cht, carriers, url, store, clock)


def test_message_seeded_in_cht_ends_delivered_with_one_entry_per_state(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim) as world:
        message_id = world.cht.add_outgoing("+254712345678", "Visit the clinic tomorrow")
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered in CHT")
        assert world.states(message_id) == DELIVERED_HISTORY
        assert world.carriers.sent_count("+254712345678", "Visit the clinic tomorrow") == 1
        # CHT hears nothing more: no new history entries on later exchanges
        wait_for(lambda: not reports.owed_reports(world.store, 1), what="all reported")
        assert world.states(message_id) == DELIVERED_HISTORY


def test_reports_before_send_response_and_duplicated_reports(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=africastalking") as world:
        world.carriers.configure("africastalking", report_first=True, duplicate_reports=True)
        message_id = world.cht.add_outgoing("+254712345678", "Report first")
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered")
        assert world.states(message_id) == DELIVERED_HISTORY
        assert world.carriers.sent_count("+254712345678") == 1


def test_carrier_outage_is_sent_later_once(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    with e2e(tmp_path, chtsim) as world:
        world.carriers.outage("twilio", "5xx")
        message_id = world.cht.add_outgoing("+254712345678", "After the outage")
        wait_for(lambda: world.bridge_state(message_id) is DeliveryState.SENDING, what="tried")
        wait_for(lambda: world.carriers.requests["twilio"] >= 1)
        wait_for(lambda: world.states(message_id)[-1] == "forwarded-by-gateway", what="PENDING")
        world.carriers.outage("twilio", None)
        world.clock.advance(3600)  # the retry is due
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_count("+254712345678") == 1
        assert world.states(message_id) == DELIVERED_HISTORY


def test_permanent_failure_goes_to_failover_channel(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="+254=africastalking|twilio;*=vonage") as world:
        world.carriers.fail_next("africastalking", "invalid_number")
        message_id = world.cht.add_outgoing("+254712345678", "Failover")
        wait_for(lambda: world.states(message_id)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_by("africastalking") == []
        assert len(world.carriers.sent_by("twilio")) == 1


def test_expired_message_fails_expired_and_is_never_sent(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_MESSAGE_TTL="3600") as world:
        world.carriers.outage("twilio", "5xx")
        message_id = world.cht.add_outgoing("+254712345678", "Too late")
        wait_for(lambda: world.carriers.requests["twilio"] >= 1, what="first attempt")
        world.carriers.outage("twilio", None)
        world.clock.advance(3601)
        wait_for(lambda: world.states(message_id)[-1] == "failed", what="failed in CHT")
        assert world.cht.message(message_id)["state_details"] == {"reason": "expired"}
        assert world.carriers.sent_count("+254712345678") == 0
        assert world.states(message_id).count("failed") == 1


def test_operator_drops_or_retries_a_dead_send(
    tmp_path: Path,
    chtsim: tuple[ChtSim, str],
    cli_database: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from smsbridge.cli.main import main
    from smsbridge.tasks import TaskQueue

    with e2e(tmp_path, chtsim, SMSBRIDGE_MAX_ATTEMPTS="1") as world:
        assert cli_database == tmp_path / "bridge.db"
        os.environ["SMSBRIDGE_DATABASE"] = str(new_database(tmp_path))  # the CLI's, this one
        world.carriers.outage("twilio", "5xx")
        dropped = world.cht.add_outgoing("+254712345671", "Never mind")
        retried = world.cht.add_outgoing("+254712345672", "Try again")

        def dead() -> dict[str, int]:
            return {t.ref: t.id for t in TaskQueue(world.store).dead_letters()}

        wait_for(lambda: len(dead()) == 2, what="two dead letters")
        world.carriers.outage("twilio", None)
        ids = dead()
        assert main(["outbox", "drop", str(ids[dropped])]) == 0
        assert main(["outbox", "retry", str(ids[retried])]) == 0
        assert "dropped" in capsys.readouterr().out
        # the dropped one fails at once (no sweep: the bridge's clock stands still) and CHT
        # hears it on the next exchange; the retried one is sent, once
        wait_for(lambda: world.states(dropped)[-1] == "failed", what="failed in CHT")
        assert world.cht.message(dropped)["state_details"] == {"reason": "dropped"}
        wait_for(lambda: world.states(retried)[-1] == "delivered", what="delivered")
        assert world.carriers.sent_count("+254712345671") == 0
        assert world.carriers.sent_count("+254712345672") == 1
        assert TaskQueue(world.store).dead_letters() == []


def test_loop_is_held(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_LOOP_LIMIT="3") as world:
        ids = [world.cht.add_outgoing("+254712345678", "Same text") for _ in range(5)]
        wait_for(lambda: len(outgoing.held(world.store)) == 2, what="two held")
        wait_for(lambda: sum(world.states(i)[-1] == "delivered" for i in ids) == 3)
        assert world.carriers.sent_count("+254712345678", "Same text") == 3
        held = {h.ref for h in outgoing.held(world.store)}
        for i in held:
            assert world.states(i)[-1] == "received-by-gateway"  # acknowledged, not sent


def test_through_a_cht_gateway_phone(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    with e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=chtgateway|twilio") as world:
        phone = FakePhone(world.url + "/api/sms", "phone1", "pw1")
        phone.fail_next("generic; errorCode=1")  # the first SMS the phone tries fails
        ids = [world.cht.add_outgoing(f"+25471234567{i}", f"Reminder {i}") for i in range(3)]

        def poll_until_delivered() -> bool:
            phone.poll()
            return all(world.states(i)[-1] == "delivered" for i in ids)

        wait_for(poll_until_delivered, what="all delivered")
        for i in ids:
            assert world.states(i) == DELIVERED_HISTORY, i
        [failed] = [m for m in phone.outbox.values() if m.status == "FAILED"]
        # the one the phone failed went through the failover channel, once; the rest by phone
        assert phone.sent_count(failed.to) == 0
        assert world.carriers.sent_count(failed.to) == 1
        for m in phone.outbox.values():
            if m is not failed:
                assert phone.sent_count(m.to) == 1 and world.carriers.sent_count(m.to) == 0
        # the phone's own received SMS go into the inbound pipeline
        phone.receive("+254799999999", "Hello from a patient")
        phone.poll()
        rows = world.store.query("SELECT carrier, sender, text FROM messages")
        assert [tuple(r) for r in rows] == [("chtgateway", "+254799999999", "Hello from a patient")]


def test_gateway_api_auth_and_content_type(
    tmp_path: Path, chtsim: tuple[ChtSim, str], caplog: pytest.LogCaptureFixture
) -> None:
    import httpx

    with e2e(tmp_path, chtsim) as world:
        api = world.url + "/api/sms"
        assert httpx.get(api, auth=("phone1", "pw1")).json() == {"medic-gateway": True}
        assert httpx.get(api, auth=("phone1", "nope")).status_code == 401
        [refused] = [r for r in caplog.records if "event=phone_auth_failed" in r.getMessage()]
        assert refused.levelname == "WARNING" and "nope" not in refused.getMessage()
        assert httpx.get(api).status_code == 401
        bad = httpx.post(
            api,
            auth=("phone1", "pw1"),
            content=b"{}",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert bad.status_code == 400
        ok = httpx.post(
            api, auth=("phone2", "pw2"), content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert ok.status_code == 200 and ok.json() == {"messages": []}


@pytest.mark.parametrize("carrier", ["twilio", "vonage", "generic"])
def test_status_webhook_rejects_wrong_token(
    tmp_path: Path, chtsim: tuple[ChtSim, str], carrier: str
) -> None:
    import httpx

    with e2e(tmp_path, chtsim) as world:
        response = httpx.post(
            f"{world.url}/carriers/{carrier}/wrong/status", data={"id": "x", "status": "delivered"}
        )
        assert response.status_code == 401
        assert world.store.query("SELECT COUNT(*) FROM delivery_reports")[0][0] == 0


def test_lost_cht_responses_still_give_one_history_entry_per_state(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with e2e(tmp_path, chtsim) as world:
        # CHT processes these exchanges but the answers never arrive (then two plain failures)
        world.cht.faults.drop_next(3, path="/api/sms")
        world.cht.faults.fail_next(2, path="/api/sms", status=503)
        message_id = world.cht.add_outgoing("+254712345678", "Despite CHT trouble")

        def delivered() -> bool:
            world.clock.advance(1)  # a failed exchange is retried after a pause (our clock)
            return world.states(message_id)[-1] == "delivered"

        wait_for(delivered, what="delivered despite lost responses")

        def all_reported() -> bool:
            world.clock.advance(1)  # the last answer may have been lost too: retried later
            return not reports.owed_reports(world.store, 1)

        wait_for(all_reported, what="all reported")
        assert world.states(message_id) == DELIVERED_HISTORY
        assert world.carriers.sent_count("+254712345678") == 1


def _phone_world(tmp_path: Path, chtsim: tuple[ChtSim, str], **env: str) -> Any:
    return e2e(tmp_path, chtsim, SMSBRIDGE_ROUTES="*=chtgateway", **env)


def test_phone_offline_for_an_hour_then_sends_once(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with _phone_world(tmp_path, chtsim) as world:
        phone = FakePhone(world.url + "/api/sms", "phone2", "pw2")
        message_id = world.cht.add_outgoing("+254712345678", "When the phone is back")
        wait_for(lambda: world.states(message_id)[-1] == "received-by-gateway", what="acked")
        world.clock.advance(3600)  # the phone was off (asleep, no credit) for an hour

        def poll() -> bool:
            phone.poll()
            return world.states(message_id)[-1] == "delivered"

        wait_for(poll, what="delivered through the phone")
        assert world.states(message_id) == DELIVERED_HISTORY
        assert phone.sent_count("+254712345678") == 1


def test_phone_never_polls_message_expires_unsent(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    with _phone_world(tmp_path, chtsim, SMSBRIDGE_MESSAGE_TTL="3600") as world:
        message_id = world.cht.add_outgoing("+254712345678", "Stale")

        def routed() -> bool:
            message = outgoing.get(world.store, message_id)
            return message is not None and message.channel == "chtgateway"

        wait_for(routed, what="routed to the phones")
        world.clock.advance(3601)
        wait_for(lambda: world.states(message_id)[-1] == "failed", what="failed in CHT")
        assert world.cht.message(message_id)["state_details"] == {"reason": "expired"}
        phone = FakePhone(world.url + "/api/sms", "phone1", "pw1")
        phone.poll()
        assert phone.outbox == {} and phone.sent == []


def test_phone_loop_is_held(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    with _phone_world(tmp_path, chtsim, SMSBRIDGE_LOOP_LIMIT="1") as world:
        ids = [world.cht.add_outgoing("+254712345678", "Same again") for _ in range(3)]
        wait_for(lambda: len(outgoing.held(world.store)) == 2, what="two held")
        phone = FakePhone(world.url + "/api/sms", "phone1", "pw1")

        def poll() -> bool:
            phone.poll()
            return sum(world.states(i)[-1] == "delivered" for i in ids) == 1

        wait_for(poll, what="one delivered")
        assert phone.sent_count("+254712345678", "Same again") == 1
        assert len(phone.outbox) == 1


def test_full_batches_are_fetched_at_once(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    cht = chtsim[0]
    ids = [cht.add_outgoing(f"+2547123{i:05d}", f"Batch {i}") for i in range(60)]
    with e2e(tmp_path, chtsim, SMSBRIDGE_SYNC_INTERVAL="3600") as world:
        # a long interval: only the exchange at start-up is timed; the rest follow at once
        # because CHT's batch (25) was full, or because status updates were waiting
        wait_for(lambda: all(world.states(i)[-1] == "delivered" for i in ids), what="60 delivered")
        assert len(world.carriers.sends) == 60
        for i in ids[:3] + ids[-3:]:
            assert world.states(i) == DELIVERED_HISTORY
