"""CHT's recorded `createByForm` / `createRecordByJSON` vectors, each sent THROUGH the
simulator's HTTP records endpoint (`POST /api/v2/records`) and compared with the stored doc as
`GET /_sim/records` shows it (the vectors: tests/vectors/smsparser.json).

- createByForm vectors are posted urlencoded, createRecordByJSON vectors as JSON.
- A service error (`expected_error`) must come back as CHT's 500 with the message as details.
- `_id` / `_rev` (added by CouchDB on save) are not part of the service's result.
- Urlencoded bodies only carry strings: an input given as a number (one vector's
  `sent_timestamp`) is sent as its decimal text, and the echo of that raw value in
  `sms_message` is then the text. The same vector is also run through the service function
  with the number, where the whole expectation must hold as recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.chtsim import ChtSim, running_chtsim
from smsbridge.chtsim.records import create_by_form

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "smsparser.json"
RECORDS = [
    v
    for v in json.loads(VECTORS.read_text(encoding="utf-8"))
    if v["function"] in ("createByForm", "createRecordByJSON")
]
NOW_TOLERANCE_MS = 10_000
GATEWAY = ("gateway", "gw-pass")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ChtSim, httpx.Client]]:
    sim = ChtSim()
    with (
        running_chtsim(sim) as url,
        httpx.Client(base_url=url, auth=GATEWAY, headers={"Accept": "application/json"}) as http,
    ):
        yield sim, http


def _settings(vector: dict[str, Any]) -> dict[str, Any]:
    return {
        **(vector.get("settings") or {}),
        "forms": vector.get("forms") or {},
        "roles": {"gateway": {"name": "usertype.gateway"}},
        "permissions": {"can_create_records": ["gateway"]},
    }


def _expected(value: Any, now: tuple[int, int]) -> Any:
    """The vector's expectation in stored (JSON) form; `$now` becomes a range check."""
    if isinstance(value, dict):
        if value.get("$nan"):
            return None
        if value.get("$now"):
            return Now(*now)
        return {
            k: _expected(v, now)
            for k, v in value.items()
            if not (isinstance(v, dict) and v.get("$undefined"))
        }
    if isinstance(value, list):
        return [_expected(v, now) for v in value]
    return value


class Now:
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int | float) and self.low <= other <= self.high

    def __repr__(self) -> str:
        return f"<now in [{self.low}, {self.high}]>"


def _subset(expected: Any, actual: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing from {actual!r}"
            _subset(value, actual[key], f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _compare(vector: dict[str, Any], expected: Any, stored: dict[str, Any]) -> None:
    mode = vector.get("assert")
    if mode == "subset":
        _subset(expected, stored)
    elif mode == "subset-stored":
        assert {k: stored.get(k) for k in expected} == expected
    else:
        assert stored == expected


def _as_form(body: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}


@pytest.mark.parametrize("vector", RECORDS, ids=[v["id"] for v in RECORDS])
def test_records_vector_through_http(
    served: tuple[ChtSim, httpx.Client], vector: dict[str, Any]
) -> None:
    sim, http = served
    sim.set_settings(_settings(vector))
    sim.set_translations(vector.get("translations") or {}, replace=True)
    sim.add_user(*GATEWAY, roles=["gateway"])
    body = vector["input"]
    before = int(time.time() * 1000)
    if vector["function"] == "createByForm":
        answer = http.post("/api/v2/records", data=_as_form(body))
    else:
        answer = http.post("/api/v2/records", json=body)
    after = int(time.time() * 1000)

    if "expected_error" in vector:
        assert answer.status_code == 500
        assert answer.json() == {
            "code": 500,
            "error": "Server error",
            "details": vector["expected_error"],
        }
        return
    assert answer.status_code == 200, answer.text
    doc_id = answer.json()["id"]
    assert answer.json() == {"success": True, "id": doc_id}
    stored = next(d for d in http.get("/_sim/records").json() if d["_id"] == doc_id)
    del stored["_id"], stored["_rev"]

    expected = _expected(vector["expected"], (before, after + NOW_TOLERANCE_MS))
    sent_as_text = {k: v for k, v in body.items() if not isinstance(v, str)}
    if vector["function"] == "createByForm" and sent_as_text:
        service = create_by_form(
            body,
            settings=_settings(vector),
            translations=vector.get("translations") or {},
            now_ms=int(time.time() * 1000),
        )
        _compare(vector, expected, service)
        if "sent_timestamp" in sent_as_text:
            expected["sms_message"]["reported_date"] = _as_form(sent_as_text)["sent_timestamp"]
    _compare(vector, expected, stored)


def test_every_records_vector_is_covered() -> None:
    assert len(RECORDS) == 31
    assert len({v["id"] for v in RECORDS}) == len(RECORDS)
