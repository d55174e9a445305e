"""The CLI in docker's shapes, with real containers: ps's columns, flags and
filters, inspect -f, image/volume/network inspect, the management-command
spellings, --format's templates and their errors (issue 12)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any

import pytest

from .conftest import cli_at as cli
from .test_dockerfmt_shapes import (
    IMAGE_INSPECT,
    IMAGES_JSON,
    NETWORK,
    NETWORK_LS_JSON,
    PS_JSON,
    VOLUME,
    VOLUME_LS_JSON,
    check,
    check_inspect,
)

PS_COLUMNS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


@pytest.fixture
def root(private_root: str) -> str:
    return private_root


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def columns(header: str) -> list[str]:
    return re.split(r" {3,}", header.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(r: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert r.returncode == code and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr == text + "\n"


def test_ps_columns_flags_and_filters(root: str, rootfs: str) -> None:
    port = free_port()
    up = ok(cli(root, "run", "-d", "--name", "web", "-p", f"{port}:80", "-v", "webdata:/data",
                "--rootfs", rootfs, "--", "sh", "-c", "sleep 1000")).strip()
    r = cli(root, "run", "--name", "done", "--network", "none", "--rootfs", rootfs, "--",
            "sh", "-c", "exit 3")
    assert r.returncode == 3
    done = json.loads(ok(cli(root, "inspect", "done")))[0]["Id"]
    # the default table: docker's columns, a row for the running one only
    table = ok(cli(root, "ps")).splitlines()
    assert columns(table[0]) == PS_COLUMNS and len(table) == 2
    row = dict(zip(PS_COLUMNS, columns(table[1]), strict=True))
    assert row["CONTAINER ID"] == up[:12] and row["NAMES"] == "web"
    assert row["COMMAND"] == "\"sh -c 'sleep 1000'\""
    assert row["PORTS"] == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp"  # docker v28
    assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", row["STATUS"])
    assert row["CREATED"].endswith(" ago")
    # every column lines up with its header
    for name in PS_COLUMNS:
        assert table[0].index(name) == table[1].index(row[name]) or name == "CREATED"
    everything = ok(cli(root, "ps", "-a")).splitlines()
    assert len(everything) == 3
    assert re.search(r"Exited \(3\) (Less than a second|\d+ seconds?) ago", everything[1])
    assert ok(cli(root, "ps", "-a", "-q")).split() == [done[:12], up[:12]]  # newest first
    assert ok(cli(root, "ps", "-a", "-q", "--no-trunc")).split() == [done, up]
    assert ok(cli(root, "ps", "-q", "-n", "1")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-q", "-l")).split() == [done[:12]]
    sized = ok(cli(root, "ps", "-s")).splitlines()
    assert columns(sized[0])[-1] == "SIZE" and re.search(r"\d+(\.\d+)?k?B", sized[1])
    # filters: the same key twice is either, different keys are both
    assert ok(cli(root, "ps", "-q", "--filter", "status=exited")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "exited=3")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "exited=0")).split() == []
    assert ok(cli(root, "ps", "-aq", "-f", "name=we")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "name=^/?done$", "-f", "name=web")).split() == \
        [done[:12], up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "name=web", "-f", "status=exited")).split() == []
    assert ok(cli(root, "ps", "-aq", "-f", f"id={done[:5]}")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "before=done")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", f"since={up[:12]}")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "network=none")).split() == [done[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "volume=webdata")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "volume=/data")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "publish=80/tcp")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "publish=81")).split() == []
    assert ok(cli(root, "ps", "-aq", "-f", "expose=79-81")).split() == [up[:12]]
    assert ok(cli(root, "ps", "-aq", "-f", "label=nope")).split() == []
    # --format: json rows, templates, tables
    rows = [json.loads(x) for x in ok(cli(root, "ps", "-a", "--format", "json")).splitlines()]
    for x in rows:
        check(x, PS_JSON, "ps --format json")
    assert [x["Names"] for x in rows] == ["done", "web"]
    assert rows[1]["Ports"] == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp"
    assert rows[1]["Mounts"] == "webdata"
    assert rows[0]["Networks"] == "none" and rows[1]["Networks"] == "bridge"
    assert ok(cli(root, "ps", "-a", "--format", "{{.Names}}:{{.State}}")) == \
        "done:exited\nweb:running\n"
    t = ok(cli(root, "ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}")).splitlines()
    assert columns(t[0]) == ["NAMES", "STATUS"] and t[1].startswith("done   ")


def test_inspect_shapes_and_templates(root: str, rootfs: str) -> None:
    port = free_port()
    ok(cli(root, "run", "-d", "--name", "web", "-p", f"{port}:80", "-m", "64m", "--cpus",
           "0.5", "-e", "A=1", "--rootfs", rootfs, "--", "sleep", "1000"))
    (d,) = json.loads(ok(cli(root, "inspect", "web")))
    check_inspect(d)
    assert d["Path"] == "sleep" and d["Args"] == ["1000"] and d["Config"]["Env"] == ["A=1"]
    assert d["HostConfig"]["Memory"] == 64 << 20 and d["HostConfig"]["NanoCpus"] == 5 * 10**8
    assert d["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort":
                                                           str(port)}]}
    assert d["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0",
                                                         "HostPort": str(port)},
                                                        {"HostIp": "::",
                                                         "HostPort": str(port)}]}
    ns = d["NetworkSettings"]
    # the address, gateway and MAC inspect reports are the container's own
    addr = ok(cli(root, "exec", "web", "sh", "-c",
                  "ip -o -4 addr show eth0; ip route show default; "
                  "cat /sys/class/net/eth0/address"))
    assert f"inet {ns['IPAddress']}/{ns['IPPrefixLen']}" in addr
    assert f"default via {ns['Gateway']}" in addr
    assert addr.splitlines()[-1] == ns["MacAddress"] == ns["Networks"]["bridge"]["MacAddress"]
    # -f: Go templates on the same object
    out = ok(cli(root, "inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.Pid}} "
                 "{{.HostConfig.Memory}} {{.Config.Entrypoint}}", "web"))
    assert out == f"/web running {d['State']['Pid']} {64 << 20} []\n"
    out = ok(cli(root, "inspect", "--format",
                 '{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', "web"))
    assert out == f"{port}\n"
    assert json.loads(ok(cli(root, "inspect", "-f", "{{json .Config}}", "web"))) == d["Config"]
    assert ok(cli(root, "container", "inspect", "-f", "{{.Id}}", "web")) == d["Id"] + "\n"
    # sizes with -s
    (sized,) = json.loads(ok(cli(root, "inspect", "-s", "web")))
    assert isinstance(sized["SizeRw"], int) and sized["SizeRootFs"] >= sized["SizeRw"]
    # not found: what was found is printed, one line per miss, status 1
    r = cli(root, "inspect", "-f", "{{.Name}}", "web", "nosuch")
    assert r.returncode == 1 and r.stdout == "/web\n"
    assert r.stderr == "Error: No such object: nosuch\n"
    r = cli(root, "container", "inspect", "nosuch")
    assert r.returncode == 1 and r.stderr == "Error: No such container: nosuch\n"
    assert r.stdout == "[]\n"


def test_template_errors_are_one_line(root: str, rootfs: str) -> None:
    ok(cli(root, "run", "-d", "--name", "t", "--network", "none", "--rootfs", rootfs, "--",
           "sleep", "1000"))
    one_line_error(cli(root, "ps", "--format", "{{.ID"), 1,
                   "template parsing error: template: :1: unclosed action")
    one_line_error(cli(root, "ps", "--format", "{{nosuch .ID}}"), 1,
                   'template parsing error: template: :1: function "nosuch" not defined')
    one_line_error(cli(root, "inspect", "-f", "{{if}}", "t"), 64,
                   "template parsing error: template: :1: missing value for if")
    one_line_error(cli(root, "images", "--format", "{{.ID"), 1,
                   "template parsing error: template: :1: unclosed action")
    r = cli(root, "ps", "--format", "{{.Nope}}")
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert "can't evaluate field Nope" in r.stderr
    r = cli(root, "inspect", "-f", "{{.Nope.Deeper}}", "t")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("template parsing error: template: :1:2: executing") and \
        len(r.stderr.splitlines()) == 1
    # bad filters: docker's words, nothing listed
    one_line_error(cli(root, "ps", "--filter", "colour=red"), 1,
                   "Error response from daemon: invalid filter 'colour'")
    one_line_error(cli(root, "ps", "--filter", "status=sleepy"), 1,
                   "Error response from daemon: invalid filter 'status=sleepy'")
    one_line_error(cli(root, "ps", "--filter", "noequals"), 1,
                   'invalid argument "noequals" for "-f, --filter" flag: bad format of '
                   "filter (expected name=value)")
    r = cli(root, "ps", "-n", "x")
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and "'x'" in r.stderr


def test_management_spellings_volumes_and_networks(root: str, rootfs: str) -> None:
    cid = ok(cli(root, "container", "run", "-d", "--name", "m", "-v", "mvol:/v", "--rootfs",
                 rootfs, "--", "sleep", "1000")).strip()
    assert ok(cli(root, "container", "ls", "-q")).split() == [cid[:12]]
    assert ok(cli(root, "container", "ps", "-aq")) == ok(cli(root, "ps", "-aq"))
    assert ok(cli(root, "container", "list", "--format", "{{.Names}}")) == "m\n"
    assert ok(cli(root, "container", "exec", "m", "echo", "hi")) == "hi\n"
    # volumes
    vols = [json.loads(x) for x in ok(cli(root, "volume", "ls", "--format", "json")
                                      ).splitlines()]
    (v,) = vols
    check(v, VOLUME_LS_JSON, "volume ls --format json")
    assert v["Name"] == "mvol" and v["Mountpoint"].endswith("/volumes/mvol/_data")
    assert ok(cli(root, "volume", "list", "-q")) == "mvol\n"
    assert ok(cli(root, "volume", "ls", "--format", "{{.Name}} {{.Driver}}")) == "mvol local\n"
    assert columns(ok(cli(root, "volume", "ls")).splitlines()[0]) == ["DRIVER", "VOLUME NAME"]
    (vi,) = json.loads(ok(cli(root, "volume", "inspect", "mvol")))
    check(vi, VOLUME, "volume inspect")
    assert ok(cli(root, "volume", "inspect", "-f", "{{.Mountpoint}}", "mvol")) == \
        v["Mountpoint"] + "\n"
    assert ok(cli(root, "inspect", "-f", "{{.Driver}}", "--type", "volume", "mvol")) == \
        "local\n"
    # networks: docker's three; bridge has the container
    table = ok(cli(root, "network", "ls")).splitlines()
    assert columns(table[0]) == ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    assert [columns(x)[1:] for x in table[1:]] == [["bridge", "bridge", "local"],
                                                   ["host", "host", "local"],
                                                   ["none", "null", "local"]]
    for line in ok(cli(root, "network", "ls", "--format", "json")).splitlines():
        check(json.loads(line), NETWORK_LS_JSON, "network ls --format json")
    assert ok(cli(root, "network", "ls", "-q", "-f", "driver=null")).split() == \
        [columns(table[3])[0]]
    (bridge,) = json.loads(ok(cli(root, "network", "inspect", "bridge")))
    check(bridge, NETWORK, "network inspect")
    (c,) = json.loads(ok(cli(root, "inspect", "m")))
    ip = c["NetworkSettings"]["IPAddress"]
    assert bridge["Containers"][cid]["IPv4Address"] == \
        f"{ip}/{c['NetworkSettings']['IPPrefixLen']}"
    assert bridge["IPAM"]["Config"][0]["Gateway"] == c["NetworkSettings"]["Gateway"]
    assert ok(cli(root, "network", "inspect", "-f", "{{.Driver}}", "host", "none")) == \
        "host\nnull\n"
    r = cli(root, "network", "inspect", "mynet")
    assert r.returncode == 1 and r.stderr == "Error: No such network: mynet\n"
    one_line_error(cli(root, "container", "bogus"), 1, "nsprim: container: unknown command "
                   "'bogus'")
    assert ok(cli(root, "container", "rm", "-f", "m")) == "m\n"
    assert ok(cli(root, "container", "ls", "-aq")) == ""


def test_images_and_image_inspect(root: str, images: dict[str, str]) -> None:
    ref = images["app"]
    ok(cli(root, "pull", ref))
    ok(cli(root, "pull", images["base"]))
    rows = [json.loads(x) for x in ok(cli(root, "images", "--format", "json")).splitlines()]
    for x in rows:
        check(x, IMAGES_JSON, "images --format json")
    repo = ref.rsplit(":", 1)[0]
    app = [x for x in rows if x["Repository"] == repo]
    assert len(app) == 1 and app[0]["Tag"] == "latest"
    table = ok(cli(root, "image", "ls")).splitlines()
    assert columns(table[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert ok(cli(root, "images", "-q", "-f", f"reference={repo}")).split() == [app[0]["ID"]]
    assert ok(cli(root, "images", "-q", repo)).split() == [app[0]["ID"]]
    assert ok(cli(root, "images", "--format", "{{.Repository}}:{{.Tag}}",
                  "--filter", "dangling=false")).count("\n") == 2
    assert ok(cli(root, "images", "-q", "-f", "dangling=true")) == ""
    (d,) = json.loads(ok(cli(root, "image", "inspect", ref)))
    check(d, IMAGE_INSPECT, "image inspect")
    assert d["Id"].startswith("sha256:" + app[0]["ID"])
    assert d["Config"]["Cmd"] == ["cat", "/app/hello.txt"] and d["Config"]["WorkingDir"] == \
        "/app"
    assert ok(cli(root, "inspect", "-f", "{{.Config.Env}}", "--type", "image", ref)).startswith(
        "[")
    # a container from it: the image's config is merged in (bug 12)
    ok(cli(root, "run", "--name", "a", "--network", "none", ref))
    (c,) = json.loads(ok(cli(root, "inspect", "a")))
    check_inspect(c)
    assert c["Path"] == "cat" and c["Args"] == ["/app/hello.txt"]
    assert c["Config"]["Cmd"] == ["cat", "/app/hello.txt"] and c["Config"]["WorkingDir"] == \
        "/app"
    assert "APP=1" in c["Config"]["Env"] and c["Image"] == d["Id"]
    summary: list[dict[str, Any]] = [json.loads(x) for x in ok(cli(
        root, "ps", "-a", "--format", "json", "-f", f"ancestor={repo}")).splitlines()]
    assert [x["Names"] for x in summary] == ["a"]
    assert summary[0]["Command"] == '"cat /app/hello.txt"'
    assert ok(cli(root, "ps", "-aq", "-f", "ancestor=nosuch/image")) == ""
