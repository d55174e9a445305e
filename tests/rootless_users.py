"""Unprivileged users for the rootless tests: created for the session with
their own homes and subordinate id ranges, removed (with every process they
left) at the end.  Their nsprim is a copy of the installed package run by
Debian's /usr/bin/python3 (root's Python is not executable by other users;
the C core is abi3, and Debian's python3-cffi loads it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.rootless import kill_user_processes

PY = "/usr/bin/python3"


class User:
    """One test user: its name, ids, home, subordinate range (or None)."""

    def __init__(self, name: str, home: str, pylib: str, subid: tuple[int, int] | None
                 ) -> None:
        import pwd

        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid
        self.home, self.pylib, self.subid = home, pylib, subid

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": self.home, "PATH": "/usr/bin:/bin", "PYTHONPATH": self.pylib,
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        env.update(extra)
        return env

    def run(self, *argv: str, timeout: float = 60, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`argv` as this user (real and effective ids, no supplementary
        groups), in a clean environment."""
        cmd = ["/usr/bin/setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
               "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              input=input, env=env if env is not None else self.env(),
                              cwd=self.home)

    def nsprim(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(PY, "-m", "nsprim", *args, timeout=timeout, env=env, input=input)

    def python(self, code: str, timeout: float = 60, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        return self.run(PY, "-c", code, timeout=timeout, env=env)

    @property
    def data_root(self) -> str:
        return os.path.join(self.home, ".local", "share", "nsprim")


class Users:
    def __init__(self, base: str, rootfs: str, users: dict[str, User]) -> None:
        self.base, self.rootfs, self.users = base, rootfs, users

    def __getitem__(self, key: str) -> User:
        return self.users[key]


def _free_subids(count: int) -> int:
    """A first id above every range in /etc/subuid and /etc/subgid."""
    top = 200000
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            p = line.split(":")
            if len(p) == 3 and p[1].isdigit() and p[2].isdigit():
                top = max(top, int(p[1]) + int(p[2]))
    return top + count


def _collect_killed_runs() -> None:
    """Delete the users (and their base dir) of an earlier run that was killed
    before its clean-up: `nsprt<pid%100000><key>` whose pid is gone."""
    import pwd

    for pw in pwd.getpwall():
        name = pw.pw_name
        if not (name.startswith("nsprt") and len(name) == 11 and name[5:10].isdigit()):
            continue
        tag = int(name[5:10])
        if any(int(p) % 100000 == tag for p in os.listdir("/proc") if p.isdigit()):
            continue  # a live run (possibly another one's) may own it
        kill_user_processes(pw.pw_uid)
        subprocess.run(["userdel", name], capture_output=True)
        base = os.path.dirname(pw.pw_dir)
        if os.path.basename(base).startswith("nsprim-rootless-") and os.path.isdir(base):
            with open("/proc/self/mountinfo") as f:
                if base not in f.read():
                    subprocess.run(["rm", "-rf", "--one-file-system", base],
                                   capture_output=True)


def _pylib(dest: str) -> str:
    import nsprim

    src = os.path.dirname(nsprim.__file__)
    shutil.copytree(src, os.path.join(dest, "nsprim"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    import dockerfile  # build's parser (one abi3 extension file)

    shutil.copy(dockerfile.__file__, dest)
    return dest


@pytest.fixture(scope="session", name="rootless_users")
def rootless_users_fixture() -> Iterator[Users]:
    """Users `a` and `b` (65536 subordinate ids each) and `c` (none)."""
    from .conftest import _assert_no_mounts_under, _static_busybox, build_busybox_rootfs, need

    need(os.geteuid() == 0, "needs root (to create the test users)")
    for tool in ("useradd", "userdel", "usermod", "setpriv", "newuidmap", "newgidmap"):
        need(shutil.which(tool) is not None,
             f"needs {tool} (apt-get install passwd util-linux uidmap)")
    need(os.access(PY, os.X_OK), "needs Debian's /usr/bin/python3")
    probe = subprocess.run([PY, "-c", "import cffi, _cffi_backend"], capture_output=True)
    need(probe.returncode == 0, "needs python3-cffi for /usr/bin/python3")
    bb = _static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    _collect_killed_runs()
    base = tempfile.mkdtemp(prefix="nsprim-rootless-")
    os.chmod(base, 0o755)
    created: list[str] = []
    try:
        pylib = _pylib(os.path.join(base, "pylib"))
        os.chmod(pylib, 0o755)
        subprocess.run(["chmod", "-R", "a+rX", pylib], check=True)
        rootfs = str(build_busybox_rootfs(Path(base) / "rootfs", bb))
        users: dict[str, User] = {}
        tag = f"{os.getpid() % 100000:05d}"
        for key in ("a", "b", "c"):
            name = f"nsprt{tag}{key}"
            home = os.path.join(base, f"home-{key}")
            subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", "-K",
                            "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", "-U", name],
                           check=True, capture_output=True)
            created.append(name)
            os.mkdir(home, 0o700)
            import pwd

            pw = pwd.getpwnam(name)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            subid = None
            if key != "c":
                first = _free_subids(65536)
                rng = f"{first}-{first + 65535}"
                subprocess.run(["usermod", "--add-subuids", rng, "--add-subgids", rng, name],
                               check=True, capture_output=True)
                subid = (first, 65536)
            users[key] = User(name, home, pylib, subid)
        yield Users(base, rootfs, users)
    finally:
        import pwd

        for name in created:
            try:
                uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue
            kill_user_processes(uid)
        for name in created:
            subprocess.run(["userdel", name], capture_output=True)
        _assert_no_mounts_under(base)
        subprocess.run(["rm", "-rf", "--one-file-system", base], capture_output=True)
    # nothing of the users is left in the id databases
    for path in ("/etc/passwd", "/etc/subuid", "/etc/subgid"):
        text = Path(path).read_text()
        assert not any(n in text for n in created), f"{path} still names a test user"
