"""What the console's tests share: a bridge with the console against chtsim, CHT accounts of
each kind, signing in through the form, and a dead letter to act on."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from smsbridge import tasks
from smsbridge.chtsim import ChtSim
from smsbridge.inbound import messages as inbound
from tests.conftest import RunningBridge, running_bridge

ADMIN = ("ops-admin", "ops-admin-pass")  # a CHT admin (role national_admin)
CHW = ("chw-bob", "chw-bob-pass")  # a CHT user without an admin role
PATIENT = "+254711222333"
TEXT = "P 12 visit note for the console"


def add_accounts(sim: ChtSim) -> None:
    sim.add_user(*ADMIN, roles=["national_admin"])
    sim.add_user(*CHW, roles=["chw"])


@contextlib.contextmanager
def console_bridge(tmp_path: Path, cht_url: str, **env: Any) -> Iterator[RunningBridge]:
    """A bridge (workers off unless asked) whose CHT is `cht_url`, with the bridge's own
    credentials `admin:pass`."""
    with running_bridge(
        tmp_path, cht_url=cht_url.replace("http://", "http://admin:pass@"), **env
    ) as bridge:
        yield bridge


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(http: httpx.Client, name: str, password: str) -> httpx.Response:
    """Sign in through the form (a fresh form each time); the answer, not followed."""
    form = http.get("/console/login")
    return http.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "name": name, "password": password, "next": ""},
    )


def dead_letter(
    bridge: RunningBridge, *, sender: str = PATIENT, text: str = TEXT
) -> tuple[str, int]:
    """An inbound SMS whose submit task gave up: (its uuid, the task id)."""
    now = bridge.clock()

    def job(conn: Any) -> tuple[str, int]:
        uuid = inbound.insert_message_in(conn, "generic", None, sender, None, text, 0, now)
        task = tasks.claim_in(conn, [inbound.SUBMIT], now, 30)
        assert task is not None and task.ref == uuid
        tasks.give_up_in(conn, task, "gave up after 12 attempts: CHT unreachable", now)
        inbound.mark_dead_in(conn, uuid, "CHT unreachable")
        return uuid, task.id

    return bridge.store.write_sync(job)


def client(bridge: RunningBridge) -> httpx.Client:
    return httpx.Client(base_url=bridge.url, timeout=10, follow_redirects=False)
