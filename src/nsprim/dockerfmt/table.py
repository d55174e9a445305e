"""docker's tables: the ``table`` directive of ``--format``, the header row
and Go's ``tabwriter`` (no template engine needed for the plain formats
``{{.ID}}\\t{{.Image}}``: listings start fast)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["prepare_format", "header_for", "tabwrite", "plain_fields", "render_plain"]

_FIELD = re.compile(r"\{\{\s*\.([A-Z][A-Za-z0-9_]*)\s*\}\}")


def prepare_format(fmt: str) -> tuple[bool, str]:
    """docker's handling of a ``--format`` value: (is it a table, the
    template).  A leading ``table`` asks for aligned columns with a header;
    ``\\t`` and ``\\n`` typed as two characters become a tab and a newline."""
    text = fmt.strip(" ")
    table = text == "table" or text.startswith(("table ", "table\t"))
    if table:
        text = text[5:].lstrip(" ")
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    return table, text


def header_for(name: str, headers: Mapping[str, str]) -> str:
    """A field's column name (docker's, else the field's words upper-cased)."""
    text = headers.get(name)
    if text is None:
        text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()
    return text


def plain_fields(template: str) -> list[tuple[str, str]] | None:
    """A template of bare fields and text (``{{.ID}}\\t{{.Names}}``) as
    [(text before, field)...] with a last ("text", ""); None for any other."""
    out = []
    pos = 0
    for m in _FIELD.finditer(template):
        out.append((template[pos:m.start()], m.group(1)))
        pos = m.end()
    out.append((template[pos:], ""))
    if any("{{" in text or "}}" in text for text, _ in out):
        return None
    return out


def render_plain(parts: Sequence[tuple[str, str]], rows: Sequence[Any], table: bool,
                 headers: Mapping[str, str]) -> str:
    """Rows through a plain template (AttributeError for a field a row does
    not have: the caller asks the template engine, which words the error)."""
    lines = []
    if table:
        lines.append("".join(t + (header_for(f, headers) if f else "") for t, f in parts))
    for r in rows:
        lines.append("".join(t + (str(getattr(r, f)()) if f else "") for t, f in parts))
    out = "".join(line + "\n" for line in lines)
    return tabwrite(out) if table else out


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's ``tabwriter`` as docker's tables use it (minwidth 10, tab width 1,
    padding 3, spaces): tab-terminated cells aligned per column block."""
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(c) - 1) for c in cells]
    ncols = max((len(c) - 1 for c in cells), default=0)
    for col in range(ncols):
        i = 0
        while i < len(cells):
            if len(cells[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < len(cells) and len(cells[j]) - 1 > col:
                j += 1
            w = max(minwidth, max(len(cells[k][col]) + padding for k in range(i, j)))
            for k in range(i, j):
                widths[k][col] = w
            i = j
    out = []
    for c, ws in zip(cells, widths, strict=True):
        out.append("".join(cell.ljust(w) for cell, w in zip(c, ws, strict=False)) + c[-1])
    return "\n".join(out)
