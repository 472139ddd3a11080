"""Metrics: one registry per app, events counted, queue state read from the store at scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smsbridge.chtsim import ChtSim
from smsbridge.errors import AuthFailure, PermanentError, RetryableError
from smsbridge.store import Store
from smsbridge.tasks import TaskQueue
from smsbridge.web.metrics import Metrics


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "bridge.db") as s:
        yield s


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return scrape(metrics.render().decode())


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.inbound("twilio")
    assert samples(first)[("smsbridge_inbound_messages_total", (("carrier", "twilio"),))] == 1
    assert ("smsbridge_inbound_messages_total", (("carrier", "twilio"),)) not in samples(second)


def test_events_are_counted_by_their_labels() -> None:
    metrics = Metrics()
    metrics.inbound("africastalking", 3)
    metrics.send_latency("twilio", 0.2)
    metrics.delivery_lag("twilio", 42.0)
    metrics.retry("submit")
    metrics.cht_error(RetryableError("down"))
    metrics.cht_error(PermanentError("no"))
    metrics.cht_error(AuthFailure("401"))
    metrics.cht_error(AuthFailure("401"))
    got = samples(metrics)
    assert got[("smsbridge_inbound_messages_total", (("carrier", "africastalking"),))] == 3
    assert got[("smsbridge_send_latency_seconds_count", (("channel", "twilio"),))] == 1
    bucket = "smsbridge_send_latency_seconds_bucket"
    assert got[(bucket, (("channel", "twilio"), ("le", "0.25")))] == 1
    assert got[(bucket, (("channel", "twilio"), ("le", "0.1")))] == 0
    assert got[("smsbridge_delivery_report_lag_seconds_sum", (("channel", "twilio"),))] == 42.0
    assert got[("smsbridge_task_retries_total", (("kind", "submit"),))] == 1
    assert got[("smsbridge_cht_errors_total", (("kind", "auth"),))] == 2
    assert got[("smsbridge_cht_errors_total", (("kind", "retryable"),))] == 1
    assert got[("smsbridge_cht_errors_total", (("kind", "permanent"),))] == 1


def test_queue_depth_and_oldest_age_come_from_the_store(store: Store) -> None:
    asyncio.run(_queue_depth_and_oldest_age(store))


async def _queue_depth_and_oldest_age(store: Store) -> None:
    now = 1_000_000.0
    metrics = Metrics(store, clock=lambda: now + 90)
    outbox = TaskQueue(store)
    await outbox.enqueue("submit", "a", now)
    await outbox.enqueue("submit", "b", now + 30)
    await outbox.enqueue("send", "c", now + 60)
    task = await outbox.claim(["send"], now + 60, lease=60)
    assert task is not None
    await outbox.give_up(task, "carrier rejected it", now=now + 61)
    got = samples(metrics)
    assert got[("smsbridge_queue_depth", (("kind", "submit"),))] == 2
    assert got[("smsbridge_queue_oldest_age_seconds", (("kind", "submit"),))] == 90
    assert got[("smsbridge_dead_letter_depth", (("kind", "send"),))] == 1
    assert got[("smsbridge_queue_depth", (("kind", "send"),))] == 0  # exported at 0
    assert got[("smsbridge_dead_letter_depth", (("kind", "submit"),))] == 0
    # Scrape time, not registration time: the next scrape sees the change.
    done = await outbox.claim(["submit"], now + 90, lease=60)
    assert done is not None
    await outbox.done(done)
    got = samples(metrics)
    assert got[("smsbridge_queue_depth", (("kind", "submit"),))] == 1
    assert got[("smsbridge_queue_oldest_age_seconds", (("kind", "submit"),))] == 60


def test_cht_errors_are_counted_by_kind_against_the_simulator(demo_sim: ChtSim) -> None:
    from smsbridge.cht.client import ChtClient
    from smsbridge.chtsim.sim import running_chtsim

    metrics = Metrics()

    async def calls(url: str) -> None:
        async with ChtClient(url, ("gateway", "gateway-pass"), timeout=5) as good:
            cht = metrics.wrap_cht(good)
            await cht.check_auth()  # fine: not counted
            demo_sim.faults.fail_next(1, 503, path="/api/sms")
            with pytest.raises(RetryableError):
                await cht.check_auth()
        async with ChtClient(url, ("gateway", "wrong"), timeout=5) as bad:
            with pytest.raises(AuthFailure):
                await metrics.wrap_cht(bad).check_auth()

    with running_chtsim(demo_sim) as url:
        asyncio.run(calls(url))
    got = samples(metrics)
    assert got[("smsbridge_cht_errors_total", (("kind", "retryable"),))] == 1
    assert got[("smsbridge_cht_errors_total", (("kind", "auth"),))] == 1
    assert got[("smsbridge_cht_errors_total", (("kind", "permanent"),))] == 0


def test_a_live_bridge_exports_the_flow_at_metrics() -> None:
    import io

    import httpx

    from smsbridge.cli.demo import scenario, stage

    with stage(io.StringIO(), timeout=20) as s:
        s.cht.faults.fail_next(1, 500, path="/api/v2/records")  # the first report: tried again
        scenario(s)
        response = httpx.get(s.bridge_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            got[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    at = (("carrier", "africastalking"),)
    assert got[("smsbridge_inbound_messages_total", at)] == 2
    channel = (("channel", "africastalking"),)
    sends = got[("smsbridge_send_latency_seconds_count", channel)]
    assert sends >= 3  # the reply, the reminder, the error reply
    assert got[("smsbridge_delivery_report_lag_seconds_count", channel)] >= 2
    delivered = (("channel", "africastalking"), ("state", "delivered"))
    assert got[("smsbridge_outbound_messages", delivered)] >= 2
    assert got[("smsbridge_task_retries_total", (("kind", "submit"),))] == 1
    assert got[("smsbridge_cht_errors_total", (("kind", "retryable"),))] == 1


def test_gateway_phone_sms_are_counted_and_its_delivery_reports_timed(
    gateway_phone_bridge: Any,
) -> None:
    bridge = gateway_phone_bridge
    got = scrape(bridge.http.get("/metrics").text)
    # the SMS the phone forwarded twice is one inbound SMS
    assert got[("smsbridge_inbound_messages_total", (("carrier", "chtgateway"),))] == 1
    channel = (("channel", "chtgateway"),)  # the account is not named (test_metrics_access.py)
    assert got[("smsbridge_delivery_report_lag_seconds_count", channel)] == 1
    assert got[("smsbridge_delivery_report_lag_seconds_sum", channel)] == bridge.extra["lag"]
    delivered = (("channel", "chtgateway"), ("state", "delivered"))
    assert got[("smsbridge_outbound_messages", delivered)] == 1


def test_delivery_lag_is_observed_for_delivered_changes_only() -> None:
    from smsbridge.outbound.transitions import Change
    from smsbridge.sms import DeliveryState

    metrics = Metrics()
    sent = Change("m1", DeliveryState.SENT, 100.0, DeliveryState.SENDING, channel="twilio")
    delivered = Change(
        "m1", DeliveryState.DELIVERED, 160.0, DeliveryState.SENT, channel="twilio", sent_at=100.0
    )
    at_once = Change("m2", DeliveryState.DELIVERED, 200.0, DeliveryState.QUEUED, carrier="vonage")
    metrics.outgoing_changes([sent, delivered, at_once])
    got = samples(metrics)
    assert got[("smsbridge_delivery_report_lag_seconds_count", (("channel", "twilio"),))] == 1
    assert got[("smsbridge_delivery_report_lag_seconds_sum", (("channel", "twilio"),))] == 60.0
    assert got[("smsbridge_delivery_report_lag_seconds_sum", (("channel", "vonage"),))] == 0.0


# -- every series from the start; no _created; build, process and HTTP metrics -------------------


def test_labelled_series_are_exported_at_zero_before_anything_happens(store: Store) -> None:
    from smsbridge.sms import DeliveryState

    metrics = Metrics(store)
    metrics.expect(["twilio"], ["twilio"])
    got = samples(metrics)
    for kind in ("submit", "assemble", "send"):
        assert got[("smsbridge_queue_depth", (("kind", kind),))] == 0
        assert got[("smsbridge_queue_oldest_age_seconds", (("kind", kind),))] == 0
        assert got[("smsbridge_dead_letter_depth", (("kind", kind),))] == 0
        assert got[("smsbridge_task_retries_total", (("kind", kind),))] == 0
    for state in DeliveryState:
        key = (("channel", "none"), ("state", state.value))
        assert got[("smsbridge_outbound_messages", key)] == 0
    for kind in ("retryable", "permanent", "auth"):
        assert got[("smsbridge_cht_errors_total", (("kind", kind),))] == 0
    assert got[("smsbridge_inbound_messages_total", (("carrier", "twilio"),))] == 0
    assert got[("smsbridge_send_latency_seconds_count", (("channel", "twilio"),))] == 0


def test_outgoing_states_are_filled_in_on_each_channel_seen(store: Store) -> None:
    def seed(conn: Any) -> None:
        conn.execute(
            "INSERT INTO outgoing (ref, origin, to_number, content, text_key, segments, encoding,"
            " state, channel, created_at, updated_at) VALUES"
            " ('r1', 'cht', '+254700000001', 'x', 'k', 1, 'gsm7', 'delivered', 'twilio', 1, 1)"
        )

    store.write_sync(seed)
    got = samples(Metrics(store))
    assert got[("smsbridge_outbound_messages", (("channel", "twilio"), ("state", "delivered")))]
    assert got[("smsbridge_outbound_messages", (("channel", "twilio"), ("state", "failed")))] == 0


def test_no_created_series_and_build_and_process_metrics_are_exported() -> None:
    from smsbridge import __version__

    metrics = Metrics()
    metrics.inbound("twilio")
    metrics.send_latency("twilio", 0.1)
    text = metrics.render().decode()
    names = {name for name, _ in scrape(text)}
    assert not [n for n in names if n.endswith("_created")], text
    assert "_created" not in text
    assert scrape(text)[("smsbridge_build_info", (("version", __version__),))] == 1
    assert "process_cpu_seconds_total" in names
    assert "process_resident_memory_bytes" in names
    # a second app in the same process still has its own (no global switch was flipped)
    assert "_created" not in Metrics().render().decode()


def test_cht_auth_pause_and_last_success_are_exported() -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    paused: list[str | None] = [None]
    metrics.watch_cht_gate(lambda: paused[0])
    got = samples(metrics)
    assert got[("smsbridge_cht_auth_paused", ())] == 0
    assert got[("smsbridge_cht_last_success_timestamp_seconds", ())] == 1000.0
    paused[0] = "CHT refused our credentials"
    now[0] = 2000.0
    metrics.cht_ok()
    got = samples(metrics)
    assert got[("smsbridge_cht_auth_paused", ())] == 1
    assert got[("smsbridge_cht_last_success_timestamp_seconds", ())] == 2000.0
