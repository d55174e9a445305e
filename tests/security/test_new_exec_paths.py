"""The exec paths this round added, tried as test_escape tries run/-d/exec:
the library's Container.exec and exec_start (tty), ContainerPool.exec, and
the health check's command.  (build RUN, the daemon and the OCI runtime have
their own files: test_build, test_daemon, test_oci.)

For each: only fds 0-2 at exec, /proc/self/exe is no host interpreter, a
working directory through /proc/self/fd leads nowhere outside, and the
container's protections hold (seccomp filter on, docker's capabilities,
keyctl refused, /proc/kcore masked)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from nsprim import PIPE, Container
from nsprim.pool import ContainerPool

from ..conftest import nsprim_cli

HOST_MARKER = f"/tmp/nsprim-host-marker-{uuid.uuid4().hex[:8]}"
_CLIMB = "cd ../../../../../../../../.. 2>/dev/null; cat ." + HOST_MARKER + " 2>&1; true"
# docker's 14 default capabilities
_DOCKER_CAPS = "00000000a80425fb"
# what each path runs: the fds at exec, the protections, the host's python
_CHECKS = ("/probe fds; grep -E '^(Seccomp|CapEff):' /proc/self/status; "
           "/probe key-search-session nsprim-none; echo; cat /proc/kcore 2>/dev/null | wc -c; "
           "/proc/self/exe -V 2>&1; true")


@pytest.fixture(autouse=True)
def _host_marker() -> object:
    Path(HOST_MARKER).write_text("HOST-SECRET\n")
    yield
    os.unlink(HOST_MARKER)


@pytest.fixture
def exe_rootfs(hostile_rootfs: str) -> str:
    return hostile_rootfs


def _exe_is_no_host_interpreter(out: bytes) -> None:
    """`/proc/self/exe -V` as the command itself: at its execve /proc/self/exe
    is whatever execs it; the host's python would print its version."""
    assert b"Python 3" not in out, out


def _assert_contained(out: str) -> None:
    lines = out.splitlines()
    fds = [ln.split()[0] for ln in lines if ln[:1].isdigit() and " " in ln and
           ln.split()[1].startswith(("/", "pipe:", "socket:", "anon_inode:"))]
    assert fds == ["0", "1", "2"], out
    assert "Seccomp:\t2" in out and f"CapEff:\t{_DOCKER_CAPS}" in out, out
    assert "errno=1" in out, out  # keyctl refused by the profile
    assert "\n0\n" in out, out  # /proc/kcore is masked: nothing to read
    assert "Python 3" not in out and "HOST-SECRET" not in out, out


def test_library_exec_and_exec_start(exe_rootfs: str) -> None:
    with Container(["sleep", "60"], rootfs=exe_rootfs) as c:
        r = c.exec(["sh", "-c", _CHECKS], capture_output=True, timeout=30)
        _assert_contained(r.stdout.decode())
        r = c.exec(["/proc/self/exe", "-V"], capture_output=True, timeout=30)
        _exe_is_no_host_interpreter(r.stdout + r.stderr)
        for n in range(3, 20):
            try:  # refused (nothing there in the container), or inside
                r = c.exec(["sh", "-c", _CLIMB], cwd=f"/proc/self/fd/{n}",
                           capture_output=True, timeout=30)
            except OSError:
                continue
            assert b"HOST-SECRET" not in r.stdout + r.stderr, (n, r)
        # with a terminal: the command's side is the slave, nothing else
        p = c.exec_start(["sh", "-c", _CHECKS], tty=True, stdin=PIPE)
        out = b""
        deadline = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < deadline:
            try:
                out += os.read(p.pty_master, 65536)
            except OSError:
                break
        p.wait()
        text = out.decode(errors="replace").replace("\r\n", "\n")
        assert "Seccomp:\t2" in text and "Python 3" not in text, text
        c.kill()


def test_pool_exec(exe_rootfs: str) -> None:
    with ContainerPool(["sleep", "60"], size=1, rootfs=exe_rootfs) as pool:
        for _ in range(2):  # a fresh container, then a reused one
            r = pool.exec(["sh", "-c", _CHECKS], capture_output=True, timeout=30)
            _assert_contained(r.stdout.decode())
            r = pool.exec(["/proc/self/exe", "-V"], capture_output=True, timeout=30)
            _exe_is_no_host_interpreter(r.stdout + r.stderr)


def test_health_check_command(exe_rootfs: str) -> None:
    name = f"hc-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("run", "-d", "--name", name, "--network", "none", "--health-cmd",
                   _CHECKS + "; exit 1", "--health-interval", "100ms",
                   "--rootfs", exe_rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 20
        out = ""
        while time.monotonic() < deadline:
            st = json.loads(nsprim_cli("inspect", name).stdout)[0]["State"]
            log = (st.get("Health") or {}).get("Log") or []
            if log:
                out = log[-1]["Output"]
                break
            time.sleep(0.1)
        _assert_contained(out)
    finally:
        assert nsprim_cli("rm", "-f", name).returncode == 0


def test_create_then_start_attached(exe_rootfs: str) -> None:
    """`create` + `start -a`: the same spawn as run."""
    name = f"cs-{uuid.uuid4().hex[:6]}"
    r = nsprim_cli("create", "--name", name, "--network", "none", "-w", "/proc/self/fd/3",
                   "--rootfs", exe_rootfs, "sh", "-c", _CLIMB)
    assert r.returncode == 0, r.stderr
    try:
        r = nsprim_cli("start", "-a", name)
        assert "HOST-SECRET" not in r.stdout + r.stderr, r
    finally:
        nsprim_cli("rm", "-f", name)
    name = f"cs-{uuid.uuid4().hex[:6]}"
    assert nsprim_cli("create", "--name", name, "--network", "none", "--rootfs", exe_rootfs,
                      "sh", "-c", _CHECKS).returncode == 0
    try:
        r = nsprim_cli("start", "-a", name)
        _assert_contained(r.stdout)
    finally:
        nsprim_cli("rm", "-f", name)
