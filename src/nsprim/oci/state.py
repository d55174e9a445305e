"""The OCI runtime's state directory, with the standard library only: the
commands that clients call most (``state``, ``kill``, ``delete``) import
this and nothing of the spawn machinery.

``<root>/<id>/state.json`` is written by ``create``; ``<root>/<id>/exec.fifo``
exists while the container is *created* (its init blocks reading it until
``start`` writes a byte, runc's scheme).  The status is read from the
kernel each time: the init's pid with its start time (a recycled pid is not
ours), the FIFO, and the cgroup's freezer.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up; only mypy needs it
    from collections.abc import Mapping
    from typing import Any

__all__ = ["RuntimeError_", "NotExist", "load", "status", "oci_state", "parse_signal",
           "proc_starttime", "cgroup_pids", "save", "container_dir", "run_hooks",
           "remove_cgroups"]


class RuntimeError_(Exception):  # noqa: N801 - not the builtin
    """An error of a runtime command: its message is runc's wording."""


class NotExist(RuntimeError_):
    pass


def container_dir(root: str, cid: str) -> str:
    if not cid or "/" in cid or cid in (".", "..") or cid.startswith(".nsprim"):
        raise NotExist(f"container {cid!r} does not exist")
    return os.path.join(root, cid)


def load(root: str, cid: str) -> dict[str, Any]:
    d = container_dir(root, cid)
    try:
        with open(os.path.join(d, "state.json"), "rb") as f:
            data = json.loads(f.read(1 << 20))
    except FileNotFoundError:
        raise NotExist(f"container {cid!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise RuntimeError_(f"container {cid!r}: reading its state failed: {e}") from None
    if not isinstance(data, dict):
        raise RuntimeError_(f"container {cid!r}: its state is not a JSON object")
    data["_dir"] = d
    return data


def save(st: Mapping[str, Any]) -> None:
    d = st["_dir"]
    data = json.dumps({k: v for k, v in st.items() if not k.startswith("_")}).encode()
    tmp = os.path.join(d, ".state.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(d, "state.json"))


def proc_starttime(pid: int) -> int | None:
    """The start time of `pid` (clock ticks since boot), None if it is gone
    or a zombie (it has exited: only its status is left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rfind(b")") + 2:].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def _alive(st: Mapping[str, Any]) -> bool:
    pid = st.get("pid")
    return isinstance(pid, int) and pid > 0 and proc_starttime(pid) == st.get("starttime")


def _frozen(st: Mapping[str, Any]) -> bool:
    v2 = st.get("cgroup_v2")
    if v2:
        try:
            with open(os.path.join(v2, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            pass
    fr = st.get("cgroup_freezer")
    if fr:
        try:
            with open(os.path.join(fr, "freezer.state")) as f:
                return f.read().strip() != "THAWED"
        except OSError:
            pass
    return False


def status(st: Mapping[str, Any]) -> str:
    if not _alive(st):
        return "stopped"
    if os.path.exists(os.path.join(st["_dir"], "exec.fifo")):
        return "created"
    if _frozen(st):
        return "paused"
    return "running"


def oci_state(st: Mapping[str, Any], stat: str | None = None) -> dict[str, Any]:
    """runc's ``state`` JSON."""
    s = stat or status(st)
    return {"ociVersion": st.get("ociVersion", "1.2.0"), "id": st["id"],
            "pid": st["pid"] if s != "stopped" else 0, "status": s,
            "bundle": st["bundle"], "rootfs": st["rootfs"], "created": st["created"],
            "owner": "", "annotations": st.get("annotations") or {}}


def parse_signal(value: str) -> int:
    """A signal: a number, a name, with or without ``SIG`` (runc's rules)."""
    v = value.strip()
    if v.isdigit():
        n = int(v)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = v.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(sig, signal.Signals):
            return int(sig)
    raise RuntimeError_(f"unknown signal {value!r}")


def cgroup_pids(st: Mapping[str, Any]) -> list[int]:
    """Every process of the container (its cgroup's cgroup.procs)."""
    for d in (st.get("cgroup_v2"), st.get("cgroup_procs")):
        if not d:
            continue
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            continue
    return [st["pid"]] if _alive(st) else []


def signal_pid(st: Mapping[str, Any], sig: int) -> None:
    """`sig` to the container's init, by pidfd (checked to be ours first)."""
    pid = st["pid"]
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise RuntimeError_("container not running") from None
    try:
        if proc_starttime(pid) != st.get("starttime"):
            raise RuntimeError_("container not running")
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        raise RuntimeError_("container not running") from None
    finally:
        os.close(fd)


def kill_all(st: Mapping[str, Any], sig: int) -> None:
    for pid in cgroup_pids(st):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(st: Mapping[str, Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(st) or (st.get("cgroup_v2") and _populated(st["cgroup_v2"])):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _populated(v2: str) -> bool:
    try:
        with open(os.path.join(v2, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except OSError:
        return False


def run_hooks(st: Mapping[str, Any], name: str, status_now: str, *, strict: bool) -> None:
    """The `name` hooks of the container, in order, each with the state on
    stdin, on the host (never inside the container).  `strict`: the first
    failure (an exit status other than 0, a timeout) raises; else warned."""
    hooks = (st.get("hooks") or {}).get(name) or []
    if not hooks:
        return
    import subprocess
    import sys

    state_json = json.dumps(oci_state(st, status_now)).encode()
    for h in hooks:
        args = h.get("args") or [h["path"]]
        try:
            r = subprocess.run(args, executable=h["path"], input=state_json,
                               env=dict(e.split("=", 1) for e in h.get("env", []) if "=" in e),
                               timeout=h.get("timeout"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, close_fds=True, cwd="/")
            err = None if r.returncode == 0 else (
                f"exit status {r.returncode}: {r.stderr.decode(errors='replace').strip()}")
        except subprocess.TimeoutExpired:
            err = f"timed out after {h.get('timeout')}s"
        except OSError as e:
            err = e.strerror or str(e)
        if err is not None:
            msg = f"error running {name} hook {h['path']}: {err}"
            if strict:
                raise RuntimeError_(msg)
            print(f"nsprim-runtime: warning: {msg}", file=sys.stderr)


def remove_cgroups(st: Mapping[str, Any]) -> None:
    """Remove the container's cgroup directories (recorded by create; what
    is left in them killed first), then nsprim's parents they leave empty,
    and the cgroup's lock file -- without importing nsprim.cgroup."""
    dirs = [d for d in st.get("cgroup_dirs") or [] if os.path.isdir(d)]
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            except OSError:
                pass
    deadline = time.monotonic() + 10
    for d in dirs:
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise RuntimeError_(f"cannot remove cgroup {d}: {e.strerror}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
    for d in dirs:
        try:
            os.rmdir(os.path.dirname(d))  # nsprim's parent, once empty
        except OSError:
            pass
    lock = st.get("cgroup_lock")
    if lock:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, "")
