"""Rootless limits through a delegated cgroup v2 subtree (`nsprim system
delegate USER`), run as an unprivileged user the tests create.

This host is hybrid (limit controllers on v1): delegation and rootless
limits are refused there in one line.  In the pure cgroup v2 VM
(tests/vm/cgroup_v2.sh, which selects tests named ``test_cgroup*``) root
delegates a subtree, the user's processes start in its ``session`` leaf, and
the user's `-m` is enforced: memory.max is written and a memory hog is
OOM-killed (exit 137)."""

from __future__ import annotations

import os
import subprocess
import sys

from nsprim.cgroup import host_layout

from .rootless_users import PY, User, Users

NONET = ("--network", "none")


def _root_nsprim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsprim", *args], capture_output=True,
                          text=True, timeout=120)


def _one_line(r: subprocess.CompletedProcess[str], code: int = 125) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _in_cgroup(u: User, cgroup: str, *argv: str, timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
    """`argv` as `u`, started (by root) in `cgroup`: how a login would place
    the user's session in its delegated subtree."""
    cmd = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup,
           "/usr/bin/setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--clear-groups",
           "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=u.env(),
                          cwd=u.home)


def test_cgroup_rootless_limits_refused_without_delegation(rootless_users: Users) -> None:
    """No delegated subtree (hybrid here; in the VM, before `system delegate`):
    one line naming the flag and how to get delegation."""
    u = rootless_users["c"]
    r = u.nsprim("run", "--rm", *NONET, "-m", "32m", "--rootfs", rootless_users.rootfs,
                 "--", "true")
    line = _one_line(r)
    assert "-m" in line and "nsprim system delegate" in line, line
    if host_layout().kind != "v2":
        assert "cgroup v1" in line


def test_cgroup_delegate_refused_by_a_user(rootless_users: Users) -> None:
    line = _one_line(rootless_users["c"].nsprim("system", "delegate",
                                                rootless_users["c"].name))
    assert "only root" in line


def test_cgroup_delegate_bad_user_named() -> None:
    line = _one_line(_root_nsprim("system", "delegate", "nsprim-no-such-user"))
    assert "'nsprim-no-such-user'" in line


def test_cgroup_delegate_and_rootless_limits(rootless_users: Users) -> None:
    """Hybrid host: `system delegate` refused in one line, nothing made.
    Pure v2: the subtree is the user's as the kernel's delegation rules say,
    the user's `-m 32m` sets memory.max and OOM-kills a hog, and `--remove`
    leaves nothing."""
    lay = host_layout()
    u = rootless_users["c"]  # single id: no setuid newuidmap needed in the VM
    if os.environ.get("NSPRIM_EXPECT_CGROUP") == "v2":
        assert lay.kind == "v2", lay
    if lay.kind != "v2":
        line = _one_line(_root_nsprim("system", "delegate", u.name))
        assert lay.kind in line and "pure cgroup v2" in line, line
        if lay.v2 is not None:
            assert not os.path.exists(os.path.join(lay.v2, "nsprim.delegate"))
        return
    assert lay.v2 is not None
    r = _root_nsprim("system", "delegate", u.name)
    assert r.returncode == 0, r.stderr
    d = os.path.join(lay.v2, "nsprim.delegate", u.name)
    session = os.path.join(d, "session")
    try:
        for path in (d, session):
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                assert os.stat(os.path.join(path, name)).st_uid == u.uid, (path, name)
        with open(os.path.join(d, "cgroup.subtree_control")) as f:
            assert {"memory", "pids"} <= set(f.read().split())
        # outside its subtree the user's process is told where to start
        line = _one_line(u.nsprim("run", "--rm", *NONET, "-m", "32m", "--rootfs",
                                  rootless_users.rootfs, "--", "true"))
        assert "outside it" in line and session in line, line
        # in it: the Python API's container gets memory.max and pids.max
        code = ("import os\nfrom nsprim import Container\n"
                f"c = Container(['sleep', '30'], rootfs={rootless_users.rootfs!r}, "
                "network='none', memory='32m', pids=20)\n"
                "c.start()\n"
                "p = c.cgroup.v2_path\n"
                "print(p)\n"
                "print(open(os.path.join(p, 'memory.max')).read().strip())\n"
                "print(open(os.path.join(p, 'pids.max')).read().strip())\n"
                "c.kill(); c.wait()\n"
                "print(os.path.exists(p))\n")
        r = _in_cgroup(u, session, PY, "-c", code)
        assert r.returncode == 0, r.stderr
        path, mem, pids, left = r.stdout.split()
        assert path.startswith(d + "/nsprim/"), path
        assert (mem, pids, left) == (str(32 << 20), "20", "False")
        # the CLI's -m: a memory hog is OOM-killed, docker's 137
        hog = "awk 'BEGIN { s = \"x\"; while (1) s = s s }'"
        r = _in_cgroup(u, session, PY, "-m", "nsprim", "run", "--rm", *NONET, "-m", "32m",
                       "--rootfs", rootless_users.rootfs, "--", "sh", "-c", "exec " + hog)
        assert r.returncode == 137, (r.returncode, r.stderr)
        # the control: without -m, a 64 MiB string is built and printed
        r = _in_cgroup(u, session, PY, "-m", "nsprim", "run", "--rm", *NONET, "--rootfs",
                       rootless_users.rootfs, "--", "sh", "-c",
                       "exec awk 'BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s; "
                       "print length(s) }'")
        assert r.returncode == 0 and int(r.stdout) == 1 << 26, (r.returncode, r.stderr)
        with open(os.path.join(d, "cgroup.procs")) as f:
            assert f.read().strip() == ""  # the subtree's top holds no process
    finally:
        r = _root_nsprim("system", "delegate", "--remove", u.name)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(d)
    assert not os.path.exists(os.path.join(lay.v2, "nsprim.delegate"))
