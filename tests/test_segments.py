from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsbridge.segments import Encoding, count, encoding_of, segment


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", Encoding.GSM7, 1),
        ("a" * 160, Encoding.GSM7, 1),
        ("a" * 161, Encoding.GSM7, 2),
        ("a" * 306, Encoding.GSM7, 2),
        ("a" * 307, Encoding.GSM7, 3),
        ("€" * 80, Encoding.GSM7, 1),  # 160 septets: extension chars count two
        ("€" * 81, Encoding.GSM7, 2),
        ("a" * 159 + "€", Encoding.GSM7, 2),
        ("Habari, Jane! Ziara ya ANC ni kesho @ 10:00.", Encoding.GSM7, 1),
        ("é£¥ÄÖÑÜ§¿äöñüà", Encoding.GSM7, 1),
        ("ç", Encoding.UCS2, 1),  # lower-case ç is not in GSM-7 (only Ç is)
        ("अ" * 70, Encoding.UCS2, 1),
        ("अ" * 71, Encoding.UCS2, 2),
        ("अ" * 134, Encoding.UCS2, 2),
        ("अ" * 135, Encoding.UCS2, 3),
        ("😀" * 35, Encoding.UCS2, 1),  # 70 code units
        ("😀" * 36, Encoding.UCS2, 2),
    ],
)
def test_segment_counts(text: str, encoding: Encoding, segments: int) -> None:
    assert encoding_of(text) is encoding
    assert count(text) == segments
    assert segment(text).count == segments


def test_extension_char_is_never_split_across_parts() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = segment(text).parts
    assert parts[0] == "a" * 152  # 152 + 2 > 153: the euro starts part two
    assert parts[1].startswith("€")


def test_surrogate_pair_is_never_split() -> None:
    text = "a" + "😀" * 40  # UCS-2 because of the emoji
    for part in segment(text).parts:
        assert len(part.encode("utf-16-le")) // 2 <= 67
        part.encode("utf-16-le")  # would raise on a lone surrogate
    assert "".join(segment(text).parts) == text


@given(st.text(max_size=600))
def test_parts_rejoin_and_fit(text: str) -> None:
    seg = segment(text)
    assert "".join(seg.parts) == text
    assert count(text) == seg.count
    if seg.count > 1:
        limit = 153 if seg.encoding is Encoding.GSM7 else 67
        for part in seg.parts:
            if seg.encoding is Encoding.GSM7:
                units = sum(2 if c in "\f^{}\\[~]|€" else 1 for c in part)
            else:
                units = len(part.encode("utf-16-le")) // 2
            assert 0 < units <= limit
