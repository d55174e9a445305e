"""Shared pieces of the benchmarks: the busybox rootfs, the floor program,
the cases, and robust statistics."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: nsprim's minimal container: the same work as the plain floor program
#: (new pid/mnt/uts/ipc/net namespaces, rootfs bind, /proc, pivot_root), so
#: no /dev, /sys, masks, cgroup namespace or seccomp filter.  What cannot be
#: turned off stays and counts against nsprim: the exec through the sealed
#: helper (nsprim.exe), closing every fd but 0-2, a new session keyring,
#: the capability sets, lo up and the hostname.
MINIMAL = dict(namespaces={"cgroup": False}, mount_dev=False, mount_sys=False,
               masked_paths=(), readonly_paths=(), seccomp="unconfined")


def dump_seccomp(path: str) -> str:
    """Write nsprim's compiled default seccomp program (docker's profile, docker's
    14 capabilities) to `path`, for ``floor --full``; returns `path`."""
    from nsprim.caps import DOCKER_DEFAULT_CAPS
    from nsprim.seccomp import DEFAULT, compile_bpf

    with open(path, "wb") as f:
        f.write(compile_bpf(DEFAULT(), DOCKER_DEFAULT_CAPS))
    return path


def make_rootfs() -> str:
    from nsprim.testing import busybox_rootfs

    d = tempfile.mkdtemp(prefix="nsprim-bench-")
    os.chmod(d, 0o755)
    return str(busybox_rootfs(Path(d) / "rootfs"))


def build_floor(out_dir: str | None = None) -> str:
    """Compile floor.c (the raw clone3 lower bound) and return its path."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="nsprim-floor-")) / "floor"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(HERE / "floor.c")], check=True)
    return str(out)


def floor_samples(floor: str, rootfs: str, n: int, cgroup: str | None = None,
                  full: str | None = None) -> list[float]:
    """n start-to-exit times of the floor program, in seconds; with `full` (a
    seccomp program's file, see dump_seccomp) the floor with docker's defaults."""
    cmd = [floor] + (["--full", full] if full else []) + [rootfs, str(n)]
    cmd += [cgroup] if cgroup else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [int(x) / 1e9 for x in out.split()]


def time_calls(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def command_case(argv: list[str]) -> Callable[[], object]:
    def go() -> None:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return go


def peer_commands(rootfs: str) -> dict[str, list[str]]:
    """The peers that are installed, with the exact command lines used."""
    peers: dict[str, list[str]] = {}
    if shutil.which("unshare"):
        peers["unshare"] = ["unshare", "--fork", "--pid", "--net", "--ipc", "--uts", "--mount",
                            f"--root={rootfs}", "/bin/true"]
    if shutil.which("bwrap"):
        peers["bwrap"] = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                          "--unshare-uts", "--bind", rootfs, "/", "--proc", "/proc",
                          "/bin/true"]
    return peers


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
