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
    assert ("smsbridge_queue_depth", (("kind", "send"),)) not in got
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
    assert ("smsbridge_cht_errors_total", (("kind", "permanent"),)) not in got


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
    channel = (("channel", "chtgateway:phone1"),)
    assert got[("smsbridge_delivery_report_lag_seconds_count", channel)] == 1
    assert got[("smsbridge_delivery_report_lag_seconds_sum", channel)] == bridge.extra["lag"]
    delivered = (("channel", "chtgateway:phone1"), ("state", "delivered"))
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
