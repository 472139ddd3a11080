"""SMS segmentation: how many SMS a text costs, counted the way the network counts.

GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table
(septet-exact: an extension character costs two septets, escape + char, and is never split across
segments); 160 septets in one SMS, 153 per part when concatenated (the UDH takes the rest).
Otherwise UCS-2 (UTF-16 code units): 70 in one SMS, 67 per part, never splitting a surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True)
class Segmentation:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


def encoding_of(text: str) -> Encoding:
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return Encoding.UCS2
    return Encoding.GSM7


def _cost(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1  # a surrogate pair in UTF-16


def segment(text: str) -> Segmentation:
    """Split `text` into the parts a phone would receive. An empty text is one (empty) SMS."""
    encoding = encoding_of(text)
    single, part = (
        (GSM7_SINGLE, GSM7_PART) if encoding is Encoding.GSM7 else (UCS2_SINGLE, UCS2_PART)
    )
    costs = [_cost(ch, encoding) for ch in text]
    units = sum(costs)
    if units <= single:
        return Segmentation(encoding, units, (text,))
    parts: list[str] = []
    start, used = 0, 0
    for i, cost in enumerate(costs):
        if used + cost > part:  # the character would not fit whole: it starts the next part
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return Segmentation(encoding, units, tuple(parts))


def count(text: str) -> int:
    """Number of SMS segments `text` costs."""
    encoding = encoding_of(text)
    single = GSM7_SINGLE if encoding is Encoding.GSM7 else UCS2_SINGLE
    units = sum(_cost(ch, encoding) for ch in text)
    if units <= single:
        return 1
    return segment(text).count
