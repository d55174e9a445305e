"""Issue 12, the rest of the docker CLI as docker users script it: ``stats
--format`` with Go templates, ``commit --change``, ``events`` of images,
volumes and networks, ``cp`` through a stopped container's volumes."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------- commit

CHANGES = ['ENV A=1 B=$PATH', 'EXPOSE 8080 53/udp', 'ENTRYPOINT ["/bin/echo", "ep"]',
           'LABEL team=core "two words"=yes', "USER 1000:1000", "WORKDIR /w",
           "WORKDIR sub", "VOLUME /data /cache", "ONBUILD RUN echo hi", "STOPSIGNAL SIGINT",
           "HEALTHCHECK --interval=5s --retries=2 CMD true"]


def _check_changed(cfg: dict[str, object]) -> None:
    c = cfg["config"]
    assert isinstance(c, dict)
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["A"] == "1" and env["B"] == env["PATH"] and env["PATH"]
    assert {"8080/tcp", "53/udp"} <= set(c["ExposedPorts"])
    assert c["Entrypoint"] == ["/bin/echo", "ep"] and c.get("Cmd") is None  # as docker
    assert c["Labels"]["team"] == "core" and c["Labels"]["two words"] == "yes"
    assert c["User"] == "1000:1000" and c["WorkingDir"] == "/w/sub"
    assert c["Volumes"] == {"/data": {}, "/cache": {}}
    assert c["OnBuild"] == ["RUN echo hi"] and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                "Retries": 2}


def test_commit_change(private_root: str, images: dict[str, str]) -> None:
    from pathlib import Path

    from nsprim.images.store import ImageStore

    root = private_root
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    assert _cli(root, "run", "--name", "cc", "--network", "none", images["app"], "sh", "-c",
                "echo x > /x; mkdir -p /w/sub").returncode == 0
    args = [a for ch in CHANGES for a in ("-c", ch)]
    import time

    t0 = f"{time.time():.3f}"
    r = _cli(root, "commit", *args, "-m", "msg", "--author", "Ann <a@b>", "--pause=false",
             "cc", "localhost/changed:v1")
    assert r.returncode == 0, r.stderr
    # docker's events: the container's commit, the new name's tag (no "load")
    evs = _events(root, t0, f"{time.time():.3f}")
    assert [(e["Type"], e["Action"]) for e in evs] == [("container", "commit"),
                                                       ("image", "tag")], evs
    assert evs[0]["Actor"]["Attributes"]["comment"] == "msg"
    assert evs[1]["Actor"]["Attributes"]["name"] == "localhost/changed:v1"
    img = ImageStore(str(Path(root) / "images")).get("localhost/changed:v1")
    assert img.id == r.stdout.strip()
    _check_changed(img.config)
    assert img.config["author"] == "Ann <a@b>"
    assert img.config["history"][-1]["comment"] == "msg"
    # the new image runs with the changed config: ENTRYPOINT, WORKDIR, ENV
    r = _cli(root, "run", "--rm", "--network", "none", "--user", "0", "localhost/changed:v1",
             "$A")
    assert (r.returncode, r.stdout) == (0, "ep $A\n"), r.stderr
    r = _cli(root, "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
             "localhost/changed:v1", "-c", "pwd; echo $A; cat /x")
    assert r.stdout == "/w/sub\n1\nx\n", r.stderr
    # CMD after ENTRYPOINT keeps both; a later CMD wins
    r = _cli(root, "commit", "-c", "CMD echo one", "-c", "ENTRYPOINT []", "-c", "CMD [\"a\"]",
             "cc", "localhost/changed:v2")
    assert r.returncode == 0, r.stderr
    c2 = ImageStore(str(Path(root) / "images")).get("localhost/changed:v2").config["config"]
    assert (c2["Entrypoint"], c2["Cmd"]) == ([], ["a"])


@pytest.mark.parametrize("change,message", [
    ("RUN echo hi", "run is not a valid change command"),
    ("COPY a /b", "copy is not a valid change command"),
    ("FROM busybox", "from is not a valid change command"),
    ("ARG x=1", "arg is not a valid change command"),
    ("SHELL [\"/bin/bash\"]", "shell is not a valid change command"),
    ("NOSUCH x", "nosuch is not a valid change command"),
    ("USER", "USER requires exactly one argument"),
    ("EXPOSE eighty", "invalid containerPort: eighty"),
    ("HEALTHCHECK --bogus=1 CMD true", "unknown flag: --bogus"),
    ("ONBUILD ONBUILD RUN x", "ONBUILD isn't allowed as an ONBUILD trigger"),
])
def test_commit_bad_change(private_root: str, fresh_rootfs: str, change: str,
                           message: str) -> None:
    from pathlib import Path

    root = private_root
    from nsprim.cli.commit import apply_changes

    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[") + "$"):
        apply_changes({"config": {}}, [change])
    if "RUN" not in change:  # the CLI's answer, for one of them (containers cost time)
        return
    r = _cli(root, "create", "--name", "bad", "--network", "none", "--rootfs", fresh_rootfs,
             "true")
    assert r.returncode == 0, r.stderr
    before = sorted(os.listdir(Path(root)))
    r = _cli(root, "commit", "-c", change, "bad", "localhost/never:v1")
    assert (r.returncode, r.stderr, r.stdout) == (
        1, f"Error response from daemon: {message}\n", "")
    assert sorted(os.listdir(Path(root))) == before
    assert "localhost/never" not in _cli(root, "images").stdout


def test_commit_change_through_the_daemon(docker_daemon: Any, images: dict[str, str]) -> None:
    d = docker_daemon
    assert d.docker("pull", images["app"]).returncode == 0
    r = d.docker("run", "--name", "dcommit", "--network", "none", images["app"], "sh", "-c",
                 "echo y > /y")
    assert r.returncode == 0, r.stderr
    try:
        args = [a for ch in CHANGES for a in ("-c", ch)]
        r = d.docker("commit", *args, "-m", "via api", "dcommit", "localhost/dchanged:v1")
        assert r.returncode == 0, r.stderr
        r = d.docker("image", "inspect", "localhost/dchanged:v1", "--format", "{{json .}}")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        _check_changed({"config": info["Config"]})
        r = d.docker("commit", "-c", "RUN rm -rf /", "dcommit", "localhost/dchanged:v2")
        assert r.returncode == 1
        assert r.stderr.strip() == "Error response from daemon: run is not a valid change command"
    finally:
        d.docker("rm", "-f", "dcommit")
        d.docker("rmi", "localhost/dchanged:v1")


# --------------------------------------------------------------- events

def _events(root: str, since: str, until: str, *args: str) -> list[dict[str, Any]]:
    r = _cli(root, "events", "--since", since, "--until", until, "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def _acts(evs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["Type"], e["Action"]) for e in evs]


def test_events_of_images_volumes_networks(private_root: str, images: dict[str, str],
                                           registry: Any, tmp_path: Any) -> None:
    import time

    root = private_root
    t0 = f"{time.time():.3f}"
    ref = images["base"]
    assert _cli(root, "pull", "-q", ref).returncode == 0
    assert _cli(root, "tag", ref, "localhost/evtag:v1").returncode == 0
    assert _cli(root, "save", "-o", str(tmp_path / "s.tar"), "localhost/evtag:v1").returncode == 0
    pushed = f"{registry.host}/events/pushed:v1"
    assert _cli(root, "tag", ref, pushed).returncode == 0
    assert _cli(root, "push", pushed).returncode == 0
    assert _cli(root, "rmi", "localhost/evtag:v1", pushed).returncode == 0
    assert _cli(root, "load", "-i", str(tmp_path / "s.tar")).returncode == 0
    assert _cli(root, "volume", "create", "evvol").returncode == 0
    r = _cli(root, "run", "--rm", "--name", "evc", "--label", "team=ev", "-v", "evvol:/data",
             ref, "sh", "-c", "echo hi > /data/f")
    assert r.returncode == 0, r.stderr
    assert _cli(root, "volume", "rm", "evvol").returncode == 0
    assert _cli(root, "rmi", "localhost/evtag:v1").returncode == 0
    t1 = f"{time.time():.3f}"
    evs = _events(root, t0, t1)
    for e in evs:  # docker's shape
        assert set(e) >= {"Type", "Action", "Actor", "scope", "time", "timeNano"}
        assert set(e["Actor"]) == {"ID", "Attributes"} and e["scope"] == "local"
        assert e["time"] == e["timeNano"] // 10**9
    imgs = [(a, e["Actor"]["Attributes"]["name"]) for e in evs if e["Type"] == "image"
            for a in [e["Action"]]]
    assert imgs[1] == ("tag", "localhost/evtag:v1"), imgs
    acts = [a for a, _ in imgs]
    assert acts[:9] == ["pull", "tag", "save", "tag", "push", "untag", "untag", "load",
                        "untag"], imgs
    assert acts[9:] in ([], ["delete"]), imgs  # delete: if the loaded image had that name only
    assert imgs[4] == ("push", pushed.rsplit(":", 1)[0])
    vols = [(e["Action"], e["Actor"]["ID"]) for e in evs if e["Type"] == "volume"]
    assert vols == [("create", "evvol"), ("mount", "evvol"), ("unmount", "evvol"),
                    ("destroy", "evvol")], vols
    mount = next(e for e in evs if e["Type"] == "volume" and e["Action"] == "mount")
    assert mount["Actor"]["Attributes"]["destination"] == "/data"
    assert mount["Actor"]["Attributes"]["read/write"] == "true"
    nets = [e for e in evs if e["Type"] == "network"]
    assert [e["Action"] for e in nets] == ["connect", "disconnect"], nets
    cid = next(e["Actor"]["ID"] for e in evs if e["Type"] == "container")
    assert all(e["Actor"]["Attributes"] == {"name": "bridge", "type": "bridge",
                                            "container": cid} for e in nets)
    # filters
    assert _acts(_events(root, t0, t1, "--filter", "type=volume", "--filter",
                         "event=create")) == [("volume", "create")]
    assert [e["Action"] for e in _events(root, t0, t1, "--filter", "volume=evvol")] == \
        ["create", "mount", "unmount", "destroy"]
    assert [e["Action"] for e in _events(root, t0, t1, "--filter", "network=bridge")] == \
        ["connect", "disconnect"]
    assert [e["Action"] for e in _events(root, t0, t1, "--filter",
                                         "image=localhost/evtag:v1")][:2] == ["tag", "save"]
    labelled = _events(root, t0, t1, "--filter", "label=team=ev")
    assert labelled and {e["Type"] for e in labelled} == {"container"}
    assert _events(root, t0, t1, "--filter", "label=team=other") == []
    assert {e["Actor"]["Attributes"]["name"] for e in
            _events(root, t0, t1, "--filter", "container=evc")} == {"evc"}
    # --until before everything: nothing
    assert _events(root, str(float(t0) - 100), str(float(t0) - 50)) == []
    # a Go template over docker's events.Message
    r = _cli(root, "events", "--since", t0, "--until", t1, "--filter", "type=volume",
             "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}")
    assert r.stdout.splitlines()[0] == "volume create evvol local", r.stdout
    r = _cli(root, "events", "--since", t0, "--until", t1, "--filter", "nosuch=x")
    assert r.returncode == 125 and "nosuch=x" in r.stderr and r.stdout == ""
    r = _cli(root, "events", "--since", t0, "--until", t1, "--format", "{{.Type")
    assert r.returncode == 1 and r.stderr.startswith("template parsing error")


def test_daemon_events_stream_the_same(docker_daemon: Any, images: dict[str, str]) -> None:
    import time

    d = docker_daemon
    t0 = f"{time.time():.3f}"
    assert cli_at(d.root, "volume", "create", "dvol").returncode == 0  # by the CLI
    assert d.docker("volume", "create", "dvol2").returncode == 0       # by the daemon
    assert d.docker("pull", images["base"]).returncode == 0
    assert d.docker("tag", images["base"], "localhost/dtag:v1").returncode == 0
    assert d.docker("rmi", "localhost/dtag:v1").returncode == 0
    assert d.docker("volume", "rm", "dvol", "dvol2").returncode == 0
    t1 = f"{time.time():.3f}"
    r = d.docker("events", "--since", t0, "--until", t1, "--filter", "type=volume",
                 "--format", "{{json .}}")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(e["Action"], e["Actor"]["ID"]) for e in evs] == [
        ("create", "dvol"), ("create", "dvol2"), ("destroy", "dvol"), ("destroy", "dvol2")]
    r = d.docker("events", "--since", t0, "--until", t1, "--filter", "type=image",
                 "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pull ") and "tag localhost/dtag:v1" in lines
    assert "untag localhost/dtag:v1" in lines
    # live: an event written after the stream began comes through it
    ev = subprocess.Popen(["docker", "events", "--filter", "type=volume", "--format",
                           "{{.Action}} {{.Actor.ID}}"], stdout=subprocess.PIPE, text=True,
                          env=d.env)
    try:
        time.sleep(0.5)
        assert cli_at(d.root, "volume", "create", "dvol3").returncode == 0
        assert ev.stdout is not None
        assert ev.stdout.readline() == "create dvol3\n"
    finally:
        ev.terminate()
        ev.communicate(timeout=10)
        cli_at(d.root, "volume", "rm", "dvol3")


# ------------------------------------------------------------ cp, stopped

def test_cp_stopped_container_sees_volumes_and_binds(private_root: str, images: dict[str, str],
                                                     tmp_path: Any) -> None:
    from pathlib import Path

    root = private_root
    bind = Path(tmp_path) / "bind"
    bind.mkdir()
    (bind / "b.txt").write_text("from the host\n")
    robind = Path(tmp_path) / "robind"
    robind.mkdir()
    r = _cli(root, "run", "--name", "stopped", "--network", "none", "-v", "cpvol:/data",
             "-v", "/anon", "-v", f"{bind}:/mnt/b", "-v", f"{robind}:/mnt/ro:ro",
             "--mount", "type=volume,source=cpvol2,target=/data/nested",
             images["base"], "sh", "-c",
             "echo vol > /data/v.txt; echo anon > /anon/a.txt; echo n > /data/nested/n.txt; "
             "echo layer > /l.txt")
    assert r.returncode == 0, r.stderr
    out = Path(tmp_path) / "out"
    out.mkdir()
    # out of the volume, the anonymous one, the nested one, the bind
    for src, want in (("/data/v.txt", "vol\n"), ("/anon/a.txt", "anon\n"),
                      ("/data/nested/n.txt", "n\n"), ("/mnt/b/b.txt", "from the host\n"),
                      ("/l.txt", "layer\n")):
        r = _cli(root, "cp", f"stopped:{src}", str(out / "f"))
        assert r.returncode == 0, (src, r.stderr)
        assert (out / "f").read_text() == want, src
    # a directory: the volume's content, the nested volume's inside it
    r = _cli(root, "cp", "stopped:/data", str(out / "d"))
    assert r.returncode == 0, r.stderr
    assert {"nested", "v.txt"} <= set(os.listdir(out / "d"))  # (and what the image had)
    assert (out / "d" / "nested" / "n.txt").read_text() == "n\n"
    # into the volume and the bind: the volume's own directory gets it
    (out / "new.txt").write_text("new\n")
    assert _cli(root, "cp", str(out / "new.txt"), "stopped:/data/").returncode == 0
    assert _cli(root, "cp", str(out / "new.txt"), "stopped:/mnt/b/").returncode == 0
    assert (bind / "new.txt").read_text() == "new\n"
    r = _cli(root, "run", "--rm", "--network", "none", "-v", "cpvol:/v", images["base"],
             "cat", "/v/new.txt")
    assert r.stdout == "new\n", r.stderr
    # a read-only bind stays read-only
    r = _cli(root, "cp", str(out / "new.txt"), "stopped:/mnt/ro/")
    assert r.returncode == 1 and "read-only" in r.stderr.lower(), r.stderr
    assert os.listdir(robind) == []
    # the container's layer did not get what went to the volume
    upper = [d for d in (Path(root) / "containers").iterdir()][0] / "upper"
    assert not (upper / "data" / "new.txt").exists()
    # nothing of the copy stays mounted on the host
    with open("/proc/self/mountinfo") as f:
        assert str(bind) not in f.read()
    assert _cli(root, "rm", "-v", "stopped").returncode == 0
    for v in ("cpvol", "cpvol2"):
        assert _cli(root, "volume", "rm", v).returncode == 0


# ------------------------------------------- the daemon's end of an attach

_SCRIPTS: dict[str, list[dict[str, Any]]] = {}


def _scripted_record(tmp_path: Any, states: list[dict[str, Any]]) -> Any:
    """A record whose state changes at each read, as a starting container's
    does while the daemon looks at it (the last state stays)."""
    from nsprim._record import record
    from nsprim.lifecycle import Record

    @record
    class Scripted(Record):
        @property
        def dir(self) -> str:
            return str(tmp_path)

        @property
        def state(self) -> dict[str, Any]:
            script = _SCRIPTS[self.id]
            return dict(script.pop(0) if len(script) > 1 else script[0])

    _SCRIPTS["c-" + str(tmp_path)] = list(states)
    return Scripted("c-" + str(tmp_path))


def test_attach_end_is_decided_from_one_read(tmp_path: Any) -> None:
    """docker run: the attach comes while the container is created, and the
    start moves its record to ``starting``, then ``running``.  A decision
    that read ``starting`` first (not running) and then ``running`` (so not
    created or starting) took the run for ended before it wrote anything;
    each decision now comes from one read (lifecycle.running_in)."""
    import time

    from nsprim.daemon.streams import attach_ended, ended_since
    from nsprim.lifecycle import _proc_start, running_in

    me = os.getpid()
    running = {"status": "running", "supervisor_pid": me, "supervisor_start": _proc_start(me),
               "started_at": time.time()}
    t0 = time.time() - 1
    for first in ({"status": "created"}, {"status": "starting"}, {}):
        rec = _scripted_record(tmp_path, [first, running])
        assert not attach_ended(rec, False, t0), first
    rec = _scripted_record(tmp_path, [running])
    assert running_in(rec.state) and not attach_ended(rec, False, t0)
    # ended: exited after t0, or running with a supervisor that is gone
    rec = _scripted_record(tmp_path, [{"status": "exited", "finished_at": time.time()}])
    assert attach_ended(rec, False, t0) and ended_since(rec, t0)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = {**running, "supervisor_pid": gone.pid, "supervisor_start": 1}
    rec = _scripted_record(tmp_path, [dead])
    assert not running_in(rec.state) and ended_since(rec, t0) and attach_ended(rec, True, t0)
    # an exited container that is not started again: ended at once
    rec = _scripted_record(tmp_path, [{"status": "exited", "finished_at": t0 - 5}])
    assert attach_ended(rec, False, t0) and not ended_since(rec, t0)


# ------------------------------------------------- events: pure logic

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


@st.composite
def _event(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["container", "image", "volume", "network"]))
    attrs = draw(st.dictionaries(_word, _word, max_size=4))
    attrs["name"] = draw(_word)
    if kind == "container":
        attrs["image"] = draw(_word)
    ns = draw(st.integers(0, 2**62))
    return {"Type": kind, "Action": draw(_word), "scope": "local",
            "Actor": {"ID": draw(st.text(alphabet="0123456789abcdef", min_size=12,
                                         max_size=64)), "Attributes": attrs},
            "time": ns // 10**9, "timeNano": ns}


@given(_event(), _event())
def test_event_filters_match_docker_rules(ev: dict[str, Any], other: dict[str, Any]) -> None:
    from nsprim.events import matches

    actor = ev["Actor"]
    assert matches(ev, {})
    assert matches(ev, {"type": {ev["Type"]}, "event": {ev["Action"]}, "scope": {"local"}})
    assert not matches(ev, {"type": {"plugin"}})
    assert matches(ev, {"type": {"plugin", ev["Type"]}})  # one key: any value
    assert not matches(ev, {"type": {ev["Type"]}, "scope": {"swarm"}})  # keys: all
    # the actor by its name, its id or a prefix of it, for its own type only
    key = {"container": "container", "volume": "volume", "network": "network"}.get(ev["Type"])
    if key:
        for w in (actor["Attributes"]["name"], actor["ID"], actor["ID"][:6]):
            assert matches(ev, {key: {w}})
        assert matches(ev, {key: {"no-such", actor["ID"]}})
    for k in ("container", "volume", "network"):
        if k != ev["Type"]:
            assert not matches(ev, {k: {actor["Attributes"]["name"]}})
    # image: an image event's name, a container's image
    if ev["Type"] in ("image", "container"):
        name = actor["Attributes"]["name" if ev["Type"] == "image" else "image"]
        assert matches(ev, {"image": {name}})
        assert not matches(ev, {"image": {name + "-other"}})
    else:
        assert not matches(ev, {"image": {actor["Attributes"]["name"]}})
    # labels: KEY, KEY=VALUE among the attributes
    for k, v in actor["Attributes"].items():
        assert matches(ev, {"label": {k}}) and matches(ev, {"label": {f"{k}={v}"}})
        assert not matches(ev, {"label": {f"{k}={v}x"}})
    if other["Type"] != ev["Type"]:
        assert not matches(ev, {"type": {other["Type"]}})


@settings(max_examples=30, deadline=None)
@given(st.lists(_event(), max_size=30), st.integers(1, 29))
def test_event_tail_reads_each_once_across_rotation(evs: list[dict[str, Any]], cut: int) -> None:
    import tempfile

    from nsprim.events import Tail, path

    with tempfile.TemporaryDirectory() as d:
        tail = Tail(d)
        seen = tail.poll()
        p = path(d)
        for i, ev in enumerate(evs):
            with open(p, "a") as f:
                f.write(json.dumps(ev) + "\n")
            if i == cut:
                os.replace(p, p + ".1")  # what emit_event does past MAX_BYTES
            if i % 3 == 0:
                seen += tail.poll()
        with open(p, "a") as f:
            f.write('{"a truncated line')  # written later, whole: not yet an event
        seen += tail.poll()
        tail.close()
        assert seen == evs


_key = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_val = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e,
                                      blacklist_characters='"\\$`'), max_size=20)


@given(st.dictionaries(_key, _val, min_size=1, max_size=5), st.sampled_from(
    ["RUN", "COPY", "ADD", "FROM", "ARG", "SHELL", "MAINTAINER", "Run", "copy"]))
def test_change_env_label_round_trip(pairs: dict[str, str], bad: str) -> None:
    from nsprim.cli.commit import apply_changes

    cfg: dict[str, Any] = {"config": {"Env": ["PATH=/bin"]}}
    apply_changes(cfg, ["ENV " + " ".join(f'{k}="{v}"' for k, v in pairs.items()),
                        "LABEL " + " ".join(f'"{k}"="{v}"' for k, v in pairs.items())])
    env = dict(e.split("=", 1) for e in cfg["config"]["Env"])
    assert {k: env[k] for k in pairs} == pairs and (env["PATH"] == "/bin" or "PATH" in pairs)
    assert cfg["config"]["Labels"] == pairs
    with pytest.raises(ValueError, match=f"^{bad.lower()} is not a valid change command$"):
        apply_changes({"config": {}}, [f"{bad} x y"])


def test_commit_keeps_the_containers_config(private_root: str, images: dict[str, str]) -> None:
    """docker's commit: the new image's config is the container's (its
    command, env, workdir, user, labels) over its image's."""
    from pathlib import Path

    from nsprim.images.store import ImageStore

    root = private_root
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    r = _cli(root, "run", "--name", "cfg", "--network", "none", "-e", "FOO=bar", "-w", "/tmp",
             "--label", "k=v", images["app"], "sh", "-c", "echo $FOO $APP $(pwd) > /out")
    assert r.returncode == 0, r.stderr
    assert _cli(root, "commit", "cfg", "localhost/cfg:v1").returncode == 0
    c = ImageStore(str(Path(root) / "images")).get("localhost/cfg:v1").config["config"]
    assert c["Cmd"] == ["sh", "-c", "echo $FOO $APP $(pwd) > /out"]
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["FOO"] == "bar" and env["APP"] == "1"  # the run's -e, the image's ENV
    assert c["WorkingDir"] == "/tmp" and c["Labels"]["k"] == "v"  # (and the image's)
    # its CMD is what runs, with its env and workdir
    r = _cli(root, "run", "--rm", "--network", "none", "localhost/cfg:v1")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "run", "--rm", "--network", "none", "localhost/cfg:v1", "cat", "/out")
    assert r.stdout == "bar 1 /tmp\n", r.stderr
