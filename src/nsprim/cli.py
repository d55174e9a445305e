"""The `nsprim` command: docker-like commands, flags and exit codes.

Exit codes follow docker: the command's own; 125 when nsprim itself fails
(bad flags, setup errors); 126 when the command cannot be executed; 127 when
it is not found; 128+N when it was killed by signal N.  Errors are one line on
stderr.  Heavy imports happen inside the commands, so that ``nsprim --version``
starts fast.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_NSPRIM = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


class UsageError(Exception):
    pass


class _Interrupted(BaseException):
    """A signal that came before the container ran: it is nsprim's own."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _fail(msg: str, code: int = EXIT_NSPRIM) -> int:
    print(f"nsprim: {msg}", file=sys.stderr)
    return code


_INT = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", re.ASCII)


def _int_arg(what: str) -> Any:
    def conv(v: str) -> int:
        if not _INT.fullmatch(v):  # int() also takes " 1", "1_0" and other scripts' digits
            raise argparse.ArgumentTypeError(f"invalid {what} {v!r}: expected an integer")
        return int(v)
    return conv


def _seconds_arg(v: str) -> float:
    if not _SECONDS.fullmatch(v):
        raise argparse.ArgumentTypeError(f"invalid time {v!r}: expected seconds, e.g. 10")
    return float(v)


def _collect_leftovers() -> None:
    """Remove what killed nsprim processes left behind (cgroups, overlays)."""
    from nsprim.cgroup import Cgroup
    from nsprim.lifecycle import collect as collect_containers
    from nsprim.network import bridge
    from nsprim.rootfs import OverlayRootfs

    for collect in (collect_containers, OverlayRootfs.collect, bridge.collect, Cgroup.collect):
        try:
            collect()
        except OSError:
            pass


def _collect_image_tmp() -> None:
    """What a killed pull or load left in images/tmp goes with the next
    command of any kind; one listdir when there is nothing."""
    from nsprim.state import state_root

    try:
        if not os.listdir(os.path.join(state_root(), "images", "tmp")):
            return
    except OSError:
        return
    from nsprim.images.store import default_store

    try:
        default_store()  # opening the store collects tmp/ (pulls still running stay)
    except OSError:
        pass


def _oneline(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)
    return " ".join(text.split())


class _Null:
    """Stands for the parser of a subcommand that was not chosen: building
    every subcommand's arguments costs more than the container work."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: self


class _OnlyOne:
    """add_subparsers' result, building only the chosen subcommand."""

    def __init__(self, sub: Any, only: str) -> None:
        self._sub, self._only = sub, only

    def add_parser(self, name: str, **kw: Any) -> Any:
        return self._sub.add_parser(name, **kw) if name == self._only else _Null()


_COMMANDS = frozenset({"run", "ps", "logs", "stop", "start", "restart", "wait", "kill", "rm",
                       "exec", "pull", "load", "images", "rmi", "volume", "inspect"})


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand of `argv`, if plain to see (else the whole parser is built)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--root":
            i += 2
        elif a.startswith("--root="):
            i += 1
        else:
            return a if a in _COMMANDS else None
    return None


def _build_parser(only: str | None = None) -> _Parser:
    p = _Parser(prog="nsprim", description="Container primitives: run commands in containers.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--root", metavar="DIR", help="state root (default /var/lib/nsprim; "
                   "NSPRIM_ROOT)")
    sub: Any = p.add_subparsers(dest="command", parser_class=_Parser)
    if only is not None:
        sub = _OnlyOne(sub, only)
    r = sub.add_parser("run", help="run a command in a new container", add_help=False,
                       description="Run a command in a new container.")
    r.add_argument("--help", action="help", help="show this help message and exit")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-d", "--detach", action="store_true", help="run in the background, print "
                   "the container id")
    r.add_argument("--name", help="the container's name")
    r.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    r.add_argument("--restart", default="no",
                   help="restart policy: no, always, unless-stopped, on-failure[:N]")
    r.add_argument("--stop-signal", metavar="SIGNAL",
                   help="signal to stop the container (default: the image's STOPSIGNAL, "
                   "else SIGTERM)")
    r.add_argument("--stop-timeout", type=_int_arg("stop-timeout"), metavar="SECONDS",
                   help="seconds to wait on stop before SIGKILL (default 10)")
    r.add_argument("--init", action="store_true",
                   help="run a minimal init as PID 1: forwards signals, reaps zombies")
    r.add_argument("--rootfs", metavar="DIR",
                   help="root filesystem directory (instead of an IMAGE)")
    r.add_argument("--entrypoint", metavar="CMD", help="override the image's ENTRYPOINT")
    r.add_argument("--hostname", "-h", dest="hostname", metavar="NAME")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("-w", "--workdir", metavar="DIR")
    r.add_argument("-u", "--user", metavar="UID[:GID]")
    r.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    r.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    r.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    r.add_argument("--read-only", action="store_true", help="mount the rootfs read-only")
    r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    r.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    r.add_argument("--network", "--net", default="bridge", metavar="MODE",
                   help="bridge (default), none, host or container:NAME")
    r.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:]HOSTPORT:PORT[/PROTO]", help="publish a container port")
    r.add_argument("-P", "--publish-all", action="store_true",
                   help="publish the image's exposed ports on free host ports")
    r.add_argument("--network-bandwidth", metavar="RATE",
                   help="shape the container's traffic, e.g. 100mbit")
    r.add_argument("--userns-map", metavar="HOSTUID[:SIZE]",
                   help="new user namespace: container uid 0 is HOSTUID")
    r.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json")
    r.add_argument("--privileged", action="store_true",
                   help="every capability and host device, no seccomp, no masked paths")
    r.add_argument("--device", action="append", default=[],
                   metavar="HOST[:CONTAINER[:rwm]]", help="add a host device")
    g = r.add_argument_group("resources (a cgroup of the container's own)")
    g.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, e.g. 256m")
    g.add_argument("--memory-swap", metavar="SIZE", help="memory + swap limit; -1 unlimited")
    g.add_argument("--cpus", metavar="N", help="CPUs, e.g. 0.5")
    g.add_argument("--cpu-shares", type=_int_arg("cpu-shares"), metavar="N",
                   help="relative weight (v1 shares)")
    g.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs to run on, e.g. 0-1")
    g.add_argument("--cpuset-mems", metavar="LIST", help="memory nodes, e.g. 0")
    g.add_argument("--pids-limit", type=_int_arg("pids-limit"), metavar="N",
                   help="process limit (0 or -1: unlimited)")
    g.add_argument("--device-read-bps", action="append", default=[], metavar="DEV:RATE")
    g.add_argument("--device-write-bps", action="append", default=[], metavar="DEV:RATE")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="[IMAGE] CMD")

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("--format", choices=["table", "json"], default="table")
    lg = sub.add_parser("logs", help="show a container's output")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("--tail", metavar="N")
    lg.add_argument("container")
    for cname, chelp in (("stop", "stop containers (stop signal, then SIGKILL)"),
                         ("restart", "restart containers")):
        sp = sub.add_parser(cname, help=chelp)
        sp.add_argument("-t", "--time", type=_seconds_arg, default=None, metavar="SECONDS",
                        help="seconds before SIGKILL (default: the container's "
                        "--stop-timeout, else 10)")
        sp.add_argument("containers", nargs="+")
    kl = sub.add_parser("kill", help="signal containers")
    kl.add_argument("-s", "--signal", default="KILL")
    kl.add_argument("containers", nargs="+")
    for cname, chelp in (("start", "start stopped containers"),
                         ("wait", "wait for containers, print their exit codes"),
                         ("inspect", "show containers as JSON")):
        sp = sub.add_parser(cname, help=chelp)
        sp.add_argument("containers", nargs="+")
    rmc = sub.add_parser("rm", help="remove containers")
    rmc.add_argument("-f", "--force", action="store_true")
    rmc.add_argument("containers", nargs="+")
    ex = sub.add_parser("exec", help="run a command in a running container", add_help=False)
    ex.add_argument("--help", action="help")
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-w", "--workdir")
    ex.add_argument("-u", "--user")
    ex.add_argument("container")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)

    pl = sub.add_parser("pull", help="pull an image from a registry")
    pl.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    pl.add_argument("-q", "--quiet", action="store_true")
    ld = sub.add_parser("load", help="load a docker save archive or an OCI layout")
    ld.add_argument("-i", "--input", required=True, metavar="FILE")
    ld.add_argument("-q", "--quiet", action="store_true")
    im = sub.add_parser("images", help="list images")
    im.add_argument("-q", "--quiet", action="store_true")
    im.add_argument("--format", choices=["table", "json"], default="table")
    rm = sub.add_parser("rmi", help="remove images")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    vol = sub.add_parser("volume", help="manage named volumes")
    vs = vol.add_subparsers(dest="volume_command", parser_class=_Parser)
    vc = vs.add_parser("create")
    vc.add_argument("name")
    vl = vs.add_parser("ls")
    vl.add_argument("-q", "--quiet", action="store_true")
    vl.add_argument("--format", choices=["table", "json"], default="table")
    vr = vs.add_parser("rm")
    vr.add_argument("names", nargs="+")
    vi = vs.add_parser("inspect")
    vi.add_argument("names", nargs="+")
    return p


def cmd_run(a: argparse.Namespace) -> int:
    import dataclasses

    from nsprim.errors import ConfigError
    from nsprim.lifecycle import new_record, remove_record
    from nsprim.spec import from_run_flags, to_container, validate

    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    image = None
    if a.rootfs is None:
        if not cmd:
            return _fail("run: requires an IMAGE (or --rootfs DIR)")
        image, cmd = cmd[0], cmd[1:]
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
    elif not cmd:
        return _fail("run: no command given")
    rec = None
    try:
        spec = from_run_flags(a, image, cmd)
        validate(spec)  # every check, before anything is created
        _collect_leftovers()
        if image is not None:
            from nsprim.container import _find_image

            img = _find_image(image)
            # the image's STOPSIGNAL unless --stop-signal (docker's rule)
            spec = dataclasses.replace(spec, image_id=img.id,
                                       stop_signal=spec.stop_signal or img.stop_signal)
            if spec.stop_signal is not None:
                from nsprim.lifecycle import parse_signal

                parse_signal(spec.stop_signal)
        rec = new_record(spec.to_json())
        from nsprim.container import DEVNULL

        c = to_container(rec.spec, die_with_parent=True, tty=a.tty,
                         stdin=None if a.interactive or a.tty else DEVNULL)
    except ConfigError as e:
        if rec is not None:
            remove_record(rec)
        return _fail(str(e))
    except (LookupError, OSError, ValueError) as e:
        if rec is not None:
            remove_record(rec)
        return _fail(_oneline(e))
    if a.detach:
        return _start_detached(rec)
    return _run_foreground(a, rec, c, cmd or [image or ""])


def _start_detached(rec: Any) -> int:
    """Start the supervisor of `rec`; print the id once the container runs."""
    import subprocess

    from nsprim.lifecycle import remove_record

    r, w = os.pipe()
    rec.update_state(status="starting", starting_at=time.time())
    subprocess.Popen([sys.executable, "-m", "nsprim.supervise", "start", rec.id, str(w)],
                     pass_fds=[w], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        answer = f.readline().strip()
    if answer == "ok":
        print(rec.id)
        return 0
    msg = answer[4:] if answer.startswith("err ") else "the supervisor failed to start"
    if rec.config.get("auto_remove"):
        remove_record(rec)
    return _fail(msg)


def _attach(c: Any, argv0: str, tty: bool, interactive: bool,
            started: Any = None, failed: Any = None) -> int:
    """Start `c` in the foreground: forward our signals to it, proxy the
    terminal with `tty`, wait; the exit code in docker's terms.  `started()`
    runs once it runs, `failed()` if it could not start."""
    from nsprim.errors import ConfigError, SpawnError

    def forward(signum: int, _frame: Any) -> None:
        if c.pid is None:
            # nothing runs yet to pass it to: ^C (or a TERM) stops nsprim
            # itself, wherever start() is; it releases what it holds
            if signum != signal.SIGWINCH:
                raise _Interrupted(signum)
            return
        c.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in _FORWARDED
           if not (tty and s == signal.SIGWINCH)}
    try:
        try:
            c.start()
        except _Interrupted as e:
            if failed is not None:
                failed()
            return _fail(f"interrupted by {signal.Signals(e.signum).name} before the "
                         "container started", 128 + e.signum)
        except SpawnError as e:
            if failed is not None:
                failed()
            if e.step == "exec":
                code = EXIT_NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) \
                    else EXIT_CANNOT_EXEC
                return _fail(f"{argv0}: {os.strerror(e.errno or 0)}", code)
            return _fail(str(e.strerror))
        except (ConfigError, OSError, LookupError) as e:
            if failed is not None:
                failed()
            return _fail(_oneline(e))
        if started is not None:
            started()
        if tty:
            from nsprim.terminal import proxy

            proxy(c.pty_master, lambda: c.poll() is not None,
                  stdin=sys.stdin.fileno() if interactive else -1, stdout=sys.stdout.fileno())
        rc = c.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return int(rc if rc >= 0 else 128 - rc)


def _run_foreground(a: argparse.Namespace, rec: Any, c: Any, cmd: list[str]) -> int:
    from nsprim.lifecycle import _proc_start, remove_record

    def failed() -> None:
        rec.update_state(status="exited", exit_code=125, finished_at=time.time())
        if a.rm:
            remove_record(rec)

    ran: list[bool] = []

    def started() -> None:
        ran.append(True)
        me = os.getpid()
        rec.update_state(status="running", pid=c.pid, pid_start=_proc_start(c.pid),
                         supervisor_pid=me, supervisor_start=_proc_start(me),
                         started_at=time.time(), ip=c.ip_address, ports=c.ports)

    code = _attach(c, cmd[0], a.tty, a.interactive, started, failed)
    if not ran:
        return code  # it never ran (failed() has recorded that)
    rec.update_state(status="exited", exit_code=code, finished_at=time.time(),
                     oom_killed=c.oom_killed)
    if a.rm:
        remove_record(rec)
    return code


def _for_each(names: list[str], action: Any) -> int:
    """Run action(record, name) for each container named; errors are one line
    each; the exit status is 1 if any failed (docker's behaviour)."""
    from nsprim.lifecycle import find

    rc = 0
    for name in names:
        try:
            if action(find(name), name) is False:
                rc = 1
        except (LookupError, OSError) as e:
            _fail(_oneline(e))
            rc = 1
    return rc


def _records_arg(names: list[str]) -> list[Any]:
    from nsprim.lifecycle import find

    return [find(n) for n in names]


def _ago(t: float | None) -> str:
    if not t:
        return ""
    d = max(0, time.time() - t)
    for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= secs:
            n = int(d // secs)
            return f"{n} {unit if n > 1 else unit[:-1]}"
    return f"{int(d)} seconds"


def _status_text(rec: Any) -> str:
    st = rec.state
    s = rec.status
    if s == "running":
        return f"Up {_ago(st.get('started_at'))}"
    if s == "restarting":
        return f"Restarting ({st.get('exit_code')})"
    if s == "exited":
        return f"Exited ({st.get('exit_code')}) {_ago(st.get('finished_at'))} ago"
    return str(s).capitalize()


def _ports_text(ports: list[dict[str, Any]] | None) -> str:
    return ", ".join(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/"
                     f"{p['proto']}" for p in ports or [])


def _print_rows(a: argparse.Namespace, rows: list[dict[str, Any]], header: str,
                line: Any) -> None:
    """docker's listing conventions: -q ids, --format json a line each, else a table."""
    import json

    if a.quiet:
        for r in rows:
            print(r["ID"])
    elif a.format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(header)
        for r in rows:
            print(line(r))


def cmd_ps(a: argparse.Namespace) -> int:

    from nsprim.lifecycle import collect, records

    collect()
    rows = []
    for rec in sorted(records(), key=lambda r: -float(r.config.get("created", 0))):
        cfg, st = rec.config, rec.state
        if not a.all and rec.status not in ("running", "restarting"):
            continue
        cmd = " ".join(cfg.get("cmd") or [])
        rows.append({"ID": rec.id[:12], "Image": cfg.get("image") or cfg.get("rootfs") or "",
                     "Command": cmd, "CreatedAt": cfg.get("created"),
                     "Status": _status_text(rec), "State": rec.status,
                     "Ports": _ports_text(st.get("ports") if rec.status == "running" else None),
                     "Names": cfg.get("name", "")})
    def line(r: dict[str, Any]) -> str:
        command = '"' + (r["Command"][:20] + ("…" if len(r["Command"]) > 20 else "")) + '"'
        return (f"{r['ID']:14}{r['Image'][:27]:28}{command:24}{r['Status']:26}"
                f"{r['Ports'][:27]:28}{r['Names']}")

    _print_rows(a, rows,
                f"{'CONTAINER ID':14}{'IMAGE':28}{'COMMAND':24}{'STATUS':26}{'PORTS':28}NAMES",
                line)
    return 0


def cmd_logs(a: argparse.Namespace) -> int:
    import json

    from nsprim.lifecycle import find

    if a.tail not in (None, "all") and not _INT.fullmatch(a.tail):
        return _fail(f"invalid --tail {a.tail!r}: a number of lines, or all")
    try:
        rec = find(a.container)
    except LookupError as e:
        return _fail(_oneline(e))

    def emit(line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return
        text = entry.get("log", "")
        if a.timestamps:
            text = f"{entry.get('time', '')} {text}"
        out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
        out.write(text)
        out.flush()

    try:
        f = open(rec.log_path)
    except FileNotFoundError:
        return 0
    with f:
        lines = f.readlines()
        if a.tail is not None and a.tail != "all":
            lines = lines[-int(a.tail):] if int(a.tail) > 0 else []
        for line in lines:
            emit(line)
        while a.follow:
            line = f.readline()
            if line:
                emit(line)
                continue
            if not rec.running:
                for line in f.readlines():
                    emit(line)
                break
            time.sleep(0.05)
    return 0


def _stop_timeout(rec: Any, given: float | None) -> float:
    """-t, else the container's --stop-timeout, else docker's 10 s."""
    if given is not None:
        return given
    t = rec.config.get("stop_timeout")
    return float(t) if isinstance(t, (int, float)) and t >= 0 else 10.0


def cmd_stop(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import stop

    def act(rec: Any, name: str) -> None:
        stop(rec, timeout=_stop_timeout(rec, a.time))
        print(name)

    return _for_each(a.containers, act)


def cmd_kill(a: argparse.Namespace) -> int:
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import parse_signal, signal_container

    try:
        sig = parse_signal(a.signal)
    except ConfigError as e:
        return _fail(str(e))

    def act(rec: Any, name: str) -> None:
        if sig in (signal.SIGKILL, signal.SIGTERM):
            rec.update_state(stopping=True)
        signal_container(rec, sig)
        print(name)

    return _for_each(a.containers, act)


def cmd_start(a: argparse.Namespace) -> int:
    def act(rec: Any, name: str) -> bool:
        if not rec.running:
            _collect_leftovers()
            if _start_detached_quiet(rec) != 0:
                return False
        print(name)
        return True

    return _for_each(a.containers, act)


def _start_detached_quiet(rec: Any) -> int:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        return _start_detached(rec)


def cmd_restart(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import stop

    def act(rec: Any, name: str) -> bool:
        stop(rec, timeout=_stop_timeout(rec, a.time))
        if _start_detached_quiet(rec) != 0:
            return False
        print(name)
        return True

    return _for_each(a.containers, act)


def cmd_rm(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import remove_record, signal_container, wait_exited

    def act(rec: Any, name: str) -> bool:
        if rec.running:
            if not a.force:
                _fail(f"cannot remove container {name}: it is running (stop it first, "
                      "or use rm -f)")
                return False
            rec.update_state(stopping=True)
            try:
                signal_container(rec, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_exited(rec, 30)
        remove_record(rec)
        print(name)
        return True

    return _for_each(a.containers, act)


def cmd_wait(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import wait_exited

    def act(rec: Any, name: str) -> None:
        print(wait_exited(rec).get("exit_code"))

    return _for_each(a.containers, act)


def _iso(t: float | None) -> str | None:
    if not t:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def cmd_inspect(a: argparse.Namespace) -> int:
    import json

    out = []
    rc = 0
    for name in a.containers:
        try:
            (rec,) = _records_arg([name])
        except LookupError as e:
            _fail(_oneline(e))
            rc = 1
            continue
        cfg, st = rec.config, rec.state
        status = rec.status
        out.append({
            "Id": rec.id, "Name": "/" + cfg.get("name", ""), "Created": _iso(cfg.get("created")),
            "Image": cfg.get("image_id") or "", "Path": (cfg.get("cmd") or [""])[0],
            "Args": (cfg.get("cmd") or [])[1:],
            "State": {"Status": status, "Running": status == "running",
                      "Pid": st.get("pid") if status == "running" else 0,
                      "ExitCode": st.get("exit_code") or 0, "OOMKilled": bool(st.get("oom_killed")),
                      "StartedAt": _iso(st.get("started_at")),
                      "FinishedAt": _iso(st.get("finished_at")), "Error": st.get("error") or "",
                      "RestartCount": st.get("restart_count", 0)},
            "Config": {"Image": cfg.get("image") or "", "Cmd": cfg.get("cmd"),
                       "Entrypoint": cfg.get("entrypoint"), "Env": cfg.get("env"),
                       "WorkingDir": cfg.get("workdir") or "", "User": cfg.get("user") or "",
                       "Hostname": cfg.get("hostname") or rec.id[:12], "Tty": cfg.get("tty")},
            "HostConfig": {"AutoRemove": cfg.get("auto_remove"),
                           "RestartPolicy": {"Name": cfg.get("restart")},
                           "NetworkMode": cfg.get("network"),
                           "ReadonlyRootfs": cfg.get("read_only"),
                           "Memory": cfg.get("memory"), "NanoCpus": cfg.get("cpus"),
                           "PidsLimit": cfg.get("pids_limit"), "CapAdd": cfg.get("cap_add"),
                           "CapDrop": cfg.get("cap_drop")},
            "Mounts": [{"Spec": v} for v in cfg.get("volumes", [])] +
                      [{"Type": "tmpfs", "Spec": t} for t in cfg.get("tmpfs", [])],
            "NetworkSettings": {"IPAddress": st.get("ip") or "",
                                "Ports": st.get("ports") or []},
            "LogPath": rec.log_path,
        })
    print(json.dumps(out, indent=4))
    return rc


def cmd_exec(a: argparse.Namespace) -> int:
    from nsprim.config import parse_user
    from nsprim.container import DEVNULL
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import alive, find
    from nsprim.spec import env_list, exec_container

    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        return _fail("exec: no command given")
    try:  # the flags first: bad input is refused before anything is looked at
        env_list(a.env)
        parse_user(a.user)
    except ConfigError as e:
        return _fail(str(e))
    try:
        rec = find(a.container)
    except LookupError as e:
        return _fail(_oneline(e))
    st = rec.state
    pid = st.get("pid")
    if not rec.running or not isinstance(pid, int) or not alive(pid, st.get("pid_start")):
        return _fail(f"container {a.container} is not running")
    try:
        c = exec_container(rec.spec, pid, cmd, env=env_list(a.env), user=a.user,
                           workdir=a.workdir, tty=a.tty,
                           stdin=None if a.interactive or a.tty else DEVNULL)
    except ConfigError as e:
        return _fail(str(e))
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    cg = c.cgroup

    try:
        return _attach(c, cmd[0], a.tty, a.interactive)
    finally:
        if cg is not None:
            cg.close()


def cmd_pull(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store, print_progress

    try:
        img = default_store().pull(a.image, progress=None if a.quiet else print_progress())
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    if not a.quiet:
        digests = ", ".join(d.rsplit("@", 1)[1] for d in img.repo_digests[-1:])
        print(f"Digest: {digests}" if digests else f"Image: {img.id}")
    print(a.image if a.quiet else f"Pulled {a.image} ({img.id[:19]})")
    return 0


def cmd_load(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store

    try:
        imgs = default_store().load(a.input)
    except (LookupError, OSError, ValueError, KeyError) as e:
        return _fail(_oneline(e))
    for img in imgs:
        for n in img.names or [img.id]:
            print(f"Loaded image: {n}")
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{n}B"


def cmd_images(a: argparse.Namespace) -> int:

    from nsprim.images.reference import parse_reference
    from nsprim.images.store import default_store

    rows = []
    for img in default_store().images():
        for n in img.names or ["<none>:<none>"]:
            if n == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                fam = parse_reference(n).familiar()
                repo, _, tag = fam.rpartition(":")
            rows.append({"Repository": repo, "Tag": tag, "ID": img.id[7:19],
                         "Size": _human(img.size), "Layers": len(img.layers)})
    _print_rows(a, rows, f"{'REPOSITORY':40} {'TAG':16} {'IMAGE ID':14} {'SIZE':>8}",
                lambda r: f"{r['Repository']:40} {r['Tag']:16} {r['ID']:14} {r['Size']:>8}")
    return 0


def cmd_rmi(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store

    rc = 0
    for name in a.images:
        try:
            for line in default_store().remove(name, force=a.force):
                print(line)
        except (LookupError, OSError) as e:
            _fail(_oneline(e))
            rc = 1
    return rc


def cmd_volume(a: argparse.Namespace) -> int:
    import json

    from nsprim import volumes
    from nsprim.errors import ConfigError

    try:
        if a.volume_command == "create":
            info, _ = volumes.create(a.name)
            print(info.name)
        elif a.volume_command == "ls":
            vols = volumes.list_volumes()
            if a.quiet:
                for v in vols:
                    print(v.name)
            elif a.format == "json":
                for v in vols:
                    print(json.dumps(v.to_json()))
            else:
                print(f"{'DRIVER':10} VOLUME NAME")
                for v in vols:
                    print(f"{'local':10} {v.name}")
        elif a.volume_command == "rm":
            for n in a.names:
                volumes.remove(n)
                print(n)
        elif a.volume_command == "inspect":
            print(json.dumps([volumes.get(n).to_json() for n in a.names], indent=4))
        else:
            return _fail("volume: expected create, ls, rm or inspect")
    except (ConfigError, LookupError, OSError) as e:
        return _fail(_oneline(e))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser(_chosen(args))
    try:
        a = parser.parse_args(args)
    except UsageError as e:
        return _fail(str(e))
    if a.version:
        from nsprim import __version__

        print(f"nsprim {__version__}")
        return 0
    if a.root:
        os.environ["NSPRIM_ROOT"] = os.path.abspath(a.root)
    commands = {"run": cmd_run, "pull": cmd_pull, "load": cmd_load, "images": cmd_images,
                "rmi": cmd_rmi, "volume": cmd_volume, "ps": cmd_ps, "logs": cmd_logs,
                "stop": cmd_stop, "kill": cmd_kill, "start": cmd_start, "restart": cmd_restart,
                "rm": cmd_rm, "wait": cmd_wait, "inspect": cmd_inspect, "exec": cmd_exec}
    if a.command in ("inspect", "logs", "wait", "stop", "start", "restart", "rm", "kill",
                     "exec"):
        from nsprim.lifecycle import collect

        collect()  # the view stays true when a supervisor was killed
    _collect_image_tmp()
    if a.command in commands:
        return commands[a.command](a)
    parser.print_help(sys.stderr)
    return EXIT_NSPRIM


if __name__ == "__main__":
    sys.exit(main())
