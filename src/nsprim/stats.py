"""What a container uses: CPU time, memory, network, block I/O and pids
from its cgroup, and its processes (the library behind ``nsprim stats`` /
``nsprim top`` and the daemon's ``/containers/{id}/stats`` and ``/top``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

MIN_WINDOW = 0.02


# ----------------------------------------------------------------- units

def bytes_size(n: float) -> str:
    """docker's units.BytesSize: binary units, 4 significant digits
    ("1.5MiB", "0B")."""
    return _human(n, 1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units ("1.2kB", "0B")."""
    return _human(n, 1000.0, ["B", "kB", "MB", "GB", "TB", "PB"])


def _human(n: float, base: float, names: list[str]) -> str:
    i = 0
    while n >= base and i < len(names) - 1:
        n /= base
        i += 1
    text = f"{n:.4g}"
    return f"{text}{names[i]}"


# ----------------------------------------------------------------- stats

@dataclass
class Sample:
    id: str
    name: str
    cpu_usec: int | None
    at: float
    mem: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int
    cpu_percent: float = 0.0

    def row(self, trunc: bool = True) -> dict[str, str]:
        pct = 100.0 * self.mem / self.mem_limit if self.mem_limit else 0.0
        return {
            "BlockIO": f"{human_size(self.blk_read)} / {human_size(self.blk_write)}",
            "CPUPerc": f"{self.cpu_percent:.2f}%",
            "Container": self.id[:12] if trunc else self.id,
            "ID": self.id[:12] if trunc else self.id,
            "MemPerc": f"{pct:.2f}%",
            "MemUsage": f"{bytes_size(self.mem)} / {bytes_size(self.mem_limit)}",
            "Name": self.name,
            "NetIO": f"{human_size(self.net_rx)} / {human_size(self.net_tx)}",
            "PIDs": str(self.pids),
        }


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


_V1_UNLIMITED = 1 << 62


class _Paths:
    """A container's cgroup files, by path (no Cgroup object: stats reads a
    few files of many containers)."""

    def __init__(self, cid: str) -> None:
        from nsprim.cgroup import PARENT, host_layout, leaf_name

        lay = host_layout()
        leaf = leaf_name(cid[:16])
        self.v2 = os.path.join(lay.v2, PARENT, leaf) if lay.v2 else None
        self.v2_ctrls = lay.v2_controllers
        self.v1 = {c: os.path.join(m, PARENT, leaf) for c, m in lay.v1.items()}

    def ctrl(self, name: str) -> str | None:
        """The directory that accounts controller `name` (v2 if it serves it)."""
        if self.v2 and name in self.v2_ctrls:
            return self.v2
        return self.v1.get("blkio" if name == "io" else name)


def _cpu_usec(cg: _Paths) -> int | None:
    if cg.v2:
        try:
            with open(f"{cg.v2}/cpu.stat") as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "usage_usec":
                        return int(v)
        except (OSError, ValueError):
            pass
    d = cg.v1.get("cpuacct")
    if d:
        ns = _read_int(f"{d}/cpuacct.usage")
        return None if ns is None else ns // 1000
    return None


def _blkio(cg: _Paths, pids: list[int]) -> tuple[int, int]:
    """(read, write) bytes: the cgroup's io accounting where there is some,
    else the sum of its live processes' /proc/PID/io."""
    if cg.v2 and "io" in cg.v2_ctrls:
        try:
            with open(f"{cg.v2}/io.stat") as f:
                rb = wb = 0
                for line in f:
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k == "rbytes":
                            rb += int(v)
                        elif k == "wbytes":
                            wb += int(v)
                return rb, wb
        except (OSError, ValueError):
            pass
    d = cg.v1.get("blkio")
    if d:
        try:
            with open(f"{d}/blkio.throttle.io_service_bytes") as f:
                rb = wb = 0
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        rb += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        wb += int(parts[2])
                return rb, wb
        except (OSError, ValueError):
            pass  # no blkio cgroup of its own (no I/O limit): its processes' counts
    rb = wb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "read_bytes":
                        rb += int(v)
                    elif k == "write_bytes":
                        wb += int(v)
        except (OSError, ValueError):
            pass
    return rb, wb


def _net(cid: str) -> tuple[int, int]:
    """(received, sent) by the container: its veth's host end counts the
    other way round."""
    base = f"/sys/class/net/nsp{cid[:12]}/statistics"
    tx = _read_int(f"{base}/tx_bytes") or 0   # host sends = container receives
    rx = _read_int(f"{base}/rx_bytes") or 0
    return tx, rx


def _rss(pids: list[int]) -> int:
    """The resident memory of `pids` (bytes), for a container without a
    memory cgroup of its own."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


def _procs(cg: _Paths) -> list[int]:
    for d in (cg.v2, cg.v1.get("pids"), cg.v1.get("memory")):
        if d:
            try:
                with open(f"{d}/cgroup.procs") as f:
                    return [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
    return []


def sample(cid: str, name: str, running: bool, host_mem: int) -> Sample:
    """One reading of a container (zeros when it is not running)."""
    cg = _Paths(cid)
    now = time.monotonic()
    if not running:
        return Sample(cid, name, None, now, 0, host_mem, 0, 0, 0, 0, 0)
    usec = _cpu_usec(cg)
    mem = limit = 0
    procs = _procs(cg)
    d = cg.ctrl("memory")
    if d == cg.v2 and d:
        mem, limit = _read_int(f"{d}/memory.current") or 0, _read_int(f"{d}/memory.max") or 0
    elif d and os.path.isdir(d):
        mem = _read_int(f"{d}/memory.usage_in_bytes") or 0
        limit = _read_int(f"{d}/memory.limit_in_bytes") or 0
    else:  # no memory cgroup of its own (hybrid host, no limit): its processes'
        mem = _rss(procs)
    if not limit or limit >= _V1_UNLIMITED or limit > host_mem > 0:
        limit = host_mem
    pd = cg.ctrl("pids")
    pids = _read_int(f"{pd}/pids.current") if pd else None
    rx, tx = _net(cid)
    br, bw = _blkio(cg, procs)
    return Sample(cid, name, usec, now, mem, limit, rx, tx, br, bw,
                  pids if pids is not None else len(procs))


def collect(recs: list[tuple[str, str, bool]], window: float = MIN_WINDOW) -> list[Sample]:
    """One sample of each container (id, name, running), CPU % over the time
    between two readings of its CPU time (at least `window` seconds)."""
    host_mem = _host_memory()
    out = [sample(cid, name, running, host_mem) for cid, name, running in recs]
    if out:
        wait = out[0].at + window - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    for smp in out:
        if smp.cpu_usec is None:
            continue
        u1 = _cpu_usec(_Paths(smp.id))
        t1 = time.monotonic()
        if u1 is not None and t1 > smp.at:
            smp.cpu_percent = max(0.0, (u1 - smp.cpu_usec) / 1e6 / (t1 - smp.at) * 100.0)
    return out


def container_pids(rec: Any) -> list[int]:
    """The host pids of a running container's processes (its pid
    namespace's), its first process first."""
    from nsprim.lifecycle import _live_pid

    live = _live_pid(rec) if rec.running else None
    if live is None:
        return []
    pid = live[0]
    try:
        ns = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return []
    out = [pid]
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == pid:
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino == ns:
                out.append(int(name))
        except OSError:
            continue
    return out


class TopError(RuntimeError):
    """``top`` cannot list the processes (not running, no ps, ps failed)."""


def top(rec: Any, ps_args: list[str] | None = None) -> tuple[str, list[str]]:
    """The host's ``ps`` (default ``-ef``) limited to the container's
    processes: (header line, the container's lines)."""
    import shutil
    import subprocess

    pids = container_pids(rec)
    if not pids:
        raise TopError(f"container {rec.id} is not running")
    ps = shutil.which("ps")
    if ps is None:
        raise TopError("top needs ps (apt-get install procps)")
    r = subprocess.run([ps, *(ps_args or ["-ef"])], capture_output=True, text=True)
    if r.returncode != 0:
        raise TopError(f"ps: {r.stderr.strip() or 'failed'}")
    lines = r.stdout.splitlines()
    if not lines:
        raise TopError("ps printed nothing")
    header = lines[0].split()
    if "PID" not in header:
        raise TopError("couldn't find PID field in ps output")
    col = header.index("PID")
    want = {str(p) for p in pids}
    return lines[0], [line for line in lines[1:]
                      if len(line.split()) > col and line.split()[col] in want]
