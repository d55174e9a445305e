"""`nsprim daemon`'s running-container routes against dockerd, with the
same docker CLI, in one run.

    python -m benchmarks.daemon_manage [--rounds N] [--per-round K] [--quick]

The daemons are started as in benchmarks/daemon.py (private sockets and
state; dockerd 20.10 with a private containerd, ``--bridge=none``), each
with one detached busybox container (``--network none``).  Cases, rounds
interleaved, ratios are medians of per-round ratios against dockerd's same
case: ``docker cp`` of a small file in and out, ``docker top``, ``docker
stats --no-stream``, ``docker pause`` + ``unpause``, ``docker update -m``,
``docker diff``, ``docker export -o FILE``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import median, pct
from benchmarks.daemon import Dockerd, Nsprim, dk_version, docker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.per_round = 1, 2
    need = ("docker", "dockerd", "containerd", "docker-registry", "skopeo", "umoci")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in need):
        print(f"daemon_manage: needs root and {', '.join(need)}", file=sys.stderr)
        return 2
    from tests.registry import ImageBuilder, Registry

    from nsprim.testing import find_static_busybox

    work = Path(tempfile.mkdtemp(prefix="nsprim-bench-manage-"))
    (work / "reg").mkdir()
    (work / "img").mkdir()
    (work / "small.txt").write_text("hello\n")
    reg = Registry(work / "reg")
    bb = find_static_busybox()
    assert bb is not None, "needs busybox-static"
    b = ImageBuilder(work / "img", bb)
    b.base("base")
    image = reg.push(b.layout, "base", "bench/busybox") + ":latest"
    daemons: list[Any] = []
    try:
        ns, dk = Nsprim(work), Dockerd(work)
        daemons = [ns, dk]
        for d in daemons:
            docker(d.host, "pull", "-q", image)
            docker(d.host, "run", "-d", "--network", "none", "--name", "box", image,
                   "sleep", "3600")
        small = str(work / "small.txt")
        out = str(work / "out")

        def each(d: Any) -> dict[str, Callable[[], object]]:
            return {
                "docker cp FILE box:/tmp/": lambda: docker(d.host, "cp", small, "box:/tmp/"),
                "docker cp box:/tmp/small.txt FILE":
                    lambda: docker(d.host, "cp", "box:/tmp/small.txt", out),
                "docker top box": lambda: docker(d.host, "top", "box"),
                "docker stats --no-stream box":
                    lambda: docker(d.host, "stats", "--no-stream", "box"),
                "docker pause box + unpause box":
                    lambda: (docker(d.host, "pause", "box"), docker(d.host, "unpause", "box")),
                "docker update -m 64m box":
                    lambda: docker(d.host, "update", "-m", "64m", "--memory-swap", "-1",
                                   "box"),
                "docker diff box": lambda: docker(d.host, "diff", "box"),
                "docker export box":
                    lambda: docker(d.host, "export", "-o", str(work / "export.tar"), "box"),
            }

        cases = {(d.name, k): fn for d in daemons for k, fn in each(d).items()}
        for fn in cases.values():  # warm up
            fn()
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
        rounds: list[dict[tuple[str, str], float]] = []
        for _ in range(a.rounds):
            r: dict[tuple[str, str], float] = {}
            for k, fn in cases.items():
                s = []
                for _ in range(a.per_round):
                    t = time.perf_counter()
                    fn()
                    s.append(time.perf_counter() - t)
                samples[k] += s
                r[k] = median(s)
            rounds.append(r)
        print(f"# nsprim daemon vs dockerd {dk_version(dk.host)}; {a.rounds} rounds x "
              f"{a.per_round}; kernel {os.uname().release}; {os.cpu_count()} CPUs; "
              f"load {os.getloadavg()[0]:.1f}")
        print("| case | dockerd p50 ms | nsprim p50 ms | nsprim p90 ms | x dockerd |")
        print("|---|---:|---:|---:|---:|")
        for k in each(ns):
            mine, peer = samples[(ns.name, k)], samples[(dk.name, k)]
            ratio = median([r[(ns.name, k)] / r[(dk.name, k)] for r in rounds])
            print(f"| `{k}` | {median(peer) * 1e3:.1f} | {median(mine) * 1e3:.1f} | "
                  f"{pct(mine, 0.9) * 1e3:.1f} | {ratio:.2f} |")
    finally:
        for d in daemons:  # the containers outlive a daemon: removed first
            subprocess.run(["docker", "-H", d.host, "rm", "-f", "box"], capture_output=True)
            d.stop()
        reg.stop()  # type: ignore[attr-defined]
        subprocess.run(["umount", "-R", str(work / "docker" / "data")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
