"""HTTP request metrics (smsbridge/web/httpmetrics.py): requests by route template, method and
status, and their duration, on a running bridge; never the raw path (it carries tokens)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import WEBHOOK_TOKENS, RunningBridge


def scrape(bridge: RunningBridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = bridge.http.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(route: str, method: str, status: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return ("smsbridge_http_requests_total", labels)


INBOUND = "/carriers/{carrier}/{token}/inbound"


def test_requests_are_counted_by_route_template_method_and_status(bridge: RunningBridge) -> None:
    before = scrape(bridge)
    form = {"from": "+254712345678", "to": "12345", "text": "hi", "id": "h-1"}
    assert bridge.http.post(bridge.inbound_path("africastalking"), data=form).status_code == 200
    form["id"] = "h-2"
    assert bridge.http.post(bridge.inbound_path("africastalking"), data=form).status_code == 200
    assert bridge.http.post("/carriers/africastalking/wrong/inbound", data=form).status_code == 401
    assert bridge.http.get("/healthz").status_code == 200
    assert bridge.http.get("/no/such/path/secret-ish").status_code == 404
    after = scrape(bridge)

    def grew(key: tuple[str, tuple[tuple[str, str], ...]]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(requests(INBOUND, "POST", 200)) == 2
    assert grew(requests(INBOUND, "POST", 401)) == 1
    assert grew(requests("/healthz", "GET", 200)) == 1
    assert grew(requests("unmatched", "GET", 404)) == 1
    count = (
        "smsbridge_http_request_duration_seconds_count",
        (("method", "POST"), ("route", INBOUND)),
    )
    assert grew(count) == 3
    routes = {
        dict(labels).get("route") for name, labels in after if name.startswith("smsbridge_http")
    }
    assert not [r for r in routes if r and ("wrong" in r or "secret" in r)], routes
    text = bridge.http.get("/metrics").text
    for token in WEBHOOK_TOKENS.values():
        assert token not in text


def test_a_body_refused_before_routing_is_counted(bridge: RunningBridge) -> None:
    limit = bridge.settings.max_body_bytes
    before = scrape(bridge).get(requests("unmatched", "POST", 413), 0)
    response = bridge.http.post(bridge.inbound_path("generic"), content=b"x" * (limit + 1))
    assert response.status_code == 413
    assert scrape(bridge)[requests("unmatched", "POST", 413)] == before + 1
