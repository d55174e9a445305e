"""Named, detached containers without a daemon: records on disk, a small
supervisor per running container, and the commands around them (ps, logs,
stop, kill, start, restart, rm, inspect, wait, exec).

A container's record lives in ``<state root>/containers/<id>/``:
``spec.json`` (what to run: the ContainerSpec, written once; ``config.json``
in records of older versions), ``state.json`` (status, pid,
times, exit code: written atomically), ``container.log`` (JSON lines), and --
for image containers -- the overlay's upper/work/merged directories, kept
between runs.  Names map to ids in ``<state root>/names.json``, changed under
a file lock, so of several concurrent ``run --name x`` exactly one wins.

Running a detached container (``run -d``, ``start``): the CLI checks the
input, writes the record and starts ``python -m nsprim.supervise start ID``
in its own session.  That supervisor starts the container (its child, with
``die_with_parent``), reports back to the CLI, then execs ``nsprim-shim``
(csrc/shim.c): a C loop that writes the logs and waits on the pidfd, then
execs ``python -m nsprim.supervise finish ID`` to release the resources,
record the exit and apply the restart policy.  The supervisor's lock files
stay open across both execs: while it lives, nothing is collected; if it is
killed, the container dies with it and the next nsprim command collects
what was left (``collect()``).

This module imports nothing heavy: ``nsprim ps`` starts fast.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nsprim._record import record
from nsprim.errors import ConfigError
from nsprim.state import FileLock, atomic_write, remove_tree, state_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Record", "records", "find", "reserve", "release_name", "collect",
           "containers_dir", "NAME_RE", "start_detached", "keep_exit_code", "kept_exit_code"]

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def containers_dir() -> str:
    return os.path.join(state_root(), "containers")


@contextmanager
def _names_locked() -> Iterator[dict[str, str]]:
    os.makedirs(state_root(), mode=0o711, exist_ok=True)
    lock = FileLock(os.path.join(state_root(), "names.lock"))
    try:
        path = os.path.join(state_root(), "names.json")
        try:
            with open(path) as f:
                names: dict[str, str] = json.load(f)
        except (OSError, ValueError):
            names = {}
        before = dict(names)
        yield names
        if names != before:
            atomic_write(path, json.dumps(names, indent=1, sort_keys=True).encode(), 0o600,
                         durable=False)
    finally:
        lock.release()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"invalid container name {name!r}: letters, digits, '_', '.', '-', "
                          "starting with a letter or digit")
    return name


def reserve(name: str, container_id: str) -> None:
    """Give `name` to `container_id`, or fail if another container has it."""
    check_name(name)
    with _names_locked() as names:
        other = names.get(name)
        if other is not None and other != container_id and \
                os.path.isdir(os.path.join(containers_dir(), other)):
            raise ConfigError(f'the container name "/{name}" is already in use by container '
                              f'"{other}"; remove (or rename) that container to reuse it')
        names[name] = container_id


def release_name(name: str, container_id: str) -> None:
    with _names_locked() as names:
        if names.get(name) == container_id:
            del names[name]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _proc_start(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): pid + start time
    names a process for good, a pid alone does not."""
    st = _stat(pid)
    return None if st is None else st[1]


def alive(pid: int | None, start: int | None) -> bool:
    """Is the process (pid, start) still running (a zombie is not)?"""
    if not pid or start is None:
        return False
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == start


def running_in(st: dict[str, Any]) -> bool:
    """Does the state `st` (one read of a record's state.json) say running,
    with its supervisor alive?  A decision made of several reads of a
    record that changes meanwhile mixes two states: decide from one."""
    return st.get("status") in ("running", "restarting") and \
        alive(st.get("supervisor_pid"), st.get("supervisor_start"))


@record
class Record:
    """One container's record on disk."""

    id: str

    @property
    def dir(self) -> str:
        return os.path.join(containers_dir(), self.id)

    def _load(self, name: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.dir, name)) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @property
    def config(self) -> dict[str, Any]:
        """The container's spec as JSON (spec.json; config.json of older
        versions)."""
        return self._load("spec.json") or self._load("config.json")

    @property
    def spec(self) -> Any:
        """The container's :class:`nsprim.spec.ContainerSpec`."""
        from nsprim.spec import ContainerSpec

        return ContainerSpec.from_json(self.config)

    @property
    def state(self) -> dict[str, Any]:
        return self._load("state.json")

    # Records are replaced atomically (rename) but not fsync'ed: a crash may lose
    # the last update, which collect() repairs; an fsync per update would cost
    # milliseconds on every start.
    def write_config(self, cfg: dict[str, Any]) -> None:
        atomic_write(os.path.join(self.dir, "spec.json"), json.dumps(cfg, indent=1).encode(),
                     0o600, durable=False)

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Change some fields, under the record's lock: the supervisor and
        the CLI (stop's ``stopping``) update it concurrently, and neither
        may lose the other's change."""
        fd = os.open(os.path.join(self.dir, "state.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = self.state
            before = st.get("status")
            st.update(changes)
            atomic_write(os.path.join(self.dir, "state.json"),
                         json.dumps(st, indent=1).encode(), 0o600, durable=False)
        finally:
            os.close(fd)
        after = changes.get("status")
        if after is not None and after != before:  # nsprim events
            action = {"created": "create", "running": "start", "exited": "die",
                      "restarting": "die"}.get(str(after))
            if action is not None:
                from nsprim.events import emit

                extra = {"exitCode": st.get("exit_code")} if action == "die" else {}
                emit(self.id, action, self.config, **extra)
        return st

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    @property
    def running(self) -> bool:
        return running_in(self.state)

    @property
    def status(self) -> str:
        st = self.state
        s = str(st.get("status", "created"))
        if s in ("running", "restarting") and not self.running:
            return "dead"
        return s

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "container.log")


def records() -> list[Record]:
    try:
        ids = os.listdir(containers_dir())
    except FileNotFoundError:
        return []
    out = []
    for i in ids:
        if _has_spec(i):
            out.append(Record(i))
    return out


def _has_spec(cid: str) -> bool:
    d = os.path.join(containers_dir(), cid)
    return os.path.exists(os.path.join(d, "spec.json")) or \
        os.path.exists(os.path.join(d, "config.json"))


def find(ref: str) -> Record:
    """A container by name, full id, or unique id prefix."""
    with _names_locked() as names:
        cid = names.get(ref)
    if cid and _has_spec(cid):
        return Record(cid)
    if len(ref) >= 3 and all(c in "0123456789abcdef" for c in ref):
        matches = [r for r in records() if r.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise LookupError(f"multiple containers match {ref!r}: use more of the id")
    raise LookupError(f"No such container: {ref}")  # docker's words


# -------------------------------------------------------------- collection

def release_resources(rec: Record, *, remove_rootfs: bool = False) -> None:
    """Free what a container held on the host: its cgroup, its place on the
    bridge, its overlay mount (and its container layer with remove_rootfs),
    its /etc files.  Safe to repeat."""
    from nsprim import mount as m
    from nsprim.state import run_dir

    cfg = rec.config
    run = run_dir()
    # a cgroup of this root has its lock file from before it is made until
    # after it is removed; leases live under network/: no file, nothing to free
    if os.path.exists(os.path.join(run, "cgroups", rec.id[:16] + ".lock")):
        from nsprim.cgroup import remove_named

        try:
            remove_named(rec.id[:16])
        except OSError:
            pass
    if os.path.isdir(os.path.join(run, "network")):
        from nsprim.network import bridge

        try:
            bridge.release_container(rec.id)
        except OSError:
            pass
    if os.path.isdir(os.path.join(state_root(), "networks")):  # user-defined networks
        from nsprim.network import user

        try:
            user.release_container(rec.id)
        except OSError:
            pass
    pasta = os.path.join(run, "pasta", rec.id + ".pid")
    if os.path.exists(pasta):  # rootless default network (nsprim.rootless)
        from nsprim.rootless import stop_pasta

        stop_pasta(pasta)
    merged = os.path.join(rec.dir, "merged")
    if os.path.ismount(merged):
        try:
            m.umount(merged, m.MNT_DETACH)
        except OSError:
            pass
    remove_tree(os.path.join(run, "containers", rec.id))  # (older versions' /etc files)
    from nsprim.network.etc import remove_files

    remove_files(run, rec.id)
    if remove_rootfs or cfg.get("auto_remove"):
        for d in ("upper", "work", "merged", "l"):
            remove_tree(os.path.join(rec.dir, d))


def remove_record(rec: Record, *, volumes: bool = False) -> None:
    """Remove a container's record and layer; with `volumes` (``rm -v``, and
    always for ``--rm``, as docker) its anonymous volumes too."""
    cfg = rec.config
    release_resources(rec, remove_rootfs=True)
    from nsprim.events import emit

    emit(rec.id, "destroy", cfg)
    name = rec.name
    remove_tree(rec.dir)
    if name:
        release_name(name, rec.id)
    if volumes or cfg.get("auto_remove"):
        from nsprim import volumes as vols

        for vname in cfg.get("anonymous_volumes") or ():
            try:
                vols.remove(vname)
            except (LookupError, OSError, ValueError):
                pass  # in use elsewhere or gone: kept, as docker


def collect() -> list[str]:
    """Records that say running but whose supervisor is gone (killed): mark
    them exited and free their resources; --rm ones are removed."""
    out = []
    for rec in records():
        st = rec.state
        if st.get("status") not in ("running", "restarting", "starting"):
            continue
        if alive(st.get("supervisor_pid"), st.get("supervisor_start")):
            continue
        if st.get("status") == "starting" and time.time() - st.get("starting_at", 0) < 30:
            continue  # a CLI that is still starting it
        pid, start = st.get("pid"), st.get("pid_start")
        if isinstance(pid, int) and alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        release_resources(rec)
        rec.update_state(status="exited", exit_code=st.get("exit_code", 137),
                         finished_at=time.time(), error="supervisor was killed")
        if rec.config.get("auto_remove"):
            remove_record(rec)
        out.append(rec.id)
    return out


def wait_exited(rec: Record, timeout: float | None = None) -> dict[str, Any]:
    """Wait until the supervisor has recorded the exit (or is gone)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        st = rec.state
        if not os.path.isdir(rec.dir):
            return st
        if st.get("status") in ("exited", "created", "dead") or not rec.running:
            if st.get("status") in ("running", "restarting"):
                collect()
                st = rec.state
            return st
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(errno.ETIMEDOUT, "timed out waiting for the container")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wake_path(rec: Record) -> str:
    """The FIFO a supervisor waits on during a restart backoff; a byte
    written to it ends the wait (see request_stop)."""
    return os.path.join(rec.dir, "wake")


def request_stop(rec: Record) -> None:
    """No more restarts: the supervisor ends when the container does, and at
    once if it is waiting out a restart backoff (then there is no process to
    signal: the container's pid on record is the dead one's)."""
    rec.update_state(stopping=True)
    try:  # ENXIO: no supervisor waits on it (its check of `stopping` comes later)
        fd = os.open(wake_path(rec), os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"x")
    except OSError:
        pass
    finally:
        os.close(fd)


def _live_pid(rec: Record) -> tuple[int, int] | None:
    """(pid, start time) of the container's process if it runs now; never a
    pid that has ended (and may have been reused)."""
    st = rec.state
    pid, start = st.get("pid"), st.get("pid_start")
    if st.get("status") != "running" or not isinstance(pid, int) or \
            not isinstance(start, int) or not alive(pid, start):
        return None
    return pid, start


def _pidfd(pid: int, start: int) -> int | None:
    """A pidfd of (pid, start), None if that process is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if _proc_start(pid) != start:  # the pid was reused before the pidfd pinned it
        os.close(fd)
        return None
    return fd


def signal_container(rec: Record, sig: int) -> bool:
    """Send `sig` to the container's process.  False if it is restarting
    (between runs: nothing to signal); ProcessLookupError if it is not
    running."""
    live = _live_pid(rec) if rec.running else None
    if live is None and rec.running and rec.state.get("status") == "restarting":
        return False
    fd = None if live is None else _pidfd(*live)
    if fd is None:
        raise ProcessLookupError(errno.ESRCH, f"container {rec.id} is not running")
    try:
        signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)
    return True


def stop(rec: Record, timeout: float = 10.0, sig: int | None = None) -> None:
    """docker stop: the stop signal (the image's, else SIGTERM), then SIGKILL
    after `timeout` seconds; no restart afterwards.  A container waiting out
    a restart backoff stops at once."""
    import select

    if not rec.running:
        return
    request_stop(rec)
    stop_sig = sig or parse_signal(rec.config.get("stop_signal") or "SIGTERM")
    live = _live_pid(rec)
    fd = None if live is None else _pidfd(*live)
    if fd is not None:
        try:
            try:
                signal.pidfd_send_signal(fd, stop_sig)
            except ProcessLookupError:
                pass
            p = select.poll()
            p.register(fd, select.POLLIN)
            if not p.poll(timeout * 1000):
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            os.close(fd)
    # else between runs: the supervisor sees `stopping` and ends (a run it
    # was starting meanwhile, it kills)
    wait_exited(rec, 30)


def parse_signal(text: str | int) -> int:
    if isinstance(text, int):
        return text
    t = text.strip().upper()
    if t.isascii() and t.isdigit():
        n = int(t)
    else:
        if not t.startswith("SIG"):
            t = "SIG" + t
        try:
            n = int(getattr(signal, t))
        except AttributeError:
            raise ConfigError(f"invalid signal {text!r}") from None
    if not 1 <= n < signal.NSIG:
        raise ConfigError(f"invalid signal {text!r}")
    return n


def new_record(cfg: dict[str, Any]) -> Record:
    """Create a container's record (and reserve its name).  A missing name is
    chosen, docker-like, from two words."""
    cid = os.urandom(32).hex()
    rec = Record(cid)
    os.makedirs(containers_dir(), mode=0o711, exist_ok=True)
    os.mkdir(rec.dir, 0o711)
    try:
        name = cfg.get("name")
        if name:
            reserve(name, cid)
        else:  # one no container has: drawn again while it is in use
            name = _reserve_generated(cid)
        cfg = dict(cfg, id=cid, name=name, created=time.time())
        rec.write_config(cfg)
        rec.update_state(status="created", restart_count=0)
    except BaseException:
        remove_tree(rec.dir)
        raise
    return rec


_ADJ = ("agile amazing bold brave bright busy calm clever cool crisp curious daring "
        "dreamy eager elated epic fancy fervent focused friendly funny gallant gentle "
        "glad happy hardy hopeful humble jolly keen kind lively lucid lucky merry mighty "
        "modest musing nimble noble peaceful pensive polite proud quick quiet relaxed "
        "serene sharp silly smart sober stoic sunny swift tender tidy upbeat vivid warm "
        "wise witty youthful zen zesty").split()
_NOUN = ("agnesi allen babbage backus bartik bell berners boole borg brattain cerf "
         "church codd conway cray curie darwin dijkstra einstein engelbart euler fermi "
         "feynman floyd galois gauss goldberg hamilton hamming hawking hodgkin hopper "
         "johnson kahan kay knuth lamarr lamport liskov lovelace mayer mccarthy meitner "
         "minsky moore napier neumann newton noether pascal perlman pike ritchie shannon "
         "stallman sutherland tesla thompson torvalds turing wilkes wirth wozniak "
         "yalow").split()


def _urandom_below(n: int) -> int:
    return int.from_bytes(os.urandom(8), "little") % n


def generate_name(in_use: Callable[[str], bool] = lambda n: False,
                  randbelow: Callable[[int], int] | None = None) -> str:
    """A free container name of docker's shape, ``adjective_surname``; while
    the one drawn is in use, another draw with a number appended, from wider
    ranges as the retries go on (docker appends a digit on a retry)."""
    below = randbelow or _urandom_below
    attempt = 0
    while True:
        name = f"{_ADJ[below(len(_ADJ))]}_{_NOUN[below(len(_NOUN))]}"
        if attempt:
            name += str(below(10 ** min(attempt, 9)))
        if not in_use(name):
            return name
        attempt += 1


def _reserve_generated(container_id: str) -> str:
    """Give `container_id` a generated name no container of this root has."""
    with _names_locked() as names:
        def in_use(n: str) -> bool:
            other = names.get(n)
            return other is not None and other != container_id and \
                os.path.isdir(os.path.join(containers_dir(), other))

        name = generate_name(in_use)
        names[name] = container_id
    return name


# ------------------------------------------- create and start apart (the API)

def start_detached(rec: Record) -> str | None:
    """Start the supervisor of the created (or exited) container `rec` and
    wait until the container runs: None, or the one-line error.  The
    supervisor is in a session of its own: it outlives the caller (the
    daemon's live restore)."""
    import subprocess
    import sys

    from nsprim.state import root_args

    r, w = os.pipe2(os.O_CLOEXEC)
    rec.update_state(status="starting", starting_at=time.time())
    try:
        subprocess.Popen([sys.executable, "-m", "nsprim.supervise", *root_args(), "start",
                          rec.id, str(w)],
                         pass_fds=[w], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        answer = f.readline().strip()
    if answer == "ok":
        return None
    if rec.state.get("status") == "starting":
        rec.update_state(status="exited", exit_code=125, finished_at=time.time())
    return answer[4:] if answer.startswith("err ") else "the supervisor failed to start"


def _exits_dir() -> str:
    return os.path.join(state_root(), "exits")


def keep_exit_code(container_id: str, code: int) -> None:
    """Keep the exit code of an auto-removed container for a while: docker's
    ``wait?condition=removed`` answers it after the record is gone."""
    d = _exits_dir()
    try:
        os.makedirs(d, 0o700, exist_ok=True)
        atomic_write(os.path.join(d, container_id), str(code).encode(), 0o600,
                     durable=False)
        now = time.time()
        for name in os.listdir(d):  # what no one asked for within 10 minutes
            p = os.path.join(d, name)
            try:
                if now - os.stat(p).st_mtime > 600:
                    os.unlink(p)
            except OSError:
                pass
    except OSError:
        pass


def kept_exit_code(container_id: str) -> int | None:
    if not re.fullmatch(r"[0-9a-f]{64}", container_id):
        return None
    try:
        with open(os.path.join(_exits_dir(), container_id)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
