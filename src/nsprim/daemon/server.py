"""The daemon's HTTP/1.1 server: h11 on asyncio streams.

Why h11: the Docker API needs three things of its server -- plain
request/response, streamed (chunked) responses that last as long as a
container (logs -f, events, pull progress), and *connection hijacking*
(attach and exec answer ``101 UPGRADED`` and then the socket is a raw
byte stream both ways).  h11 is a sans-I/O HTTP/1.1 state machine (python-
hyper, well kept, no dependencies, ~5 ms to import): it parses and frames,
we own the socket, so hijacking is handing the asyncio streams to the
handler (h11 tells us the bytes it had already read).  aiohttp and the
ASGI servers can do streaming, but their upgrade paths are built for
WebSocket and they cost 100+ ms to import on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
#: the largest JSON body accepted (docker's create bodies are a few KiB)
MAX_JSON_BODY = 4 << 20
#: the largest request head
MAX_HEAD = 64 << 10
_VERSIONED = re.compile(r"^/v([0-9]{1,3}\.[0-9]{1,3})(/.*)$")


class ApiError(Exception):
    """An error answered as docker's ``{"message": ...}`` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ver(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    version: str = API_VERSION
    #: a spooled route's body: an open temporary file (deleted), at its start
    body_file: Any = None

    def q(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else default

    def qbool(self, name: str, default: bool = False) -> bool:
        v = self.q(name)
        if v is None:
            return default
        if v.lower() in ("1", "true", "yes"):
            return True
        if v.lower() in ("", "0", "false", "no"):
            return False
        raise ApiError(400, f"invalid boolean value for {name!r}: {v!r}")

    def qint(self, name: str, default: int | None = None) -> int | None:
        v = self.q(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise ApiError(400, f"invalid value for {name!r}: {v!r} is not an integer") from None

    def json(self, *, optional: bool = False) -> Any:
        if not self.body.strip():
            if optional:
                return None
            raise ApiError(400, "bad parameter: the request body is empty")
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"invalid JSON body: {' '.join(str(e).split())}") from None

    def qjson(self, name: str) -> Any:
        v = self.q(name)
        if not v:
            return None
        try:
            return json.loads(v)
        except (ValueError, RecursionError):
            raise ApiError(400, f"invalid JSON in query parameter {name!r}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode() + b"\n")


@dataclass
class StreamResponse:
    """A chunked response whose body `chunks` produces as it comes."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Hijacked = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass
class Hijack:
    """The connection becomes a raw stream: `run(reader, writer, already
    read bytes)` owns it until it returns."""

    run: Hijacked
    content_type: str = "application/vnd.docker.raw-stream"


Handler = Callable[[Request, "re.Match[str]"], Awaitable[Response | StreamResponse | Hijack]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    max_body: int = MAX_JSON_BODY
    #: a body to be streamed to a file rather than kept in memory
    spool: bool = False


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, max_body: int = MAX_JSON_BODY,
            spool: bool = False) -> None:
        self.routes.append(Route(method, re.compile("^" + pattern + "$"), handler, max_body,
                                 spool))

    def match(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        allowed = False
        for r in self.routes:
            m = r.pattern.match(path)
            if m is None:
                continue
            if r.method == method or (method == "HEAD" and r.method == "GET"):
                return r, m
            allowed = True
        if allowed:
            raise ApiError(405, f"method {method} not allowed on {path}")
        raise ApiError(404, f"page not found: {path}")


def _spool_file() -> Any:
    """A temporary file for a streamed body, under the state root (private,
    on the store's filesystem), deleted from the start."""
    import os
    import tempfile

    from nsprim.state import private_dir, state_root

    d = private_dir(os.path.join(state_root(), "tmp-api"))
    return tempfile.TemporaryFile(dir=d)


def base_headers() -> list[tuple[str, str]]:
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
            ("Ostype", "linux"), ("Server", "nsprim")]


def _error_body(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class Server:
    """Serves `router` on the given listeners until stop() is called."""

    def __init__(self, router: Router, *, debug: bool = False) -> None:
        self.router = router
        self.debug = debug
        self._conns: set[asyncio.Task[Any]] = set()

    def log(self, msg: str) -> None:
        print(f"nsprim daemon: {msg}", file=sys.stderr, flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, h11.RemoteProtocolError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the socket may be gone already
                pass

    async def close_connections(self) -> None:
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2)

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            ev = conn.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            data = await reader.read(65536)
            conn.receive_data(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            try:
                ev = await self._next_event(conn, reader)
            except h11.RemoteProtocolError as e:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, _error_body(
                        e.error_status_hint, f"bad request: {e}"), close=True)
                return
            if isinstance(ev, h11.ConnectionClosed) or not isinstance(ev, h11.Request):
                return
            result, close = await self._respond(conn, reader, ev)
            if isinstance(result, Hijack):
                await self._hijack(conn, reader, writer, ev, result)
                return
            if isinstance(result, StreamResponse):
                await self._stream(conn, writer, result)
            else:
                await self._send(conn, writer, result, close=close)
            if close or conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_body(self, conn: h11.Connection, reader: asyncio.StreamReader,
                         limit: int, spool: Any = None) -> bytes:
        """The body (at most `limit` bytes), or written to the file `spool`."""
        parts: list[bytes] = []
        size = 0
        while True:
            ev = await self._next_event(conn, reader)
            if isinstance(ev, h11.Data):
                size += len(ev.data)
                if size > limit:
                    raise ApiError(413, f"request body too large: more than {limit} bytes")
                if spool is not None:
                    spool.write(ev.data)
                else:
                    parts.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                if spool is not None:
                    spool.flush()
                    spool.seek(0)
                return b"".join(parts)
            else:
                raise ApiError(400, "bad request: the body ended early")

    async def _respond(self, conn: h11.Connection, reader: asyncio.StreamReader,
                       ev: h11.Request) -> tuple[Response | StreamResponse | Hijack, bool]:
        method = ev.method.decode("ascii", "replace")
        target = ev.target.decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}
        close = False
        try:
            url = urlsplit(target)
            path = unquote(url.path)
            version = API_VERSION
            m = _VERSIONED.match(path)
            if m:
                version, path = m.group(1), m.group(2)
                if _ver(version) < _ver(MIN_API_VERSION):
                    raise ApiError(400, f"client version {version} is too old. Minimum "
                                   f"supported API version is {MIN_API_VERSION}, please "
                                   "upgrade your client to a newer version")
                if _ver(version) > _ver(API_VERSION):
                    raise ApiError(400, f"client version {version} is too new. Maximum "
                                   f"supported API version is {API_VERSION}")
            route, match = self.router.match(method, path)
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > route.max_body:
                close = True  # the body is not read: the connection cannot be reused
                raise ApiError(413, f"request body too large: {declared} bytes, the limit "
                               f"is {route.max_body}")
            spool = _spool_file() if route.spool else None
            try:
                try:
                    body = await self._read_body(conn, reader, route.max_body, spool)
                except ApiError:
                    close = True
                    raise
                req = Request(method, path, parse_qs(url.query, keep_blank_values=True),
                              headers, body, version, spool)
                t = time.perf_counter()
                result = await route.handler(req, match)
            finally:
                if spool is not None:
                    spool.close()
            if self.debug:
                self.log(f"{method} {target} -> {getattr(result, 'status', 101)} "
                         f"({(time.perf_counter() - t) * 1000:.1f} ms)")
            return result, close
        except ApiError as e:
            if self.debug or e.status >= 500:
                self.log(f"{method} {target} -> {e.status} {e.message}")
            return _error_body(e.status, e.message), close
        except Exception as e:  # noqa: BLE001 - one request's bug is a 500, not a crash
            self.log(f"{method} {target} -> 500: {''.join(traceback.format_exception(e))}")
            return _error_body(500, " ".join(str(e).split()) or type(e).__name__), close

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, r: Response,
                    *, close: bool = False) -> None:
        headers = base_headers() + [("Content-Type", r.content_type),
                                    ("Content-Length", str(len(r.body)))] + r.headers
        if close:
            headers.append(("Connection", "close"))
        data = conn.send(h11.Response(status_code=r.status, headers=headers))
        if r.body and conn.their_state is not h11.ERROR:
            data = (data or b"") + (conn.send(h11.Data(data=r.body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        writer.write(data)
        await writer.drain()

    async def _stream(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                      r: StreamResponse) -> None:
        headers = base_headers() + [("Content-Type", r.content_type)] + r.headers
        writer.write(conn.send(h11.Response(status_code=r.status, headers=headers)) or b"")
        await writer.drain()
        try:
            async for chunk in r.chunks:
                if chunk:
                    writer.write(conn.send(h11.Data(data=chunk)) or b"")
                    await writer.drain()
        finally:
            aclose = getattr(r.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    async def _hijack(self, conn: h11.Connection, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, ev: h11.Request, h: Hijack) -> None:
        upgrade = conn.their_state is h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]
        if upgrade:
            head = conn.send(h11.InformationalResponse(
                status_code=101, reason=b"UPGRADED",
                headers=[("Content-Type", h.content_type), ("Connection", "Upgrade"),
                         ("Upgrade", "tcp")] + base_headers()))
            writer.write(head or b"")
        else:  # docker's answer to an old client: 200, then the raw stream
            head_lines = ["HTTP/1.1 200 OK", f"Content-Type: {h.content_type}"] + \
                [f"{k}: {v}" for k, v in base_headers()]
            writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        await writer.drain()
        trailing = conn.trailing_data[0]
        await h.run(reader, writer, bytes(trailing))
