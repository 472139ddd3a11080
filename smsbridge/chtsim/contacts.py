"""Contacts: CHT's phone normalisation, `GET|POST /api/v1/contacts-by-phone` and lineage
hydration.

Only the raw stored `phone` of contacts of the five contact types is indexed, so only contacts
stored in E.164 are found. All matches are returned, each with its parents and their primary
contacts filled in.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.bodies import json_body
from smsbridge.chtsim.responses import json_response, plain_json
from smsbridge.chtsim.state import CONTACT_TYPES, SimState
from smsbridge.phone import normalize

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

BAD_PHONE = "`phone` parameter is required and must be a valid phone number"


def normalize_phone(settings: dict[str, Any], number: Any) -> str | None:
    """`@medic/phone-number.normalize(settings, number)`: E.164, or None when invalid."""
    if not isinstance(number, str) or not number:
        return None
    code = settings.get("default_country_code")
    validation = settings.get("phone_validation")
    return normalize(
        number,
        code if isinstance(code, str | int) and not isinstance(code, bool) else None,
        validation if isinstance(validation, str) else None,
    )


def find_by_phone(state: SimState, phone: str) -> list[dict[str, Any]]:
    """The contacts_by_phone view: exact match on the stored `phone`, ordered by doc id."""
    with state.lock:
        found = [
            doc
            for doc in state.contacts.values()
            if doc.get("type") in CONTACT_TYPES and doc.get("phone") == phone
        ]
    return sorted(found, key=lambda doc: str(doc["_id"]))


def hydrate(state: SimState, doc: dict[str, Any]) -> dict[str, Any]:
    """The doc with its parent chain replaced by full docs, and each place's primary contact
    replaced by the full contact doc (that contact's own lineage left minified)."""
    with state.lock:
        result = copy.deepcopy(doc)
        _hydrate_contact(state, result)
        current = result
        seen = {doc.get("_id")}
        while isinstance(current.get("parent"), dict):
            parent_id = current["parent"].get("_id")
            parent = state.contacts.get(parent_id) if parent_id not in seen else None
            if parent is None:
                break
            seen.add(parent_id)
            full = copy.deepcopy(parent)
            _hydrate_contact(state, full)
            current["parent"] = full
            current = full
        return result


def _hydrate_contact(state: SimState, place: dict[str, Any]) -> None:
    contact = place.get("contact")
    if isinstance(contact, dict) and contact.get("_id") in state.contacts:
        place["contact"] = copy.deepcopy(state.contacts[contact["_id"]])


async def contacts_by_phone(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request, online=True)
    phone = request.query_params.get("phone")
    if phone is None and request.method == "POST":
        body = await json_body(request)
        if isinstance(body, dict):
            phone = body.get("phone")
    normalized = normalize_phone(sim.state.settings, phone)
    if normalized is None:
        return plain_json({"error": "bad_request", "reason": BAD_PHONE}, 400)
    docs = find_by_phone(sim.state, normalized)
    if not docs:
        return plain_json({"error": "not_found", "reason": "no matches found"}, 404)
    return json_response({"ok": True, "docs": [hydrate(sim.state, d) for d in docs]})
