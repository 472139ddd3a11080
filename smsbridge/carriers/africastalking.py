"""Africa's Talking: inbound SMS callbacks, sends and delivery reports (the outbound side is
at the end of this module).

AT POSTs `application/x-www-form-urlencoded` to the callback URL registered in its console:
`from`, `to`, `text`, `date`, `id`, and `linkId` for premium SMS. AT does not sign callbacks, so
the secret token in our URL is the only authentication. AT only looks at the status code; we
answer 200 with an empty body once the message is on disk.

Console: SMS → Callback URLs → Incoming Messages =
`https://<public host>/carriers/africastalking/<SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN>/inbound`.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from smsbridge.carriers.base import (
    BaseCarrier,
    CarrierConfig,
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
    reason, ref = params.get("failureReason"), params.get("ref")
    return status_update(NAME, req, external_id, status, state, reason=reason, ref=ref)


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


CARRIER = AfricasTalking()
