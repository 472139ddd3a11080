"""The console over plain HTTP (no browser): sessions, CSRF, the failed-login limit, audit
rows, masking, and the SMS text only on its own page. The browser tests are test_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smsbridge.chtsim import ChtSim
from smsbridge.web.console import audit
from tests.conftest import RunningBridge
from tests.web.console.helpers import (
    ADMIN,
    CHW,
    PATIENT,
    TEXT,
    add_accounts,
    client,
    console_bridge,
    csrf_of,
    dead_letter,
    sign_in,
)


@pytest.fixture
def bridge(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> Iterator[RunningBridge]:
    sim, url = chtsim
    add_accounts(sim)
    with console_bridge(tmp_path, url) as running:
        yield running


def test_pages_send_whoever_has_no_session_to_sign_in(bridge: RunningBridge) -> None:
    with client(bridge) as http:
        for path in ("/console/", "/console/messages", "/console/queue", "/console/settings"):
            answer = http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/login?next=")
        uuid, task = dead_letter(bridge)
        refused = http.post("/console/act", data={"action": "retry", "task": str(task)})
        assert refused.status_code == 403
        assert http.get(f"/console/inbound/{uuid}").status_code == 303
    assert bridge.service.tasks.get(task).state == "dead"


def test_a_session_is_a_signed_httponly_strict_cookie_that_expires(bridge: RunningBridge) -> None:
    with client(bridge) as http:
        answer = sign_in(http, *ADMIN)
        assert answer.status_code == 303
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("smsbridge_console=")
        )
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
        assert "max-age=28800" in flags
        assert ADMIN[1] not in cookie
        assert http.get("/console/").status_code == 200
        bridge.clock.advance(28801)  # the signed expiry counts, not only the browser's
        assert http.get("/console/").status_code == 303


def test_a_forged_session_is_refused(bridge: RunningBridge) -> None:
    with client(bridge) as http:
        sign_in(http, *ADMIN)
        value = http.cookies["smsbridge_console"]
        body, mac = value.split(".")
        http.cookies.set("smsbridge_console", body[:-2] + "xx." + mac, path="/console")
        assert http.get("/console/").status_code == 303


def test_an_account_without_an_admin_role_is_refused(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> None:
    sim, url = chtsim
    add_accounts(sim)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with console_bridge(tmp_path / "a", url) as bridge, client(bridge) as http:
        answer = sign_in(http, *CHW)
        assert answer.status_code == 403
        assert "may not use the console" in answer.text
        assert "smsbridge_console=" not in answer.headers.get("set-cookie", "")
    with (
        console_bridge(tmp_path / "b", url, SMSBRIDGE_CONSOLE_ROLES="CHW") as bridge,
        client(bridge) as http,
    ):
        assert sign_in(http, *CHW).status_code == 303  # a role named in the setting


def test_wrong_passwords_lock_the_name_out_with_backoff(bridge: RunningBridge) -> None:
    with client(bridge) as http:
        for _ in range(5):
            assert sign_in(http, ADMIN[0], "wrong").status_code == 401
        locked = sign_in(http, *ADMIN)  # even the right password waits now
        assert locked.status_code == 429
        assert "Too many wrong passwords" in locked.text
        assert locked.headers["retry-after"] == "1"  # the first lock-out lasts 1 s
        bridge.clock.advance(1.5)
        assert sign_in(http, *ADMIN).status_code == 303


def test_every_post_needs_the_sessions_csrf_token(bridge: RunningBridge) -> None:
    _uuid, task = dead_letter(bridge)
    with client(bridge) as http:
        sign_in(http, *ADMIN)
        stale = csrf_of(http.get(f"/console/confirm?action=retry&task={task}").text)
        http.post("/console/logout", data={"csrf": stale})
        sign_in(http, *ADMIN)
        for token in ("", "made-up", stale):
            answer = http.post(
                "/console/act", data={"csrf": token, "action": "retry", "task": task}
            )
            assert answer.status_code == 403, token
        assert bridge.service.tasks.get(task).state == "dead"
        login = http.post("/console/login", data={"csrf": "x", "name": ADMIN[0], "password": "p"})
        assert login.status_code == 403


def test_a_retry_is_audited_with_who_and_when_and_shown_on_the_page(bridge: RunningBridge) -> None:
    uuid, task = dead_letter(bridge)
    with client(bridge) as http:
        sign_in(http, *ADMIN)
        confirm = http.get(f"/console/confirm?action=retry&task={task}")
        assert bridge.service.tasks.get(task).state == "dead"  # asking changes nothing
        done = http.post(
            "/console/act", data={"csrf": csrf_of(confirm.text), "action": "retry", "task": task}
        )
        assert done.status_code == 303
        assert bridge.service.tasks.get(task).state == "ready"
        page = http.get(done.headers["location"]).text
    entries = audit.for_message(bridge.store, uuid)
    actions = [(e.actor, e.action, e.target, e.ref, e.outcome) for e in entries]
    assert (ADMIN[0], "retry", "task", str(task), "done") in actions
    assert all(e.at == bridge.clock() for e in entries)
    assert "queued again" in page and f"#{task}" in page


def test_the_text_is_shown_only_on_its_page_and_each_view_is_audited(
    bridge: RunningBridge,
) -> None:
    uuid, _task = dead_letter(bridge)
    with client(bridge) as http:
        sign_in(http, *ADMIN)
        listing = http.get("/console/messages").text
        assert uuid in listing
        assert TEXT not in listing
        assert PATIENT not in listing and PATIENT[:5] in listing  # masked
        for path in ("/console/", "/console/queue"):
            assert TEXT not in http.get(path).text
        assert not [e for e in audit.for_message(bridge.store, uuid) if e.action == "viewed"]
        page = http.get(f"/console/inbound/{uuid}").text
        assert TEXT in page and PATIENT not in page
    views = [e for e in audit.for_message(bridge.store, uuid) if e.action == "viewed"]
    assert [(e.actor, e.target) for e in views] == [(ADMIN[0], "inbound")]


def test_the_settings_page_masks_secrets(bridge: RunningBridge) -> None:
    with client(bridge) as http:
        sign_in(http, *ADMIN)
        page = http.get("/console/settings").text
    assert "SMSBRIDGE_TWILIO_AUTH_TOKEN" in page
    assert "12345abcdef" not in page and "admin:pass@" not in page


def test_the_console_can_be_turned_off(tmp_path: Path, chtsim: tuple[ChtSim, str]) -> None:
    with console_bridge(tmp_path, chtsim[1], SMSBRIDGE_CONSOLE="false") as bridge:
        assert bridge.http.get("/console/login").status_code == 404


def test_the_overview_shows_each_channels_breaker(bridge: RunningBridge) -> None:
    channels = bridge.service.outbound.channels
    [channel, *_] = bridge.service.outbound.routes.channels
    with client(bridge) as http:
        assert sign_in(http, *ADMIN).status_code == 303
        page = http.get("/console/").text
        assert f"<td>{channel}</td>" in page and "working" in page
        now = bridge.clock()
        for _ in range(bridge.settings.channel_failures):  # transient failures open it
            channels.failed(channel, now)
        page = http.get("/console/").text
        assert '<span class="bad">open</span>' in page
