"""Who can read /metrics, and what it names: SMSBRIDGE_METRICS_TOKEN (a bearer token),
SMSBRIDGE_METRICS_LISTEN (a listener of its own, on a real `smsbridge serve`), and phone
accounts kept out of the `channel` label unless SMSBRIDGE_METRICS_PHONE_LABELS is on."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from smsbridge.loopback import free_port
from smsbridge.web.metrics import Metrics
from tests.test_crash import Bridge
from tests.web.test_metrics import samples

TOKEN = "metrics-token-0123456789"


def test_metrics_with_a_token_want_it_as_bearer(bridge_factory: Callable[..., Any]) -> None:
    bridge = bridge_factory(SMSBRIDGE_METRICS_TOKEN=TOKEN)
    missing = bridge.http.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "smsbridge_" not in missing.text
    wrong = bridge.http.get("/metrics", headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    basic = bridge.http.get("/metrics", auth=("x", TOKEN))
    assert basic.status_code == 401
    right = bridge.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert "smsbridge_inbound_messages_total" in right.text


def test_metrics_without_a_token_stay_open(bridge: Any) -> None:
    assert bridge.http.get("/metrics").status_code == 200


def test_phone_accounts_are_not_named_in_metrics_by_default(gateway_phone_bridge: Any) -> None:
    text = gateway_phone_bridge.http.get("/metrics").text
    assert 'channel="chtgateway"' in text
    assert "phone1" not in text


def test_phone_labels_name_the_account_when_asked() -> None:
    named, plain = Metrics(phone_labels=True), Metrics()
    for metrics in (named, plain):
        metrics.send_latency("chtgateway:phone1", 0.2)
        metrics.send_latency("twilio", 0.2)
    count = "smsbridge_send_latency_seconds_count"
    assert samples(named)[(count, (("channel", "chtgateway:phone1"),))] == 1
    assert samples(plain)[(count, (("channel", "chtgateway"),))] == 1
    assert samples(plain)[(count, (("channel", "twilio"),))] == 1
    assert not any("phone1" in str(labels) for _, labels in samples(plain))


def test_metrics_on_a_listener_of_their_own(tmp_path: Path) -> None:
    port = free_port()
    bridge = Bridge(tmp_path, "http://127.0.0.1:9")
    bridge.env.update(SMSBRIDGE_METRICS_LISTEN=f"127.0.0.1:{port}", SMSBRIDGE_METRICS_TOKEN=TOKEN)
    try:
        bridge.start()
        assert httpx.get(bridge.url + "/metrics", timeout=5).status_code == 404
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url, timeout=5).status_code == 401  # the token applies there too
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert scraped.status_code == 200
        assert "smsbridge_queue_depth" in scraped.text  # the bridge's own figures
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 404
    finally:
        bridge.stop()
    # stopped by the SIGTERM (uvicorn re-raises it once shut down), neither server hanging
    assert bridge.proc is not None and bridge.proc.returncode == -signal.SIGTERM
    assert "Traceback" not in (tmp_path / "bridge.log").read_text()
