"""The library's throughput and latency, against peers measured in the same
run (issue 16):

- 8 threads of minimal ``run()`` against 8 threads of plain
  ``subprocess.run`` (no container at all) and of bwrap (goals: >= 0.4x
  subprocess, >= 3x bwrap);
- with memory+pids limits (a cgroup per container) against without (goal:
  >= 0.8x);
- ``Container.exec`` p50 in a warm container (goal: <= 1 ms);
- ``aio.run`` on one loop against the threaded run() (goal: >= 0.9x).

Rounds are interleaved; ratios are medians of per-round ratios.

    python -m benchmarks.library [--rounds 5] [--n 200] [--threads 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from benchmarks._common import MINIMAL, make_rootfs, median, pct, peer_commands


def throughput(fn: Callable[[], object], n: int, threads: int) -> float:
    """Calls per second of `fn` over n calls from `threads` threads."""
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda _: fn(), range(threads)))  # warm the threads
        t = time.perf_counter()
        list(ex.map(lambda _: fn(), range(n)))
        return n / (time.perf_counter() - t)


def aio_throughput(rootfs: str, n: int, concurrency: int, **kw: object) -> float:
    from nsprim import aio

    async def main() -> float:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await aio.run(["/bin/true"], rootfs=rootfs, **kw)  # type: ignore[arg-type]

        await asyncio.gather(*(one() for _ in range(concurrency)))
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t)

    return asyncio.run(main())


def exec_p50(rootfs: str, n: int) -> tuple[float, float]:
    from nsprim import Container

    with Container(["sleep", "1000"], rootfs=rootfs) as c:
        c.exec(["/bin/true"])
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            c.exec(["/bin/true"])
            samples.append(time.perf_counter() - t)
        c.kill()
    return median(samples), pct(samples, 0.9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=200, help="containers per case and round")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 40 (CI)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.n = 2, 40
    from nsprim import run

    rootfs = make_rootfs()
    try:
        peers = peer_commands(rootfs)
        true = shutil.which("true") or "/bin/true"

        def sub() -> None:
            subprocess.run([true], check=True, stdin=subprocess.DEVNULL)

        def bwrap() -> None:
            subprocess.run(peers["bwrap"], check=True, stdin=subprocess.DEVNULL)

        def minimal() -> None:
            run(["/bin/true"], rootfs=rootfs, **MINIMAL)  # type: ignore[arg-type]

        def default() -> None:
            run(["/bin/true"], rootfs=rootfs)

        def limits() -> None:
            run(["/bin/true"], rootfs=rootfs, memory="64m", pids=64)

        from nsprim.pool import CgroupPool

        pool = CgroupPool(memory="64m", pids=64, size=a.threads)

        def pooled() -> None:
            run(["/bin/true"], rootfs=rootfs, cgroup_pool=pool)

        cases: dict[str, Callable[[], float]] = {
            "subprocess.run (no container)": lambda: throughput(sub, a.n, a.threads),
            "nsprim run(), minimal": lambda: throughput(minimal, a.n, a.threads),
            "nsprim run(), docker's defaults": lambda: throughput(default, a.n, a.threads),
            "nsprim run(), defaults + memory+pids limits":
                lambda: throughput(limits, a.n, a.threads),
            "nsprim run(), defaults + the same limits from a CgroupPool":
                lambda: throughput(pooled, a.n, a.threads),
            "nsprim aio.run(), minimal, one loop": lambda: aio_throughput(
                rootfs, a.n, a.threads, **MINIMAL),
        }
        if "bwrap" in peers:
            cases["bwrap"] = lambda: throughput(bwrap, a.n, a.threads)
        else:
            print("bwrap not installed: its case is skipped", file=sys.stderr)
        rates: dict[str, list[float]] = {k: [] for k in cases}
        execs: list[float] = []
        exec90: list[float] = []
        for r in range(a.rounds):
            for name, fn in cases.items():
                rates[name].append(fn())
            p50, p90 = exec_p50(rootfs, a.n)
            execs.append(p50)
            exec90.append(p90)
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

        def ratio(x: str, y: str) -> float:
            return median([p / q for p, q in zip(rates[x], rates[y], strict=True)])

        sp = "subprocess.run (no container)"
        mini = "nsprim run(), minimal"
        print(f"\n{a.threads} threads, {a.n} containers per case and round, {a.rounds} rounds "
              "(median of per-round ratios)\n")
        print("| case | containers/s | x subprocess | x bwrap |")
        print("|---|---:|---:|---:|")
        for name in cases:
            xb = f"{ratio(name, 'bwrap'):.2f}" if "bwrap" in rates else "-"
            print(f"| {name} | {median(rates[name]):.0f} | {ratio(name, sp):.2f} | {xb} |")
        print()
        lim = "nsprim run(), defaults + memory+pids limits"
        dflt = "nsprim run(), docker's defaults"
        aio_case = "nsprim aio.run(), minimal, one loop"
        pl = "nsprim run(), defaults + the same limits from a CgroupPool"
        print(f"- limits against none (defaults): {ratio(lim, dflt):.2f}x, from a pool "
              f"{ratio(pl, dflt):.2f}x (goal >= 0.8)")
        print(f"- minimal against subprocess: {ratio(mini, sp):.2f}x (goal >= 0.4)")
        if "bwrap" in rates:
            print(f"- minimal against bwrap: {ratio(mini, 'bwrap'):.2f}x (goal >= 3)")
        print(f"- aio.run against threaded run(), minimal: {ratio(aio_case, mini):.2f}x "
              "(goal >= 0.9)")
        print(f"- Container.exec(['/bin/true']) in a warm container: p50 "
              f"{median(execs) * 1e3:.2f} ms, p90 {median(exec90) * 1e3:.2f} ms "
              "(goal: p50 <= 1 ms)")
        pool.close()
    finally:
        shutil.rmtree(rootfs.rsplit("/", 1)[0], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
