"""The CLI helper (nsprim.helper) as an attacker meets it: its socket, its
requests, and what its children could leak into a container.

A child of the helper must be indistinguishable from a fresh CLI process for
the container: only the caller's fds 0-2 reach it, the caller's environment
(never the helper's), and no fd of the helper or of another client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import need
from ..test_frontend import Front, front_end

#: a client of the helper's protocol (csrc/front.c's), as a script: it runs
#: in-process and under unshare(1)
CLIENT = r'''
import array, os, socket, struct, sys

def ask(run, argv, env=None, fds=(0, 1, 2), magic=b"NSPH", length=None, version=b"1",
        at=None):
    """Send one request (to the helper of `at`, default `run`); its answer
    (b"" if it hung up)."""
    d = at if isinstance(at, int) else os.open(at or run, os.O_PATH | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    try:
        s.connect(f"/proc/self/fd/{d}/helper.sock")
    finally:
        if not isinstance(at, int):
            os.close(d)
    env = [f"{k}={v}".encode() for k, v in (env or {}).items()]
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY)
    fields = [version, b"22", run.encode(), str(len(argv)).encode(),
              *[a.encode() for a in argv], str(len(env)).encode(), *env]
    payload = b"\0".join(fields) + b"\0"
    head = magic + struct.pack("=I", len(payload) if length is None else length)
    try:
        s.sendmsg([head[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [*fds, cwd]))])
        s.sendall(head[1:] + payload)
    except OSError:
        return b""
    finally:
        os.close(cwd)
    try:
        first = s.recv(1)
        if first == b"A":
            rest = b""
            while len(rest) < 5:
                got = s.recv(5 - len(rest))
                if not got:
                    break
                rest += got
            return first + rest
        return first
    except OSError:
        return b""
    finally:
        s.close()
'''


def _client() -> dict[str, object]:
    ns: dict[str, object] = {}
    exec(CLIENT, ns)  # noqa: S102 - the test's own client code
    return ns


@pytest.fixture
def helper(private_root: str) -> Iterator[Front]:
    f = Front(private_root, "helper")
    assert f("ps").returncode == 0
    assert f.helper_pid() is not None
    yield f
    from nsprim.helper import stop

    assert stop(f.run_dir)


def _fds_in_container(f: Front, rootfs: str, **kw: Any) -> list[str]:
    r = f("run", "--rm", "--network", "none", "--rootfs", rootfs, "/bin/sh", "-c",
          "ls /proc/$$/fd; exit 0", **kw)  # the shell's fds (not those ls opens)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_another_uid_cannot_connect(helper: Front, rootfs: str, tmp_path: object) -> None:
    """The run dir is 0700; even with it (and the socket) opened to everyone,
    the helper hangs up on another uid (SO_PEERCRED) and runs nothing."""
    marker = os.path.join(helper.root, "cid-of-nobody")
    argv = ["--root", helper.root, "run", "--rm", "--network", "none", "--rootfs", rootfs,
            "--cidfile", marker, "/bin/true"]
    # the run dir as an O_PATH fd: pytest's directories above it are 0700
    run_fd = os.open(helper.run_dir, os.O_PATH | os.O_DIRECTORY)
    code = CLIENT + (f"\ntry:\n    print(repr(ask({helper.run_dir!r}, {argv!r}, at={run_fd})))\n"
                     "except OSError as e:\n    print(type(e).__name__)\n")

    # the system's python: the test's may live under a directory nobody cannot enter
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

    def as_nobody() -> str:
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=30,
                           user=65534, group=65534, extra_groups=[], cwd="/", pass_fds=[run_fd])
        return r.stdout.strip() or r.stderr

    assert as_nobody() == "PermissionError"
    sock = os.path.join(helper.run_dir, "helper.sock")
    modes = [(p, os.stat(p).st_mode & 0o7777) for p in
             (helper.root, helper.run_dir, sock)]
    try:
        for p, _m in modes:
            os.chmod(p, 0o777 if p == sock else 0o711)
        assert as_nobody() == "b''"  # hung up on: not even a refusal
    finally:
        for p, m in modes:
            os.chmod(p, m)
        os.close(run_fd)
    assert not os.path.exists(marker)
    assert helper("ps").returncode == 0  # and it still serves its own user


def test_callers_extra_fds_do_not_reach_the_container(helper: Front, rootfs: str,
                                                      tmp_path: object) -> None:
    secret = os.open("/etc/hostname", os.O_RDONLY)  # inheritable: the caller leaks it
    try:
        os.set_inheritable(secret, True)
        got = _fds_in_container(helper, rootfs, pass_fds=[secret])
        assert got == ["0", "1", "2"]
        py = Front(helper.root, "python")
        assert _fds_in_container(py, rootfs, pass_fds=[secret]) == got
    finally:
        os.close(secret)
    # a request with more fds than 0-2 and the cwd is refused without running
    ask = _client()["ask"]
    extra = os.open("/etc/hostname", os.O_RDONLY)
    try:
        assert ask(helper.run_dir, ["ps"], fds=(0, 1, 2, extra)) == b""  # type: ignore[operator]
    finally:
        os.close(extra)


def test_helpers_fds_and_env_do_not_reach_the_container(private_root: str,
                                                        rootfs: str) -> None:
    first = Front(private_root, "helper")
    first.env["HELPER_ONLY_SECRET"] = "s3cr3t"  # the caller that starts the helper has it
    assert first("ps").returncode == 0
    hpid = first.helper_pid()
    assert hpid is not None
    try:
        with open(f"/proc/{hpid}/environ", "rb") as fh:  # started with a clean environment
            assert b"HELPER_ONLY_SECRET" not in fh.read()
        with open(f"/proc/{hpid}/environ", "rb") as fh:
            assert b"NSPRIM_HELPER_IDLE=60" in fh.read()
        assert first("run", "--rm", "--network", "none", "--rootfs", rootfs, "-e",
                     "HELPER_ONLY_SECRET", "/bin/sh", "-c", "echo $HELPER_ONLY_SECRET"
                     ).stdout == "s3cr3t\n"  # its own request has it
        later = Front(private_root, "helper")  # a caller without it
        r = later("run", "--rm", "--network", "none", "--rootfs", rootfs, "-e",
                  "HELPER_ONLY_SECRET", "/bin/sh", "-c",
                  "echo ${HELPER_ONLY_SECRET-unset}; ls /proc/$$/fd; exit 0")
        assert (r.returncode, r.stdout.split()) == (0, ["unset", "0", "1", "2"]), r.stderr
        # the CLI process itself (the helper's child) holds none of the
        # helper's sockets or its lock, and has the caller's environment
        helper_fds = _fd_targets(hpid)
        p = subprocess.Popen(later.argv("run", "--rm", "--network", "none", "--rootfs", rootfs,
                                        "/bin/sleep", "30"), env=later.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child = _wait_child(hpid)
            mine = _fd_targets(child)
            assert not (mine & {t for t in helper_fds if t.startswith("socket:")})
            assert not any(t.endswith("helper.lock") for t in mine)
            with open(f"/proc/{child}/environ", "rb") as fh:
                assert b"HELPER_ONLY_SECRET" not in fh.read()
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
    finally:
        from nsprim.helper import stop

        assert stop(first.run_dir)


def _fd_targets(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def _wait_child(ppid: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                return int(d)
        time.sleep(0.05)
    raise AssertionError("the helper forked no child")


def test_two_roots_have_separate_helpers(tmp_path: object, private_root: str) -> None:
    a = Front(private_root, "helper")
    b = Front(os.path.join(os.path.dirname(private_root), "state-b"), "helper")
    try:
        assert a("ps").returncode == 0 and b("ps").returncode == 0
        pa, pb = a.helper_pid(), b.helper_pid()
        assert pa is not None and pb is not None and pa != pb
        # a request naming another root's run dir is refused by this root's helper
        ask = _client()["ask"]
        null = os.open(os.devnull, os.O_RDWR)
        try:
            quiet = (null, null, null)
            assert ask(a.run_dir, ["ps", "-q"], fds=quiet) == b"A" + b"E" + bytes(4)  # type: ignore[operator]
            assert ask(b.run_dir, ["ps"], fds=quiet, at=a.run_dir) == b"R"  # type: ignore[operator]
            assert ask(a.run_dir, ["ps"], fds=quiet, at=b.run_dir) == b"R"  # type: ignore[operator]
        finally:
            os.close(null)
    finally:
        from nsprim.helper import stop

        assert stop(a.run_dir) and stop(b.run_dir)


def test_garbage_requests_are_dropped(helper: Front, rootfs: str) -> None:
    ask = _client()["ask"]
    assert ask(helper.run_dir, ["ps"], magic=b"XXXX") == b""  # type: ignore[operator]
    assert ask(helper.run_dir, ["ps"], length=1 << 30) == b""  # type: ignore[operator]
    assert ask(helper.run_dir, ["ps"], version=b"9") == b"R"  # type: ignore[operator]
    pid = helper.helper_pid()
    r = helper("run", "--rm", "--network", "none", "--rootfs", rootfs, "/bin/echo", "ok")
    assert (r.returncode, r.stdout) == (0, "ok\n")
    assert helper.helper_pid() == pid  # the same helper survived them


def test_caller_in_another_mount_namespace_is_refused(helper: Front, rootfs: str) -> None:
    """What a caller asks for would run in the helper's world, not its own:
    refused, and the front end runs the Python CLI in the caller's world."""
    front_end()
    code = CLIENT + f"\nprint(repr(ask({helper.run_dir!r}, ['ps'])))\n"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                        "-c", code], capture_output=True, text=True, timeout=30)
    need(r.returncode == 0 or "unshare" not in r.stderr, "needs unshare(1)")
    assert r.stdout.strip() == "b'R'", r.stderr
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        *helper.argv("run", "--rm", "--network", "none", "--rootfs", rootfs,
                                     "/bin/echo", "fallback")],
                       capture_output=True, text=True, timeout=60, env=helper.env)
    assert (r.returncode, r.stdout) == (0, "fallback\n"), r.stderr
