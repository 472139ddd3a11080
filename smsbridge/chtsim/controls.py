"""Test controls over HTTP, under `/_sim/` (no authentication; never faulted or counted).

Fixed shapes (outside checks rely on them):
- `GET /_sim/records`: JSON array of every stored report and incoming message doc, oldest first.
- `GET /_sim/messages`: JSON array of every outgoing message:
  `{"id", "to", "content", "state", "state_history": [{"state", "timestamp"}...], "due",
  "doc_id", "scheduled", ["state_details"], ["gateway_ref"]}`.
- `POST /_sim/messages` `{"messages": [{"to": "+254…", "content": "…"}]}`: seeds outgoing
  messages, state `pending`, due now (optional per message: `state`, `due`, `scheduled`, `id`);
  answers `{"ok": true, "messages": [<each as GET shows it>]}`.

Others: `GET /_sim/messages/{id}`, `GET /_sim/requests` (counts per "METHOD /path"),
`POST|DELETE /_sim/faults`, `POST /_sim/latency`, `POST /_sim/conflicts`, `POST /_sim/starting`,
`POST /_sim/monitoring`, `GET|PUT|PATCH /_sim/settings`, `POST /_sim/forms`,
`POST /_sim/translations`, `POST /_sim/users`, `POST /_sim/sessions/revoke`,
`POST /_sim/contacts`, `POST /_sim/auto-replies`, `POST /_sim/sentinel`, `POST /_sim/reset`,
`GET /_sim/state`.

`POST /_sim/translations` `{"<locale>": {"<key>": "<text>"}}` merges into the translation
tables, which CHT's routes serve as the `messages-<locale>` documents
(smsbridge/chtsim/medic_db.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim


class _Bad(Exception):
    pass


async def _json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _Bad(f"invalid JSON: {exc}") from exc


def _object(value: Any, name: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{name} must be a JSON object")
    return value


def routes(sim: ChtSim) -> list[Route]:
    async def get_records(request: Request) -> Response:
        return JSONResponse(sim.records())

    async def get_messages(request: Request) -> Response:
        return JSONResponse(sim.messages())

    async def get_message(request: Request) -> Response:
        try:
            return JSONResponse(sim.message(request.path_params["id"]))
        except KeyError:
            return JSONResponse({"error": "not_found", "detail": "no such message"}, 404)

    async def post_messages(request: Request) -> Response:
        items = _object(await _json(request)).get("messages")
        if not isinstance(items, list):
            raise _Bad('expected {"messages": [{"to": ..., "content": ...}]}')
        ids = []
        for item in items:
            item = _object(item, "each message")
            if not isinstance(item.get("to"), str) or not isinstance(item.get("content"), str):
                raise _Bad("each message needs string `to` and `content`")
            ids.append(
                sim.add_outgoing(
                    item["to"],
                    item["content"],
                    state=item.get("state", "pending"),
                    due=item.get("due"),
                    scheduled=bool(item.get("scheduled", False)),
                    message_id=item.get("id"),
                )
            )
        sim.changed()
        return JSONResponse({"ok": True, "messages": [sim.message(i) for i in ids]})

    async def get_requests(request: Request) -> Response:
        with sim.faults.lock:
            return JSONResponse(dict(sim.faults.counts))

    async def post_faults(request: Request) -> Response:
        try:
            sim.faults.arm(_object(await _json(request)))
        except (TypeError, ValueError) as exc:
            raise _Bad(str(exc)) from exc
        return JSONResponse({"ok": True})

    async def delete_faults(request: Request) -> Response:
        sim.faults.clear()
        return JSONResponse({"ok": True})

    async def post_latency(request: Request) -> Response:
        body = _object(await _json(request))
        sim.faults.latency(float(body.get("seconds", 0)), path=body.get("path"))
        return JSONResponse({"ok": True})

    async def post_conflicts(request: Request) -> Response:
        sim.faults.conflict_next(int(_object(await _json(request)).get("times", 1)))
        return JSONResponse({"ok": True})

    async def post_starting(request: Request) -> Response:
        sim.faults.starting = bool(_object(await _json(request)).get("on", True))
        return JSONResponse({"ok": True})

    async def post_monitoring(request: Request) -> Response:
        body = _object(await _json(request))
        if "broken" in body:
            sim.faults.monitoring_broken = bool(body["broken"])
        if "sentinel_backlog" in body:
            sim.set_sentinel_backlog(int(body["sentinel_backlog"]))
        return JSONResponse({"ok": True})

    async def get_settings(request: Request) -> Response:
        return JSONResponse(sim.state.settings)

    async def put_settings(request: Request) -> Response:
        sim.set_settings(_object(await _json(request)), merge=request.method == "PATCH")
        sim.changed()
        return JSONResponse({"ok": True})

    async def post_forms(request: Request) -> Response:
        sim.set_forms(_object(await _json(request)))
        sim.changed()
        return JSONResponse({"ok": True})

    async def post_translations(request: Request) -> Response:
        sim.set_translations(_object(await _json(request)))
        sim.changed()
        return JSONResponse({"ok": True})

    async def post_users(request: Request) -> Response:
        body = _object(await _json(request))
        if not isinstance(body.get("name"), str) or not isinstance(body.get("password"), str):
            raise _Bad('expected {"name", "password", "roles"}')
        sim.add_user(body["name"], body["password"], body.get("roles") or ["gateway"])
        sim.changed()
        return JSONResponse({"ok": True})

    async def post_revoke(request: Request) -> Response:
        sim.revoke_sessions(_object(await _json(request)).get("name"))
        return JSONResponse({"ok": True})

    async def post_contacts(request: Request) -> Response:
        docs = _object(await _json(request)).get("contacts")
        if not isinstance(docs, list):
            raise _Bad('expected {"contacts": [docs]}')
        stored = [sim.add_contact(_object(doc, "each contact")) for doc in docs]
        sim.changed()
        return JSONResponse({"ok": True, "contacts": stored})

    async def post_auto_replies(request: Request) -> Response:
        for form, template in _object(await _json(request)).items():
            sim.set_auto_reply(form, template)
        sim.changed()
        return JSONResponse({"ok": True})

    async def post_sentinel(request: Request) -> Response:
        body = _object(await _json(request))
        moved = sim.run_sentinel(body.get("now"))
        sim.changed()
        return JSONResponse({"ok": True, "moved": moved})

    async def post_reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"ok": True})

    async def get_state(request: Request) -> Response:
        return JSONResponse(sim.state.to_json())

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/_sim/records", get_records, ["GET"]),
        ("/_sim/messages", get_messages, ["GET"]),
        ("/_sim/messages", post_messages, ["POST"]),
        ("/_sim/messages/{id}", get_message, ["GET"]),
        ("/_sim/requests", get_requests, ["GET"]),
        ("/_sim/faults", post_faults, ["POST"]),
        ("/_sim/faults", delete_faults, ["DELETE"]),
        ("/_sim/latency", post_latency, ["POST"]),
        ("/_sim/conflicts", post_conflicts, ["POST"]),
        ("/_sim/starting", post_starting, ["POST"]),
        ("/_sim/monitoring", post_monitoring, ["POST"]),
        ("/_sim/settings", get_settings, ["GET"]),
        ("/_sim/settings", put_settings, ["PUT", "PATCH"]),
        ("/_sim/forms", post_forms, ["POST"]),
        ("/_sim/translations", post_translations, ["POST"]),
        ("/_sim/users", post_users, ["POST"]),
        ("/_sim/sessions/revoke", post_revoke, ["POST"]),
        ("/_sim/contacts", post_contacts, ["POST"]),
        ("/_sim/auto-replies", post_auto_replies, ["POST"]),
        ("/_sim/sentinel", post_sentinel, ["POST"]),
        ("/_sim/reset", post_reset, ["POST"]),
        ("/_sim/state", get_state, ["GET"]),
    ]

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (_Bad, TypeError, ValueError, KeyError) as exc:
                return JSONResponse({"error": "bad_request", "detail": str(exc)}, 400)

        return endpoint

    return [Route(path, guarded(handler), methods=methods) for path, handler, methods in table]
