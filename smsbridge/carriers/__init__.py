"""Carrier modules: one per carrier, each speaking only its wire format (DESIGN.md, rule 3).

`CARRIERS` maps a carrier name to its module. Importing this package declares every carrier's
settings (SMSBRIDGE_<CARRIER>_*).
"""

from __future__ import annotations

from types import ModuleType

CARRIERS: dict[str, ModuleType] = {}
