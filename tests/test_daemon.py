"""`nsprim daemon` driven by the real docker CLI (v28): the walk-through,
exit codes, the terminal, the same state as the nsprim CLI, live restore."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from .conftest import DockerDaemon, cli_at, need
from .registry import free_port


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def api(d: DockerDaemon, method: str, path: str, body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    c = UnixHTTP(d.sock)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if data is not None else {}
    c.request(method, path, body=data, headers={**h, **(headers or {})})
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def http_get(url: str, tries: int = 100) -> bytes:
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return bytes(r.read())
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered at {url}")


@pytest.fixture(scope="module")
def base(images: dict[str, str], docker_daemon: DockerDaemon) -> str:
    r = docker_daemon.docker("pull", images["base"])
    assert r.returncode == 0, r.stderr
    return images["base"]


def test_ping_version_and_headers(docker_daemon: DockerDaemon) -> None:
    st, h, body = api(docker_daemon, "GET", "/_ping")
    assert (st, body) == (200, b"OK")
    assert h["api-version"] == "1.43" and h["ostype"] == "linux"
    assert h["docker-experimental"] == "false"
    st, h, body = api(docker_daemon, "HEAD", "/_ping")
    assert st == 200 and body == b"" and h["api-version"] == "1.43"
    st, _, body = api(docker_daemon, "GET", "/v1.24/version")
    assert st == 200 and json.loads(body)["ApiVersion"] == "1.43"
    assert json.loads(body)["MinAPIVersion"] == "1.24"
    st, _, body = api(docker_daemon, "GET", "/v1.12/version")
    assert st == 400 and "too old" in json.loads(body)["message"]
    st, _, body = api(docker_daemon, "GET", "/v1.99/info")
    assert st == 400 and "too new" in json.loads(body)["message"]
    st, _, body = api(docker_daemon, "GET", "/nope")
    assert st == 404 and "message" in json.loads(body)
    r = docker_daemon.docker("version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0 and r.stdout.strip() == "1.43", r.stderr


def test_run_rm_output_and_exit_codes(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    r = d.docker("run", "--rm", base, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = d.docker("run", "--rm", base, "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = d.docker("run", "--rm", "--init", base, "sh", "-c", "kill -9 $$")
    assert r.returncode == 137, r.stderr
    r = d.docker("run", "--rm", base, "no-such-command")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = d.docker("run", "--rm", base, "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert d.docker("ps", "-aq").stdout.split() == []  # --rm removed every one
    r = d.docker("run", "--rm", "--memory", "32m", "--pids-limit", "20", "--cap-drop", "ALL",
                 "-e", "X=1", "-w", "/tmp", "-u", "1000", base, "sh", "-c",
                 "echo $X $(pwd) $(id -u); grep CapEff /proc/self/status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "1 /tmp 1000"
    assert r.stdout.splitlines()[1].split()[1] == "0000000000000000"


def test_stdin_and_terminal(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    r = d.docker("run", "--rm", "-i", base, "sh", "-c", "tr a-z A-Z; exit 3",
                 input="piped input\n")
    assert (r.returncode, r.stdout) == (3, "PIPED INPUT\n"), r.stderr
    need(shutil.which("script") is not None, "needs script (bsdutils)")
    r = subprocess.run(["script", "-qec", f"docker run --rm -it {base} sh -c "
                        "'tty; read x; echo got-$x; exit 4'", "/dev/null"],
                       input="hello\n", capture_output=True, text=True, timeout=60, env=d.env)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "/dev/pts/0" in r.stdout and "got-hello" in r.stdout


def test_detached_walkthrough(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    port = free_port()
    r = d.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "--label",
                 "app=web", base, "httpd", "-f", "-p", "80", "-h", "/etc")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    assert http_get(f"http://127.0.0.1:{port}/hostname").decode().strip() == cid[:12]
    ps = d.docker("ps", "--format", "{{.Names}} {{.State}} {{.Ports}}")
    assert f"web running 127.0.0.1:{port}->80/tcp" in ps.stdout.splitlines(), ps.stdout
    assert d.docker("ps", "-q", "--filter", "label=app=web").stdout.split() == [cid[:12]]
    assert d.docker("ps", "-q", "--filter", "name=nomatch").stdout.split() == []
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.Name}}", "web").stdout.strip() == \
        "running /web"
    r = d.docker("exec", "web", "sh", "-c", "echo in-exec; echo e >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "in-exec\n", "e\n")
    r = d.docker("exec", "-i", "web", "cat", input="to-exec\n")
    assert (r.returncode, r.stdout) == (0, "to-exec\n")
    r = d.docker("exec", "web", "no-such-command")
    assert r.returncode == 127, r.stdout + r.stderr
    if shutil.which("script"):
        r = subprocess.run(["script", "-qec", "docker exec -it web sh -c 'tty; exit 2'",
                            "/dev/null"], capture_output=True, text=True, timeout=60,
                           env=d.env, stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and "/dev/pts/" in r.stdout, r.stdout + r.stderr
    r = d.docker("logs", "web")
    assert r.returncode == 0
    r = d.docker("stop", "-t", "1", "web")
    assert (r.returncode, r.stdout.strip()) == (0, "web"), r.stderr
    st = d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web")
    assert st.stdout.strip() == "exited 137"
    assert d.docker("start", "web").returncode == 0
    assert http_get(f"http://127.0.0.1:{port}/hostname").decode().strip() == cid[:12]
    r = d.docker("rm", "web")
    assert r.returncode == 1 and "container is running" in r.stderr
    assert d.docker("rm", "-f", "web").returncode == 0
    r = d.docker("inspect", "web")
    assert r.returncode == 1 and "No such object: web" in r.stderr
    assert d.docker("ps", "-aq").stdout.split() == []


def test_logs_follow_ends_with_the_container(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    cid = d.docker("run", "-d", base, "sh", "-c",
                   "for i in 1 2 3; do echo l$i; echo e$i >&2; sleep 0.2; done").stdout.strip()
    r = d.docker("logs", "-f", cid, timeout=30)
    assert r.returncode == 0
    assert r.stdout == "l1\nl2\nl3\n" and r.stderr == "e1\ne2\ne3\n"
    tail = d.docker("logs", "--tail", "2", cid)
    assert (tail.stdout, tail.stderr) == ("l3\n", "e3\n")
    stamped = d.docker("logs", "-t", cid).stdout.splitlines()
    assert stamped[0].endswith(" l1") and stamped[0][:4].isdigit()
    assert d.docker("wait", cid).stdout.strip() == "0"
    assert d.docker("rm", cid).returncode == 0


def test_name_conflict_and_missing(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    assert d.docker("create", "--name", "twice", base, "true").returncode == 0
    r = d.docker("run", "--name", "twice", base, "true")
    assert r.returncode == 125 and "Conflict" in r.stderr and "already in use" in r.stderr
    assert d.docker("ps", "-a", "--filter", "name=twice", "-q").stdout.count("\n") == 1
    assert d.docker("inspect", "-f", "{{.State.Status}}", "twice").stdout.strip() == "created"
    r = d.docker("start", "-a", "twice")
    assert r.returncode == 0, r.stderr
    assert d.docker("rm", "twice").returncode == 0
    r = d.docker("stop", "nope")
    assert r.returncode == 1 and "No such container: nope" in r.stderr


def test_images_pull_tag_rmi(docker_daemon: DockerDaemon, images: dict[str, str]) -> None:
    d = docker_daemon
    r = d.docker("pull", images["app"])
    assert r.returncode == 0 and "Downloaded newer image" in r.stdout, r.stdout + r.stderr
    repo = images["app"].rsplit(":", 1)[0]
    listed = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert f"{repo}:latest" in listed
    assert d.docker("tag", images["app"], "local/renamed:v1").returncode == 0
    assert "local/renamed:v1" in d.docker("images", "--format",
                                          "{{.Repository}}:{{.Tag}}").stdout.split()
    r = d.docker("run", "--rm", "local/renamed:v1")
    assert (r.returncode, r.stdout) == (0, "hello from app\n"), r.stderr
    assert d.docker("image", "inspect", "-f", "{{.Config.WorkingDir}}",
                    "local/renamed:v1").stdout.strip() == "/app"
    r = d.docker("rmi", "local/renamed:v1")
    assert r.returncode == 0 and "Untagged: local/renamed:v1" in r.stdout
    r = d.docker("rmi", "local/renamed:v1")
    assert r.returncode == 1 and "No such image" in r.stderr
    r = d.docker("run", "--rm", "local/missing:1")
    assert r.returncode == 125


def test_volumes_and_df(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    assert d.docker("volume", "create", "dvol").stdout.strip() == "dvol"
    assert "dvol" in d.docker("volume", "ls", "-q").stdout.split()
    assert d.docker("run", "--rm", "-v", "dvol:/data", base, "sh", "-c",
                    "echo kept > /data/f").returncode == 0
    r = d.docker("run", "--rm", "--mount", "type=volume,src=dvol,dst=/d,readonly", base,
                 "cat", "/d/f")
    assert (r.returncode, r.stdout) == (0, "kept\n"), r.stderr
    df = d.docker("system", "df")
    assert df.returncode == 0 and "Images" in df.stdout and "Local Volumes" in df.stdout
    assert d.docker("volume", "rm", "dvol").returncode == 0
    r = d.docker("volume", "inspect", "dvol")
    assert r.returncode == 1


def test_events_during_a_run(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    ev = subprocess.Popen(["docker", "events", "--filter", "type=container", "--filter",
                           "container=evrun", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
                          stdout=subprocess.PIPE, text=True, env=d.env)
    out = ""
    try:
        time.sleep(0.5)
        assert d.docker("run", "--rm", "--name", "evrun", base, "true").returncode == 0
        assert ev.stdout is not None
        os.set_blocking(ev.stdout.fileno(), False)
        deadline = time.monotonic() + 20
        while "destroy" not in out and time.monotonic() < deadline:
            try:
                out += os.read(ev.stdout.fileno(), 65536).decode()
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        ev.send_signal(signal.SIGINT)
        rest, _ = ev.communicate(timeout=10)
        out += rest or ""
    assert all(line.endswith(" evrun") for line in out.splitlines()), out
    actions = [line.split()[0] for line in out.splitlines()]
    for a in ("create", "start", "die", "destroy"):
        assert a in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("destroy")


def test_one_state_with_the_nsprim_cli(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    r = cli_at(d.root, "run", "-d", "--name", "fromcli", base, "sh", "-c",
               "echo from-cli; sleep 60")
    assert r.returncode == 0, r.stderr
    assert "fromcli" in d.docker("ps", "--format", "{{.Names}}").stdout.split()
    deadline = time.monotonic() + 10
    while d.docker("logs", "fromcli").stdout != "from-cli\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.docker("exec", "fromcli", "echo", "x").stdout == "x\n"
    cid = d.docker("run", "-d", "--name", "fromapi", base, "sleep", "60").stdout.strip()
    assert cid[:12] in cli_at(d.root, "ps", "-q").stdout.split()
    assert cli_at(d.root, "exec", "fromapi", "echo", "y").stdout == "y\n"
    assert cli_at(d.root, "rm", "-f", "fromapi").returncode == 0
    assert d.docker("rm", "-f", "fromcli").returncode == 0
    assert cli_at(d.root, "ps", "-aq").stdout.split() == []


def test_live_restore(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    cid = d.docker("run", "-d", base, "sh", "-c", "echo before; sleep 60").stdout.strip()
    pid = d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
    d.proc.terminate()
    assert d.proc.wait(30) == 0
    d.start()
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", cid).stdout.strip() \
        == f"running {pid}"
    d.proc.send_signal(signal.SIGKILL)  # loses nothing either
    d.proc.wait(30)
    os.unlink(d.sock)
    d.start()
    assert d.docker("exec", cid, "echo", "still").stdout == "still\n"
    assert d.docker("logs", cid).stdout == "before\n"
    assert d.docker("rm", "-f", cid).returncode == 0


def test_daemon_refuses_bad_flags(tmp_path: Any) -> None:
    need(os.geteuid() == 0, "needs root")
    base = [sys.executable, "-m", "nsprim", "--root", str(tmp_path / "s"), "daemon"]
    r = subprocess.run(base + ["-H", "tcp://127.0.0.1:1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 125 and "without TLS client verification" in r.stderr
    r = subprocess.run(base + ["-H", "tcp://0.0.0.0:2375", "--insecure-tcp"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 125 and "loopback addresses only" in r.stderr
    r = subprocess.run(base + ["-H", "ftp://x"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 125 and "ftp://x" in r.stderr
    assert not os.path.exists(tmp_path / "s" / "containers")


def test_load_a_docker_save_archive(docker_daemon: DockerDaemon, images: dict[str, str],
                                    tmp_path: Any) -> None:
    need(shutil.which("skopeo") is not None, "needs skopeo")
    d = docker_daemon
    archive = tmp_path / "app.tar"
    r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                        f"docker://{images['app']}", f"docker-archive:{archive}:local/loaded:v1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = d.docker("load", "-i", str(archive))
    assert r.returncode == 0 and "Loaded image: local/loaded:v1" in r.stdout, r.stderr
    r = d.docker("run", "--rm", "local/loaded:v1")
    assert (r.returncode, r.stdout) == (0, "hello from app\n"), r.stderr
    assert d.docker("rmi", "local/loaded:v1").returncode == 0


def test_login_checks_the_credentials(docker_daemon: DockerDaemon, auth_registry: Any) -> None:
    d = docker_daemon
    host = auth_registry.host
    r = d.docker("login", host, "-u", "tester", "--password-stdin", input="wrong\n")
    assert r.returncode == 1 and "unauthorized" in r.stderr.lower(), r.stdout + r.stderr
    r = d.docker("login", host, "-u", "tester", "--password-stdin", input="s3cret\n")
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    assert host in (d.config_dir / "config.json").read_text()  # kept by the CLI
    assert d.docker("logout", host).returncode == 0


def test_build_through_the_api(docker_daemon: DockerDaemon, base: str, tmp_path: Any) -> None:
    d = docker_daemon
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY hello.txt /hello.txt\n"
                                    "RUN echo built > /built.txt\n"
                                    'CMD ["cat", "/hello.txt", "/built.txt"]\n')
    (ctx / "hello.txt").write_text("hello from build\n")
    r = d.docker("build", "-t", "local/built:1", str(ctx), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully tagged local/built:1" in r.stdout
    r = d.docker("run", "--rm", "local/built:1")
    assert (r.returncode, r.stdout) == (0, "hello from build\nbuilt\n"), r.stderr
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN exit 3\n")
    r = d.docker("build", "-t", "local/broken:1", str(ctx), timeout=300)
    assert r.returncode == 1 and "local/broken" not in d.docker("images").stdout
    assert d.docker("rmi", "local/built:1").returncode == 0


def test_push_save_load_round_trip(docker_daemon: DockerDaemon, base: str, registry: Any,
                                   tmp_path: Any) -> None:
    d = docker_daemon
    target = f"{registry.host}/test/pushed:1"
    assert d.docker("tag", base, target).returncode == 0
    r = d.docker("push", target, timeout=120)
    assert r.returncode == 0 and "digest: sha256:" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '"Digest"' in r.stdout, r.stderr  # read back by skopeo
    archive = tmp_path / "saved.tar"
    r = d.docker("save", "-o", str(archive), target)
    assert r.returncode == 0 and archive.stat().st_size > 0, r.stderr
    assert d.docker("rmi", target).returncode == 0
    r = d.docker("load", "-i", str(archive))
    assert r.returncode == 0 and f"Loaded image: {target}" in r.stdout, r.stdout + r.stderr
    assert d.docker("run", "--rm", target, "echo", "back").stdout == "back\n"
    assert d.docker("rmi", target).returncode == 0


def test_cp_both_ways(docker_daemon: DockerDaemon, base: str, tmp_path: Any) -> None:
    """docker cp: a file and a directory in and out, `-` both ways (a tar
    on stdin/stdout), a missing path, and out of a stopped container."""
    import io
    import tarfile

    d = docker_daemon
    r = d.docker("run", "-d", "--name", "cpbox", base, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        (tmp_path / "h.txt").write_text("hello\n")
        (tmp_path / "dir" / "sub").mkdir(parents=True)
        (tmp_path / "dir" / "sub" / "f").write_text("deep\n")
        for args in (("h.txt", "cpbox:/tmp/"), ("h.txt", "cpbox:/tmp/renamed.txt"),
                     ("dir", "cpbox:/tmp/")):
            r = d.docker("cp", *args, cwd=tmp_path)
            assert r.returncode == 0, (args, r.stderr)
        r = d.docker("exec", "cpbox", "cat", "/tmp/h.txt", "/tmp/renamed.txt",
                     "/tmp/dir/sub/f")
        assert r.stdout == "hello\nhello\ndeep\n", r.stderr
        # out: a file, a directory
        r = d.docker("cp", "cpbox:/tmp/dir", str(tmp_path / "back"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "back" / "sub" / "f").read_text() == "deep\n"
        # a directory's contents (`DIR/.`) both ways
        (tmp_path / "contents").mkdir()
        r = d.docker("cp", "cpbox:/tmp/dir/.", str(tmp_path / "contents"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "contents" / "sub" / "f").read_text() == "deep\n"
        assert d.docker("exec", "cpbox", "mkdir", "/tmp/into").returncode == 0
        r = d.docker("cp", str(tmp_path / "dir") + "/.", "cpbox:/tmp/into")
        assert r.returncode == 0, r.stderr
        assert d.docker("exec", "cpbox", "cat", "/tmp/into/sub/f").stdout == "deep\n"
        r = d.docker("cp", "cpbox:/etc/hostname", str(tmp_path / "hn"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "hn").read_text() == \
            d.docker("exec", "cpbox", "cat", "/etc/hostname").stdout
        # `-`: a tar on stdin into a directory, a tar on stdout
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("from-stdin")
            info.size = 3
            t.addfile(info, io.BytesIO(b"in\n"))
        r2 = subprocess.run(["docker", "cp", "-", "cpbox:/tmp"], input=buf.getvalue(),
                            capture_output=True, env=d.env, timeout=60)
        assert r2.returncode == 0, r2.stderr
        assert d.docker("exec", "cpbox", "cat", "/tmp/from-stdin").stdout == "in\n"
        r2 = subprocess.run(["docker", "cp", "cpbox:/tmp/h.txt", "-"], capture_output=True,
                            env=d.env, timeout=60)
        assert r2.returncode == 0, r2.stderr
        with tarfile.open(fileobj=io.BytesIO(r2.stdout)) as t:
            assert t.getnames() == ["h.txt"]
            f = t.extractfile("h.txt")
            assert f is not None and f.read() == b"hello\n"
        r = d.docker("cp", "cpbox:/no/such/file", str(tmp_path / "x"))
        assert r.returncode == 1 and "Could not find the file /no/such/file" in r.stderr
        assert not (tmp_path / "x").exists()
        # a stopped container: its own layer, through its overlay
        assert d.docker("stop", "-t", "0", "cpbox").returncode == 0
        r = d.docker("cp", "cpbox:/tmp/renamed.txt", str(tmp_path / "after-stop"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "after-stop").read_text() == "hello\n"
        r = d.docker("cp", str(tmp_path / "h.txt"), "cpbox:/tmp/while-stopped")
        assert r.returncode == 0, r.stderr
        assert d.docker("start", "cpbox").returncode == 0
        assert d.docker("exec", "cpbox", "cat", "/tmp/while-stopped").stdout == "hello\n"
    finally:
        d.docker("rm", "-f", "cpbox")


def test_top_stats_pause_rename_update(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    r = d.docker("run", "-d", "--name", "mgr", base, "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        r = d.docker("top", "mgr")
        assert r.returncode == 0, r.stderr
        assert "PID" in r.stdout.splitlines()[0] and "sleep 60" in r.stdout, r.stdout
        r = d.docker("top", "mgr", "-o", "pid,comm")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[:2] == ["PID", "COMMAND"] and "sleep" in r.stdout.split()
        r = d.docker("stats", "--no-stream", "--format",
                     "{{.Name}}|{{.PIDs}}|{{.MemUsage}}|{{.CPUPerc}}", "mgr")
        assert r.returncode == 0, r.stderr
        name, pids, mem, cpu = r.stdout.strip().split("|")
        assert (name, pids) == ("mgr", "1"), r.stdout
        assert mem.split(" / ")[0] != "0B" and cpu.endswith("%"), r.stdout
        # pause / unpause, with docker's conflicts
        assert d.docker("pause", "mgr").returncode == 0
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}}",
                        "mgr").stdout.strip() == "paused true"
        assert "(Paused)" in d.docker("ps", "--format", "{{.Status}}",
                                      "--filter", "name=mgr").stdout
        assert d.docker("info", "-f", "{{.ContainersPaused}}").stdout.strip() == "1"
        r = d.docker("pause", "mgr")
        assert r.returncode == 1 and "already paused" in r.stderr, r.stderr
        assert d.docker("unpause", "mgr").returncode == 0
        r = d.docker("unpause", "mgr")
        assert r.returncode == 1 and "not paused" in r.stderr, r.stderr
        assert d.docker("exec", "mgr", "true").returncode == 0  # it runs again
        # rename
        assert d.docker("rename", "mgr", "mgr2").returncode == 0
        assert d.docker("inspect", "-f", "{{.Name}}", cid).stdout.strip() == "/mgr2"
        r = d.docker("inspect", "mgr")
        assert r.returncode == 1
        r = d.docker("rename", "mgr2", "bad name!")
        assert r.returncode == 1 and "bad name!" in r.stderr
        r = d.docker("create", "--name", "taken", base, "true")
        assert r.returncode == 0, r.stderr
        r = d.docker("rename", "mgr2", "taken")
        assert r.returncode == 1 and '"/taken" is already in use' in r.stderr, r.stderr
        assert d.docker("rm", "taken").returncode == 0
        r = d.docker("stats", "--no-stream", "--format", "{{.Name}}")  # every running one
        assert "mgr2" in r.stdout.split(), r.stdout + r.stderr
        # update: a memory limit on the running container's cgroup and its record
        r = d.docker("update", "-m", "96m", "--memory-swap", "-1", "mgr2")
        assert r.returncode == 0, r.stderr
        assert d.docker("inspect", "-f", "{{.HostConfig.Memory}}",
                        "mgr2").stdout.strip() == str(96 << 20)
        r = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", "mgr2")
        assert r.stdout.strip().endswith("/ 96MiB"), r.stdout
        r = d.docker("update", "--cpus", "nope", "mgr2")
        assert r.returncode != 0
        r = d.docker("pause", "no-such-box")
        assert r.returncode == 1 and "No such container: no-such-box" in r.stderr
        assert d.docker("stop", "-t", "0", "mgr2").returncode == 0
        r = d.docker("pause", "mgr2")
        assert r.returncode == 1 and "is not running" in r.stderr
        r = d.docker("top", "mgr2")
        assert r.returncode == 1 and "is not running" in r.stderr
    finally:
        d.docker("rm", "-f", cid)


def test_export_and_diff(docker_daemon: DockerDaemon, base: str, tmp_path: Any) -> None:
    import tarfile

    d = docker_daemon
    r = d.docker("run", "--name", "exd", base, "sh", "-c",
                 "echo x > /newfile; mkdir /newdir; rm /bin/true 2>/dev/null; :")
    assert r.returncode == 0, r.stderr
    try:
        r = d.docker("diff", "exd")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert "A /newfile" in lines and "A /newdir" in lines, lines
        assert all(line[:2] in ("A ", "C ", "D ") for line in lines)
        out = tmp_path / "exd.tar"
        r = d.docker("export", "-o", str(out), "exd")
        assert r.returncode == 0, r.stderr
        with tarfile.open(out) as t:
            names = {n.lstrip("./") for n in t.getnames()}
            f = t.extractfile(next(m for m in t.getmembers()
                                   if m.name.lstrip("./") == "newfile"))
            assert f is not None and f.read() == b"x\n"
        assert "newdir" in names and "bin/sh" in names
        r2 = subprocess.run(["docker", "export", "exd"], capture_output=True, env=d.env,
                            timeout=60)
        assert r2.returncode == 0 and r2.stdout[:512] and len(r2.stdout) > 10240
    finally:
        d.docker("rm", "-f", "exd")
