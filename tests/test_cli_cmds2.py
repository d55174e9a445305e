"""Issue 12, the rest of the docker CLI as docker users script it: ``stats
--format`` with Go templates, ``commit --change``, ``events`` of images,
volumes and networks, ``cp`` through a stopped container's volumes."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import cli_at


def _cli(root: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return cli_at(root, *args, **kw)


# ---------------------------------------------------------------- stats

@pytest.fixture
def two_running(private_root: str, fresh_rootfs: str) -> str:
    for name in ("sa", "sb"):
        r = _cli(private_root, "run", "-d", "--name", name, "--network", "none", "-m", "32m",
                 "--rootfs", fresh_rootfs, "sleep", "1000")
        assert r.returncode == 0, r.stderr
    return private_root


def test_stats_format_go_templates(two_running: str) -> None:
    root = two_running
    ids = {}
    r = _cli(root, "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}")
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        row = json.loads(line)
        assert sorted(row) == ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc",
                               "MemUsage", "Name", "NetIO", "PIDs"]
        assert len(row["ID"]) == 64  # --no-trunc
        ids[row["Name"]] = row["ID"]
    assert sorted(ids) == ["sa", "sb"]
    # the engine's functions, conditionals and ranges
    r = _cli(root, "stats", "--no-stream", "--format",
             '{{upper .Name}} {{if eq .PIDs "1"}}one{{else}}many{{end}} '
             '{{index (split .MemUsage " / ") 1}} {{printf "%.5s" .ID}}', "sb", "sa")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"SB one 32MiB {ids['sb'][:5]}",
                                     f"SA one 32MiB {ids['sa'][:5]}"]
    # .Container is the name or id as typed; .ID is truncated by default
    r = _cli(root, "stats", "--no-stream", "--format", "{{.Container}} {{.ID}}", "sa",
             ids["sb"][:10])
    assert r.stdout.splitlines() == [f"sa {ids['sa'][:12]}", f"{ids['sb'][:10]} {ids['sb'][:12]}"]
    # table: docker's headers, Go tabwriter columns
    r = _cli(root, "stats", "--no-stream", "--format",
             "table {{.Container}}\t{{.CPUPerc}}\t{{.MemPerc}}\t{{.PIDs}}", "sa")
    lines = r.stdout.splitlines()
    assert lines[0].split("   ") == ["CONTAINER", "CPU %", "MEM %", "PIDS"] or \
        lines[0].startswith("CONTAINER   CPU %"), r.stdout
    assert lines[1].split()[0] == "sa" and lines[1].split()[-1] == "1"
    # json: one object per line, in docker's shape
    r = _cli(root, "stats", "--no-stream", "--format", "json", "sa")
    assert json.loads(r.stdout)["Container"] == "sa"
    # range over a string split
    r = _cli(root, "stats", "--no-stream", "--format",
             '{{range $i, $p := split .NetIO " / "}}[{{$i}}:{{$p}}]{{end}}', "sa")
    assert r.stdout == "[0:0B][1:0B]\n", r.stdout


def test_stats_bad_format(private_root: str) -> None:
    root = private_root
    r = _cli(root, "stats", "--no-stream", "--format", "{{.Name")
    assert r.returncode == 1 and r.stderr.startswith("template parsing error: ")
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
    r = _cli(root, "stats", "--no-stream", "--format", "{{if}}")
    assert r.returncode == 1 and "template parsing error" in r.stderr
