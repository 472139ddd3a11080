"""The carriers: one module per carrier, each speaking only its wire format and exposing one
`Carrier` object (smsbridge/carriers/base.py). `CARRIERS` maps a carrier's name to it, in the
order that makes the default route (the first enabled carrier with a webhook token).

`load_settings` reads the settings with every carrier's: what the CLI, the service and the
tests build a real `Settings` with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smsbridge.carriers import (
    africastalking,
    chtgateway,
    generic,
    kannel,
    rapidpro,
    twilio,
    vonage,
)
from smsbridge.carriers.base import Carrier
from smsbridge.settings import Setting, Settings, all_settings

CARRIERS: dict[str, Carrier] = {
    c.name: c
    for c in (
        africastalking.CARRIER,
        twilio.CARRIER,
        vonage.CARRIER,
        generic.CARRIER,
        kannel.CARRIER,
        rapidpro.CARRIER,
        chtgateway.CARRIER,  # pull: phones poll /api/sms (no send, no webhooks)
    )
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """`Settings.from_env` with every carrier's settings (environ: default os.environ)."""
    return Settings.from_env(environ, carriers=CARRIERS, **overrides)


def every_setting() -> tuple[Setting, ...]:
    """Every setting, the carriers' included: README's table, the env example, check-config."""
    return all_settings(CARRIERS)
