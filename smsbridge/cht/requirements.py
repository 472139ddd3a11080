"""What CHT's own configuration must say for the bridge to work, and what to change when it
does not (`smsbridge check-config` and /readyz read these):

- `app_settings.sms.outgoing_service` must be `medic-gateway` (or `sms` absent, CHT's default):
  otherwise CHT's `/api/sms` hands out no outgoing message and they stay `pending` in CHT;
- the bridge's CHT user needs the `can_access_gateway_api` permission: one of its roles, itself
  listed in `app_settings.roles`, must be in `app_settings.permissions.can_access_gateway_api`
  (DB admins, `_admin`, pass every permission check).

`cht_findings` asks a live CHT (`smsbridge check-config`); /readyz judges the outgoing service
from the settings it last read (smsbridge/web/app.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from smsbridge.errors import AuthFailure, PeerError
from smsbridge.settings import Settings

GATEWAY_SERVICE = "medic-gateway"
GATEWAY_PERMISSION = "can_access_gateway_api"


def outgoing_service_problem(app_settings: Mapping[str, Any]) -> str | None:
    """Why CHT gives the bridge no outgoing SMS, or None when it does."""
    if "sms" not in app_settings:
        return None  # CHT's default is medic-gateway
    sms = app_settings.get("sms")
    service = sms.get("outgoing_service") if isinstance(sms, Mapping) else None
    if service == GATEWAY_SERVICE:
        return None
    now = "is missing" if service is None else f"is {json.dumps(service)}"
    return (
        f'CHT\'s app_settings `sms.outgoing_service` {now}, not "{GATEWAY_SERVICE}": CHT hands '
        "no outgoing SMS to the bridge (they stay pending in CHT). In CHT's app_settings "
        f'(app_settings.json, uploaded with cht-conf) set "sms": {{"outgoing_service": '
        f'"{GATEWAY_SERVICE}"}}'
    )


def permission_problem(
    user: str, roles: Sequence[str], app_settings: Mapping[str, Any]
) -> str | None:
    """Why CHT refuses `user` (with `roles`) the gateway API, or None when CHT would let it
    in, by CHT's rule: roles not in `app_settings.roles` do not count."""
    if "_admin" in roles:
        return None
    configured = app_settings.get("roles")
    known = set(configured) if isinstance(configured, Mapping) else set()
    listed = app_settings.get("permissions", {})
    granted = listed.get(GATEWAY_PERMISSION) if isinstance(listed, Mapping) else None
    granted = [str(r) for r in granted] if isinstance(granted, list) else []
    counted = [r for r in roles if r in known]
    if any(r in granted for r in counted):
        return None
    who = f"CHT user {user!r} (roles: {', '.join(roles) or 'none'})"
    fix = (
        f"lacks the `{GATEWAY_PERMISSION}` permission, so CHT answers its /api/sms with 403. "
        f"In CHT's app_settings add one of its roles to `permissions.{GATEWAY_PERMISSION}` "
        f"(now: {', '.join(granted) or 'no role'})"
    )
    if granted:
        fix += f", or give the user a role that has it ({', '.join(granted)})"
    uncounted = [r for r in roles if r not in known]
    if uncounted:
        fix += (
            f"; note that {', '.join(uncounted)} {'is' if len(uncounted) == 1 else 'are'} not "
            "in app_settings `roles`, and CHT ignores roles it does not list"
        )
    return f"{who} {fix}"


# -- asking CHT (smsbridge check-config) ---------------------------------------------------------

CHECK_TIMEOUT = 10.0
"""Seconds each CHT call of the check may take (at most SMSBRIDGE_CHT_TIMEOUT)."""


async def cht_findings(settings: Settings) -> tuple[list[str], list[str]]:
    """(problems, warnings) of CHT's configuration for the bridge, asked of CHT itself: our
    credentials (one login at most: far from CHT's lockout), the gateway permission and
    `sms.outgoing_service`. CHT unreachable is a warning: nothing could be checked."""
    from smsbridge.cht.client import ChtClient

    credentials = settings.cht_credentials
    user = credentials[0] if credentials else "(none)"
    timeout = min(settings.cht_timeout, CHECK_TIMEOUT)
    async with ChtClient(settings.cht_base_url, credentials, timeout=timeout) as cht:
        forbidden = False
        try:
            await cht.check_auth()  # GET /api/sms: needs the credentials and the permission
        except AuthFailure as exc:
            return [
                f"SMSBRIDGE_CHT_URL: CHT refused the credentials of user {user!r} "
                f"({exc.detail or exc.code}): check the user name and password"
            ], []
        except PeerError as exc:
            if exc.status != 403:
                return [], [
                    f"CHT at {settings.cht_base_url} did not answer as expected "
                    f"({exc.detail or exc.code}): its settings were not checked"
                ]
            forbidden = True
        try:
            app_settings: dict[str, Any] | None = await cht.app_settings()
        except PeerError as exc:
            app_settings = None
            unread = f"could not read CHT's settings ({exc.detail or exc.code})"
        problems: list[str] = []
        problem = outgoing_service_problem(app_settings) if app_settings is not None else None
        if problem:
            problems.append(problem)
        if forbidden:
            explained = None
            if app_settings is not None:
                try:
                    name, roles = await cht.session_roles()
                except PeerError:
                    name, roles = user, []
                explained = permission_problem(name or user, roles, app_settings)
            problems.append(
                explained
                or f"CHT user {user!r} lacks the `{GATEWAY_PERMISSION}` permission (CHT answers "
                f"its /api/sms with 403): in CHT's app_settings add one of its roles to "
                f"`permissions.{GATEWAY_PERMISSION}`"
            )
        return problems, [] if app_settings is not None else [unread]
