"""nsprim run: a container in the foreground or detached."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time

from nsprim.cli import (
    _FORWARDED,
    EXIT_CANNOT_EXEC,
    EXIT_NOT_FOUND,
    EXIT_NSPRIM,
    _collect_leftovers,
    _fail,
    _Interrupted,
    _oneline,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nsprim.errors import SpawnError

#: docker's exit status for "the input device is not a TTY": its CLI returns
#: that error unwrapped (cli/streams/in.go CheckTty, called by runContainer
#: and RunExec), and cmd/docker/docker.go exits 1 on such errors
EXIT_NOT_A_TTY = 1


def _not_a_tty(tty: bool, interactive: bool) -> str | None:
    """docker's CheckTty: -i with -t needs our stdin to be a terminal (else the
    container's terminal never sees the end of the input and waits)."""
    if tty and interactive and not os.isatty(0):
        return "the input device is not a TTY"
    return None


def _in_usernet() -> int:
    """This command again, in the user's network namespace, where its
    --network usernet is bridge (nsprim.network.rootless_net)."""
    from nsprim.network.rootless_net import run_in_usernet

    try:
        return run_in_usernet([sys.executable, "-m", "nsprim", *sys.argv[1:]])
    except (OSError, ValueError) as e:
        return _fail(str(e))


def cmd_run(a: argparse.Namespace) -> int:
    from nsprim import _record
    from nsprim.errors import ConfigError
    from nsprim.lifecycle import new_record, remove_record
    from nsprim.spec import from_run_flags, to_container, validate, with_anonymous_volumes

    if getattr(a, "network", None) == "usernet":
        # rootless: the user's shared network (network/rootless_net.py)
        if os.geteuid() != 0:
            return _in_usernet()
        if os.environ.get("NSPRIM_IN_USERNET") == "1":
            a.network = "bridge"  # in the user's namespaces: its bridge
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
    bad = _check_cli_flags(a)
    if bad:
        return _fail(bad)
    try:
        spec = from_run_flags(a, image, cmd)
        validate(spec)  # every check, before anything is created
        not_tty = None if a.detach or getattr(a, "create_only", False) else \
            _not_a_tty(a.tty, a.interactive)
        if not_tty:
            return _fail(not_tty, EXIT_NOT_A_TTY)
        _collect_leftovers()
        if image is not None:
            img = _image_for(image, getattr(a, "pull", "missing"))
            # the image's STOPSIGNAL unless --stop-signal (docker's rule)
            spec = _record.replace(spec, image_id=img.id,
                                       stop_signal=spec.stop_signal or img.stop_signal)
            spec = with_anonymous_volumes(spec, img.volumes)
            from nsprim.health import resolve

            spec = _record.replace(spec, health=resolve(spec, img.config.get("config")))
            if spec.stop_signal is not None:
                from nsprim.lifecycle import parse_signal

                parse_signal(spec.stop_signal)
        else:
            from nsprim.health import resolve

            spec = _record.replace(with_anonymous_volumes(spec), health=resolve(spec, None))
        cfg = spec.to_json()
        if getattr(a, "create_only", False) and a.interactive:
            cfg["stdin_once"] = True  # docker's create -i: stdin ends with the attached one's
        rec = new_record(cfg)
        if getattr(a, "cidfile", None):
            _write_cidfile(a.cidfile, rec.id)
        from nsprim.container import DEVNULL, PIPE

        # a foreground container's output goes through us into its log
        # (_ContainerLog), as the shim does for a detached one
        piped: dict[str, Any] = {} if a.tty or a.detach else {"stdout": PIPE,
                                                             "stderr": PIPE}
        # a foreground container without limits: in its v2 cgroup only on a
        # hybrid host (joining v1 ones for accounting waits ~10 ms in the
        # kernel); `update` adds them when a limit comes (Cgroup.ensure_v1)
        fg = not (a.detach or getattr(a, "create_only", False))
        c = to_container(rec.spec, die_with_parent=True, tty=a.tty,
                         stdin=None if a.interactive or a.tty else DEVNULL,
                         **({"v1_accounting": False} if fg else {}), **piped)
    except ConfigError as e:
        if rec is not None:
            remove_record(rec)
        return _fail(str(e))
    except (LookupError, OSError, ValueError) as e:
        if rec is not None:
            remove_record(rec)
        return _fail(_oneline(e))
    if getattr(a, "create_only", False):  # nsprim create: started later (start [-a])
        print(rec.id)
        return 0
    if a.detach:
        return _start_detached(rec)
    return _run_foreground(a, rec, c, cmd or [image or ""])


_STREAMS = ("stdin", "stdout", "stderr")


def _check_cli_flags(a: argparse.Namespace) -> str | None:
    """The flags of ``run`` that never reach the spec (--cidfile, --pull,
    -a): docker's checks, before anything is created."""
    pull = getattr(a, "pull", "missing")
    if pull not in ("always", "missing", "never"):
        return (f'invalid pull option: {pull!r}: must be one of "always", "missing" or '
                '"never"')
    for s in getattr(a, "attach", None) or ():
        if s.lower() not in _STREAMS:
            return (f'invalid argument "{s}" for "-a, --attach" flag: valid streams are '
                    "STDIN, STDOUT and STDERR")
    if getattr(a, "attach", None) and a.detach:
        return "conflicting options: cannot specify both --attach and --detach"
    cid = getattr(a, "cidfile", None)
    if cid is not None:
        if not cid:
            return "invalid --cidfile '': a file name is required"
        if os.path.lexists(cid):
            return (f"container ID file found, make sure the other container isn't running "
                    f"or delete {cid}")
        parent = os.path.dirname(os.path.abspath(cid))
        if not os.path.isdir(parent):
            return f"invalid --cidfile {cid!r}: directory {parent!r} does not exist"
    return None


def _write_cidfile(path: str, cid: str) -> None:
    """The container's id, in a file that must not exist yet (docker)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, cid.encode())
    finally:
        os.close(fd)


def _image_for(name: str, pull: str) -> Any:
    """The image `name` by docker's --pull policy."""
    from nsprim.images.store import ImageNotFound, default_store, print_progress

    store = default_store()
    if pull == "always":
        return store.pull(name, progress=print_progress())
    try:
        return store.get(name)
    except ImageNotFound:
        if pull == "never":
            raise LookupError(f"No such image: {name}") from None
        return store.pull(name, progress=print_progress())


def _start_detached(rec: Any) -> int:
    """Start the supervisor of `rec`; print the id once the container runs."""
    import subprocess

    from nsprim.lifecycle import remove_record

    r, w = os.pipe()
    rec.update_state(status="starting", starting_at=time.time())
    from nsprim.state import root_args

    subprocess.Popen([sys.executable, "-m", "nsprim.supervise", *root_args(), "start", rec.id,
                      str(w)],
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


class _ContainerLog:
    """A foreground container's log: the JSON lines the shim writes for a
    detached one (csrc/shim.c, read by ``nsprim logs``), one per line of
    output, ``{"time": RFC 3339, "stream": "stdout"|"stderr", "log": line}``;
    a line longer than the shim's buffer is kept in pieces.  Best effort: a
    log that cannot be written does not stop the container."""

    LINE_MAX = 16384  # the shim's LINE_MAX_BYTES

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = path
        self._fd = -1
        self._partial: dict[str, bytes] = {}
        self.max_size, self.max_file = max_size, max(1, max_file)  # rotation (the shim's)
        self._size = -1

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial.pop(stream, b"") + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._emit(stream, line + b"\n")
        while len(rest) >= self.LINE_MAX:
            self._emit(stream, rest[:self.LINE_MAX])
            rest = rest[self.LINE_MAX:]
        if rest:
            self._partial[stream] = rest

    def close(self) -> None:
        for stream, rest in sorted(self._partial.items()):
            self._emit(stream, rest)
        self._partial.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _emit(self, stream: str, line: bytes) -> None:
        import json

        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
            f".{ns % 10**9:09d}Z"
        entry = json.dumps({"time": stamp, "stream": stream,
                            "log": line.decode("utf-8", "replace")}, ensure_ascii=False)
        try:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                                   os.O_CLOEXEC, 0o640)
                self._size = os.fstat(self._fd).st_size
            self._size += os.write(self._fd, (entry + "\n").encode())  # one write: whole lines
            if self.max_size and self._size >= self.max_size:
                self._rotate()
        except OSError:
            pass

    def _rotate(self) -> None:
        """container.log -> .1 -> ... -> .max_file-1, as the shim does."""
        os.close(self._fd)
        self._fd = -1
        for i in range(self.max_file - 1, 0, -1):
            try:
                os.rename(self.path if i == 1 else f"{self.path}.{i - 1}", f"{self.path}.{i}")
            except FileNotFoundError:
                pass
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC |
                           (os.O_TRUNC if self.max_file == 1 else 0), 0o640)
        self._size = 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pump(c: Any, log: _ContainerLog, show: set[str] | None = None) -> None:
    """Copy the container's stdout and stderr pipes to ours (as they come:
    prompts without a newline show at once) and into `log`, each stream to
    its own, until both end.  After the container's first process has
    exited, processes that escaped with the pipes get 2 s (as in the shim).
    If our side is closed (``| head``), that pipe is closed too: the
    container sees EPIPE as it did writing to it directly."""
    import select

    streams: dict[int, tuple[Any, str, int]] = {}
    for f, name, ours in ((c.stdout, "stdout", sys.stdout.fileno()),
                          (c.stderr, "stderr", sys.stderr.fileno())):
        if f is not None:
            # -a: a stream not attached is logged, not shown (-1)
            streams[f.fileno()] = (f, name, ours if show is None or name in show else -1)
    exited_at: float | None = None
    try:
        while streams:
            watch = list(streams)
            if exited_at is None and c.pidfd >= 0:
                watch.append(c.pidfd)
            timeout = None if exited_at is None else max(0.0, exited_at + 2 - time.monotonic())
            ready, _, _ = select.select(watch, [], [], timeout)
            if not ready and exited_at is not None:
                break
            for fd in ready:
                if fd == c.pidfd:
                    exited_at = time.monotonic()
                    continue
                f, name, ours = streams[fd]
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    del streams[fd]
                    f.close()
                    continue
                log.write(name, data)
                if ours < 0:
                    continue
                try:
                    _write_all(ours, data)
                except OSError:
                    del streams[fd]
                    f.close()
    finally:
        for f, _, _ in streams.values():
            f.close()


def _argv0(c: Any, given: str) -> str:
    """The program the container execs: its argv[0] as resolved from the
    image's ENTRYPOINT/CMD and the flags (not the image's name)."""
    argv = getattr(getattr(c, "config", None), "argv", None)
    return str(argv[0]) if argv else given


def _workdir_failure(e: SpawnError) -> tuple[str, int]:
    """A working directory that could not be made or entered: docker's words
    for an existing file, and the docker CLI's exit code for a runtime's
    error (127 for "no such file or directory", 126 for "permission
    denied", else 125)."""
    if e.step == "chdir" and e.errno == errno.ENOTDIR:
        return f"Cannot mkdir: {e.detail} is not a directory", EXIT_NSPRIM
    code = {errno.ENOENT: EXIT_NOT_FOUND, errno.EACCES: EXIT_CANNOT_EXEC,
            errno.EISDIR: EXIT_CANNOT_EXEC}.get(e.errno or 0, EXIT_NSPRIM)
    return str(e.strerror), code


def _exec_failure(path: str, err: int) -> str:
    """docker's (runc's) words for a command that could not be exec'd: Go's
    exec.LookPath errors, e.g. ``exec: "echo hi": executable file not found
    in $PATH``."""
    import json

    name = json.dumps(path)
    if err in (errno.ENOENT, errno.ENOTDIR):
        if "/" not in path:
            return f"exec: {name}: executable file not found in $PATH"
        return f"exec: {name}: stat {path}: no such file or directory"
    return f"exec: {name}: {os.strerror(err).lower()}"


def _attach(c: Any, argv0: str, tty: bool, interactive: bool,
            started: Any = None, failed: Any = None, log: _ContainerLog | None = None,
            show: set[str] | None = None) -> int:
    """Start `c` in the foreground: forward our signals to it, proxy the
    terminal with `tty`, wait; the exit code in docker's terms.  `started()`
    runs once it runs, `failed()` if it could not start.  With `log`, what
    the container writes is shown and kept there too (its stdout and stderr
    are then pipes of ours, or its terminal with `tty`)."""
    from nsprim.errors import ConfigError, SpawnError

    not_tty = _not_a_tty(tty, interactive)  # exec -it (run has checked before)
    if not_tty:
        if failed is not None:
            failed()
        return _fail(not_tty, EXIT_NOT_A_TTY)

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
                return _fail(_exec_failure(e.detail or _argv0(c, argv0), e.errno or 0), code)
            if e.step in ("workdir", "chdir"):
                return _fail(*_workdir_failure(e))
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
                  stdin=sys.stdin.fileno() if interactive else -1, stdout=sys.stdout.fileno(),
                  output=None if log is None else lambda data: log.write("stdout", data))
        elif log is not None and (c.stdout is not None or c.stderr is not None):
            _pump(c, log, show)
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
        from nsprim.health import start_monitor

        start_monitor(rec)  # --health-cmd, the image's HEALTHCHECK

    from nsprim.spec import log_limits

    log = _ContainerLog(rec.log_path, *log_limits(rec.spec))
    try:
        show = {x.lower() for x in a.attach} if getattr(a, "attach", None) else None
        code = _attach(c, cmd[0], a.tty, a.interactive, started, failed, log, show)
    finally:
        log.close()
    if not ran:
        return code  # it never ran (failed() has recorded that)
    rec.update_state(status="exited", exit_code=code, finished_at=time.time(),
                     oom_killed=c.oom_killed)
    if a.rm:
        remove_record(rec)
    return code
