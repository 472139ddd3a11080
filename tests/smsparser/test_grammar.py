"""The grammars in grammars/*.lark are the formats' structure; the parser's fast scanners must
split every message exactly as the full lark grammars do."""

from __future__ import annotations

import time

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from smsbridge.smsparser import textforms
from smsbridge.smsparser.grammar import GRAMMARS, grammar_text, lark_parser, reference_split
from smsbridge.smsparser.muvuku import split_javarosa, split_muvuku
from smsbridge.smsparser.textforms import segments, tokens

# The characters the formats care about, plus a few ordinary and exotic ones.
TEXT = st.text(alphabet='ab1!#\\" \t\n\x0b\u00a0\u200b\u2028ग', max_size=40)


def test_every_grammar_compiles_with_lalr() -> None:
    for name in GRAMMARS:
        assert grammar_text(name).strip()
        assert lark_parser(name) is not None


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_muvuku_scanner_matches_the_grammar(text: str) -> None:
    message = "1!" + text
    assert split_muvuku(message) == reference_split("muvuku", message)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_javarosa_scanner_matches_the_grammar(text: str) -> None:
    message = "J1!" + text
    assume("!" in text)
    assert split_javarosa(message) == reference_split("javarosa", message)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_compact_tokens_match_the_grammar(text: str) -> None:
    assert tokens(text) == reference_split("compact", text)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_textforms_segments_match_the_grammar(text: str) -> None:
    assert [s for s in segments(text) if s] == reference_split("textforms", text)


def test_examples_from_the_spec() -> None:
    assert split_muvuku("1!0000!16A!") == ["16A!"]
    assert split_javarosa("J1!A!a##b") == ["a", "#b"]
    assert split_javarosa("J1!A!a###b") == ["a", "#", "b"]
    assert split_javarosa("J1!A!x#fa\\cility\\#2") == ["x", "fa\\cility\\#2"]
    assert tokens('sarah"s 24') == ["sarah", "s", "24"]
    assert segments("A 1 # B 2") == ["A 1", "B 2"]


PAIR_TEXT = st.text(alphabet="aZ_.1203-!/ \t\n\r\u2028\u00a0x:", max_size=30)


@settings(max_examples=1000, deadline=None)
@given(PAIR_TEXT)
def test_the_fast_pair_matcher_equals_the_key_value_regex(segment: str) -> None:
    m = textforms._PAIR.search(segment)
    assert textforms.match_pair(segment) == (m.groups() if m else None)


def test_the_pair_matcher_is_fast_on_pathological_line_breaks() -> None:
    segment = ("a" + "-" * 200 + "\n") * 8 + "\nx"  # cubic for the plain regex (a minute)
    start = time.perf_counter()
    assert textforms.match_pair(segment) == ("a", None, None, "x")
    assert time.perf_counter() - start < 0.5
