"""The app's HTTP edges: errors as JSON, body limit, unknown carriers, tokens, and that a 2xx
means the message is already committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from smsbridge.web.bodylimit import BodyLimit

AT = {
    "from": "+254712345678",
    "to": "28901",
    "text": "P 12 Jane",
    "id": "AT1",
    "date": "2017-05-03T06:04:45Z",
}


def test_unknown_carrier_is_404_json(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post("/carriers/nosuch/tok/inbound", data=AT)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "nosuch" in response.json()["detail"]


def test_a_carrier_not_enabled_is_404(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(SMSBRIDGE_CARRIERS="twilio")
    response = bridge.http.post(bridge.inbound_path("africastalking"), data=AT)
    assert response.status_code == 404
    assert bridge.messages() == []


def test_unknown_route_is_404_json(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.get("/nothing/here")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "detail"}


def test_body_over_the_limit_is_413_and_nothing_stored(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(SMSBRIDGE_MAX_BODY_BYTES="1024")
    url = bridge.inbound_path("africastalking")
    response = bridge.http.post(url, data={**AT, "text": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b"from=%2B254712345678&id=AT9&text="
        for _ in range(10):
            yield b"y" * 200

    response = bridge.http.post(
        url, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert bridge.messages() == []
    assert bridge.http.post(url, data=AT).status_code == 200  # a normal one still goes through


def test_default_body_limit_is_64_kib(bridge) -> None:  # type: ignore[no-untyped-def]
    assert bridge.settings.max_body_bytes == 65536
    url = bridge.inbound_path("generic")
    assert bridge.http.post(url, data={"from": "+1555", "text": "z" * 70_000}).status_code == 413


def test_malformed_bodies_are_400_json(bridge) -> None:  # type: ignore[no-untyped-def]
    url = bridge.inbound_path("generic")
    for content, ctype in [
        (b'{"from": ', "application/json"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"[1, 2, 3]", "application/json"),
    ]:
        response = bridge.http.post(url, content=content, headers={"content-type": ctype})
        assert response.status_code == 400, (content, response.text)
        body = response.json()
        assert body["error"] == "bad_request" and body["detail"]
    assert bridge.messages() == []


def test_token_is_checked_before_anything_is_read(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(
        "/carriers/generic/wrong/inbound",
        content=b"{broken",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "wrong webhook token"}


def test_a_carrier_without_a_token_configured_refuses_everything(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(SMSBRIDGE_GENERIC_WEBHOOK_TOKEN="")
    assert bridge.http.post(
        "/carriers/generic/x/inbound", data={"from": "+1", "text": "t"}
    ).status_code in (401, 404)
    assert bridge.messages() == []


def test_a_2xx_means_the_message_is_committed(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.post(bridge.inbound_path("africastalking"), data=AT)
    assert response.status_code == 200
    # a brand-new connection (another process would see the same) already sees it, and its task
    conn = sqlite3.connect(bridge.settings.database)
    try:
        [(uuid,)] = conn.execute("SELECT uuid FROM messages").fetchall()
        [(kind, ref)] = conn.execute("SELECT kind, ref FROM tasks").fetchall()
    finally:
        conn.close()
    assert (kind, ref) == ("submit", uuid)


def test_concurrent_webhooks_are_all_stored(bridge) -> None:  # type: ignore[no-untyped-def]
    import concurrent.futures

    url = bridge.inbound_path("africastalking")

    def post(n: int) -> int:
        return bridge.http.post(url, data={**AT, "id": f"AT-{n}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(200)))
    assert statuses == [200] * 200
    assert len(bridge.messages()) == 200
    # commits were shared: fewer commits than webhooks (the accepts of webhooks that come while
    # one waits for the writer are one job: inbound/groups.py AcceptGroups)
    assert bridge.store.batches < len(statuses)


def test_body_limit_middleware_refuses_negative_content_length() -> None:
    import asyncio

    sent: list[dict] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("must not be called")

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"-5")]}
    asyncio.run(BodyLimit(app, 100)(scope, receive, send))
    assert sent[0]["status"] == 400


def test_a_get_webhook_for_a_post_only_carrier_is_405_json(bridge) -> None:  # type: ignore[no-untyped-def]
    response = bridge.http.get(bridge.inbound_path("africastalking"), params=AT)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert bridge.messages() == []


def test_get_inbound_is_offered_by_the_carriers_that_use_it() -> None:
    from smsbridge.web.routes import GET_INBOUND

    assert sorted(GET_INBOUND) == ["generic", "kannel", "vonage"]


def test_requests_before_the_service_has_started_are_503_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import httpx

    from smsbridge.carriers import load_settings
    from smsbridge.web.app import create_app

    settings = load_settings(
        {
            "SMSBRIDGE_DATABASE": str(tmp_path / "never.db"),
            "SMSBRIDGE_CARRIERS": "africastalking,chtgateway",
            "SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN": "tok",
        }
    )
    app = create_app(settings)  # its lifespan has not run: no service yet

    async def statuses() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            responses = [
                await http.post("/carriers/africastalking/tok/inbound", data=AT),
                await http.post("/carriers/africastalking/tok/status", data={"id": "x"}),
                await http.get("/api/sms"),
            ]
        return [(r.status_code, r.json()["error"]) for r in responses]

    # /api/sms answers in cht-gateway's error shape, `{"error": true, "message": ...}`
    assert asyncio.run(statuses()) == [(503, "unavailable")] * 2 + [(503, True)]


def test_a_query_string_over_the_limit_is_413_and_nothing_stored(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(SMSBRIDGE_MAX_BODY_BYTES="1024")
    url = bridge.inbound_path("generic")
    response = bridge.http.get(url, params={"from": "+254712345678", "text": "x" * 2000})
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "query string over 1024 bytes",
    }
    assert bridge.messages() == []
    assert bridge.http.get(url, params={"from": "+254712345678", "text": "ok"}).status_code == 200


def test_cht_gateway_takes_no_carrier_webhooks(bridge_factory) -> None:  # type: ignore[no-untyped-def]
    bridge = bridge_factory(
        SMSBRIDGE_CARRIERS="generic,chtgateway",
        SMSBRIDGE_CHTGATEWAY_ACCOUNTS="phone1:pw1",
        SMSBRIDGE_ROUTES="*=generic",
    )
    for hook in ("inbound", "status"):
        response = bridge.http.post(f"/carriers/chtgateway/x/{hook}", data={"a": "1"})
        assert response.status_code == 404, (hook, response.text)
        assert response.json() == {
            "error": "not_found",
            "detail": "unknown carrier 'chtgateway': cht-gateway phones use /api/sms, "
            "not carrier webhooks",
        }
    assert bridge.messages() == []


def test_a_lone_surrogate_in_a_json_body_is_stored_not_a_500(bridge) -> None:  # type: ignore[no-untyped-def]
    """Half of an emoji (a concatenated SMS split mid-character, or a `\\ud83d` escape) can
    neither be encoded nor stored: it becomes U+FFFD and the rest of the message is kept."""
    body = '{"from": "+254712345678", "text": "P 12 Jane \\ud83d", "id": "half-1"}'
    response = bridge.http.post(
        bridge.inbound_path("generic"),
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [message] = bridge.messages()
    assert message["text"] == "P 12 Jane \ufffd"


def test_well_formed_joins_pairs_and_replaces_only_lone_halves() -> None:
    from smsbridge.sms import well_formed

    assert well_formed("ok \U0001f600") == "ok \U0001f600"
    assert well_formed("\ud83d\ude00") == "\U0001f600"  # a pair kept apart by a JSON decoder
    assert well_formed("a\ud800b\udc00") == "a\ufffdb\ufffd"
