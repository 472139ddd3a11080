"""The medic database as CHT's API proxies it to an online user (tests/chtsim/test_medic_db.py).

CHT makes every configured role a member of the medic database and passes an online user's
reads straight to CouchDB, so such a user can read documents and query views:

- `GET /medic/{id}`: a document (404 `not_found` when there is none);
- `GET /medic/_all_docs` with `startkey`/`endkey` (or `start_key`/`end_key`), `key`,
  `inclusive_end`, `include_docs` (JSON-encoded values, as CouchDB reads them);
- `GET /medic/_design/medic-sms/_view/messages_by_gateway_ref` with `key`: the view CHT's
  `/api/sms` de-duplicates with. It emits `sms_message.gateway_ref` of incoming data records and
  `gateway_ref` of outgoing tasks (value: the message's uuid); the row's id is the document's.

Offline users are refused views (CHT's offline firewall: 403); for documents and `_all_docs`
CHT filters what they may replicate, which here is the translation documents only.

The translation documents are `messages-<code>` (`type: translations`, `code`, `generic`), one
per locale that `POST /_sim/translations` set; CHT builds its translation tables from them at
start-up, and the simulator's own services read them through the same loader.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smsbridge.chtsim.responses import ChtHttpError, json_response
from smsbridge.smsparser.translate import load_translations

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim
    from smsbridge.chtsim.state import SimState

TRANSLATIONS_PREFIX = "messages-"
GATEWAY_REF_VIEW = "/medic/_design/medic-sms/_view/messages_by_gateway_ref"


def translation_docs(state: SimState) -> list[dict[str, Any]]:
    """The `messages-<code>` documents holding the simulator's translations."""
    docs = []
    for code, table in sorted(state.translations.items()):
        doc: dict[str, Any] = {
            "_id": f"{TRANSLATIONS_PREFIX}{code}",
            "type": "translations",
            "code": code,
            "name": code,
            "enabled": True,
            "generic": dict(table),
        }
        digest = hashlib.md5(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        docs.append({**doc, "_rev": f"1-{digest}"})
    return docs


def translation_tables(state: SimState) -> dict[str, dict[str, Any]]:
    """The translation tables CHT's services use, loaded from the documents as CHT loads them."""
    return load_translations(translation_docs(state))


def _param(request: Request, *names: str) -> Any:
    for name in names:
        raw = request.query_params.get(name)
        if raw is not None:
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise ChtHttpError(
                    400, "bad_request", f"invalid JSON in {name}", always_json=True
                ) from exc
    return None


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    return default if raw is None else raw == "true"


def _visible_docs(sim: ChtSim, request: Request) -> dict[str, dict[str, Any]]:
    ctx = sim.auth.require(request)
    with sim.state.lock:
        translations = {d["_id"]: d for d in translation_docs(sim.state)}
        if not sim.auth.is_online(ctx):
            return translations
        return {**sim.state.docs, **translations}


async def get_doc(sim: ChtSim, request: Request) -> Response:
    doc = _visible_docs(sim, request).get(request.path_params["doc_id"])
    if doc is None:  # CouchDB's own answer, passed through by CHT
        return json_response({"error": "not_found", "reason": "missing"}, 404)
    return json_response(doc)


async def all_docs(sim: ChtSim, request: Request) -> Response:
    docs = _visible_docs(sim, request)
    start = _param(request, "startkey", "start_key")
    end = _param(request, "endkey", "end_key")
    key = _param(request, "key")
    inclusive_end = _flag(request, "inclusive_end", True)
    include_docs = _flag(request, "include_docs", False)
    rows = []
    for doc_id in sorted(docs):
        if key is not None and doc_id != key:
            continue
        if isinstance(start, str) and doc_id < start:
            continue
        if isinstance(end, str) and (doc_id > end or (doc_id == end and not inclusive_end)):
            continue
        doc = docs[doc_id]
        row: dict[str, Any] = {"id": doc_id, "key": doc_id, "value": {"rev": doc.get("_rev")}}
        if include_docs:
            row["doc"] = doc
        rows.append(row)
    return json_response({"total_rows": len(docs), "offset": 0, "rows": rows})


def _gateway_ref_rows(doc: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """(key, value) pairs the messages_by_gateway_ref view emits for `doc`."""
    for list_name in ("tasks", "scheduled_tasks"):
        tasks = doc.get(list_name)
        for task in tasks if isinstance(tasks, list) else []:
            if not isinstance(task, dict) or not isinstance(task.get("messages"), list):
                continue
            for message in task["messages"]:
                if task.get("gateway_ref"):
                    uuid = message.get("uuid") if isinstance(message, dict) else None
                    yield task["gateway_ref"], uuid
    sms = doc.get("sms_message")
    if doc.get("type") == "data_record" and isinstance(sms, dict) and sms.get("gateway_ref"):
        yield sms["gateway_ref"], sms.get("uuid")


async def messages_by_gateway_ref(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request, online=True)
    key = _param(request, "key")
    include_docs = _flag(request, "include_docs", False)
    with sim.state.lock:
        docs = list(sim.state.docs.values())
    rows = []
    total = 0
    for doc in docs:
        for ref, uuid in _gateway_ref_rows(doc):
            total += 1
            if key is not None and ref != key:
                continue
            row: dict[str, Any] = {"id": doc["_id"], "key": ref, "value": uuid}
            if include_docs:
                row["doc"] = doc
            rows.append(row)
    rows.sort(key=lambda r: (json.dumps(r["key"]), r["id"]))
    return json_response({"total_rows": total, "offset": 0, "rows": rows})
