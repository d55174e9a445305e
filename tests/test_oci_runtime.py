"""nsprim-runtime, driven as conmon and containerd's shim drive runc: a real
busybox bundle, real processes, each config.json section checked from
inside the container (runtime-spec conformance), and bad bundles."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nsprim.oci.config import default_config

from .conftest import need

RUNTIME = os.path.join(os.path.dirname(sys.executable), "nsprim-runtime")


def runtime_available() -> bool:
    return os.path.exists(RUNTIME)


class Runtime:
    """nsprim-runtime with a private --root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = False, timeout: float = 60,
                 **kw: Any) -> subprocess.CompletedProcess[str]:
        import tempfile

        if "stdout" in kw or "stderr" in kw:
            r = subprocess.run([RUNTIME, "--root", self.root, *args], text=True,
                               timeout=timeout, **kw)
        else:
            # files, not pipes: a container made by create inherits our stdio,
            # and a pipe would not see EOF until it exits
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                r = subprocess.run([RUNTIME, "--root", self.root, *args], text=True,
                                   timeout=timeout, stdout=out, stderr=err, **kw)
                out.seek(0)
                err.seek(0)
                r.stdout, r.stderr = out.read(), err.read()
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def state(self, cid: str) -> dict[str, Any]:
        r = self("state", cid, check=True)
        out: dict[str, Any] = json.loads(r.stdout)
        return out

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.state(cid)["status"] != want:
            assert time.monotonic() < deadline, f"{cid} never became {want}"
            time.sleep(0.02)


def cgroups_of(root: str) -> list[str]:
    """Cgroup directories that the runtime root `root` made (any hierarchy)."""
    from nsprim.state import _root_id

    nroot = os.path.join(os.path.abspath(root), ".nsprim")
    prefix = _root_id(nroot, os.path.join(nroot, "run"))
    return glob.glob(f"/sys/fs/cgroup/*/nsprim/{prefix}-*") + glob.glob(
        f"/sys/fs/cgroup/nsprim/{prefix}-*")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    yield from runtime_at(tmp_path)


def runtime_at(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with a root of its own; afterwards no container, state
    directory or cgroup of it is left."""
    need(os.geteuid() == 0, "needs root")
    need(runtime_available(), "nsprim-runtime is not installed next to this python")
    r = Runtime(str(tmp_path / "rt"))
    yield r
    for cid in r("list", "-q").stdout.split():
        r("delete", "--force", cid)
    assert r("list", "-q").stdout.strip() == ""
    left = [n for n in os.listdir(r.root) if not n.startswith(".")] \
        if os.path.isdir(r.root) else []
    assert left == []
    assert cgroups_of(r.root) == []


def make_bundle(path: Path, rootfs: str, args: list[str], *, terminal: bool = False,
                out: Path | None = None, **changes: Any) -> dict[str, Any]:
    """A bundle at `path` over the shared read-only `rootfs`; `out` is bound
    read-write at /out.  Returns the config (written to config.json)."""
    path.mkdir(parents=True, exist_ok=True)
    c = default_config()
    c["root"] = {"path": rootfs, "readonly": True}
    c["process"]["args"] = args
    c["process"]["terminal"] = terminal
    if out is not None:
        out.mkdir(exist_ok=True)
        c["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                            "options": ["rbind", "rw"]})
    for k, v in changes.items():
        c[k] = v
    write_config(path, c)
    return c


def write_config(path: Path, c: dict[str, Any]) -> None:
    (path / "config.json").write_text(json.dumps(c))


# ---------------------------------------------------------------- lifecycle

def test_run_output_and_exit_code(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "echo hello $$; hostname; exit 3"])
    r = rt("run", "--bundle", str(b), "c1")
    assert r.returncode == 3, r.stderr
    assert r.stdout.split() == ["hello", "1", "nsprim"]
    assert rt("list", "-q").stdout.strip() == ""


def test_create_blocks_until_start(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b, out = tmp_path / "b", tmp_path / "out"
    make_bundle(b, rootfs, ["sh", "-c", "echo ran > /out/ran; echo to-stdout; exit 0"],
                out=out)
    log = tmp_path / "stdout"
    with open(log, "w") as f, open(tmp_path / "stderr", "w") as e:
        rt("create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), "c1",
           stdout=f, stderr=e, check=True)
    pid = int((tmp_path / "pid").read_text())
    st = rt.state("c1")
    assert st["status"] == "created" and st["pid"] == pid and st["bundle"] == str(b)
    assert st["ociVersion"].startswith("1.") and st["id"] == "c1" and "created" in st
    time.sleep(0.2)
    assert not (out / "ran").exists()  # blocked: the command has not run
    rt("start", "c1", check=True)
    rt.wait_status("c1", "stopped")
    assert (out / "ran").read_text() == "ran\n"
    assert log.read_text() == "to-stdout\n"  # fds 0-2 were the caller of create's
    assert rt("start", "c1").stderr.strip().endswith("cannot start a container that has "
                                                    "stopped")
    rt("delete", "c1", check=True)
    assert rt("state", "c1").returncode == 1


def test_init_stays_a_descendant_of_the_caller(rt: Runtime, rootfs: str,
                                               tmp_path: Path) -> None:
    """conmon and the shim are subreapers: the init is reparented to them
    when create exits, and they collect its exit status."""
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "exit 42"])
    script = f"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
subprocess.run([{RUNTIME!r}, "--root", {rt.root!r}, "create", "--bundle", {str(b)!r},
                "--pid-file", {str(tmp_path / "pid")!r}, "c1"], check=True)
pid = int(open({str(tmp_path / "pid")!r}).read())
ppid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
subprocess.run([{RUNTIME!r}, "--root", {rt.root!r}, "start", "c1"], check=True)
_, status = os.waitpid(pid, 0)
print(ppid == os.getpid(), os.waitstatus_to_exitcode(status))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.split() == ["True", "42"], r.stderr


def test_kill_signals_and_errors(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b, out = tmp_path / "b", tmp_path / "out"
    make_bundle(b, rootfs, ["sh", "-c", "trap 'echo usr1 >> /out/sig' USR1; "
                            "trap 'echo term >> /out/sig; exit 0' TERM; echo up > /out/up; "
                            "while :; do sleep 0.05; done"], out=out)
    rt("create", "--bundle", str(b), "c1", check=True)
    rt("start", "c1", check=True)
    deadline = time.monotonic() + 10
    while not (out / "up").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for n, spelling in enumerate(("USR1", "SIGUSR1", str(int(signal.SIGUSR1))), 1):
        rt("kill", "c1", spelling, check=True)
        # one at a time: a standard signal still pending when the next comes
        # is delivered once (the shell runs its trap between two sleeps)
        while not (out / "sig").exists() or (out / "sig").read_text().count("usr1") < n:
            assert time.monotonic() < deadline + 10, spelling
            time.sleep(0.02)
    r = rt("kill", "c1", "NOPE")
    assert r.returncode == 1 and "NOPE" in r.stderr
    r = rt("delete", "c1")
    assert r.returncode == 1 and "that is not stopped: running" in r.stderr
    rt("kill", "c1", check=True)  # TERM by default
    rt.wait_status("c1", "stopped")
    assert (out / "sig").read_text().split() == ["usr1", "usr1", "usr1", "term"]
    r = rt("kill", "c1", "KILL")
    assert r.returncode == 1 and "container not running" in r.stderr
    rt("delete", "c1", check=True)
    r = rt("kill", "c1")
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert rt("delete", "--force", "c1").returncode == 0


def test_delete_force_and_created(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sleep", "100"])
    rt("create", "--bundle", str(b), "--pid-file", str(tmp_path / "p1"), "created", check=True)
    rt("create", "--bundle", str(b), "running", check=True)
    rt("start", "running", check=True)
    pids = [rt.state(c)["pid"] for c in ("created", "running")]
    rt("delete", "created", check=True)  # a created container is killed (runc)
    rt("delete", "--force", "running", check=True)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    assert rt("list", "-q").stdout == ""


def test_exec_ps_pause_resume_update(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sleep", "100"])
    rt("create", "--bundle", str(b), "c1", check=True)
    rt("start", "c1", check=True)
    r = rt("exec", "c1", "sh", "-c", "echo $$ $X; exit 4", "--env", "X=1")
    # flags after the command belong to it (runc's REMAINDER)
    assert r.returncode == 4 and r.stdout.split()[0] != "1"
    r = rt("exec", "--env", "X=hi", "--cwd", "/tmp", "c1", "sh", "-c", "echo $X; pwd")
    assert r.stdout.split() == ["hi", "/tmp"]
    proc = {"args": ["sh", "-c", "id -u; id -g; pwd; echo $Y"], "cwd": "/etc",
            "env": ["PATH=/bin", "Y=2"], "user": {"uid": 1000, "gid": 1001}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = rt("exec", "--process", str(tmp_path / "p.json"), "c1")
    assert r.stdout.split() == ["1000", "1001", "/etc", "2"], r.stderr
    r = rt("exec", "-d", "--pid-file", str(tmp_path / "epid"), "c1", "sleep", "100")
    assert r.returncode == 0
    epid = int((tmp_path / "epid").read_text())
    ps = json.loads(rt("ps", "--format", "json", "c1", check=True).stdout)
    assert rt.state("c1")["pid"] in ps and epid in ps
    r = rt("exec", "c1", "no-such-command")
    assert r.returncode != 0 and "executable file not found" in r.stderr
    rt("pause", "c1", check=True)
    assert rt.state("c1")["status"] == "paused"
    assert "not running" in rt("pause", "c1").stderr
    rt("resume", "c1", check=True)
    assert rt.state("c1")["status"] == "running"
    (tmp_path / "res.json").write_text(json.dumps({"memory": {"limit": 64 << 20},
                                                   "pids": {"limit": 33}}))
    rt("update", "--resources", str(tmp_path / "res.json"), "c1", check=True)
    files = [os.path.join(d, f) for d in cgroups_of(rt.root)
             for f in ("memory.limit_in_bytes", "memory.max", "pids.max")]
    values = {open(f).read().strip() for f in files if os.path.exists(f)}
    assert str(64 << 20) in values and "33" in values
    rt("kill", "--all", "c1", "KILL", check=True)
    rt.wait_status("c1", "stopped")
    rt("delete", "c1", check=True)


def test_console_socket_gets_the_pty_master(rt: Runtime, rootfs: str,
                                            tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "tty; echo through-the-pty"], terminal=True)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        r = rt("create", "--bundle", str(b), "c1")
        assert r.returncode == 1 and "console socket" in r.stderr  # runc's rule
        rt("create", "--bundle", str(b), "--console-socket", path, "c1", check=True)
        conn, _ = srv.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1
    master = fds[0]
    try:
        rt("start", "c1", check=True)
        data = b""
        deadline = time.monotonic() + 10
        while b"through-the-pty" not in data and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
    assert b"/dev/pts/0" in data and b"through-the-pty" in data
    rt.wait_status("c1", "stopped")
    rt("delete", "c1", check=True)


def test_run_with_a_terminal_proxies_it(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "tty; read x; echo got-$x"], terminal=True)
    r = rt("run", "--bundle", str(b), "c1", input="hello\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace("\r", "")
    assert "/dev/pts/0" in out and "got-hello" in out


def test_preserve_fds(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd"])
    r_, w = os.pipe()
    try:
        wrap = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"
        r = subprocess.run([sys.executable, "-c", wrap, str(w), RUNTIME,
                            "--root", rt.root, "run", "--preserve-fds", "1",
                            "--bundle", str(b), "c1"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, pass_fds=(w,))
        os.close(w)
        w = -1
        assert os.read(r_, 100) == b"via-fd3\n"
        assert sorted(r.stdout.split()) == ["0", "1", "2", "3", "4"]  # 4: ls's own dir fd
    finally:
        os.close(r_)
        if w >= 0:
            os.close(w)


def test_errors_as_json_lines(rt: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    r = rt("--log", str(log), "--log-format", "json", "state", "nope")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]


def test_spec_features_version_list(rt: Runtime, tmp_path: Path) -> None:
    r = subprocess.run([RUNTIME, "spec", "--bundle", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0
    c = json.loads((tmp_path / "config.json").read_text())
    assert c["ociVersion"] == "1.2.0" and c["root"]["path"] == "rootfs"
    assert {"type": "mount"} in c["linux"]["namespaces"]
    r = subprocess.run([RUNTIME, "spec", "--bundle", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "exists" in r.stderr
    (tmp_path / "config.json").unlink()
    subprocess.run([RUNTIME, "spec", "--rootless", "--bundle", str(tmp_path)], check=True,
                   timeout=30)
    c = json.loads((tmp_path / "config.json").read_text())
    assert c["linux"]["uidMappings"][0]["hostID"] == os.getuid()
    f = json.loads(rt("features", check=True).stdout)
    assert f["ociVersionMax"] == "1.2.0" and "network" in f["linux"]["namespaces"]
    assert "prestart" in f["hooks"] and f["linux"]["seccomp"]["enabled"] is True
    assert rt("--version", check=True).stdout.startswith("nsprim-runtime ")
    assert json.loads(rt("list", "--format", "json", check=True).stdout) == []


def test_state_kill_delete_do_not_import_the_spawn_machinery(rt: Runtime,
                                                             tmp_path: Path) -> None:
    script = f"""
import sys
from nsprim.oci import cli
for argv in (["state", "x"], ["kill", "x"], ["delete", "--force", "x"], ["list"]):
    try:
        cli.main(["--root", {rt.root!r}, *argv])
    except SystemExit:
        pass
heavy = [m for m in ("nsprim._native", "nsprim.container", "nsprim.plan", "nsprim._spawn",
                     "nsprim.cgroup", "nsprim.seccomp", "cffi") if m in sys.modules]
print("heavy:", heavy)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip().endswith("heavy: []"), r.stdout + r.stderr


# ------------------------------------------------- runtime-spec conformance

def _run(rt: Runtime, b: Path, cid: str = "c") -> subprocess.CompletedProcess[str]:
    return rt("run", "--bundle", str(b), cid)


def test_process_user_umask_groups_oom_rlimits(rt: Runtime, rootfs: str,
                                               tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "id -u; id -g; id -G; umask; "
                                "cat /proc/self/oom_score_adj; ulimit -n; ulimit -c"])
    c["process"]["user"] = {"uid": 1000, "gid": 1000, "umask": 0o27,
                            "additionalGids": [10, 20]}
    c["process"]["oomScoreAdj"] = 321
    c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300},
                               {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    write_config(b, c)
    r = _run(rt, b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["1000", "1000"] and lines[3:] == ["0027", "321", "200", "0"]
    # additionalGids only (runc): not the groups the image's /etc/group gives
    # uid 1000 (2000 here)
    assert lines[2].split() == ["1000", "10", "20"]


def test_rlimit_above_the_hard_limit_is_refused(rt: Runtime, rootfs: str,
                                                tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need(hard != resource.RLIM_INFINITY, "the hard NOFILE limit is unlimited here")
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["true"])
    c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    write_config(b, c)
    r = _run(rt, b)
    if r.returncode == 0:  # CAP_SYS_RESOURCE lets this process raise it
        return
    assert "RLIMIT_NOFILE" in r.stderr and r.stderr.count("\n") == 1


def test_hooks_order_and_state_on_stdin(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nread -r state\necho \"$1 $HOOKVAR "
                    f"$(echo \"$state\" | grep -o '\"status\": *\"[a-z]*\"')\" >> {log}\n")
    hook.chmod(0o755)
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "echo process >> /out/p"], out=tmp_path / "out")
    c["hooks"] = {name: [{"path": str(hook), "args": ["hook.sh", name],
                          "env": ["HOOKVAR=v"]}]
                  for name in ("prestart", "createRuntime", "createContainer",
                               "startContainer", "poststart", "poststop")}
    write_config(b, c)
    rt("create", "--bundle", str(b), "c1", check=True)
    rt("start", "c1", check=True)
    rt.wait_status("c1", "stopped")
    rt("delete", "c1", check=True)
    lines = log.read_text().splitlines()
    assert [x.split()[0] for x in lines] == ["prestart", "createRuntime", "createContainer",
                                            "startContainer", "poststart", "poststop"]
    assert all(x.split()[1] == "v" for x in lines)
    assert '"created"' in lines[0] and '"stopped"' in lines[-1]


def test_failing_prestart_hook_fails_create_and_leaves_nothing(rt: Runtime, rootfs: str,
                                                               tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "echo ran > /out/ran"], out=tmp_path / "out")
    c["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
                  "poststart": [{"path": "/bin/false"}]}
    write_config(b, c)
    r = rt("create", "--bundle", str(b), "c1")
    assert r.returncode == 1 and "prestart" in r.stderr and "exit status 3" in r.stderr
    assert rt("list", "-q").stdout == "" and cgroups_of(rt.root) == []
    # a hook that times out fails the same way
    c["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "10"],
                                     "timeout": 1}]}
    write_config(b, c)
    r = rt("create", "--bundle", str(b), "c1")
    assert r.returncode == 1 and "timed out" in r.stderr
    assert not (tmp_path / "out" / "ran").exists()
    # poststart failing is a warning: the container runs
    c["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    write_config(b, c)
    r = _run(rt, b)
    assert r.returncode == 0 and "warning" in r.stderr
    assert (tmp_path / "out" / "ran").exists()


def test_namespaces_new_host_and_joined_by_path(rt: Runtime, rootfs: str,
                                                tmp_path: Path) -> None:
    from nsprim.namespace import Namespace

    path = str(tmp_path / "netns")
    with Namespace.create("net") as ns:
        ns.persist(path)
        inode = ns.inode
    try:
        b = tmp_path / "b"
        c = make_bundle(b, rootfs, ["sh", "-c", "readlink /proc/self/ns/net; "
                                    "readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; "
                                    "echo $$"])
        c["linux"]["namespaces"] = [
            {"type": "mount"}, {"type": "network", "path": path}, {"type": "uts"}]
        write_config(b, c)
        r = _run(rt, b)
        assert r.returncode == 0, r.stderr
        net, ipc, pid, mypid = r.stdout.split()
        assert net == f"net:[{inode}]"
        assert ipc == os.readlink("/proc/self/ns/ipc")  # not listed: the host's
        assert pid == os.readlink("/proc/self/ns/pid") and mypid != "1"
    finally:
        Namespace.unpersist(path)


def test_sysctl_in_the_container_namespaces(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward "
                                "/proc/sys/kernel/shmmni"])
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    write_config(b, c)
    before = Path("/proc/sys/kernel/shmmni").read_text()
    r = _run(rt, b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1234"]
    assert Path("/proc/sys/kernel/shmmni").read_text() == before  # the host's is untouched


def test_devices_and_masked_readonly_paths(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    need(os.path.exists("/dev/loop-control"), "needs /dev/loop-control")
    st = os.stat("/dev/loop-control")
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "stat -c '%t:%T' /dev/loop-control; "
                                "wc -c < /proc/cpuinfo; wc -c < /proc/timer_list; "
                                "touch /out/x 2>/dev/null && echo out-rw; "
                                "touch /etc/x 2>/dev/null || echo etc-ro"],
                    out=tmp_path / "out")
    c["linux"]["devices"] = [{"path": "/dev/loop-control", "type": "c",
                              "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}]
    c["linux"]["maskedPaths"] = ["/proc/cpuinfo"]
    c["linux"]["readonlyPaths"] = ["/out"]
    write_config(b, c)
    r = _run(rt, b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}"
    assert lines[1] == "0"  # masked
    assert lines[2] != "0"  # no longer in the masked list
    assert lines[3:] == ["etc-ro"]  # /out read-only, so no out-rw; root read-only


def test_hostname_domainname_env_cwd(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", "hostname; domainname 2>/dev/null || "
                                "cat /proc/sys/kernel/domainname; pwd; echo $FOO"],
                    hostname="box", domainname="example.org")
    c["process"]["env"].append("FOO=bar")
    c["process"]["cwd"] = "/etc"
    write_config(b, c)
    r = _run(rt, b)
    assert r.stdout.split() == ["box", "example.org", "/etc", "bar"], r.stderr


def test_memory_and_pids_limits_enforced(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["sh", "-c", 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); '
                                "echo survived"])
    c["linux"]["resources"] = {"memory": {"limit": 20 << 20, "swap": 20 << 20}}
    write_config(b, c)
    r = _run(rt, b, "m")
    assert r.returncode == 137 and "survived" not in r.stdout
    c["process"]["args"] = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait"]
    c["linux"]["resources"] = {"pids": {"limit": 4}}
    write_config(b, c)
    r = _run(rt, b, "p")
    assert "can't fork" in r.stderr


# ------------------------------------------------------------ bad bundles

BAD_BUNDLES = [
    ("unknown namespace", lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
     "linux.namespaces[6].type"),
    ("relative root escaping", lambda c: c["root"].update(path="../../.."), "root.path"),
    ("missing root", lambda c: c["root"].update(path="/nonexistent/rootfs"), "root.path"),
    ("malformed mount", lambda c: c["mounts"].append({"destination": "rel", "type": "bind",
                                                      "source": "/tmp"}),
     "mounts[6].destination"),
    ("bind source missing", lambda c: c["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "/nonexistent-src",
         "options": ["rbind"]}), "/nonexistent-src"),
    ("intelRdt", lambda c: c["linux"].update(intelRdt={"closID": "a"}), "linux.intelRdt"),
    ("apparmor", lambda c: c["process"].update(apparmorProfile="x"),
     "process.apparmorProfile"),
    ("bad sysctl", lambda c: c["linux"].update(sysctl={"vm.swappiness": "1"}),
     "linux.sysctl"),
    ("bad capability", lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"),
     "NOPE"),
    ("no args", lambda c: c["process"].update(args=[]), "process.args"),
]


@pytest.mark.parametrize("what,change,field", BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_bad_bundle_refused_naming_the_field_nothing_left(
        rt: Runtime, rootfs: str, tmp_path: Path, what: str, change: Any, field: str) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, rootfs, ["true"])
    change(c)
    write_config(b, c)
    r = rt("--log", str(tmp_path / "log"), "--log-format", "json", "create", "--bundle",
           str(b), "--pid-file", str(tmp_path / "pid"), "c1")
    assert r.returncode == 1
    assert field in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert json.loads((tmp_path / "log").read_text())["level"] == "error"
    assert not (tmp_path / "pid").exists()
    assert rt("list", "-q").stdout == "" and cgroups_of(rt.root) == []
    assert not os.path.exists(os.path.join(rt.root, "c1"))


def test_duplicate_id_refused(rt: Runtime, rootfs: str, tmp_path: Path) -> None:
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sleep", "10"])
    rt("create", "--bundle", str(b), "c1", check=True)
    r = rt("create", "--bundle", str(b), "c1")
    assert r.returncode == 1 and "container with id exists: c1" in r.stderr
    assert rt.state("c1")["status"] == "created"
