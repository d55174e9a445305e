"""Go's ``text/template``, as the docker CLI uses it for ``--format``.

No maintained Python implementation of Go templates exists on PyPI (the one
package found wraps Go's own engine through cgo, an early 0.0.x release,
and cannot call Python methods such as ``{{.Label "x"}}``), so this module
implements the language from Go's documentation:

- actions ``{{pipeline}}``, comments ``{{/* */}}``, trim markers ``{{- -}}``;
- ``if``/``else if``/``else``, ``range`` (lists, maps in key order,
  integers; ``$i, $e :=``; ``break``/``continue``), ``with``, ``define``,
  ``template``, ``block``;
- pipelines ``a | b``, variables ``$x := ...`` / ``$x = ...``, ``$``,
  parenthesised pipelines, field chains ``.A.B`` on maps and on objects
  (a method is called, with arguments: ``{{.Label "x"}}``);
- Go's functions (``and or not len index slice print printf println eq ne
  lt le gt ge html js urlquery``) and docker's (``json split join title
  lower upper pad truncate``);
- values print as Go's ``fmt`` prints them (``[a b]``, ``map[k:v]``,
  ``<no value>``, ``1e+06`` for a large float).

:func:`parse` raises :class:`TemplateError` ("template: :1: ...") on a
syntax error; :meth:`Template.execute` raises it ("template: :1:4: executing
"" at <.X>: ...") on an error while running.  :func:`render_table` adds
docker's ``table`` directive and column alignment (Go's ``tabwriter``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence

from nsprim.dockerfmt.table import header_for, prepare_format, tabwrite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TemplateError", "Template", "parse", "go_print", "go_json", "tabwrite", "typed",
           "NilList", "NilMap",
           "render_rows", "prepare_format"]


class TemplateError(ValueError):
    """A template that does not parse, or fails while running."""


class _Missing:
    """A map key that is not there (Go's invalid reflect.Value)."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# ------------------------------------------------------------------- lexer

_ACTION = re.compile(r"\{\{(- )?(.*?)( -)?\}\}", re.S)
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>/\*.*?\*/)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<num>[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|
        (?:[0-9][0-9_]*)?\.?[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?(?:i)?))
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<lparen>\()
  | (?P<rparen>\)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<pipe>\|)
  | (?P<comma>,)
""", re.X | re.S)

_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue", "nil", "true", "false"}


class _Tok:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind: str, text: str, line: int, col: int) -> None:
        self.kind, self.text, self.line, self.col = kind, text, line, col


def _unquote(text: str, line: int) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        # Go's escapes are a subset of JSON's plus \a \v \x \' \U and octal
        body = text[1:-1]
        out = []
        i = 0
        while i < len(body):
            c = body[i]
            if c != "\\":
                out.append(c)
                i += 1
                continue
            e = body[i + 1]
            simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                      "v": "\v", "\\": "\\", "'": "'", '"': '"'}
            if e in simple:
                out.append(simple[e])
                i += 2
            elif e in "xuU":
                n = {"x": 2, "u": 4, "U": 8}[e]
                out.append(chr(int(body[i + 2:i + 2 + n], 16)))
                i += 2 + n
            elif e in "01234567":
                out.append(chr(int(body[i + 1:i + 4], 8)))
                i += 4
            else:
                raise ValueError(e)
        return "".join(out)
    except (ValueError, IndexError):
        raise TemplateError(f"template: :{line}: malformed string: {text}") from None


def _lex_action(body: str, line: int, col: int) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None or m.end() == pos:
            ch = body[pos]
            raise TemplateError(f"template: :{line}: unexpected {_go_char(ch)} in command")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            toks.append(_Tok(kind, m.group(), line + body.count("\n", 0, pos), col + pos))
        pos = m.end()
    return toks


def _go_char(ch: str) -> str:
    return "\"" + ch + "\"" if ch.isprintable() else repr(ch)


# ------------------------------------------------------------------ nodes

# (plain classes: dataclasses cost milliseconds to define, at every start)

class _Node:
    def __init__(self, line: int = 0, col: int = 0) -> None:
        self.line, self.col = line, col


class _Text(_Node):
    def __init__(self, line: int, col: int, text: str) -> None:
        super().__init__(line, col)
        self.text = text


class _Operand(_Node):
    def __init__(self, line: int, col: int, *, src: str = "") -> None:
        super().__init__(line, col)
        self.kind = ""             # field var dot literal ident pipe nil
        self.value: Any = None     # literal value, function/var name, sub-pipeline
        self.chain: tuple[str, ...] = ()
        self.src = src


class _Command(_Node):
    def __init__(self, line: int, col: int, args: list[_Operand] | None = None) -> None:
        super().__init__(line, col)
        self.args = args if args is not None else []


class _Pipeline(_Node):
    def __init__(self, line: int, col: int, *, cmds: list[_Command] | None = None,
                 src: str = "") -> None:
        super().__init__(line, col)
        self.decl: list[str] = []
        self.assign = False
        self.cmds = cmds if cmds is not None else []
        self.src = src


class _Action(_Node):
    def __init__(self, line: int, col: int, pipe: _Pipeline) -> None:
        super().__init__(line, col)
        self.pipe = pipe


class _Branch(_Node):
    def __init__(self, line: int, col: int, kind: str, pipe: _Pipeline) -> None:
        super().__init__(line, col)
        self.kind = kind           # if range with
        self.pipe = pipe
        self.body: list[_Node] = []
        self.orelse: list[_Node] = []


class _Call(_Node):
    def __init__(self, line: int, col: int, name: str, pipe: _Pipeline | None) -> None:
        super().__init__(line, col)
        self.name, self.pipe = name, pipe


class _Loop(_Node):
    def __init__(self, line: int, col: int, kind: str) -> None:
        super().__init__(line, col)
        self.kind = kind           # break continue


# ----------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text: str, funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.text = text
        self.funcs = funcs
        self.defines: dict[str, list[_Node]] = {}
        self.items: list[tuple[str, Any, int, int]] = []  # ("text", str) / ("action", toks)
        self.pos = 0
        self.range_depth = 0
        self.depth = 0
        self._split()

    def _split(self) -> None:
        text = self.text
        pos = 0
        pending_trim = False
        while True:
            start = text.find("{{", pos)
            chunk = text[pos:] if start < 0 else text[pos:start]
            if pending_trim:
                chunk = chunk.lstrip(" \t\r\n")
            line = text.count("\n", 0, pos) + 1
            if start < 0:
                if chunk:
                    self.items.append(("text", chunk, line, 0))
                return
            trim_left = text.startswith("{{- ", start) or text.startswith("{{-\t", start) \
                or text.startswith("{{-\n", start)
            if trim_left:
                chunk = chunk.rstrip(" \t\r\n")
            if chunk:
                self.items.append(("text", chunk, line, 0))
            body_start = start + (3 if trim_left else 2)
            aline = text.count("\n", 0, start) + 1
            end = self._action_end(body_start, aline)
            body = text[body_start:end]
            trim_right = len(body) >= 2 and body[-1] == "-" and body[-2] in " \t\r\n"
            if trim_right:
                body = body[:-1]
            stripped = body.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateError(f"template: :{aline}: unclosed comment")
            else:
                col = start - (text.rfind("\n", 0, start) + 1) + 2
                self.items.append(("action", _lex_action(body, aline, col), aline, col))
            pos = end + 2
            pending_trim = trim_right

    def _action_end(self, pos: int, line: int) -> int:
        """The index of the ``}}`` closing an action (strings and comments
        may hold braces)."""
        text = self.text
        i = pos
        while i < len(text):
            if text.startswith("}}", i):
                return i
            c = text[i]
            if c in "\"'`":
                j = i + 1
                while j < len(text) and text[j] != c:
                    if text[j] == "\\" and c != "`":
                        j += 1
                    if text[j] == "\n" and c != "`":
                        raise TemplateError(f"template: :{line}: unterminated quoted string")
                    j += 1
                if j >= len(text):
                    raise TemplateError(f"template: :{line}: unterminated quoted string")
                i = j + 1
                continue
            if text.startswith("/*", i):
                j = text.find("*/", i + 2)
                if j < 0:
                    raise TemplateError(f"template: :{line}: unclosed comment")
                i = j + 2
                continue
            i += 1
        raise TemplateError(f"template: :{line}: unclosed action")

    # -- structure
    def parse(self) -> list[_Node]:
        nodes, stop = self._list(top=True)
        assert stop is None
        return nodes

    def _list(self, top: bool = False) -> tuple[list[_Node], tuple[str, list[_Tok]] | None]:
        out: list[_Node] = []
        while self.pos < len(self.items):
            kind, val, line, col = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                out.append(_Text(line, col, val))
                continue
            toks: list[_Tok] = val
            if not toks:
                raise TemplateError(f"template: :{line}: missing value for command")
            head = toks[0]
            word = head.text if head.kind == "ident" else ""
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"template: :{line}: unexpected {{{{{word}}}}}")
                return out, (word, toks)
            if word in ("if", "range", "with"):
                out.append(self._branch(word, toks[1:], line, col))
            elif word in ("break", "continue"):
                if self.range_depth == 0:
                    raise TemplateError(f"template: :{line}: {{{{{word}}}}} outside {{{{range}}}}")
                if len(toks) > 1:
                    raise TemplateError(f"template: :{line}: unexpected {toks[1].text!r} "
                                        f"in {word}")
                out.append(_Loop(line, col, word))
            elif word in ("define", "block"):
                if len(toks) < 2 or toks[1].kind not in ("str", "raw"):
                    raise TemplateError(f"template: :{line}: unexpected name in {word}")
                name = _unquote(toks[1].text, line)
                body, stop = self._list()
                if stop is None or stop[0] != "end":
                    raise TemplateError(f"template: :{line}: unexpected EOF")
                self.defines[name] = body
                if word == "block":
                    pipe = self._pipeline(toks[2:], line, col) if len(toks) > 2 else None
                    out.append(_Call(line, col, name, pipe))
            elif word == "template":
                if len(toks) < 2 or toks[1].kind not in ("str", "raw"):
                    raise TemplateError(f"template: :{line}: unexpected name in template "
                                        "clause")
                pipe = self._pipeline(toks[2:], line, col) if len(toks) > 2 else None
                out.append(_Call(line, col, _unquote(toks[1].text, line), pipe))
            else:
                out.append(_Action(line, col, self._pipeline(toks, line, col)))
        if not top:
            raise TemplateError(f"template: :{self.items[-1][2] if self.items else 1}: "
                                "unexpected EOF")
        return out, None

    def _deeper(self, line: int) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise TemplateError(f"template: :{line}: nesting deeper than {_MAX_NESTING}")

    def _branch(self, kind: str, toks: list[_Tok], line: int, col: int) -> _Branch:
        self._deeper(line)
        try:
            return self._branch_in(kind, toks, line, col)
        finally:
            self.depth -= 1

    def _branch_in(self, kind: str, toks: list[_Tok], line: int, col: int) -> _Branch:
        if not toks:
            raise TemplateError(f"template: :{line}: missing value for {kind}")
        node = _Branch(line, col, kind, self._pipeline(toks, line, col,
                                                       range_decl=kind == "range"))
        if kind == "range":
            self.range_depth += 1
        body, stop = self._list()
        if kind == "range":
            self.range_depth -= 1
        node.body = body
        if stop is None:
            raise TemplateError(f"template: :{line}: unexpected EOF")
        if stop[0] == "else":
            rest = stop[1][1:]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
                # {{else if ...}}: a nested branch that shares our {{end}}
                inner = self._branch(rest[0].text, rest[1:], line, col)
                node.orelse = [inner]
                return node
            if rest:
                raise TemplateError(f"template: :{line}: unexpected {rest[0].text!r} in else")
            orelse, stop2 = self._list()
            if stop2 is None or stop2[0] != "end":
                raise TemplateError(f"template: :{line}: expected end; found "
                                    f"{'EOF' if stop2 is None else stop2[0]}")
            node.orelse = orelse
        elif len(stop[1]) > 1:
            raise TemplateError(f"template: :{line}: unexpected {stop[1][1].text!r} in end")
        return node

    def _pipeline(self, toks: list[_Tok], line: int, col: int, *,
                  range_decl: bool = False) -> _Pipeline:
        pipe = _Pipeline(line, col, src=" ".join(t.text for t in toks))
        i = 0
        # declarations: $x := / $x = / $i, $e :=
        if toks and toks[0].kind == "var":
            j = 1
            names = [toks[0].text]
            if range_decl and len(toks) > 2 and toks[1].kind == "comma" and \
                    toks[2].kind == "var":
                names.append(toks[2].text)
                j = 3
            if j < len(toks) and toks[j].kind in ("declare", "assign"):
                pipe.decl = names
                pipe.assign = toks[j].kind == "assign"
                i = j + 1
            elif len(names) > 1:
                raise TemplateError(f"template: :{line}: too many declarations in command")
        cmd = _Command(line, col)
        depth_toks: list[_Tok] = toks[i:]
        k = 0
        while k < len(depth_toks):
            t = depth_toks[k]
            if t.kind == "pipe":
                if not cmd.args:
                    raise TemplateError(f"template: :{line}: missing value for command")
                pipe.cmds.append(cmd)
                cmd = _Command(t.line, t.col)
                k += 1
                continue
            op, k = self._operand(depth_toks, k, line)
            cmd.args.append(op)
        if not cmd.args:
            raise TemplateError(f"template: :{line}: missing value for command")
        pipe.cmds.append(cmd)
        for n, c in enumerate(pipe.cmds):
            first = c.args[0]
            if n > 0 and first.kind in ("literal", "nil") :
                raise TemplateError(f"template: :{line}: non executable command in "
                                    f"pipeline stage {n + 1}")
        return pipe

    def _operand(self, toks: list[_Tok], k: int, line: int) -> tuple[_Operand, int]:
        t = toks[k]
        op = _Operand(t.line, t.col, src=t.text)
        if t.kind == "field":
            op.kind, op.chain = "field", tuple(t.text[1:].split("."))
        elif t.kind == "dot":
            op.kind = "dot"
        elif t.kind == "var":
            name, _, rest = t.text.partition(".")
            op.kind, op.value = "var", name
            if k + 1 < len(toks) and toks[k + 1].kind == "field" and \
                    toks[k + 1].col == t.col + len(t.text):
                op.chain = tuple(toks[k + 1].text[1:].split("."))
                op.src += toks[k + 1].text
                k += 1
        elif t.kind in ("str", "raw"):
            op.kind, op.value = "literal", _unquote(t.text, line)
        elif t.kind == "char":
            s = _unquote('"' + t.text[1:-1] + '"', line)
            if len(s) != 1:
                raise TemplateError(f"template: :{line}: malformed character constant: "
                                    f"{t.text}")
            op.kind, op.value = "literal", ord(s)
        elif t.kind == "num":
            op.kind, op.value = "literal", _number(t.text, line)
        elif t.kind == "ident":
            if t.text in ("true", "false"):
                op.kind, op.value = "literal", t.text == "true"
            elif t.text == "nil":
                op.kind = "nil"
            elif t.text in _KEYWORDS:
                raise TemplateError(f"template: :{line}: unexpected <{t.text}> in command")
            elif t.text not in self.funcs:
                raise TemplateError(f'template: :{line}: function "{t.text}" not defined')
            else:
                op.kind, op.value = "ident", t.text
        elif t.kind == "lparen":
            depth = 1
            j = k + 1
            while j < len(toks):
                if toks[j].kind == "lparen":
                    depth += 1
                elif toks[j].kind == "rparen":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(toks):
                raise TemplateError(f"template: :{line}: unclosed left paren")
            inner = toks[k + 1:j]
            if not inner:
                raise TemplateError(f"template: :{line}: missing value for command")
            self._deeper(line)
            op.kind, op.value = "pipe", self._pipeline(inner, line, t.col)
            self.depth -= 1
            rest = toks[j].text[1:]
            if rest:
                op.chain = tuple(rest[1:].split("."))
            op.src = "(" + op.value.src + ")" + rest
            k = j
        elif t.kind == "rparen":
            raise TemplateError(f"template: :{line}: unexpected right paren")
        else:
            raise TemplateError(f"template: :{line}: unexpected {t.text!r} in operand")
        return op, k + 1


def _number(text: str, line: int) -> int | float:
    t = text.replace("_", "")
    try:
        if t.endswith("i"):
            raise ValueError
        low = t.lower().lstrip("+-")
        if low.startswith(("0x", "0b", "0o")):
            return int(t, 0)
        if re.fullmatch(r"[+-]?[0-9]+", t):
            return int(t, 10) if not (len(low) > 1 and low.startswith("0")) else int(t, 8)
        return float(t)
    except ValueError:
        raise TemplateError(f"template: :{line}: bad number syntax: {text!r}") from None


# ------------------------------------------------------------- printing

def go_float(f: float) -> str:
    """Go's ``%v`` of a float64: the shortest digits, with an exponent from
    1e+06 and below 1e-04 (``strconv``'s ``%g`` rule for the shortest
    precision): a pid of 1234567 decoded from JSON prints 1.234567e+06 in
    docker too."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    from decimal import Decimal

    d = Decimal(repr(f))
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # position of the decimal point relative to the digits
    point = len(digits) + exp
    e10 = point - 1
    neg = "-" if sign else ""
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return neg + ds + "0" * (point - len(ds))
    return f"{neg}{ds[:point]}.{ds[point:]}"


def go_print(v: Any) -> str:
    """A value as Go's ``fmt.Sprint`` writes it."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{go_print(k)}:{go_print(v[k])}"
                                 for k in sorted(v, key=str)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_print(x) for x in v) + "]"
    to_json = getattr(v, "to_json", None)
    if callable(to_json):
        return "{" + " ".join(go_print(x) for x in to_json().values()) + "}"
    return str(v)


class NilList(list):  # type: ignore[type-arg]
    """A nil slice of a typed Go value: prints ``[]``, encodes as ``null``."""


class NilMap(dict):  # type: ignore[type-arg]
    """A nil map of a typed Go value: prints ``map[]``, encodes as ``null``."""


def typed(v: Any, arrays: frozenset[str], objects: frozenset[str],
          array_maps: frozenset[str] = frozenset(), *, _in_array_map: bool = False) -> Any:
    """`v` as docker's typed structs show it to a template: a null field
    named in `arrays` (`objects`) is a nil slice (map); so is a null value
    of a map named in `array_maps` (``NetworkSettings.Ports``)."""
    if isinstance(v, Mapping):
        out: dict[Any, Any] = {}
        for k, x in v.items():
            if x is None and (k in arrays or _in_array_map):
                out[k] = NilList()
            elif x is None and k in objects:
                out[k] = NilMap()
            else:
                out[k] = typed(x, arrays, objects, array_maps,
                               _in_array_map=k in array_maps and isinstance(x, Mapping))
        return out
    if isinstance(v, list):
        return [typed(x, arrays, objects, array_maps) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if v is MISSING or isinstance(v, (NilList, NilMap)):
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    to_json = getattr(v, "to_json", None)
    if callable(to_json):
        return _jsonable(to_json())
    return v


def go_json(v: Any) -> str:
    """docker's ``json`` function: Go's encoder without HTML escaping
    (fields in their order, as Go encodes a struct; integral floats as
    integers)."""
    text = json.dumps(_jsonable(v), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# -------------------------------------------------------------- functions

def _truth(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)) or isinstance(v, Mapping):
        return bool(v)
    return True


def _type_name(v: Any) -> str:
    if v is None or v is MISSING:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
            dict: "map[string]interface {}"}.get(type(v), type(v).__name__)


def _len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, Mapping)):
        return len(v.encode() if isinstance(v, str) else v)
    raise TemplateError(f"len of type {_type_name(v)}")


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, Mapping):
            v = v.get(k, None)
        elif isinstance(v, (list, tuple, str)):
            if isinstance(k, bool) or not isinstance(k, (int, float)) or int(k) != k:
                raise TemplateError(f"cannot index slice/array with type {_type_name(k)}")
            i = int(k)
            if not 0 <= i < len(v):
                raise TemplateError(f"index out of range: {i}")
            v = v.encode()[i] if isinstance(v, str) else v[i]
        elif v is None or v is MISSING:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {_type_name(v)}")
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if not isinstance(v, (str, list, tuple)):
        raise TemplateError(f"can't slice item of type {_type_name(v)}")
    if len(idx) > 2:
        idx = idx[:2]
    bounds = [int(i) for i in idx]
    if any(b < 0 or b > len(v) for b in bounds) or (len(bounds) == 2 and bounds[0] > bounds[1]):
        raise TemplateError(f"index out of range: {bounds}")
    if len(bounds) == 1:
        return v[bounds[0]:]
    return v[bounds[0]:bounds[1]] if bounds else v


def _cmp_values(a: Any, b: Any) -> tuple[Any, Any]:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and \
            not isinstance(b, bool):
        return a, b
    if type(a) is not type(b) and not (a is None or b is None or a is MISSING or
                                       b is MISSING):
        raise TemplateError("incompatible types for comparison")
    return a, b


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    for b in bs:
        x, y = _cmp_values(a, b)
        if (None if x is MISSING else x) == (None if y is MISSING else y):
            return True
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        x, y = _cmp_values(a, b)
        if not isinstance(x, (int, float, str)) or isinstance(x, bool):
            raise TemplateError(f"invalid type for comparison: {_type_name(x)}")
        return op(x, y)
    return f


def _sprint(*args: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(a))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\*|[0-9]+)?(?:\.(\*|[0-9]+)?)?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the common verbs (v s d q t f e g x X o c b %)."""
    from nsprim.dockerfmt.shapes import go_quote

    out = []
    pos = 0
    n = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(args[n]) if n < len(args) else ""
            n += 1
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[n]
        n += 1
        spec = flags.replace("#", "") + (width or "") + (f".{prec or 0}" if prec is not None
                                                          or m.group(0).count(".") else "")
        try:
            if verb == "s" and isinstance(a, (int, float)):
                raise TypeError
            if verb in "vs":
                text = go_print(a)
                if prec is not None:
                    text = text[:int(prec)]
                out.append(format(text, ("<" if "-" in flags else ">") + (width or "")))
            elif verb == "q":
                text = go_quote(go_print(a)) if not isinstance(a, int) or isinstance(a, bool) \
                    else "'" + chr(a) + "'"
                out.append(format(text, ("<" if "-" in flags else ">") + (width or "")))
            elif verb == "t":
                out.append(format(go_print(a), (width or "")))
            elif verb in "dxXobc":
                if isinstance(a, bool) or not isinstance(a, (int, float)) or \
                        (isinstance(a, float) and verb != "c" and not a.is_integer()):
                    raise TypeError
                if verb == "c":
                    out.append(chr(int(a)))
                else:
                    out.append(format(int(a), spec.replace("-", "<") + verb.replace("d", "d")))
            elif verb in "feEgG":
                if isinstance(a, bool) or not isinstance(a, (int, float)):
                    raise TypeError
                if verb in "gG" and prec is None:
                    out.append(format(go_float(float(a)), (width or "")))
                else:
                    s = spec.replace("-", "<")
                    if prec is None and verb in "feE":
                        s += ".6"
                    text = format(float(a), s + verb)
                    if verb in "eE":
                        text = re.sub(r"([eE][+-])(\d)$", r"\g<1>0\2", text)
                    out.append(text)
            else:
                out.append(f"%!{verb}({_type_name(a)}={go_print(a)})")
        except (TypeError, ValueError):
            out.append(f"%!{verb}({_type_name(a)}={go_print(a)})")
    out.append(fmt[pos:])
    if n < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_type_name(a)}={go_print(a)}"
                                            for a in args[n:]) + ")")
    return "".join(out)


def _js(s: Any) -> str:
    text = go_print(s)
    repl = {"\\": "\\\\", "'": "\\'", '"': "\\\"", "<": "\\u003C", ">": "\\u003E",
            "&": "\\u0026", "=": "\\u003D", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(repl.get(c, c) for c in text)


def _urlquery(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote_plus(text)


def _html(text: str) -> str:
    """Go's ``html`` function (``template.HTMLEscapeString``)."""
    repl = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&#34;", "'": "&#39;",
            "\0": "\uFFFD"}
    return "".join(repl.get(c, c) for c in text)


def _title(s: str) -> str:
    """Go's ``strings.Title``: the first letter of each word upper-cased."""
    out = []
    prev = " "
    for c in s:
        out.append(c.upper() if not (prev.isalnum() or prev == "_") else c)
        prev = c
    return "".join(out)


def _str_arg(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise TemplateError(f"wrong type for value; expected string; got {_type_name(v)}")
    return v


def _int_arg(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TemplateError(f"wrong type for value; expected int; got {_type_name(v)}")
    return int(v)


def _and(*args: Any) -> Any:
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if _truth(a):
            return a
    return args[-1]


FUNCS: dict[str, Callable[..., Any]] = {
    # Go's builtins
    "and": _and, "or": _or, "not": lambda a: not _truth(a), "len": _len, "index": _index,
    "slice": _slice, "print": _sprint, "printf": lambda f, *a: go_sprintf(_str_arg("printf", f),
                                                                          *a),
    "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
    "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered(lambda a, b: a < b), "le": _ordered(lambda a, b: a <= b),
    "gt": _ordered(lambda a, b: a > b), "ge": _ordered(lambda a, b: a >= b),
    "html": lambda *a: _html(_sprint(*a)),
    "js": lambda *a: _js(_sprint(*a)), "urlquery": lambda *a: _urlquery(_sprint(*a)),
    # docker's
    "json": go_json,
    "split": lambda s, sep: _str_arg("split", s).split(sep) if sep else list(s),
    "join": lambda xs, sep: _str_arg("join", sep).join(go_print(x) for x in xs or []),
    "title": lambda s: _title(_str_arg("title", s)),
    "lower": lambda s: _str_arg("lower", s).lower(),
    "upper": lambda s: _str_arg("upper", s).upper(),
    "pad": lambda s, pre, post: " " * _int_arg(pre) + _str_arg("pad", s) + " " * _int_arg(post),
    "truncate": lambda s, n: _str_arg("truncate", s)[:_int_arg(n)] if len(s) > _int_arg(n)
    else s,
}
# and/or take at least one argument; _and/_or with none would fail below
_MIN_ARGS = {"and": 1, "or": 1, "not": 1, "len": 1, "index": 1, "slice": 1, "eq": 1,
             "ne": 2, "lt": 2, "le": 2, "gt": 2, "ge": 2, "json": 1, "split": 2, "join": 2,
             "title": 1, "lower": 1, "upper": 1, "pad": 3, "truncate": 2, "printf": 1}
_MAX_ARGS = {"not": 1, "len": 1, "ne": 2, "lt": 2, "le": 2, "gt": 2, "ge": 2, "json": 1,
             "split": 2, "join": 2, "title": 1, "lower": 1, "upper": 1, "pad": 3,
             "truncate": 2, "slice": 4}


# --------------------------------------------------------------- executor

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, node: _Node, src: str, msg: str) -> None:
        super().__init__(msg)
        self.node, self.src, self.msg = node, src, msg


_MAX_NESTING = 100  # if/range/with and parentheses inside each other
_MAX_STEPS = 1_000_000  # range iterations in one execution (they need not print)
_MAX_OUTPUT = 16 << 20  # a template that loops (nearly) forever stops here
_MAX_DEPTH = 100  # nested {{template}} calls (a template that calls itself)


class Template:
    """A parsed template; :meth:`execute` runs it on a value."""

    def __init__(self, source: str, nodes: list[_Node], defines: dict[str, list[_Node]],
                 funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.source, self.nodes, self.defines, self.funcs = source, nodes, defines, funcs

    def execute(self, data: Any) -> str:
        out: list[str] = []
        ex = _Exec(self, out)
        try:
            ex.walk(self.nodes, data, [("$", data)])
        except _ExecError as e:
            raise TemplateError(f'template: :{e.node.line}:{e.node.col}: executing "" at '
                                f"<{e.src}>: {e.msg}") from None
        return "".join(out)


class _Exec:
    def __init__(self, tmpl: Template, out: list[str]) -> None:
        self.t = tmpl
        self.out = out
        self.size = 0
        self.depth = 0
        self.steps = 0

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > _MAX_OUTPUT:
            raise _ExecError(_Node(), "", "output larger than 16 MiB")
        self.out.append(text)

    def walk(self, nodes: Sequence[_Node], dot: Any, scope: list[tuple[str, Any]]) -> None:
        mark = len(scope)
        try:
            for n in nodes:
                self.node(n, dot, scope)
        finally:
            del scope[mark:]

    def node(self, n: _Node, dot: Any, scope: list[tuple[str, Any]]) -> None:
        if isinstance(n, _Text):
            self.emit(n.text)
        elif isinstance(n, _Action):
            v = self.pipeline(n.pipe, dot, scope)
            if not n.pipe.decl:
                self.emit(go_print(v))
        elif isinstance(n, _Branch):
            self.branch(n, dot, scope)
        elif isinstance(n, _Loop):
            raise _Break() if n.kind == "break" else _Continue()
        elif isinstance(n, _Call):
            body = self.t.defines.get(n.name)
            if body is None:
                raise _ExecError(n, f"template {n.name}",
                                 f'no such template "{n.name}"')
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise _ExecError(n, f"template {n.name}", "exceeded maximum template depth")
            arg = self.pipeline(n.pipe, dot, scope) if n.pipe is not None else None
            self.walk(body, arg, [("$", arg)])
            self.depth -= 1

    def branch(self, n: _Branch, dot: Any, scope: list[tuple[str, Any]]) -> None:
        mark = len(scope)
        try:
            if n.kind == "range":
                self.range(n, dot, scope)
                return
            v = self.pipeline(n.pipe, dot, scope)
            if _truth(v):
                self.walk(n.body, v if n.kind == "with" else dot, scope)
            else:
                self.walk(n.orelse, dot, scope)
        finally:
            del scope[mark:]

    def range(self, n: _Branch, dot: Any, scope: list[tuple[str, Any]]) -> None:
        pipe = n.pipe
        decl = pipe.decl
        inner = _Pipeline(pipe.line, pipe.col, cmds=pipe.cmds, src=pipe.src)
        v = self.pipeline(inner, dot, scope)
        items: list[tuple[Any, Any]]
        if isinstance(v, Mapping):
            items = [(k, v[k]) for k in sorted(v, key=str)]
        elif isinstance(v, (list, tuple)):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            if v > _MAX_STEPS:
                raise _ExecError(n, pipe.src, f"more than {_MAX_STEPS} range steps")
            items = [(i, i) for i in range(v)]
        elif v is None or v is MISSING:
            items = []
        else:
            raise _ExecError(n, pipe.src, f"range can't iterate over {go_print(v)}")
        if not items:
            self.walk(n.orelse, dot, scope)
            return
        self.steps += len(items)
        if self.steps > _MAX_STEPS:
            raise _ExecError(n, pipe.src, f"more than {_MAX_STEPS} range steps")
        for k, e in items:
            mark = len(scope)
            if len(decl) == 1:
                scope.append((decl[0], e))
            elif len(decl) == 2:
                scope.append((decl[0], k))
                scope.append((decl[1], e))
            try:
                self.walk(n.body, e, scope)
            except _Break:
                break
            except _Continue:
                continue
            finally:
                del scope[mark:]

    def lookup(self, name: str, scope: list[tuple[str, Any]], node: _Node) -> Any:
        for k, v in reversed(scope):
            if k == name:
                return v
        raise _ExecError(node, name, f"undefined variable: {name}")

    def pipeline(self, p: _Pipeline, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        value: Any = _NOARG
        for c in p.cmds:
            value = self.command(c, dot, scope, value)
        if p.decl:
            if p.assign:
                for i in range(len(scope) - 1, -1, -1):
                    if scope[i][0] == p.decl[0]:
                        scope[i] = (p.decl[0], value)
                        break
                else:
                    raise _ExecError(p, p.decl[0], f"undefined variable: {p.decl[0]}")
            else:
                scope.append((p.decl[0], value))
        return value

    def command(self, c: _Command, dot: Any, scope: list[tuple[str, Any]], final: Any) -> Any:
        first = c.args[0]
        args = c.args[1:]
        if first.kind == "ident":
            fn = self.t.funcs[first.value]
            if first.value in ("and", "or"):
                vals = []
                for a in args:
                    v = self.arg(a, dot, scope)
                    vals.append(v)
                    if (first.value == "and") != _truth(v):
                        return v
                if final is not _NOARG:
                    vals.append(final)
                if not vals:
                    raise _ExecError(first, first.src, f"wrong number of args for "
                                     f"{first.value}: want at least 1 got 0")
                return fn(*vals)
            vals = [self.arg(a, dot, scope) for a in args]
            if final is not _NOARG:
                vals.append(final)
            lo = _MIN_ARGS.get(first.value, 0)
            hi = _MAX_ARGS.get(first.value)
            if len(vals) < lo or (hi is not None and len(vals) > hi):
                want = f"{lo}" if hi == lo else f"at least {lo}"
                raise _ExecError(first, first.src, f"wrong number of args for {first.value}: "
                                 f"want {want} got {len(vals)}")
            try:
                return fn(*vals)
            except TemplateError as e:
                raise _ExecError(first, first.src,
                                 f"error calling {first.value}: {e}") from None
            except (TypeError, ValueError, AttributeError) as e:
                raise _ExecError(first, first.src,
                                 f"error calling {first.value}: {e}") from None
        extra = [self.arg(a, dot, scope) for a in args]
        if final is not _NOARG:
            extra.append(final)
        if first.kind == "field":
            return self.chain(first, dot, first.chain, extra)
        if first.kind == "var":
            base = self.lookup(first.value, scope, first)
            if first.chain:
                return self.chain(first, base, first.chain, extra)
            if extra:
                raise _ExecError(first, first.src, f"can't give argument to non-function "
                                 f"{first.src}")
            return base
        if first.kind == "pipe":
            base = self.pipeline(first.value, dot, scope)
            if first.chain:
                return self.chain(first, base, first.chain, extra)
            if extra:
                raise _ExecError(first, first.src, f"can't give argument to non-function "
                                 f"{first.src}")
            return base
        if extra:
            raise _ExecError(first, first.src, f"can't give argument to non-function "
                             f"{first.src}")
        if first.kind == "dot":
            return dot
        if first.kind == "nil":
            raise _ExecError(first, "nil", "nil is not a command")
        return first.value

    def arg(self, a: _Operand, dot: Any, scope: list[tuple[str, Any]]) -> Any:
        if a.kind == "field":
            return self.chain(a, dot, a.chain, [])
        if a.kind == "var":
            base = self.lookup(a.value, scope, a)
            return self.chain(a, base, a.chain, []) if a.chain else base
        if a.kind == "pipe":
            base = self.pipeline(a.value, dot, scope)
            return self.chain(a, base, a.chain, []) if a.chain else base
        if a.kind == "dot":
            return dot
        if a.kind == "nil":
            return None
        if a.kind == "ident":
            return self.command(_Command(a.line, a.col, [a]), dot, scope, _NOARG)
        return a.value

    def chain(self, node: _Operand, v: Any, names: Sequence[str], args: list[Any]) -> Any:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            v = self.field(node, v, name, args if last else [], last)
        return v

    def field(self, node: _Operand, v: Any, name: str, args: list[Any], last: bool) -> Any:
        if isinstance(v, Mapping):
            if args:
                raise _ExecError(node, node.src, f"{name} is not a method but has arguments")
            return v.get(name, MISSING) if name in v else MISSING
        if v is None or v is MISSING:
            raise _ExecError(node, node.src, f"nil pointer evaluating interface {{}}.{name}")
        attr = getattr(v, name, None) if name[:1].isupper() else None
        if attr is None or isinstance(v, (str, int, float, bool, list, tuple)):
            raise _ExecError(node, node.src,
                             f"can't evaluate field {name} in type {_type_name(v)}")
        if callable(attr):
            try:
                return attr(*args)
            except TypeError:
                raise _ExecError(node, node.src, f"wrong number of args for {name}: "
                                 f"got {len(args)}") from None
        if args:
            raise _ExecError(node, node.src, f"{name} has arguments but cannot be invoked "
                             "as function")
        return attr


_NOARG: Any = object()


def parse(text: str, funcs: Mapping[str, Callable[..., Any]] | None = None) -> Template:
    """Parse a template (TemplateError, Go's message, if it does not)."""
    fns = dict(FUNCS, **(funcs or {}))
    p = _Parser(text, fns)
    nodes = p.parse()
    return Template(text, nodes, p.defines, fns)


# ---------------------------------------------------------------- docker's

class _Header:
    """The value a table's header row is rendered with: each field gives its
    column name."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        text = header_for(name, self._headers)
        return lambda *a: text if not a else f"{text} {a[0]}".upper()

    def to_json(self) -> dict[str, str]:
        return dict(self._headers)


def render_rows(fmt: str, rows: Sequence[Any], headers: Mapping[str, str]) -> str:
    """Render `rows` with a docker ``--format`` value: one line per row; a
    ``table`` format gets a header row and Go-tabwriter columns (what
    ``docker ps`` prints).  TemplateError as docker words it."""
    table, text = prepare_format(fmt)
    tmpl = parse(text)
    lines = []
    if table:
        lines.append(tmpl.execute(_Header(headers)))
    for r in rows:
        lines.append(tmpl.execute(r))
    out = "".join(line + "\n" for line in lines)
    return tabwrite(out) if table else out
