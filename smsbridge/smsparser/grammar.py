"""The SMS grammars in `grammars/*.lark`: locating them (installed package or source tree),
compiling them once with lark (LALR, contextual lexer), and reading their terminals.

The grammars are the definition of each format's structure; the runtime does not run lark on
every SMS (a full LALR parse per message is too slow for the throughput target). Instead:

- `textforms.py` compiles its scanners from the grammars' terminal regexes (`terminal`), so a
  token's shape is written once, in the .lark file;
- `muvuku.py` splits on "!" and "#" with string operations (javarosa's escaped `\\#` with one
  small regex): these grammars' terminals are just the runs between delimiters;
- `reference_split` parses with the full lark grammar and a Transformer, and hypothesis tests
  (tests/test_parser_grammars.py) hold every fast scanner equal to it on arbitrary text."""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer

from smsbridge.smsparser.js.numbers import UNDEFINED

GRAMMARS = ("muvuku", "javarosa", "compact", "textforms")
_START = {"compact": ["start", "greedy"], "textforms": ["start", "pair_parts"]}


def grammar_text(name: str) -> str:
    """The text of grammars/<name>.lark: package data when installed, else the source tree."""
    packaged = importlib.resources.files("smsbridge").joinpath("grammars", f"{name}.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parents[2] / "grammars" / f"{name}.lark"
    return source.read_text(encoding="utf-8")


@cache
def lark_parser(name: str) -> Lark:
    return Lark(
        grammar_text(name),
        parser="lalr",
        lexer="contextual",
        start=_START.get(name, ["start"]),
        maybe_placeholders=False,
    )


def terminal(name: str, term: str) -> str:
    """The Python regex of terminal `term` in grammars/<name>.lark."""
    return str(lark_parser(name).get_terminal(term).pattern.to_regexp())


class _Muvuku(Transformer[Token, list[Any]]):
    def start(self, items: list[Any]) -> list[Any]:
        return list(items)

    def header_only(self, items: list[Any]) -> Any:
        return UNDEFINED

    def header_with_first(self, items: list[Any]) -> Any:
        return items[-1]

    def value(self, items: list[Any]) -> str:
        return str(items[0]) if items else ""


class _Javarosa(Transformer[Token, list[str]]):
    def start(self, items: list[Any]) -> list[str]:
        return items[-1]

    def data(self, items: list[Any]) -> list[str]:
        parts = [""]
        for item in items:
            if isinstance(item, Token) and item.type in ("HASH", "VTAB"):
                parts.append("")
            else:
                parts[-1] = item
        return parts

    def part(self, items: list[Any]) -> str:
        return str(items[0])

    vt_part = part


def reference_split(name: str, text: str) -> list[Any]:
    """Split `text` with the full lark grammar (slow; for tests and debugging)."""
    p = lark_parser(name)
    if name == "muvuku":
        return _Muvuku().transform(p.parse(text))
    if name == "javarosa":
        return _Javarosa().transform(p.parse(text))
    if name == "compact":
        tree = p.parse(text, start="start")
        return [str(t) for t in tree.children]
    tree = p.parse(text, start="start")
    return [str(seg.children[0]) for seg in tree.children if not isinstance(seg, Token)]
