"""Console sessions: who signed in, until when, and the session's CSRF token, in ONE cookie
signed with HMAC-SHA256 (nothing is kept on the server, so a restart with the same
SMSBRIDGE_CONSOLE_SECRET keeps everyone signed in, and a random key per process signs them
out). The cookie is HttpOnly, SameSite=Strict, limited to /console, Secure over https, and
expires (its signed `expires` is checked against the service clock, not only the browser's).

Every POST carries the session's CSRF token in a hidden field (`csrf`), checked here; the
sign-in form, before there is a session, carries the token of a short-lived pre-login cookie
(the double-submit pattern).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

COOKIE = "smsbridge_console"
LOGIN_COOKIE = "smsbridge_console_login"
PATH = "/console"
ADMIN_ROLES = frozenset({"_admin", "national_admin"})


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: float


class Signer:
    """Signs and checks console session cookies with `key`."""

    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(("smsbridge console\x00" + key).encode()).digest()

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, user: str, now: float, lifetime: float) -> tuple[str, Session]:
        """A new session for `user` until `now + lifetime`: (cookie value, session)."""
        session = Session(user, secrets.token_urlsafe(24), now + lifetime)
        payload = {"u": session.user, "c": session.csrf, "e": session.expires}
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
        return f"{body.decode()}.{self._mac(body)}", session

    def check(self, value: str | None, now: float) -> Session | None:
        """The session in the cookie `value`, or None: missing, forged, or expired."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(str(payload["u"]), str(payload["c"]), float(payload["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if now < session.expires else None


def same_token(given: object, expected: str | None) -> bool:
    """A form's CSRF token matches the one expected (compared in constant time)."""
    if not isinstance(given, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def allowed(roles: Iterable[str], extra: Iterable[str]) -> bool:
    """May a CHT user with `roles` use the console: an admin role, or one of `extra`
    (SMSBRIDGE_CONSOLE_ROLES; compared without case)."""
    have = {role.lower() for role in roles}
    return bool(have & ADMIN_ROLES or have & {role.lower() for role in extra})
