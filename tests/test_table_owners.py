"""Each table has one owner module: SQL that writes a table's rows (INSERT, UPDATE, DELETE) or
counts them (COUNT, EXISTS) appears only in its owner, so what a row may look like is decided in
one file. Other modules call the owner's functions (reads may join, writes never).

The check reads the SQL string literals of every module under smsbridge/ (docstrings aside),
with Python's own parser: SQL split over several literals or f-string parts is seen whole."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from smsbridge.store import Store

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smsbridge"

OWNERS = {
    "messages": "smsbridge/inbound/messages.py",
    "inbound_parts": "smsbridge/inbound/messages.py",
    "outgoing": "smsbridge/outbound/messages.py",
    "outgoing_reports": "smsbridge/outbound/reports.py",
    "outgoing_parts": "smsbridge/outbound/parts.py",
    "delivery_reports": "smsbridge/outbound/delivery.py",
    "tasks": "smsbridge/tasks.py",
    "kv": "smsbridge/store.py",
    "retention_totals": "smsbridge/retention.py",
    "console_audit": "smsbridge/web/console/audit.py",
    "rate_buckets": "smsbridge/outbound/ratebuckets.py",
}
SCHEMA = "smsbridge/migrations.py"  # creates and migrates every table: not a row owner

# Known breaches still to mend, each with why; an entry that no longer breaches fails the test
# (remove it then).
PENDING: dict[tuple[str, str], str] = {}


def _sql_texts(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal that is not a docstring or other bare expression;
    an f-string's expressions become `?`."""
    tree = ast.parse(source)
    bare = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)
    }
    parts_of_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    texts = []
    for node in ast.walk(tree):
        if id(node) in bare or id(node) in parts_of_fstrings:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else "?" for part in node.values
            )
            texts.append((node.lineno, text))
    return texts


def _touches(sql: str, table: str) -> list[str]:
    """How `sql` writes or counts `table`: the matching fragments (empty: it does not)."""
    name = re.escape(table)
    write = re.compile(
        rf"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
        rf"\s+{name}\b"
    )
    select = re.compile(rf"\bSELECT\b((?:(?!\bSELECT\b|\bFROM\b).)*?)\bFROM\s+{name}\b", re.S)
    found = [m.group(0) for m in write.finditer(sql)]
    for m in select.finditer(sql):
        aggregate = re.search(r"\b(?:COUNT|SUM|TOTAL)\s*\(", m.group(1))
        exists = re.search(r"\bEXISTS\s*\(\s*$", sql[: m.start()])
        if aggregate or exists:
            found.append(m.group(0))
    return found


def breaches(files: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    """(table, file) -> the SQL fragments by which `file` writes or counts a table it does not
    own (`files`: path -> source)."""
    out: dict[tuple[str, str], list[str]] = {}
    for path, source in files.items():
        if path == SCHEMA:
            continue
        for line, text in _sql_texts(source):
            for table, owner in OWNERS.items():
                if path == owner:
                    continue
                for fragment in _touches(text, table):
                    out.setdefault((table, path), []).append(f"line {line}: {fragment}")
    return out


def _package_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_every_table_has_an_owner(tmp_path: Path) -> None:
    with Store(tmp_path / "schema.db") as store:
        tables = {
            row[0]
            for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row[0].startswith("sqlite_")
        }
    assert tables == set(OWNERS)
    for owner in set(OWNERS.values()):
        assert (ROOT / owner).is_file(), owner


def test_only_its_owner_writes_or_counts_a_table() -> None:
    found = breaches(_package_sources())
    unexpected = {key: frags for key, frags in found.items() if key not in PENDING}
    assert not unexpected, "\n".join(
        f"{path} writes or counts `{table}` (owner: {OWNERS[table]}): {'; '.join(frags)}"
        for (table, path), frags in sorted(unexpected.items())
    )
    mended = [key for key in PENDING if key not in found]
    assert not mended, f"no longer a breach, remove from PENDING: {mended}"


def test_each_owner_is_seen_writing_its_tables() -> None:
    """The check reads the real code: every owner's own writes are recognised as writes."""
    sources = _package_sources()
    for table, owner in OWNERS.items():
        texts = [text for _line, text in _sql_texts(sources[owner])]
        assert any(_touches(text, table) for text in texts), (table, owner)


@pytest.mark.parametrize(
    ("source", "table"),
    [
        ('conn.execute("UPDATE messages SET state = ? WHERE uuid = ?", (s, u))', "messages"),
        (
            'c.execute("INSERT OR IGNORE INTO outgoing_reports(ref) VALUES (?)", (r,))',
            "outgoing_reports",
        ),
        ('q = ("SELECT COUNT(*) FROM outgoing "\n     "WHERE text_key = ?")', "outgoing"),
        ('q = f"SELECT kind, COUNT(*), MIN(x) FROM tasks WHERE kind IN ({marks})"', "tasks"),
        ('q = "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE ref = o.ref)"', "tasks"),
        ('c.execute("DELETE FROM delivery_reports WHERE id = ?", (i,))', "delivery_reports"),
    ],
)
def test_the_check_sees_sql_that_writes_or_counts(source: str, table: str) -> None:
    assert list(breaches({"smsbridge/elsewhere.py": source})) == [(table, "smsbridge/elsewhere.py")]


@pytest.mark.parametrize(
    "source",
    [
        'rows = store.query("SELECT * FROM messages WHERE uuid = ?", (u,))',
        'def f():\n    """UPDATE messages SET state: documented, not done."""',
        'rows = c.execute("SELECT ref FROM outgoing WHERE channel = ?", (ch,))',
    ],
)
def test_the_check_lets_reads_and_prose_be(source: str) -> None:
    assert breaches({"smsbridge/elsewhere.py": source}) == {}
