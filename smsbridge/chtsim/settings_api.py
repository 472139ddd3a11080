"""Settings, forms and sessions: `GET /api/v1/settings`, `GET /api/v1/forms[/{id}.xml]`,
`POST|GET|DELETE /_session`, and the login page that CHT's 302 points at."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from smsbridge.chtsim.bodies import form_body, is_json, is_urlencoded, json_body
from smsbridge.chtsim.responses import ChtHttpError, NotLoggedIn, json_response

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

LOGIN_PAGE = "<!DOCTYPE html><html><body><form>CHT login (simulated)</form></body></html>"


async def get_settings(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request, basic_prompt=True)
    with sim.state.lock:
        return json_response(sim.state.settings)


async def list_forms(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request)
    names = sorted(f"{name}.xml" for name in sim.state.xforms)
    if "x-openrosa-version" in request.headers:
        items = "".join(
            f"<xform><name>{n}</name><formID>{n}</formID>"
            f"<downloadUrl>{request.base_url}api/v1/forms/{n}.xml</downloadUrl></xform>"
            for n in sorted(sim.state.xforms)
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<xforms xmlns="http://openrosa.org/xforms/xformsList">{items}</xforms>'
        )
        return Response(
            xml, media_type="text/xml; charset=utf-8", headers={"X-OpenRosa-Version": "1.0"}
        )
    return json_response(names)


async def get_form(sim: ChtSim, request: Request) -> Response:
    sim.auth.require(request)
    name = request.path_params["name"]
    form_id, dot, form_format = name.rpartition(".")
    if not dot:
        form_id, form_format = name, ""
    if form_format != "xml":
        raise ChtHttpError(400, f'Invalid file format (format="{form_format}")')
    if not form_id:
        raise ChtHttpError(400, "Invalid form id")
    xml = sim.state.xforms.get(form_id)
    if xml is None:
        raise ChtHttpError(404, f"Form not found: {form_id} (xml)")
    return Response(xml, media_type="application/xml")


async def post_session(sim: ChtSim, request: Request) -> Response:
    if is_urlencoded(request):
        body = await form_body(request)
    elif is_json(request):
        body = await json_body(request)
    else:
        body = {}
    body = body if isinstance(body, dict) else {}
    name, password = body.get("name"), body.get("password")
    token = sim.auth.login(name, password)
    if token is None:
        raise NotLoggedIn()
    user = sim.state.users[str(name)]
    response = json_response({"ok": True, "name": user.name, "roles": user.roles})
    response.set_cookie(
        "AuthSession", token, max_age=31536000, path="/", httponly=True, samesite=None
    )
    return response


async def get_session(sim: ChtSim, request: Request) -> Response:
    ctx = sim.auth.user_ctx(request)
    user: dict[str, Any] = {
        "name": ctx.name if ctx else None,
        "roles": list(ctx.roles) if ctx else [],
    }
    return json_response({"ok": True, "userCtx": user})


async def delete_session(sim: ChtSim, request: Request) -> Response:
    token = request.cookies.get("AuthSession")
    if token:
        sim.auth.sessions.pop(token, None)
    response = json_response({"ok": True})
    response.delete_cookie("AuthSession", path="/")
    return response


async def login_page(sim: ChtSim, request: Request) -> Response:
    return HTMLResponse(LOGIN_PAGE)
