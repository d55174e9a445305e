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
    _print_rows,
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
    from nsprim.cli.when import log_time, parse_time

    try:  # --since/--until (issue 12)
        since = None if a.since is None else parse_time(a.since, "since")
        until = None if a.until is None else parse_time(a.until, "until")
    except ValueError as e:
        return _fail(str(e))
    try:
        rec = find(a.container)
    except LookupError as e:
        return _client_error(_oneline(e))

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
        except LookupError:
            rc = _client_error(f"No such object: {name}")
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
        return _client_error(_oneline(e))
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
