"""Container start-up, side by side: the C floor, unshare(1), bubblewrap and
nsprim in-process, measured interleaved in one run on the same busybox rootfs.

    python -m benchmarks.startup [--rounds N] [--batch N] [--quick] [--json FILE]

Each round runs a batch of every case; a case's ratio to the floor is taken
round by round (same moment, same machine load) and the median of those is
reported.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable

from benchmarks._common import (
    MINIMAL,
    build_floor,
    command_case,
    dump_seccomp,
    floor_samples,
    make_rootfs,
    median,
    pct,
    peer_commands,
    time_calls,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 5: proves it runs")
    ap.add_argument("--json", metavar="FILE", help="write the raw samples here")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.batch = 2, 5
    if os.geteuid() != 0:
        print("startup: needs root", file=sys.stderr)
        return 2

    import tempfile

    # a state root of our own: the seccomp program (cached on disk under the
    # run dir) is compiled by this nsprim, not left over from another version
    state = tempfile.mkdtemp(prefix="nsprim-startup-state-")
    os.environ["NSPRIM_ROOT"] = state
    from nsprim import Cgroup, run
    from nsprim.cgroup import host_layout

    rootfs = make_rootfs()
    floor = build_floor()
    bpf = dump_seccomp(os.path.join(os.path.dirname(floor), "seccomp-default.bpf"))
    cases: dict[str, Callable[[int], list[float]]] = {
        "floor (C, raw clone3)": lambda n: floor_samples(floor, rootfs, n),
        "floor --full (docker defaults)": lambda n: floor_samples(floor, rootfs, n, full=bpf),
        "nsprim run() minimal": lambda n: time_calls(
            lambda: run(["/bin/true"], rootfs=rootfs, **MINIMAL), n),  # type: ignore[arg-type]
        "nsprim run() default": lambda n: time_calls(
            lambda: run(["/bin/true"], rootfs=rootfs), n),
        "nsprim + own cgroup": lambda n: time_calls(
            lambda: run(["/bin/true"], rootfs=rootfs, memory="256m", pids=64,
                        **MINIMAL), n),  # type: ignore[arg-type]
    }
    commands = {"floor (C, raw clone3)": f"{floor} {rootfs} N",
                "floor --full (docker defaults)": (
                    f"{floor} --full {bpf} {rootfs} N  (nsprim's compiled default seccomp "
                    "program; execs /bin/true itself: a C program needs no sealed helper)"),
                "nsprim run() minimal": f"nsprim.run(['/bin/true'], rootfs=R, **{MINIMAL})",
                "nsprim run() default": "nsprim.run(['/bin/true'], rootfs=R)",
                "nsprim + own cgroup": "nsprim.run(['/bin/true'], rootfs=R, memory='256m', "
                                       "pids=64, **MINIMAL): a cgroup created and removed "
                                       "per container, as docker does"}
    from nsprim import Container
    from nsprim.network import NetworkMode

    # a container that keeps the bridge up, as on a host where one runs
    keeper = Container(["sleep", "3600"], rootfs=rootfs, network="bridge").start()
    nomin = {k: v for k, v in MINIMAL.items() if k != "namespaces"}
    cases["nsprim + bridge + 1 port"] = lambda n: time_calls(
        lambda: run(["/bin/true"], rootfs=rootfs, network=NetworkMode.bridge(["18200:80"]),
                    **nomin), n)  # type: ignore[arg-type]
    cases["nsprim + network none"] = lambda n: time_calls(
        lambda: run(["/bin/true"], rootfs=rootfs, network=NetworkMode.NONE,
                    **nomin), n)  # type: ignore[arg-type]
    commands["nsprim + bridge + 1 port"] = ("nsprim.run(['/bin/true'], rootfs=R, network="
                                            "NetworkMode.bridge(['18200:80']), **MINIMAL)")
    commands["nsprim + network none"] = ("nsprim.run(['/bin/true'], rootfs=R, network="
                                         "NetworkMode.NONE, **MINIMAL)")
    held: list[Cgroup] = []
    if host_layout().v2 is not None:
        # the v2 path: born in an existing cgroup with CLONE_INTO_CGROUP
        cg_floor = Cgroup.create("bench-floor", driver="v2")
        cg_nsp = Cgroup.create("bench-nsprim", driver="v2")
        held += [cg_floor, cg_nsp]
        assert cg_floor.v2_path is not None
        v2dir = cg_floor.v2_path
        cases["floor + CLONE_INTO_CGROUP"] = lambda n: floor_samples(floor, rootfs, n, v2dir)
        cases["nsprim + v2 cgroup"] = lambda n: time_calls(
            lambda: run(["/bin/true"], rootfs=rootfs, cgroup=cg_nsp,
                        **MINIMAL), n)  # type: ignore[arg-type]
        commands["floor + CLONE_INTO_CGROUP"] = f"{floor} {rootfs} N {v2dir}"
        commands["nsprim + v2 cgroup"] = ("nsprim.run(['/bin/true'], rootfs=R, cgroup=cg, "
                                          "**MINIMAL) with cg = Cgroup.create(driver='v2')")
    for name, cmd in peer_commands(rootfs).items():
        cases[name] = (lambda c: lambda n: time_calls(command_case(c), n))(cmd)
        commands[name] = " ".join(cmd)

    for fn in cases.values():  # warm-up
        fn(3)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    per_round: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.rounds):
        for name, fn in cases.items():
            s = fn(a.batch)
            samples[name] += s
            per_round[name].append(median(s))
    floor_name = "floor (C, raw clone3)"
    ratios = {k: median([x / f for x, f in zip(per_round[k], per_round[floor_name],
                                                  strict=True)]) for k in cases}

    print(f"# start-to-exit of /bin/true, {a.rounds} rounds x {a.batch}; "
          f"kernel {platform.release()}, {os.cpu_count()} cpus")
    print(f"{'case':32} {'p50 ms':>8} {'p90 ms':>8} {'x floor':>8}")
    for k in cases:
        print(f"{k:32} {pct(samples[k], .5) * 1e3:8.3f} {pct(samples[k], .9) * 1e3:8.3f} "
              f"{ratios[k]:8.2f}")
    print("\ncommands:")
    for k, c in commands.items():
        print(f"  {k}: {c}")
    goal = ratios["nsprim run() minimal"]
    print(f"\nnsprim minimal / floor = {goal:.2f} (goal <= 1.25: "
          f"{'met' if goal <= 1.25 else 'NOT met'})")
    full = median([x / f for x, f in zip(per_round["nsprim run() default"],
                                         per_round["floor --full (docker defaults)"],
                                         strict=True)])
    print(f"nsprim default / floor --full = {full:.2f} (goal <= 1.3: "
          f"{'met' if full <= 1.3 else 'NOT met'})")
    p50 = {k: median(per_round[k]) for k in cases}
    if "nsprim + v2 cgroup" in cases:
        add = (p50["nsprim + v2 cgroup"] - p50["nsprim run() minimal"]) * 1e3
        print(f"v2 cgroup (CLONE_INTO_CGROUP) adds {add:.3f} ms to nsprim's p50 (goal <= 0.5)")
    add = (p50["nsprim + bridge + 1 port"] - p50["nsprim + network none"]) * 1e3
    print(f"bridge + a published port adds {add:.3f} ms to nsprim's p50 (goal <= 3)")
    add = (p50["nsprim + own cgroup"] - p50["nsprim run() minimal"]) * 1e3
    print(f"an own cgroup with memory+pids limits ({host_layout().kind} host) adds {add:.3f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"when": time.time(), "kernel": platform.release(), "samples": samples,
                       "ratios": ratios, "commands": commands}, f, indent=1)
    for cg in held:
        cg.remove()
    keeper.kill()
    keeper.wait()
    shutil.rmtree(os.path.dirname(rootfs), ignore_errors=True)
    shutil.rmtree(os.path.dirname(floor), ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
