"""Container start-up against the peers, one run, one machine, one busybox
image/rootfs: the C floor, unshare(1), bubblewrap, crun, runc, podman, and
nsprim in-process and as a CLI; plus 100 sequential starts per runtime and
200 detached containers alive at once.

    python -m benchmarks.compare [--rounds N] [--batch N] [--quick]
                                 [--json FILE] [--svg FILE]

Every case runs a batch per round, rounds interleaved (the machine is shared
and noisy); ratios are taken round by round against crun and the floor and
their medians reported.  Each peer's exact command line is printed.
Missing peers are skipped with a note.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import (
    MINIMAL,
    build_floor,
    dump_seccomp,
    floor_samples,
    median,
    pct,
    time_calls,
)

_PODMAN_BASE = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
#: _PODMAN_BASE and, once Setup made them, its private storage flags
PODMAN = list(_PODMAN_BASE)
PODMAN_RUN = ["run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
_PEER_LOOP = """
import subprocess, sys, time
cmd, n = sys.argv[1:-1], int(sys.argv[-1])
for i in range(n):
    c = [a.replace("{i}", str(i)) for a in cmd]
    t = time.perf_counter()
    subprocess.run(c, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    print(time.perf_counter() - t, flush=True)
"""


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


class Setup:
    """The shared rootfs, image, bundle, floor program and state root."""

    def __init__(self) -> None:
        from nsprim.testing import busybox_rootfs, find_static_busybox

        self.work = Path(tempfile.mkdtemp(prefix="nsprim-compare-"))
        os.chmod(self.work, 0o755)
        bb = find_static_busybox()
        assert bb is not None, "needs busybox-static"
        self.rootfs = str(busybox_rootfs(self.work / "rootfs", bb))
        self.floor = build_floor(str(self.work))
        self.state = str(self.work / "state")
        os.environ["NSPRIM_ROOT"] = self.state
        # nsprim's compiled default seccomp program, for floor --full
        self.bpf = dump_seccomp(str(self.work / "seccomp-default.bpf"))
        self.image: str | None = None
        self.layout: Path | None = None
        if shutil.which("umoci"):
            from tests.registry import ImageBuilder

            b = ImageBuilder(self.work / "img", bb)
            b.base("bench")
            self.layout = b.layout
            from nsprim.images import ImageStore

            (img,) = ImageStore().load(str(b.layout))
            self.image = img.id
        self.bundle = self.work / "bundle"
        self.bundle.mkdir()
        config = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                        "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": True},
            "root": {"path": self.rootfs, "readonly": False},
            "hostname": "bench",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": t} for t in
                                     ("pid", "network", "ipc", "uts", "mount")]},
        }
        (self.bundle / "config.json").write_text(json.dumps(config))
        self.podman_image = None
        if shutil.which("podman") and shutil.which("skopeo") and self.layout:
            # podman's storage, run dir and tmp dir of this run's own: nothing
            # shared with the host's podman or another run of this benchmark
            root, run = self.work / "podman-root", self.work / "podman-run"
            PODMAN[len(_PODMAN_BASE):] = [
                "--root", str(root), "--runroot", str(run), "--tmpdir",
                str(self.work / "podman-tmp"), "--storage-driver", "overlay",
                "--events-backend", "file"]
            r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{self.layout}:bench",
                                f"containers-storage:[overlay@{root}+{run}]"
                                "localhost/nsprim-bench:latest"],
                               capture_output=True)
            if r.returncode == 0:
                self.podman_image = "localhost/nsprim-bench:latest"

    def close(self) -> None:
        if len(PODMAN) > len(_PODMAN_BASE):
            # not `system reset`: it would also remove the host's podman networks
            subprocess.run(PODMAN + ["rm", "-af", "-t", "0"], capture_output=True)
            subprocess.run(PODMAN + ["rmi", "-af"], capture_output=True)
            del PODMAN[len(_PODMAN_BASE):]
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
            for m in reversed(points):  # the storage's own overlay mount
                if m.startswith(str(self.work) + "/"):
                    subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def _env() -> dict[str, str]:
    # Python programs (the nsprim CLI) run as installed: with their bytecode cache
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def peer_loop(cmd: list[str], n: int, wrap: list[str] | None = None,
              env: dict[str, str] | None = None) -> list[float]:
    """n timed runs of `cmd` ({i} is replaced by the run number) from one helper."""
    full = (wrap or []) + [sys.executable, "-c", _PEER_LOOP, *cmd, str(n)]
    out = subprocess.run(full, check=True, capture_output=True, text=True,
                         env=dict(_env(), **(env or {}))).stdout
    return [float(x) for x in out.split()]


def front_end() -> list[str]:
    """The `nsprim` command a user runs: the C front end installed beside the
    interpreter (csrc/front.c), else the module."""
    exe = os.path.join(os.path.dirname(sys.executable), "nsprim")
    try:
        with open(exe, "rb") as f:
            if f.read(4) == b"\x7fELF":
                return [exe]
    except OSError:
        pass
    return [sys.executable, "-m", "nsprim"]


def python_cli() -> list[str]:
    """The Python CLI itself (the console script nsprim-py, as installed)."""
    exe = os.path.join(os.path.dirname(sys.executable), "nsprim-py")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "nsprim"]


def stop_helper() -> None:
    """Stop the CLI helper of this process's state root (NSPRIM_ROOT)."""
    from nsprim.helper import stop
    from nsprim.state import run_dir

    stop(run_dir())


def cold_loop(cmd: list[str], n: int) -> list[float]:
    """n timed first calls: the helper is stopped (untimed) before each."""
    out = []
    for _ in range(n):
        stop_helper()
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       env=_env())
        out.append(time.perf_counter() - t)
    return out


def cases(s: Setup) -> tuple[dict[str, Callable[[int], list[float]]], dict[str, str]]:
    from nsprim import Cgroup, run
    from nsprim.network import NetworkMode

    c: dict[str, Callable[[int], list[float]]] = {}
    cmd: dict[str, str] = {}
    c["floor (C, raw clone3)"] = lambda n: floor_samples(s.floor, s.rootfs, n)
    cmd["floor (C, raw clone3)"] = f"{s.floor} ROOTFS N"
    c["floor --full (docker defaults)"] = lambda n: floor_samples(s.floor, s.rootfs, n,
                                                                  full=s.bpf)
    cmd["floor --full (docker defaults)"] = (
        f"{s.floor} --full SECCOMP_BPF ROOTFS N: docker's namespaces, mounts, nodev, masked "
        "and read-only paths, 14 caps, keyring and nsprim's compiled default seccomp "
        "program, in C; it execs /bin/true itself (a C program is no clone of a Python "
        "process: no sealed helper needed)")
    if shutil.which("unshare"):
        u = ["unshare", "--fork", "--pid", "--net", "--ipc", "--uts", "--mount",
             f"--root={s.rootfs}", "/bin/true"]
        c["unshare"] = lambda n: peer_loop(u, n)
        cmd["unshare"] = " ".join(u)
    if shutil.which("bwrap"):
        b = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
             "--bind", s.rootfs, "/", "--proc", "/proc", "/bin/true"]
        c["bwrap"] = lambda n: peer_loop(b, n)
        cmd["bwrap"] = " ".join(b)
    if shutil.which("crun"):
        cr = ["crun", "run", "-b", str(s.bundle), "nsprim-bench-crun-{i}"]
        # crun refuses hybrid cgroups: a private mount namespace with a cgroup2 mount
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', "sh"]
        c["crun"] = lambda n: peer_loop(cr, n, wrap)
        cmd["crun"] = " ".join(cr) + "   (inside: " + " ".join(wrap[:6]) + " ...)"
    if shutil.which("runc"):
        rc = ["runc", "run", "-b", str(s.bundle), "nsprim-bench-runc-{i}"]
        c["runc"] = lambda n: peer_loop(rc, n)
        cmd["runc"] = " ".join(rc)
    if s.podman_image:
        pn = PODMAN + PODMAN_RUN + ["--network", "none", s.podman_image, "/bin/true"]
        pb = PODMAN + PODMAN_RUN + ["-p", "18700:80", s.podman_image, "/bin/true"]
        c["podman (network none)"] = lambda n: peer_loop(pn, n)
        c["podman (bridge + port)"] = lambda n: peer_loop(pb, n)
        cmd["podman (network none)"] = " ".join(pn)
        cmd["podman (bridge + port)"] = " ".join(pb)

    nomin = {k: v for k, v in MINIMAL.items() if k != "namespaces"}
    c["nsprim in-process minimal"] = lambda n: time_calls(
        lambda: run(["/bin/true"], rootfs=s.rootfs, **MINIMAL), n)  # type: ignore[arg-type]
    cmd["nsprim in-process minimal"] = f"nsprim.run(['/bin/true'], rootfs=R, **{MINIMAL})"
    c["nsprim in-process default"] = lambda n: time_calls(
        lambda: run(["/bin/true"], rootfs=s.rootfs), n)
    cmd["nsprim in-process default"] = (
        "nsprim.run(['/bin/true'], rootfs=R): docker's defaults (namespaces incl. cgroup, "
        "/dev, devpts, shm, mqueue, /sys ro, masked/read-only paths, nodev, 14 caps, "
        "seccomp default, session keyring, exec through the sealed helper)")

    def with_cgroup() -> None:
        run(["/bin/true"], rootfs=s.rootfs, memory="256m", pids=64, **MINIMAL)  # type: ignore[arg-type]

    c["nsprim in-process + cgroup limits"] = lambda n: time_calls(with_cgroup, n)
    cmd["nsprim in-process + cgroup limits"] = "... memory='256m', pids=64"
    if s.image:
        img = s.image
        c["nsprim in-process + overlay image"] = lambda n: time_calls(
            lambda: run(["/bin/true"], image=img, **MINIMAL), n)  # type: ignore[arg-type]
        cmd["nsprim in-process + overlay image"] = "nsprim.run(['/bin/true'], image=I, ...)"
    c["nsprim in-process + bridge + port"] = lambda n: time_calls(
        lambda: run(["/bin/true"], rootfs=s.rootfs, network=NetworkMode.bridge(["18701:80"]),
                    **nomin), n)  # type: ignore[arg-type]
    cmd["nsprim in-process + bridge + port"] = "... network=NetworkMode.bridge(['18701:80'])"
    if s.image:
        img2 = s.image

        def full() -> None:
            run(["/bin/true"], image=img2, memory="256m", pids=64,
                network=NetworkMode.bridge(["18702:80"]))

        c["nsprim in-process full (docker run)"] = lambda n: time_calls(full, n)
        cmd["nsprim in-process full (docker run)"] = (
            "nsprim.run(['/bin/true'], image=I, memory='256m', pids=64, network="
            "NetworkMode.bridge(['18702:80'])): overlay, cgroup, bridge, port, docker's "
            "mounts/masks/caps, cleanup")
        # the command a user runs: the C front end, whose helper (nsprim.helper)
        # is warm after the first call; the cold first call (it starts the
        # helper); and the Python CLI alone (NSPRIM_HELPER_IDLE=0: no helper)
        front = front_end()
        nsp = front + ["run", "--rm"]
        args_none = ["--network", "none", img2, "/bin/true"]
        cn = nsp + args_none
        cb = nsp + ["-p", "18703:80", img2, "/bin/true"]
        cpy = python_cli() + ["run", "--rm", *args_none]
        # the interpreter's own start: the floor of any Python CLI
        pyfloor = [sys.executable, "-c", "pass"]
        c["python -c pass (CLI floor)"] = lambda n: peer_loop(pyfloor, n)
        cmd["python -c pass (CLI floor)"] = " ".join(pyfloor)
        c["nsprim CLI (network none)"] = lambda n: peer_loop(cn, n)
        c["nsprim CLI (bridge + port)"] = lambda n: peer_loop(cb, n)
        cmd["nsprim CLI (network none)"] = " ".join(cn) + " (C front end, helper warm)"
        cmd["nsprim CLI (bridge + port)"] = " ".join(cb) + " (C front end, helper warm)"
        c["nsprim CLI cold (starts the helper)"] = lambda n: cold_loop(cn, n)
        cmd["nsprim CLI cold (starts the helper)"] = (
            " ".join(cn) + " with no helper running: it starts one and waits for it")
        c["nsprim CLI, Python only"] = lambda n: peer_loop(
            cpy, n, env={"NSPRIM_HELPER_IDLE": "0"})
        cmd["nsprim CLI, Python only"] = "NSPRIM_HELPER_IDLE=0 " + " ".join(cpy)
    _ = Cgroup
    return c, cmd


def sequential_100(c: dict[str, Callable[[int], list[float]]], n: int) -> dict[str, float]:
    """crun README's classic: n containers one after the other, total seconds."""
    out = {}
    for name in ("floor (C, raw clone3)", "crun", "runc", "nsprim in-process minimal",
                 "podman (network none)"):
        if name in c:
            t = time.perf_counter()
            c[name](n)
            out[name] = time.perf_counter() - t
    return out


def alive_200(s: Setup, n: int) -> dict[str, Any]:
    """n detached `sleep` containers at once: host memory per container besides
    the container itself (the shims' proportional set size), and the start
    latency of the last against the first."""
    nsp = [sys.executable, "-m", "nsprim", "--root", s.state, "run", "-d", "--network", "none",
           "--rootfs", s.rootfs, "--", "sleep", "3600"]
    lat, ids = [], []
    try:
        for _ in range(n):
            t = time.perf_counter()
            r = subprocess.run(nsp, capture_output=True, text=True, check=True)
            lat.append(time.perf_counter() - t)
            ids.append(r.stdout.strip())
        pss = 0
        for cid in ids:
            with open(os.path.join(s.state, "containers", cid, "state.json")) as f:
                sup = json.load(f)["supervisor_pid"]
            with open(f"/proc/{sup}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
    finally:
        for cid in ids:
            subprocess.run([sys.executable, "-m", "nsprim", "--root", s.state, "rm", "-f", cid],
                           capture_output=True)
    k = max(1, n // 10)
    return {"containers": n, "supervisor_pss_kib_per_container": pss / max(1, len(ids)),
            "first_start_ms": median(lat[:k]) * 1e3, "last_start_ms": median(lat[-k:]) * 1e3,
            "last_over_first": median(lat[-k:]) / median(lat[:k])}


def svg(results: dict[str, Any], path: str) -> None:
    """A horizontal bar chart of the medians (log-free, plain SVG)."""
    rows = sorted(results["cases"].items(), key=lambda kv: kv[1]["p50_ms"])
    width, bar_h, left = 900, 22, 300
    top = 50
    height = top + len(rows) * (bar_h + 6) + 60
    vmax = max(r["p50_ms"] for _, r in rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             '<text x="10" y="22" font-size="15" font-weight="bold">Container start-to-exit, '
             'median (ms) -- lower is better</text>',
             f'<text x="10" y="40" fill="#555">{results["machine"]}</text>']
    for i, (name, r) in enumerate(rows):
        y = top + i * (bar_h + 6)
        w = max(1.0, (width - left - 90) * r["p50_ms"] / vmax)
        color = "#2b6cb0" if name.startswith("nsprim") else "#999"
        if name.startswith("floor"):
            color = "#2f855a"
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{r["p50_ms"]:.1f}</text>')
    parts.append(f'<text x="10" y="{height - 20}" fill="#555">{results["versions"]}</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="1 round of 2, 10 sequential, 5 alive")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--svg", metavar="FILE")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("compare: needs root", file=sys.stderr)
        return 2
    seq_n, alive_n = 100, 200
    if a.quick:
        a.rounds, a.batch, seq_n, alive_n = 1, 2, 10, 5
    s = Setup()
    import compileall

    import nsprim

    compileall.compile_dir(os.path.dirname(nsprim.__file__), quiet=1)
    from nsprim import Container

    # a container that keeps the bridge up, as on a host where containers run
    # (docker0 is always there): bridge cases measure the steady state
    keeper = Container(["sleep", "3600"], rootfs=s.rootfs, network="bridge").start()
    try:
        c, cmds = cases(s)
        for name, fn in list(c.items()):
            try:
                fn(1)  # warm-up; a peer that cannot run here is skipped, with a note
            except (OSError, subprocess.SubprocessError) as e:
                if name.startswith(("nsprim", "floor")):
                    raise
                print(f"note: skipping {name}: {' '.join(str(e).split())[:200]}")
                del c[name]
        samples: dict[str, list[float]] = {k: [] for k in c}
        per_round: dict[str, list[float]] = {k: [] for k in c}
        for _ in range(a.rounds):
            for name, fn in c.items():
                got = fn(a.batch)
                samples[name] += got
                per_round[name].append(median(got))

        def ratio(k: str, ref: str) -> float | None:
            if ref not in per_round:
                return None
            return median([x / y for x, y in zip(per_round[k], per_round[ref], strict=True)])

        seq: dict[str, float] = {}
        alive: dict[str, Any] = {}
        try:  # the table above is kept when these fail (a peer, a busy host)
            seq = sequential_100(c, seq_n)
            alive = alive_200(s, alive_n)
        except subprocess.CalledProcessError as e:
            print(f"note: {' '.join(map(str, e.cmd))[:160]} failed ({e.returncode}): "
                  f"{' '.join(str(e.stderr or '').split())[:300]}")
    finally:
        stop_helper()
        keeper.kill()
        keeper.wait()
        s.close()
    versions = "; ".join(f"{n} {tool_version(v)}" for n, v in (
        ("crun", ["crun", "--version"]), ("runc", ["runc", "--version"]),
        ("podman", ["podman", "--version"]), ("bwrap", ["bwrap", "--version"]),
        ("unshare", ["unshare", "--version"])) if shutil.which(v[0]))
    machine = (f"kernel {platform.release()}, {os.cpu_count()} cpus, "
               f"{time.strftime('%Y-%m-%d')}, {a.rounds} rounds x {a.batch}")
    results: dict[str, Any] = {"machine": machine, "versions": versions, "cases": {},
                               "sequential": {"n": seq_n, "seconds": seq}, "alive": alive}
    print(f"# {machine}\n# {versions}")
    print(f"{'case':40} {'p50 ms':>8} {'p90 ms':>8} {'x crun':>7} {'x floor':>8}")
    for k in c:
        rc, rf = ratio(k, "crun"), ratio(k, "floor (C, raw clone3)")
        results["cases"][k] = {"p50_ms": pct(samples[k], .5) * 1e3,
                               "p90_ms": pct(samples[k], .9) * 1e3,
                               "x_crun": rc, "x_floor": rf, "samples": samples[k],
                               "command": cmds.get(k, "")}
        print(f"{k:40} {pct(samples[k], .5) * 1e3:8.2f} {pct(samples[k], .9) * 1e3:8.2f} "
              f"{rc if rc is not None else float('nan'):7.2f} {rf or float('nan'):8.2f}")
    print(f"\n{seq_n} containers one after another (seconds):")
    for k, v in seq.items():
        print(f"  {k:38} {v:7.2f}")
    if alive:
        print(f"\n{alive['containers']} detached containers alive: supervisor "
              f"{alive['supervisor_pss_kib_per_container']:.0f} KiB per container (PSS); "
              f"start of the last {alive['last_start_ms']:.0f} ms vs the first "
              f"{alive['first_start_ms']:.0f} ms ({alive['last_over_first']:.2f}x)")
    goals = []
    cs = results["cases"]
    if "nsprim in-process minimal" in cs:
        goals.append(("in-process minimal <= 1.25x floor",
                      cs["nsprim in-process minimal"]["x_floor"], 1.25, "le"))
    if "nsprim in-process default" in cs and "floor --full (docker defaults)" in per_round:
        goals.append(("in-process default <= 1.3x floor --full",
                      ratio("nsprim in-process default", "floor --full (docker defaults)"),
                      1.3, "le"))
    if "nsprim in-process full (docker run)" in cs and "podman (bridge + port)" in cs:
        full = cs["nsprim in-process full (docker run)"]["p50_ms"]
        goals.append(("full docker semantics in-process <= 10 ms", full, 10, "le"))
        goals.append(("full in-process >= 20x faster than podman bridge",
                      cs["podman (bridge + port)"]["p50_ms"] / full, 20, "ge"))
    if "nsprim CLI (network none)" in cs:
        goals.append(("nsprim CLI (network none) <= 30 ms whole-process",
                      cs["nsprim CLI (network none)"]["p50_ms"], 30, "le"))
    for cli_k, pod_k in (("nsprim CLI (network none)", "podman (network none)"),
                         ("nsprim CLI (bridge + port)", "podman (bridge + port)")):
        if cli_k in cs and pod_k in cs:
            goals.append((f"{cli_k} <= 0.25x {pod_k}",
                          cs[cli_k]["p50_ms"] / cs[pod_k]["p50_ms"], 0.25, "le"))
    if "crun" in seq and "nsprim in-process minimal" in seq:
        goals.append((f"{seq_n} sequential: nsprim ahead of crun (ratio)",
                      seq["nsprim in-process minimal"] / seq["crun"], 1.0, "le"))
    if alive:
        goals.append(("supervisor <= 1024 KiB per container",
                      alive["supervisor_pss_kib_per_container"], 1024, "le"))
        goals.append(("start of the last <= 1.5x the first", alive["last_over_first"], 1.5,
                      "le"))
    floor_k, cli_k = "python -c pass (CLI floor)", "nsprim CLI (network none)"
    if floor_k in per_round and cli_k in per_round:
        print(f"\nthe warm CLI against the interpreter's own start (same rounds): "
              f"{cs[cli_k]['p50_ms']:.1f} ms vs {cs[floor_k]['p50_ms']:.1f} ms for "
              f"`python -c pass` ({ratio(cli_k, floor_k):.2f}x)")
    print("\ngoals:")
    for text, value, target, how in goals:
        ok = value is not None and (value <= target if how == "le" else value >= target)
        print(f"  {'met    ' if ok else 'NOT met'} {text}: {value:.2f}")
    results["goals"] = [{"goal": t, "value": v, "met": bool(v is not None and (
        v <= g if h == "le" else v >= g))} for t, v, g, h in goals]
    print("\ncommands:")
    for k, v in cmds.items():
        print(f"  {k}: {v}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if a.svg:
        svg(results, a.svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
