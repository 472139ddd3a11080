"""The exception tree. Every error the service raises on purpose is one of these.

    SmsBridgeError           base; `http_status` and `code` map it to a JSON error response
    ├── ConfigError          a setting is missing or wrong (CLI exit 2, service refuses to start)
    ├── RequestError         a caller sent something we cannot take (HTTP 4xx)
    │   ├── BadRequest       400 malformed body or fields
    │   ├── Unauthorized     401 missing or wrong token / credentials
    │   ├── Forbidden        403 bad signature, insufficient privileges
    │   ├── NotFound         404 unknown carrier, message or route
    │   ├── MethodNotAllowed 405 a webhook by a method its carrier does not use
    │   ├── PayloadTooLarge  413 body (or query string) over the size limit
    │   └── UnsupportedMediaType 415 a body that is neither a form nor JSON
    ├── Unavailable          503 the service is starting (or stopping): try again shortly
    ├── FormError            an SMS that is not a valid report; carries a reply for the sender
    └── PeerError            a call to a peer (CHT, a carrier) failed
        ├── RetryableError   try again later (timeouts, 5xx, 429); `retry_after` seconds if known
        ├── PermanentError   do not retry this request (4xx); the task gives up
        └── AuthFailure      the peer refused our credentials; stop calling it until fixed

Workers decide what to do by exception type alone (docs/architecture.md, rule 4).
"""

from __future__ import annotations


class SmsBridgeError(Exception):
    """Base of every deliberate error. `code` is a short machine name, the message is for people."""

    http_status = 500
    code = "internal"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class ConfigError(SmsBridgeError):
    code = "config"


class UsageError(ConfigError):
    """A command line the CLI cannot act on (the CLI exits 2, saying "usage error")."""

    code = "usage"


class RequestError(SmsBridgeError):
    http_status = 400
    code = "bad_request"


class BadRequest(RequestError):
    http_status = 400
    code = "bad_request"


class Unauthorized(RequestError):
    http_status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    http_status = 403
    code = "forbidden"


class NotFound(RequestError):
    http_status = 404
    code = "not_found"


class MethodNotAllowed(RequestError):
    http_status = 405
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    http_status = 415
    code = "unsupported_media_type"


class Unavailable(SmsBridgeError):
    """The service cannot take the request right now (starting up, shutting down)."""

    http_status = 503
    code = "unavailable"


class FormError(SmsBridgeError):
    """A message that cannot become a report. `code` names the problem (CHT's error key where
    CHT has one, e.g. `sys.form_not_found`), `detail` is the reply the sender can act on."""

    http_status = 422
    code = "form_error"


class PeerError(SmsBridgeError):
    http_status = 502
    code = "peer_error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.retry_after = retry_after


class RetryableError(PeerError):
    code = "peer_unavailable"


class PermanentError(PeerError):
    code = "peer_rejected"


class AuthFailure(PeerError):
    code = "peer_auth_failed"
