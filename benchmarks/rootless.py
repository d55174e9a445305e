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

A second table (``--podman``, on by default where podman is installed): an
image (the same busybox tree, imported into podman's store and loaded into
nsprim's from podman's docker-archive), a **full** id mapping (newuidmap and
the user's subordinate range), the image's overlay, and user-mode
networking, `/bin/true`:

- podman: ``podman run --rm --runtime runc --network slirp4netns IMAGE
  /bin/true`` with private ``--root``/``--runroot`` (podman 4.3.1, Debian's:
  it has no pasta, which came in 4.4, so slirp4netns is its user-mode
  network; its default crun refuses rootless on a hybrid cgroup host,
  runc runs without cgroups there)
- nsprim in-process: ``run(['/bin/true'], image=IMAGE,
  user_namespace='full', network='bridge')`` (pasta)
- nsprim CLI: ``python3 -m nsprim run --rm IMAGE /bin/true`` (a whole
  process, pasta)

Goal: nsprim in-process <= 0.25x podman.
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
PODMAN_GOAL = 0.25


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


def _podman_argv(home: str, run: str) -> list[str]:
    return ["podman", "--root", os.path.join(home, "podman-store"), "--runroot", run,
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none"]


def measure_image(rootfs: str, rounds: int, batch: int) -> dict[str, list[list[float]]]:
    """As the user: podman run --rm against nsprim with an image, a full
    mapping and user-mode networking (see the module's docstring)."""
    home = os.environ["HOME"]
    run_dir = tempfile.mkdtemp(prefix="nsprp-")  # podman: a runroot of <= 50 characters
    try:
        return _measure_image(rootfs, rounds, batch, _podman_argv(home, run_dir))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _measure_image(rootfs: str, rounds: int, batch: int, pod: list[str]
                   ) -> dict[str, list[list[float]]]:
    from nsprim import run

    home = os.environ["HOME"]
    tar = os.path.join(home, "bb-rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    quiet: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 check=True)
    subprocess.run([*pod, "import", tar, "localhost/rlbench:1"], **quiet)
    archive = os.path.join(home, "bb-archive.tar")
    subprocess.run([*pod, "save", "-o", archive, "localhost/rlbench:1"], **quiet)
    subprocess.run([sys.executable, "-m", "nsprim", "load", "-i", archive], **quiet)
    image = "localhost/rlbench:1"

    def podman() -> None:
        subprocess.run([*pod, "run", "--rm", "--runtime", "runc", "--network", "slirp4netns",
                        image, "/bin/true"], **quiet)

    def nsprim_inproc() -> None:
        r = run(["/bin/true"], image=image, user_namespace="full", network="bridge")
        assert r.returncode == 0

    def nsprim_cli() -> None:
        subprocess.run([sys.executable, "-m", "nsprim", "run", "--rm", image, "/bin/true"],
                       **quiet)

    cases = {"podman": podman, "nsprim in-process": nsprim_inproc, "nsprim CLI": nsprim_cli}
    for fn in cases.values():
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


def report(data: dict[str, list[list[float]]], base_name: str = "bwrap") -> list[str]:
    lines = [f"{'case':<18} {'p50 ms':>8} {'p90 ms':>8} {'x ' + base_name:>9}"]
    base = data[base_name]
    for name, rounds in data.items():
        flat = sorted(x for r in rounds for x in r)
        p50 = statistics.median(flat) * 1e3
        p90 = flat[min(len(flat) - 1, int(0.9 * len(flat)))] * 1e3
        ratio = statistics.median(statistics.median(r) / statistics.median(b)
                                  for r, b in zip(rounds, base, strict=True))
        lines.append(f"{name:<18} {p50:8.2f} {p90:8.2f} {ratio:9.2f}")
    return lines


def _ratio(data: dict[str, list[list[float]]], name: str, base: str = "bwrap") -> float:
    return statistics.median(statistics.median(r) / statistics.median(b)
                             for r, b in zip(data[name], data[base], strict=True))


def _worker(a: argparse.Namespace) -> int:
    data = measure(a.rootfs, a.rounds, a.batch)
    if a.podman:
        img = measure_image(a.rootfs, max(2, a.rounds // 2), max(2, a.batch // 4))
        data.update({"image " + k: v for k, v in img.items()})
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
        xdg = os.path.join(home, "run")  # podman needs a runtime dir of the user's
        os.mkdir(xdg, 0o700)
        os.chown(xdg, pw.pw_uid, pw.pw_gid)
        env = {"HOME": home, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.path.join(base, "lib"), "XDG_RUNTIME_DIR": xdg}
        if a.podman and not _has_subids(name):
            first = _free_subids()
            subprocess.run(["usermod", "--add-subuids", f"{first}-{first + 65535}",
                            "--add-subgids", f"{first}-{first + 65535}", name], check=True,
                           capture_output=True)
        r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                            "--clear-groups", "/usr/bin/python3",
                            os.path.join(base, "lib", "rootless_bench.py"), "--worker",
                            "--rootfs", rootfs, "--rounds", str(a.rounds), "--batch",
                            str(a.batch), *(["--podman"] if a.podman else [])],
                           env=env, capture_output=True, text=True, cwd=home)
        if r.returncode != 0:
            raise SystemExit(f"rootless: the measuring user failed: {r.stderr.strip()}")
        data: dict[str, list[list[float]]] = json.loads(r.stdout)
        return data
    finally:
        _kill_user(name)  # podman's pause process, pasta, slirp4netns
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            uid = -1
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", base], capture_output=True)
        if uid >= 0:  # podman's fallback run dir: a later user given this uid would own it
            subprocess.run(["rm", "-rf", "--one-file-system", f"/tmp/containers-user-{uid}",
                            f"/tmp/podman-run-{uid}", f"/tmp/run-{uid}",
                            f"/dev/shm/libpod_rootless_lock_{uid}"], capture_output=True)


def _has_subids(name: str) -> bool:
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                if not any(line.split(":")[0] == name for line in f):
                    return False
        except OSError:
            return False
    return True


def _free_subids() -> int:
    top = 300000
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                for line in f:
                    p = line.strip().split(":")
                    if len(p) == 3 and p[1].isdigit() and p[2].isdigit():
                        top = max(top, int(p[1]) + int(p[2]))
        except OSError:
            pass
    return top


def _kill_user(name: str) -> None:
    import pwd

    from nsprim.rootless import kill_user_processes

    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    kill_user_processes(uid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 5: proves it runs")
    ap.add_argument("--json", metavar="FILE", help="write the raw samples here")
    ap.add_argument("--no-podman", dest="podman", action="store_false",
                    help="leave out the image + full mapping + network table against podman")
    ap.add_argument("--podman", action="store_true", help=argparse.SUPPRESS)
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
    if a.podman and not all(shutil.which(t) for t in ("podman", "slirp4netns", "pasta",
                                                       "newuidmap")):
        print("rootless: the podman table needs podman, slirp4netns, pasta and newuidmap "
              "(apt-get install podman slirp4netns passt uidmap); --no-podman leaves it out",
              file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        data = _as_new_user(a)
    else:
        from pathlib import Path

        from nsprim.testing import busybox_rootfs

        d = tempfile.mkdtemp(prefix="nsprim-bench-rootless-")
        try:
            rootfs = str(busybox_rootfs(Path(d) / "rootfs"))
            data = measure(rootfs, a.rounds, a.batch)
            if a.podman:
                img = measure_image(rootfs, max(2, a.rounds // 2), max(2, a.batch // 4))
                data.update({"image " + k: v for k, v in img.items()})
        finally:
            shutil.rmtree(d, ignore_errors=True)
    img = {k[6:]: data.pop(k) for k in list(data) if k.startswith("image ")}
    print(f"rootless start-up, {a.rounds} rounds x {a.batch}, single-id user namespace "
          "(medians of per-round ratios)")
    for line in report(data):
        print(line)
    r = _ratio(data, "nsprim default")
    print(f"goal: nsprim default <= {GOAL:.1f}x bwrap: {r:.2f} "
          f"({'met' if r <= GOAL else 'NOT met'}); minimal {_ratio(data, 'nsprim minimal'):.2f}")
    if img:
        n = len(img["podman"])
        print(f"\nrootless image + full mapping + user-mode network, {n} rounds x "
              f"{len(img['podman'][0])}: podman run --rm (slirp4netns) vs nsprim (pasta)")
        for line in report(img, "podman"):
            print(line)
        r = _ratio(img, "nsprim in-process", "podman")
        print(f"goal: nsprim in-process <= {PODMAN_GOAL:.2f}x podman: {r:.3f} "
              f"({'met' if r <= PODMAN_GOAL else 'NOT met'}); CLI "
              f"{_ratio(img, 'nsprim CLI', 'podman'):.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({**data, **{"image " + k: v for k, v in img.items()}}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
