"""pytest-benchmark: nsprim's in-process start-to-exit against the C floor
measured in the same session.  Run: pytest benchmarks/ --benchmark-only

The ratio to the floor is printed and stored in extra_info; it is a report,
not an assertion (this machine is shared and noisy)."""

from __future__ import annotations

from typing import Any

from benchmarks._common import MINIMAL, floor_samples, median
from nsprim import run


def _report(benchmark: Any, floor: str, rootfs: str, label: str) -> None:
    fl = median(floor_samples(floor, rootfs, 200))
    mine = benchmark.stats.stats.median
    benchmark.extra_info["floor_p50_ms"] = round(fl * 1e3, 3)
    benchmark.extra_info["ratio_to_floor"] = round(mine / fl, 3)
    print(f"\n{label}: p50 {mine * 1e3:.3f} ms, floor {fl * 1e3:.3f} ms, "
          f"ratio {mine / fl:.2f}")


def test_start_minimal(benchmark: Any, rootfs: str, floor: str) -> None:
    r = benchmark.pedantic(run, args=(["/bin/true"],), kwargs=dict(rootfs=rootfs, **MINIMAL),
                           rounds=300, warmup_rounds=10)
    assert r.returncode == 0
    _report(benchmark, floor, rootfs, "nsprim minimal (goal <= 1.25x floor)")


def test_start_default(benchmark: Any, rootfs: str, floor: str) -> None:
    r = benchmark.pedantic(run, args=(["/bin/true"],), kwargs=dict(rootfs=rootfs),
                           rounds=300, warmup_rounds=10)
    assert r.returncode == 0
    _report(benchmark, floor, rootfs, "nsprim default (docker's mounts, caps, masks)")
