"""Plain-text tables for the CLI's listings (`--json` gives the same rows to scripts)."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, a header line and a rule under it.
    Cells are shown with `str`, None as empty; newlines inside a cell are shown as `⏎`."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    return str(value).replace("\r\n", "⏎").replace("\n", "⏎")


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
