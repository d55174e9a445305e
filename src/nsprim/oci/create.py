"""The runtime's commands that spawn or touch cgroups: create, run, exec,
pause, resume, update.  Imported only by those commands (see cli.py).

``create`` checks the whole bundle first (nothing is made for a bad one),
then makes the state directory, the exec FIFO and the cgroup, and spawns the
container through :func:`nsprim.spec.to_container` with
``wait_start_fd``: the C child sets everything up, tells us it is created
(NSP_MSG_CREATED) and blocks reading the FIFO; we write the pid file, hand
the terminal to the console socket, run the hooks, write the state, and
exit -- the init stays behind, a child of our caller's subreaper.  A
failure at any step removes everything made so far.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import sys
from typing import Any

from nsprim.errors import ConfigError
from nsprim.oci import OCI_VERSION
from nsprim.oci import state as st_mod
from nsprim.oci.config import check_host, load_bundle, parse_resources, to_spec
from nsprim.oci.state import RuntimeError_
from nsprim.spec import ContainerSpec

__all__ = ["command", "create"]

_MAX_PROCESS = 1 << 20
_LIMIT_FIELDS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "cpuset_mems",
                 "pids_limit")


def command(root: str, a: Any) -> int | None:
    if a.cmd == "create":
        create(root, a.id, a.bundle, pid_file=a.pid_file, console_socket=a.console_socket,
               preserve_fds=a.preserve_fds)
        return None
    if a.cmd == "run":
        return _run(root, a)
    if a.cmd == "exec":
        return _exec(root, a)
    if a.cmd in ("pause", "resume"):
        st = st_mod.load(root, a.id)
        s = st_mod.status(st)
        if a.cmd == "pause" and s != "running":
            raise RuntimeError_("container not running")
        if a.cmd == "resume" and s != "paused":
            raise RuntimeError_("container not paused")
        cg = _cgroup_of(st)
        (cg.freeze if a.cmd == "pause" else cg.thaw)()
        return None
    if a.cmd == "update":
        _update(root, a)
        return None
    raise RuntimeError_(f"unknown command {a.cmd!r}")


def _cgroup_of(st: dict[str, Any]) -> Any:
    from nsprim.cgroup import Cgroup
    from nsprim.state import use_root

    use_root(st["nsprim_root"])
    if not st.get("cgroup_name"):  # rootless without a delegated cgroup v2 subtree
        raise RuntimeError_("the container has no cgroup (rootless, without a delegated "
                            "cgroup v2 subtree: see `nsprim system delegate`)")
    return Cgroup.open(st["cgroup_name"])


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _apply_inherited(spec: ContainerSpec) -> None:
    """rlimits, umask and oom_score_adj of the process the container is
    cloned from (ours, which exits after create): the child inherits them."""
    for name, (soft, hard) in spec.rlimits.items():
        res = getattr(resource, name, None)
        if res is None:
            raise ConfigError(f"config.json: rlimit {name} is not known on this host")
        inf = resource.RLIM_INFINITY
        lim = (inf if soft >= 2**64 - 1 else soft, inf if hard >= 2**64 - 1 else hard)
        try:
            resource.setrlimit(res, lim)
        except (ValueError, OSError) as e:
            raise ConfigError(f"setrlimit {name} {soft}:{hard} failed: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    if spec.umask is not None:
        os.umask(spec.umask)
    if spec.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(spec.oom_score_adj))


def _write_sysctl(pid: int, sysctl: dict[str, str]) -> None:
    """Each sysctl written from a thread in the container's namespace that
    owns it (net.* the network one, kernel.shm*/msg*/sem and fs.mqueue the
    ipc one, kernel.hostname/domainname the uts one)."""
    from nsprim.namespace import Namespace

    for key, value in sysctl.items():
        kind = "net" if key.startswith("net.") else (
            "uts" if key in ("kernel.hostname", "kernel.domainname") else "ipc")
        path = "/proc/sys/" + key.replace(".", "/")

        def write(p: str = path, v: str = value) -> None:
            fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.write(fd, v.encode())
            finally:
                os.close(fd)

        with Namespace.of(pid, kind) as ns:
            try:
                ns.run_in(write)
            except OSError as e:
                raise ConfigError(f"config.json: writing sysctl {key}={value!r} failed: "
                                  f"{e.strerror}") from None


def _send_console(path: str, master: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        socket.send_fds(s, [b"/dev/ptmx"], [master])


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def create(root: str, cid: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, preserve_fds: int = 0,
           foreground: bool = False) -> Any:
    """Create container `cid` from `bundle`; returns its Container (blocked
    until start)."""
    from nsprim import spec as spec_mod

    bundle = os.path.abspath(bundle)
    spec = to_spec(load_bundle(bundle), bundle, cid)
    check_host(spec)
    spec_mod.validate(spec)
    if spec.tty and console_socket is None and not foreground:
        raise RuntimeError_("cannot allocate tty if runc will detach without setting "
                            "console socket")
    if preserve_fds < 0 or preserve_fds > 1024:
        raise RuntimeError_(f"invalid --preserve-fds {preserve_fds}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    cdir = st_mod.container_dir(root, cid)
    try:
        os.mkdir(cdir, 0o700)
    except FileExistsError:
        raise RuntimeError_(f"container with id exists: {cid}") from None
    child = None
    cg = None
    try:
        from nsprim import devices
        from nsprim.cgroup import Cgroup, make_limits
        from nsprim.state import use_root

        nsprim_root = os.path.join(root, ".nsprim")
        use_root(nsprim_root)
        fifo = os.path.join(cdir, "exec.fifo")
        os.mkfifo(fifo, 0o600)
        ffd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        limits = {f: getattr(spec, f) for f in _LIMIT_FIELDS}
        # limits, rlimits and sysctls are applied here, runc's way: the
        # cgroup below, rlimits inherited (_apply_inherited), sysctls written
        # from the container's namespaces once it exists
        bare = dataclasses.replace(spec, memory=None, memory_swap=None, cpus=None,
                                   cpu_shares=None, cpuset_cpus=None, cpuset_mems=None,
                                   pids_limit=None, rlimits={}, sysctls={})
        c = spec_mod.to_container(bare, tty=spec.tty, wait_start_fd=ffd,
                                  pass_fds=tuple(range(3, 3 + preserve_fds)))
        if os.geteuid() != 0:
            # rootless: a cgroup only in a delegated v2 subtree (nsprim.rootless);
            # limits without one are refused in one line
            from nsprim.rootless import check_limits, delegated_cgroup

            check_limits([f"linux.resources ({k})" for k, v in limits.items()
                          if v is not None])
        if os.geteuid() == 0 or delegated_cgroup() is not None:
            cg = Cgroup.create(spec.id[:16], limits=make_limits(
                memory=limits["memory"], memory_swap=limits["memory_swap"],
                cpus=limits["cpus"], cpu_shares=limits["cpu_shares"],
                cpuset=limits["cpuset_cpus"], cpuset_mems=limits["cpuset_mems"],
                pids=limits["pids_limit"]))
        if cg is not None and os.geteuid() == 0:
            devices.apply(cg.fd, cg.v1_paths.get("devices"),
                          devices.rules_for(c.config.devices))
        c.cgroup = cg
        _apply_inherited(spec)
        c.start()
        child = c
        os.close(ffd)
        st: dict[str, Any] = {
            "_dir": cdir, "ociVersion": OCI_VERSION, "id": cid, "pid": c.pid,
            "starttime": st_mod.proc_starttime(c.pid), "bundle": bundle,
            "rootfs": spec.rootfs, "created": _now(), "annotations": dict(spec.labels),
            "hooks": dict(spec.hooks), "nsprim_root": nsprim_root,
            "cgroup_name": cg and cg.name, "cgroup_v2": cg and cg.v2_path,
            "cgroup_freezer": cg and cg.v1_paths.get("freezer"),
            "cgroup_procs": cg and (cg.v1_paths.get("memory") or cg.v1_paths.get("pids")),
            # what delete removes without importing nsprim.cgroup
            "cgroup_dirs": sorted({*cg.v1_paths.values(), *([cg.v2_path] if cg.v2_path
                                                            else [])}) if cg else [],
            "cgroup_lock": cg and _cgroup_lock(cg.name),
        }
        with open(os.path.join(cdir, "spec.json"), "w") as f:
            json.dump(spec.to_json(), f)
        st_mod.save(st)
        if spec.sysctls:
            _write_sysctl(c.pid, dict(spec.sysctls))
        if c.pty_master >= 0 and console_socket is not None:
            _send_console(console_socket, c.pty_master)
        st_mod.run_hooks(st, "prestart", "created", strict=True)
        st_mod.run_hooks(st, "createRuntime", "created", strict=True)
        st_mod.run_hooks(st, "createContainer", "created", strict=True)
        if pid_file is not None:
            _write_pid_file(pid_file, c.pid)
        return c
    except BaseException:
        if child is not None:
            child.kill(signal.SIGKILL)
            child.wait()
        if cg is not None:
            cg.remove()
        shutil.rmtree(cdir, ignore_errors=True)
        raise


def _cgroup_lock(name: str) -> str:
    from nsprim.cgroup import _lock_path

    return _lock_path(name)


def _run(root: str, a: Any) -> int:
    from nsprim.oci import cli

    c = create(root, a.id, a.bundle, pid_file=a.pid_file, console_socket=a.console_socket,
               preserve_fds=a.preserve_fds, foreground=not a.detach)
    try:
        cli._start(root, a.id)
    except BaseException:
        cli._delete(root, a.id, True)
        raise
    if a.detach:
        return 0
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2):
        signal.signal(s, lambda n, _f: c.send_signal(n))
    if c.pty_master >= 0 and a.console_socket is None:
        # runc run with a terminal: ours, raw, copied to and from the container's
        from nsprim.terminal import proxy

        proxy(c.pty_master, lambda: c.poll() is not None, stdin=0, stdout=1)
    code = int(c.wait())
    if not a.keep:
        cli._delete(root, a.id, True)
    return code if code >= 0 else 128 - code


def _read_process(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_PROCESS + 1)
    except OSError as e:
        raise RuntimeError_(f"opening process file {path} failed: {e.strerror}") from None
    if len(raw) > _MAX_PROCESS:
        raise RuntimeError_(f"process file {path} is larger than {_MAX_PROCESS} bytes")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RuntimeError_(f"process file {path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise RuntimeError_(f"process file {path} is not a JSON object")
    return data


def _exec(root: str, a: Any) -> int:
    from nsprim.oci.config import to_spec as _to_spec
    from nsprim.spec import exec_container

    st = st_mod.load(root, a.id)
    s = st_mod.status(st)
    if s == "stopped":
        raise RuntimeError_("cannot exec in a stopped container")
    if s == "paused" and not a.ignore_paused:
        raise RuntimeError_("cannot exec in a paused container (use --ignore-paused)")
    with open(os.path.join(st["_dir"], "spec.json")) as f:
        spec = ContainerSpec.from_json(json.load(f))
    if a.process:
        proc = _read_process(a.process)
        # checked as config.json's process is (the same field names)
        pspec = _to_spec({"ociVersion": OCI_VERSION, "root": {"path": spec.rootfs or "/"},
                          "process": proc,
                          "linux": {"namespaces": [{"type": "mount"}]}}, "/", a.id)
        argv = list(pspec.cmd)
        env = list(pspec.env)
        user = pspec.user
        cwd = pspec.workdir
        tty = pspec.tty
        caps = pspec.cap_add if "capabilities" in proc else spec.cap_add
        nnp = pspec.no_new_privileges or spec.no_new_privileges
    else:
        if not a.command:
            raise RuntimeError_("exec: no command given")
        argv = list(a.command)
        env = list(a.env)
        user = a.user
        cwd = a.cwd
        tty = a.tty
        caps = tuple(sorted(set(spec.cap_add) | {c.upper().removeprefix("CAP_")
                                                 for c in a.cap}))
        nnp = a.no_new_privs or spec.no_new_privileges
    if tty and a.console_socket is None and a.detach:
        raise RuntimeError_("cannot allocate tty if runc will detach without setting "
                            "console socket")
    from nsprim.state import use_root

    use_root(st["nsprim_root"])
    spec = dataclasses.replace(spec, cap_add=caps, cap_drop=("ALL",), no_new_privileges=nnp)
    try:
        c = exec_container(spec, st["pid"], argv, env=env, user=user, workdir=cwd, tty=tty,
                           die_with_parent=not a.detach,
                           pass_fds=tuple(range(3, 3 + a.preserve_fds)))
        c.start()
    except OSError as e:
        if getattr(e, "step", None) in ("chdir", "workdir"):
            # runc's words: the working directory, not the command, is missing
            raise RuntimeError_(f'exec failed: unable to start container process: chdir to '
                                f'cwd ("{cwd}") set in config.json failed: '
                                f'{os.strerror(e.errno or 0).lower()}') from None
        if isinstance(e, FileNotFoundError):
            raise RuntimeError_(f'exec failed: unable to start container process: exec: '
                                f'"{argv[0]}": executable file not found in $PATH ({e})'
                                ) from None
        if isinstance(e, PermissionError):
            raise RuntimeError_(f'exec failed: unable to start container process: exec: '
                                f'"{argv[0]}": permission denied ({e})') from None
        raise
    if c.pty_master >= 0 and a.console_socket is not None:
        _send_console(a.console_socket, c.pty_master)
    if a.pid_file:
        _write_pid_file(a.pid_file, c.pid)
    if a.detach:
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: c.send_signal(n))
    code = c.wait()
    sys.stdout.flush()
    return int(code if code >= 0 else 128 - code)


def _update(root: str, a: Any) -> None:
    from nsprim.cgroup import make_limits

    st = st_mod.load(root, a.id)
    if st_mod.status(st) == "stopped":
        raise RuntimeError_("container not running")
    res: dict[str, Any] = {}
    if a.resources:
        raw = sys.stdin.buffer.read(_MAX_PROCESS + 1) if a.resources == "-" else open(
            a.resources, "rb").read(_MAX_PROCESS + 1)
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise RuntimeError_(f"update: resources are not JSON: {e}") from None
        if not isinstance(data, dict):
            raise RuntimeError_("update: resources are not a JSON object")
        res = parse_resources(data)
    if a.memory is not None:
        res["memory"] = a.memory
    if a.pids_limit is not None:
        res["pids_limit"] = a.pids_limit
    limits = make_limits(memory=res.get("memory"), memory_swap=res.get("memory_swap"),
                         cpus=res.get("cpus"), cpu_shares=res.get("cpu_shares"),
                         cpuset=res.get("cpuset_cpus"), cpuset_mems=res.get("cpuset_mems"),
                         pids=res.get("pids_limit"))
    _cgroup_of(st).set_limits(limits)
