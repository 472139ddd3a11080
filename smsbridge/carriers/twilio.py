"""Twilio Programmable Messaging: inbound SMS webhooks, sends and status callbacks (the outbound
side is at the end of this module).

Twilio POSTs `application/x-www-form-urlencoded` (`MessageSid`, `AccountSid`, `From`, `To`,
`Body`, `NumMedia`, `NumSegments`, ...) and signs every request: `X-Twilio-Signature` =
Base64(HMAC-SHA1(auth token, URL + each parameter name and value, sorted by name)). The URL is
the one Twilio was configured with, so we rebuild it from SMSBRIDGE_PUBLIC_URL (a proxy in front
of the bridge changes scheme, host and port). For JSON bodies the URL carries
`bodySHA256=<hex sha256 of the body>` and no parameters are signed. We answer with empty TwiML,
`<Response/>` as text/xml: no automatic reply.

Console: Phone Numbers → your number → Messaging → "A message comes in" → Webhook, HTTP POST,
`https://<public host>/carriers/twilio/<SMSBRIDGE_TWILIO_WEBHOOK_TOKEN>/inbound`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
    Findings,
    Needs,
    WebhookReply,
    WebhookRequest,
    inbound_sms,
    require,
    webhook_token_setting,
)
from smsbridge.carriers.sending import (
    PERMANENT,
    RETRYABLE,
    THROTTLE,
    json_body,
    rejected,
    request,
    require_settings,
    status_update,
    status_url,
)
from smsbridge.errors import Forbidden
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "twilio"
INBOUND_METHODS = frozenset({"POST"})  # how the inbound webhook may arrive

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "Twilio's webhook"),
    Setting(
        "auth_token",
        "",
        "Twilio auth token: signs webhooks (`X-Twilio-Signature`, "
        "checked against SMSBRIDGE_PUBLIC_URL) and authenticates sends.",
        secret=True,
    ),
    Setting(
        "signing_key",
        "",
        "Secret of a Twilio Webhook Rules SharedKey, for webhooks "
        "signed with HMAC-SHA256 (`X-Twilio-Webhooks-Signature-Settings`).",
        secret=True,
    ),
    Setting("account_sid", "", "Twilio account SID (`AC...`), for sending."),
    Setting(
        "from_number",
        "",
        "Twilio sender: a phone number in E.164 (or use SMSBRIDGE_TWILIO_MESSAGING_SERVICE_SID).",
    ),
    Setting(
        "messaging_service_sid",
        "",
        "Twilio Messaging Service SID (`MG...`); used instead of the from number when set.",
    ),
    Setting("api_url", "https://api.twilio.com", "Twilio API base URL."),
)

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}


def compute_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """Twilio's request signature over `url` and the (possibly repeated) POST parameters."""
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    payload = url
    for name in sorted(by_name):
        for value in sorted(set(by_name[name])):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), ALGORITHMS[algorithm]).digest()
    return base64.b64encode(digest).decode()


def public_request_url(req: WebhookRequest, public_url: str) -> str:
    """The URL Twilio signed: SMSBRIDGE_PUBLIC_URL (scheme, host, any path prefix) + the
    request's path and query; the URL as received when no public URL is set."""
    if not public_url:
        return req.url
    base = urlsplit(public_url.rstrip("/"))
    return urlunsplit((base.scheme, base.netloc, base.path + req.path, req.query_string, ""))


def _port_variants(url: str) -> list[str]:
    """The URL as given, with the default port added, and with it removed (Twilio's own
    validator accepts either)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    without = urlunsplit(parts._replace(netloc=userinfo + host))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{parts.port or default}"))
    return list(dict.fromkeys([url, without, with_port]))


def signature_algorithm(settings_header: str) -> str:
    """The algorithm named in `X-Twilio-Webhooks-Signature-Settings` (`key=..,algorithm=..`);
    HMAC_SHA1 (auth token signatures) when absent."""
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def verify(req: WebhookRequest, config: CarrierConfig) -> None:
    """Check `X-Twilio-Signature` when an auth token or signing key is configured (fail closed
    then)."""
    auth_token, signing_key = config.get("auth_token"), config.get("signing_key")
    if not auth_token and not signing_key:
        return
    settings_header = req.headers.get("x-twilio-webhooks-signature-settings", "")
    algorithm = signature_algorithm(settings_header)
    if algorithm not in ALGORITHMS:
        raise Forbidden(f"unsupported Twilio signature algorithm {algorithm}")
    secret = (signing_key if settings_header else auth_token) or auth_token or signing_key
    signature = req.headers.get("x-twilio-signature", "")
    if not signature:
        raise Forbidden("missing X-Twilio-Signature")
    url = public_request_url(req, config.public_url)
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if "bodySHA256" in query:
        body_hash = hashlib.sha256(req.body).hexdigest()
        if not hmac.compare_digest(body_hash, query["bodySHA256"]):
            raise Forbidden("body does not match bodySHA256")
        params: tuple[tuple[str, str], ...] = ()
    else:
        params = req.form
    for candidate in _port_variants(url):
        expected = compute_signature(secret, candidate, params, algorithm)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return
    signed = urlsplit(url)  # scheme and host only: the path holds the webhook token
    raise Forbidden(
        f"X-Twilio-Signature does not match for "
        f"{signed.scheme}://{signed.netloc.rpartition('@')[2]} "
        "(is SMSBRIDGE_PUBLIC_URL right?)"
    )


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or ""
    if not sid.strip():
        require(params, "MessageSid")
    extra = {
        k: params[k]
        for k in ("AccountSid", "MessagingServiceSid", "NumSegments", "NumMedia", "FromCountry")
        if params.get(k)
    }
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender="From",
            text="Body",
            external_id=sid.strip(),
            received_at=req.arrived_at,  # Twilio sends no timestamp: it posts at once
            recipient=params.get("To") or None,
            extra=extra,
        )
    ]


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    return WebhookReply(200, EMPTY_TWIML, "text/xml")


# -- outbound side (OUTBOUND): parse_status, send, STATUS_MAP, ERRORS ------------------------

# StatusCallback `MessageStatus` -> our state (receiving/received are inbound: ignored).
STATUS_MAP: dict[str, DeliveryState] = {
    "accepted": DeliveryState.SENDING,
    "scheduled": DeliveryState.SENDING,
    "queued": DeliveryState.SENDING,
    "sending": DeliveryState.SENDING,
    "sent": DeliveryState.SENT,
    "partially_delivered": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}

# REST API error `code` -> throttle, retryable or permanent (twilio.com/docs/api/errors).
ERRORS: dict[str, str] = {
    "20429": THROTTLE,  # too many requests (HTTP 429): not processed, the channel waits
    "20500": RETRYABLE,  # internal error
    "20503": RETRYABLE,  # service unavailable
    "30001": RETRYABLE,  # queue overflow
    "63017": RETRYABLE,  # account rate limit
    "63018": RETRYABLE,  # channel rate limit
    "21211": PERMANENT,  # invalid 'To' number
    "21408": PERMANENT,  # region not enabled
    "21610": PERMANENT,  # recipient replied STOP
    "21612": PERMANENT,  # cannot route to this number
    "21614": PERMANENT,  # not a mobile number
    "21617": PERMANENT,  # body too long
    "21602": PERMANENT,  # body required
    "21606": PERMANENT,  # 'From' cannot send SMS
    "21603": PERMANENT,  # 'From' missing
    "30003": PERMANENT,  # unreachable handset
    "30004": PERMANENT,  # blocked
    "30005": PERMANENT,  # unknown destination
    "30006": PERMANENT,  # landline or unreachable carrier
    "30007": PERMANENT,  # filtered as spam
}

SEND_NEEDS: Needs = ("account_sid", "auth_token", ("from_number", "messaging_service_sid"))


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    """POST /2010-04-01/Accounts/{sid}/Messages.json with a StatusCallback naming our ref."""
    require_settings(config, SEND_NEEDS)
    sid = config.get("account_sid")
    form = {"To": sms.to, "Body": sms.content}
    if config.get("messaging_service_sid"):
        form["MessagingServiceSid"] = config.get("messaging_service_sid")
    else:
        form["From"] = config.get("from_number")
    callback = status_url(config, sms.cht_id)
    if callback:
        form["StatusCallback"] = callback
    url = f"{config.get('api_url').rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    response = await request(
        http,
        NAME,
        "POST",
        url,
        data=form,
        auth=(sid, config.get("auth_token")),
        headers={"Accept": "application/json"},
    )
    body = json_body(response)
    if response.status_code < 300 and isinstance(body, dict) and body.get("sid"):
        # accepted (normally "queued" at Twilio): our SENT; the callbacks tell the rest
        return SendResult(NAME, str(body["sid"]), DeliveryState.SENT, str(body.get("status")))
    raise rejected(NAME, response, body, ERRORS, code_key="code", detail_key="message")


def parse_status(req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
    params = req.params()
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    require({"MessageSid": sid, "MessageStatus": status}, "MessageSid", "MessageStatus")
    state = STATUS_MAP.get(status.strip().lower())
    code, ref = params.get("ErrorCode"), params.get("ref")
    failure = f"twilio error {code}" if code else None
    return status_update(NAME, req, sid, status, state, failure_reason=failure, ref=ref)


class Twilio(BaseCarrier):
    """Twilio Programmable Messaging (this module's functions, as a `Carrier`)."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = True
    sends = True
    sender_setting = "from_number"
    asks_status_url = True
    status_map = STATUS_MAP
    send_needs = SEND_NEEDS
    url_settings = ("api_url",)
    verify = staticmethod(verify)
    parse_inbound = staticmethod(parse_inbound)
    inbound_reply = staticmethod(inbound_reply)
    parse_status = staticmethod(parse_status)
    send = staticmethod(send)

    def check(self, config: CarrierConfig) -> Findings:
        problems, warnings = super().check(config)
        if not (config.get("auth_token") or config.get("signing_key")):
            warnings.append(
                f"{config.env('auth_token')} is empty: Twilio webhooks are not signature-checked"
            )
        return problems, warnings


CARRIER = Twilio()
