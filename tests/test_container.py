"""Containers started for real: namespaces, root filesystem, ids, capabilities,
fds, exit codes and errors.  Needs root."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nsprim import (
    PIPE,
    Bind,
    ConfigError,
    Container,
    IdMap,
    Namespace,
    SpawnError,
    Tmpfs,
    run,
)
from nsprim._native import lib
from nsprim.caps import DOCKER_DEFAULT_CAPS, cap_mask
from nsprim.plan import Op, build_plan

from .conftest import host_mount_points, need


def sh(rootfs: str, script: str, **kw: object):  # type: ignore[no-untyped-def]
    return run(["/bin/sh", "-c", script], rootfs=rootfs, capture_output=True, timeout=30, **kw)


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


# ------------------------------------------------------------ spawn paths
# nsp_spawn (csrc/spawn.c) has two ways to start a container: a child that
# shares our memory (CLONE_VM | CLONE_VFORK, reporting failure in the result
# struct) when the plan has no op that needs the parent (SYNC, PTY), else a
# fork-like child that talks to us over the socket.  The core tests run
# through both.  The fork-like path is forced without touching the product: a
# SYNC op is put first in the plan; the parent answers its READY with GO
# (Container._handshake).  Which path ran is read from nsp_spawn's own result
# (`res.shared`), recorded by a stand-in for the native `lib` that passes
# every other name through.

_NEEDS_PARENT = (lib.NSP_OP_SYNC, lib.NSP_OP_PTY)


@dataclass
class Spawn:
    ret: int
    pid: int
    shared: int
    kinds: list[int]


@dataclass
class SpawnPath:
    name: str  # "shared" or "fork"
    spawns: list[Spawn] = field(default_factory=list)

    def containers(self) -> list[Spawn]:
        """The spawns of containers (their plan ends in the exec), not of
        namespace holders."""
        return [s for s in self.spawns if s.kinds and s.kinds[-1] == lib.NSP_OP_EXEC]


class _RecordingLib:
    def __init__(self, real: Any, path: SpawnPath) -> None:
        self._real = real
        self._path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def nsp_spawn(self, args: Any, res: Any) -> int:
        ret = self._real.nsp_spawn(args, res)
        # plain memory reads only: ffi.errno of the call stays as it was
        kinds = [int(args.ops[i].kind) for i in range(args.nops)]
        self._path.spawns.append(Spawn(ret, res.pid, res.shared, kinds))
        return ret


def _with_sync_first(real: Any) -> Any:
    def build(*a: Any, **kw: Any) -> Any:
        plan = real(*a, **kw)
        if not any(op.kind in _NEEDS_PARENT for op in plan.ops):
            plan.ops.insert(0, Op(lib.NSP_OP_SYNC, "sync", detail="forced fork-like path"))
            plan.sync = True
        return plan
    return build


@pytest.fixture(params=["shared", "fork"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[SpawnPath]:
    """Run the test through one of nsp_spawn's two paths; afterwards, every
    container it started must have taken that path."""
    path = SpawnPath(request.param)
    if path.name == "shared":
        need(bool(lib.nsp_spawn_shares_memory()), "a spawn that shares memory (clone3)")
    recorder = _RecordingLib(lib, path)
    # wherever the names are used (the plan is built in Container._start
    # through nsprim.container's own `build_plan`)
    patched_plan = 0
    for name, mod in list(sys.modules.items()):
        if name != "nsprim" and not name.startswith("nsprim."):
            continue
        if getattr(mod, "lib", None) is lib:
            monkeypatch.setattr(mod, "lib", recorder)
        if path.name == "fork" and getattr(mod, "build_plan", None) is build_plan:
            monkeypatch.setattr(mod, "build_plan", _with_sync_first(build_plan))
            patched_plan += 1
    assert path.name == "shared" or patched_plan, "no module builds plans through build_plan"
    yield path
    spawns = path.containers()
    assert spawns, "no container was spawned through nsp_spawn"
    for sp in spawns:
        if path.name == "shared":
            assert not any(k in _NEEDS_PARENT for k in sp.kinds), sp
            assert sp.shared == 1, f"child did not share our memory: {sp}"
        else:
            assert sp.kinds[0] == lib.NSP_OP_SYNC, sp
            assert sp.shared == 0, f"child shared our memory: {sp}"


def test_issue_example(rootfs: str, spawn_path: SpawnPath) -> None:
    r = run(["/bin/sh", "-c", "echo $$; hostname; ls /proc/self/fd"],
            rootfs=rootfs, hostname="box", capture_output=True)
    assert r.returncode == 0 and r.stdout.split()[:2] == [b"1", b"box"]


def test_pid1_and_only_own_processes(rootfs: str, spawn_path: SpawnPath) -> None:
    # a host process with a command line of its own: the container must not see it
    marker = subprocess.Popen(["sleep", "31.4159"])
    script = "for p in /proc/[0-9]*; do echo ${p#/proc/} $(tr '\\0' ' ' < $p/cmdline); done"
    try:
        r = sh(rootfs, script)
        assert r.returncode == 0, r.stderr
        # the glob is expanded by sh while nothing else runs in the container:
        # it is PID 1, and the only process there (the marker is not)
        assert r.stdout.decode().splitlines() == [f"1 /bin/sh -c {script}"], r.stdout
        # the check sees host processes when there are some to see
        r = sh(rootfs, script, namespaces={"pid": False})
        assert b"sleep 31.4159" in r.stdout
    finally:
        marker.kill()
        marker.wait()


def test_hostname_isolated(rootfs: str) -> None:
    before = socket.gethostname()
    r = sh(rootfs, "hostname; hostname other; hostname", hostname="inside",
           cap_add=["SYS_ADMIN"])
    assert r.stdout.split() == [b"inside", b"other"]
    assert socket.gethostname() == before


def test_default_hostname_is_container_id(rootfs: str, spawn_path: SpawnPath) -> None:
    c = Container(["/bin/hostname"], rootfs=rootfs, stdout=PIPE)
    with c:
        out, _ = c.communicate(timeout=30)
    assert out is not None and out.strip().decode() == c.id[:12]


def test_mounts_inside_invisible_outside(fresh_rootfs: str) -> None:
    r = sh(fresh_rootfs, "mount -t tmpfs none /tmp && echo secret > /tmp/x && "
           "grep ' /tmp ' /proc/self/mountinfo | wc -l", cap_add=["SYS_ADMIN"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"1"
    assert not os.path.exists(os.path.join(fresh_rootfs, "tmp", "x"))
    assert not [m for m in host_mount_points() if m.startswith(fresh_rootfs)]


def test_only_loopback_in_new_net_namespace(rootfs: str) -> None:
    r = sh(rootfs, "ls /sys/class/net; cat /sys/class/net/lo/operstate; ip -o link show lo")
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "lo"
    assert lines[1] in ("unknown", "up")
    assert "UP" in lines[2]


def test_host_network(rootfs: str) -> None:
    host = sorted(os.listdir("/sys/class/net"))
    r = sh(rootfs, "ls /sys/class/net", namespaces={"net": False})
    assert sorted(r.stdout.decode().split()) == host


def test_ipc_isolation(rootfs: str) -> None:
    key = "0x6e737031"
    made = subprocess.run(["ipcmk", "-M", "4096", "-p", "0600"], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip("ipcmk unavailable")
    shmid = made.stdout.split()[-1]
    try:
        host_ipc = os.stat("/proc/self/ns/ipc").st_ino
        r = sh(rootfs, f"ipcs -m; echo {key}; stat -L -c %i /proc/self/ns/ipc")
        out = r.stdout.decode()
        assert shmid not in out.split()
        assert int(out.split()[-1]) != host_ipc
    finally:
        subprocess.run(["ipcrm", "-m", shmid], check=True)


def test_user_namespace_maps_files_to_host_range(userns_rootfs: str) -> None:
    r = sh(userns_rootfs, "id -u; cat /proc/self/uid_map; touch /tmp/owned; echo ok",
           user_namespace=IdMap(200000, size=65536))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "200000", "65536"]
    st = os.stat(os.path.join(userns_rootfs, "tmp", "owned"))
    assert (st.st_uid, st.st_gid) == (200000, 200000)


def test_user_namespace_unmapped_uid_fails_at_setid(userns_rootfs: str) -> None:
    with pytest.raises(SpawnError) as ei:
        run(["/bin/true"], rootfs=userns_rootfs, user="70000", user_namespace=IdMap(200000))
    assert ei.value.step == "setid"
    assert ei.value.errno == errno.EINVAL
    assert "uid=70000" in str(ei.value)


def test_exit_code_propagates(rootfs: str, spawn_path: SpawnPath) -> None:
    assert sh(rootfs, "exit 42").returncode == 42


def test_kill_signal_propagates(rootfs: str, spawn_path: SpawnPath) -> None:
    with Container(["/bin/sleep", "60"], rootfs=rootfs) as c:
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=30) == -signal.SIGKILL


def test_sigterm_reaches_pid1_handler(rootfs: str, spawn_path: SpawnPath) -> None:
    c = Container(["/bin/sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"],
                  rootfs=rootfs, stdout=PIPE)
    with c:
        assert c.stdout is not None
        assert c.stdout.readline() == b"ready\n"
        c.terminate()
        assert c.wait(timeout=30) == 7


def test_missing_command(rootfs: str, spawn_path: SpawnPath) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        run(["no-such-command"], rootfs=rootfs)
    assert isinstance(ei.value, SpawnError) and ei.value.step == "exec"


def test_non_executable_command(rootfs: str, spawn_path: SpawnPath) -> None:
    with pytest.raises(PermissionError) as ei:
        run(["/notexec"], rootfs=rootfs)
    assert isinstance(ei.value, SpawnError) and ei.value.step == "exec"


def test_bad_rootfs_names_step(tmp_path: Path, spawn_path: SpawnPath) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError) as ei:
        run(["/bin/true"], rootfs=missing)
    e = ei.value
    assert isinstance(e, SpawnError) and e.step == "rootfs"
    assert missing in str(e)


def test_bad_uid_is_config_error(rootfs: str) -> None:
    with pytest.raises(ConfigError, match="-1"):
        run(["/bin/true"], rootfs=rootfs, user=-1)
    with pytest.raises(ConfigError, match="ghost"):
        run(["/bin/true"], rootfs=rootfs, user="ghost")


def test_only_stdio_fds_inside(rootfs: str, spawn_path: SpawnPath) -> None:
    leak = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leak, True)  # even an inheritable host fd must not get in
    try:
        with Container(["/bin/sleep", "30"], rootfs=rootfs) as c:
            assert sorted(os.listdir(f"/proc/{c.pid}/fd"), key=int) == ["0", "1", "2"]
    finally:
        os.close(leak)


def test_pass_fds_renumbered(rootfs: str, spawn_path: SpawnPath) -> None:
    r, w = os.pipe()
    try:
        c = Container(["/bin/sh", "-c", "echo through-fd3 >&3; exec sleep 30"], rootfs=rootfs,
                      pass_fds=[w])
        with c:
            os.close(w)
            w = -1
            assert os.read(r, 100) == b"through-fd3\n"
            # the fds of sleep, not of sh still undoing its redirection (it
            # keeps a saved copy of fd 1 as fd 10 meanwhile)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{c.pid}/cmdline").read_bytes() != b"sleep\x0030\x00":
                assert time.monotonic() < deadline, "sleep was never exec'd"
                time.sleep(0.01)
            assert sorted(os.listdir(f"/proc/{c.pid}/fd"), key=int) == ["0", "1", "2", "3"]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_default_capabilities_are_dockers(rootfs: str, spawn_path: SpawnPath) -> None:
    r = sh(rootfs, "cat /proc/self/status")
    st = r.stdout.decode()
    want = cap_mask(DOCKER_DEFAULT_CAPS)
    assert len(DOCKER_DEFAULT_CAPS) == 14
    for f in ("CapBnd", "CapEff", "CapPrm"):
        assert int(status_field(st, f), 16) == want, f
    assert int(status_field(st, "CapInh"), 16) == 0
    assert int(status_field(st, "CapAmb"), 16) == 0
    # docker's defaults: no_new_privs off (setuid binaries work), seccomp on
    assert status_field(st, "NoNewPrivs") == "0"
    assert status_field(st, "Seccomp") == "2"


def test_cap_add_and_drop(rootfs: str) -> None:
    r = sh(rootfs, "cat /proc/self/status", cap_drop=["ALL"], cap_add=["NET_ADMIN"])
    assert int(status_field(r.stdout.decode(), "CapBnd"), 16) == cap_mask(["NET_ADMIN"])
    r = sh(rootfs, "hostname x 2>&1; echo rc=$?", cap_drop=["ALL"])
    assert b"rc=1" in r.stdout


def test_non_root_user_has_no_effective_caps(rootfs: str, spawn_path: SpawnPath) -> None:
    r = sh(rootfs, "id; cat /proc/self/status", user="user")
    out = r.stdout.decode()
    ids = out.split("\n")[0].split()
    assert ids[0].startswith("uid=1000") and ids[1].startswith("gid=1000")
    assert "groups=2000" in out  # supplementary group from /etc/group
    assert int(status_field(out, "CapEff"), 16) == 0


def test_masked_and_readonly_paths(rootfs: str) -> None:
    r = sh(rootfs, "cat /proc/keys | wc -c; echo 1 > /proc/sys/kernel/domainname; echo rc=$?; "
           "ls /sys/firmware | wc -l")
    out = r.stdout.decode().split()
    assert out[0] == "0"
    assert "rc=1" in out  # read-only
    assert out[-1] == "0"
    assert b"Read-only file system" in r.stderr


def test_read_only_rootfs(fresh_rootfs: str) -> None:
    r = sh(fresh_rootfs, "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo shm-ok",
           read_only=True)
    assert b"rc=1" in r.stdout and b"shm-ok" in r.stdout
    assert not os.path.exists(os.path.join(fresh_rootfs, "newfile"))


def test_bind_mounts_and_tmpfs(rootfs: str, tmp_path: Path, spawn_path: SpawnPath) -> None:
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "f").write_text("host")
    r = sh(rootfs, "echo data > /mnt/rw/out; cat /mnt/ro/f; echo x > /mnt/ro/g; echo rc=$?; "
           "grep ' /scratch ' /proc/self/mounts",
           mounts=[Bind(str(rw), "/mnt/rw"), Bind(str(ro), "/mnt/ro", readonly=True),
                   Tmpfs("/scratch", size=1 << 20)])
    assert (rw / "out").read_text() == "data\n"
    assert b"host" in r.stdout and b"rc=1" in r.stdout
    assert not (ro / "g").exists()
    assert b"tmpfs" in r.stdout


def test_env_cwd_and_path_search(rootfs: str, spawn_path: SpawnPath) -> None:
    r = run(["env"], rootfs=rootfs, env={"FOO": "bar"}, cwd="/tmp", hostname="h",
            capture_output=True)
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert env["FOO"] == "bar" and env["HOSTNAME"] == "h" and env["HOME"] == "/root"
    assert env["PATH"].startswith("/usr/local/sbin")
    assert run(["pwd"], rootfs=rootfs, cwd="/tmp", capture_output=True).stdout == b"/tmp\n"


def test_input_and_timeout(rootfs: str, spawn_path: SpawnPath) -> None:
    r = run(["cat"], rootfs=rootfs, input=b"hello", capture_output=True)
    assert r.stdout == b"hello"
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sleep", "30"], rootfs=rootfs, timeout=0.5)


def test_join_existing_namespace(rootfs: str) -> None:
    with Namespace.create("net") as ns:
        r = sh(rootfs, "stat -L -c %i /proc/self/ns/net", namespaces={"net": ns})
        assert int(r.stdout) == ns.inode


def _children_of(pid: int) -> set[int]:
    """Every process whose parent is `pid`, zombies included."""
    kids = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.add(int(p))
    return kids


def test_setup_failure_leaves_no_process(rootfs: str, spawn_path: SpawnPath) -> None:
    before = _children_of(os.getpid())
    with pytest.raises(FileNotFoundError) as ei:
        run(["/bin/true"], rootfs=rootfs, mounts=[Bind("/no/such/source", "/x")])
    assert isinstance(ei.value, SpawnError) and "/no/such/source" in str(ei.value)
    # the child that failed is gone, not even a zombie: it was reaped
    (failed,) = spawn_path.containers()
    assert failed.pid > 0
    assert not os.path.exists(f"/proc/{failed.pid}"), f"child {failed.pid} left behind"
    # and no other child of ours (in any state) appeared
    assert _children_of(os.getpid()) - before == set()


def test_init_forwards_signals_and_reaps(rootfs: str, spawn_path: SpawnPath) -> None:
    # without --init, PID 1 (sleep) ignores SIGTERM from outside
    with Container(["sleep", "30"], rootfs=rootfs) as c:
        c.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            c.wait(timeout=0.5)
    # with it, SIGTERM reaches sleep, and the exit status is docker's 128+N
    with Container(["sleep", "30"], rootfs=rootfs, init=True) as c:
        time.sleep(0.1)
        c.terminate()
        assert c.wait(timeout=10) == 128 + signal.SIGTERM
    # an orphan is reaped by PID 1: no zombie remains
    r = sh(rootfs, "(sleep 0.1 &); sleep 0.4; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
           init=True)
    assert r.stdout.strip() == b"0", r.stdout
    # the exit code passes through, and PID 1 holds no fd of ours
    assert run(["sh", "-c", "exit 9"], rootfs=rootfs, init=True).returncode == 9
    with Container(["sleep", "30"], rootfs=rootfs, init=True) as c:
        assert os.listdir(f"/proc/{c.pid}/fd") == []


def test_tty_from_the_containers_own_devpts(rootfs: str) -> None:
    c = Container(["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both"], rootfs=rootfs,
                  tty=True).start()
    out = b""
    while True:
        try:
            chunk = os.read(c.pty_master, 4096)
        except OSError:  # EIO once the slave side is gone
            break
        if not chunk:
            break
        out += chunk
    assert c.wait(timeout=10) == 0
    assert out.split() == [b"/dev/pts/0", b"both"]


def test_errors_name_the_call_that_failed(rootfs: str) -> None:
    """An op that makes several calls says which one failed, with its path."""
    with pytest.raises(FileNotFoundError) as ei:
        run(["true"], rootfs=rootfs, mounts=[Bind("/nonexistent-nsprim-src", "/data")])
    assert "bind_mount: opening /nonexistent-nsprim-src on the host" in str(ei.value)
    with pytest.raises(FileNotFoundError) as ei:
        run(["no-such-command"], rootfs=rootfs)
    assert str(ei.value).endswith("exec (no-such-command): No such file or directory")
    # a target under a file cannot be made: the failing call is the resolution
    with pytest.raises(OSError) as ei:
        run(["true"], rootfs=rootfs, mounts=[Tmpfs("/etc/passwd/x")])
    assert "resolving /etc/passwd/x in the root" in str(ei.value)


def test_terminal_master_is_closed_on_exit(rootfs: str) -> None:
    """tty=True: the master side comes back to us and is closed with the
    container (it leaked when the context exited before a return code)."""
    with Container(["sleep", "30"], rootfs=rootfs, tty=True) as c:
        master = c.pty_master
        assert master >= 0 and os.isatty(master)
    assert c.pty_master == -1
    with pytest.raises(OSError):
        os.fstat(master)
