"""Africa's Talking: inbound SMS callbacks, sends and delivery reports (the outbound side is
at the end of this module).

AT POSTs `application/x-www-form-urlencoded` to the callback URL registered in its console:
`from`, `to`, `text`, `date`, `id`, and `linkId` for premium SMS. AT does not sign callbacks, so
the secret token in our URL is the only authentication. AT only looks at the status code; we
answer 200 with an empty body once the message is on disk.

Console: SMS → Callback URLs → Incoming Messages =
`https://<public host>/carriers/africastalking/<SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN>/inbound`.
No idempotency, and the risk that remains. AT's send API (POST /version1/messaging: username,
to, message, from, bulkSMSMode, enqueue, keyword, linkId, retryDurationInHours) accepts no
client-side id or idempotency key; its delivery reports (id, status, phoneNumber, networkCode,
failureReason, retryCount) name only AT's own messageId, returned in the send response; and its
fetch-messages API (GET /version1/messaging?lastReceivedId=) lists inbound SMS only. So a send
whose answer was lost (a timeout, or the bridge killed mid-send) cannot be looked up or matched
to its report: outbound/send.py holds it for SMSBRIDGE_AMBIGUOUS_GRACE, then resends it
(SMSBRIDGE_AMBIGUOUS_ACTION=resend: the recipient may get it twice) or fails it (`fail`: it may
never have gone). Deployments where a duplicate costs more than a missed SMS should set `fail`.
A report's `ref` is never read here: AT sends none, so one could only be forged.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
    Findings,
    Needs,
    WebhookReply,
    WebhookRequest,
    inbound_sms,
    ok_reply,
    parse_time,
    require,
    webhook_token_setting,
)
from smsbridge.carriers.sending import (
    PERMANENT,
    RETRYABLE,
    failure,
    json_body,
    rejected,
    request,
    require_settings,
    status_update,
)
from smsbridge.settings import Setting
from smsbridge.sms import DeliveryState, InboundSms, OutboundSms, SendResult, StatusUpdate

NAME = "africastalking"
INBOUND_METHODS = frozenset({"POST"})  # how the inbound webhook may arrive

SETTINGS: tuple[Setting, ...] = (
    webhook_token_setting(NAME, "Africa's Talking's callback"),
    Setting("username", "sandbox", "Africa's Talking username (`sandbox` for the sandbox)."),
    Setting("api_key", "", "Africa's Talking API key (sends SMS).", secret=True),
    Setting(
        "sender", "", "Africa's Talking sender id or short code (`from`); empty: AT's default."
    ),
    Setting(
        "api_url",
        "https://api.africastalking.com",
        "Africa's Talking API base URL (sandbox: `https://api.sandbox.africastalking.com`).",
    ),
)


def verify(req: WebhookRequest, config: CarrierConfig) -> None:
    """AT does not sign its callbacks: the URL token (checked by the app) is the check."""


def parse_inbound(req: WebhookRequest, config: CarrierConfig) -> list[InboundSms]:
    params = req.params()
    _, external_id = require(params, "from", "id")
    extra = {k: params[k] for k in ("linkId", "networkCode") if params.get(k)}
    return [
        inbound_sms(
            NAME,
            req,
            params,
            sender="from",
            text="text",
            external_id=external_id.strip(),
            received_at=parse_time(params.get("date"), req.arrived_at),
            recipient=params.get("to") or None,
            extra=extra,
        )
    ]


def inbound_reply(messages: Sequence[InboundSms], config: CarrierConfig) -> WebhookReply:
    return ok_reply()


# -- outbound side (OUTBOUND): parse_status, send, STATUS_MAP, ERRORS ------------------------

# Delivery-report `status` -> our state (CHT maps Sent to forwarded-by-gateway; Submitted and
# Buffered are with the operator; Success is on the handset).
STATUS_MAP: dict[str, DeliveryState] = {
    "Sent": DeliveryState.SENDING,
    "Submitted": DeliveryState.SENT,
    "Buffered": DeliveryState.SENT,
    "Success": DeliveryState.DELIVERED,
    "Rejected": DeliveryState.FAILED,
    "Failed": DeliveryState.FAILED,
    "Expired": DeliveryState.FAILED,
}

# Per-recipient `statusCode` of a send (CHT retries 402/405/500/501/502; we treat a wrong sender
# id or an empty balance as retryable too: the operator can fix them and the SMS still goes).
ERRORS: dict[str, str] = {
    "401": PERMANENT,  # RiskHold
    "402": RETRYABLE,  # InvalidSenderId
    "403": PERMANENT,  # InvalidPhoneNumber
    "404": PERMANENT,  # UnsupportedNumberType
    "405": RETRYABLE,  # InsufficientBalance
    "406": PERMANENT,  # UserInBlacklist
    "407": PERMANENT,  # CouldNotRoute
    "409": PERMANENT,  # DoNotDisturbRejection
    "500": RETRYABLE,  # InternalServerError
    "501": RETRYABLE,  # GatewayError
    "502": RETRYABLE,  # RejectedByGateway
}
# 100 Processed, 101 Sent, 102 Queued: all mean AT accepted it (our SENT).
ACCEPTED = frozenset({"100", "101", "102"})

SEND_NEEDS: Needs = ("username", "api_key")


async def send(http: httpx.AsyncClient, config: CarrierConfig, sms: OutboundSms) -> SendResult:
    """POST /version1/messaging (form); the delivery report URL is set in AT's console."""
    require_settings(config, SEND_NEEDS)
    form = {"username": config.get("username", "sandbox"), "to": sms.to, "message": sms.content}
    if config.get("sender"):
        form["from"] = config.get("sender")
    response = await request(
        http,
        NAME,
        "POST",
        config.get("api_url").rstrip("/") + "/version1/messaging",
        data=form,
        headers={"apiKey": config.get("api_key"), "Accept": "application/json"},
    )
    body = json_body(response)
    if response.status_code >= 300 or not isinstance(body, dict):
        raise rejected(NAME, response, body, ERRORS)
    recipients = (body.get("SMSMessageData") or {}).get("Recipients") or []
    if not recipients:
        message = str((body.get("SMSMessageData") or {}).get("Message", "no recipients"))
        raise failure(NAME, code=None, detail=message, errors=ERRORS, status=400)
    first = recipients[0]
    code = str(first.get("statusCode", ""))
    if code in ACCEPTED:
        return SendResult(
            NAME, str(first.get("messageId")), DeliveryState.SENT, first.get("status")
        )
    raise failure(NAME, code=code, detail=str(first.get("status", "")), errors=ERRORS)


def parse_status(req: WebhookRequest, config: CarrierConfig) -> list[StatusUpdate]:
    params = req.params()
    external_id, status = require(params, "id", "status")
    state = STATUS_MAP.get(status.strip())
    # AT's reports carry its own id only: a `ref` here would not come from AT, so none is read
    reason = params.get("failureReason")
    return status_update(NAME, req, external_id, status, state, reason=reason)


class AfricasTalking(BaseCarrier):
    """Africa's Talking (this module's functions, as a `Carrier`). Its delivery-report URL is
    set in AT's console, not named in each send."""

    name = NAME
    settings = SETTINGS
    inbound_methods = INBOUND_METHODS
    takes_status = True
    sends = True
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
        if config.get("api_key"):  # it would send: the username and the API must agree
            problems += _environment_mismatch(config)
        return problems, warnings


SANDBOX_USERNAME = "sandbox"
SANDBOX_API_URL = "https://api.sandbox.africastalking.com"
PRODUCTION_API_URL = "https://api.africastalking.com"


def _environment_mismatch(config: CarrierConfig) -> list[str]:
    """The sandbox username with the production API or the other way round: AT refuses every
    send (401). Only AT's own hosts are judged (a test or proxy URL is left alone)."""
    host = (urlsplit(config.get("api_url").strip()).hostname or "").lower()
    if host != "africastalking.com" and not host.endswith(".africastalking.com"):
        return []
    sandbox_user = config.get("username", SANDBOX_USERNAME).strip() == SANDBOX_USERNAME
    sandbox_api = host.endswith(".sandbox.africastalking.com")
    user, url = config.env("username"), config.env("api_url")
    if sandbox_user and not sandbox_api:
        return [
            f"{user} is `{SANDBOX_USERNAME}` but {url} is AT's production API ({host}): AT "
            f"refuses every SMS. For the sandbox set {url}={SANDBOX_API_URL}; for production "
            f"set {user} to your AT application's username (and its API key)"
        ]
    if sandbox_api and not sandbox_user:
        return [
            f"{url} is AT's sandbox ({host}) but {user} is not `{SANDBOX_USERNAME}`: AT "
            f"refuses every SMS. For the sandbox set {user}={SANDBOX_USERNAME}; for production "
            f"set {url}={PRODUCTION_API_URL}"
        ]
    return []


CARRIER = AfricasTalking()
