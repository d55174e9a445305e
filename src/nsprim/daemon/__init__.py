"""``nsprim daemon``: the Docker Engine API on a unix socket.

    nsprim daemon [-H unix:///run/nsprim/docker.sock]... [--root DIR] [--group G]
                  [-H tcp://127.0.0.1:2375 --insecure-tcp]
                  [-H tcp://ADDR:PORT --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY]

Runs in the foreground, logs to stderr, stops on SIGTERM/SIGINT.  It keeps
no state of its own: containers, images and volumes are the nsprim CLI's
(the same state root), and containers live in their supervisors, so a
restart (or a ``kill -9``) of the daemon leaves them running.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import sys
from typing import Any

DEFAULT_HOST = "unix:///run/nsprim/docker.sock"

__all__ = ["main", "DEFAULT_HOST"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nsprim daemon", allow_abbrev=False,
                                description="Serve the Docker Engine API.")
    p.add_argument("-H", "--host", action="append", default=[], metavar="ADDR",
                   help=f"unix://PATH or tcp://HOST:PORT (default {DEFAULT_HOST})")
    p.add_argument("--root", metavar="DIR", help="state root (as nsprim --root)")
    p.add_argument("--group", "-G", metavar="GROUP",
                   help="the group that owns the unix socket (mode 0660)")
    p.add_argument("--insecure-tcp", action="store_true",
                   help="allow plain TCP, on a loopback address only")
    p.add_argument("--tlsverify", action="store_true", help="TLS, client certificates required")
    p.add_argument("--tlscacert", metavar="FILE")
    p.add_argument("--tlscert", metavar="FILE")
    p.add_argument("--tlskey", metavar="FILE")
    p.add_argument("--debug", "-D", action="store_true", help="log every request")
    return p


class UsageError(Exception):
    pass


def _group_id(group: str | None) -> int:
    if group is None:
        return 0
    import grp

    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"unknown group {group!r}") from None


def _tcp(addr: str, a: argparse.Namespace) -> tuple[str, int, Any]:
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid -H tcp://{addr}: expected tcp://HOST:PORT")
    try:
        ip = ipaddress.ip_address(host or "0.0.0.0")
    except ValueError:
        raise UsageError(f"invalid -H tcp://{addr}: the host must be an IP address") from None
    if a.tlsverify:
        import ssl

        if not (a.tlscacert and a.tlscert and a.tlskey):
            raise UsageError("--tlsverify needs --tlscacert, --tlscert and --tlskey")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=a.tlscacert)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(a.tlscert, a.tlskey)
        return str(ip), int(port), ctx
    if not a.insecure_tcp:
        raise UsageError(f"refusing to listen on tcp://{addr} without TLS client "
                         "verification (--tlsverify ...); plain TCP is allowed on loopback "
                         "with --insecure-tcp")
    if not ip.is_loopback:
        raise UsageError(f"refusing plain TCP on {host}: --insecure-tcp is for loopback "
                         "addresses only")
    return str(ip), int(port), None


def _unix_socket(path: str, gid: int) -> socket.socket:
    """A listening socket at `path`, 0660 root:gid from the start (umask), a
    stale socket (no one listening) replaced, a live one refused."""
    if os.path.exists(path) or os.path.islink(path):
        import stat

        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(path)
            raise UsageError(f"{path}: another daemon is listening there")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, 0o755, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    s.listen(512)
    s.setblocking(False)
    return s


async def _serve(a: argparse.Namespace, hosts: list[str]) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from nsprim.daemon.api import Daemon
    from nsprim.daemon.server import Server

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64,
                                                 thread_name_prefix="nsprim-daemon"))
    daemon = Daemon()
    if not os.environ.get("NSPRIM_DAEMON_NO_ZYGOTE"):
        from nsprim.daemon.zygote import Zygote

        daemon.zygote = Zygote()
    server = Server(daemon.router, debug=a.debug)
    gid = _group_id(a.group)
    listeners: list[asyncio.base_events.Server] = []
    paths: list[str] = []
    try:
        for h in hosts:
            if h.startswith("unix://"):
                path = h[len("unix://"):]
                sock = _unix_socket(path, gid)
                paths.append(path)
                listeners.append(await asyncio.start_unix_server(server.handle, sock=sock,
                                                                 limit=1 << 20))
            elif h.startswith("tcp://"):
                host, port, ctx = _tcp(h[len("tcp://"):], a)
                listeners.append(await asyncio.start_server(server.handle, host, port, ssl=ctx,
                                                            limit=1 << 20))
            else:
                raise UsageError(f"invalid -H {h!r}: unix://PATH or tcp://HOST:PORT")
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # nothing to reload
        server.log(f"API {hosts} (api {_api()}), state root {_root()}; pid {os.getpid()}")
        await stop.wait()
        server.log("stopping (containers keep running)")
    finally:
        for lst in listeners:
            lst.close()
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
        await server.close_connections()
        if daemon.zygote is not None:
            daemon.zygote.close()
    return 0


def _api() -> str:
    from nsprim.daemon.server import API_VERSION

    return API_VERSION


def _root() -> str:
    from nsprim.state import state_root

    return state_root()


def main(argv: list[str], root: str | None = None) -> int:
    p = _parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 125
    if os.geteuid() != 0:
        print("nsprim daemon: needs root", file=sys.stderr)
        return 125
    chosen: str | None = a.root or root
    if chosen:
        from nsprim.state import use_root

        use_root(chosen)
    try:
        from nsprim.lifecycle import collect

        collect()  # what a killed supervisor left
        from nsprim.daemon.containers import collect_removals

        collect_removals()
        try:
            return asyncio.run(_serve(a, a.host or [DEFAULT_HOST]))
        finally:
            from nsprim.daemon.containers import finish_removals

            finish_removals()
    except UsageError as e:
        print(f"nsprim daemon: {e}", file=sys.stderr)
        return 125
    except OSError as e:
        print(f"nsprim daemon: {e}", file=sys.stderr)
        return 125
