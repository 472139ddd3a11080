"""Value types that flow through the bridge. Frozen dataclasses; states are StrEnums."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DeliveryState(StrEnum):
    """Where an outgoing SMS is. States only move forward (see `RANK`)."""

    QUEUED = "queued"  # stored, waiting for its send task
    HELD = "held"  # stopped by the loop guard; an operator may release or drop it
    SENDING = "sending"  # handed to a carrier or phone, no answer yet
    SENT = "sent"  # the carrier accepted it
    DELIVERED = "delivered"  # the handset got it
    FAILED = "failed"  # given up; `reason` says why ("expired", a carrier error, ...)


# Forward-only ordering: a report may move a message to a state of higher rank only.
RANK: dict[DeliveryState, int] = {
    DeliveryState.QUEUED: 0,
    DeliveryState.HELD: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.DELIVERED: 3,
    DeliveryState.FAILED: 3,
}


def well_formed(text: str) -> str:
    """`text` with every lone UTF-16 surrogate (half of a character, e.g. from a concatenated
    SMS split in the middle of an emoji, or `"\\ud800"` in a JSON body) replaced by U+FFFD.
    Valid pairs are joined. A lone surrogate cannot be stored or encoded as UTF-8, and it is
    not a character: replacing it keeps the rest of the message instead of refusing it all."""
    if text.isascii():  # nearly every SMS field, and no surrogate is ASCII
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@dataclass(frozen=True)
class InboundSms:
    """One SMS as a carrier or phone handed it to us. `sender` is E.164 when it could be
    normalised, otherwise the raw value. `external_id` is the carrier's id (None if it has none)."""

    carrier: str
    external_id: str | None
    sender: str
    text: str
    received_at: datetime
    recipient: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("external_id", "sender", "text", "recipient"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, well_formed(value))
        object.__setattr__(
            self, "extra", {well_formed(k): well_formed(v) for k, v in self.extra.items()}
        )


@dataclass(frozen=True)
class OutboundSms:
    """One SMS CHT wants sent. `cht_id` is CHT's message uuid (our unique key)."""

    cht_id: str
    to: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery report from a carrier or phone, already mapped to our states."""

    carrier: str
    external_id: str
    state: DeliveryState
    reason: str | None = None
    carrier_status: str | None = None
    at: datetime | None = None
    ref: str | None = None  # our own reference when the carrier echoes it (client-ref, ?ref=)


@dataclass(frozen=True)
class SendResult:
    """What a carrier said when it accepted an SMS: its id for the message (delivery reports
    name it) and the state that acceptance means (normally SENT; FAILED, with its `reason`,
    for an SMS the carrier took only in part that must not be sent again: carriers/vonage.py
    `taken_in_part`)."""

    carrier: str
    external_id: str | None
    state: DeliveryState = DeliveryState.SENT
    carrier_status: str | None = None
    reason: str | None = None  # with FAILED: the carrier took the SMS only in part (its why)
