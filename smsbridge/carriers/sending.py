"""What the send side of every carrier module shares: where delivery reports go, the ONE
place an HTTP outcome of a send becomes retryable or permanent, a send
refused before any request when its settings are missing (each carrier's `send_needs`), and a
delivery report as our `StatusUpdate`.

Carrier error tables (`ERRORS` in each module) map the carrier's own codes to `RETRYABLE`,
`THROTTLE`, `PERMANENT` or `AUTH`; a code missing from the table falls back on the HTTP status.
A throttle (a `THROTTLE` code, or HTTP 429) is a RetryableError that says when to come back
(`retry_after`; THROTTLE_WAIT when the carrier names no time): outbound/channels.py
`is_throttle` reads it and pauses the whole channel, bounded, rather than this one SMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from smsbridge.carriers.base import CarrierConfig, Needs, WebhookRequest
from smsbridge.errors import AuthFailure, PeerError, PermanentError, RetryableError
from smsbridge.retryafter import retry_after
from smsbridge.sms import DeliveryState, StatusUpdate

RETRYABLE = "retryable"
THROTTLE = "throttle"  # the carrier took nothing, we send too fast: the channel waits
PERMANENT = "permanent"
AUTH = "auth"  # our credentials or account: the channel is unusable until an operator acts

THROTTLE_WAIT = 1.0
"""Seconds a throttle answer that names no time asks for (carriers count their limits per
second: Vonage, for one, 30 requests a second per API key)."""


def status_url(config: CarrierConfig, ref: str | None = None) -> str:
    """Our delivery-report URL for this carrier (empty without SMSBRIDGE_PUBLIC_URL), with our
    reference in the query when given (so a report can be matched before the send returns)."""
    if not config.public_url:
        return ""
    token = config.get("webhook_token")
    base = config.public_url.rstrip("/")
    url = f"{base}/carriers/{config.carrier}/{quote(token, safe='')}/status"
    return f"{url}?ref={quote(ref, safe='')}" if ref else url


def failure(
    carrier: str,
    *,
    code: str | None,
    detail: str,
    errors: Mapping[str, str],
    status: int | None = None,
    after: float | None = None,
) -> PeerError:
    """The exception for a failed send: the carrier's code decides when the table knows it,
    else the HTTP status (429, 5xx: retryable; 401/403: auth; other 4xx: permanent). A
    throttle carries `after`, else THROTTLE_WAIT."""
    label = f"{carrier}: {code} {detail}".strip() if code else f"{carrier}: {detail}"
    kind = errors.get(code or "")
    if kind == THROTTLE:
        wait = THROTTLE_WAIT if after is None else after
        return RetryableError(label, code=f"{carrier}_{code}", status=status, retry_after=wait)
    if kind == RETRYABLE:
        return RetryableError(label, code=f"{carrier}_{code}", status=status, retry_after=after)
    if kind == PERMANENT:
        return PermanentError(label, code=f"{carrier}_{code}", status=status)
    if kind == AUTH:
        return AuthFailure(label, code=f"{carrier}_{code}", status=status)
    if status in (401, 403):
        return AuthFailure(label, status=status)
    if status is not None and (status == 429 or status >= 500 or status in (408, 425)):
        return RetryableError(label, status=status, retry_after=after)
    if status is not None and status >= 400:
        return PermanentError(label, status=status)
    return RetryableError(label, status=status, retry_after=after)


def rejected(
    carrier: str,
    response: httpx.Response,
    body: Any,
    errors: Mapping[str, str],
    *,
    code_key: str = "",
    detail_key: str = "",
) -> PeerError:
    """The exception for a send the carrier answered with an error (a non-2xx, or a body that
    is not what a success looks like): the carrier's error code is the `code_key` member of a
    JSON object body, the detail its `detail_key` member (else `HTTP <status>`); the status and
    any Retry-After go along."""
    members = body if isinstance(body, dict) else {}
    code = str(members[code_key]) if code_key and members.get(code_key) else None
    detail = members.get(detail_key) if detail_key else None
    return failure(
        carrier,
        code=code,
        detail=str(detail) if detail else f"HTTP {response.status_code}",
        errors=errors,
        status=response.status_code,
        after=retry_after(response.headers),
    )


def status_update(
    carrier: str,
    req: WebhookRequest,
    external_id: str,
    status: str,
    state: DeliveryState | None,
    *,
    reason: str | None = None,
    failure_reason: str | None = None,
    ref: str | None = None,
) -> list[StatusUpdate]:
    """A delivery report as our StatusUpdate (none when the carrier's status table does not map
    `status`: `state` is None). `reason` goes with any state; a failure without one gives
    `failure_reason`, else the carrier's status. An empty `ref` is no ref."""
    if state is None:
        return []
    if state is DeliveryState.FAILED:
        reason = reason or failure_reason or status
    return [
        StatusUpdate(
            carrier,
            external_id.strip(),
            state,
            reason=reason or None,
            carrier_status=status,
            at=req.arrived_at,
            ref=ref or None,
        )
    ]


def unset(config: CarrierConfig, needs: Needs) -> list[str]:
    """The needed settings that are empty, as environment names (`A or B` for a choice)."""
    missing = []
    for need in needs:
        names = (need,) if isinstance(need, str) else need
        if not any(config.get(name) for name in names):
            missing.append(" or ".join(config.env(name) for name in names))
    return missing


def require_settings(config: CarrierConfig, needs: Needs) -> None:
    """Refuse a send before any request when a setting it needs is empty: a PermanentError
    (code `config`), so the SMS fails over to the route's next channel, or fails saying why."""
    missing = unset(config, needs)
    if missing:
        raise PermanentError(
            f"{config.carrier}: cannot send, {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} empty",
            code="config",
        )


async def request(
    http: httpx.AsyncClient, carrier: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; a network failure or timeout is a RetryableError: code `unreachable`
    when no connection was made, else `timeout` or `network` (the request may have reached the
    carrier: the send is ambiguous, outbound/send.py)."""
    if not url:
        raise PermanentError(f"{carrier}: no send URL configured", code="config")
    try:
        return await http.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # no connection: the SMS cannot have reached the carrier (not ambiguous)
        raise RetryableError(f"{carrier}: unreachable", code="unreachable") from exc
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{carrier}: timed out", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(f"{carrier}: {type(exc).__name__}", code="network") from exc


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
