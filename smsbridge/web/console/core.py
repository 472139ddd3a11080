"""The console itself: its routes, sign-in with CHT accounts, the session guard, rendering.

Sign-in checks the name and password against CHT (`ChtClient.check_login`: CHT's `/_session`),
with a client of its own that carries no credentials of the bridge; the user gets in with an
admin role (`_admin`, `national_admin`) or one named in SMSBRIDGE_CONSOLE_ROLES. No password is
stored or logged. Wrong passwords are limited per user name and per client address with backoff
(web/logins.py, the same limit as the phones' logins, bounded in memory).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from smsbridge.cht.client import ChtClient
from smsbridge.errors import PeerError
from smsbridge.logs import event
from smsbridge.phone import mask
from smsbridge.settings import Settings
from smsbridge.web.console import session as sessions
from smsbridge.web.console.session import Session
from smsbridge.web.logins import PhoneLogins

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
LOGIN_ATTEMPTS = 5
"""Wrong passwords per user name, and per address, before each further one locks it out for
twice as long (from 1 s)."""
LOGIN_LOCKOUT = 300.0
"""The longest such lock-out, in seconds."""
LOGIN_FORM_SECONDS = 3600
"""How long the sign-in form's CSRF cookie lives."""

Handler = Callable[[Request, Session], Awaitable[Response]]


class Console:
    """The console of one bridge. `clock` is the service's (session expiry, audit times)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        key = settings.console_secret.reveal() or secrets.token_hex(32)
        self.signer = sessions.Signer(key)
        self.logins = PhoneLogins(attempts=LOGIN_ATTEMPTS, lockout=LOGIN_LOCKOUT, clock=clock)
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        environment.filters["masked"] = lambda number: mask(number) if number else ""
        environment.filters["quoted"] = lambda text: quote(str(text), safe="")
        self.templates = Jinja2Templates(env=environment)
        self.cht: ChtClient | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the app runs: the CHT client that checks sign-ins."""
        if not self.settings.cht_url:
            yield
            return
        async with ChtClient(
            self.settings.cht_base_url, None, timeout=self.settings.cht_timeout
        ) as client:
            self.cht = client
            try:
                yield
            finally:
                self.cht = None

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        context.setdefault("title", "")
        response = self.templates.TemplateResponse(
            request,
            template,
            {"session": session, "root": sessions.PATH, **context},
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'"
        )
        return response

    def refused(self, request: Request, session: Session | None, why: str) -> Response:
        return self.render(request, "refused.html", session, 403, title="Refused", why=why)

    # -- the guard ---------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return self.signer.check(request.cookies.get(sessions.COOKIE), self.clock())

    async def guarded(self, handler: Handler, request: Request) -> Response:
        """Run `handler` for a signed-in operator; without a session a page goes to the
        sign-in form and a POST is refused; a POST without the session's CSRF token is
        refused."""
        session = self.session(request)
        if session is None:
            if request.method != "GET":
                return self.refused(request, None, "You are not signed in.")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{sessions.PATH}/login?next={quote(target, safe='')}", status_code=303
            )
        if request.method == "POST":
            form = await request.form()
            if not sessions.same_token(form.get("csrf"), session.csrf):
                event(log, "console.csrf_refused", logging.WARNING, user=session.user)
                return self.refused(
                    request, session, "This form is out of date (or not from the console)."
                )
        return await handler(request, session)

    # -- sign-in -----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request, "", 200)

    def _login_page(self, request: Request, error: str, status: int) -> Response:
        token = request.cookies.get(sessions.LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            None,
            status,
            title="Sign in",
            error=error,
            csrf=token,
            next=_local(request.query_params.get("next")),
        )
        self._cookie(request, response, sessions.LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not sessions.same_token(form.get("csrf"), request.cookies.get(sessions.LOGIN_COOKIE)):
            return self._login_page(request, "The form was out of date: please try again.", 403)
        name = str(form.get("name") or "").strip()
        password = str(form.get("password") or "")
        address = request.client.host if request.client else "unknown"
        wait = self.logins.wait(name, address)
        if wait > 0:
            self.logins.locked()
            event(log, "console.login_locked", client=address, wait_s=round(wait, 1))
            refused = self._login_page(
                request, f"Too many wrong passwords: try again in {wait:.0f} s.", 429
            )
            refused.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return refused
        if not name or not password:
            return self._login_page(request, "Enter your CHT user name and password.", 400)
        if self.cht is None:
            return self._login_page(request, "No CHT server is configured.", 503)
        try:
            roles = await self.cht.check_login(name, password)
        except PeerError as exc:
            event(log, "console.login_unchecked", logging.WARNING, error=exc.code)
            return self._login_page(
                request, "CHT could not check the password just now: try again shortly.", 503
            )
        if roles is None:
            self.logins.failed(name, address)
            event(log, "console.login_failed", user=name, client=address)
            return self._login_page(request, "Wrong user name or password.", 401)
        self.logins.succeeded(name, address)
        if not sessions.allowed(roles, self.settings.console_roles):
            event(log, "console.login_refused", user=name)
            return self._login_page(
                request, "This CHT account may not use the console (it needs an admin role).", 403
            )
        value, _ = self.signer.issue(name, self.clock(), self.settings.console_session)
        event(log, "console.signed_in", user=name)
        response = RedirectResponse(
            _local(str(form.get("next") or "")) or f"{sessions.PATH}/", status_code=303
        )
        self._cookie(request, response, sessions.COOKIE, value, int(self.settings.console_session))
        response.delete_cookie(sessions.LOGIN_COOKIE, path=sessions.PATH)
        return response

    async def logout(self, request: Request) -> Response:
        session = self.session(request)
        form = await request.form()
        if session is None or not sessions.same_token(form.get("csrf"), session.csrf):
            return self.refused(request, session, "This form is out of date.")
        event(log, "console.signed_out", user=session.user)
        response = RedirectResponse(f"{sessions.PATH}/login", status_code=303)
        response.delete_cookie(sessions.COOKIE, path=sessions.PATH)
        return response

    @staticmethod
    def _cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path=sessions.PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def _local(target: str | None) -> str:
    """`target` when it is a console path (never another site: no open redirect), else ''."""
    if target and target.startswith(sessions.PATH + "/") and "//" not in target:
        return target
    return ""
