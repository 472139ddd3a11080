"""Who is calling, and may they: CHT's authentication and permission checks.

- Basic auth (ISO-8859-1 or UTF-8 `user:pass`) and `AuthSession` cookies from `POST /_session`.
- `auth.check(req, permission)`: `_admin` passes everything; otherwise the user's roles are first
  filtered to roles configured in `settings.roles`, then one must be listed for the permission.
- The offline-user firewall: users without a configured online role are refused (403).
- The failed-login limiter: requests carrying credentials are keyed by client IP, user name and
  password; each 401 or 429 answer costs a point on each key; a key with 10 points within 10 s
  gets 429 until its window ends, even with good credentials.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from smsbridge.chtsim.responses import ChtHttpError, NotLoggedIn, error_response
from smsbridge.chtsim.state import SimState

LIMIT_POINTS = 10
LIMIT_WINDOW = 10.0
OFFLINE_DETAILS = "Offline users are not allowed access to this endpoint"


@dataclass(frozen=True)
class UserCtx:
    name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "_admin" in self.roles


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True)
    except ValueError:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


class FailedLoginLimiter:
    """10 points per 10 s per key (IP, user name, password); `clock` gives seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.points: dict[str, tuple[float, int]] = {}

    @staticmethod
    def keys(request: Request) -> list[str]:
        creds = basic_credentials(request.headers.get("authorization"))
        if creds is None:
            return []
        host = request.client.host if request.client else ""
        return [f"ip:{host}", f"user:{creds[0]}", f"pass:{creds[1]}"]

    def _current(self, key: str, now: float) -> int:
        start, points = self.points.get(key, (now, 0))
        return 0 if now - start >= LIMIT_WINDOW else points

    def blocked(self, keys: list[str]) -> bool:
        now = self.clock()
        with self.lock:
            return any(self._current(key, now) >= LIMIT_POINTS for key in keys)

    def consume(self, keys: list[str]) -> None:
        now = self.clock()
        with self.lock:
            for key in keys:
                start, points = self.points.get(key, (now, 0))
                if now - start >= LIMIT_WINDOW:
                    start, points = now, 0
                self.points[key] = (start, points + 1)

    def clear(self) -> None:
        with self.lock:
            self.points.clear()


class Auth:
    def __init__(self, state: SimState, clock: Callable[[], float]) -> None:
        self.state = state
        self.sessions: dict[str, str] = {}
        self.limiter = FailedLoginLimiter(clock)

    # -- sessions ------------------------------------------------------------------------------

    def login(self, name: Any, password: Any) -> str | None:
        """A new AuthSession token for good credentials, else None."""
        user = self.state.users.get(name) if isinstance(name, str) else None
        if user is None or not isinstance(password, str) or password != user.password:
            return None
        token = secrets.token_urlsafe(24)
        self.sessions[token] = user.name
        return token

    def revoke_sessions(self, name: str | None = None) -> None:
        for token, owner in list(self.sessions.items()):
            if name is None or owner == name:
                del self.sessions[token]

    # -- checks --------------------------------------------------------------------------------

    def user_ctx(self, request: Request) -> UserCtx | None:
        creds = basic_credentials(request.headers.get("authorization"))
        name: str | None = None
        if creds is not None:
            user = self.state.users.get(creds[0])
            if user is None or user.password != creds[1]:
                return None
            name = user.name
        else:
            token = request.cookies.get("AuthSession")
            if token is not None:
                name = self.sessions.get(token)
        if name is None or name not in self.state.users:
            return None
        return UserCtx(name, tuple(self.state.users[name].roles))

    def configured_roles(self, ctx: UserCtx) -> list[str]:
        roles = self.state.settings.get("roles") or {}
        return [r for r in ctx.roles if isinstance(roles, dict) and r in roles]

    def has_permission(self, ctx: UserCtx, permission: str) -> bool:
        if ctx.is_admin:
            return True
        allowed = (self.state.settings.get("permissions") or {}).get(permission) or []
        return any(role in allowed for role in self.configured_roles(ctx))

    def is_online(self, ctx: UserCtx) -> bool:
        if ctx.is_admin:
            return True
        roles = self.state.settings.get("roles") or {}
        configured = self.configured_roles(ctx)
        return bool(configured) and not any(
            isinstance(roles.get(r), dict) and roles[r].get("offline") for r in configured
        )

    def require(
        self,
        request: Request,
        permission: str | None = None,
        *,
        online: bool = False,
        basic_prompt: bool = False,
    ) -> UserCtx:
        """The user making the request, or raise the 401/403 CHT would answer."""
        ctx = self.user_ctx(request)
        if ctx is None:
            raise NotLoggedIn(basic_prompt=basic_prompt)
        if online and not self.is_online(ctx):
            raise ChtHttpError(403, "forbidden", OFFLINE_DETAILS, always_json=True)
        if permission is not None and not self.has_permission(ctx, permission):
            raise ChtHttpError(403, "Insufficient privileges")
        return ctx


class LimiterMiddleware:
    """ASGI middleware applying the failed-login limiter around every request."""

    def __init__(self, app: Any, limiter: Callable[[], FailedLoginLimiter]) -> None:
        self.app = app
        self.get_limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        limiter = self.get_limiter()
        keys = limiter.keys(request)
        if keys and limiter.blocked(keys):
            limiter.consume(keys)
            response = error_response(request, 429, "Too Many Requests")
            await response(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if keys and status and status[0] in (401, 429):
            limiter.consume(keys)
