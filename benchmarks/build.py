"""nsprim build and push against podman build and skopeo copy, same run.

    python -m benchmarks.build [--rounds N] [--quick]

The same Dockerfile and context, the same busybox base present locally on
both sides (built by nsprim, given to podman with save | load), rounds
interleaved; whole processes are timed (the CLI as a user runs it):

- cold: ``build --no-cache`` (every step runs);
- no change: a rebuild with nothing changed (every step from the cache);
- one file: a rebuild after one file that only the last COPY reads changed;
- push: a 3-layer image to a loopback docker-registry started empty for
  each round (every blob is uploaded by both; nsprim compressed its layers
  when it built them, skopeo compresses while it copies), against
  ``skopeo copy docker-archive:... docker://...`` of the same image.

Ratios are medians of per-round ratios (nsprim / peer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DOCKERFILE = """FROM bench/base:1
WORKDIR /app
COPY deps.txt .
RUN i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done > /app/generated
COPY . .
CMD ["cat", "/app/main.txt"]
"""


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t


def _context(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "Dockerfile").write_text(DOCKERFILE)
    (d / "deps.txt").write_text("nothing\n")
    (d / "main.txt").write_text("v0\n")
    for i in range(50):
        (d / f"src{i:02d}.txt").write_text(f"file {i}\n" * 50)
    (d / "blob.bin").write_bytes(os.urandom(1 << 20))
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    rounds = 2 if a.quick else a.rounds
    for tool in ("podman", "skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="nsb-"))
    os.chmod(work, 0o755)
    env = dict(os.environ, NSPRIM_ROOT=str(work / "ns"))
    ns = [sys.executable, "-m", "nsprim"]
    pm = ["podman", "--root", str(work / "pr"), "--runroot", str(work / "prr"),
          "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    reg: Any = None
    try:
        # the base: busybox FROM scratch, built by nsprim, loaded into podman
        from nsprim.testing import busybox_rootfs

        base = work / "base"
        busybox_rootfs(base / "rootfs")
        (base / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
        subprocess.run(ns + ["build", "-q", "--network", "none", "-t", "bench/base:1",
                             str(base)], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(ns + ["save", "-o", str(work / "base.tar"), "bench/base:1"], check=True,
                       env=env)
        subprocess.run(pm + ["load", "-q", "-i", str(work / "base.tar")], check=True,
                       stdout=subprocess.DEVNULL)
        cn = _context(work / "ctx-nsprim")
        cp = _context(work / "ctx-podman")
        nsb = ns + ["build", "-q", "--network", "none", "-t", "bench/app:1"]
        pmb = pm + ["build", "-q", "--network", "none", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=1024:1024", "-t", "bench/app:1"]
        # the registry for the push case
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.registry import Registry

        results: dict[str, list[tuple[float, float]]] = {
            "cold (--no-cache)": [], "no change": [], "one file changed": [],
            "push, 3 layers": []}
        subprocess.run(nsb + [str(cn)], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(pmb + [str(cp)], check=True, stdout=subprocess.DEVNULL)
        for r in range(rounds):
            results["cold (--no-cache)"].append((
                _timed(nsb + ["--no-cache", str(cn)], env),
                _timed(pmb + ["--no-cache", str(cp)])))
            results["no change"].append((_timed(nsb + [str(cn)], env),
                                         _timed(pmb + [str(cp)])))
            for c in (cn, cp):
                (c / "main.txt").write_text(f"v{r + 1}\n")
            results["one file changed"].append((_timed(nsb + [str(cn)], env),
                                                _timed(pmb + [str(cp)])))
            # push: the same 3-layer image to a registry of its own each round
            # (it has no blob: neither tool can skip or mount anything)
            if reg is not None:
                reg.stop()
            rdir = work / f"reg{r}"
            rdir.mkdir()
            reg = Registry(rdir)
            tag = f"{reg.host}/bench/app:1"
            subprocess.run(ns + ["tag", "bench/app:1", tag], check=True, env=env)
            arch = work / f"app{r}.tar"
            subprocess.run(ns + ["save", "-o", str(arch), "bench/app:1"], check=True, env=env)
            results["push, 3 layers"].append((
                _timed(ns + ["push", "-q", tag], env),
                _timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"docker-archive:{arch}", f"docker://{reg.host}/bench/copy:1"])))
            arch.unlink()
        goals = {"cold (--no-cache)": "<= 0.5", "no change": "<= 0.1 and < 100 ms",
                 "one file changed": "<= 0.5", "push, 3 layers": "<= 1.0"}
        peer = {"push, 3 layers": "skopeo copy"}
        print(f"nsprim build/push vs podman build / skopeo copy, {rounds} rounds, "
              f"{os.cpu_count()} CPUs")
        print("| case | nsprim p50 ms | peer | peer p50 ms | ratio | goal |")
        print("|---|---:|---|---:|---:|---|")
        for case, pairs in results.items():
            n = statistics.median(p[0] for p in pairs) * 1000
            o = statistics.median(p[1] for p in pairs) * 1000
            ratio = statistics.median(p[0] / p[1] for p in pairs)
            print(f"| {case} | {n:.0f} | {peer.get(case, 'podman build')} | {o:.0f} | "
                  f"{ratio:.2f} | {goals[case]} |")
        return 0
    finally:
        if reg is not None:
            reg.stop()
        subprocess.run(pm + ["system", "reset", "-f"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
