"""Split mode: a long SMS as standalone numbered SMS (`standalone_parts`), each fitting one SMS
with its `k/N ` label, counted septet-exact (GSM-7) or in UTF-16 code units (UCS-2)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsbridge.segments import (
    BREAK_WINDOW,
    GSM7_EXTENSION,
    Encoding,
    encoding_of,
    segment,
    standalone_parts,
)

LABEL = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*) ")


def units(part: str, encoding: Encoding) -> int:
    """Septets (an extension character is escape + char) or UTF-16 code units: measured here
    independently of the module under test."""
    if encoding is Encoding.GSM7:
        return sum(2 if ch in GSM7_EXTENSION else 1 for ch in part)
    return len(part.encode("utf-16-le")) // 2


def unlabelled(parts: list[str]) -> list[str]:
    """The parts without their labels, checking each label is `k/N ` with k counting up."""
    bodies = []
    for k, part in enumerate(parts, start=1):
        match = LABEL.match(part)
        assert match is not None, part[:10]
        assert (int(match.group(1)), int(match.group(2))) == (k, len(parts))
        bodies.append(part[match.end() :])
    return bodies


@pytest.mark.parametrize("text", ["", "a" * 159, "a" * 160, "€" * 80, "अ" * 70, "😀" * 35])
def test_a_text_that_fits_one_sms_is_not_split_and_gets_no_label(text: str) -> None:
    assert standalone_parts(text) == [text]


def test_161_septets_become_two_labelled_sms() -> None:
    assert standalone_parts("a" * 161) == ["1/2 " + "a" * 156, "2/2 " + "a" * 5]


def test_each_part_fills_one_sms_to_its_last_septet() -> None:
    parts = standalone_parts("a" * 312)  # 2 x (160 - len("k/2 "))
    assert [len(p) for p in parts] == [160, 160]
    assert len(standalone_parts("a" * 313)) == 3


def test_an_extension_character_that_would_straddle_the_boundary_starts_the_next_part() -> None:
    # 155 septets + € (2) = 157 > 156, the room beside "1/2 "
    parts = standalone_parts("a" * 155 + "€" + "b" * 10)
    assert parts == ["1/2 " + "a" * 155, "2/2 €" + "b" * 10]
    assert units(parts[0], Encoding.GSM7) == 159


def test_an_extension_character_that_fits_exactly_ends_the_part() -> None:
    parts = standalone_parts("a" * 154 + "€" + "b" * 10)
    assert parts == ["1/2 " + "a" * 154 + "€", "2/2 " + "b" * 10]
    assert units(parts[0], Encoding.GSM7) == 160


def test_an_emoji_at_the_ucs2_boundary_is_never_split() -> None:
    # UCS-2: 70 code units, 66 beside "1/2 "; 65 + the emoji's 2 > 66
    parts = standalone_parts("अ" * 65 + "😀" + "अ" * 10)
    assert parts == ["1/2 " + "अ" * 65, "2/2 😀" + "अ" * 10]
    for part in parts:
        part.encode("utf-16-le")  # a lone surrogate would raise


def test_an_emoji_that_fits_exactly_ends_the_part() -> None:
    parts = standalone_parts("अ" * 64 + "😀" + "अ" * 10)
    assert parts[0] == "1/2 " + "अ" * 64 + "😀"
    assert units(parts[0], Encoding.UCS2) == 70


def test_nine_parts_fill_with_one_digit_labels_and_ten_need_two_digits_each() -> None:
    nine = standalone_parts("a" * 156 * 9)  # 9 x (160 - len("k/9 "))
    assert len(nine) == 9 and all(len(p) == 160 for p in nine)
    ten = standalone_parts("a" * (156 * 9 + 1))  # one more: ten parts, longer labels
    assert len(ten) == 10
    assert ten[0].startswith("1/10 a") and ten[9].startswith("10/10 a")
    assert [len(p) for p in ten[:9]] == [160] * 9  # 5-septet labels, 155 septets of text
    assert "".join(unlabelled(ten)) == "a" * (156 * 9 + 1)


def test_a_hundred_parts_get_three_digit_labels() -> None:
    # 99 parts hold 9 x 155 + 90 x 154 = 15255 septets; one more needs 3-digit labels for all
    assert len(standalone_parts("a" * 15_255)) == 99
    parts = standalone_parts("a" * 15_256)
    assert len(parts) == 100
    assert parts[99].startswith("100/100 ")
    assert all(units(p, Encoding.GSM7) <= 160 for p in parts)


def test_a_part_ends_after_a_space_near_its_end_so_words_stay_whole() -> None:
    text = " ".join(["Visit", "the", "clinic", "tomorrow", "at", "ten"] * 20)
    parts = standalone_parts(text)
    bodies = unlabelled(parts)
    for body in bodies[:-1]:
        assert body.endswith(" ")  # the break stays with the part it ends
    assert "".join(bodies) == text
    words = set(text.split())
    for body in bodies:
        assert set(body.split()) <= words  # no word cut in two


def test_a_word_longer_than_the_break_window_is_cut_at_the_last_unit() -> None:
    text = "a " + "b" * 300
    parts = standalone_parts(text)
    assert parts[0] == "1/2 a " + "b" * 154  # the only space is far from the end: filled
    assert units(parts[0], Encoding.GSM7) == 160


def test_a_space_just_outside_the_break_window_is_not_used() -> None:
    room = 156  # beside "1/2 "
    before = "a" * (room - BREAK_WINDOW - 1) + " "  # the space leaves BREAK_WINDOW units free
    parts = standalone_parts(before + "b" * 100)
    assert len(parts[0]) == 160


@given(st.text(max_size=1200))
def test_every_part_fits_one_sms_and_the_parts_rejoin(text: str) -> None:
    parts = standalone_parts(text)
    encoding = encoding_of(text)
    single = 160 if encoding is Encoding.GSM7 else 70
    if units(text, encoding) <= single:
        assert parts == [text]
        return
    assert len(parts) >= 2
    assert "".join(unlabelled(parts)) == text
    for part in parts:
        assert units(part, encoding) <= single
        assert segment(part).count == 1
        part.encode("utf-16-le")  # no lone surrogate


@given(st.text(alphabet="ab €{} ", min_size=150, max_size=2500))
def test_gsm7_parts_are_septet_exact_with_extension_characters(text: str) -> None:
    parts = standalone_parts(text)
    if len(parts) == 1:
        assert units(text, Encoding.GSM7) <= 160
        return
    assert "".join(unlabelled(parts)) == text
    assert all(units(p, Encoding.GSM7) <= 160 for p in parts)
    # no part could have taken the first character of the next one (nor its word)
    for part, following in itertools.pairwise(parts):
        first = LABEL.sub("", following, count=1)[:1]
        assert (
            units(part, Encoding.GSM7) + units(first, Encoding.GSM7) > 160
            or " " in part[-BREAK_WINDOW:]
        )
