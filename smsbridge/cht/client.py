"""The CHT API client (httpx, async): the calls the bridge makes, and ONE function, `classify`,
that turns every outcome into success or an exception the workers act on by type alone.

    async with ChtClient.from_settings(settings) as cht:
        forms = (await cht.app_settings()).get("forms", {})
        doc_id = await cht.create_record({"_meta": {"form": "P", "from": "+254..."}, ...})
        to_send = await cht.exchange_sms(messages=[...], updates=[...])

Every request sends `Accept: application/json` (without it CHT answers a 401 as a 302 to its
login page, and its start-up page as a 200 HTML page) and never follows redirects;
`POST /api/sms` sends `Content-Type: application/json` exactly (CHT compares the string).

How outcomes are classified (`classify`):

    2xx with a JSON body                        success
    2xx not JSON (CHT's start-up page is a
      200 HTML page)                            RetryableError  cht_starting
    connect error / connect timeout (never
      reached CHT)                              RetryableError  cht_unreachable
    read/write timeout (CHT may have done it)   RetryableError  cht_timeout
    connection dropped (CHT may have done it)   RetryableError  cht_connection_lost
    401; a 3xx to /medic/login                  AuthFailure     (the client stops, below)
    429 (failed-login lockout, a proxy)         RetryableError  retry_after = Retry-After, >= 10 s
    502, 503 (incl. start-up JSON), 504, 507..  RetryableError  retry_after = Retry-After
    500 with `details`                          PermanentError  cht_rejected
    500 without details                         RetryableError  cht_server_error
    501, 505                                    PermanentError
    400, 403, 404 and every other 4xx/3xx       PermanentError  (cht_not_found / cht_bad_request
                                                                 when CHT names the error)

Which 500s are permanent: CHT turns every error into a 500 "Server error"; only errors its
records service raised on purpose carry a public message as `details` ("Missing _meta
property.", "Missing required field: form", "Form not found: X", "Missing required value:
from"). Those refuse this very request, so sending it again cannot help. A 500 without details
is CHT or CouchDB failing (a DB error, /api/sms write conflicts after CHT's own 3 retries):
the same request may well succeed later, so it is retried.

After an AuthFailure the client is *stopped*: every later call raises AuthFailure at once, without
touching the network (CHT locks an IP out for 10 s after ten failed logins, and would keep
locking it out while we retried), until `check_auth()` succeeds (the one call still made: the
probe) or `reset_auth()`. Until a call has succeeded with the credentials (at start-up, and
after `reset_auth()`), calls go out one at a time: the workers starting together with a wrong
password make one failed login, the others then fail fast. Credentials never appear in logs or
errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from smsbridge import __version__
from smsbridge.errors import (
    AuthFailure,
    ConfigError,
    PeerError,
    PermanentError,
    RetryableError,
)
from smsbridge.logs import event
from smsbridge.retryafter import retry_after
from smsbridge.settings import Secret

if TYPE_CHECKING:
    from smsbridge.settings import Settings

log = logging.getLogger(__name__)

_NO_AUTH = httpx.Auth()
"""No credentials on a request (a person's login goes without the bridge's)."""

LOCKOUT_SECONDS = 10.0
"""CHT's failed-login window: the least we wait after a 429."""


@dataclass(frozen=True)
class Call:
    """What was asked of CHT (for messages): method and path, never the query or body."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _cht_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "reason", "details") if body.get(k)]
        if parts:
            return ": ".join(parts)[:300]
    return response.text[:200].strip()


def classify(call: Call, outcome: httpx.Response | Exception) -> PeerError | None:
    """The one place deciding what an outcome of a CHT call means: None for success, else the
    exception to raise (RetryableError, PermanentError or AuthFailure). See the module doc."""
    if isinstance(outcome, Exception):
        if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return RetryableError(
                f"{call}: CHT unreachable ({type(outcome).__name__})", code="cht_unreachable"
            )
        if isinstance(outcome, httpx.TimeoutException):
            return RetryableError(f"{call}: CHT did not answer in time", code="cht_timeout")
        if isinstance(outcome, httpx.TransportError):
            return RetryableError(
                f"{call}: connection lost ({type(outcome).__name__})", code="cht_connection_lost"
            )
        return RetryableError(f"{call}: {type(outcome).__name__}", code="cht_error")

    response = outcome
    status = response.status_code
    if 200 <= status < 300:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type or _json_or_none(response) is None:
            return RetryableError(
                f"{call}: CHT answered {status} with {content_type or 'no content type'} "
                "(starting up?)",
                code="cht_starting",
                status=status,
            )
        return None
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        if "/login" in location:
            return AuthFailure(
                f"{call}: CHT refused the credentials (redirect to its login page)", status=status
            )
        return PermanentError(
            f"{call}: unexpected redirect {status} to {location[:100]!r}; check SMSBRIDGE_CHT_URL",
            code="cht_redirect",
            status=status,
        )
    body = _json_or_none(response)
    message = _cht_message(body, response)
    if status == 401:
        return AuthFailure(f"{call}: CHT refused the credentials (401)", status=status)
    if status == 429:
        after = retry_after(response.headers)
        return RetryableError(
            f"{call}: too many requests (429): {message}",
            code="cht_rate_limited",
            status=status,
            retry_after=max(after or 0.0, LOCKOUT_SECONDS),
        )
    if status == 500:
        if isinstance(body, dict) and body.get("details"):
            return PermanentError(
                f"{call}: CHT refused the request: {body['details']}",
                code="cht_rejected",
                status=status,
            )
        return RetryableError(
            f"{call}: CHT server error (500)",
            code="cht_server_error",
            status=status,
            retry_after=retry_after(response.headers),
        )
    if status in (501, 505):
        return PermanentError(f"{call}: {status} {message}", code="cht_rejected", status=status)
    if status >= 500:
        return RetryableError(
            f"{call}: CHT unavailable ({status})",
            code="cht_unavailable",
            status=status,
            retry_after=retry_after(response.headers),
        )
    kind = body.get("error") if isinstance(body, dict) else None
    code = {"not_found": "cht_not_found", "bad_request": "cht_bad_request"}.get(
        kind if isinstance(kind, str) else "", "cht_rejected"
    )
    return PermanentError(f"{call}: {status} {message}", code=code, status=status)


class ChtClient:
    """Async CHT API client. Use as `async with ChtClient(...) as cht:`."""

    def __init__(
        self,
        base_url: str,
        credentials: tuple[str, str | Secret] | None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        auth = None
        if credentials is not None:
            user, password = credentials
            secret = password.reveal() if isinstance(password, Secret) else password
            auth = httpx.BasicAuth(user, secret)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": f"smsbridge/{__version__}"},
            follow_redirects=False,
            timeout=timeout,
            transport=transport,
        )
        self._auth_failure: AuthFailure | None = None
        self._auth_confirmed = credentials is None  # a 2xx has shown the credentials work
        self._auth_unknown = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> ChtClient:
        if not settings.cht_url:
            raise ConfigError("SMSBRIDGE_CHT_URL is not set")
        return cls(
            settings.cht_base_url,
            settings.cht_credentials,
            timeout=settings.cht_timeout,
            transport=transport,
        )

    async def __aenter__(self) -> ChtClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"ChtClient({self.base_url!r})"

    # -- the auth stop -------------------------------------------------------------------------

    @property
    def auth_failed(self) -> bool:
        """True once CHT refused our credentials; calls fail fast until `check_auth()` succeeds
        or `reset_auth()`."""
        return self._auth_failure is not None

    def reset_auth(self) -> None:
        """Allow calls again after an auth failure (credentials fixed, operator's decision)."""
        self._auth_failure = None
        self._auth_confirmed = False

    # -- the calls -----------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, probe: bool = False, **kwargs: Any
    ) -> httpx.Response:
        call = Call(method, path)
        if self._auth_confirmed:
            return await self._send(call, method, path, probe, **kwargs)
        # Credentials not yet accepted (start-up, after reset_auth): one call at a time, so a
        # wrong password costs one failed login, not one per worker.
        async with self._auth_unknown:
            return await self._send(call, method, path, probe, **kwargs)

    async def _send(
        self, call: Call, method: str, path: str, probe: bool, **kwargs: Any
    ) -> httpx.Response:
        if self._auth_failure is not None and not probe:
            raise AuthFailure(
                f"{call}: not called: CHT refused our credentials earlier "
                f"({self._auth_failure.detail})",
                status=self._auth_failure.status,
            )
        started = time.monotonic()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            error = classify(call, exc)
            assert error is not None
            event(log, "cht.failed", logging.WARNING, call=str(call), error=error.code)
            raise error from exc
        error = classify(call, response)
        event(
            log,
            "cht.call",
            logging.DEBUG,
            call=str(call),
            status=response.status_code,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if error is None:
            self._auth_confirmed = True
            return response
        if isinstance(error, AuthFailure):
            self._auth_failure = error
            self._auth_confirmed = False
            event(
                log, "cht.auth_failed", logging.ERROR, call=str(call), status=response.status_code
            )
        else:
            event(
                log,
                "cht.failed",
                logging.WARNING,
                call=str(call),
                status=response.status_code,
                error=error.code,
            )
        raise error

    async def app_settings(self) -> dict[str, Any]:
        """`GET /api/v1/settings`: forms, default_country_code, phone_validation, sms, ..."""
        body = (await self._request("GET", "/api/v1/settings")).json()
        if not isinstance(body, dict):
            raise RetryableError("GET /api/v1/settings: not a settings object", code="cht_bad")
        return body

    async def translation_docs(self) -> list[dict[str, Any]]:
        """The translation documents (`messages-<code>`) of CHT's medic database, read as CHT's
        API reads them at start-up: `_all_docs` over the `messages-` ids with the docs. An online
        user (every configured role is a member of the medic database) may read them; the
        tables the parser needs come from `smsparser.translate.load_translations`."""
        path = "/medic/_all_docs"
        params = {"startkey": '"messages-"', "endkey": '"messages-\ufff0"', "include_docs": "true"}
        body = (await self._request("GET", path, params=params)).json()
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise RetryableError(f"GET {path}: no rows in CHT's answer", code="cht_bad")
        return [r["doc"] for r in rows if isinstance(r, dict) and isinstance(r.get("doc"), dict)]

    async def records_by_gateway_ref(self, ref: str) -> list[str]:
        """Ids of the documents CHT's `messages_by_gateway_ref` view lists under `ref`: a data
        record whose `sms_message.gateway_ref` (from `_meta.gateway_ref` or a gateway message's
        id) is `ref`, or a task of an outgoing message. The view CHT's `/api/sms` de-duplicates
        with; online users may query it, offline users get 403 (PermanentError)."""
        path = "/medic/_design/medic-sms/_view/messages_by_gateway_ref"
        response = await self._request("GET", path, params={"key": json.dumps(ref)})
        body = response.json()
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise RetryableError(f"GET {path}: no rows in CHT's answer", code="cht_bad")
        return [str(r["id"]) for r in rows if isinstance(r, dict) and r.get("id")]

    async def contacts_by_phone(self, phone: str) -> list[dict[str, Any]]:
        """Contacts whose stored phone is `phone` (hydrated); [] when CHT has none (404
        `not_found`) or cannot read the number as a phone number (400 `bad_request`, e.g. an
        alphanumeric sender). POSTed as JSON so the number stays out of URLs and access logs."""
        path = "/api/v1/contacts-by-phone"
        try:
            response = await self._request("POST", path, json={"phone": phone})
        except PermanentError as exc:
            if (exc.status, exc.code) in ((404, "cht_not_found"), (400, "cht_bad_request")):
                return []
            raise
        docs = response.json().get("docs") if isinstance(response.json(), dict) else None
        return [d for d in docs if isinstance(d, dict)] if isinstance(docs, list) else []

    async def create_record(self, body: dict[str, Any]) -> str:
        """`POST /api/v2/records` with a JSON form (`_meta.form`, `from`, `reported_date`,
        `locale`); returns the new doc's id. Not idempotent: each success is a new report."""
        response = await self._request("POST", "/api/v2/records", json=body)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("id"):
            raise RetryableError("POST /api/v2/records: no id in CHT's answer", code="cht_bad")
        return str(answer["id"])

    async def exchange_sms(
        self, messages: list[dict[str, Any]], updates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """`POST /api/sms` as a gateway: incoming `{id, from, content}` (CHT de-duplicates by
        id) and status updates `{id, status[, reason]}` out; CHT's outgoing `{id, to, content}`
        back."""
        content = json.dumps({"messages": messages, "updates": updates}).encode()
        response = await self._request(
            "POST", "/api/sms", content=content, headers={"Content-Type": "application/json"}
        )
        answer = response.json()
        outgoing = answer.get("messages") if isinstance(answer, dict) else None
        if outgoing is None:
            return []
        return [m for m in outgoing if isinstance(m, dict)]

    async def monitoring(self) -> dict[str, Any]:
        """`GET /api/v2/monitoring` (no authentication needed)."""
        body = (await self._request("GET", "/api/v2/monitoring")).json()
        return body if isinstance(body, dict) else {}

    async def session_roles(self) -> tuple[str, list[str]]:
        """`GET /_session`: the name and roles CHT sees for our credentials (check-config
        explains a missing permission with them)."""
        body = (await self._request("GET", "/_session")).json()
        ctx = body.get("userCtx") if isinstance(body, dict) else None
        ctx = ctx if isinstance(ctx, dict) else {}
        roles = ctx.get("roles")
        names = [str(r) for r in roles] if isinstance(roles, list) else []
        return str(ctx.get("name") or ""), names

    async def check_auth(self) -> None:
        """`GET /api/sms`: the credentials work and carry `can_access_gateway_api`. Raises
        AuthFailure (bad credentials) or PermanentError (403: the user lacks the permission).

        The probe: it is the one call made even while the client is stopped after an auth
        failure, and its success lifts the stop. Probe rarely (one failed login a minute is
        far from CHT's ten in ten seconds)."""
        await self._request("GET", "/api/sms", probe=True)
        self._auth_failure = None

    async def check_login(self, name: str, password: str) -> tuple[str, ...] | None:
        """A person's CHT login (the operator console): `POST /_session` with `name` and
        `password`, then `GET /_session` with the session CHT returned for the user's roles,
        then `DELETE /_session`. The roles, or None when CHT refuses the login; raises
        RetryableError / PermanentError when CHT cannot answer (429: its failed-login lockout).

        Neither this client's own credentials nor its auth stop are involved: a person's wrong
        password says nothing about the bridge's. The password is sent, never logged."""
        call = Call("POST", "/_session")
        try:
            response = await self._http.post(
                "/_session", json={"name": name, "password": password}, auth=_NO_AUTH
            )
        except httpx.HTTPError as exc:
            raise classify(call, exc) or RetryableError(str(call)) from exc
        error = classify(call, response)
        if isinstance(error, AuthFailure):
            return None
        if error is not None:
            raise error
        token = response.cookies.get("AuthSession")
        self._http.cookies.clear()  # the session goes by its header below, never by the jar
        if not token:
            raise PermanentError(f"{call}: CHT returned no session", code="cht_no_session")
        cookie = {"Cookie": f"AuthSession={token}"}
        call = Call("GET", "/_session")
        try:
            answer = await self._http.get("/_session", headers=cookie, auth=_NO_AUTH)
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete("/_session", headers=cookie, auth=_NO_AUTH)
        except httpx.HTTPError as exc:
            raise classify(call, exc) or RetryableError(str(call)) from exc
        finally:
            self._http.cookies.clear()
        error = classify(call, answer)
        if error is not None:
            raise error
        context = answer.json().get("userCtx") if isinstance(answer.json(), dict) else None
        if not isinstance(context, dict) or context.get("name") != name:
            return None
        roles = context.get("roles")
        return tuple(str(r) for r in roles) if isinstance(roles, list) else ()
