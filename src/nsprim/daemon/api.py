"""The rest of the API: system (_ping, version, info, df, events), images,
volumes, networks; and the router that puts every route together."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import time
from typing import Any

from nsprim.daemon import shapes
from nsprim.daemon.server import (
    API_VERSION,
    MIN_API_VERSION,
    ApiError,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
)

VERSION = "28.2.2-nsprim"
#: the largest tar body accepted (docker load): NSPRIM_IMAGE_MAX_SIZE's default
_MAX_ARCHIVE = 64 << 30
#: the largest build context accepted (a plain tar)
_MAX_CONTEXT = 4 << 30
_NAME = r"(?P<name>.+?)"


class Events:
    """docker's event stream: actions of the daemon (pull, tag, delete) and
    container state changes, which a watcher sees in the records while
    someone listens (so containers of the nsprim CLI show too)."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._known: dict[str, str] = {}
        self._attrs: dict[str, dict[str, str]] = {}
        #: container events sent per id (each once per run)
        self._done: dict[str, set[str]] = {}
        #: image, volume and network events, from the events file (nsprim.events)
        self._tail: Any = None

    def emit(self, kind: str, action: str, ident: str, attrs: dict[str, str]) -> None:
        if kind != "container":  # one place for these: the events file, followed below
            from nsprim import events

            events.emit_event(kind, action, ident, attrs)
            return
        if not self.subscribers:
            return
        if kind == "container":
            attrs = {**self._attrs.get(ident, {}), **attrs}
            done = self._done.setdefault(ident, set())
            if action in ("create", "start", "die", "destroy"):
                if action in done:
                    return  # the watcher and a handler both saw it
                done.add(action)
                if action == "start":
                    done.discard("die")
                elif action == "die":
                    done.discard("start")
        now = time.time_ns()
        ev = {"Type": kind, "Action": action, "Actor": {"ID": ident, "Attributes": attrs},
              "scope": "local", "time": now // 10**9, "timeNano": now}
        if kind == "container":
            ev.update({"status": action, "id": ident, "from": attrs.get("image", "")})
        for q in list(self.subscribers):
            q.put_nowait(ev)

    def emit_threadsafe(self, loop: asyncio.AbstractEventLoop, kind: str, action: str,
                        ident: str, attrs: dict[str, str]) -> None:
        loop.call_soon_threadsafe(self.emit, kind, action, ident, attrs)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if not self.subscribers:
            self._known = self._snapshot()
            self._done = {cid: {"create"} | ({"start"} if st == "running" else {"die"}
                                             if st != "created" else set())
                          for cid, st in self._known.items()}
        if self._tail is None:
            from nsprim import events

            self._tail = events.Tail()
            self._tail.poll()  # what is there already: replayed per stream (since=)
        self.subscribers.add(q)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(q)

    def _snapshot(self) -> dict[str, str]:
        from nsprim.daemon.shapes import _state_of
        from nsprim.lifecycle import records

        out = {}
        for rec in records():
            s = _state_of(rec)[2]  # exited as soon as the process is (the shim's record)
            out[rec.id] = "created" if s == "starting" else "exited" if s == "dead" else \
                "running" if s == "paused" else s
            if rec.id not in self._attrs:
                cfg = rec.config
                self._attrs[rec.id] = {"name": str(cfg.get("name", "")),
                                       "image": str(cfg.get("image") or "")}
        return out

    def _publish(self, ev: dict[str, Any]) -> None:
        for q in list(self.subscribers):
            q.put_nowait(ev)

    async def _watch(self) -> None:
        try:
            await self._watch_loop()
        finally:
            if self._tail is not None:
                self._tail.close()
                self._tail = None

    async def _watch_loop(self) -> None:
        while self.subscribers:
            await asyncio.sleep(0.05)
            for ev in await asyncio.to_thread(self._tail.poll):
                if ev.get("Type") != "container":  # the watcher below sees containers
                    self._publish(ev)
            now = await asyncio.to_thread(self._snapshot)
            for cid, s in now.items():
                if cid not in self._known:
                    self.emit("container", "create", cid, {})
                if s in ("running", "exited", "restarting", "removing"):
                    if s != "running" and "start" not in self._done.get(cid, set()) and \
                            "die" in self._done.get(cid, set()):
                        continue
                    self.emit("container", "start", cid, {})
                if s in ("exited", "restarting", "removing"):
                    self.emit("container", "die", cid, {})
            for cid in list(self._known):
                if cid not in now:
                    if "start" in self._done.get(cid, set()):
                        self.emit("container", "die", cid, {})
                    self.emit("container", "destroy", cid, {})
                    self._done.pop(cid, None)
            self._known = now


class Daemon:
    def __init__(self) -> None:
        from nsprim.daemon.containers import Containers

        self.events = Events()
        self.zygote: Any = None
        self.containers = Containers(self)
        self.router = Router()
        self._routes()

    def _routes(self) -> None:
        r = self.router
        r.add("GET", "/_ping", self.ping)
        r.add("HEAD", "/_ping", self.ping)
        r.add("GET", "/version", self.version)
        r.add("GET", "/info", self.info)
        r.add("GET", "/system/df", self.df)
        r.add("GET", "/events", self.events_stream)
        r.add("POST", "/auth", self.auth)
        self.containers.routes(r)
        from nsprim.daemon import manage

        manage.routes(r, self)
        r.add("GET", "/images/json", self.images)
        r.add("POST", "/images/create", self.image_pull)
        r.add("POST", "/images/prune", self.image_prune)
        r.add("POST", "/images/load", self.image_load, max_body=_MAX_ARCHIVE, spool=True)
        r.add("GET", "/images/get", self.image_save)
        r.add("POST", "/build", self.build, max_body=_MAX_CONTEXT, spool=True)
        r.add("GET", f"/images/{_NAME}/json", self.image_inspect)
        r.add("GET", f"/images/{_NAME}/history", self.image_history)
        r.add("POST", f"/images/{_NAME}/tag", self.image_tag)
        r.add("POST", "/commit", self.commit)
        r.add("POST", f"/images/{_NAME}/push", self.image_push)
        r.add("GET", f"/images/{_NAME}/get", self.image_save)
        r.add("DELETE", f"/images/{_NAME}", self.image_delete)
        r.add("GET", "/volumes", self.volumes)
        r.add("POST", "/volumes/create", self.volume_create)
        r.add("POST", "/volumes/prune", self.volume_prune)
        r.add("GET", "/volumes/(?P<name>[^/]+)", self.volume_inspect)
        r.add("DELETE", "/volumes/(?P<name>[^/]+)", self.volume_delete)
        r.add("GET", "/networks", self.networks)
        r.add("POST", "/networks/create", self.network_create)
        r.add("POST", "/networks/prune", self.network_prune)
        r.add("GET", "/networks/(?P<name>[^/]+)", self.network_inspect)
        r.add("DELETE", "/networks/(?P<name>[^/]+)", self.network_delete)
        r.add("POST", "/networks/(?P<name>[^/]+)/(?:connect|disconnect)", self.network_connect)

    async def build(self, req: Request, m: re.Match[str]) -> StreamResponse:
        """POST /build: the tar context in the body (spooled), extracted
        confined (the layer extractor: TarGuard, openat2 RESOLVE_IN_ROOT, no
        whiteouts), then nsprim.images.build with docker's parameters; the
        output as docker's ``{"stream": ...}`` lines and an ``aux`` id."""
        try:
            from nsprim.images.build import BuildError
            from nsprim.images.build import build as run_build
        except ImportError:
            raise ApiError(501, "build is not implemented by nsprim yet") from None
        if req.q("remote"):
            raise ApiError(501, "a remote build context is not supported by nsprim")
        tags = [t for t in req.query.get("t", []) if t]
        dockerfile = req.q("dockerfile") or "Dockerfile"
        parts = dockerfile.replace("\\", "/").split("/")
        if dockerfile.startswith("/") or ".." in parts or "\0" in dockerfile:
            raise ApiError(400, f"invalid dockerfile {dockerfile!r}: a path inside the context")
        args = req.qjson("buildargs") or {}
        labels = req.qjson("labels") or {}
        for what, d in (("buildargs", args), ("labels", labels)):
            if not isinstance(d, dict) or not all(
                    isinstance(k, str) and (isinstance(v, str) or v is None)
                    for k, v in d.items()):
                raise ApiError(400, f"invalid {what}: a JSON object of strings")
        quiet = req.qbool("q")
        no_cache, pull = req.qbool("nocache"), req.qbool("pull")
        target = req.q("target") or None
        network = req.q("networkmode") or "bridge"
        if network == "default":
            network = "bridge"
        f = req.body_file
        import shutil
        import tempfile

        from nsprim.state import private_dir, state_root

        ctx = tempfile.mkdtemp(dir=private_dir(os.path.join(state_root(), "tmp-api")),
                               prefix="build-")

        def extract() -> None:
            from nsprim.images.layer import extract_layer

            head = f.read(4)
            f.seek(0)
            if head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd":
                raise ApiError(400, "a compressed build context is not supported by nsprim's "
                               "daemon: send a plain tar")
            extract_layer(f, ctx, whiteouts=False)

        try:
            await asyncio.to_thread(extract)
        except (OSError, ValueError) as e:
            shutil.rmtree(ctx, ignore_errors=True)
            raise ApiError(400, f"invalid build context: {' '.join(str(e).split())}") from None
        except BaseException:
            shutil.rmtree(ctx, ignore_errors=True)
            raise
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        class Progress:
            def write(self, text: str) -> int:
                if text and not quiet:
                    loop.call_soon_threadsafe(q.put_nowait, {"stream": text})
                return len(text)

            def flush(self) -> None:
                pass

        def work() -> None:
            try:
                img = run_build(ctx, dockerfile=os.path.join(ctx, dockerfile), tags=tags,
                                build_args={k: v for k, v in args.items() if v is not None},
                                target=target, no_cache=no_cache, pull=pull, network=network,
                                labels=labels,
                                progress=Progress())  # type: ignore[arg-type]
                out: list[dict[str, Any]] = [{"aux": {"ID": img.id}}]
                if not quiet:
                    out.append({"stream": f"Successfully built {img.id[7:19]}\n"})
                    out += [{"stream": f"Successfully tagged {t}\n"} for t in tags]
                else:
                    out.append({"stream": img.id + "\n"})
                for line in out:
                    loop.call_soon_threadsafe(q.put_nowait, line)
            except (BuildError, OSError, ValueError) as e:
                msg = " ".join(str(e).split()) or type(e).__name__
                loop.call_soon_threadsafe(q.put_nowait, {"errorDetail": {"message": msg},
                                                         "error": msg})
            finally:
                shutil.rmtree(ctx, ignore_errors=True)
                loop.call_soon_threadsafe(q.put_nowait, None)

        task = loop.run_in_executor(None, work)

        async def body() -> Any:
            while True:
                item = await q.get()
                if item is None:
                    break
                yield json.dumps(item).encode() + b"\r\n"
            await task

        return StreamResponse(body())

    # ---------------------------------------------------------------- system
    async def ping(self, req: Request, m: re.Match[str]) -> Response:
        return Response(200, b"OK" if req.method == "GET" else b"", "text/plain; charset=utf-8",
                        [("Cache-Control", "no-cache, no-store, must-revalidate"),
                         ("Pragma", "no-cache"), ("Builder-Version", "1")])

    async def version(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim import __version__

        u = os.uname()
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                   "Os": "linux", "Arch": _arch(), "KernelVersion": u.release}
        return json_response({
            "Platform": {"Name": "nsprim"},
            "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}],
            "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": f"nsprim-{__version__}", "GoVersion": "none", "Os": "linux",
            "Arch": _arch(), "KernelVersion": u.release, "BuildTime": ""})

    async def info(self, req: Request, m: re.Match[str]) -> Response:
        return json_response(await asyncio.to_thread(self._info))

    def _info(self) -> dict[str, Any]:
        from nsprim.cli.system import info  # one source: `nsprim info` shows the same

        return {"ID": _daemon_id(), **info(), "ServerVersion": VERSION}

    async def df(self, req: Request, m: re.Match[str]) -> Response:
        await self.containers.settle()

        def work() -> dict[str, Any]:
            from nsprim.images.store import default_store
            from nsprim.lifecycle import records
            from nsprim.volumes import list_volumes

            imgs = [shapes.image_summary(i) for i in default_store().images()]
            return {"LayersSize": sum(i["Size"] for i in imgs), "Images": imgs,
                    "Containers": [dict(shapes.container_summary(r), SizeRw=0, SizeRootFs=0)
                                   for r in records()],
                    "Volumes": [dict(v.to_json(), UsageData={"Size": -1, "RefCount": -1})
                                for v in list_volumes()],
                    "BuildCache": []}

        return json_response(await asyncio.to_thread(work))

    async def events_stream(self, req: Request, m: re.Match[str]) -> StreamResponse:
        """GET /events: what happened since `since` (from the events file),
        then what happens, until `until`; docker's filters (nsprim.events)."""
        from nsprim import events

        filters = req.qjson("filters") or {}
        if not isinstance(filters, dict):
            raise ApiError(400, "invalid filters")
        wanted_filters = {str(k): set(_filter_values(v)) for k, v in filters.items()}
        for k in wanted_filters:
            if k not in events.FILTERS and k not in ("daemon", "node", "plugin", "service",
                                                      "config", "secret"):
                raise ApiError(400, f"invalid filter '{k}'")
        since, until = req.q("since"), req.q("until")
        for name, v in (("since", since), ("until", until)):
            if v and not _num(v):
                raise ApiError(400, f"invalid value for {name}: {v!r}")
        start = float(since) if since else None
        deadline = float(until) if until else None
        q = self.events.subscribe()
        now = time.time()
        past: list[dict[str, Any]] = []
        if start is not None:
            tail = events.Tail()
            try:
                past = [ev for ev in await asyncio.to_thread(tail.poll)
                        if start <= int(ev.get("timeNano", 0)) / 1e9 <= min(
                            now, deadline if deadline is not None else now)]
            finally:
                tail.close()

        def wanted(ev: dict[str, Any]) -> bool:
            return events.matches(ev, wanted_filters)

        async def body() -> Any:
            try:
                yield b""
                for ev in past:
                    if wanted(ev):
                        yield json.dumps(ev).encode() + b"\n"
                while True:
                    timeout = None if deadline is None else max(0.0, deadline - time.time())
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout)
                    except asyncio.TimeoutError:
                        return
                    if wanted(ev):
                        yield json.dumps(ev).encode() + b"\n"
            finally:
                self.events.unsubscribe(q)

        return StreamResponse(body())

    async def auth(self, req: Request, m: re.Match[str]) -> Response:
        """docker login: the credentials are tried against the registry's
        /v2/ (basic, or a bearer token from its realm); nothing is stored
        here (the docker CLI keeps them in its config)."""
        body = req.json()
        if not isinstance(body, dict) or not all(
                isinstance(body.get(k, ""), str) for k in ("username", "password",
                                                           "serveraddress")):
            raise ApiError(400, "invalid auth body: username, password and serveraddress "
                           "are strings")
        user, pw = body.get("username") or "", body.get("password") or ""
        server = (body.get("serveraddress") or "docker.io").strip()
        host = re.sub(r"^https?://", "", server).split("/")[0]
        if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9a-fA-F:]+\]"
                                        r"(:[0-9]{1,5})?", host):
            raise ApiError(400, f"invalid registry address {server!r}")
        if host in ("docker.io", "index.docker.io"):
            host = "registry-1.docker.io"
        from nsprim.images.registry import check_login  # what `nsprim login` asks

        try:
            await asyncio.to_thread(check_login, host, user, pw)
        except OSError as e:
            msg = " ".join(str(e).split())
            raise ApiError(401 if "unauthorized" in msg or "401" in msg else 500,
                           f"login attempt to {host} failed: {msg}") from None
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    # ---------------------------------------------------------------- images
    async def images(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.images.store import default_store

        imgs = await asyncio.to_thread(lambda: default_store().images())
        rows = [shapes.image_summary(i) for i in imgs]
        filters = req.qjson("filters") or {}
        refs = _filter_values(filters.get("reference")) if isinstance(filters, dict) else []
        if refs:
            import fnmatch

            rows = [r for r in rows if any(fnmatch.fnmatch(t, p) or
                                           fnmatch.fnmatch(t.rsplit(":", 1)[0], p)
                                           for t in r["RepoTags"] for p in refs)]
        if not req.qbool("all"):
            rows = [r for r in rows if r["RepoTags"] or r["RepoDigests"]] or rows
        return json_response(rows)

    def _image(self, name: str) -> Any:
        from nsprim.images.store import ImageNotFound, default_store

        try:
            return default_store().get(name)
        except ImageNotFound:
            raise ApiError(404, f"No such image: {name}") from None

    async def image_inspect(self, req: Request, m: re.Match[str]) -> Response:
        img = await asyncio.to_thread(self._image, m["name"])
        return json_response(shapes.image_inspect(img))

    async def image_history(self, req: Request, m: re.Match[str]) -> Response:
        img = await asyncio.to_thread(self._image, m["name"])
        hist = img.config.get("history") or []
        out = []
        for i, h in enumerate(reversed(hist)):
            out.append({"Id": img.id if i == 0 else "<missing>", "Created": 0,
                        "CreatedBy": h.get("created_by", ""),
                        "Tags": shapes.familiar(img.names) if i == 0 else None,
                        "Size": 0, "Comment": h.get("comment", "")})
        if not out:
            out = [{"Id": img.id, "Created": 0, "CreatedBy": "", "Tags": None,
                    "Size": img.size, "Comment": ""}]
        return json_response(out)

    async def image_tag(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.errors import ConfigError
        from nsprim.images.reference import parse_reference
        from nsprim.images.store import default_store

        repo, tag = req.q("repo") or "", req.q("tag") or "latest"
        if not repo:
            raise ApiError(400, "repository name must have at least one component")
        try:
            ref = parse_reference(f"{repo}:{tag}")
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        img = await asyncio.to_thread(self._image, m["name"])

        def tag_it() -> None:
            store = default_store()
            with store._locked():
                store._tag(str(ref), img.id)

        await asyncio.to_thread(tag_it)
        self.events.emit("image", "tag", img.id, {"name": ref.familiar()})
        return Response(201)

    async def commit(self, req: Request, m: re.Match[str]) -> Response:
        """POST /commit: ``docker commit``; ``changes`` (repeatable) are the
        ``--change`` instructions, applied by the CLI's code."""
        from nsprim.cli.commit import commit
        from nsprim.daemon.containers import _find
        from nsprim.errors import ConfigError
        from nsprim.images.reference import parse_reference

        repo, tag = req.q("repo") or "", req.q("tag") or ""
        if tag and not repo:
            raise ApiError(400, "invalid reference: tag without a repository")
        ref = None
        if repo:
            try:
                ref = str(parse_reference(f"{repo}:{tag or 'latest'}"))
            except ConfigError as e:
                raise ApiError(400, str(e)) from None
        rec = _find(req.q("container") or "")
        changes = list(req.query.get("changes") or [])
        await self.containers.settle()
        try:
            img = await asyncio.to_thread(
                commit, rec, ref, req.q("author") or "", req.q("comment") or "",
                req.qbool("pause", True), changes)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except (LookupError, OSError) as e:
            raise ApiError(500, str(e)) from None
        self.events.emit("container", "commit", rec.id, {"comment": req.q("comment") or ""})
        return json_response({"Id": img.id}, 201)

    async def image_delete(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.images.store import ImageInUse, default_store

        force = req.qbool("force")
        await asyncio.to_thread(self._image, m["name"])  # 404 for a missing one
        await self.containers.settle()
        try:
            removed = await asyncio.to_thread(default_store().remove, m["name"], force=force)
        except ImageInUse as e:
            raise ApiError(409, str(e)) from None
        out = []
        for line in removed:
            kind, _, what = line.partition(": ")
            out.append({kind: what})  # the store wrote the untag / delete events
        return json_response(out)

    async def image_load(self, req: Request, m: re.Match[str]) -> Response:
        """docker load: a ``docker save`` archive or an OCI layout tar in the
        body, read by the store's confined loader (TarGuard, bounds); a bad
        or hostile archive is a 400 and adds nothing."""
        from nsprim.images.store import default_store

        f = req.body_file

        def load() -> list[Any]:
            return list(default_store().load(f"/proc/self/fd/{f.fileno()}"))

        try:
            imgs = await asyncio.to_thread(load)
        except (OSError, ValueError) as e:
            raise ApiError(400, f"invalid image archive: {' '.join(str(e).split())}") from None
        lines = []
        for img in imgs:
            names = shapes.familiar(img.names)
            for n in names or [img.id]:
                what = f"Loaded image: {n}" if names else f"Loaded image ID: {n}"
                lines.append(json.dumps({"stream": what + "\n"}))  # the store: "load"
        return Response(200, ("\n".join(lines) + "\n").encode())

    async def image_push(self, req: Request, m: re.Match[str]) -> StreamResponse:
        """docker push (nsprim.images.push; credentials from the daemon's
        docker config), streamed as docker's status lines and an aux digest."""
        from nsprim.errors import ConfigError
        from nsprim.images.reference import parse_reference

        tag = req.q("tag") or ""
        name = m["name"] + (f":{tag}" if tag else "")
        try:
            ref = parse_reference(name)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        await asyncio.to_thread(self._image, name)  # 404 before the stream starts
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def work() -> None:
            from nsprim.images.push import push

            def progress(line: str) -> None:
                loop.call_soon_threadsafe(q.put_nowait, {"status": line.rstrip("\n")})

            try:
                digest = push(str(ref), progress=progress)
                for line in ({"status": f"{ref.tag or 'latest'}: digest: {digest}"},
                             {"aux": {"Tag": ref.tag or "latest", "Digest": digest}}):
                    loop.call_soon_threadsafe(q.put_nowait, line)
            except Exception as e:  # noqa: BLE001 - any failure ends the stream with it
                msg = " ".join(str(e).split()) or type(e).__name__
                loop.call_soon_threadsafe(q.put_nowait, {"errorDetail": {"message": msg},
                                                         "error": msg})
            finally:
                loop.call_soon_threadsafe(q.put_nowait, None)

        task = loop.run_in_executor(None, work)

        async def body() -> Any:
            yield json.dumps({"status": f"The push refers to repository "
                                       f"[{ref.familiar().rsplit(':', 1)[0]}]"}).encode() + b"\n"
            while True:
                item = await q.get()
                if item is None:
                    break
                yield json.dumps(item).encode() + b"\n"
            await task

        return StreamResponse(body())

    async def image_save(self, req: Request, m: re.Match[str]) -> StreamResponse:
        """docker save: a docker save archive of the images named (written
        to a private temporary file first, then sent)."""
        names = [m["name"]] if m.re.groupindex.get("name") else req.query.get("names", [])
        if not names:
            raise ApiError(400, "no image names given")
        for n in names:
            await asyncio.to_thread(self._image, n)
        from nsprim.daemon.server import _spool_file

        f = _spool_file()

        def work() -> None:
            from nsprim.images.archive import save

            save(names, f)
            f.flush()
            f.seek(0)

        try:
            await asyncio.to_thread(work)
        except (OSError, ValueError) as e:
            f.close()
            raise ApiError(500, " ".join(str(e).split())) from None

        async def body() -> Any:
            try:
                while True:
                    chunk = await asyncio.to_thread(f.read, 1 << 20)
                    if not chunk:
                        break
                    yield chunk
            finally:
                f.close()

        return StreamResponse(body(), content_type="application/x-tar")

    async def image_prune(self, req: Request, m: re.Match[str]) -> Response:
        return json_response({"ImagesDeleted": None, "SpaceReclaimed": 0})

    async def image_pull(self, req: Request, m: re.Match[str]) -> StreamResponse:
        from nsprim.errors import ConfigError
        from nsprim.images.reference import parse_reference

        if req.q("fromSrc"):
            raise ApiError(501, "image import (fromSrc) is not implemented by nsprim")
        src = req.q("fromImage") or ""
        tag = req.q("tag") or ""
        if not src:
            raise ApiError(400, "fromImage is required")
        name = src
        if tag:
            name = f"{src}@{tag}" if tag.startswith("sha256:") else f"{src}:{tag}"
        try:
            ref = parse_reference(name)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        auth = req.headers.get("x-registry-auth")
        if auth:
            _check_auth(auth)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def progress(layer: str, status: str) -> None:
            loop.call_soon_threadsafe(q.put_nowait, {"status": status, "id": layer})

        def pull() -> None:
            from nsprim.images.store import default_store

            try:
                img = default_store().pull(str(ref), progress=progress)
                digest = next((d.partition("@")[2] for d in img.repo_digests), "")
                for line in ([{"status": f"Digest: {digest}"}] if digest else []) + \
                        [{"status": f"Status: Downloaded newer image for {ref.familiar()}"}]:
                    loop.call_soon_threadsafe(q.put_nowait, line)  # the store: "pull"
            except Exception as e:  # noqa: BLE001 - any failure ends the stream with it
                msg = " ".join(str(e).split()) or type(e).__name__
                loop.call_soon_threadsafe(q.put_nowait, {"errorDetail": {"message": msg},
                                                         "error": msg})
            finally:
                loop.call_soon_threadsafe(q.put_nowait, None)

        task = loop.run_in_executor(None, pull)
        tag_shown = ref.tag or "latest"

        async def body() -> Any:
            yield json.dumps({"status": f"Pulling from {ref.familiar().rsplit(':', 1)[0]}",
                              "id": tag_shown}).encode() + b"\n"
            while True:
                item = await q.get()
                if item is None:
                    break
                yield json.dumps(item).encode() + b"\n"
            await task

        return StreamResponse(body())

    # --------------------------------------------------------------- volumes
    async def volumes(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.volumes import list_volumes

        vols = await asyncio.to_thread(list_volumes)
        return json_response({"Volumes": [v.to_json() for v in vols], "Warnings": None})

    async def volume_create(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.errors import ConfigError
        from nsprim.volumes import create

        body = req.json(optional=True) or {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid volume create body: expected a JSON object")
        name = body.get("Name") or os.urandom(32).hex()
        driver = body.get("Driver") or "local"
        if not isinstance(name, str) or not isinstance(driver, str):
            raise ApiError(400, "invalid volume create body: Name and Driver are strings")
        if driver != "local":
            raise ApiError(400, f"volume driver {driver!r} is not supported by nsprim "
                           "(local is)")
        if body.get("DriverOpts"):
            raise ApiError(400, "volume DriverOpts are not supported by nsprim")
        try:
            info, _ = await asyncio.to_thread(create, name)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        return json_response(info.to_json(), 201)

    def _volume(self, name: str) -> Any:
        from nsprim.errors import ConfigError
        from nsprim.volumes import get

        try:
            return get(name)
        except (LookupError, ConfigError):
            raise ApiError(404, f"get {name}: no such volume") from None

    async def volume_inspect(self, req: Request, m: re.Match[str]) -> Response:
        info = await asyncio.to_thread(self._volume, m["name"])
        return json_response(info.to_json())

    async def volume_delete(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.volumes import remove

        self._volume(m["name"])
        await self.containers.settle()
        try:
            await asyncio.to_thread(remove, m["name"])
        except OSError as e:
            raise ApiError(409, f"remove {m['name']}: volume is in use - "
                           f"{' '.join(str(e.strerror).split())}") from None
        return Response(204)

    async def volume_prune(self, req: Request, m: re.Match[str]) -> Response:
        await self.containers.settle()

        def work() -> list[str]:
            from nsprim.volumes import list_volumes, remove

            out = []
            used = _volumes_of_containers()
            for v in list_volumes():
                if v.name in used:
                    continue
                try:
                    remove(v.name)
                    out.append(v.name)
                except OSError:
                    pass
            return out

        gone = await asyncio.to_thread(work)
        return json_response({"VolumesDeleted": gone or None, "SpaceReclaimed": 0})

    # -------------------------------------------------------------- networks
    # the built-in three and the user-defined networks (nsprim.network.user)
    async def networks(self, req: Request, m: re.Match[str]) -> Response:
        filters = req.qjson("filters") or {}
        if not isinstance(filters, dict):
            raise ApiError(400, "invalid filters")

        def work() -> list[dict[str, Any]]:
            from nsprim.cli.listing import label_match
            from nsprim.dockerfmt import load

            items = load.containers()
            out = []
            for name in load.network_names():
                n = load.inspect_network(name, items)
                names = _filter_values(filters.get("name"))
                if names and not any(v in n["Name"] for v in names):
                    continue
                ids = _filter_values(filters.get("id"))
                if ids and not any(n["Id"].startswith(v) for v in ids):
                    continue
                labels = _filter_values(filters.get("label"))
                if labels and not label_match(n["Labels"], labels):
                    continue
                out.append(n)
            return out

        return json_response(await asyncio.to_thread(work))

    async def network_inspect(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.dockerfmt.load import inspect_network

        try:
            return json_response(await asyncio.to_thread(inspect_network, m["name"]))
        except LookupError:
            raise ApiError(404, f"network {m['name']} not found") from None

    async def network_create(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.network import user

        body = req.json(optional=True) or {}
        if not isinstance(body, dict) or not isinstance(body.get("Name"), str):
            raise ApiError(400, "invalid network create body: a JSON object with a Name")
        ipam = body.get("IPAM") or {}
        configs = ipam.get("Config") if isinstance(ipam, dict) else None
        subnets: list[str] = []
        gateway = None
        for c in configs or []:
            if isinstance(c, dict) and isinstance(c.get("Subnet"), str):
                subnets.append(c["Subnet"])
                if isinstance(c.get("Gateway"), str) and ":" not in c["Gateway"]:
                    gateway = c["Gateway"]
        labels = body.get("Labels") or {}
        options = body.get("Options") or {}
        if not isinstance(labels, dict) or not isinstance(options, dict):
            raise ApiError(400, "invalid network create body: Labels and Options are objects")
        try:
            n = await asyncio.to_thread(
                user.create, body["Name"], subnet=subnets, gateway=gateway,
                ipv6=bool(body.get("EnableIPv6")), internal=bool(body.get("Internal")),
                labels={str(k): str(v) for k, v in labels.items()},
                options={str(k): str(v) for k, v in options.items()},
                driver=str(body.get("Driver") or "bridge"))
        except user.NetworkError as e:
            status = 409 if "already exists" in str(e) else 400
            raise ApiError(status, str(e)) from None
        return json_response({"Id": n.id, "Warning": ""}, 201)

    async def network_delete(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.network import user

        if m["name"] in ("bridge", "host", "none"):
            raise ApiError(403, f"{m['name']} is a pre-defined network and cannot be removed")
        await self.containers.settle()
        try:
            await asyncio.to_thread(user.remove, m["name"])
        except user.NetworkNotFound:
            raise ApiError(404, f"network {m['name']} not found") from None
        except user.NetworkError as e:
            raise ApiError(403, str(e)) from None
        return Response(204)

    async def network_prune(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.network import user

        await self.containers.settle()
        gone = await asyncio.to_thread(user.prune)
        return json_response({"NetworksDeleted": gone or None})

    async def network_connect(self, req: Request, m: re.Match[str]) -> Response:
        from nsprim.lifecycle import find
        from nsprim.network import user

        body = req.json(optional=True) or {}
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise ApiError(400, "invalid body: a JSON object with a Container")
        cfg = body.get("EndpointConfig") or {}
        aliases = [str(a) for a in (cfg.get("Aliases") or [])] if isinstance(cfg, dict) else []
        ipam = (cfg.get("IPAMConfig") or {}) if isinstance(cfg, dict) else {}
        disconnect = req.path.rstrip("/").endswith("/disconnect")

        def work() -> None:
            net = user.get(m["name"])
            rec = find(body["Container"])
            if not rec.running:
                # a created container (docker-compose v1 disconnects and
                # connects it again with its aliases): its spec's network
                cfg = rec.config
                on = cfg.get("network") in (net.name, net.id)
                if disconnect:
                    if not on:  # one of its other networks (or none: the error)
                        user.disconnect(net.id, rec.id)
                        return
                    cfg.update(network="none", network_aliases=[], ip=None, ip6=None)
                elif on or cfg.get("network") == "none":
                    cfg.update(network=net.name, network_aliases=list(dict.fromkeys(
                        list(cfg.get("network_aliases") or []) + aliases)),
                        ip=ipam.get("IPv4Address") or cfg.get("ip"),
                        ip6=ipam.get("IPv6Address") or cfg.get("ip6"))
                else:  # one more network, attached as eth1... when it starts
                    user.connect(net.id, rec.id, aliases=aliases,
                                 ip=ipam.get("IPv4Address") or None,
                                 ip6=ipam.get("IPv6Address") or None)
                    return
                rec.write_config(cfg)
                return
            if disconnect:
                user.disconnect(net.id, rec.id)
            else:
                user.connect(net.id, rec.id, aliases=aliases,
                             ip=ipam.get("IPv4Address") or None,
                             ip6=ipam.get("IPv6Address") or None)

        try:
            await asyncio.to_thread(work)
        except user.NetworkNotFound:
            raise ApiError(404, f"network {m['name']} not found") from None
        except LookupError as e:
            raise ApiError(404, str(e.args[0] if e.args else e)) from None
        except (user.NetworkError, OSError) as e:
            raise ApiError(400 if isinstance(e, user.NetworkError) else 500, str(e)) from None
        return Response(200)


def _volumes_of_containers() -> set[str]:
    from nsprim.lifecycle import records

    out = set()
    for rec in records():
        for v in rec.config.get("volumes") or []:
            src = v.split(":")[0]
            if not src.startswith("/"):
                out.add(src)
    return out


def _filter_values(v: Any) -> list[str]:
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, list):
        return [str(x) for x in v]
    return []


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _check_auth(header: str) -> None:
    """X-Registry-Auth: base64url JSON; refused clearly when malformed."""
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        data = json.loads(raw) if raw.strip() else {}
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid X-Registry-Auth header: not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid X-Registry-Auth header: not a JSON object")


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _daemon_id() -> str:
    from nsprim.state import root_id

    return str(root_id())
