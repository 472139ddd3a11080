"""The synchronous transitions the simulator runs on a new data record before saving it.

- `update_clinics` (when `settings.transitions.update_clinics` is on): the sender's contact by
  `refid` (forms with `facility_reference`, matched on a contact's `rc_code`) or else by the
  exact `from` (first match only). Not found: `sys.facility_not_found`, plus a reply to the
  sender for a known form that is not `public_form: true`.
- `default_responses` (when on): a record with errors gets its first error message as a reply.
- Auto replies (simulator-only, `ChtSim.set_auto_reply`): a form code -> a reply template sent
  to the sender of every error-free report of that form, e.g.
  `"Thank you {{contact.name}}, {{patient_name}} is registered."`.
Replies are tasks in state `pending` (or `denied` / `duplicate`, messaging.new_task).
"""

from __future__ import annotations

import re
from typing import Any

from smsbridge.chtsim.contacts import find_by_phone
from smsbridge.chtsim.medic_db import translation_tables
from smsbridge.chtsim.messaging import DuplicateGuard, new_task
from smsbridge.chtsim.records import translate
from smsbridge.chtsim.state import SimState


def _enabled(value: Any) -> bool:
    if isinstance(value, dict):
        return not value.get("disable")
    return bool(value)


def render(template: str, context: dict[str, Any]) -> str:
    """`{{a.b}}` interpolation from nested dicts; unknown names render empty."""

    def fill(match: re.Match[str]) -> str:
        value: Any = context
        for part in match.group(1).strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else str(value)

    return re.sub(r"{{([\s\S]+?)}}", fill, template)


def _locale(state: SimState, doc: dict[str, Any]) -> str:
    sms = doc.get("sms_message") or {}
    return str(sms.get("locale") or state.settings.get("locale") or "en")


def _reply(
    state: SimState, guard: DuplicateGuard, doc: dict[str, Any], text: str, now_ms: int
) -> None:
    to = doc.get("from")
    if isinstance(to, str) and to and text:
        doc.setdefault("tasks", []).append(new_task(state, guard, to, text, now_ms))


def update_clinics(
    state: SimState, guard: DuplicateGuard, doc: dict[str, Any], now_ms: int
) -> None:
    if doc.get("contact"):
        return
    forms = state.settings.get("forms") or {}
    form_def = forms.get(doc.get("form")) if isinstance(doc.get("form"), str) else None
    contact = None
    if form_def and form_def.get("facility_reference") and doc.get("refid"):
        with state.lock:
            contact = next(
                (c for c in state.contacts.values() if c.get("rc_code") == doc["refid"]), None
            )
    elif isinstance(doc.get("from"), str):
        matches = find_by_phone(state, doc["from"])
        contact = matches[0] if matches else None
    if contact is not None:
        doc["contact"] = state.minify(contact["_id"])
        return
    message = translate(translation_tables(state), "sys.facility_not_found", _locale(state, doc))
    doc.setdefault("errors", []).append({"code": "sys.facility_not_found", "message": message})
    if form_def is not None and form_def.get("public_form") is not True:
        _reply(state, guard, doc, message, now_ms)


def run_transitions(
    state: SimState, guard: DuplicateGuard, doc: dict[str, Any], now_ms: int
) -> None:
    transitions = state.settings.get("transitions") or {}
    if _enabled(transitions.get("update_clinics")):
        update_clinics(state, guard, doc, now_ms)
    errors = doc.get("errors") or []
    if errors and _enabled(transitions.get("default_responses")) and not doc.get("tasks"):
        _reply(state, guard, doc, str(errors[0].get("message") or ""), now_ms)
    template = state.auto_replies.get(str(doc.get("form")))
    if template and not errors:
        contact = state.contacts.get((doc.get("contact") or {}).get("_id", ""), {})
        context = {**(doc.get("fields") or {}), "contact": contact, "form": doc.get("form")}
        _reply(state, guard, doc, render(template, context), now_ms)
