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


# ------------------------------------------ item 15: bad flags, bad keywords

ARABIC_19001 = "\u0661\u0669\u0660\u0660\u0661"  # "19001" in Arabic-Indic digits


def _state() -> dict[str, list[str]]:
    """What a run may leave in the state root: records, run files, volumes,
    and mounts under it."""
    root = Path(os.environ["NSPRIM_ROOT"])
    out = {d: sorted(os.listdir(root / d)) if (root / d).is_dir() else []
           for d in ("containers", "run", "volumes")}
    with open("/proc/self/mountinfo") as f:
        out["mounts"] = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(root))]
    return out


@pytest.fixture
def host_dir(tmp_path: Path) -> str:
    d = tmp_path / "hostdir"
    d.mkdir()
    (d / "secret").write_text("host\n")
    return str(d)


BAD_RUN_FLAGS: list[tuple[list[str], str]] = [
    # ports: other scripts' digits, an empty protocol, sloppy addresses and ranges
    (["-p", f"{ARABIC_19001}:80"], ARABIC_19001),
    (["-p", f"80:{ARABIC_19001}"], ARABIC_19001),
    (["-p", "19001:80/"], "19001:80/"),
    (["-p", "19001:80/ "], "19001:80/ "),
    (["-p", "19001-1900\u0662:80-81"], "1900\u0662"),
    (["-p", "[127.0.0.1]:19001:80"], "[127.0.0.1]"),
    (["-p", "127.0.0.\u0661:19001:80"], "127.0.0.\u0661"),
    (["-p", " 19001:80"], "' 19001:80'"),
    (["-p", "19001\n:80"], "19001\\n:80"),
    # sizes, CPUs, ids and counts with other scripts' digits
    (["-m", "\u0661\u0660\u0660m"], "\u0661\u0660\u0660m"),
    (["--memory-swap", "\u0661g", "-m", "1g"], "\u0661g"),
    (["--cpus", "\u0660.\u0665"], "\u0660.\u0665"),
    (["--cpuset-cpus", "\u0660"], "\u0660"),
    (["--pids-limit", "\u0661\u0660"], "\u0661\u0660"),
    (["--cpu-shares", "\u0665\u0661\u0662"], "\u0665\u0661\u0662"),
    (["-u", "\u0661\u0660\u0660\u0660"], "\u0661\u0660\u0660\u0660"),
    (["-u", "1000:\u0661\u0660\u0660\u0660"], "\u0661\u0660\u0660\u0660"),
    (["--userns-map", "\u0661\u0660\u0660\u0660\u0660\u0660"], "\u0661\u0660\u0660\u0660"),
    (["--restart", "on-failure:\u0663"], "on-failure:\u0663"),
    (["--tmpfs", "/x:size=\u0661m"], "size=\u0661m"),
    (["--tmpfs", "/x:mode=\u0667\u0667\u0667"], "mode=\u0667\u0667\u0667"),
    (["-m", "9" * 30 + "p"], "9" * 30),
    # mounts onto the container's /proc, onto its root, through '..'
    (["--tmpfs", "/proc"], "/proc"),
    (["--tmpfs", "/proc/sys"], "/proc/sys"),
    (["--tmpfs", "//proc/./"], "//proc/./"),
    (["--tmpfs", "/"], "'/'"),
    (["--tmpfs", "/tmp/../proc"], "/tmp/../proc"),
    (["-v", "{host}:/proc"], ":/proc"),
    (["-v", "{host}:/proc/sys/kernel"], "/proc/sys/kernel"),
    (["-v", "{host}:/proc/1/root:ro"], "/proc/1/root"),
    (["-v", "secinputvol:/proc/sys"], "secinputvol:/proc/sys"),
    (["-v", "{host}:/"], ":/'"),
    (["-v", "{host}:/./"], ":/./"),
    (["-v", "secinputvol:/"], "secinputvol:/"),
    (["-v", "{host}:/data/../etc"], "/data/../etc"),
    # environment names that forge lines, or are empty
    (["-e", "A\nB=1"], "A\\nB"),
    (["-e", "LD_PRELOAD\n"], "LD_PRELOAD\\n"),
    (["-e", "A\rB=1"], "A\\rB"),
    (["-e", "A B=1"], "A B"),
    (["-e", "A\tB"], "A\\tB"),
    (["-e", "=1"], "''"),
    # /etc files: names and addresses that forge lines in /etc/hosts or resolv.conf
    (["--add-host", "db"], "'db'"),
    (["--add-host", "db:1.2.3"], "'1.2.3'"),
    (["--add-host", "db:10.0.0.1\n6.6.6.6 evil"], "\\n"),
    (["--add-host", "db evil:10.0.0.1"], "'db evil'"),
    (["--add-host", "db:\u0661.2.3.4"], "\u0661.2.3.4"),
    (["--dns", "1.2.3.x"], "'1.2.3.x'"),
    (["--dns", "10.0.0.1\nnameserver 6.6.6.6"], "\\n"),
    (["--dns-search", "corp\nnameserver 6.6.6.6"], "\\n"),
    (["--dns-option", "ndots:1 rotate"], "'ndots:1 rotate'"),
    (["--domainname", "bad_domain"], "bad_domain"),
    (["--network", "container:x", "--add-host", "a:1.2.3.4"], "host-to-IP mapping"),
    (["--network", "container:x", "--dns", "1.1.1.1"], "dns and the network mode"),
    # IPv6 publishing: brackets required, nothing after the address but the ports
    (["-p", "::1:19001:80"], "::1:19001:80"),
    (["-p", "[::1]:19001"], "[::1]:19001"),
    (["-p", "[::1%lo]:19001:80"], "[::1%lo]"),
    (["-p", "[::ffff:127.0.0.1]:19001:80"], "::ffff:127.0.0.1"),
]


@pytest.mark.parametrize("args,needle", BAD_RUN_FLAGS,
                         ids=[repr(a)[1:40] for a, _ in BAD_RUN_FLAGS])
def test_bad_run_flags_are_refused_before_anything(rootfs: str, host_dir: str,
                                                   args: list[str], needle: str) -> None:
    args = [a.replace("{host}", host_dir) for a in args]
    before = _state()
    r = _cli("run", "--rm", "--rootfs", rootfs, *args, "--", "cat", "/proc/1/root/secret")
    _one_line_125(r, needle.replace("{host}", host_dir))
    assert _state() == before
    assert os.listdir(host_dir) == ["secret"]


@pytest.mark.parametrize("args,needle", [
    (["-e", "A\nB=1"], "A\\nB"),
    (["-e", "=1"], "''"),
    (["-u", "\u0661\u0660\u0660\u0660"], "\u0661\u0660\u0660\u0660"),
])
def test_bad_exec_flags_are_refused(args: list[str], needle: str) -> None:
    # refused before the container is even looked up
    r = _cli("exec", *args, "no-such-container", "true")
    _one_line_125(r, needle)


def test_bind_over_procs_lxcfs_files_still_allowed(rootfs: str, tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 42 kB\n")
    r = _cli("run", "--rm", "--network", "none", "--rootfs", rootfs, "-v",
             f"{meminfo}:/proc/meminfo:ro", "--", "cat", "/proc/meminfo")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "MemTotal: 42 kB\n"


def _api_cases(host: str) -> list[tuple[dict[str, object], str]]:
    from nsprim import Bind, Tmpfs, Volume
    from nsprim.network import NetworkMode

    return [
        ({"env": {"A\nB": "1"}}, "A\\\\nB"),
        ({"env": ["A\nB=1"]}, "A\\\\nB"),
        ({"env": {"": "1"}}, "empty"),
        ({"user": "\u0661\u0660\u0660\u0660"}, "ASCII"),
        ({"memory": "\u0661\u0660\u0660m"}, "memory"),
        ({"cpus": "\u0661"}, "cpus"),
        ({"cpuset": "\u0660"}, "cpuset"),
        ({"mounts": [Volume("secinputvol", "/proc/sys")]}, "/proc"),
        ({"mounts": [Volume("secinputvol", "/")]}, "root"),
    ] + [
        # refused already when the spec objects are made
        ({"mounts": lambda: [Tmpfs("/proc")]}, "/proc"),
        ({"mounts": lambda: [Bind(host, "/proc/sys")]}, "/proc"),
        ({"mounts": lambda: [Bind(host, "/")]}, "root"),
        ({"mounts": lambda: [Bind(host, "/a/../proc")]}, r"\.\."),
        ({"network": lambda: NetworkMode.bridge(publish=[f"{ARABIC_19001}:80"])}, "port"),
        ({"network": lambda: NetworkMode.bridge(publish=["19001:80/"])}, "protocol"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_bad_api_keywords_are_config_errors(rootfs: str, host_dir: str, case: int) -> None:
    from nsprim import Container

    cases = _api_cases(host_dir)
    assert len(cases) == 15
    kwargs, needle = cases[case]
    before = _state()
    with pytest.raises(ConfigError, match=needle):
        kw = {k: v() if callable(v) else v for k, v in kwargs.items()}
        Container(["true"], rootfs=rootfs, **kw).start()  # type: ignore[arg-type]
    assert _state() == before


def test_api_mount_targets_are_cleaned() -> None:
    from nsprim import Bind, Tmpfs

    assert Bind("/srv", "//data/./x/").target == "/data/x"
    assert Tmpfs("/run/").target == "/run"
    assert Bind("/srv/meminfo", "/proc/meminfo").target == "/proc/meminfo"
