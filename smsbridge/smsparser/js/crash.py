"""`JsCrash`: where CHT's own parser throws (TypeError/SyntaxError). The CHT-level functions
raise it; `parse_sms` turns it into a FormError with a reply the sender can act on."""

from __future__ import annotations


class JsCrash(Exception):
    """CHT would throw on this input. `code` is a short name, `detail` a human explanation."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
