"""`ChtSim`: one simulated CHT server — its state, the test-control API and its ASGI app.

    sim = ChtSim()                                   # admin:pass, no forms
    sim.add_user("gateway", "secret", ["gateway"])
    sim.set_forms({"P": {...}})
    with running_chtsim(sim) as url:                 # uvicorn on 127.0.0.1:<free port>
        ...
        sim.records()                                # stored reports, oldest first
        sim.faults.fail_next(2, 503, path="/api/sms")

Every control here is also reachable over HTTP under `/_sim/` (controls.py).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smsbridge.chtsim.auth import Auth
from smsbridge.chtsim.faults import Faults
from smsbridge.chtsim.messaging import DuplicateGuard, iso, run_due_tasks, set_task_state
from smsbridge.chtsim.state import SimState, User, iter_tasks


class ChtSim:
    def __init__(
        self,
        *,
        admin: tuple[str, str] | None = ("admin", "pass"),
        clock: Callable[[], float] = time.time,
        timezone: str = "UTC",
        state_path: Path | None = None,
    ) -> None:
        self.clock = clock
        self.timezone = timezone
        self.state_path = state_path
        self.admin = admin
        self.faults = Faults()
        self.started = time.monotonic()
        self._save_lock = threading.Lock()
        self._app: Any = None
        self._fresh()
        if state_path is not None and state_path.exists():
            self.state.load(state_path)
            if admin is not None:  # --user wins over the admin saved with the state
                self.add_user(admin[0], admin[1], ["_admin"])

    def _fresh(self) -> None:
        self.state = SimState()
        self.auth = Auth(self.state, self.clock)
        self.guard = DuplicateGuard()
        if self.admin is not None:
            self.add_user(self.admin[0], self.admin[1], ["_admin"])

    @property
    def app(self) -> Any:
        """The ASGI app (built once)."""
        if self._app is None:
            from smsbridge.chtsim.app import build_app

            self._app = build_app(self)
        return self._app

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def changed(self) -> None:
        """Called after every change made through HTTP: persist when `state_path` is set."""
        if self.state_path is not None:
            with self._save_lock:
                self.state.save(self.state_path)

    def reset(self) -> None:
        """Forget everything (state, sessions, lockouts, faults, counts); keep the admin."""
        self.faults.clear()
        self.faults.counts.clear()
        with self.state.lock:
            self._fresh()
        self.changed()

    # -- seeding -------------------------------------------------------------------------------

    def set_settings(self, settings: dict[str, Any], *, merge: bool = False) -> None:
        """Replace app_settings (or merge top-level keys with `merge=True`)."""
        with self.state.lock:
            if merge:
                self.state.settings.update(copy.deepcopy(settings))
            else:
                self.state.settings = copy.deepcopy(settings)

    def set_forms(self, forms: dict[str, Any], *, replace: bool = False) -> None:
        with self.state.lock:
            current = {} if replace else dict(self.state.settings.get("forms") or {})
            current.update(copy.deepcopy(forms))
            self.state.settings["forms"] = current

    def set_translations(self, tables: dict[str, dict[str, str]], *, replace: bool = False) -> None:
        with self.state.lock:
            if replace:
                self.state.translations = copy.deepcopy(tables)
            else:
                for locale, table in tables.items():
                    self.state.translations.setdefault(locale, {}).update(table)

    def set_outgoing_service(self, service: str | None) -> None:
        """`sms.outgoing_service`; None removes the key (then /api/sms returns no messages)."""
        with self.state.lock:
            sms = dict(self.state.settings.get("sms") or {})
            if service is None:
                sms.pop("outgoing_service", None)
            else:
                sms["outgoing_service"] = service
            self.state.settings["sms"] = sms

    def add_user(self, name: str, password: str, roles: Iterable[str] = ("gateway",)) -> None:
        with self.state.lock:
            self.state.users[name] = User(name, password, list(roles))

    def set_password(self, name: str, password: str) -> None:
        with self.state.lock:
            self.state.users[name].password = password

    def revoke_sessions(self, name: str | None = None) -> None:
        """Expire AuthSession cookies (all, or one user's): the next call must log in again."""
        self.auth.revoke_sessions(name)

    def add_contact(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Store a place or person. `parent` may be an id (it is minified to the lineage) and
        `contact` an id. Returns the stored doc."""
        return copy.deepcopy(self.state.put_contact(doc))

    def set_credential(self, key: str, value: str) -> None:
        """A secret in CHT's vault, e.g. `africastalking.com:incoming`, `rapidpro:incoming`."""
        with self.state.lock:
            self.state.credentials[key] = value

    def set_auto_reply(self, form: str, template: str | None) -> None:
        """Reply to every error-free report of `form` with `template` (transitions.render)."""
        with self.state.lock:
            if template is None:
                self.state.auto_replies.pop(form, None)
            else:
                self.state.auto_replies[form] = template

    def add_outgoing(
        self,
        to: str,
        content: str,
        *,
        state: str | None = "pending",
        due: int | str | None = None,
        scheduled: bool = False,
        message_id: str | None = None,
    ) -> str:
        """Seed one outgoing message (a `kujua_message` doc with one task, in `tasks` or
        `scheduled_tasks`) in any state (None: no state at all) and due time (epoch ms or ISO;
        default now). Returns the message id (CHT's uuid)."""
        now = self.now_ms()
        message_id = message_id or str(uuid.uuid4())
        task: dict[str, Any] = {
            "messages": [{"uuid": message_id, "to": to, "message": content}],
            "due": iso(now) if due is None else (iso(due) if isinstance(due, int) else due),
        }
        if state is not None:
            set_task_state(task, state, None, now)
        doc = {
            "type": "data_record",
            "kujua_message": True,
            "reported_date": now,
            "tasks": [] if scheduled else [task],
            "scheduled_tasks": [task] if scheduled else [],
        }
        self.state.put_doc(doc)
        return message_id

    def run_sentinel(self, now_ms: int | None = None) -> int:
        """Sentinel's due-task job: scheduled -> pending for tasks now due. Returns how many."""
        return run_due_tasks(self.state, self.now_ms() if now_ms is None else now_ms)

    def set_sentinel_backlog(self, backlog: int) -> None:
        self.state.sentinel_backlog = backlog

    def install_demo(self) -> None:
        from smsbridge.chtsim.demo_data import install_demo

        install_demo(self)

    # -- reading -------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every stored report and incoming message doc, oldest first (not seeded messages)."""
        with self.state.lock:
            return [
                copy.deepcopy(doc)
                for doc in self.state.docs.values()
                if doc.get("type") == "data_record" and not doc.get("kujua_message")
            ]

    def record(self, doc_id: str) -> dict[str, Any]:
        with self.state.lock:
            return copy.deepcopy(self.state.docs[doc_id])

    def messages(self) -> list[dict[str, Any]]:
        """Every outgoing message with `id`, `to`, `content`, `state`, `state_history`, ..."""
        with self.state.lock:
            return [m for doc in self.state.docs.values() for m in _messages_of(doc)]

    def message(self, message_id: str) -> dict[str, Any]:
        with self.state.lock:
            found = self.state.find_task(message_id)
            if found is None:
                raise KeyError(message_id)
            return next(m for m in _messages_of(found[0]) if m["id"] == message_id)

    def states(self, message_id: str) -> list[str]:
        """The message's state history as a list of states (CHT's own tests read this)."""
        return [h["state"] for h in self.message(message_id)["state_history"]]

    def request_count(self, path: str, method: str | None = None) -> int:
        return self.faults.request_count(path, method)


def _messages_of(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for list_name, _index, task in iter_tasks(doc):
        for message in task.get("messages") or []:
            if not isinstance(message, dict) or not message.get("uuid"):
                continue
            item = {
                "id": message["uuid"],
                "to": message.get("to"),
                "content": message.get("message"),
                "state": task.get("state"),
                "state_history": copy.deepcopy(task.get("state_history") or []),
                "due": task.get("due"),
                "doc_id": doc["_id"],
                "scheduled": list_name == "scheduled_tasks",
            }
            for key in ("state_details", "gateway_ref"):
                if key in task:
                    item[key] = copy.deepcopy(task[key])
            yield item


@contextmanager
def running_chtsim(sim: ChtSim | None = None) -> Iterator[str]:
    """Serve `sim` (a fresh one by default) on 127.0.0.1:<free port>; yields its base URL."""
    from smsbridge.loopback import serve_in_thread

    sim = sim if sim is not None else ChtSim()
    with serve_in_thread(sim.app) as url:
        try:
            yield url
        finally:
            sim.faults.clear()


class SimSwitch:
    """An ASGI app serving whichever simulator is plugged in (`switch.sim = ChtSim()`), so one
    uvicorn server can give every test a fresh simulator without a restart."""

    def __init__(self, sim: ChtSim | None = None) -> None:
        self.sim = sim if sim is not None else ChtSim()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.sim.app(scope, receive, send)
