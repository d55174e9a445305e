"""/containers/...: create, start, attach, wait, logs, stop, kill, restart,
resize, list, inspect, delete, prune; and exec.

Every action goes through the same records and supervisors as the
``nsprim`` CLI (lifecycle.py, supervise.py): the daemon keeps nothing a
container needs, so it can be restarted (or killed) while containers run.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from nsprim.daemon import shapes
from nsprim.daemon.server import (
    ApiError,
    Hijack,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
)
from nsprim.daemon.streams import (
    STDERR,
    STDOUT,
    attach_ended,
    ended_since,
    entry_bytes,
    exit_code_now,
    follow_log,
    frame,
    log_size,
    open_log,
    poll_delay,
    pump_input,
    read_some,
    set_winsize,
    terminal_of,
    write_all,
)
from nsprim.lifecycle import Record

_ID = r"(?P<id>[^/]+)"


def _find(ref: str) -> Record:
    from nsprim.lifecycle import find

    try:
        return find(ref)
    except LookupError as e:
        msg = str(e)
        raise ApiError(404 if msg.startswith("No such") else 400, msg) from None


def _not_running(rec: Record) -> ApiError:
    return ApiError(409, f"Container {rec.id} is not running")


@dataclass
class Exec:
    id: str
    container: str
    cmd: list[str]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    env: list[str]
    user: str | None
    workdir: str | None
    privileged: bool
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    started: bool = False
    master: int = -1
    created: float = field(default_factory=time.time)


class Containers:
    def __init__(self, daemon: Any) -> None:
        self.d = daemon
        self.execs: dict[str, Exec] = {}
        #: when this daemon last started each container (wait's next-exit)
        self.started: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: auto-removed containers whose wait has been answered while their
        #: supervisor removes them: what depends on their removal waits
        self.removing: dict[str, Record] = {}
        self._collected = 0.0

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the removals in progress are done (a name, a volume or
        an image they held is free again, as docker has it after its wait)."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        # an rm's freeing in the background (its network leases among it):
        # `compose down` removes the network right after the containers
        while _FREEING and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        delay = 0.002
        while self.removing:
            for cid, rec in list(self.removing.items()):
                if not os.path.isdir(rec.dir) or time.monotonic() > deadline:
                    del self.removing[cid]
            if self.removing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def lock(self, cid: str) -> asyncio.Lock:
        lk = self._locks.get(cid)
        if lk is None:
            lk = self._locks[cid] = asyncio.Lock()
        return lk

    def routes(self, r: Router) -> None:
        c = "/containers"
        r.add("POST", c + "/create", self.create)
        r.add("GET", c + "/json", self.list_)
        r.add("POST", c + "/prune", self.prune)
        r.add("GET", c + f"/{_ID}/json", self.inspect)
        r.add("POST", c + f"/{_ID}/start", self.start)
        r.add("POST", c + f"/{_ID}/stop", self.stop)
        r.add("POST", c + f"/{_ID}/restart", self.restart)
        r.add("POST", c + f"/{_ID}/kill", self.kill)
        r.add("POST", c + f"/{_ID}/wait", self.wait)
        r.add("POST", c + f"/{_ID}/attach", self.attach)
        r.add("GET", c + f"/{_ID}/logs", self.logs)
        r.add("POST", c + f"/{_ID}/resize", self.resize)
        r.add("DELETE", c + f"/{_ID}", self.delete)
        r.add("POST", c + f"/{_ID}/exec", self.exec_create)
        r.add("POST", f"/exec/{_ID}/start", self.exec_start)
        r.add("POST", f"/exec/{_ID}/resize", self.exec_resize)
        r.add("GET", f"/exec/{_ID}/json", self.exec_inspect)

    # ---------------------------------------------------------------- create
    async def create(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.daemon.create import parse_create

        name = req.q("name") or None
        if name is not None:
            name = name.lstrip("/")
        cr = parse_create(req.json(), name)
        try:
            rec = await asyncio.to_thread(self._create, cr)
        except ApiError as e:
            if e.status != 409 or not self.removing:
                raise
            await self.settle()  # the name may be a --rm container's, being removed
            rec = await asyncio.to_thread(self._create, cr)
        self.d.events.emit("container", "create", rec.id, {"name": rec.name,
                                                          "image": cr.spec.image or ""})
        return json_response({"Id": rec.id, "Warnings": []}, 201)

    def _create(self, cr: Any) -> Record:
        import dataclasses

        from nsprim.errors import ConfigError
        from nsprim.images.store import ImageNotFound, default_store
        from nsprim.lifecycle import new_record, parse_signal
        from nsprim.spec import validate

        spec = cr.spec
        try:
            validate(spec)
            from nsprim.caps import resolve_caps

            resolve_caps(spec.cap_add, spec.cap_drop)  # unknown names, before anything
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        if not re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", spec.image or ""):
            from nsprim.images.reference import parse_reference

            try:
                parse_reference(spec.image or "")
            except ConfigError as e:
                raise ApiError(400, f"invalid reference format: {e}") from None
        try:
            img = default_store().get(spec.image)
        except ImageNotFound:
            raise ApiError(404, f"No such image: {spec.image}") from None
        except Exception as e:  # noqa: BLE001 - a name the reference parser refuses
            raise ApiError(400, " ".join(str(e).split())) from None
        spec = dataclasses.replace(spec, image_id=img.id,
                                   stop_signal=spec.stop_signal or img.stop_signal)
        if spec.stop_signal:
            try:
                parse_signal(spec.stop_signal)
            except ConfigError as e:
                raise ApiError(400, str(e)) from None
        cfg = spec.to_json()
        cfg.update(cr.extra)
        cfg["exposed_ports"] = sorted(set(cfg["exposed_ports"]) | set(img.exposed_ports))
        if spec.publish_all:
            pass
        ic = img.config.get("config") or {}
        cfg["image_config"] = {k: ic.get(k) for k in ("Entrypoint", "Cmd", "Env",
                                                       "WorkingDir", "User")}
        try:
            rec = new_record(cfg)
        except ConfigError as e:
            msg = str(e)
            raise ApiError(409 if "already in use" in msg else 400,
                           "Conflict. " + msg if "already in use" in msg else msg) from None
        return rec

    # ----------------------------------------------------------------- start
    async def start(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        async with self.lock(rec.id):
            if rec.running and not _has_ended(rec):
                return Response(304)
            self.started[rec.id] = time.time()
            err = await asyncio.to_thread(self._start, rec)
        if err is not None:
            raise ApiError(400 if "exec:" in err else 500, err)
        self.d.events.emit("container", "start", rec.id, {"name": rec.name})
        return Response(204)

    def _start(self, rec: Record) -> str | None:
        from nsprim.lifecycle import collect, remove_record, start_detached, wait_exited

        if rec.running and _has_ended(rec):
            wait_exited(rec, 30)  # the last run's supervisor is still finishing
        now = time.monotonic()
        if now - self._collected > 2:  # what killed supervisors left: not at every start
            self._collected = now
            collect()
        err = self._start_by_zygote(rec)
        if err == "":  # no zygote: the supervisor starts as the CLI starts it
            err = start_detached(rec)
        if err is not None and rec.config.get("auto_remove"):
            from nsprim.lifecycle import keep_exit_code

            keep_exit_code(rec.id, 127 if "not found" in err or "no such file" in err else 126
                           if "exec:" in err else 125)
            remove_record(rec)
        return err

    def _start_by_zygote(self, rec: Record) -> str | None:
        """Start the supervisor through the daemon's zygote: None, the error,
        or "" when there is no zygote to ask."""
        z = self.d.zygote
        if z is None:
            return ""
        r, w = os.pipe2(os.O_CLOEXEC)
        rec.update_state(status="starting", starting_at=time.time())
        try:
            asked = z.start(rec.id, w)
        finally:
            os.close(w)
        with os.fdopen(r) as f:
            answer = f.readline().strip() if asked else None
        if answer is None:
            return ""
        if answer == "ok":
            return None
        if rec.state.get("status") == "starting":
            rec.update_state(status="exited", exit_code=125, finished_at=time.time())
        return answer[4:] if answer.startswith("err ") else "the supervisor failed to start"

    # ------------------------------------------------------- stop, kill, ...
    def _timeout(self, req: Request, rec: Record) -> float:
        t = req.qint("t")
        if t is not None:
            return float(t) if t >= 0 else 1e9
        st = rec.config.get("stop_timeout")
        return float(st) if isinstance(st, int) and st >= 0 else 10.0

    def _signal(self, req: Request, default: str | None) -> int | None:
        from nsprim.errors import ConfigError
        from nsprim.lifecycle import parse_signal

        s = req.q("signal") or default
        if s is None:
            return None
        try:
            return parse_signal(s)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None

    async def stop(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        sig = self._signal(req, None)
        if not rec.running or _has_ended(rec):
            return Response(304)
        await asyncio.to_thread(_stop, rec, self._timeout(req, rec), sig)
        return Response(204)

    async def restart(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        sig = self._signal(req, None)
        await asyncio.to_thread(_stop, rec, self._timeout(req, rec), sig)
        async with self.lock(rec.id):
            self.started[rec.id] = time.time()
            err = await asyncio.to_thread(self._start, rec)
        if err is not None:
            raise ApiError(500, err)
        self.d.events.emit("container", "restart", rec.id, {"name": rec.name})
        return Response(204)

    async def kill(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.lifecycle import request_stop, signal_container

        rec = _find(m["id"])
        sig = self._signal(req, "SIGKILL")
        assert sig is not None
        if not rec.running:
            raise _not_running(rec)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            await asyncio.to_thread(request_stop, rec)
        try:
            await asyncio.to_thread(signal_container, rec, sig)
        except ProcessLookupError:
            if sig not in (signal.SIGKILL, signal.SIGTERM):
                raise _not_running(rec) from None
        self.d.events.emit("container", "kill", rec.id, {"name": rec.name,
                                                        "signal": str(int(sig))})
        return Response(204)

    async def delete(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        force = req.qbool("force")
        req.qbool("v")
        # a container whose process has ended is not running (its supervisor
        # may still be finishing: the removal does not wait for it)
        if rec.running and not _has_ended(rec) and not force:
            what = "restarting" if rec.status == "restarting" else "running"
            raise ApiError(409, f"cannot remove container \"/{rec.name}\": container is "
                           f"{what}: stop the container before removing or force remove")
        await asyncio.to_thread(self._remove, rec)
        self.d.events.emit("container", "destroy", rec.id, {"name": rec.name})
        return Response(204)

    def _remove(self, rec: Record) -> None:
        from nsprim.lifecycle import remove_record, request_stop, signal_container

        if rec.running:
            request_stop(rec)
            _thaw(rec)
            try:
                signal_container(rec, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_ended(rec, 30)  # the exit is recorded; its supervisor need not finish
        code = exit_code_now(rec)
        if code is not None:
            from nsprim.lifecycle import keep_exit_code

            keep_exit_code(rec.id, code)
        if not _remove_later(rec):
            remove_record(rec)

    async def prune(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.lifecycle import records

        await self.settle()
        gone = []
        for rec in await asyncio.to_thread(records):
            if rec.status in ("exited", "created", "dead") and not rec.running:
                await asyncio.to_thread(self._remove, rec)
                gone.append(rec.id)
        return json_response({"ContainersDeleted": gone or None, "SpaceReclaimed": 0})

    # --------------------------------------------------------------- queries
    async def inspect(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        return json_response(await asyncio.to_thread(shapes.container_inspect, rec))

    async def list_(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.dockerfmt.filters import FilterError, api_filters

        try:
            filters = api_filters(req.q("filters"))
        except FilterError as e:
            raise ApiError(400, str(e)) from None
        show_all = req.qbool("all")
        limit = req.qint("limit", -1)
        size = req.qbool("size")
        await self.settle()
        rows = await asyncio.to_thread(self._list, filters, show_all, limit or -1, size)
        return json_response(rows)

    def _list(self, filters: dict[str, list[str]], show_all: bool, limit: int,
              size: bool) -> list[dict[str, Any]]:
        """docker's selection (nsprim.dockerfmt.filters, as ps), in docker's shapes."""
        from nsprim.dockerfmt.filters import FilterError, select_containers
        from nsprim.dockerfmt.load import summarize
        from nsprim.lifecycle import collect, records

        collect()
        items = sorted((shapes._loaded(r) for r in records()),
                       key=lambda c: -float(c.spec.created or 0))
        try:
            chosen = select_containers(items, filters, show_all=show_all, last=limit)
        except FilterError as e:
            raise ApiError(400, str(e).removeprefix("Error response from daemon: ")) from None
        return summarize(chosen, size=size)

    # ------------------------------------------------------------------ wait
    async def wait(self, req: Request, m: re.Match[str]) -> StreamResponse:
        from nsprim.lifecycle import kept_exit_code

        condition = req.q("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ApiError(400, f"invalid condition: {condition!r}")
        ref = m["id"]
        try:
            rec = _find(ref)
        except ApiError:
            code = kept_exit_code(ref)
            if code is None:
                raise
            return _wait_body(_done(code))
        now = time.time()
        st = rec.state
        status = st.get("status")
        if status in ("running", "restarting") and isinstance(st.get("started_at"), float):
            t0 = float(st["started_at"])
        elif status in ("created", "starting"):
            t0 = now
        else:
            t0 = self.started.get(rec.id, 0.0)
            if now - t0 > 5:
                t0 = now
        if condition == "not-running" and status not in ("running", "restarting", "starting"):
            return _wait_body(_done(exit_code_now(rec) or 0))
        return _wait_body(self._wait(rec, t0, condition))

    async def _wait(self, rec: Record, t0: float, condition: str) -> dict[str, Any]:
        from nsprim.lifecycle import kept_exit_code

        since = time.monotonic()
        code: int | None = None
        while True:
            if not os.path.isdir(rec.dir):
                kept = kept_exit_code(rec.id)
                return {"StatusCode": kept if kept is not None else (code or 0), "Error": None}
            if code is None and ended_since(rec, t0):
                code = exit_code_now(rec)
                if code is None:
                    code = 0
                # an auto-removed one is being removed by its supervisor: its
                # exit code is final (docker's "removing" state)
                if condition != "removed" or rec.config.get("auto_remove"):
                    if rec.config.get("auto_remove"):
                        self.removing[rec.id] = rec
                    return {"StatusCode": code, "Error": None}
            await asyncio.sleep(poll_delay(since))

    # ---------------------------------------------------------------- attach
    async def attach(self, req: Request, m: re.Match[str]) -> Hijack:
        rec = _find(m["id"])
        cfg = rec.config
        tty = bool(cfg.get("tty"))
        want_stdin = req.qbool("stdin")
        want_out, want_err = req.qbool("stdout"), req.qbool("stderr")
        logs, stream = req.qbool("logs"), req.qbool("stream")
        t0 = _run_start(rec)
        offset = 0 if logs else log_size(rec)
        log = open_log(rec) if stream or logs else None
        fifo = -1
        if want_stdin and cfg.get("interactive") and not tty:
            from nsprim.supervise import stdin_path

            path = stdin_path(rec)
            try:
                os.mkfifo(path, 0o600)
            except FileExistsError:
                pass
            # read+write: opening never waits, and the container sees its
            # stdin end when we close (with StdinOnce no one else writes)
            fifo = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        was_running = rec.running

        def ended() -> bool:
            return attach_ended(rec, was_running, t0)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      trailing: bytes) -> None:
            tasks: list[asyncio.Task[Any]] = []
            try:
                if want_stdin and fifo >= 0:
                    tasks.append(asyncio.create_task(self._stdin_fifo(rec, reader, trailing,
                                                                      fifo, ended)))
                elif want_stdin and tty:
                    tasks.append(asyncio.create_task(self._stdin_tty(rec, reader, trailing,
                                                                     ended)))
                if stream or logs:
                    async for entry in follow_log(rec, offset, ended if stream else None, log):
                        s, data = entry_bytes(entry)
                        if (s == STDOUT and not want_out) or (s == STDERR and not want_err):
                            continue
                        writer.write(data if tty else frame(s, data))
                        await writer.drain()
                elif tasks:
                    await asyncio.wait(tasks)
            finally:
                for t in tasks:
                    t.cancel()
                if log is not None:
                    log.close()
                if fifo >= 0:
                    try:
                        os.close(fifo)
                    except OSError:
                        pass
                try:
                    await writer.drain()
                except ConnectionError:
                    pass

        return Hijack(run, "application/vnd.docker.raw-stream" if tty else
                      "application/vnd.docker.multiplexed-stream")

    async def _stdin_fifo(self, rec: Record, reader: asyncio.StreamReader, trailing: bytes,
                          fd: int, ended: Any) -> None:
        try:
            await pump_input(reader, trailing, fd)
            # what was written stays in the FIFO only while someone has it
            # open: the container, once it runs
            since = time.monotonic()
            while not rec.running and not ended():
                await asyncio.sleep(poll_delay(since))
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                os.close(fd)  # the end of the client's input is the container's
            except OSError:
                pass

    async def _stdin_tty(self, rec: Record, reader: asyncio.StreamReader, trailing: bytes,
                         ended: Any) -> None:
        pending = bytearray(trailing)
        fd = -1
        try:
            while fd < 0:  # attached before start: wait until the terminal exists
                try:
                    fd = await asyncio.to_thread(terminal_of, rec)
                except OSError:
                    if ended():
                        return
                    try:
                        data = await asyncio.wait_for(reader.read(65536), 0.02)
                    except asyncio.TimeoutError:
                        continue
                    if not data:
                        return
                    pending += data
            os.set_blocking(fd, False)
            await pump_input(reader, bytes(pending), fd)
        except (ConnectionError, OSError):
            pass
        finally:
            if fd >= 0:
                os.close(fd)

    # ------------------------------------------------------------------ logs
    async def logs(self, req: Request, m: re.Match[str]) -> StreamResponse:
        rec = _find(m["id"])
        want_out, want_err = req.qbool("stdout"), req.qbool("stderr")
        if not (want_out or want_err):
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        follow, stamps = req.qbool("follow"), req.qbool("timestamps")
        tail = req.q("tail") or "all"
        if tail != "all" and not (tail.isascii() and tail.isdigit()):
            raise ApiError(400, f"invalid tail value {tail!r}")
        since, until = _when(req.q("since")), _when(req.q("until"))
        tty = bool(rec.config.get("tty"))
        t0 = _run_start(rec)
        following = follow and rec.running and not _has_ended(rec)

        async def body() -> Any:
            entries: Any = follow_log(rec, 0, None)
            old = [e async for e in entries]
            if tail != "all":
                old = old[-int(tail):] if int(tail) else []
            offset = log_size(rec) if following else 0
            for e in old:
                out = self._log_out(e, tty, want_out, want_err, stamps, since, until)
                if out:
                    yield out
            if following:
                async for e in follow_log(rec, offset, lambda: ended_since(rec, t0)):
                    out = self._log_out(e, tty, want_out, want_err, stamps, since, until)
                    if out:
                        yield out

        return StreamResponse(body(), content_type="application/vnd.docker.raw-stream" if tty
                              else "application/vnd.docker.multiplexed-stream")

    @staticmethod
    def _log_out(e: dict[str, Any], tty: bool, want_out: bool, want_err: bool, stamps: bool,
                 since: float | None, until: float | None) -> bytes:
        if since is not None or until is not None:
            t = _parse_time(str(e.get("time", "")))
            if since is not None and t is not None and t < since:
                return b""
            if until is not None and t is not None and t > until:
                return b""
        s, data = entry_bytes(e, stamps)
        if (s == STDOUT and not want_out) or (s == STDERR and not want_err):
            return b""
        return data if tty else frame(s, data)

    # ---------------------------------------------------------------- resize
    async def resize(self, req: Request, m: re.Match[str]) -> Response:
        rec = _find(m["id"])
        h, w = req.qint("h", 0) or 0, req.qint("w", 0) or 0
        if not rec.config.get("tty"):
            return Response(200)
        try:
            fd = await asyncio.to_thread(terminal_of, rec)
        except OSError:
            raise _not_running(rec) from None
        try:
            set_winsize(fd, h, w)
        finally:
            os.close(fd)
        return Response(200)

    # ------------------------------------------------------------------ exec
    async def exec_create(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.config import parse_user
        from nsprim.errors import ConfigError
        from nsprim.spec import env_list

        rec = _find(m["id"])
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "invalid exec body: expected a JSON object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(x, str) for x in cmd):
            raise ApiError(400, "No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(x, str) for x in env):
            raise ApiError(400, "invalid Env: expected an array of strings")
        for k in ("User", "WorkingDir"):
            if body.get(k) is not None and not isinstance(body.get(k), str):
                raise ApiError(400, f"invalid {k}: expected a string")
        try:
            env_list(env)
            parse_user(body.get("User") or None)
        except ConfigError as err:
            raise ApiError(400, str(err)) from None
        if not rec.running:
            raise _not_running(rec)
        e = Exec(os.urandom(32).hex(), rec.id, list(cmd), bool(body.get("Tty")),
                 bool(body.get("AttachStdin")), bool(body.get("AttachStdout")),
                 bool(body.get("AttachStderr")), list(env), body.get("User") or None,
                 body.get("WorkingDir") or None, bool(body.get("Privileged")))
        if e.privileged:
            raise ApiError(400, "privileged exec is not supported by nsprim")
        self._gc_execs()
        self.execs[e.id] = e
        return json_response({"Id": e.id}, 201)

    def _gc_execs(self) -> None:
        now = time.time()
        for k, e in list(self.execs.items()):
            if not e.running and e.started and now - e.created > 3600:
                del self.execs[k]

    def _exec(self, ref: str) -> Exec:
        e = self.execs.get(ref)
        if e is None:
            raise ApiError(404, f"No such exec instance: {ref}")
        return e

    async def exec_inspect(self, req: Request, m: re.Match[str]) -> Response:
        e = self._exec(m["id"])
        return json_response({
            "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "Pid": e.pid,
            "ContainerID": e.container, "OpenStdin": e.stdin, "OpenStdout": e.stdout,
            "OpenStderr": e.stderr, "CanRemove": False, "DetachKeys": "",
            "ProcessConfig": {"tty": e.tty, "entrypoint": e.cmd[0], "arguments": e.cmd[1:],
                              "privileged": e.privileged, "user": e.user or ""}})

    async def exec_resize(self, req: Request, m: re.Match[str]) -> Response:
        e = self._exec(m["id"])
        if e.master >= 0:
            set_winsize(e.master, req.qint("h", 0) or 0, req.qint("w", 0) or 0)
        elif not e.running:
            raise ApiError(409, f"exec {e.id} is not running")
        return Response(200)

    async def exec_start(self, req: Request, m: re.Match[str]) -> Response | Hijack:
        e = self._exec(m["id"])
        body = req.json(optional=True) or {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid exec start body")
        if e.started:
            raise ApiError(409, f"exec {e.id} has already been started")
        rec = _find(e.container)
        if not rec.running:
            raise _not_running(rec)
        e.started = True
        if body.get("Detach"):
            c = await self._exec_spawn(rec, e, detached=True)
            if isinstance(c, str):
                raise ApiError(400 if "exec:" in c else 500, c)
            asyncio.create_task(self._exec_reap(e, c))
            return Response(200)

        # docker-py reads a hijacked stream from the raw socket, past the
        # buffer that parsed the 101: bytes that arrive with the 101 are lost
        # to it.  Its client gets a moment to read the head first.
        pause = 0.05 if "docker-sdk-python" in req.headers.get("user-agent", "") else 0.0

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      trailing: bytes) -> None:
            if pause:
                await asyncio.sleep(pause)
            c = await self._exec_spawn(rec, e, detached=False)
            if isinstance(c, str):
                msg = f"OCI runtime exec failed: exec failed: {c}: unknown\r\n".encode()
                writer.write(msg if e.tty else frame(STDOUT, msg))
                await writer.drain()
                return
            await self._exec_io(e, c, reader, writer, trailing)

        return Hijack(run, "application/vnd.docker.raw-stream" if e.tty else
                      "application/vnd.docker.multiplexed-stream")

    async def _exec_spawn(self, rec: Record, e: Exec, detached: bool) -> Any:
        """Start the exec's process: the Container, or the error's line."""
        from nsprim.container import DEVNULL, PIPE
        from nsprim.errors import SpawnError
        from nsprim.spec import env_list, exec_container

        st = rec.state
        pid = st.get("pid")
        if not isinstance(pid, int):
            e.exit_code = 126
            return f"container {rec.id} is not running"

        def spawn() -> Any:
            stdio: dict[str, Any] = {"tty": True} if e.tty and not detached else {
                "stdin": PIPE if e.stdin and not detached else DEVNULL,
                "stdout": PIPE if not detached else DEVNULL,
                "stderr": PIPE if not detached else DEVNULL}
            c = exec_container(rec.spec, pid, e.cmd, env=env_list(e.env), user=e.user,
                               workdir=e.workdir, **stdio)
            try:
                c.start()
            except BaseException:
                if c.cgroup is not None:
                    c.cgroup.close()
                raise
            return c

        try:
            c = await asyncio.to_thread(spawn)
        except SpawnError as err:
            from nsprim.cli.run import _exec_failure

            if err.step == "exec":
                e.exit_code = 127 if err.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                return _exec_failure(err.detail or e.cmd[0], err.errno or 0)
            e.exit_code = 126
            return " ".join(str(err).split())
        except (OSError, LookupError, ValueError) as err:
            e.exit_code = 126
            return " ".join(str(err).split())
        e.pid, e.running = int(c.pid), True
        if e.tty and not detached:
            e.master = c.pty_master
        return c

    async def _exec_reap(self, e: Exec, c: Any) -> None:
        try:
            await _rs_pidfd(c.pidfd)
            rc = await asyncio.to_thread(c.wait)
            e.exit_code = int(rc if rc >= 0 else 128 - rc)
        finally:
            e.running = False
            if c.cgroup is not None:
                c.cgroup.close()

    async def _exec_io(self, e: Exec, c: Any, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, trailing: bytes) -> None:
        outs: list[tuple[int, int]] = []
        in_fd = -1
        if e.tty:
            outs = [(c.pty_master, STDOUT)]
            in_fd = os.dup(c.pty_master) if e.stdin else -1
        else:
            if c.stdout is not None:
                outs.append((c.stdout.fileno(), STDOUT))
            if c.stderr is not None:
                outs.append((c.stderr.fileno(), STDERR))
            if c.stdin is not None:
                in_fd = c.stdin.fileno()
        for fd, _ in outs:
            os.set_blocking(fd, False)

        async def out(fd: int, s: int) -> None:
            while True:
                data = await read_some(fd)
                if not data:
                    return
                if (s == STDOUT and e.stdout) or (s == STDERR and e.stderr):
                    writer.write(data if e.tty else frame(s, data))
                    await writer.drain()

        async def inp() -> None:
            try:
                await pump_input(reader, trailing, in_fd)
            except (ConnectionError, OSError):
                pass
            finally:
                if not e.tty and c.stdin is not None:
                    c.stdin.close()
                elif in_fd >= 0:
                    os.close(in_fd)

        in_task = asyncio.create_task(inp()) if in_fd >= 0 else None
        out_tasks = [asyncio.create_task(out(fd, s)) for fd, s in outs]
        try:
            await _rs_pidfd(c.pidfd)
            # what is left in the pipes: escaped processes may hold them, 2 s at most
            if out_tasks:
                await asyncio.wait(out_tasks, timeout=2)
            rc = await asyncio.to_thread(c.wait)
            e.exit_code = int(rc if rc >= 0 else 128 - rc)
        except (ConnectionError, OSError):
            pass
        finally:
            e.running = False
            e.master = -1
            for t in out_tasks + ([in_task] if in_task else []):
                t.cancel()
            if c.cgroup is not None:
                c.cgroup.close()
            if c.returncode is None:
                try:
                    c.kill()
                    await asyncio.to_thread(c.wait)
                except OSError:
                    pass
            c._close_pipes()


class _Removed(Record):
    """A record moved out of the containers directory, to be freed."""

    def __init__(self, cid: str, where: str) -> None:
        super().__init__(cid)
        self._where = where

    @property
    def dir(self) -> str:
        return self._where


def _trash_dir() -> str:
    from nsprim.state import state_root

    return os.path.join(state_root(), "removing")


def _remove_later(rec: Record) -> bool:
    """docker rm's visible part now -- the record leaves the containers
    directory and its name is free -- and the freeing (overlay, container
    layer, cgroup, bridge lease) in the background.  False if the record
    could not be moved (the caller removes it the slow way)."""
    from nsprim.lifecycle import release_name

    trash = _trash_dir()
    name = rec.name
    try:
        os.makedirs(trash, 0o700, exist_ok=True)
        where = os.path.join(trash, rec.id)
        os.rename(rec.dir, where)
    except OSError:
        return False
    if name:
        release_name(name, rec.id)
    import threading

    t = threading.Thread(target=_free, args=(_Removed(rec.id, where),), daemon=True)
    _FREEING.add(t)
    t.start()
    return True


#: the background removals in progress (joined when the daemon stops)
_FREEING: set[Any] = set()


def finish_removals(timeout: float = 30.0) -> None:
    """Wait for the background removals (a daemon that stops right after an
    ``rm`` leaves no overlay mounted); what is left is collected by the next
    daemon (collect_removals)."""
    deadline = time.monotonic() + timeout
    for t in list(_FREEING):
        t.join(max(0.0, deadline - time.monotonic()))


def _free(rec: Record) -> None:
    import shutil
    import threading

    from nsprim.lifecycle import release_resources

    try:
        release_resources(rec, remove_rootfs=True)
    finally:
        shutil.rmtree(rec.dir, ignore_errors=True)
        _FREEING.discard(threading.current_thread())


def collect_removals() -> None:
    """Free what a daemon that was stopped mid-removal left."""
    try:
        ids = os.listdir(_trash_dir())
    except FileNotFoundError:
        return
    for cid in ids:
        _free(_Removed(cid, os.path.join(_trash_dir(), cid)))


def _run_start(rec: Record) -> float:
    """When the run to follow began: the current one's start, or now for a
    container that is to be started."""
    st = rec.state
    started = st.get("started_at")
    if st.get("status") in ("running", "restarting") and isinstance(started, (int, float)):
        return float(started)
    return time.time()


def _thaw(rec: Record) -> None:
    """A paused container is thawed before it is stopped or removed (a
    frozen process takes no signal), as docker does."""
    if rec.state.get("paused"):
        from nsprim.manage import Conflict, set_paused

        try:
            set_paused(rec, False)
        except (Conflict, OSError, TimeoutError):
            pass


def _has_ended(rec: Record) -> bool:
    """Has the current run's process ended (its supervisor may still be
    finishing)?"""
    started = rec.state.get("started_at")
    return isinstance(started, (int, float)) and ended_since(rec, float(started))


def _wait_ended(rec: Record, timeout: float) -> bool:
    since = time.monotonic()
    while not _has_ended(rec):
        if not rec.running:
            return True
        if time.monotonic() > since + timeout:
            return False
        time.sleep(poll_delay(since))
    return True


def _stop(rec: Record, timeout: float, sig: int | None) -> None:
    """docker stop: the stop signal, SIGKILL after `timeout`; done when the
    process has ended (its supervisor finishes on its own)."""
    from nsprim.lifecycle import parse_signal, request_stop, signal_container

    if not rec.running:
        return
    request_stop(rec)
    try:
        signal_container(rec, sig or parse_signal(rec.config.get("stop_signal") or "SIGTERM"))
    except ProcessLookupError:
        return
    _thaw(rec)  # the signal is delivered once the container runs again
    if not _wait_ended(rec, timeout):
        try:
            signal_container(rec, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_ended(rec, 30)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _rs_pidfd(pidfd: int) -> None:
    """Wait until the process of `pidfd` has ended."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(pidfd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(pidfd)


def _wait_body(result: Any) -> StreamResponse:
    import json

    async def body() -> Any:
        yield b""
        r = await result
        yield json.dumps(r).encode() + b"\n"

    return StreamResponse(body())


async def _done(code: int) -> dict[str, Any]:
    return {"StatusCode": code, "Error": None}


def _parse_time(text: str) -> float | None:
    import calendar

    try:
        base, _, frac = text.rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + \
            (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


def _when(v: str | None) -> float | None:
    """docker's since/until: unix seconds (with fraction) or RFC 3339."""
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        pass
    t = _parse_time(v)
    if t is None:
        raise ApiError(400, f"invalid time value {v!r}")
    return t


__all__ = ["Containers", "write_all"]
