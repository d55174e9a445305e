"""/containers/{id}/...: archive (GET, HEAD, PUT: ``docker cp``), top,
stats, rename, pause, unpause, update, export, changes.

Front-end code only: each route translates to and from the libraries that
``nsprim cp/top/stats/rename/pause/update/export/diff`` use
(:mod:`nsprim.archive`, :mod:`nsprim.stats`, :mod:`nsprim.manage`).
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import os
import re
import time
import zlib
from collections.abc import AsyncIterator
from typing import IO, Any

from nsprim.daemon.containers import _find, _has_ended, _not_running
from nsprim.daemon.create import _field
from nsprim.daemon.server import (
    ApiError,
    Request,
    Response,
    Router,
    StreamResponse,
    _spool_file,
    json_response,
)
from nsprim.lifecycle import Record

_ID = r"(?P<id>[^/]+)"
#: the largest archive PUT body: nsprim.archive's own bound is the real one
#: (NSPRIM_CP_MAX_SIZE, on the extracted size); this one is on the wire
_MAX_PUT = 64 << 30
#: docker's change kinds
_KIND = {"C": 0, "A": 1, "D": 2}
#: how long a non-streamed stats reading measures CPU use over
_STATS_WINDOW = 0.1
_STATS_INTERVAL = 1.0


def routes(r: Router, daemon: Any) -> None:
    m = Manage(daemon)
    c = f"/containers/{_ID}"
    r.add("HEAD", c + "/archive", m.archive_head)
    r.add("GET", c + "/archive", m.archive_get)
    r.add("PUT", c + "/archive", m.archive_put, max_body=_MAX_PUT, spool=True)
    r.add("GET", c + "/top", m.top)
    r.add("GET", c + "/stats", m.stats)
    r.add("POST", c + "/rename", m.rename)
    r.add("POST", c + "/pause", m.pause)
    r.add("POST", c + "/unpause", m.unpause)
    r.add("POST", c + "/update", m.update)
    r.add("GET", c + "/export", m.export)
    r.add("GET", c + "/changes", m.changes)


def _oneline(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _is_running(rec: Record) -> bool:
    return rec.running and not _has_ended(rec)


async def _send_file(f: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(f.read, 1 << 20)
            if not chunk:
                break
            yield chunk
    finally:
        f.close()


class Manage:
    def __init__(self, daemon: Any) -> None:
        self.d = daemon

    # --------------------------------------------------------------- archive
    @staticmethod
    def _path(req: Request) -> str:
        path = req.q("path")
        if not path:
            raise ApiError(400, "bad parameter: path cannot be empty")
        if "\0" in path:
            raise ApiError(400, f"invalid path {path!r}")
        return path

    def _stat(self, rec: Record, path: str) -> Any:
        from nsprim.archive import container_root, stat_path

        try:
            with container_root(rec) as root:
                return stat_path(root, path)
        except (FileNotFoundError, NotADirectoryError):
            raise ApiError(404, f"Could not find the file {path} in container "
                           f"{rec.name or rec.id}") from None

    async def archive_head(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        path = self._path(req)
        st = await asyncio.to_thread(self._stat, rec, path)
        return Response(200, b"", "application/json",
                        [("X-Docker-Container-Path-Stat", st.header())])

    async def archive_get(self, req: Request, m: re.Match[str]) -> StreamResponse:
        """docker cp out: a tar of the path (its top entry the path's base
        name), written to a private spool file first so an error is still
        an error status, then sent."""
        from nsprim.archive import ArchiveError, container_root, write_archive

        rec = _find(m["id"])
        path = self._path(req)
        f = _spool_file()

        # docker's rebase: a path ending in "/." archives the directory's
        # contents, under "." (the client copies them into its destination)
        top = "." if path.rstrip("/").endswith("/.") or path in (".", "/.") else None

        def work() -> Any:
            with container_root(rec) as root:
                st = write_archive(root, path, f, name=top)
            f.flush()
            f.seek(0)
            return st

        try:
            st = await asyncio.to_thread(work)
        except (FileNotFoundError, NotADirectoryError):
            f.close()
            raise ApiError(404, f"Could not find the file {path} in container "
                           f"{rec.name or rec.id}") from None
        except (ArchiveError, OSError, LookupError) as e:
            f.close()
            raise ApiError(500, _oneline(e)) from None
        return StreamResponse(_send_file(f), content_type="application/x-tar",
                              headers=[("X-Docker-Container-Path-Stat", st.header())])

    async def archive_put(self, req: Request, m: re.Match[str]) -> Response:
        """docker cp in: the tar body (spooled) extracted into the directory
        `path` by nsprim.archive (TarGuard, no '..', confined resolution, no
        device nodes, bounded): a bad archive is a 400."""
        from nsprim.archive import ArchiveError, container_root, extract_archive

        rec = _find(m["id"])
        path = self._path(req)
        owners = req.qbool("copyUIDGID")
        req.qbool("noOverwriteDirNonDir")  # nsprim never replaces a dir by a non-dir or back
        f = req.body_file

        def work() -> None:
            head = f.read(2)
            f.seek(0)
            stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if head == b"\x1f\x8b" else f
            with container_root(rec, write=True) as root:
                st = self._stat_in(root, path, rec)
                if not st.is_dir:
                    raise ApiError(400, f"extraction point {path!r} is not a directory")
                extract_archive(root, path, stream, preserve_owner=owners,
                                what="archive")

        try:
            await asyncio.to_thread(work)
        except ArchiveError as e:
            raise ApiError(400, _oneline(e)) from None
        except (EOFError, ValueError, gzip.BadGzipFile, zlib.error) as e:  # a broken gzip
            raise ApiError(400, f"archive: {_oneline(e)}") from None
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ApiError(403, f"container rootfs is marked read-only or the path is "
                               f"not writable: {_oneline(e)}") from None
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ApiError(404, _oneline(e)) from None
            raise ApiError(500, _oneline(e)) from None
        return Response(200)

    @staticmethod
    def _stat_in(root: Any, path: str, rec: Record) -> Any:
        from nsprim.archive import stat_path

        try:
            return stat_path(root, path, follow_link=True)
        except (FileNotFoundError, NotADirectoryError):
            raise ApiError(404, f"Could not find the file {path} in container "
                           f"{rec.name or rec.id}") from None

    # ------------------------------------------------------------------- top
    async def top(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.stats import TopError, top

        rec = _find(m["id"])
        if not _is_running(rec):
            raise _not_running(rec)
        args = (req.q("ps_args") or "-ef").split()
        try:
            header, lines = await asyncio.to_thread(top, rec, args)
        except TopError as e:
            if not _is_running(rec):
                raise _not_running(rec) from None
            raise ApiError(500, str(e)) from None
        titles = header.split()
        procs = [line.split(None, len(titles) - 1) for line in lines]
        return json_response({"Titles": titles, "Processes": procs})

    # ----------------------------------------------------------------- stats
    async def stats(self, req: Request, m: re.Match[str]) -> Response | StreamResponse:
        rec = _find(m["id"])
        stream = req.qbool("stream", True)
        one_shot = req.qbool("one-shot")
        if one_shot and stream:
            raise ApiError(400, "cannot have stream=true and one-shot=true")
        if not stream:
            prev = None if one_shot else await asyncio.to_thread(_reading, rec)
            if prev is not None:
                await asyncio.sleep(_STATS_WINDOW)
            cur = await asyncio.to_thread(_reading, rec)
            return json_response(stats_json(rec, prev, cur))

        async def body() -> AsyncIterator[bytes]:
            prev = None
            while True:
                cur = await asyncio.to_thread(_reading, rec)
                yield json.dumps(stats_json(rec, prev, cur)).encode() + b"\n"
                if not os.path.isdir(rec.dir):
                    return
                prev = cur
                await asyncio.sleep(_STATS_INTERVAL)

        return StreamResponse(body())

    # ---------------------------------------------------------------- rename
    async def rename(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.errors import ConfigError
        from nsprim.lifecycle import check_name
        from nsprim.manage import Conflict, rename

        name = (req.q("name") or "").lstrip("/")
        if not name:
            raise ApiError(400, "Neither old nor new names may be empty")
        try:
            check_name(name)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        rec = _find(m["id"])
        if name == rec.name:
            raise ApiError(400, "Renaming a container with the same name as its current "
                           "name")
        async with self.d.containers.lock(rec.id):
            try:
                old = await asyncio.to_thread(rename, rec, name)
            except Conflict as e:
                raise ApiError(409, str(e)) from None
            except ConfigError as e:
                raise ApiError(400, str(e)) from None
        self.d.events.emit("container", "rename", rec.id, {"name": name,
                                                          "oldName": "/" + old})
        return Response(204)

    # ---------------------------------------------------------- pause/unpause
    async def _freeze(self, m: re.Match[str], frozen: bool) -> Response:
        from nsprim.manage import Conflict, set_paused

        rec = _find(m["id"])
        if not _is_running(rec):
            raise ApiError(409, f"Container {rec.id} is not running")
        async with self.d.containers.lock(rec.id):
            try:
                await asyncio.to_thread(set_paused, rec, frozen)
            except Conflict as e:
                msg = str(e)
                raise ApiError(409, msg[:1].upper() + msg[1:]) from None
            except (OSError, TimeoutError) as e:
                raise ApiError(500, _oneline(e)) from None
        self.d.events.emit("container", "pause" if frozen else "unpause", rec.id,
                           {"name": rec.name})
        return Response(204)

    async def pause(self, req: Request, m: re.Match[str]) -> Response:
        return await self._freeze(m, True)

    async def unpause(self, req: Request, m: re.Match[str]) -> Response:
        return await self._freeze(m, False)

    # ---------------------------------------------------------------- update
    async def update(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.errors import ConfigError
        from nsprim.manage import Conflict, update, update_spec

        body = req.json(optional=True) or {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid update body: expected a JSON object")
        changes = parse_update(body)
        rec = _find(m["id"])
        try:
            spec = update_spec(rec.spec, changes)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        if spec.auto_remove and changes.get("restart") not in (None, "no"):
            raise ApiError(400, "Restart policy cannot be updated because AutoRemove is "
                           "enabled for the container")
        async with self.d.containers.lock(rec.id):
            try:
                await asyncio.to_thread(update, rec, spec)
            except Conflict as e:
                raise ApiError(409, str(e)) from None
            except (OSError, ConfigError) as e:
                raise ApiError(500, f"Cannot update container {rec.id}: "
                               f"{_oneline(e)}") from None
        self.d.events.emit("container", "update", rec.id, {"name": rec.name})
        return json_response({"Warnings": []})

    # ------------------------------------------------------- export, changes
    async def export(self, req: Request, m: re.Match[str]) -> StreamResponse:
        from nsprim.archive import ArchiveError, container_root, write_archive

        rec = _find(m["id"])
        f = _spool_file()

        def work() -> None:
            with container_root(rec, live=False) as root:
                write_archive(root, "/", f, name="")
            f.flush()
            f.seek(0)

        try:
            await asyncio.to_thread(work)
        except (ArchiveError, OSError, LookupError) as e:
            f.close()
            raise ApiError(500, _oneline(e)) from None
        return StreamResponse(_send_file(f), content_type="application/x-tar")

    async def changes(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.manage import container_changes

        rec = _find(m["id"])
        try:
            found = await asyncio.to_thread(container_changes, rec)
        except (LookupError, OSError) as e:
            raise ApiError(500, _oneline(e)) from None
        if found is None:
            raise ApiError(500, f"container {rec.id} has no image layers to compare with")
        return json_response([{"Path": p, "Kind": _KIND[k]} for k, p in found] or None)


# --------------------------------------------------------------- update body

def parse_update(body: dict[str, Any]) -> dict[str, Any]:
    """docker's ContainerUpdate body as nsprim.manage.update_spec's
    changes (zero or absent: unchanged, as docker); 400 for a field of the
    wrong type."""
    out: dict[str, Any] = {}
    for key, name in (("Memory", "memory"), ("MemoryReservation", "memory_reservation")):
        v = _field(body, key, int, "", 0)
        if v < 0:
            raise ApiError(400, f"invalid {key}: {v} (a size in bytes)")
        if v:
            out[name] = str(v)
    swap = _field(body, "MemorySwap", int, "", 0)
    if swap:
        out["memory_swap"] = str(swap)
    nano = _field(body, "NanoCpus", int, "", 0)
    if nano < 0:
        raise ApiError(400, f"invalid NanoCpus: {nano}")
    if nano:
        out["cpus"] = f"{nano / 1e9:g}"
    for key, name in (("CpuShares", "cpu_shares"), ("CpuPeriod", "cpu_period"),
                      ("CpuQuota", "cpu_quota"), ("BlkioWeight", "blkio_weight")):
        v = _field(body, key, int, "", 0)
        if v:
            out[name] = v
    pids = _field(body, "PidsLimit", int, "", None)
    if pids is not None and pids > 0:
        out["pids_limit"] = pids
    for key, name in (("CpusetCpus", "cpuset_cpus"), ("CpusetMems", "cpuset_mems")):
        v = _field(body, key, str, "", "")
        if v:
            out[name] = v
    rp = _field(body, "RestartPolicy", dict, "", {})
    policy = _field(rp, "Name", str, "RestartPolicy.", "")
    retries = _field(rp, "MaximumRetryCount", int, "RestartPolicy.", 0)
    if policy:
        out["restart"] = f"on-failure:{retries}" if policy == "on-failure" and retries \
            else policy
    return out


# --------------------------------------------------------------------- stats

class Reading:
    """One reading of a container for docker's stats JSON."""

    def __init__(self, smp: Any, system_ns: int, at: float, cpus: int, pids_limit: int,
                 networked: bool) -> None:
        self.smp = smp
        self.system_ns = system_ns
        self.at = at
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.networked = networked


def _system_ns() -> int:
    """The host's CPU time (user..steal of /proc/stat), in ns, as docker's
    system_cpu_usage."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:9]
        return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0


def _reading(rec: Record) -> Reading:
    from nsprim.stats import _host_memory, sample

    running = _is_running(rec)
    sysns = _system_ns()
    smp = sample(rec.id, rec.name, running, _host_memory())
    net = str(rec.config.get("network") or "bridge")
    return Reading(smp, sysns, time.time(), os.cpu_count() or 1,
                   int(rec.config.get("pids_limit") or 0),
                   running and net not in ("none", "host") and not net.startswith("container:"))


def _stamp(t: float | None) -> str:
    if not t:
        return "0001-01-01T00:00:00Z"
    ns = int(t * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        f".{ns % 10**9:09d}Z"


def _cpu(r: Reading | None) -> dict[str, Any]:
    if r is None or r.smp.cpu_usec is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                              "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0,
                                    "throttled_time": 0}}
    return {"cpu_usage": {"total_usage": int(r.smp.cpu_usec) * 1000,
                          "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": r.system_ns, "online_cpus": r.cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def stats_json(rec: Record, prev: Reading | None, cur: Reading) -> dict[str, Any]:
    """docker's stats JSON (the shape `docker stats` and docker-py read)."""
    s = cur.smp
    running = s.cpu_usec is not None
    out: dict[str, Any] = {
        "name": "/" + rec.name, "id": rec.id,
        "read": _stamp(cur.at if running else None),
        "preread": _stamp(prev.at if prev is not None and running else None),
        "pids_stats": {"current": s.pids, **({"limit": cur.pids_limit}
                                             if cur.pids_limit else {})} if running else {},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": s.blk_read},
            {"major": 0, "minor": 0, "op": "write", "value": s.blk_write}] if running else None,
            "io_serviced_recursive": None, "io_queue_recursive": None,
            "io_service_time_recursive": None, "io_wait_time_recursive": None,
            "io_merged_recursive": None, "io_time_recursive": None,
            "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu(cur if running else None),
        "precpu_stats": _cpu(prev if running else None),
        "memory_stats": {"usage": s.mem, "limit": s.mem_limit, "stats": {}}
        if running else {},
    }
    if cur.networked:
        out["networks"] = {"eth0": {"rx_bytes": s.net_rx, "rx_packets": 0, "rx_errors": 0,
                                    "rx_dropped": 0, "tx_bytes": s.net_tx, "tx_packets": 0,
                                    "tx_errors": 0, "tx_dropped": 0}}
    return out
