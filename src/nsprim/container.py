"""Container: compose namespaces, a root filesystem and a process; and run().

A Container is started from a validated configuration (config.py) through a
plan (plan.py) executed by the C spawn engine.  Its process is tracked by a
pidfd.  The stdio arguments work like subprocess's.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

from nsprim import _spawn, devices, volumes
from nsprim._native import ffi, lib
from nsprim.cgroup import Cgroup, Limits, make_limits
from nsprim.config import Bind, ContainerConfig, IdMap, MountSpec, make_config, validate_env
from nsprim.errors import ConfigError, spawn_error
from nsprim.namespace import Namespace, NamespaceKind
from nsprim.network import NetworkMode, PortSpec
from nsprim.plan import Plan, build_plan
from nsprim.rootfs import OverlayRootfs, containers_dir
from nsprim.state import run_dir
from nsprim.volumes import Volume

if TYPE_CHECKING:  # imported where used: a --rootfs container needs neither
    from nsprim.images.store import Image
    from nsprim.network.bridge import Attachment

__all__ = ["Container", "CompletedContainer", "run", "PIPE", "DEVNULL", "STDOUT"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

StdioSpec = None | int | IO[Any]



class CompletedContainer(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What run() returns: subprocess's CompletedProcess plus container facts.

    `returncode` follows subprocess (negative: killed by that signal);
    `exit_code` follows docker (128+N when killed by signal N).
    """

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None,
                 container_id: str = "", oom_killed: bool = False):
        super().__init__(args, returncode, stdout, stderr)
        self.container_id = container_id
        self.oom_killed = oom_killed

    @property
    def exit_code(self) -> int:
        return self.returncode if self.returncode >= 0 else 128 - self.returncode


def _find_image(name: str) -> Image:
    """An image from the store, pulled first if it is not there (docker run)."""
    from nsprim.images.store import ImageNotFound, default_store, print_progress

    store = default_store()
    try:
        return store.get(name)
    except ImageNotFound:
        return store.pull(name, progress=print_progress())


def _uts_is_new(namespaces: Mapping[NamespaceKind | str, bool | Namespace] | None) -> bool:
    if not namespaces:
        return True
    for k, v in namespaces.items():
        if k in ("uts", NamespaceKind.UTS):
            return v is True
    return True


def _what(op: Any, what: int) -> str:
    """Which call of `op` failed (enum nsp_what), in words."""
    if what == lib.NSP_WHAT_TARGET:
        return f"resolving {op.dst} in the root"
    if what == lib.NSP_WHAT_SOURCE:
        return f"opening {op.src} on the host"
    if what == lib.NSP_WHAT_SETATTR:
        return f"setting the attributes of the mount on {op.dst}"
    if what == lib.NSP_WHAT_ATTACH:
        return f"mounting {op.src or op.fstype} on {op.dst}"
    return ""


class Container:
    """A process in its own namespaces, optionally in its own root filesystem.

    ``Container(argv, rootfs=DIR, ...).start()`` returns once the command has
    been exec'd (or raises the OSError of the setup step that failed).

    Namespaces: by default the container gets new pid, net, mnt, uts, ipc and
    cgroup namespaces.  ``namespaces={"net": False}`` keeps the host's;
    ``namespaces={"net": some_namespace}`` joins an existing one.
    ``user_namespace=IdMap(100000)`` adds a new user namespace in which
    container uid 0 is host uid 100000.

    Passed fds (``pass_fds``) are renumbered 3, 4, ... in the container (as
    socket activation expects); every other fd of the caller is closed.
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        rootfs: str | os.PathLike[str] | None = None,
        image: str | Image | None = None,
        entrypoint: Sequence[str] | None = None,
        hostname: str | None = None,
        env: Mapping[str, str] | Iterable[str] | None = None,
        cwd: str | None = None,
        user: str | int | tuple[int, int] | None = None,
        namespaces: Mapping[NamespaceKind | str, bool | Namespace] | None = None,
        user_namespace: IdMap | None = None,
        cap_add: Iterable[str] = (),
        cap_drop: Iterable[str] = (),
        no_new_privileges: bool = False,
        seccomp: str | os.PathLike[str] | Mapping[str, object] | None = "default",
        privileged: bool = False,
        devices: Iterable[str] = (),
        read_only: bool = False,
        mounts: Iterable[MountSpec] = (),
        masked_paths: Iterable[str] | None = None,
        readonly_paths: Iterable[str] | None = None,
        mount_dev: bool = True,
        mount_sys: bool = True,
        pass_fds: Iterable[int] = (),
        new_session: bool = False,
        die_with_parent: bool = False,
        tty: bool = False,
        init: bool = False,
        nondumpable: bool = False,
        user_root: str | None = None,
        container_id: str | None = None,
        keep_rootfs: bool = False,
        network: NetworkMode | str | None = None,
        cgroup: Cgroup | None = None,
        memory: str | int | None = None,
        memory_swap: str | int | None = None,
        cpus: str | float | None = None,
        cpu_shares: int | None = None,
        cpu_weight: int | None = None,
        cpuset: str | None = None,
        cpuset_mems: str | None = None,
        pids: int | None = None,
        device_read_bps: Iterable[str] = (),
        device_write_bps: Iterable[str] = (),
        limits: Limits | None = None,
        ulimits: Iterable[str] = (),
        sysctls: Mapping[str, str] | None = None,
        oom_score_adj: int | None = None,
        shm_size: int | str | None = None,
        group_add: Iterable[str | int] = (),
        stdin: StdioSpec = None,
        stdout: StdioSpec = None,
        stderr: StdioSpec = None,
    ) -> None:
        self.id = container_id or os.urandom(32).hex()
        self._keep_rootfs = keep_rootfs  # a named container: its layer outlives a run
        self._record_dir = container_id is not None  # its directory is a lifecycle record
        if hostname is None and _uts_is_new(namespaces):
            hostname = self.id[:12]  # docker's default
        self.image: Image | None = None
        if image is not None:
            if rootfs is not None:
                raise ConfigError("give an image or a rootfs, not both")
            from nsprim.images.store import Image

            self.image = image if isinstance(image, Image) else _find_image(image)
            argv = self.image.argv(list(argv) if argv else None,
                                   list(entrypoint) if entrypoint is not None else None)
            if not argv:
                raise ConfigError(f"no command specified (image {image!s} has no CMD or "
                                  "ENTRYPOINT)")
            env = self.image.env + list(validate_env(env))
            cwd = cwd or self.image.working_dir
            user = user if user is not None else self.image.user
            rootfs = os.path.join(containers_dir(), self.id, "merged")
        elif argv is None:
            raise ConfigError("no command given")
        self._overlay: OverlayRootfs | None = None
        if isinstance(network, str):
            network = NetworkMode.parse(network)
        self.network: NetworkMode = network or NetworkMode.NONE
        if self.network.kind != "none":
            if namespaces and any(k in ("net", NamespaceKind.NET) for k in namespaces):
                raise ConfigError("give network= or namespaces={'net': ...}, not both")
            namespaces = dict(namespaces or {})
            namespaces["net"] = self.network.kind != "host"  # bridge/container: at start()
        self.attachment: Attachment | None = None
        self._netns: Namespace | None = None
        self._etc_dir: str | None = None
        cfg = make_config(
            argv, rootfs=rootfs, hostname=hostname, env=env, cwd=cwd, user=user,
            namespaces=namespaces, user_namespace=user_namespace, cap_add=cap_add,
            cap_drop=cap_drop, no_new_privileges=no_new_privileges, seccomp=seccomp,
            privileged=privileged, devices=devices, read_only=read_only,
            mounts=mounts, masked_paths=masked_paths, readonly_paths=readonly_paths,
            mount_dev=mount_dev, mount_sys=mount_sys, pass_fds=pass_fds,
            new_session=new_session, die_with_parent=die_with_parent, tty=tty, init=init,
            nondumpable=nondumpable, user_root=user_root, ulimits=ulimits, sysctls=sysctls,
            oom_score_adj=oom_score_adj, shm_size=shm_size, group_add=group_add,
        )
        #: the terminal's master side when tty=True (the container has the slave)
        self.pty_master = -1
        self.config: ContainerConfig = cfg
        limit_args = dict(memory=memory, memory_swap=memory_swap, cpus=cpus,
                          cpu_shares=cpu_shares, cpu_weight=cpu_weight, cpuset=cpuset,
                          cpuset_mems=cpuset_mems, pids=pids)
        self._limits: Limits | None = None
        if limits is not None:  # ready limits (possibly none: a cgroup for accounting)
            if cgroup is not None or any(v is not None for v in limit_args.values()) or \
                    device_read_bps or device_write_bps:
                raise ConfigError("give limits or limit keywords or a cgroup, not several")
            self._limits = limits
        elif any(v is not None for v in limit_args.values()) or device_read_bps \
                or device_write_bps:
            if cgroup is not None:
                raise ConfigError("give a cgroup or limits (memory=, cpus=, ...), not both")
            self._limits = make_limits(device_read_bps=tuple(device_read_bps),
                                       device_write_bps=tuple(device_write_bps),
                                       **limit_args)  # type: ignore[arg-type]
        #: the container's cgroup: given, or created at start() for the limits
        self.cgroup: Cgroup | None = cgroup
        self._owns_cgroup = False
        self._oom_before = 0
        self.oom_killed = False
        self._stdio_spec = (stdin, stdout, stderr)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = None
        self.stdout: IO[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self._pidfd = -1
        self._plan: Plan | None = None

    # ------------------------------------------------------------ start
    def _open_stdio(self) -> tuple[list[int], list[int]]:
        """(fds for the child's 0, 1, 2; fds to close in the parent after spawn)"""
        child: list[int] = []
        close_after: list[int] = []
        if self.config.tty:
            # the child opens the terminal in its own /dev/pts and sends us the
            # master (NSP_OP_PTY); its slave becomes 0, 1 and 2
            return [0, 1, 2], []
        for i, spec in enumerate(self._stdio_spec):
            if spec is None:
                child.append(i)
            elif spec == PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                if i == 0:
                    child.append(r)
                    close_after.append(r)
                    self.stdin = open(w, "wb", buffering=0)
                else:
                    child.append(w)
                    close_after.append(w)
                    f = open(r, "rb", buffering=0)
                    if i == 1:
                        self.stdout = f
                    else:
                        self.stderr = f
            elif spec == DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                child.append(fd)
                close_after.append(fd)
            elif spec == STDOUT:
                if i != 2:
                    raise ValueError("STDOUT is only valid for stderr")
                child.append(child[1])
            elif isinstance(spec, int):
                if spec < 0:
                    raise ValueError(f"invalid fd for stdio: {spec}")
                child.append(spec)
            else:
                child.append(spec.fileno())
        return child, close_after

    def start(self) -> Container:
        """Create the namespaces, set up the root, exec the command."""
        if self.pid is not None:
            raise RuntimeError("container already started")
        try:
            if self._limits is not None and self.cgroup is None:
                try:
                    self.cgroup = Cgroup.create(self.id[:16], limits=self._limits)
                except OSError:
                    if self._limits != Limits():
                        raise
                    # a cgroup for accounting only (limits=Limits(): stats, pause):
                    # a host without usable cgroups runs the container without
                self._owns_cgroup = self.cgroup is not None
                if self.cgroup is not None and not self.config.privileged:
                    # docker's device rules (nodev holds without a cgroup too)
                    devices.apply(self.cgroup.fd, self.cgroup.v1_paths.get("devices"),
                                  devices.rules_for(self.config.devices))
            if self.image is not None:
                self._overlay = OverlayRootfs(self.image.layers, id=self.id,
                                              keep=self._keep_rootfs,
                                              reuse=self._record_dir).mount()
            self._start(self._resolve_network(self._resolve_volumes()))
        except BaseException:
            self._release_resources()
            raise
        return self

    def _resolve_network(self, cfg: ContainerConfig) -> ContainerConfig:
        """bridge: a network namespace made and wired before the container
        joins it; container:X: X's namespace."""
        mode = self.network
        if mode.kind not in ("bridge", "container"):
            return cfg
        ns = dict(cfg.namespaces)
        mounts = list(cfg.mounts)
        if mode.kind == "container":
            target = mode.target
            if isinstance(target, Namespace):
                self._netns = Namespace(os.dup(target.fd), NamespaceKind.NET)
            else:
                pid = target.pid if isinstance(target, Container) else target
                if not isinstance(pid, int):
                    raise ConfigError(f"unknown container {target!r} for network container:")
                self._netns = Namespace.of(pid, NamespaceKind.NET)
        else:
            from nsprim.network import bridge
            from nsprim.network.rtnl import Rtnl

            self._netns, inner = Rtnl.pooled_netns()
            publish = list(mode.publish)
            if mode.publish_all and self.image is not None:
                for p in self.image.exposed_ports:
                    port, _, proto = p.partition("/")
                    publish.append(PortSpec(int(port), 0, proto or "tcp"))
            self.attachment = bridge.attach(self.id, self._netns, inner=inner,
                                            publish=publish, bandwidth=mode.bandwidth)
            if cfg.rootfs is not None:
                self._etc_dir = os.path.join(run_dir(), "containers", self.id)
                files = bridge.write_etc_files(self._etc_dir, cfg.hostname or self.id[:12],
                                               self.attachment.address)
                taken = {m.target for m in mounts}
                mounts += [Bind(src, dst) for dst, src in files.items() if dst not in taken]
        ns[NamespaceKind.NET] = self._netns
        return dataclasses.replace(cfg, namespaces=ns, mounts=tuple(mounts))

    @property
    def ip_address(self) -> str | None:
        """The container's address on the bridge network, if it has one."""
        return self.attachment.address if self.attachment is not None else None

    @property
    def ports(self) -> list[dict[str, object]]:
        """Published ports: {proto, host_ip, host_port, container_port}."""
        return list(self.attachment.ports) if self.attachment is not None else []

    def _resolve_volumes(self) -> ContainerConfig:
        """Named volumes become binds of their directories (created, and filled
        from the image, on first use)."""
        cfg = self.config
        if not any(isinstance(mt, Volume) for mt in cfg.mounts):
            return cfg
        resolved: list[MountSpec] = []
        used: list[str] = []
        for mt in cfg.mounts:
            if not isinstance(mt, Volume):
                resolved.append(mt)
                continue
            info, created = volumes.create(mt.name)
            if created and self._overlay is not None:
                self._populate(info.mountpoint, mt.target)
            used.append(info.mountpoint)
            resolved.append(Bind(info.mountpoint, mt.target, readonly=mt.readonly))
        if self._overlay is not None:
            with open(os.path.join(self._overlay.dir, "volumes"), "w") as f:
                f.write("\n".join(used) + "\n")
        return dataclasses.replace(cfg, mounts=tuple(resolved))

    def _populate(self, data_dir: str, target: str) -> None:
        """Fill a new volume with what the image has at `target` (docker's
        rule); nothing there (or not a directory) is an empty volume."""
        assert self._overlay is not None
        fd = os.open(self._overlay.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sub = lib.nsp_openat2(fd, os.fsencode(target.lstrip("/") or "."),
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                                  lib.RESOLVE_IN_ROOT | lib.RESOLVE_NO_MAGICLINKS)
            if sub < 0:
                err = ffi.errno
                if err in (errno.ENOENT, errno.ENOTDIR):
                    return  # nothing in the image there
                raise OSError(err, f"reading {target} of the image to fill a volume failed: "
                              f"{os.strerror(err)}", target)
            try:
                volumes.populate(data_dir, sub)
            finally:
                os.close(sub)
        finally:
            os.close(fd)

    def _start(self, cfg: ContainerConfig) -> None:
        if self.cgroup is not None:
            self._oom_before = self.cgroup.oom_kills()
        stdio, close_after = self._open_stdio()
        try:
            plan = build_plan(cfg, (stdio[0], stdio[1], stdio[2]), self.cgroup)
            self._plan = plan
            child = _spawn.spawn(plan)
            self.pid = child.pid
            self._pidfd = child.pidfd
        except BaseException:
            self._close_pipes()
            raise
        finally:
            for fd in close_after:
                os.close(fd)
        with child.sock:
            try:
                master, failed = _spawn.handshake(child, self._write_id_maps)
            except BaseException:
                self._abort()
                raise
            self.pty_master = master
            if failed is not None:
                self._close_pipes()
                self._child_failed(plan, *failed)

    def _child_failed(self, plan: Plan, err: int, index: int, what: int = 0) -> NoReturn:
        """Reap the child that failed at op `index` (-1: the helper's exec of
        the command, the plan's last op) and raise its error, naming the call
        that failed when the op makes several."""
        self.wait()
        op = plan.ops[index] if -1 <= index < len(plan.ops) and plan.ops else None
        if op is None:
            raise spawn_error(err, "unknown")
        raise spawn_error(err, op.step, op.detail, _what(op, what))

    def _write_id_maps(self) -> None:
        m = self.config.user_namespace
        if m is None:
            return
        for name, text in (("uid_map", m.uid_map()), ("gid_map", m.gid_map())):
            path = f"/proc/{self.pid}/{name}"
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            except OSError as e:
                raise OSError(e.errno, f"writing {name} failed: {e.strerror}", path) from e
            finally:
                os.close(fd)

    def _abort(self) -> None:
        if self.returncode is None and self._pidfd >= 0:
            self.kill(signal.SIGKILL)
            self.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()
        if self.pty_master >= 0 and self.returncode is not None:
            os.close(self.pty_master)
            self.pty_master = -1

    # ------------------------------------------------------------ process
    @property
    def pidfd(self) -> int:
        """The pidfd tracking the container's first process (-1 once reaped)."""
        return self._pidfd

    def poll(self) -> int | None:
        """The return code if the process has ended, else None."""
        if self.returncode is None and self._pidfd >= 0:
            r = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            if r is not None and r.si_pid != 0:
                self._set_status(r)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's first process to end; return its code
        (negative: killed by that signal).  Raises subprocess.TimeoutExpired."""
        if self.returncode is not None:
            return self.returncode
        if self._pidfd < 0:
            raise RuntimeError("container not started")
        if timeout is not None:
            sel = selectors.DefaultSelector()
            with sel:
                sel.register(self._pidfd, selectors.EVENT_READ)
                if not sel.select(timeout):
                    raise subprocess.TimeoutExpired(list(self.config.argv), timeout)
        while True:
            try:
                r = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
                break
            except InterruptedError:
                continue
        assert r is not None
        self._set_status(r)
        assert self.returncode is not None
        return self.returncode

    def _set_status(self, r: os.waitid_result) -> None:
        if r.si_code == os.CLD_EXITED:
            self.returncode = r.si_status
        else:
            self.returncode = -r.si_status
        os.close(self._pidfd)
        self._pidfd = -1
        if self.cgroup is not None and not self.cgroup.removed:
            self.oom_killed = self.cgroup.oom_kills() > self._oom_before
        self._release_resources()

    def _release_resources(self) -> None:
        """Remove the cgroup we created (killing what is left in it) and the
        container layer of an image's overlay.  Idempotent."""
        if self._owns_cgroup and self.cgroup is not None:
            self.cgroup.remove()
            self._owns_cgroup = False
        if self._overlay is not None:
            self._overlay.close()
            self._overlay = None
        gone = self.returncode is not None and self.config.ns_setting(NamespaceKind.PID) is True
        if self._netns is not None:
            self._netns.close()  # our reference: the namespace dies with the container
            self._netns = None
        if self.attachment is not None:
            self.attachment.detach(netns_gone=gone)
            self.attachment = None
        if self._etc_dir is not None:
            shutil.rmtree(self._etc_dir, ignore_errors=True)
            self._etc_dir = None

    def send_signal(self, sig: int) -> None:
        """Signal the container's first process (no-op once it has been reaped)."""
        if self.returncode is None and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, input: bytes | None = None, timeout: float | None = None
                    ) -> tuple[bytes | None, bytes | None]:
        """Send `input`, read stdout/stderr to EOF, wait; like Popen.communicate."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: dict[int, list[bytes]] = {}
        sel = selectors.DefaultSelector()
        with sel:
            if self.stdin is not None:
                if input:
                    sel.register(self.stdin, selectors.EVENT_WRITE)
                else:
                    self.stdin.close()
            for f in (self.stdout, self.stderr):
                if f is not None:
                    out[f.fileno()] = []
                    sel.register(f, selectors.EVENT_READ)
            view = memoryview(input or b"")
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(list(self.config.argv), timeout or 0)
                for key, _ in sel.select(left):
                    fobj: Any = key.fileobj
                    if key.events & selectors.EVENT_WRITE:
                        try:
                            n = os.write(fobj.fileno(), view[:65536])
                        except BrokenPipeError:
                            n = len(view)
                        view = view[n:]
                        if not view:
                            sel.unregister(fobj)
                            fobj.close()
                    else:
                        chunk = os.read(fobj.fileno(), 65536)
                        if chunk:
                            out[fobj.fileno()].append(chunk)
                        else:
                            sel.unregister(fobj)
        stdout = b"".join(out[self.stdout.fileno()]) if self.stdout is not None else None
        stderr = b"".join(out[self.stderr.fileno()]) if self.stderr is not None else None
        self._close_pipes()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        return stdout, stderr

    # ------------------------------------------------------------ context
    def __enter__(self) -> Container:
        if self.pid is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_pipes()
        if self.pid is not None and self.returncode is None:
            self.kill(signal.SIGKILL)
            self.wait()
        self._close_pipes()  # the terminal's master, now that it has a return code

    def __repr__(self) -> str:
        state = ("created" if self.pid is None else
                 "running" if self.returncode is None else f"exited({self.returncode})")
        return f"<Container {self.id[:12]} {state} {list(self.config.argv)!r}>"


def run(
    argv: Sequence[str] | None = None,
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    **kwargs: Any,
) -> CompletedContainer:
    """Run `argv` in a new container and wait for it, like subprocess.run.

    Takes every keyword of :class:`Container`.  On timeout the container is
    killed and subprocess.TimeoutExpired raised; with `check`, a non-zero
    exit raises subprocess.CalledProcessError.
    """
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("capture_output cannot be combined with stdout or stderr")
        stdout = stderr = PIPE
    if input is not None:
        if stdin is not None:
            raise ValueError("input and stdin cannot both be given")
        stdin = PIPE
    c = Container(argv, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)
    with c:
        try:
            out, err = c.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
            raise
    assert c.returncode is not None
    args = list(c.config.argv)
    result = CompletedContainer(args, c.returncode, out, err, container_id=c.id,
                                oom_killed=c.oom_killed)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, args, out, err)
    return result
