"""docker's output conventions for listings and inspect, shared by the
commands of ps, images, volume ls, network ls and inspect.

- ``--format``: nothing or ``table`` gives the command's default table,
  ``table TEMPLATE`` a table of that template, ``json`` a JSON object per
  line, anything else a Go template per line (``\\t`` typed as two
  characters is a tab);
- ``-q``: the ids only (when no other format is asked for);
- a template that does not parse: ``template parsing error: ...`` on one
  line, status 1 (64 for inspect, as docker), nothing else printed;
- ``--filter``: ``key=value``, the same key given twice matches either,
  different keys must all match.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence

from nsprim.dockerfmt.filters import FilterError, label_match, parse_filters

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["emit", "go_indent_json", "inspect_output", "FilterError", "label_match",
           "parse_filters"]

EXIT_ERROR = 1
EXIT_USAGE = 64  # docker's status for an inspect template that does not parse


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def emit(fmt: str | None, rows: Sequence[Any], *, default: str, headers: Mapping[str, str],
         quiet: bool = False, quiet_field: str = "ID") -> int:
    """Print `rows` (objects with docker's fields as methods and
    ``to_json()``) in the way `fmt` asks."""
    from nsprim.dockerfmt.table import plain_fields, prepare_format, render_plain

    fmt = (fmt or "").strip()
    if quiet and fmt in ("", "table"):
        sys.stdout.write("".join(str(getattr(r, quiet_field)()) + "\n" for r in rows))
        return 0
    if fmt in ("", "table"):
        fmt = default
    if fmt != "json":  # the plain formats (every default) need no template engine
        table, text = prepare_format(fmt)
        parts = plain_fields(text)
        if parts is not None:
            try:
                sys.stdout.write(render_plain(parts, rows, table, headers))
                return 0
            except AttributeError:
                pass  # the engine words the error
    from nsprim.dockerfmt.gotemplate import TemplateError, go_json, parse, render_rows

    if fmt == "json":
        out = "".join(go_json(r) + "\n" for r in rows)
    else:
        try:
            out = render_rows(fmt, rows, headers)
        except TemplateError as e:
            try:
                parse(fmt[5:] if fmt.startswith("table") else fmt)
            except TemplateError:
                _err(f"template parsing error: {e}")
                return EXIT_ERROR
            _err(str(e))
            return EXIT_ERROR
    sys.stdout.write(out)
    return 0


def go_indent_json(value: Any) -> str:
    """JSON as docker's CLI prints an inspect result: 4-space indent, Go's
    escaping of ``<``, ``>``, ``&``, U+2028 and U+2029 inside strings."""
    text = json.dumps(value, indent=4, ensure_ascii=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                 ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return text


def inspect_output(fmt: str | None, objects: Iterable[Any]) -> tuple[str, list[str]]:
    """(the text to print, the errors) of ``inspect [-f FMT]`` of
    `objects`; a template that does not parse raises TemplateError."""
    fmt = fmt or ""
    objs = list(objects)
    if not fmt:
        return go_indent_json(objs) + "\n", []
    from nsprim.dockerfmt.gotemplate import go_json, parse
    from nsprim.dockerfmt.shapes import template_view

    if fmt == "json":
        return "".join(go_json(o) + "\n" for o in objs), []
    from nsprim.dockerfmt.gotemplate import TemplateError, prepare_format

    tmpl = parse(prepare_format(fmt)[1])
    out, errors = [], []
    for o in objs:
        try:
            out.append(tmpl.execute(template_view(o)) + "\n")
        except TemplateError as e:
            errors.append(f"template parsing error: {e}")
    return "".join(out), errors


