"""/healthz and /readyz on a live bridge with the CHT simulator as its CHT."""

from __future__ import annotations

import asyncio
import time
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
from smsbridge.web.health import CheckResult, Readiness
from tests.conftest import running_bridge
from tests.fakeclock import FakeClock


@contextmanager
def bridge(
    sim: ChtSim, tmp_path: Path, password: str = "gateway-pass", **env: str
) -> Iterator[str]:
    with running_chtsim(sim) as cht_url:
        env = {
            "SMSBRIDGE_CHT_URL": cht_url.replace("://", f"://gateway:{password}@"),
            "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
            **env,
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
    assert set(body["checks"]) == {"database", "cht", "forms", "cht_outgoing", "channels"}
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
        body = wait_for(
            lambda: (
                (b := ready_body(url, 503))["checks"]["cht"]["detail"] != "CHT probe pending" and b
            ),
            "the first CHT probe's answer",
        )
    assert body["checks"]["cht"]["ok"] is False
    assert "unreachable" in body["checks"]["cht"]["detail"]
    assert "not fetched" in body["checks"]["forms"]["detail"]


def test_database_that_takes_no_write_is_not_ready(tmp_path: Path) -> None:
    store = Store(tmp_path / "bridge.db")
    readiness = Readiness(
        store=store,
        cht_probe=None,
        forms_status=lambda: (True, "1 form"),
        database_cache_seconds=0,
    )
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


# -- /readyz tells the truth (issue 10, item 8) ---------------------------------------------------


def test_a_disk_almost_full_is_not_ready(tmp_path: Path, demo_sim: ChtSim) -> None:
    # No disk has a petabyte free: the threshold makes this filesystem "full".
    with bridge(demo_sim, tmp_path, SMSBRIDGE_MIN_FREE_DISK_MB=str(10**9)) as url:
        body = wait_for(
            lambda: (b := ready_body(url, 503))["checks"]["database"].get("detail") and b,
            "the database check's answer",
        )
    database = body["checks"]["database"]
    assert database["ok"] is False
    assert "disk almost full" in database["detail"], database
    assert "SMSBRIDGE_MIN_FREE_DISK_MB" in database["detail"]


def test_readyz_answers_at_once_while_cht_hangs(tmp_path: Path, demo_sim: ChtSim) -> None:
    demo_sim.faults.latency(20.0)  # every CHT call hangs
    with bridge(demo_sim, tmp_path) as url, httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(3):
            started = time.monotonic()
            response = http.get("/readyz")
            elapsed = time.monotonic() - started
            assert elapsed < 0.5, elapsed  # was: the probe's 5 s timeout
            assert response.status_code == 503
            assert response.json()["checks"]["cht"] == {"ok": False, "detail": "CHT probe pending"}
        demo_sim.faults.clear()


def test_a_hanging_probe_is_answered_from_cached_state_then_timed_out() -> None:
    release = asyncio.Event()
    calls = []

    async def hanging() -> None:
        calls.append(1)
        await release.wait()

    async def scenario() -> list[tuple[float, CheckResult]]:
        readiness = Readiness(store=None, cht_probe=hanging, forms_status=None, timeout=0.3)
        answers = []
        for pause in (0.0, 0.1, 0.4):
            await asyncio.sleep(pause)
            started = time.monotonic()
            result = await readiness.check_cht()
            answers.append((time.monotonic() - started, result))
        return answers

    answers = asyncio.run(scenario())
    assert all(elapsed < 0.1 for elapsed, _ in answers), answers
    assert [r.detail for _, r in answers[:2]] == ["CHT probe pending"] * 2
    assert answers[2][1] == CheckResult(False, "CHT did not answer within 0.3 s")
    assert len(calls) == 1  # one probe at a time, however often /readyz is asked


def test_wrong_credentials_cost_one_call_then_probes_back_off(
    tmp_path: Path, demo_sim: ChtSim
) -> None:
    clock = FakeClock()
    with (
        running_chtsim(demo_sim) as cht_url,
        running_bridge(
            tmp_path,
            cht_url=cht_url.replace("://", "://gateway:wrong@"),
            clock=clock,
            start_workers=True,
        ) as running,
    ):

        def calls() -> int:
            return sum(demo_sim.faults.counts.values())

        wait_for(lambda: calls() >= 1, "the first call to CHT")
        time.sleep(1.0)  # the sync loop, the settings refresher and the workers all started
        body = running.http.get("/readyz").json()
        assert "CHT work paused" in body["checks"]["cht"]["detail"]
        assert calls() == 1, demo_sim.faults.counts  # no second call with the refused password
        clock.advance(4.9)
        time.sleep(0.5)
        assert calls() == 1  # the first probe is due 5 s after the 401
        clock.advance(0.2)
        wait_for(lambda: calls() == 2, "the first probe")
        clock.advance(9.0)
        time.sleep(0.5)
        assert calls() == 2  # refused again: the next probe 10 s later
        demo_sim.set_password("gateway", "wrong")  # the operator fixes it on CHT's side
        clock.advance(1.1)
        wait_for(
            lambda: running.http.get("/readyz").json()["checks"]["cht"]["ok"],
            "CHT accepted again",
        )
