"""Rootless start-up: nsprim in-process against bubblewrap, both without root,
in one run, rounds interleaved.

    python -m benchmarks.rootless [--rounds N] [--batch N] [--quick] [--json FILE]

As root it creates a temporary user (removed at the end), copies the
installed nsprim where that user can read it, and runs the measuring part
as that user with Debian's /usr/bin/python3 (root's Python may not be
executable by others).  As a non-root user it measures directly.

Cases, each `/bin/true` on the same busybox rootfs, a new user namespace
with a single-id mapping (container root = the user), new pid, net, ipc, uts
and mount namespaces:

- bwrap: ``bwrap --unshare-user --unshare-pid --unshare-net --unshare-ipc
  --unshare-uts --bind ROOTFS / --proc /proc /bin/true`` (a whole process:
  fork + exec of bwrap, which then sets up and execs)
- nsprim minimal: ``run(['/bin/true'], rootfs=..., user_namespace='single')``
  with bwrap's work only (no /dev, /sys, masks, cgroup namespace, seccomp)
- nsprim default: the same with docker's defaults (/dev, /sys, masks,
  capabilities, seccomp, cgroup namespace)

The goal (issue 18): nsprim in-process <= 1.0x bwrap.  Ratios are medians
of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

GOAL = 1.0


def _bwrap_argv(rootfs: str) -> list[str]:
    return ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--bind", rootfs, "/", "--proc", "/proc", "/bin/true"]


def measure(rootfs: str, rounds: int, batch: int) -> dict[str, list[list[float]]]:
    """Per round, `batch` start-to-exit times (seconds) of each case."""
    from nsprim import run

    minimal: dict[str, Any] = dict(namespaces={"cgroup": False}, mount_dev=False,
                                   mount_sys=False, masked_paths=(), readonly_paths=(),
                                   seccomp="unconfined")
    bw = _bwrap_argv(rootfs)

    def nsprim_min() -> None:
        r = run(["/bin/true"], rootfs=rootfs, user_namespace="single", **minimal)
        assert r.returncode == 0

    def nsprim_default() -> None:
        r = run(["/bin/true"], rootfs=rootfs, user_namespace="single")
        assert r.returncode == 0

    def bwrap() -> None:
        subprocess.run(bw, check=True, stdin=subprocess.DEVNULL)

    cases = {"bwrap": bwrap, "nsprim minimal": nsprim_min, "nsprim default": nsprim_default}
    for fn in cases.values():  # warm up: imports, the seccomp program, page cache
        fn()
    out: dict[str, list[list[float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples = []
            for _ in range(batch):
                t = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t)
            out[name].append(samples)
    return out


def report(data: dict[str, list[list[float]]]) -> list[str]:
    lines = [f"{'case':<18} {'p50 ms':>8} {'p90 ms':>8} {'x bwrap':>8}"]
    base = data["bwrap"]
    for name, rounds in data.items():
        flat = sorted(x for r in rounds for x in r)
        p50 = statistics.median(flat) * 1e3
        p90 = flat[min(len(flat) - 1, int(0.9 * len(flat)))] * 1e3
        ratio = statistics.median(statistics.median(r) / statistics.median(b)
                                  for r, b in zip(rounds, base, strict=True))
        lines.append(f"{name:<18} {p50:8.2f} {p90:8.2f} {ratio:8.2f}")
    return lines


def _ratio(data: dict[str, list[list[float]]], name: str) -> float:
    return statistics.median(statistics.median(r) / statistics.median(b)
                             for r, b in zip(data[name], data["bwrap"], strict=True))


def _worker(a: argparse.Namespace) -> int:
    data = measure(a.rootfs, a.rounds, a.batch)
    json.dump(data, sys.stdout)
    return 0


def _as_new_user(a: argparse.Namespace) -> dict[str, list[list[float]]]:
    """Root: measure as a temporary unprivileged user."""
    import nsprim
    from nsprim.testing import busybox_rootfs

    base = tempfile.mkdtemp(prefix="nsprim-bench-rootless-")
    os.chmod(base, 0o755)
    name = f"nsprb{os.getpid() % 100000:05d}"
    try:
        shutil.copytree(os.path.dirname(nsprim.__file__), os.path.join(base, "lib", "nsprim"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(__file__, os.path.join(base, "lib", "rootless_bench.py"))
        subprocess.run(["chmod", "-R", "a+rX", base], check=True)
        from pathlib import Path

        rootfs = str(busybox_rootfs(Path(base) / "rootfs"))
        home = os.path.join(base, "home")
        subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", "-U", name], check=True,
                       capture_output=True)
        import pwd

        pw = pwd.getpwnam(name)
        os.mkdir(home, 0o700)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        env = {"HOME": home, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.path.join(base, "lib")}
        r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                            "--clear-groups", "/usr/bin/python3",
                            os.path.join(base, "lib", "rootless_bench.py"), "--worker",
                            "--rootfs", rootfs, "--rounds", str(a.rounds), "--batch",
                            str(a.batch)], env=env, capture_output=True, text=True, cwd=home)
        if r.returncode != 0:
            raise SystemExit(f"rootless: the measuring user failed: {r.stderr.strip()}")
        data: dict[str, list[list[float]]] = json.loads(r.stdout)
        return data
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", base], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 5: proves it runs")
    ap.add_argument("--json", metavar="FILE", help="write the raw samples here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rootfs", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.batch = 2, 5
    if shutil.which("bwrap") is None:
        print("rootless: needs bwrap (apt-get install bubblewrap)", file=sys.stderr)
        return 2
    if a.worker:
        return _worker(a)
    if os.geteuid() == 0:
        data = _as_new_user(a)
    else:
        from pathlib import Path

        from nsprim.testing import busybox_rootfs

        d = tempfile.mkdtemp(prefix="nsprim-bench-rootless-")
        try:
            data = measure(str(busybox_rootfs(Path(d) / "rootfs")), a.rounds, a.batch)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(f"rootless start-up, {a.rounds} rounds x {a.batch}, single-id user namespace "
          "(medians of per-round ratios)")
    for line in report(data):
        print(line)
    r = _ratio(data, "nsprim default")
    print(f"goal: nsprim default <= {GOAL:.1f}x bwrap: {r:.2f} "
          f"({'met' if r <= GOAL else 'NOT met'}); minimal {_ratio(data, 'nsprim minimal'):.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(data, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
