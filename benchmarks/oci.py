"""nsprim-runtime against runc and crun, measured in the same run.

One case, as conmon and containerd's shim run a container: ``create`` (the
caller is a subreaper and the init its descendant), ``start``, wait for the
init's exit (waitpid, as the subreaper does), ``delete`` -- three runtime
processes per container, on the same busybox bundle (runc's default
config.json, ``/bin/true``).  Rounds are interleaved; a ratio is the median
of the per-round ratios of medians.

crun refuses this host's hybrid cgroups: its whole loop runs in a private
mount namespace with a fresh cgroup2 mount on /sys/fs/cgroup (as in
compare.py), and its bundle has no rlimits or device rules.

``--podman`` adds ``podman run --rm --network none IMAGE /bin/true`` with
``--runtime nsprim-runtime`` against ``--runtime runc`` (private podman root).

    python -m benchmarks.oci [--rounds 5] [--batch 10] [--podman] [--quick]
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
from pathlib import Path

from benchmarks._common import median, pct

RUNTIME = os.path.join(os.path.dirname(sys.executable), "nsprim-runtime")

#: one process runs the loop: subreaper, create, start, waitpid, delete
_LOOP = r"""
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as conmon and the shim
rt, root, bundle, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pidfile = os.path.join(root, "bench.pid")
quiet = dict(check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
for i in range(n):
    cid = f"bench-{os.getpid()}-{i}"
    t = time.perf_counter()
    subprocess.run([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pidfile,
                    cid], **quiet)
    pid = int(open(pidfile).read())
    subprocess.run([rt, "--root", root, "start", cid], **quiet)
    os.waitpid(pid, 0)
    subprocess.run([rt, "--root", root, "delete", cid], **quiet)
    print(time.perf_counter() - t, flush=True)
"""

_CRUN_WRAP = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', "sh"]


def make_bundle(work: Path, crun: bool = False) -> Path:
    from nsprim.testing import busybox_rootfs, find_static_busybox

    rootfs = work / "rootfs"
    if not rootfs.exists():
        bb = find_static_busybox()
        assert bb is not None, "needs busybox-static"
        busybox_rootfs(rootfs, bb)
    b = work / ("bundle-crun" if crun else "bundle")
    b.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(b)], check=True)
    c = json.loads((b / "config.json").read_text())
    c["process"]["terminal"] = False
    c["process"]["args"] = ["/bin/true"]
    c["root"] = {"path": str(rootfs), "readonly": True}
    if crun:
        c["process"].pop("rlimits", None)
        c["linux"].pop("resources", None)
    (b / "config.json").write_text(json.dumps(c))
    return b


def loop(runtime: str, root: str, bundle: Path, n: int,
         wrap: list[str] | None = None) -> list[float]:
    out = subprocess.run([*(wrap or []), sys.executable, "-c", _LOOP, runtime, root,
                          str(bundle), str(n)], check=True, capture_output=True,
                         text=True).stdout
    return [float(x) for x in out.split()]


def podman_loop(base: Path, runtime: str, image: str, n: int) -> list[float]:
    env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"))
    if runtime != "runc":
        # a private root: a wrapper of the runtime's name (podman passes
        # neither --runtime-flag to its exit command nor its environment)
        (base / "bin").mkdir(exist_ok=True)
        w = base / "bin" / "nsprim-runtime"
        w.write_text(f'#!/bin/sh\nexec {runtime} --root {base / "nsprim-runtime"} "$@"\n')
        w.chmod(0o755)
        runtime = str(w)
    cmd = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"),
           "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs", "--cgroup-manager",
           "cgroupfs", "--events-backend", "file", "--runtime", runtime, "run", "--rm",
           "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit",
           "nproc=1024:1024", image, "/bin/true"]
    code = ("import subprocess, sys, time\n"
            "for _ in range(int(sys.argv[1])):\n"
            "    t = time.perf_counter()\n"
            "    subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL)\n"
            "    print(time.perf_counter() - t, flush=True)\n")
    out = subprocess.run([sys.executable, "-c", code, str(n), *cmd], check=True,
                         capture_output=True, text=True, env=env, cwd=base).stdout
    return [float(x) for x in out.split()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--podman", action="store_true")
    ap.add_argument("--quick", action="store_true", help="1 round of 2")
    ap.add_argument("--runtime", default=RUNTIME,
                    help="the nsprim-runtime to measure (default: next to this python)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.batch = 1, 2
    if not os.path.exists(a.runtime):
        print(f"nsprim-runtime not found: {a.runtime}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="nsprim-bench-oci-"))
    os.chmod(work, 0o755)
    try:
        return _bench(a, work)
    finally:
        _podman_reset(work / "podman")
        shutil.rmtree(work, ignore_errors=True)


def _podman_reset(base: Path) -> None:
    if base.exists():
        subprocess.run(["podman", "--root", str(base / "root"), "--runroot",
                        str(base / "run"), "--tmpdir", str(base / "tmp"), "--storage-driver",
                        "vfs", "system", "reset", "-f"], capture_output=True,
                       env=dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf")))


def _bench(a: argparse.Namespace, work: Path) -> int:
    bundle = make_bundle(work)
    cases: dict[str, tuple[str, list[str] | None, Path]] = {
        "nsprim-runtime": (a.runtime, None, bundle)}
    if shutil.which("runc"):
        cases["runc"] = ("runc", None, bundle)
    if shutil.which("crun"):
        cases["crun"] = ("crun", _CRUN_WRAP, make_bundle(work, crun=True))
    podman_image = None
    if a.podman and shutil.which("podman"):
        base = work / "podman"
        base.mkdir()
        (base / "containers.conf").write_text(
            '[engine]\nruntime_supports_json = ["nsprim-runtime"]\nlock_type = "file"\n')
        tar = subprocess.Popen(["tar", "-C", str(work / "rootfs"), "-c", "."],
                               stdout=subprocess.PIPE)
        subprocess.run(["podman", "--root", str(base / "root"), "--runroot",
                        str(base / "run"), "--tmpdir", str(base / "tmp"), "--storage-driver",
                        "vfs", "import", "-", "localhost/nsprim-bench-oci"], stdin=tar.stdout,
                       check=True, capture_output=True,
                       env=dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf")))
        tar.wait()
        podman_image = "localhost/nsprim-bench-oci"
    samples: dict[str, list[float]] = {k: [] for k in cases}
    per_round: dict[str, list[float]] = {k: [] for k in cases}
    if podman_image:
        for k in ("podman --runtime nsprim-runtime", "podman --runtime runc"):
            samples[k], per_round[k] = [], []
    for r in range(a.rounds):
        for name, (rt, wrap, b) in cases.items():
            root = str(work / f"root-{name}-{r}")
            os.makedirs(root)
            s = loop(rt, root, b, a.batch, wrap)
            samples[name] += s
            per_round[name].append(median(s))
        if podman_image:
            for name, rt in (("podman --runtime nsprim-runtime", a.runtime),
                             ("podman --runtime runc", "runc")):
                s = podman_loop(work / "podman", rt, podman_image, a.batch)
                samples[name] += s
                per_round[name].append(median(s))

    def ratio(k: str, ref: str) -> str:
        if ref not in per_round or not per_round[k]:
            return "-"
        pairs = zip(per_round[k], per_round[ref], strict=True)
        return f"{statistics.median(x / y for x, y in pairs):.2f}"

    print(f"create + start + wait + delete of a busybox bundle, {a.rounds} rounds x "
          f"{a.batch} (interleaved)")
    print(f"{'case':<34} {'p50 ms':>8} {'p90 ms':>8} {'x runc':>7} {'x crun':>7}")
    for k, s in samples.items():
        ref = "podman --runtime runc" if k.startswith("podman") else "runc"
        print(f"{k:<34} {median(s) * 1e3:8.2f} {pct(s, 0.9) * 1e3:8.2f} "
              f"{ratio(k, ref):>7} {ratio(k, 'crun') if not k.startswith('podman') else '-':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
