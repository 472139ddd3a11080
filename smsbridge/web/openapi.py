"""The OpenAPI 3 description of the bridge's own HTTP endpoints, served at `/openapi.json`.

Kept by hand as a Python structure next to the code it describes; tests check that every route
of the app is described here and run schemathesis against a live bridge
(tests/test_schemathesis.py). When you add or change a route, change this document too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from smsbridge.carriers import CARRIERS, chtgateway

OPENAPI_VERSION = "3.0.3"

_ERROR = {"$ref": "#/components/schemas/Error"}
_STRING = {"type": "string"}
_GATEWAY_ERROR = {"$ref": "#/components/schemas/GatewayError"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    """A response's or request body's `content`: JSON of `schema`."""
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ERROR)}


def _gateway_error(description: str) -> dict[str, Any]:
    """An error of `/api/sms` in the shape cht-gateway reads (smsbridge/carriers/chtgateway.py)."""
    return {"description": description, "content": _json(_GATEWAY_ERROR)}


def _object(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    return schema


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _operation(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A path with one GET operation (the operations endpoints)."""
    return {
        "get": {
            "operationId": operation_id,
            "tags": ["operations"],
            "summary": summary,
            "responses": responses,
        }
    }


_WEBHOOK_ERRORS = {
    "400": _error(
        "Malformed body, missing fields, a sender that is neither a phone number nor an "
        "alphanumeric sender id, or a body not in its named charset; nothing stored."
    ),
    "401": _error("Missing or wrong webhook token; nothing stored."),
    "403": _error("Bad signature (Twilio, Vonage); nothing stored."),
    "404": _error(
        "Unknown or disabled carrier, or one without webhooks (cht-gateway phones use /api/sms)."
    ),
    "405": _error("Method not accepted by this carrier."),
    "413": _error("Body or query string over SMSBRIDGE_MAX_BODY_BYTES; nothing stored."),
    "415": _error("A body that is neither a form nor JSON; nothing stored."),
    "503": _error("The database could not take the message; the carrier should retry."),
}

_CARRIER_REPLY = {
    "description": (
        "Stored (committed to disk) before this answer. The body is what the carrier expects: "
        "empty for Africa's Talking, `<Response/>` TwiML for Twilio, JSON or the configured "
        "reply for the generic carrier."
    ),
    "content": {
        "text/plain": {"schema": {"type": "string"}},
        "text/xml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}

# The fields the carriers send (each module in smsbridge/carriers/ reads its own); any others
# are accepted and kept for signature checks. Which are required depends on the carrier, so
# none is required here.
_CARRIER_FIELDS = (
    # Africa's Talking and generic: inbound; AT delivery reports
    *("from", "to", "text", "id", "date", "linkId", "status", "ref", "reason"),
    *("phoneNumber", "failureReason"),
    # Twilio
    *("MessageSid", "AccountSid", "From", "To", "Body", "MessageStatus", "ErrorCode"),
    # Vonage
    *("msisdn", "messageId", "message-timestamp", "type", "err-code", "client-ref"),
)
_CARRIER_FORM = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in _CARRIER_FIELDS},
    "additionalProperties": {"type": "string"},
}

_WEBHOOK_BODY = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {"schema": _CARRIER_FORM},
        "application/json": {"schema": _CARRIER_FORM},
    },
}


_STATUS_REPLY = {
    "description": "Stored (committed) before this answer; matched to its SMS or kept for later.",
    "content": _json(
        _object({"ok": {"type": "boolean"}, "received": {"type": "integer"}}, required=["ok"])
    ),
}


def _webhook(kind: str, summary: str, description: str) -> dict[str, Any]:
    replies: dict[str, Any] = (
        {"200": _CARRIER_REPLY, "204": {"description": "Stored (Vonage expects an empty 2xx)."}}
        if kind == "inbound"
        else {"200": _STATUS_REPLY}
    )
    operation = {
        "tags": ["carriers"],
        "summary": summary,
        "description": description,
        "requestBody": _WEBHOOK_BODY,
        "responses": {**replies, **_WEBHOOK_ERRORS},
    }
    get = {
        "tags": ["carriers"],
        "summary": summary + " (GET)",
        "description": "The same, with the fields in the query string"
        + (
            ": Vonage and the generic carrier (Kannel's get-url); the other carriers get 405."
            if kind == "inbound"
            else " (a generic gateway's callback may be a GET)."
        ),
        "parameters": [
            {
                "name": "params",
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "schema": _STRING_MAP,
            }
        ],
        "responses": operation["responses"],
    }
    return {
        "parameters": [
            {"$ref": "#/components/parameters/carrier"},
            {"$ref": "#/components/parameters/token"},
        ],
        "post": {**operation, "operationId": f"{kind}Post"},
        "get": {**get, "operationId": f"{kind}Get"},
    }


def document(carriers: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI document. `carriers`, when given, are listed as the carrier names the
    webhook URLs accept (the enabled ones); other names get 404."""
    carrier_schema: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9_-]+$"}
    if carriers:
        carrier_schema = {"type": "string", "enum": list(carriers)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "smsbridge",
            "version": _version(),
            "description": (
                "SMS bridge for Community Health Toolkit deployments: carrier webhooks in, "
                "cht-gateway phones, health and metrics. Errors are JSON "
                '`{"error": "<code>", "detail": "<text>"}`.'
            ),
        },
        "paths": {
            "/carriers/{carrier}/{token}/inbound": _webhook(
                "inbound",
                "An inbound SMS from a carrier",
                "Africa's Talking (form `from,to,text,id,date,linkId`), Twilio (form "
                "`MessageSid,From,To,Body,...`, signed), Vonage (`msisdn,to,messageId,text,...`, "
                "optionally signed) or the generic carrier (form or JSON `from,to,text,id`). The "
                "message is committed before the 2xx; a retry of the same carrier id is "
                "acknowledged without storing it twice.",
            ),
            "/carriers/{carrier}/{token}/status": _webhook(
                "status",
                "A delivery report from a carrier",
                "Stored before the 2xx and mapped through the carrier's status table; a report "
                "for an id not known yet is kept and matched later.",
            ),
            "/api/sms": _gateway(""),
            "/api/sms/": _gateway("Slash"),
            "/healthz": _operation(
                "healthz",
                "The process is up",
                {
                    "200": {
                        "description": "Up.",
                        "content": _json(_object({"status": _STRING}, ["status"])),
                    }
                },
            ),
            "/readyz": _operation(
                "readyz",
                "Database writable, CHT reachable and authenticated, forms loaded",
                {
                    "200": _readiness("Ready."),
                    "503": _readiness("Not ready; the failing checks say why."),
                },
            ),
            "/metrics": _operation(
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": _STRING}},
                    },
                    "401": _error("SMSBRIDGE_METRICS_TOKEN is set: `Authorization: Bearer` it."),
                    "404": _error("/metrics is served on SMSBRIDGE_METRICS_LISTEN instead."),
                },
            ),
            "/openapi.json": _operation(
                "openapi",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3 document.",
                        "content": _json({"type": "object"}),
                    }
                },
            ),
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "parameters": {
                "carrier": {
                    "name": "carrier",
                    "in": "path",
                    "required": True,
                    "description": "The carrier's name: " + ", ".join(webhook_carriers(CARRIERS)),
                    "schema": carrier_schema,
                },
                "token": {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": "The webhook token, SMSBRIDGE_<CARRIER>_WEBHOOK_TOKEN.",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                },
            },
            "schemas": {
                "Error": _object(
                    {
                        "error": {"type": "string", "description": "A short machine code."},
                        "detail": {"type": "string", "description": "What went wrong, for people."},
                    },
                    required=["error"],
                ),
                "GatewayError": _object(
                    {
                        "error": {"type": "boolean", "enum": [True]},
                        "message": {"type": "string", "description": "What went wrong."},
                    },
                    required=["error", "message"],
                ),
                "Check": _object({"ok": {"type": "boolean"}, "detail": _STRING}, required=["ok"]),
                "GatewayRequest": _object(
                    {
                        "messages": _array(
                            _object(
                                {
                                    "id": _STRING,
                                    "from": _STRING,
                                    "content": _STRING,
                                    "sms_sent": {"type": "integer"},
                                    "sms_received": {"type": "integer"},
                                }
                            )
                        ),
                        "updates": _array(
                            _object(
                                {
                                    "id": _STRING,
                                    "status": {
                                        "type": "string",
                                        "enum": list(chtgateway.STATUS_MAP),
                                    },
                                    "reason": _STRING,
                                }
                            )
                        ),
                    }
                ),
                "GatewayResponse": _object(
                    {
                        "messages": _array(
                            _object(
                                {"id": _STRING, "to": _STRING, "content": _STRING},
                                required=["id", "to", "content"],
                            )
                        )
                    },
                    required=["messages"],
                ),
            },
        },
    }


_GATEWAY_AUTH_ERRORS = {
    "401": _gateway_error("No or wrong phone credentials."),
    "403": _gateway_error("The account may not use the gateway API."),
    "404": _gateway_error("cht-gateway phones are not enabled (SMSBRIDGE_CARRIERS)."),
    "429": _gateway_error(
        "Too many wrong logins for this account or address (SMSBRIDGE_PHONE_LOGIN_ATTEMPTS): "
        "try again after `Retry-After` seconds."
    ),
}


def _gateway(suffix: str) -> dict[str, Any]:
    """`/api/sms` (and `/api/sms/`, as CHT accepts both): the medic-gateway protocol."""
    item: dict[str, Any] = {
        "get": {
            "operationId": "gatewayCheck",
            "tags": ["cht-gateway"],
            "summary": "cht-gateway checks its URL",
            "security": [{"basic": []}],
            "responses": {
                "200": {
                    "description": "This is a medic-gateway endpoint.",
                    "content": _json(
                        _object({"medic-gateway": {"type": "boolean"}}, required=["medic-gateway"])
                    ),
                },
                **_GATEWAY_AUTH_ERRORS,
            },
        },
        "post": {
            "operationId": "gatewayExchange",
            "tags": ["cht-gateway"],
            "summary": "A cht-gateway phone's poll",
            "description": (
                "The protocol CHT's own `/api/sms` speaks: the phone posts the SMS it "
                "received and the states of the SMS it sends; the answer lists the SMS "
                "routed to this phone. Content-Type must be exactly `application/json`."
            ),
            "security": [{"basic": []}],
            "requestBody": {
                "required": True,
                "content": _json({"$ref": "#/components/schemas/GatewayRequest"}),
            },
            "responses": {
                "200": {
                    "description": "Messages for the phone to send.",
                    "content": _json({"$ref": "#/components/schemas/GatewayResponse"}),
                },
                "400": _gateway_error("Wrong Content-Type or malformed body."),
                **_GATEWAY_AUTH_ERRORS,
                "413": _gateway_error(
                    "Body (or, gzip-encoded, its decompressed size) over SMSBRIDGE_MAX_BODY_BYTES."
                ),
                "415": _gateway_error("A Content-Encoding other than gzip."),
                "503": _gateway_error(
                    "Starting, or the database could not take the messages; poll again."
                ),
            },
        },
    }
    item["get"]["operationId"] += suffix
    item["post"]["operationId"] += suffix
    return item


def _readiness(description: str) -> dict[str, Any]:
    checks = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Check"}}
    return {
        "description": description,
        "content": _json(
            _object({"ready": {"type": "boolean"}, "checks": checks}, required=["ready", "checks"])
        ),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smsbridge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def webhook_carriers(enabled: Iterable[str]) -> list[str]:
    """The enabled carriers that take webhooks (cht-gateway phones poll /api/sms instead)."""
    return sorted(c for c in enabled if c in CARRIERS and CARRIERS[c].inbound_methods)


async def openapi_endpoint(request: Request) -> JSONResponse:
    """GET /openapi.json."""
    carriers = tuple(getattr(request.app.state, "openapi_carriers", ()) or ())
    return JSONResponse(document(carriers))
