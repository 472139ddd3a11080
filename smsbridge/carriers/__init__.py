"""Carrier modules: one per carrier, each speaking only its wire format (DESIGN.md, rule 3).

`CARRIERS` maps a carrier name to its module. Importing this package declares every carrier's
settings (SMSBRIDGE_<CARRIER>_*).
"""

from __future__ import annotations

from types import ModuleType

from smsbridge.carriers import africastalking, chtgateway, generic, twilio, vonage

CARRIERS: dict[str, ModuleType] = {
    africastalking.NAME: africastalking,
    twilio.NAME: twilio,
    vonage.NAME: vonage,
    generic.NAME: generic,
    chtgateway.NAME: chtgateway,  # pull: phones poll /api/sms (no send, no webhooks)
}
