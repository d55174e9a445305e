"""nsprim.dockerfmt.gotemplate: Go's text/template with docker's functions.

- dockerfmt_go_template_cases.json: templates and what docker's own CLI
  (v28.2.2, Go 1.24) printed for them (`docker version --format T`, whose
  client side renders the template before it needs a daemon);
- docker's documented --format examples, on an inspect-shaped value;
- errors in Go's words; hypothesis properties.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.dockerfmt import shapes
from nsprim.dockerfmt.gotemplate import (
    TemplateError,
    go_float,
    go_json,
    parse,
    prepare_format,
    render_rows,
    tabwrite,
    typed,
)

CASES = json.loads((Path(__file__).parent / "dockerfmt_go_template_cases.json").read_text())


@pytest.mark.parametrize("template,expected", CASES)
def test_same_output_as_docker_cli(template: str, expected: str) -> None:
    assert parse(template).execute(None) == expected


# an inspect result as docker's CLI shows it to a template (typed: a null
# list prints [], a missing field <no value>)
INSPECT: dict[str, Any] = {
    "Id": "c" * 64, "Name": "/web", "LogPath": "/var/lib/nsprim/containers/c/container.log",
    "Args": ["-g", "daemon off;"],
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0},
    "Config": {"Image": "nginx:latest", "Env": ["A=1", "B=2"], "Cmd": None,
               "Labels": {"com.example.tier": "web"}},
    "HostConfig": {"Memory": 268435456, "PortBindings": {}, "PidsLimit": None},
    "NetworkSettings": {
        "Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "19101"}], "443/tcp": None},
        "Networks": {"bridge": {"IPAddress": "10.88.0.5", "MacAddress": "02:42:0a:58:00:05"}}},
}

DOCS = [
    ("{{.Name}} {{.State.Status}}", "/web running"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.88.0.5"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:0a:58:00:05"),
    ("{{.LogPath}}", "/var/lib/nsprim/containers/c/container.log"),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "19101"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{$conf}} {{end}}",
     " 443/tcp -> []  8787/tcp -> [map[HostIp:0.0.0.0 HostPort:19101]] "),
    ("{{json .Config}}", '{"Image":"nginx:latest","Env":["A=1","B=2"],"Cmd":null,'
     '"Labels":{"com.example.tier":"web"}}'),
    ('{{join .Args " , "}}', "-g , daemon off;"),
    ("{{lower .Name}} {{upper .Name}} {{title .State.Status}}", "/web /WEB Running"),
    ('{{split .Config.Image ":"}}', "[nginx latest]"),
    ("{{println .Name}}", "/web\n"),
    ("{{range $elem := .Config.Env}}{{$elem}};{{end}}", "A=1;B=2;"),
    ("{{.State.Pid}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
     "4242 268435456 <nil>"),
    ("{{printf \"%v\" 268435456.0}}", "2.68435456e+08"),  # a float (raw JSON) is Go's
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{.Config.Cmd}}|{{.Nope}}|{{json .Config.Cmd}}", "[]|<no value>|null"),
    ('{{index .Config.Labels "com.example.tier"}}', "web"),
    ("{{len .Config.Env}}", "2"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{- .Name -}}\n", "/web"),
    ("{{with .State}}{{.Status}}/{{.ExitCode}}{{end}}", "running/0"),
]


@pytest.mark.parametrize("template,expected", DOCS)
def test_docker_documented_examples(template: str, expected: str) -> None:
    data = typed(INSPECT, frozenset({"Cmd"}), frozenset(), frozenset({"Ports"}))
    assert parse(template).execute(data) == expected


@pytest.mark.parametrize("template,message", [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{nosuch .Name}}", 'template: :1: function "nosuch" not defined'),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{if .X}}", "template: :1: unexpected EOF"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{range .X}}{{else}}{{else}}{{end}}", "template: :1: expected end; found else"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{.A | 3}}", "template: :1: non executable command in pipeline stage 2"),
])
def test_parse_errors_in_gos_words(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse(template)
    assert str(e.value) == message


@pytest.mark.parametrize("template,message", [
    ("{{.Nope.X}}", 'template: :1:2: executing "" at <.Nope.X>: nil pointer evaluating '
     "interface {}.X"),
    ("{{.Name.X}}", 'template: :1:2: executing "" at <.Name.X>: can\'t evaluate field X in '
     "type string"),
    ("{{index .Args 5}}", 'template: :1:2: executing "" at <index>: error calling index: '
     "index out of range: 5"),
    ("{{len .State.Pid}}", 'template: :1:2: executing "" at <len>: error calling len: len '
     "of type int"),
    ("{{$x}}", None),
])
def test_execution_errors(template: str, message: str | None) -> None:
    with pytest.raises(TemplateError) as e:
        parse(template).execute(INSPECT)
    if message is not None:
        assert str(e.value) == message
    assert "\n" not in str(e.value)


def _row(**kw: Any) -> shapes.PsRow:
    summary = {"Id": "a" * 64, "Names": ["/web"], "Image": "nginx", "Command": "nginx -g x",
               "Created": 1000, "Ports": [], "Labels": {"tier": "web", "team": "x"},
               "State": "running", "Status": "Up 3 minutes", "Mounts": [],
               "NetworkSettings": {"Networks": {"bridge": {}}}}
    summary.update(kw)
    return shapes.PsRow(summary, now=1000 + 200)


def test_methods_with_arguments_on_ps_rows() -> None:
    r = _row()
    assert parse('{{.Label "tier"}}/{{.Label "none"}}').execute(r) == "web/"
    assert parse("{{.Names}} {{.ID}} {{.RunningFor}}").execute(r) == \
        "web aaaaaaaaaaaa 3 minutes ago"
    out = json.loads(parse("{{json .}}").execute(r))
    assert out["Names"] == "web" and out["Labels"] == "team=x,tier=web"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        parse("{{.Nope}}").execute(r)


def test_table_directive_header_and_columns() -> None:
    rows = [_row(), _row(Id="b" * 64, Names=["/a-much-longer-name"], Image="busybox:latest")]
    out = render_rows("table {{.ID}}\\t{{.Image}}\\t{{.Names}}", rows, shapes.HEADERS)
    lines = out.splitlines()
    assert lines[0].split("   ")[0] == "CONTAINER ID"
    assert re.split(r"\s{3,}", lines[0]) == ["CONTAINER ID", "IMAGE", "NAMES"]
    assert lines[1].startswith("aaaaaaaaaaaa   nginx ")
    # columns start at the same place on every line
    words = ["IMAGE", "nginx", "busybox"]
    starts = {line.index(word) for line, word in zip(lines, words, strict=True)}
    assert len(starts) == 1
    assert render_rows("{{.Names}}", rows, shapes.HEADERS) == "web\na-much-longer-name\n"
    assert prepare_format("table") == (True, "")
    assert prepare_format("{{.ID}}\\t{{.Names}}") == (False, "{{.ID}}\t{{.Names}}")


def test_tabwriter_is_gos() -> None:
    # minwidth 10, padding 3: a short column is 10 wide, a long one its width + 3
    assert tabwrite("a\tb\nlonger-cell-x\tc") == "a               b\nlonger-cell-x   c"
    assert tabwrite("x\ty\tz") == "x         y         z"


# ---------------------------------------------------------------- properties

plain = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)))


@given(plain)
def test_text_without_actions_is_itself(text: str) -> None:
    assert parse(text).execute(None) == text


@given(plain)
def test_string_functions(s: str) -> None:
    data = {"S": s}
    assert parse('{{printf "%s" .S}}').execute(data) == s
    assert parse("{{len .S}}").execute(data) == str(len(s.encode()))
    assert parse("{{upper .S}}|{{lower .S}}").execute(data) == f"{s.upper()}|{s.lower()}"
    assert parse("{{json .S}}").execute(data) == json.dumps(s, ensure_ascii=False).replace(
        "\u2028", "\\u2028").replace("\u2029", "\\u2029")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=10)


@given(json_values)
def test_json_round_trips(value: Any) -> None:
    out = parse("{{json .V}}").execute({"V": value})
    assert json.loads(out) == value
    assert go_json(value) == out


@given(st.lists(st.integers(-1000, 1000), max_size=6))
def test_range_and_variables(xs: list[int]) -> None:
    t = parse("{{range $i, $x := .}}{{if $i}},{{end}}{{$x}}{{else}}empty{{end}}")
    assert t.execute(xs) == (",".join(map(str, xs)) if xs else "empty")
    assert parse("{{$n := len .}}{{$n}}").execute(xs) == str(len(xs))


@given(st.text(alphabet=" \t\n", max_size=4), st.text(alphabet=" \t\n", max_size=4),
       st.text(alphabet="abc", min_size=1, max_size=3))
def test_trim_markers(left: str, right: str, word: str) -> None:
    t = f"<{left}{{{{- .W -}}}}{right}>"
    assert parse(t).execute({"W": word}) == f"<{word}>"
    assert parse(f"<{left}{{{{.W}}}}{right}>").execute({"W": word}) == f"<{left}{word}{right}>"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_as_go_and_read_back(f: float) -> None:
    text = go_float(f)
    assert float(text) == f or (f == 0 and float(text) == 0)
    exp = int(math.floor(math.log10(abs(f)))) if f else 0
    assert ("e" in text) == (f != 0 and (exp < -4 or exp >= 6)), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}.$|()"` -abcdeifnrgwthlpxNAS0123:=,', max_size=30))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        t = parse(text)
    except TemplateError as e:
        assert str(e).startswith("template: :") and "\n" not in str(e)
        return
    try:
        t.execute({"A": [1, 2], "N": None, "S": "s"})
    except TemplateError as e:
        assert str(e).startswith("template: :")
