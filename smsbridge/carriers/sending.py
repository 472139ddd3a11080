"""What the send side of every carrier module shares: where delivery reports go, and the ONE
place an HTTP outcome of a send becomes retryable or permanent (DESIGN.md rule 4).

Carrier error tables (`ERRORS` in each module) map the carrier's own codes to `RETRYABLE` or
`PERMANENT`; a code missing from the table falls back on the HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from smsbridge.carriers.base import CarrierConfig
from smsbridge.errors import AuthFailure, PeerError, PermanentError, RetryableError

RETRYABLE = "retryable"
PERMANENT = "permanent"
AUTH = "auth"  # our credentials or account: the channel is unusable until an operator acts


def status_url(config: CarrierConfig, ref: str | None = None) -> str:
    """Our delivery-report URL for this carrier (empty without SMSBRIDGE_PUBLIC_URL), with our
    reference in the query when given (so a report can be matched before the send returns)."""
    if not config.public_url:
        return ""
    token = config.get("webhook_token")
    base = config.public_url.rstrip("/")
    url = f"{base}/carriers/{config.carrier}/{quote(token, safe='')}/status"
    return f"{url}?ref={quote(ref, safe='')}" if ref else url


def retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


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
    else the HTTP status (429, 5xx: retryable; 401/403: auth; other 4xx: permanent)."""
    label = f"{carrier}: {code} {detail}".strip() if code else f"{carrier}: {detail}"
    kind = errors.get(code or "")
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


async def request(
    http: httpx.AsyncClient, carrier: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; a network failure or timeout is a RetryableError."""
    if not url:
        raise AuthFailure(f"{carrier}: no send URL configured", code="config")
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{carrier}: timed out", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(f"{carrier}: {type(exc).__name__}", code="network") from exc


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
