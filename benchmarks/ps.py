"""``ps -a``, ``images`` and ``inspect`` with many containers: nsprim against
podman, in one run, rounds interleaved (issue 12's goal: at most 1.0x
podman).

    python -m benchmarks.ps [--containers 200] [--rounds 7] [--quick]

Both get the same busybox image (built with umoci, loaded into nsprim's
store and pulled into podman's from the same OCI layout) and N containers
made from it that were created and never started: nsprim's records are
written as ``run`` writes them before it starts a container
(``lifecycle.new_record``), podman's by ``podman create``.  Each tool has a
private state root.  Timed: the whole command, start to exit, output to
/dev/null:

- ``ps -a`` (N rows), ``images``;
- ``inspect`` of one container, and of all N in one command.

Needs root, umoci and podman (podman 4.3 here, ``--runtime runc
--cgroup-manager cgroupfs``).  Prints medians, per-round ratios and the
goal lines; exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import median


def _nsprim() -> list[str]:
    script = Path(sys.executable).with_name("nsprim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nsprim"]


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="20 containers, 2 rounds")
    a = ap.parse_args(argv)
    if a.quick:
        a.containers, a.rounds = 20, 2
    if os.geteuid() != 0 or not shutil.which("umoci") or not shutil.which("podman"):
        print("ps: needs root, umoci and podman", file=sys.stderr)
        return 2
    from tests.registry import ImageBuilder

    from nsprim.testing import find_static_busybox

    work = Path(tempfile.mkdtemp(prefix="nsprim-bench-ps-"))
    os.chmod(work, 0o755)
    state = work / "state"
    env = dict(os.environ, NSPRIM_ROOT=str(state))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # podman's state is private too: root, run root, tmp dir, and file locks
    # in it (its shared-memory locks are one segment per host, shared with
    # every other podman)
    conf = work / "containers.conf"
    conf.write_text(f'[engine]\nlock_type = "file"\ntmp_dir = "{work / "podman-tmp"}"\n')
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"] = str(conf)
    podman = ["podman", "--root", str(work / "podman-root"), "--runroot",
              str(work / "podman-run"), "--tmpdir", str(work / "podman-tmp"), "--runtime",
              "runc", "--cgroup-manager", "cgroupfs"]
    try:
        bb = find_static_busybox()
        assert bb is not None, "needs busybox-static"
        b = ImageBuilder(work / "img", bb)
        b.base("bench")
        n = a.containers
        t0 = time.perf_counter()
        os.environ["NSPRIM_ROOT"] = str(state)
        from nsprim.images import ImageStore
        from nsprim.lifecycle import new_record
        from nsprim.spec import ContainerSpec

        (img,) = ImageStore().load(str(b.layout))
        image = img.names[0] if img.names else img.id
        for i in range(n):
            new_record(ContainerSpec(name=f"c{i}", image=image, image_id=img.id,
                                     stop_signal=img.stop_signal).to_json())
        t_nsprim = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(podman + ["pull", "-q", f"oci:{b.layout}:bench"], check=True,
                       stdout=subprocess.DEVNULL)
        pimage = subprocess.run(podman + ["images", "-q"], check=True, capture_output=True,
                                text=True).stdout.split()[0]
        for i in range(n):
            subprocess.run(podman + ["create", "-q", "--network", "none", "--name", f"c{i}",
                                     pimage, "sh"],
                           check=True, stdout=subprocess.DEVNULL)
        t_podman = time.perf_counter() - t0
        print(f"{n} containers made: nsprim {t_nsprim:.1f} s (records), podman "
              f"{t_podman:.1f} s (podman create)")
        names = [f"c{i}" for i in range(n)]
        cases = {
            "ps -a": (["ps", "-a"], ["ps", "-a"]),
            "images": (["images"], ["images"]),
            "inspect one": (["inspect", names[n // 2]], ["container", "inspect",
                                                         names[n // 2]]),
            f"inspect all {n}": (["inspect", *names], ["container", "inspect", *names]),
        }
        # the outputs agree on what there is
        rows = subprocess.run(_nsprim() + ["ps", "-a", "-q"], env=env, capture_output=True,
                              text=True, check=True).stdout.split()
        prow = subprocess.run(podman + ["ps", "-a", "-q"], capture_output=True, text=True,
                              check=True).stdout.split()
        assert len(rows) == len(prow) == n, (len(rows), len(prow))
        samples: dict[str, dict[str, list[float]]] = {c: {"nsprim": [], "podman": []}
                                                      for c in cases}
        ratios: dict[str, list[float]] = {c: [] for c in cases}
        for mine, theirs in cases.values():  # warm both (page cache, bytecode)
            _timed(_nsprim() + mine, env)
            _timed(podman + theirs, env)
        for _ in range(a.rounds):
            for c, (mine, theirs) in cases.items():
                x = _timed(_nsprim() + mine, env)
                y = _timed(podman + theirs, env)
                samples[c]["nsprim"].append(x)
                samples[c]["podman"].append(y)
                ratios[c].append(x / y)
        print(f"\n{'case':22} {'nsprim ms':>10} {'podman ms':>10} {'ratio':>7}   (median of "
              f"{a.rounds} rounds; ratio: median of per-round ratios)")
        missed = 0
        for c in cases:
            ns, pm, r = (median(samples[c]["nsprim"]) * 1e3, median(samples[c]["podman"]) * 1e3,
                         median(ratios[c]))
            print(f"{c:22} {ns:10.1f} {pm:10.1f} {r:7.2f}")
        print()
        for c in cases:
            r = median(ratios[c])
            good = r <= 1.0
            missed += not good
            print(f"goal: {c} at most 1.0x podman: {r:.2f}x {'ok' if good else 'MISSED'}")
        return 1 if missed else 0
    finally:
        subprocess.run(podman + ["rm", "-a", "-f"], capture_output=True)
        subprocess.run(podman + ["system", "reset", "-f"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
