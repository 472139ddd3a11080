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


# -- split mode: long SMS as standalone numbered SMS (outbound/parts.py) -------------------------

BREAK_WINDOW = 20
"""A standalone part ends after the last space or line break among its last BREAK_WINDOW units
(septets or UTF-16 code units) of room, so words stay whole; with none there, it is filled to
its last unit and the word is cut."""

_BREAKS = frozenset(" \n")


def prefix(k: int, n: int) -> str:
    """The label of part `k` of `n` (`2/3 `): digits, a slash and a space, one septet each."""
    return f"{k}/{n} "


def standalone_parts(text: str) -> list[str]:
    """`text` as standalone SMS, each starting `k/N ` and fitting ONE SMS with its label (160
    septets in GSM-7, 70 UTF-16 code units in UCS-2; the text's encoding decides for every
    part). A text that fits one SMS comes back whole, unlabelled. An extension character (two
    septets) or a surrogate pair is never split; a part ends at a word break when one is near
    its end (BREAK_WINDOW). Without their labels the parts rejoin into `text`.

    N is found by iteration: the labels of `N` parts may need more room than those of fewer
    (`9/9 ` vs `10/10 `), so the text is cut again with the count it came to until it comes
    to the count it was cut for. The count never falls from one round to the next, so this
    ends."""
    encoding = encoding_of(text)
    single = GSM7_SINGLE if encoding is Encoding.GSM7 else UCS2_SINGLE
    costs = [_cost(ch, encoding) for ch in text]
    if sum(costs) <= single:
        return [text]
    n = 1
    while True:
        cuts = _cut(text, costs, single, n)
        if len(cuts) <= n:  # labels of n parts hold the text: n is the count
            return [prefix(k, n) + part for k, part in enumerate(cuts, start=1)]
        n = len(cuts)


def _cut(text: str, costs: list[int], single: int, n: int) -> list[str]:
    """`text` cut into consecutive pieces, piece k holding what one SMS of `single` units has
    room for beside the label `k/n `."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        budget = single - len(prefix(len(pieces) + 1, n))
        end, used, last_break = start, 0, None
        while end < len(text) and used + costs[end] <= budget:
            used += costs[end]
            end += 1
            if text[end - 1] in _BREAKS and budget - used < BREAK_WINDOW:
                last_break = end
        if end < len(text) and last_break is not None:
            end = last_break  # the rest of the word goes to the next part
        pieces.append(text[start:end])
        start = end
    return pieces
