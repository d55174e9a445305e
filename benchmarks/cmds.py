"""The everyday commands of issue 12 against podman, same run, same image:

- ``stats --no-stream`` with N containers running (goal: <= 100 ms for 50;
  podman's ``stats --no-stream`` with as many, for the ratio);
- ``exec CONTAINER true`` (goal: <= 0.25x podman's ``exec``), through the
  installed ``nsprim`` (the C front end and its helper), and the Python CLI
  alone for reference.

Rounds are interleaved (nsprim, podman, nsprim, ...); ratios are medians of
per-round ratios.

    python -m benchmarks.cmds [--containers 50] [--rounds 5] [--per-round 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import median, pct
from benchmarks.compare import _env, front_end, stop_helper

#: podman with a private root, run dir and tmp dir: nothing shared with the
#: host's (or another user's) podman
PODMAN: list[str] = []


class Setup:
    """A busybox rootfs, its OCI layout (for podman) and a state root of our
    own (compare.Setup also fills podman's default storage: not here)."""

    def __init__(self) -> None:
        import tempfile
        from pathlib import Path

        from nsprim.testing import busybox_rootfs, find_static_busybox

        self.work = Path(tempfile.mkdtemp(prefix="nsprim-bench-cmds-"))
        os.chmod(self.work, 0o755)
        bb = find_static_busybox()
        assert bb is not None, "needs busybox-static"
        self.rootfs = str(busybox_rootfs(self.work / "rootfs", bb))
        os.environ["NSPRIM_ROOT"] = str(self.work / "state")
        self.layout: Path | None = None
        if shutil.which("umoci"):
            from tests.registry import ImageBuilder

            b = ImageBuilder(self.work / "img", bb)
            b.base("bench")
            self.layout = b.layout

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _nsprim(*args: str) -> list[str]:
    return [sys.executable, "-m", "nsprim", *args]


def _timed(cmd: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       env=_env())
        out.append(time.perf_counter() - t)
    return out


def _start_nsprim(s: Setup, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = subprocess.run(_nsprim("run", "-d", "--name", f"bench{i}", "--network", "none",
                                   "--rootfs", s.rootfs, "sleep", "100000"),
                           capture_output=True, text=True, check=True, env=_env())
        ids.append(r.stdout.strip())
    return ids


def _podman_setup(s: Setup) -> str | None:
    """PODMAN's private storage, with the bench image copied in; its name."""
    if not (shutil.which("podman") and shutil.which("skopeo") and s.layout):
        return None
    root, run = s.work / "podman-root", s.work / "podman-run"
    PODMAN[:] = ["podman", "--root", str(root), "--runroot", str(run), "--tmpdir",
                 str(s.work / "podman-tmp"), "--runtime", "runc", "--cgroup-manager",
                 "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
    image = "localhost/nsprim-bench:latest"
    r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{s.layout}:bench",
                        f"containers-storage:[overlay@{root}+{run}]{image}"],
                       capture_output=True, text=True)
    return image if r.returncode == 0 else None


def _start_podman(image: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = subprocess.run(PODMAN + ["run", "-d", "--name", f"nsprim-bench{i}", "--ulimit",
                                     "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                     "--network", "none", image, "sleep",
                                     "100000"],
                           capture_output=True, text=True, check=True)
        ids.append(r.stdout.strip())
    return ids


def _stop_all(nsprim_ids: list[str], podman_ids: list[str]) -> None:
    for cid in nsprim_ids:
        subprocess.run(_nsprim("rm", "-f", cid), capture_output=True, env=_env())
    if podman_ids:
        subprocess.run(PODMAN + ["rm", "-f", "-t", "0", *podman_ids], capture_output=True)


def _row(name: str, samples: list[float]) -> dict[str, Any]:
    return {"case": name, "n": len(samples), "p50_ms": median(samples) * 1e3,
            "p90_ms": pct(samples, 0.9) * 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.cmds")
    p.add_argument("--containers", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="5 containers, 2 rounds x 2")
    a = p.parse_args(argv)
    if a.quick:
        a.containers, a.rounds, a.per_round = 5, 2, 2
    if os.geteuid() != 0:
        print("benchmarks.cmds: needs root", file=sys.stderr)
        return 1
    s = Setup()
    image = _podman_setup(s)
    podman = image is not None
    nsprim_ids: list[str] = []
    podman_ids: list[str] = []
    samples: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {"stats": [], "exec": []}
    try:
        nsprim_ids = _start_nsprim(s, a.containers)
        if image is not None:
            podman_ids = _start_podman(image, a.containers)
        cases = {
            "nsprim stats --no-stream": _nsprim("stats", "--no-stream"),
            "nsprim exec true": front_end() + ["exec", nsprim_ids[0], "true"],
            "nsprim exec true (Python CLI)": _nsprim("exec", nsprim_ids[0], "true"),
        }
        if podman:
            cases["podman stats --no-stream"] = PODMAN + ["stats", "--no-stream"]
            cases["podman exec true"] = PODMAN + ["exec", podman_ids[0], "true"]
        for cmd in cases.values():  # warm caches (bytecode, page cache)
            _timed(cmd, 1)
        for _ in range(a.rounds):
            got = {k: _timed(cmd, a.per_round) for k, cmd in cases.items()}
            for k, v in got.items():
                samples.setdefault(k, []).extend(v)
            if podman:
                ratios["stats"].append(median(got["nsprim stats --no-stream"]) /
                                       median(got["podman stats --no-stream"]))
                ratios["exec"].append(median(got["nsprim exec true"]) /
                                      median(got["podman exec true"]))
    finally:
        _stop_all(nsprim_ids, podman_ids)
        stop_helper()  # the C front end's (nsprim.helper)
        if PODMAN:
            subprocess.run(PODMAN + ["system", "reset", "-f"], capture_output=True)
        s.close()
    print(f"{a.containers} containers running each; {a.rounds} rounds x {a.per_round}, "
          "interleaved")
    print(f"{'case':32} {'p50 ms':>9} {'p90 ms':>9}")
    for k, v in samples.items():
        r = _row(k, v)
        print(f"{k:32} {r['p50_ms']:9.1f} {r['p90_ms']:9.1f}")
    stats_ms = median(samples["nsprim stats --no-stream"]) * 1e3
    print()
    print(f"goal: stats --no-stream of {a.containers} <= 100 ms: {stats_ms:.1f} ms "
          f"({'met' if stats_ms <= 100 else 'NOT met'})")
    if ratios["stats"]:
        print(f"stats: {median(ratios['stats']):.2f}x podman's")
    if ratios["exec"]:
        x = median(ratios["exec"])
        print(f"goal: exec true <= 0.25x podman's: {x:.2f}x "
              f"({'met' if x <= 0.25 else 'NOT met'})")
    else:
        print("podman is not installed: no ratios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
