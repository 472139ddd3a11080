"""Loop guard: stop SMS loops before they burn credit (medic/cht-core#4715).

Two rules, both decided from counts the store already keeps (so they survive a restart):
- the same text to the same number more than `loop_limit` times within `loop_window` seconds:
  the SMS is held (not sent; visible to the operator, who may release or drop it);
- a burst of inbound SMS from one number (more than `autoreply_burst` within a minute, the mark of
  an auto-responder at the other end): automatic replies to that number are held.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smsbridge.settings import Settings

BURST_WINDOW = 60.0

REASON_LOOP = "loop"
REASON_BURST = "autoreply-burst"


@dataclass(frozen=True)
class LoopLimits:
    loop_limit: int
    loop_window: float
    autoreply_burst: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopLimits:
        return cls(settings.loop_limit, settings.loop_window, settings.autoreply_burst)


def text_key(to: str, content: str) -> str:
    """A digest of (number, text): what "the same text to the same number" compares, so the
    store need not index message text."""
    return hashlib.sha256(f"{to}\x00{content}".encode()).hexdigest()[:32]


def verdict(
    limits: LoopLimits, *, same_text_sent: int, inbound_last_minute: int, automatic: bool
) -> str | None:
    """Why this SMS must be held, or None to let it go.

    `same_text_sent`: earlier SMS with the same text to the same number inside the loop window
    (not counting held ones); `inbound_last_minute`: SMS received from that number in the last
    `BURST_WINDOW` seconds; `automatic`: the SMS is an automatic reply rather than one a person
    wrote (CHT's messages through /api/sms are treated as automatic: CHT cannot tell us)."""
    if limits.loop_limit and same_text_sent >= limits.loop_limit:
        return REASON_LOOP
    if automatic and limits.autoreply_burst and inbound_last_minute > limits.autoreply_burst:
        return REASON_BURST
    return None
