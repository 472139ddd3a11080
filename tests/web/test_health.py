"""/healthz and /readyz on a live bridge with the CHT simulator as its CHT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.chtsim.sim import ChtSim, running_chtsim
from smsbridge.loopback import serve_in_thread, wait_for
from smsbridge.store import Store
from smsbridge.web.app import create_app
from smsbridge.web.health import Readiness


@contextmanager
def bridge(sim: ChtSim, tmp_path: Path, password: str = "gateway-pass") -> Iterator[str]:
    with running_chtsim(sim) as cht_url:
        env = {
            "SMSBRIDGE_CHT_URL": cht_url.replace("://", f"://gateway:{password}@"),
            "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
        }
        with serve_in_thread(create_app(load_settings(env))) as url:
            yield url


def ready_body(url: str, want: int, deadline: float = 10.0) -> dict[str, Any]:
    """/readyz until it answers `want` (the workers fetch CHT's settings just after start)."""

    def answered() -> dict[str, Any] | None:
        response = httpx.get(url + "/readyz", timeout=10)
        assert response.status_code in (200, 503)
        assert response.headers["content-type"] == "application/json"
        body: dict[str, Any] = response.json()
        return body if response.status_code == want else None

    return wait_for(answered, f"/readyz to answer {want}", timeout=deadline)


def test_healthz_answers_while_the_process_is_up(tmp_path: Path, demo_sim: ChtSim) -> None:
    with bridge(demo_sim, tmp_path) as url:
        response = httpx.get(url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_database_cht_and_forms_are_fine(tmp_path: Path, demo_sim: ChtSim) -> None:
    with bridge(demo_sim, tmp_path) as url:
        body = ready_body(url, 200)
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "cht", "forms"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["forms"]["detail"] == "3 forms"


def test_not_ready_with_wrong_cht_credentials_says_so(tmp_path: Path, demo_sim: ChtSim) -> None:
    with bridge(demo_sim, tmp_path, password="wrong") as url:
        body = ready_body(url, 503)
        again = ready_body(url, 503)
    assert body["ready"] is False
    assert body["checks"]["database"] == {"ok": True}
    cht = body["checks"]["cht"]
    assert cht["ok"] is False and "credentials" in cht["detail"]
    assert "wrong" not in str(body)  # the password is not echoed
    assert body["checks"]["forms"]["ok"] is False
    assert again["checks"]["cht"]["ok"] is False
    # A busy probe must not walk the bridge into CHT's failed-login lockout.
    assert demo_sim.request_count("/api/sms", "GET") <= 1


def test_not_ready_when_cht_is_down(tmp_path: Path, demo_sim: ChtSim) -> None:
    demo_sim.faults.fail_next(1000, 503)
    with bridge(demo_sim, tmp_path) as url:
        body = ready_body(url, 503)
    assert body["checks"]["cht"]["ok"] is False
    assert "unreachable" in body["checks"]["cht"]["detail"]
    assert "not fetched" in body["checks"]["forms"]["detail"]


def test_database_that_takes_no_write_is_not_ready(tmp_path: Path) -> None:
    store = Store(tmp_path / "bridge.db")
    readiness = Readiness(store=store, cht_probe=None, forms_status=lambda: (True, "1 form"))
    assert asyncio.run(readiness.check_database()).ok
    store.close()
    result = asyncio.run(readiness.check_database())
    assert not result.ok and "not writable" in result.detail


def test_cht_answer_is_cached_between_probes() -> None:
    calls: list[float] = []
    now = [100.0]

    async def probe() -> None:
        calls.append(now[0])

    readiness = Readiness(
        store=None, cht_probe=probe, forms_status=None, clock=lambda: now[0], cht_cache_seconds=10
    )
    for _ in range(3):
        assert asyncio.run(readiness.check_cht()).ok
    now[0] += 11
    assert asyncio.run(readiness.check_cht()).ok
    assert calls == [100.0, 111.0]


@pytest.mark.parametrize("paused", ["CHT refused our credentials (401)"])
def test_paused_cht_work_is_reported_without_calling_cht(paused: str) -> None:
    async def probe() -> None:
        raise AssertionError("must not call CHT while paused")

    readiness = Readiness(store=None, cht_probe=probe, forms_status=None, cht_paused=lambda: paused)
    result = asyncio.run(readiness.check_cht())
    assert not result.ok and paused in result.detail
