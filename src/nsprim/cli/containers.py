"""The commands on containers that exist: ps, logs, stop, kill, start, restart,
rm, wait, inspect, exec.

Their errors are docker's: a missing or stopped container is exit status 1
with the line docker prints (``Error response from daemon: No such
container: x`` where docker asks the daemon to act, ``Error: No such
container: x`` where its CLI looks the container up first: logs, exec;
``Error: No such object: x`` for inspect); 125 stays for nsprim's own
failures and bad flags.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from nsprim.cli import (
    _INT,
    _collect_leftovers,
    _fail,
    _oneline,
)
from nsprim.cli.run import _attach, _start_detached

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_ERROR = 1  # docker's status for a command that failed on a container


def _daemon_error(msg: str) -> int:
    """docker's line for a failure the daemon reports, and its status."""
    print(f"Error response from daemon: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _client_error(msg: str) -> int:
    """docker's line for a failure its CLI reports (a lookup that failed)."""
    print(f"Error: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return " ".join(e.strerror.split())
    return _oneline(e)


def _for_each(names: list[str], action: Any) -> int:
    """Run action(record, name) for each container named, as docker does:
    an error is one line each, the status 1 if any failed.  action returns
    False when it has reported its own failure."""
    from nsprim.lifecycle import find

    rc = 0
    for name in names:
        try:
            if action(find(name), name) is False:
                rc = EXIT_ERROR
        except (LookupError, OSError) as e:
            rc = _daemon_error(_message(e))
    return rc


def _not_running(rec: Any) -> str:
    return f"container {rec.id} is not running"


def cmd_ps(a: argparse.Namespace) -> int:
    from nsprim.cli.listing import emit
    from nsprim.dockerfmt import load, shapes
    from nsprim.dockerfmt.filters import (
        CONTAINER_FILTERS,
        FilterError,
        parse_filters,
        select_containers,
    )

    items = load.containers()
    if any(load.needs_collect(c) for c in items):
        from nsprim.lifecycle import collect

        collect()  # the view stays true when a supervisor was killed
        items = load.containers()
    try:
        chosen = select_containers(items, parse_filters(a.filter, CONTAINER_FILTERS),
                                   show_all=a.all, last=1 if a.latest else a.last)
    except FilterError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERROR
    now = time.time()
    summaries = load.summarize(chosen, size=a.size, now=now)
    rows = [shapes.ps_row(s, trunc=not a.no_trunc, now=now) for s in summaries]
    default = shapes.PS_TABLE + ("\t{{.Size}}" if a.size else "")
    return emit(a.format, rows, default=default, headers=shapes.HEADERS, quiet=a.quiet)


def cmd_logs(a: argparse.Namespace) -> int:
    import json

    from nsprim.lifecycle import find

    if a.tail not in (None, "all") and not _INT.fullmatch(a.tail):
        return _fail(f"invalid --tail {a.tail!r}: a number of lines, or all")
    from nsprim.cli.when import log_time, parse_time

    try:  # --since/--until (issue 12)
        since = None if a.since is None else parse_time(a.since, "since")
        until = None if a.until is None else parse_time(a.until, "until")
    except ValueError as e:
        return _fail(str(e))
    try:
        rec = find(a.container)
    except LookupError as e:
        return _daemon_error(_oneline(e))

    def emit(line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return
        text = entry.get("log", "")
        if since is not None or until is not None:
            t = log_time(str(entry.get("time", "")))
            if t is None or since is not None and t < since or \
                    until is not None and t > until:
                return
        if a.timestamps:
            text = f"{entry.get('time', '')} {text}"
        out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
        out.write(text)
        out.flush()

    rotated = []  # --log-opt max-file: the older files first (.N ... .1)
    for i in range(1000, 0, -1):
        try:
            with open(f"{rec.log_path}.{i}") as old:
                rotated.extend(old.readlines())
        except FileNotFoundError:
            continue
    try:
        f = open(rec.log_path)
    except FileNotFoundError:
        for line in rotated[-int(a.tail):] if a.tail not in (None, "all") and \
                int(a.tail) > 0 else ([] if a.tail not in (None, "all") else rotated):
            emit(line)
        return 0
    with f:
        lines = rotated + f.readlines()
        if a.tail is not None and a.tail != "all":
            lines = lines[-int(a.tail):] if int(a.tail) > 0 else []
        for line in lines:
            emit(line)
        while a.follow and (until is None or time.time() <= until):
            line = f.readline()
            if line:
                emit(line)
                continue
            if not rec.running:
                for line in f.readlines():
                    emit(line)
                break
            try:  # rotated away: go on with the new file
                if os.stat(rec.log_path).st_ino != os.fstat(f.fileno()).st_ino:
                    for line in f.readlines():
                        emit(line)
                    f.close()
                    f = open(rec.log_path)
            except FileNotFoundError:
                pass
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
    from nsprim.lifecycle import parse_signal, request_stop, signal_container

    try:
        sig = parse_signal(a.signal)
    except ConfigError as e:
        return _fail(str(e))

    def act(rec: Any, name: str) -> bool:
        stopping = sig in (signal.SIGKILL, signal.SIGTERM) and rec.running
        if stopping:
            request_stop(rec)  # no restart; ends a restart backoff at once
        try:
            signal_container(rec, sig)  # between runs (restarting): nothing to signal
        except ProcessLookupError:
            if not stopping:  # else it ran when asked, and has ended since
                _daemon_error(f"cannot kill container: {name}: {_not_running(rec)}")
                return False
        print(name)
        return True

    return _for_each(a.containers, act)


def cmd_start(a: argparse.Namespace) -> int:
    if getattr(a, "attach", False) or getattr(a, "interactive", False):
        if len(a.containers) != 1:
            return _fail("start: you cannot start and attach multiple containers at once")
        from nsprim.cli.attach import start_attached
        from nsprim.lifecycle import find

        try:
            rec = find(a.containers[0])
        except LookupError as e:
            return _daemon_error(_oneline(e))
        if rec.running:
            return _daemon_error(f"container {rec.id} is already running")
        _collect_leftovers()
        return start_attached(rec, bool(a.interactive))

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
    from nsprim.lifecycle import remove_record, request_stop, signal_container, wait_exited

    def act(rec: Any, name: str) -> bool:
        if rec.running:
            if not a.force:
                what = "restarting" if rec.status == "restarting" else "running"
                _daemon_error(f'cannot remove container "/{rec.name}": container is {what}: '
                              "stop the container before removing or force remove")
                return False
            request_stop(rec)
            try:
                signal_container(rec, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_exited(rec, 30)
        remove_record(rec, volumes=getattr(a, "volumes", False))
        print(name)
        return True

    return _for_each(a.containers, act)


def cmd_wait(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import wait_exited

    def act(rec: Any, name: str) -> None:
        print(wait_exited(rec).get("exit_code"))

    return _for_each(a.containers, act)


def _lookup(kind: str, name: str, cache: dict[str, Any]) -> Any:
    """The inspect object of `name` as a `kind`; LookupError if none."""
    from nsprim.dockerfmt import load

    if kind == "container":
        c = load.container(name)
        if load.needs_collect(c):  # its supervisor was killed: the record is made true
            from nsprim.lifecycle import collect

            collect()
            c = load.container(name)
        if "images" not in cache:
            cache["images"] = load.ImageCache()
            cache["network"] = load.network_info()
        obj = load.inspect_container(c, cache["images"], cache["network"])
        if cache.get("size"):
            rw, root = load.container_size(c, cache["images"])
            obj["SizeRw"], obj["SizeRootFs"] = rw, root
        return obj
    if kind == "image":
        return load.inspect_image(name)
    if kind == "volume":
        from nsprim.errors import ConfigError

        try:
            return load.inspect_volume(name)
        except ConfigError:
            raise LookupError(name) from None
    return load.inspect_network(name)


_NO_SUCH = {"container": "No such container", "image": "No such image",
            "volume": "No such volume", "network": "No such network"}


def inspect_objects(names: list[str], kind: str | None, fmt: str | None,
                    size: bool = False) -> int:
    """docker inspect: each name as `kind` (else a container, an image, a
    volume or a network, the first found); JSON or a template each."""
    from nsprim.cli.listing import EXIT_USAGE, inspect_output

    if fmt and fmt != "json":
        from nsprim.dockerfmt.gotemplate import TemplateError, parse, prepare_format

        try:
            parse(prepare_format(fmt)[1])
        except TemplateError as e:  # before anything is looked up, as docker
            print(f"template parsing error: {e}", file=sys.stderr)
            return EXIT_USAGE
    cache: dict[str, Any] = {"size": size}
    objs, errors = [], []
    for name in names:
        for k in [kind] if kind else ["container", "image", "volume", "network"]:
            try:
                objs.append(_lookup(k, name, cache))
                break
            except (LookupError, OSError):
                continue
        else:
            errors.append(f"{_NO_SUCH[kind]}: {name}" if kind else f"No such object: {name}")
    out, template_errors = inspect_output(fmt, objs)
    sys.stdout.write(out)
    for msg in errors:
        print(f"Error: {msg}", file=sys.stderr)
    for msg in template_errors:
        print(msg, file=sys.stderr)
    return EXIT_ERROR if errors or template_errors else 0


def cmd_inspect(a: argparse.Namespace) -> int:
    return inspect_objects(a.containers, a.type, a.format, a.size)


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
        return _daemon_error(_oneline(e))
    st = rec.state
    pid = st.get("pid")
    if not rec.running or not isinstance(pid, int) or not alive(pid, st.get("pid_start")):
        return _daemon_error(_not_running(rec))
    if getattr(a, "detach", False):  # exec -d (issue 12): started, not waited for
        from nsprim.cli.run import _exec_failure
        from nsprim.errors import SpawnError

        try:
            c = exec_container(rec.spec, pid, cmd, env=env_list(a.env), user=a.user,
                               workdir=a.workdir, die_with_parent=False, stdin=DEVNULL,
                               stdout=DEVNULL, stderr=DEVNULL)
            try:
                c.start()
            finally:
                if c.cgroup is not None:
                    c.cgroup.close()
        except SpawnError as e:
            if e.step == "exec":
                import errno

                code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                return _fail(_exec_failure(e.detail or cmd[0], e.errno or 0), code)
            return _fail(_oneline(e))
        except (ConfigError, LookupError, OSError, ValueError) as e:
            return _fail(_oneline(e))
        return 0
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
