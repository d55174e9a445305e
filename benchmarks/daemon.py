"""`nsprim daemon` against dockerd, through the same clients, in one run.

    python -m benchmarks.daemon [--rounds N] [--per-round K] [--containers N] [--quick]

Both daemons are started here on private sockets and state: nsprim with a
temporary root; Debian's dockerd (docker.io, 20.10) with its own data root,
exec root and pidfile, ``--iptables=false --bridge=none`` and a private
containerd (config, root, state and socket of its own), so neither touches
the host's.  The image (busybox) comes from Debian's docker-registry on
loopback; both daemons pull it before timing.  dockerd's containers get no
network (--bridge=none), so nsprim's are timed with ``--network none`` too
(and once with its default bridge, for reference).

Cases, rounds interleaved, ratios are medians of per-round ratios:
- ``docker run --rm IMAGE true`` with the same docker CLI (goal <= 0.2x, < 50 ms);
- docker-py ``containers.run(IMAGE, "true", remove=True)`` (goal <= 0.2x);
- testcontainers: start + first log line + stop (goal <= 0.25x);
- the daemon's RSS (daemon + zygote) with N detached containers, and the
  supervisors' PSS per container.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import median, pct


def _wait_socket(path: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


class Nsprim:
    name = "nsprim daemon"

    def __init__(self, work: Path) -> None:
        self.sock = str(work / "nsprim.sock")
        self.root = str(work / "nsprim-state")
        self.proc = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", self.root,
                                      "daemon", "-H", f"unix://{self.sock}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_socket(self.sock, self.proc, "nsprim daemon")
        self.host = f"unix://{self.sock}"

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        return [self.proc.pid] + [int(p) for p in out]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Dockerd:
    name = "dockerd"

    def __init__(self, work: Path) -> None:
        d = work / "docker"
        d.mkdir()
        self.ctd_sock = str(d / "containerd.sock")
        (d / "containerd.toml").write_text(
            f'version = 2\nroot = "{d}/ctd-root"\nstate = "{d}/ctd-state"\n'
            f'[grpc]\n  address = "{self.ctd_sock}"\n'
            f'[ttrpc]\n  address = "{self.ctd_sock}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self.ctd = subprocess.Popen(["containerd", "--config", str(d / "containerd.toml")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_socket(self.ctd_sock, self.ctd, "containerd")
        self.sock = str(d / "docker.sock")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.sock}", "--data-root", str(d / "data"),
             "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
             "--containerd", self.ctd_sock, "--iptables=false", "--ip-masq=false",
             "--bridge=none"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_socket(self.sock, self.proc, "dockerd")
        self.host = f"unix://{self.sock}"
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "-H", self.host, "version"], capture_output=True
                             ).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd does not answer")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [self.proc.pid, self.ctd.pid]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.ctd.send_signal(signal.SIGTERM)
        self.ctd.wait(60)


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def docker(host: str, *args: str) -> None:
    subprocess.run(["docker", "-H", host, *args], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.per_round, a.containers = 1, 3, 5
    need = ("docker", "dockerd", "containerd", "docker-registry", "skopeo", "umoci")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in need):
        print(f"daemon: needs root and {', '.join(need)}", file=sys.stderr)
        return 2
    from tests.registry import ImageBuilder, Registry

    from nsprim.testing import find_static_busybox

    work = Path(tempfile.mkdtemp(prefix="nsprim-bench-daemon-"))
    (work / "reg").mkdir()
    (work / "img").mkdir()
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
        import docker as docker_py

        clients = {d.name: docker_py.DockerClient(base_url=d.host) for d in daemons}
        cases: dict[str, Callable[[], object]] = {
            "dockerd: docker run --rm": lambda: docker(dk.host, "run", "--rm", image, "true"),
            "nsprim: docker run --rm, network none":
                lambda: docker(ns.host, "run", "--rm", "--network", "none", image, "true"),
            "nsprim: docker run --rm, bridge":
                lambda: docker(ns.host, "run", "--rm", image, "true"),
            "dockerd: docker-py containers.run":
                lambda: clients[dk.name].containers.run(image, "true", remove=True),
            "nsprim: docker-py containers.run":
                lambda: clients[ns.name].containers.run(image, "true", remove=True,
                                                        network_mode="none"),
        }
        try:
            import testcontainers  # noqa: F401

            def tc(d: Any) -> Callable[[], object]:
                def go() -> None:
                    from testcontainers.core.container import DockerContainer
                    from testcontainers.core.waiting_utils import wait_for_logs

                    os.environ["DOCKER_HOST"] = d.host
                    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
                    with DockerContainer(image).with_command(
                            ["sh", "-c", "echo ready; sleep 30"]) as c:
                        wait_for_logs(c, "ready", timeout=30, interval=0.01)
                return go

            cases["dockerd: testcontainers start+log+stop"] = tc(dk)
            cases["nsprim: testcontainers start+log+stop"] = tc(ns)
        except ImportError:
            pass
        for fn in cases.values():  # warm up
            fn()
        samples: dict[str, list[float]] = {k: [] for k in cases}
        rounds: list[dict[str, float]] = []
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(a.rounds):
            r: dict[str, float] = {}
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
              f"{a.per_round}; kernel {os.uname().release}; {os.cpu_count()} CPUs")
        print("| case | p50 ms | p90 ms | x dockerd |")
        print("|---|---:|---:|---:|")
        for k, s in samples.items():
            peer = ("dockerd: docker run --rm" if "docker run" in k else
                    "dockerd: docker-py containers.run" if "docker-py" in k else
                    "dockerd: testcontainers start+log+stop")
            ratio = median([r[k] / r[peer] for r in rounds])
            print(f"| {k} | {median(s) * 1e3:.1f} | {pct(s, 0.9) * 1e3:.1f} | {ratio:.2f} |")
        # memory with N detached containers
        for d in daemons:
            for i in range(a.containers):
                docker(d.host, "run", "-d", "--network", "none", "--name", f"m{i}", image,
                       "sleep", "600")
            time.sleep(1)
            rss = _rss_kib(d.pids())
            sup = ""
            if d is ns:
                shims = subprocess.run(["pgrep", "-f", "nsprim-shim"], capture_output=True,
                                       text=True).stdout.split()
                mine = [int(p) for p in shims
                        if ns.root in open(f"/proc/{p}/cmdline").read()]
                if mine:
                    sup = f"; supervisors {sum(map(_pss_kib, mine)) / len(mine):.0f} KiB PSS each"
            print(f"- {d.name}: RSS {rss / 1024:.1f} MiB with {a.containers} detached "
                  f"containers{sup}")
            for i in range(a.containers):
                docker(d.host, "rm", "-f", f"m{i}")
    finally:
        for d in daemons:
            d.stop()
        reg.stop()  # type: ignore[attr-defined]
        subprocess.run(["umount", "-R", str(work / "docker" / "data")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def dk_version(host: str) -> str:
    return subprocess.run(["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
                          capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
