"""schemathesis against a live bridge (uvicorn on 127.0.0.1, the CHT simulator as its CHT):
every operation of /openapi.json, valid and invalid inputs, no 5xx and no response that breaks
the schema. Examples are bounded so the whole run stays well under a minute."""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
