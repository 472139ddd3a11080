"""What an operator does from the console: retry or drop a dead letter, release or drop an SMS
the loop guard held. Each first shows a confirmation page (`GET /console/confirm`) whose form
(with the session's CSRF token) does it (`POST /console/act`). The change and its audit entry
are one transaction, through the owner modules' `*_in` functions (tasks.py,
outbound/messages.py) that `smsbridge outbox retry|drop|release` uses too."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from smsbridge import tasks
from smsbridge.inbound import messages as inbound
from smsbridge.outbound import messages as outgoing
from smsbridge.service import Service
from smsbridge.tasks import Task
from smsbridge.web.console import audit
from smsbridge.web.console.core import Console
from smsbridge.web.console.session import PATH, Session


@dataclass(frozen=True)
class Action:
    name: str
    on_task: bool  # a dead letter (by task id), else a held SMS (by ref)
    question: str
    button: str
    done: str


ACTIONS = {
    a.name: a
    for a in (
        Action(
            audit.RETRY, True, "Try this dead letter again now, from a fresh start?",
            "Yes, retry", "queued again",
        ),
        Action(
            audit.DROP, True, "Drop this dead letter for good? An SMS not yet sent is "
            "failed (\"dropped\") and CHT hears so.", "Yes, drop it", "dropped",
        ),
        Action(
            audit.RELEASE, False, "Release this held SMS? It is queued to send, and the loop "
            "guard will not hold it again.", "Yes, release", "released: queued to send",
        ),
        Action(
            audit.DROP_HELD, False, "Drop this held SMS? It is failed (\"held: dropped\") and "
            "never sent.", "Yes, drop it", "dropped",
        ),
    )
}  # fmt: skip


def _page_of(task: Task) -> str:
    if task.kind == outgoing.SEND:
        return f"{PATH}/outgoing/{quote(task.ref, safe='')}"
    if task.kind == inbound.SUBMIT:
        return f"{PATH}/inbound/{quote(task.ref, safe='')}"
    return f"{PATH}/queue"


def _dead_letter(service: Service, raw: object) -> Task | None:
    text = str(raw or "")
    task = service.tasks.get(int(text)) if text.isdigit() else None
    return task if task is not None and task.state == "dead" else None


async def confirm(console: Console, request: Request, session: Session) -> Response:
    service: Service | None = request.app.state.service
    action = ACTIONS.get(request.query_params.get("action", ""))
    if service is None or action is None:
        return console.refused(request, session, "No such action.")
    task, sms = None, None
    if action.on_task:
        task = _dead_letter(service, request.query_params.get("task"))
        if task is None:
            return console.refused(request, session, "That is not a dead letter (any more).")
    else:
        sms = outgoing.get(service.store, request.query_params.get("ref", ""))
        if sms is None or sms.state.value != "held":
            return console.refused(request, session, "That is not a held SMS (any more).")
    return console.render(
        request, "confirm.html", session, title="Confirm", action=action, task=task, sms=sms
    )


async def act(console: Console, request: Request, session: Session) -> Response:
    service: Service | None = request.app.state.service
    form = await request.form()
    action = ACTIONS.get(str(form.get("action") or ""))
    if service is None or action is None:
        return console.refused(request, session, "No such action.")
    now, user = console.clock(), session.user
    if action.on_task:
        task = _dead_letter(service, form.get("task"))
        if task is None:
            return console.refused(request, session, "That is not a dead letter (any more).")
        dead = task

        def on_task(conn: sqlite3.Connection) -> bool:
            if action.name == audit.RETRY:
                ok = tasks.retry_dead_in(conn, dead.id, now)
            else:
                ok = outgoing.drop_dead_in(conn, dead.id, now) is not None
            audit.record_in(
                conn, now, user, action.name, "task", str(dead.id), message=dead.ref,
                outcome="done" if ok else "changed meanwhile",
            )  # fmt: skip
            return ok

        ok = await service.store.write(on_task)
        if ok and action.name == audit.RETRY and task.kind == inbound.SUBMIT:
            service.inbound_wakeup.set()
        target = _page_of(task)
    else:
        ref = str(form.get("ref") or "")
        change = outgoing.release_held_in if action.name == audit.RELEASE else outgoing.drop_held_in

        def on_sms(conn: sqlite3.Connection) -> bool:
            ok = change(conn, ref, now)
            audit.record_in(
                conn, now, user, action.name, "outgoing", ref, message=ref,
                outcome="done" if ok else "changed meanwhile",
            )  # fmt: skip
            return ok

        ok = await service.store.write(on_sms)
        target = f"{PATH}/outgoing/{quote(ref, safe='')}"
    done = action.done if ok else "changed meanwhile: nothing done"
    return RedirectResponse(f"{target}?done={quote(done)}", status_code=303)
