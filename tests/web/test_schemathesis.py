"""schemathesis against a live bridge (uvicorn on 127.0.0.1, the CHT simulator as its CHT):
every operation of /openapi.json, valid and invalid inputs, no 5xx and no response that breaks
the schema. Examples are bounded so the whole run stays well under a minute."""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from smsbridge.carriers import load_settings
from smsbridge.chtsim.sim import ChtSim, running_chtsim
from smsbridge.loopback import serve_in_thread
from smsbridge.web.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TOKENS = {
    "africastalking": "at-token",
    "twilio": "tw-token",
    "vonage": "vo-token",
    "generic": "ge-token",
}
PHONE_AUTH = "Basic " + base64.b64encode(b"phone1:phone-pass").decode()
EXAMPLES = int(os.environ.get("SMSBRIDGE_SCHEMATHESIS_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sim = ChtSim()
    sim.install_demo()
    database: Path = tmp_path_factory.mktemp("schemathesis") / "bridge.db"
    with running_chtsim(sim) as cht_url:
        env = {
            "SMSBRIDGE_CHT_URL": cht_url.replace("://", "://gateway:gateway-pass@"),
            "SMSBRIDGE_DATABASE": str(database),
            "SMSBRIDGE_CARRIERS": ",".join([*TOKENS, "chtgateway"]),
            "SMSBRIDGE_CHTGATEWAY_ACCOUNTS": "phone1:phone-pass",
            "SMSBRIDGE_PUBLIC_URL": "https://sms.example.org",
            # the fuzzer's wrong passwords would lock the phone out (tests/web/test_logins.py)
            "SMSBRIDGE_PHONE_LOGIN_ATTEMPTS": "0",
            **{f"SMSBRIDGE_{c.upper()}_WEBHOOK_TOKEN": t for c, t in TOKENS.items()},
        }
        with serve_in_thread(create_app(load_settings(env))) as url:
            yield url


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_openapi_json_is_served_and_lists_the_enabled_carriers(bridge: str) -> None:
    schema = schemathesis.openapi.from_url(bridge + "/openapi.json")
    carrier = schema.raw_schema["components"]["parameters"]["carrier"]["schema"]
    assert sorted(carrier["enum"]) == sorted(TOKENS)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_no_schema_violations(bridge: str, mode: GenerationMode) -> None:
    operations = _operations(bridge)
    assert len(operations) >= 10
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid
        _fuzz(bridge, operation, mode, statuses)
    # The run reached past the front door: some webhook calls were refused for their content
    # (400/403), not only for a wrong token (401).
    reached = {status for (label, status) in statuses if "/carriers/" in label}
    assert reached & {200, 204, 400, 403}, statuses
    assert all(status < 500 for (_label, status) in statuses), statuses
    if mode is GenerationMode.POSITIVE:
        assert statuses[("POST /api/sms", 200)] > 0, statuses  # phones got through


def _fuzz(bridge: str, operation: Any, mode: GenerationMode, statuses: Counter[Any]) -> None:
    """Run `EXAMPLES` generated calls of one operation against the live bridge."""
    uses_token = any(p.name == "token" for p in operation.path_parameters)
    is_gateway = operation.path.startswith("/api/sms")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real_token=st.booleans())
    def run(case: Any, real_token: bool) -> None:
        carrier = (case.path_parameters or {}).get("carrier")
        if uses_token and real_token and carrier in TOKENS:
            # Half the webhook calls get past the token check to the carrier's parser.
            case.path_parameters["token"] = TOKENS[carrier]
        if is_gateway and real_token:  # and half the phone calls past authentication
            case.headers = {**(case.headers or {}), "Authorization": PHONE_AUTH}
        response = case.call_and_validate(base_url=bridge, checks=CHECKS, timeout=10)
        statuses[(operation.label, response.status_code)] += 1

    run()


def _has_inputs(operation: Any) -> bool:
    return bool(operation.path_parameters or operation.query or operation.headers or operation.body)


# -- hostile traffic beyond the schema (issue 10, items 7 and 9) ---------------------------------
# hypothesis builds what a schema never describes: bodies in any content type and encoding, JSON of
# any shape and depth, dates and counts no carrier sends, control bytes. Every endpoint must answer
# it with a 2xx or a 4xx, memory must stay bounded, and valid traffic must go through after it.

FUZZ_EXAMPLES = int(os.environ.get("SMSBRIDGE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HOSTILE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\x00\x1b\x85²[{"),
    max_size=40,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    [
        "from", "to", "text", "id", "date", "msisdn", "messageId", "message-timestamp",
        "concat", "concat-ref", "concat-total", "concat-part", "From", "Body", "MessageSid",
        "status", "ref", "reason", "content", "messages", "updates", "sms_received",
    ]
)  # fmt: skip
FIELD_VALUES = (
    HOSTILE_TEXT
    | st.integers().map(str)
    | st.sampled_from(["²", "9" * 5000, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
    | st.sampled_from(["+254712345678", "254712345678", "99999999999999999999", "9" * 5001])
)


# A valid request per parser, which hypothesis then spoils a field or two at a time: that is what
# reaches past the required-field checks into dates, counts and senders.
VALID_FIELDS = {
    "africastalking": {"from": "+254712345678", "to": "12345", "text": "P 12", "id": "a1"},
    "vonage": {
        "msisdn": "254712345678",
        "to": "12345",
        "messageId": "v1",
        "text": "P 12",
        "message-timestamp": "2026-01-01 10:00:00",
        "concat-ref": "7",
        "concat-total": "2",
        "concat-part": "1",
    },
    "generic": {"from": "+254712345678", "text": "P 12", "id": "g1", "date": "1767225600"},
}
GATEWAY_MESSAGE = {"id": "p1", "from": "+254712345678", "content": "P 12", "sms_received": 1}


@st.composite
def hostile_bodies(draw: st.DrawFn, fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A request body and its headers: `fields` spoilt (form or JSON), JSON of any shape,
    JSON nested deep, raw bytes; sometimes gzip-encoded; with a Content-Type that may lie."""
    kind = draw(st.sampled_from(["spoilt-form", "spoilt-json", "json-any", "deep", "bytes"]))
    spoilt = {**fields, **draw(st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=3))}
    if kind == "spoilt-form":
        body, ctype = urlencode(spoilt).encode(), "application/x-www-form-urlencoded"
    elif kind == "spoilt-json":
        spoilt.update(draw(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=2)))
        body, ctype = json.dumps(spoilt).encode(), "application/json"
    elif kind == "json-any":
        body, ctype = json.dumps(draw(JSON_VALUES)).encode(), "application/json"
    elif kind == "deep":
        depth = draw(st.sampled_from([33, 2000, 30000]))
        opener = draw(st.sampled_from(["[", '{"messages":', '{"a":[']))
        body, ctype = (opener * depth).encode(), "application/json"
    else:
        body = draw(st.binary(max_size=200))
        ctype = draw(st.sampled_from(["application/json", "text/plain", "", "application/xml"]))
    headers = {"Content-Type": ctype} if ctype else {}
    if draw(st.integers(0, 3)) == 0:
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br"]))
        if headers["Content-Encoding"] == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
    return body, headers


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) for any endpoint, past its credentials."""
    carrier = draw(st.sampled_from(sorted(TOKENS)))
    token = TOKENS[carrier]
    target = draw(
        st.sampled_from(["inbound", "inbound", "status", "get-inbound", "phones", "phones", "get"])
    )
    if target == "get":
        path = draw(st.sampled_from(["/healthz", "/readyz", "/metrics", "/openapi.json"]))
        return "GET", path, {}, b""
    if target == "get-inbound":  # a GET webhook carries its fields in the query
        spoil = draw(st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=3))
        query = urlencode({**VALID_FIELDS.get(carrier, {}), **spoil})
        return "GET", f"/carriers/{carrier}/{token}/inbound?{query}", {}, b""
    if target == "phones":
        spoil = draw(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=2))
        body, headers = draw(hostile_bodies({"messages": [GATEWAY_MESSAGE | spoil], "updates": []}))
        if draw(st.integers(0, 3)) > 0:  # mostly what the phone's poller sends
            headers["Content-Type"] = "application/json"
        return "POST", "/api/sms", headers | {"Authorization": PHONE_AUTH}, body
    body, headers = draw(hostile_bodies(VALID_FIELDS.get(carrier, {})))
    return "POST", f"/carriers/{carrier}/{token}/{target}", headers, body


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_hostile_traffic_gets_no_5xx_and_valid_traffic_still_goes_through(bridge: str) -> None:
    statuses: Counter[int] = Counter()
    failures: list[tuple[str, str, bytes, int, str]] = []
    with httpx.Client(base_url=bridge, timeout=10) as http:
        http.get("/readyz")  # warm up before measuring memory
        rss_before = _rss_kb()

        @FUZZ
        @given(request=hostile_requests())
        def hit(request: tuple[str, str, dict[str, str], bytes]) -> None:
            method, path, headers, body = request
            response = http.request(method, path, content=body or None, headers=headers)
            statuses[response.status_code] += 1
            # collected, not raised: hypothesis would print a 30 kB body when shrinking
            wrong = response.status_code >= 500 or (
                response.status_code >= 400
                and response.headers.get("content-type") != "application/json"
            )
            if wrong:
                failures.append(
                    (method, path, body[:80], response.status_code, response.text[:200])
                )

        hit()
        assert failures == [], failures[:5]
        grown_mb = (_rss_kb() - rss_before) / 1024
        assert grown_mb < 100, f"memory grew by {grown_mb:.0f} MB"
        assert sum(statuses.values()) >= FUZZ_EXAMPLES and statuses.keys() & {400, 413, 415}

        # valid traffic after the storm: a webhook SMS and a phone's poll are taken
        sms = {"from": "+254712345678", "to": "12345", "text": "P 12", "id": "after-fuzz"}
        at_inbound = f"/carriers/africastalking/{TOKENS['africastalking']}/inbound"
        inbound = http.post(at_inbound, data=sms)
        assert inbound.status_code == 200, inbound.text
        poll = {"messages": [{"id": "after-fuzz", "from": "+254712345678", "content": "P 13"}]}
        phone = http.post("/api/sms", json=poll, headers={"Authorization": PHONE_AUTH})
        assert phone.status_code == 200, phone.text
        assert http.get("/healthz").status_code == 200
