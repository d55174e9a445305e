"""Rootless nsprim, run as unprivileged users the tests create (see
tests/rootless_users.py): the user namespace, state under the user's own
directories, the CLI's lifecycle, and the one-line refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import rootless
from nsprim.errors import ConfigError
from nsprim.rootless import UserMapping, _around, subid_range

from .conftest import need
from .rootless_users import PY, Users

NONET = ("--network", "none")


def _maps(out: str) -> list[tuple[int, int, int]]:
    rows = [line.split() for line in out.strip().splitlines()]
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows if len(r) == 3]


# ---------------------------------------------------------------- the user namespace

def test_full_mapping_with_subordinate_ids(rootless_users: Users) -> None:
    u = rootless_users["a"]
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--",
                 "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["0", "0"]
    assert u.subid is not None
    assert _maps("\n".join(lines[2:])) == [(0, u.uid, 1), (1, u.subid[0], 65536)]


def test_single_mapping_without_subordinate_ids(rootless_users: Users) -> None:
    """User c has no range: container root is the user alone, setgroups denied."""
    u = rootless_users["c"]
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--",
                 "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; "
                 "cat /proc/self/setgroups")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert _maps("\n".join(lines[1:3])) == [(0, u.uid, 1), (0, u.gid, 1)]
    assert lines[3].strip() == "deny"


def test_single_mapping_chosen_with_newuidmap_present(rootless_users: Users) -> None:
    u = rootless_users["a"]
    r = u.nsprim("run", "--rm", *NONET, "--userns", "single", "--rootfs",
                 rootless_users.rootfs, "--", "cat", "/proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    assert _maps(r.stdout) == [(0, u.uid, 1)]


@pytest.mark.parametrize("who", ["a", "c"])
def test_keep_id(rootless_users: Users, who: str) -> None:
    u = rootless_users[who]
    r = u.nsprim("run", "--rm", *NONET, "--userns", "keep-id", "--rootfs",
                 rootless_users.rootfs, "--", "sh", "-c", "id -u; id -g")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(u.uid), str(u.gid)]


@pytest.mark.parametrize("who", ["a", "c"])
def test_python_api_runs_rootless_without_a_flag(rootless_users: Users, who: str) -> None:
    """run() and Container: a (full mapping, written by newuidmap) and c
    (single id, which the child maps itself)."""
    u = rootless_users[who]
    code = ("from nsprim import run, Container, PIPE\n"
            f"r = run(['sh', '-c', 'id -u; hostname; cat /proc/self/uid_map'], "
            f"rootfs={rootless_users.rootfs!r}, hostname='box', capture_output=True)\n"
            "print(r.returncode, r.stdout.decode().split())\n"
            f"with Container(['cat'], rootfs={rootless_users.rootfs!r}, stdin=PIPE, "
            "stdout=PIPE) as c:\n"
            "    print(c.communicate(b'piped', timeout=10)[0].decode(), c.returncode)\n")
    r = u.python(code)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    ext = ["0", str(u.uid), "1"] + (["1", str(u.subid[0]), "65536"] if u.subid else [])
    assert first == "0 " + str(["0", "box"] + ext)
    assert second == "piped 0"


def test_default_protections_inside_the_user_namespace(rootless_users: Users) -> None:
    """docker's 14 capabilities, seccomp in filter mode, masked /proc/kcore."""
    u = rootless_users["a"]
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "sh", "-c",
                 "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; "
                 "cat /proc/keys /proc/timer_list | wc -c; "
                 "grep -c -E ' /proc/(keys|timer_list) ' /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.splitlines() if ":\t" in line)
    assert fields["CapEff"] == fields["CapBnd"] == "00000000a80425fb"
    assert fields["Seccomp"] == "2"
    counts = [line.strip() for line in r.stdout.splitlines() if ":\t" not in line]
    assert counts == ["0", "2"]  # empty: each hidden behind a mount


# ---------------------------------------------------------------- files and state

def test_file_owners_on_the_host(rootless_users: Users) -> None:
    """Container root writes as the user; container uid 1000 as subuid+999."""
    u = rootless_users["a"]
    assert u.subid is not None
    data = os.path.join(u.home, "data")
    r = u.run("/bin/mkdir", "-m", "0777", data)
    assert r.returncode == 0, r.stderr
    r = u.nsprim("run", "--rm", *NONET, "-v", f"{data}:/home", "--rootfs",
                 rootless_users.rootfs, "--", "touch", "/home/by-root")
    assert r.returncode == 0, r.stderr
    r2 = u.nsprim("run", "--rm", *NONET, "-u", "1000:1000", "-v", f"{data}:/home", "--rootfs",
                  rootless_users.rootfs, "--", "touch", "/home/written-as-1000")
    assert r2.returncode == 0, r2.stderr
    st_root = os.stat(os.path.join(data, "by-root"))
    assert (st_root.st_uid, st_root.st_gid) == (u.uid, u.gid)
    st_1000 = os.stat(os.path.join(data, "written-as-1000"))
    assert (st_1000.st_uid, st_1000.st_gid) == (u.subid[0] + 999, u.subid[0] + 999)


def _owned_in_shared_dirs(uid: int, base: str) -> list[str]:
    found = subprocess.run(["find", "/tmp", "/var/tmp", "/run", "/dev/shm", "/var/lib",
                            "-xdev", "-user", str(uid), "-not", "-path", base + "/*", "-print"],
                           capture_output=True, text=True)
    return found.stdout.split()


def test_state_lives_in_the_users_directories(rootless_users: Users) -> None:
    u = rootless_users["a"]
    xdg_run = os.path.join(u.home, "xdg-run")
    assert u.run("/bin/mkdir", "-m", "0700", xdg_run).returncode == 0
    env = u.env(XDG_RUNTIME_DIR=xdg_run, XDG_DATA_HOME=os.path.join(u.home, "xdg-data"))
    # what the uid owned in shared places before (another tool of a deleted user
    # that had this uid, e.g. podman's /dev/shm lock, is not nsprim's doing)
    before = set(_owned_in_shared_dirs(u.uid, rootless_users.base))
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "true",
                 env=env)
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(u.home, "xdg-data", "nsprim"))
    assert os.path.isdir(os.path.join(xdg_run, "nsprim"))
    st_root = os.stat(os.path.join(u.home, "xdg-data", "nsprim"))
    assert (st_root.st_uid, st_root.st_mode & 0o777) == (u.uid, 0o700)
    # nothing of the user's anywhere else that is shared
    made = sorted(set(_owned_in_shared_dirs(u.uid, rootless_users.base)) - before)
    assert made == []
    # without XDG_*: ~/.local/share/nsprim, its run dir inside
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "true")
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(u.data_root, "run"))


def test_state_dir_of_another_owner_is_refused(rootless_users: Users) -> None:
    u = rootless_users["b"]
    planted = os.path.join(u.home, "planted")
    os.makedirs(os.path.join(planted, "nsprim"), exist_ok=True)
    os.chmod(planted, 0o755)
    try:
        r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "true",
                     env=u.env(XDG_DATA_HOME=planted))
        assert r.returncode == 125
        assert "owned by uid 0, not by you" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["rm", "-rf", planted])


def test_detached_lifecycle(rootless_users: Users) -> None:
    u = rootless_users["b"]
    R = rootless_users.rootfs
    r = u.nsprim("run", "-d", "--name", "web", *NONET, "--rootfs", R, "--",
                 "sh", "-c", "echo started; exec sleep 300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        ps = u.nsprim("ps", "-q")
        assert cid[:12] in ps.stdout
        for _ in range(50):
            logs = u.nsprim("logs", "web")
            if "started" in logs.stdout:
                break
            time.sleep(0.1)
        assert logs.stdout.strip() == "started"
        ex = u.nsprim("exec", "web", "sh", "-c", "id -u; cat /proc/1/cmdline | tr '\\0' ' '")
        assert ex.returncode == 0, ex.stderr
        assert ex.stdout.splitlines()[0] == "0"
        assert "sleep 300" in ex.stdout
        st = u.nsprim("stop", "-t", "1", "web")
        assert st.returncode == 0, st.stderr
        ps = u.nsprim("ps", "-a", "--format", "json")
        assert "exited" in ps.stdout.lower()
    finally:
        rm = u.nsprim("rm", "-f", "web")
    assert rm.returncode == 0, rm.stderr
    assert u.nsprim("ps", "-a", "-q").stdout.strip() == ""


# ---------------------------------------------------------------- refusals

def _one_line_125(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 125, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_missing_subordinate_range_is_one_line(rootless_users: Users) -> None:
    u = rootless_users["c"]
    line = _one_line_125(u.nsprim("run", "--rm", *NONET, "--userns", "full", "--rootfs",
                                  rootless_users.rootfs, "--", "true"))
    assert "/etc/subuid" in line and "usermod --add-subuids" in line and u.name in line
    assert not os.path.exists(u.data_root) or not os.listdir(
        os.path.join(u.data_root, "containers"))


def test_missing_newuidmap_is_one_line(rootless_users: Users) -> None:
    u = rootless_users["a"]
    empty = os.path.join(rootless_users.base, "empty-path")
    os.makedirs(empty, exist_ok=True)
    line = _one_line_125(u.nsprim("run", "--rm", *NONET, "--userns", "full", "--rootfs",
                                  rootless_users.rootfs, "--", "true",
                                  env=u.env(PATH=empty)))
    assert "newuidmap" in line and "apt-get install uidmap" in line
    # auto falls back to the single mapping
    r = u.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--",
                 "/bin/cat", "/proc/self/uid_map", env=u.env(PATH=empty))
    assert r.returncode == 0, r.stderr
    assert _maps(r.stdout) == [(0, u.uid, 1)]


def test_unmapped_user_is_one_line(rootless_users: Users) -> None:
    u = rootless_users["c"]
    line = _one_line_125(u.nsprim("run", "--rm", *NONET, "-u", "1000", "--rootfs",
                                  rootless_users.rootfs, "--", "true"))
    assert "uid 1000" in line and "not mapped" in line and "/etc/subuid" in line


def test_user_namespaces_off_is_one_line(rootless_users: Users) -> None:
    """user.max_user_namespaces=0 in a user namespace of the test's own,
    around the user's nsprim (the host's setting is left alone)."""
    u = rootless_users["a"]
    helper = os.path.join(os.path.dirname(__file__), "rootless_nouserns.py")
    r = subprocess.run(
        [sys.executable, helper, str(u.uid), str(u.gid), "setpriv", f"--reuid={u.uid}",
         f"--regid={u.gid}", "--clear-groups", PY, "-m", "nsprim", "run", "--rm", *NONET,
         "--rootfs", rootless_users.rootfs, "--", "true"],
        capture_output=True, text=True, env=u.env(), timeout=60)
    line = _one_line_125(r)
    assert "max_user_namespaces" in line and "sysctl -w" in line


def test_limits_refused_without_delegation(rootless_users: Users) -> None:
    u = rootless_users["a"]
    from nsprim.cgroup import host_layout

    need_v1 = "memory" not in host_layout().v2_controllers
    for flag in (("-m", "64m"), ("--cpus", "0.5"), ("--pids-limit", "10")):
        r = u.nsprim("run", "--rm", *NONET, *flag, "--rootfs", rootless_users.rootfs, "--",
                     "true")
        line = _one_line_125(r)
        assert flag[0] in line and "delegat" in line
        if need_v1:
            assert "cgroup v1" in line


def test_bad_userns_mode(rootless_users: Users) -> None:
    u = rootless_users["a"]
    line = _one_line_125(u.nsprim("run", "--rm", *NONET, "--userns", "bogus", "--rootfs",
                                  rootless_users.rootfs, "--", "true"))
    assert "'bogus'" in line and "keep-id" in line


# ---------------------------------------------------------------- pure logic

def test_subid_range_parsing(tmp_path: object) -> None:
    import pathlib

    p = pathlib.Path(str(tmp_path)) / "subuid"
    p.write_text("other:1:5\nbroken\n4242:x:y\n4242:300000:0\n4242:100000:65536\n")
    assert subid_range(str(p), 4242) == (100000, 65536)
    assert subid_range(str(p), 4343) is None
    assert subid_range(str(tmp_path) + "/missing", 4242) is None


@given(me=st.integers(0, 200000), sub=st.integers(100000, 2**31), n=st.integers(1, 65536))
def test_keep_id_extents_are_a_bijection(me: int, sub: int, n: int) -> None:
    ext = _around(me, sub, n)
    m = UserMapping(ext, ext, helper=True, mode="keep-id")
    assert m.to_host_uid(me) == me
    insides = sorted((a, a + c) for a, _, c in ext)
    for (_, end), (start, _) in zip(insides, insides[1:], strict=False):
        assert end <= start  # no overlap inside
    hosts = sorted((b, b + c) for _, b, c in ext if b != me)
    for (_, end), (start, _) in zip(hosts, hosts[1:], strict=False):
        assert end <= start
    assert sum(c for _, _, c in ext) == n + 1
    for _, b, c in ext:
        assert b == me or sub <= b and b + c <= sub + n


def test_modes_are_checked() -> None:
    with pytest.raises(ConfigError, match="invalid --userns 'nope'"):
        rootless.mapping("nope")


# ---------------------------------------------------------------- network

def _wait_http(url: str, want: str, tries: int = 100) -> str:
    import urllib.request

    last = ""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                last = str(resp.read().decode())
                if want in last:
                    return last
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    return last


def test_default_network_is_pasta_with_published_port(rootless_users: Users) -> None:
    """The CLI's default network without root: pasta gives the container an
    interface and a default route, and -p reaches it from the host."""
    need(shutil.which("pasta") is not None, "needs pasta (apt-get install passt)")
    u = rootless_users["a"]
    r = u.nsprim("run", "--rm", "--rootfs", rootless_users.rootfs, "--", "ip", "route")
    assert r.returncode == 0, r.stderr
    assert "default via" in r.stdout
    port = 20000 + os.getpid() % 20000
    r = u.nsprim("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8080", "--rootfs",
                 rootless_users.rootfs, "--", "sh", "-c",
                 "mkdir -p /tmp/www && echo hello-rootless > /tmp/www/index.html && "
                 "exec httpd -f -p 8080 -h /tmp/www")
    assert r.returncode == 0, r.stderr
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/", "hello-rootless").strip() \
            == "hello-rootless"
        ps = u.nsprim("ps")
        assert f"127.0.0.1:{port}->8080/tcp" in ps.stdout
    finally:
        rm = u.nsprim("rm", "-f", "web")
    assert rm.returncode == 0, rm.stderr
    # pasta went with the container: nothing of the user's is left running
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-u", str(u.uid), "-a"], capture_output=True, text=True)
    assert "pasta" not in left.stdout


def test_network_host_and_none(rootless_users: Users) -> None:
    u = rootless_users["a"]
    host = os.readlink("/proc/self/ns/net")
    r = u.nsprim("run", "--rm", "--network", "host", "--rootfs", rootless_users.rootfs,
                 "--", "readlink", "/proc/self/ns/net")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == host
    r = u.nsprim("run", "--rm", "--network", "none", "--rootfs", rootless_users.rootfs,
                 "--", "ls", "/sys/class/net")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo"]


def test_restart_policy(rootless_users: Users) -> None:
    u = rootless_users["b"]
    r = u.nsprim("run", "-d", "--name", "again", "--restart", "on-failure:2", *NONET,
                 "--rootfs", rootless_users.rootfs, "--", "sh", "-c", "echo run; exit 3")
    assert r.returncode == 0, r.stderr
    try:
        import json

        state: dict[str, object] = {}
        count: object = None
        for _ in range(100):
            doc = json.loads(u.nsprim("inspect", "again").stdout)[0]
            state = doc["State"]
            count = doc.get("RestartCount", state.get("RestartCount"))  # docker: top level
            if count == 2 and state.get("Status") == "exited":
                break
            time.sleep(0.1)
        assert (count, state.get("ExitCode")) == (2, 3)
        assert u.nsprim("logs", "again").stdout.split() == ["run"] * 3
    finally:
        assert u.nsprim("rm", "-f", "again").returncode == 0


def test_terminal(rootless_users: Users) -> None:
    """-it without root: the terminal is the container's own devpts (gid 5
    mapped in a full mapping), the command reads what is typed."""
    import pty
    import select
    import signal

    u = rootless_users["a"]
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(u.home)
        os.execve("/usr/bin/setpriv", [
            "setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--clear-groups", PY, "-m",
            "nsprim", "run", "--rm", "-it", *NONET, "--rootfs", rootless_users.rootfs, "--",
            "sh", "-c", "tty; read x; echo got=$x; exit 4"], u.env())
    os.write(fd, b"typed\n")
    out = b""
    deadline = time.monotonic() + 20
    while b"got=typed" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    if b"got=typed" not in out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"/dev/pts/0" in out and b"got=typed" in out, out
    assert os.waitstatus_to_exitcode(status) == 4
