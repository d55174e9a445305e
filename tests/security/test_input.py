"""Untrusted input is refused in one line, quickly, before anything is made.

An image's /etc/passwd and /etc/group are read as hostile files: never a
FIFO, a device, a directory or an unbounded file.  Flags and API keywords
that docker refuses (ports with non-ASCII digits, mounts onto /proc or onto
the root, environment names with newlines) are refused the same way by the
CLI (exit 125, one line naming the value, no container record) and by the
Python API (ConfigError).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim.errors import ConfigError

from ..conftest import need

# ------------------------------------------------------------------ helpers


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsprim", *args], capture_output=True,
                          text=True, timeout=timeout)


def _one_line_125(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("nsprim: "), r.stderr
    assert "Traceback" not in r.stderr
    assert needle in lines[0], (needle, r.stderr)


@pytest.fixture
def deadline() -> Iterator[None]:
    """In-process checks must not hang: SIGALRM after 10 s fails the test."""
    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError("hung for 10 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _records() -> list[str]:
    d = Path(os.environ["NSPRIM_ROOT"]) / "containers"
    return sorted(os.listdir(d)) if d.is_dir() else []


# ------------------------------------------- item 14: hostile user databases

def _make_fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def _make_dev_zero_link(p: Path) -> None:
    # the link resolves inside the rootfs: give the rootfs its own /dev/zero
    root = p.parents[1]
    (root / "dev").mkdir(exist_ok=True)
    zero = root / "dev" / "zero"
    if not zero.exists():
        os.mknod(zero, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    p.unlink()
    p.symlink_to("/dev/zero")


def _make_huge_link(p: Path) -> None:
    big = p.parents[1] / "big"
    with open(big, "wb") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB of NULs
    p.unlink()
    p.symlink_to("/big")


def _make_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


HOSTILE = {"fifo": (_make_fifo, "FIFO"), "dev-zero": (_make_dev_zero_link, "character device"),
           "huge": (_make_huge_link, "larger than"), "directory": (_make_dir, "directory")}


@pytest.mark.parametrize("db", ["passwd", "group"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_user_database_fails_fast_in_run(fresh_rootfs: str, kind: str, db: str) -> None:
    make, needle = HOSTILE[kind]
    make(Path(fresh_rootfs) / "etc" / db)
    before = _records()
    t0 = time.monotonic()
    r = _cli("run", "--rm", "--network", "none", "--rootfs", fresh_rootfs, "-u", "user",
             "--", "id", timeout=20)
    assert time.monotonic() - t0 < 15
    _one_line_125(r, needle)
    assert f"/etc/{db}" in r.stderr
    assert _records() == before


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_user_database_is_a_config_error_in_the_api(fresh_rootfs: str, kind: str,
                                                             deadline: None) -> None:
    from nsprim import run

    make, needle = HOSTILE[kind]
    make(Path(fresh_rootfs) / "etc" / "passwd")
    with pytest.raises(ConfigError, match=needle):
        run(["id"], rootfs=fresh_rootfs, user="user", network=_none())


def _none() -> object:
    from nsprim.network import NetworkMode

    return NetworkMode.NONE


def test_user_database_over_the_bound_is_refused(fresh_rootfs: str) -> None:
    from nsprim.plan import USER_DB_MAX, resolve_user

    p = Path(fresh_rootfs) / "etc" / "passwd"
    p.write_text("user:x:1000:1000::/home/user:/bin/sh\n" + "#" * USER_DB_MAX + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        resolve_user(fresh_rootfs, ("user", None))


def test_symlinked_user_database_stays_in_the_root(fresh_rootfs: str) -> None:
    from nsprim.plan import resolve_user

    p = Path(fresh_rootfs) / "etc" / "passwd"
    p.rename(Path(fresh_rootfs) / "etc" / "real-passwd")
    p.symlink_to("/etc/real-passwd")  # absolute: must mean the rootfs's
    assert resolve_user(fresh_rootfs, ("user", None))[0] == 1000
    p.unlink()
    p.symlink_to("../../../../../../etc/real-passwd")
    assert resolve_user(fresh_rootfs, ("user", None))[0] == 1000


@pytest.mark.parametrize("uid", ["\u0661\u0660\u0660\u0660", "\u00b9", "99999999999"])
def test_passwd_fields_are_ascii_ids_in_range(fresh_rootfs: str, uid: str) -> None:
    from nsprim.plan import resolve_user

    (Path(fresh_rootfs) / "etc" / "passwd").write_text(f"evil:x:{uid}:0::/:/bin/sh\n")
    with pytest.raises(ConfigError, match="evil"):
        resolve_user(fresh_rootfs, ("evil", None))


def test_exec_with_a_fifo_passwd_fails_fast(userns_rootfs: str) -> None:
    need(os.path.exists("/proc/self/ns/pid"), "needs pid namespaces")
    name = f"sec-input-exec-{os.getpid()}"
    r = _cli("run", "-d", "--name", name, "--network", "none", "--rootfs", userns_rootfs,
             "--", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        # the container makes its own /etc/passwd a FIFO
        r = _cli("exec", name, "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd")
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        r = _cli("exec", "-u", "user", name, "id", timeout=20)
        assert time.monotonic() - t0 < 15
        _one_line_125(r, "FIFO")
    finally:
        _cli("rm", "-f", name)
