"""docker's output front end (nsprim.dockerfmt, ps/inspect/images --format)
tried the way an attacker would.

- An image's config comes from a registry or an archive: any JSON in any
  field must neither break ``ps``/``inspect`` (a listing nobody can read is
  a denial of service) nor reach the output in a type docker's clients do
  not expect.
- A container's command is the image author's: ``ps`` writes it quoted, as
  docker does, so terminal escape sequences reach nobody's terminal raw.
- A ``--format`` template runs in the nsprim process: it reaches docker's
  fields and functions only (no Python attributes), and a template that
  calls itself or prints without end stops with one line.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.dockerfmt import shapes
from nsprim.dockerfmt.gotemplate import TemplateError, parse
from nsprim.spec import ContainerSpec

from ..conftest import cli_at
from ..test_dockerfmt_shapes import (
    CONTAINER_SUMMARY,
    IMAGE_CONFIG,
    IMAGE_INSPECT,
    PS_JSON,
    check,
    check_inspect,
)

json_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20)
FIELDS = ["Entrypoint", "Cmd", "Env", "User", "WorkingDir", "ExposedPorts", "Volumes",
          "Labels", "StopSignal", "OnBuild", "Healthcheck", "Shell", "ArgsEscaped"]
hostile_config = st.one_of(
    json_any,
    st.fixed_dictionaries({"config": st.dictionaries(st.sampled_from(FIELDS), json_any),
                           "created": json_any, "architecture": json_any, "os": json_any,
                           "variant": json_any}))


@settings(max_examples=300)
@given(hostile_config)
def test_any_image_config_gives_docker_shapes(config: Any) -> None:
    spec = ContainerSpec(id="d" * 64, name="x", created=1.0, image="evil",
                         image_id="sha256:" + "e" * 64, publish=("8080:80",))
    state = {"status": "running", "pid": 10, "ip": "10.88.0.3",
             "ports": [{"proto": "tcp", "host_ip": "", "host_port": 8080,
                        "container_port": 80}]}
    image_config = config if isinstance(config, dict) else {"config": config}
    d = shapes.container_inspect(spec, state, status="running", image_config=image_config)
    check_inspect(d)
    for key in ("Cmd", "Entrypoint", "Env"):
        assert d["Config"][key] is None or all(isinstance(x, str) for x in d["Config"][key])
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in d["Config"]["Labels"].items())
    s = shapes.container_summary(spec, state, status="running", image_config=image_config)
    check(s, CONTAINER_SUMMARY, "summary")
    check(shapes.ps_row(s).to_json(), PS_JSON, "ps row")
    i = shapes.image_inspect("sha256:" + "e" * 64, image_config)
    assert isinstance(i.pop("Variant", ""), str)  # docker's optional field
    check(i, IMAGE_INSPECT, "image inspect")
    check(i["Config"], IMAGE_CONFIG, "image Config", exact=False)
    json.dumps([d, s, i])


def test_ps_quotes_a_command_with_terminal_escapes(private_root: str, rootfs: str) -> None:
    evil = "\x1b]0;owned\x07\x1b[2J\rsh"
    r = cli_at(private_root, "run", "--name", "esc", "--network", "none", "--rootfs", rootfs,
               "--", "sh", "-c", f"exit 0 # {evil}")
    assert r.returncode == 0, r.stderr
    for args in (["ps", "-a"], ["ps", "-a", "--no-trunc"], ["ps", "-a", "--format", "json"],
                 ["inspect", "esc"]):
        out = cli_at(private_root, *args).stdout
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out, (args, out)
    assert "\\x1b]0;owned\\a" in cli_at(private_root, "ps", "-a", "--no-trunc").stdout


@pytest.mark.parametrize("template", [
    "{{.__class__}}", "{{.to_json}}", "{{.summary}}", "{{.ID.__class__}}",
    '{{index . "__dict__"}}', "{{.Label.__globals__}}",
])
def test_templates_reach_docker_fields_only(template: str) -> None:
    row = shapes.PsRow({"Id": "a" * 64, "Names": ["/x"], "Labels": {}}, now=0)
    with pytest.raises(TemplateError) as e:
        parse(template).execute(row)
    assert str(e.value).startswith("template: :1:") and "\n" not in str(e.value)


def test_runaway_templates_stop_with_one_line() -> None:
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        parse('{{define "a"}}x{{template "a" .}}{{end}}{{template "a" .}}').execute({})
    with pytest.raises(TemplateError, match="output larger than 16 MiB"):
        parse("{{range 900000}}0123456789abcdefghij{{end}}").execute({})
    with pytest.raises(TemplateError, match="more than 1000000 range steps"):
        parse("{{range 3333333333}}{{end}}").execute({})
    with pytest.raises(TemplateError, match="more than 1000000 range steps"):
        parse("{{range 1000}}{{range 1001}}{{end}}{{end}}").execute({})
    with pytest.raises(TemplateError, match="nesting deeper than 100"):
        parse("{{if 1}}" * 5000)
    with pytest.raises(TemplateError, match="nesting deeper than 100"):
        parse("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}")
