"""Container: compose namespaces, a root filesystem and a process; and run().

A Container is started from a validated configuration (config.py) through a
plan (plan.py) executed by the C spawn engine.  Its process is tracked by a
pidfd.  The stdio arguments work like subprocess's.
"""

from __future__ import annotations

import _thread
import errno
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack

from nsprim import _record, _spawn, devices, volumes
from nsprim._native import ffi, lib
from nsprim.cgroup import Cgroup, CgroupStats, Limits, make_limits
from nsprim.config import Bind, ContainerConfig, IdMap, MountSpec, make_config, validate_env
from nsprim.errors import ConfigError, spawn_error
from nsprim.namespace import Namespace, NamespaceKind
from nsprim.network import NetworkMode, PortSpec
from nsprim.plan import Plan, build_plan
from nsprim.rootfs import OverlayRootfs, containers_dir
from nsprim.rootless import UserMapping
from nsprim.state import run_dir
from nsprim.volumes import Volume

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported where used: a --rootfs container needs neither
    from collections.abc import Callable
    from typing import IO, Any, NoReturn

    from nsprim.images.store import Image
    from nsprim.network.bridge import Attachment
    from nsprim.network.etc import EtcOptions
    from nsprim.network.rtnl import Rtnl
    from nsprim.network.user import NetAttachment
    from nsprim.pool import CgroupPool
    from nsprim.rootless import UserNet

__all__ = ["Container", "run", "PIPE", "DEVNULL", "STDOUT"]  # and CompletedContainer (lazily)

# subprocess's values: Container and run() take subprocess's own constants
PIPE = -1
STDOUT = -2
DEVNULL = -3

if TYPE_CHECKING:
    StdioSpec = None | int | IO[Any]
    #: Mapping is invariant in its key: a dict[str, ...] is not a
    #: Mapping[NamespaceKind | str, ...], so each key type is listed
    NamespacesArg = (Mapping[str, bool | Namespace] | Mapping[NamespaceKind, bool | Namespace]
                     | Mapping[NamespaceKind | str, bool | Namespace])

    from nsprim._completed import CompletedContainer as CompletedContainer


def __getattr__(name: str) -> Any:
    # CompletedContainer subclasses subprocess.CompletedProcess: subprocess
    # (with selectors, threading, locale) is imported by run(), not by every
    # user of Container (the CLI's 30 ms start)
    if name == "CompletedContainer":
        from nsprim._completed import CompletedContainer

        return CompletedContainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _find_image(name: str) -> Image:
    """An image from the store, pulled first if it is not there (docker run)."""
    from nsprim.images.store import ImageNotFound, default_store, print_progress

    store = default_store()
    try:
        return store.get(name)
    except ImageNotFound:
        return store.pull(name, progress=print_progress())


def _uts_is_new(namespaces: NamespacesArg | None) -> bool:
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

    Thread safety: wait, poll, kill, send_signal and exec may be called from
    any thread at once (subprocess.Popen's discipline: one thread reaps, the
    others get its code; a signal never reaches a reused fd).

    What a user must know:

    - **PID 1**: the command is PID 1 of its pid namespace, so the kernel
      gives it no signal it has no handler for (SIGTERM from ``terminate()``
      is ignored by most commands); use ``kill()``, or ``init=True`` for a
      small init that forwards signals and reaps.  When PID 1 exits, every
      other process of the container is killed.
    - **die_with_parent**: a process-level guarantee: the container is
      SIGKILLed when the calling *process* dies (SIGKILL included), whichever
      thread started it.  The kernel's PR_SET_PDEATHSIG fires when the
      cloning *thread* exits, so a container asked for from a thread other
      than the main one is cloned by one nsprim thread that lives as long as
      the process (``_ProcessSpawner``; clones from it are serialised).
    - **rootfs=DIR is the caller's own directory**: a container that may
      write there (no ``read_only=True``) changes it for good, and the
      mount points nsprim needs (``/proc``, ``/dev``, ``/sys``, targets of
      ``mounts``) are created in it when missing.  For copy-on-write, mount
      ``OverlayRootfs([DIR])`` and pass it (writes land in its upper layer).
    - **cgroups**: a limit (``memory=``, ``pids=``...) makes a cgroup of the
      container's own under the host-wide parent ``nsprim`` (named
      ``<state root id>-<container id>``); it is removed, everything left in
      it killed, when the first process is reaped -- after its accounting was
      read into ``stats`` (``memory_peak``, ``pids_peak``, ``cpu_time``).

    :param argv: the command and its arguments (an image's CMD/ENTRYPOINT
        when None and `image` is given).
    :param rootfs: the directory that becomes ``/`` (see above).
    :param image: an image name or :class:`~nsprim.images.store.Image`; its
        layers are mounted as an overlay, its config applied (docker's rules).
    :param entrypoint: replaces the image's ENTRYPOINT (``[]``: none).
    :param hostname: the uts hostname (default: the id's first 12 digits).
    :param env: variables (a mapping or ``KEY=VALUE`` strings) on top of
        PATH, HOSTNAME, HOME.
    :param cwd: the working directory, resolved inside the root.
    :param user: ``"name"``, ``"uid[:gid]"``, an int or ``(uid, gid)``,
        looked up in the container's /etc/passwd and /etc/group.
    :param namespaces: kind -> True (new), False (the caller's) or a
        :class:`Namespace` to join.
    :param user_namespace: an :class:`IdMap` for a new user namespace.
    :param cap_add: capabilities added to docker's 14 (``"ALL"`` too).
    :param cap_drop: capabilities removed (``"ALL"`` too).
    :param no_new_privileges: set no_new_privs (setuid binaries gain nothing).
    :param seccomp: ``"default"`` (docker's profile), ``"unconfined"``/None,
        a profile file or a dict in docker's format.
    :param privileged: docker's --privileged.
    :param devices: host devices, ``HOST[:CONTAINER[:rwm]]``.
    :param read_only: the root filesystem read-only.
    :param mounts: :class:`Bind`, :class:`Tmpfs` or :class:`Volume` mounts.
    :param masked_paths: paths hidden (default: docker's).
    :param readonly_paths: paths made read-only (default: docker's).
    :param mount_dev: mount a minimal /dev (default True).
    :param mount_sys: mount /sys read-only (default True).
    :param pass_fds: caller fds given to the container as 3, 4, ...
    :param new_session: kept for compatibility (the command always gets a
        session of its own).
    :param die_with_parent: see above.
    :param tty: a terminal of the container's own (``pty_master``).
    :param init: nsprim-init stays PID 1 (forwards signals, reaps).
    :param nondumpable: the process is non-dumpable until it execs (the
        caller's own dumpable flag is kept).
    :param user_root: where /etc/passwd and /etc/group are read (default:
        the rootfs).
    :param container_id: the id (64 hex digits; random by default).
    :param keep_rootfs: keep an image container's layer after it exits.
    :param network: a :class:`NetworkMode` or its name (``"none"``, the
        default; ``"host"``, ``"bridge"``, ``"container:ID"``).
    :param cgroup: an existing :class:`Cgroup` to run in (not removed).
    :param cgroup_pool: a :class:`~nsprim.pool.CgroupPool` to take a cgroup
        (with the pool's limits) from at start and give it back at exit.
    :param memory: a memory limit (docker sizes: ``"256m"``).
    :param memory_swap: memory plus swap (``-1``: unlimited).
    :param cpus: CPUs (``0.5``).
    :param cpu_shares: docker's --cpu-shares.
    :param cpu_weight: cgroup v2's cpu.weight.
    :param cpuset: the CPUs it may run on (``"0-1"``).
    :param cpuset_mems: the memory nodes it may use.
    :param pids: the most processes at once.
    :param device_read_bps: ``DEVICE:RATE`` read limits.
    :param device_write_bps: ``DEVICE:RATE`` write limits.
    :param stdin: None (inherit), PIPE, DEVNULL, an fd or a file object;
        likewise `stdout` and `stderr` (which also takes STDOUT).
    :param output_limit: bytes kept of each of stdout and stderr by
        communicate() (None: all); the rest is never held in memory.
    :param on_output_limit: past the limit, ``"kill"`` the container (the
        default) or ``"drain"`` (read and drop the rest).
    :param add_hosts: docker's ``--add-host``: ``"name:IP"`` strings (IPv6
        too; ``"name:host-gateway"``: the bridge's gateway) or a mapping
        name -> IP, added to /etc/hosts.
    :param dns: nameservers for /etc/resolv.conf (they replace the host's).
    :param dns_search: its search domains (``"."``: none).
    :param dns_options: its options (``"ndots:2"``).
    :param etc_files: bind /etc/hosts, /etc/hostname and /etc/resolv.conf of
        the container's own (docker's, see :mod:`nsprim.network.etc`); by
        default when `network` or `image` is given or an option above is, and
        always on the bridge.
    :param v1_accounting: with ready `limits` that limit nothing (a cgroup
        for accounting only) on a hybrid host, also join v1 hierarchies for
        memory, pids and cpu accounting (default); False skips those joins
        (the first costs an RCU grace period, ~10 ms): the container is only
        in its v2 cgroup (see :meth:`Cgroup.create`).
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
        namespaces: NamespacesArg | None = None,
        user_namespace: IdMap | UserMapping | str | None = None,
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
        extra_groups: Iterable[int] = (),
        groups_only: bool = False,
        wait_start_fd: int = -1,
        domainname: str | None = None,
        container_id: str | None = None,
        keep_rootfs: bool = False,
        network: NetworkMode | str | None = None,
        cgroup: Cgroup | None = None,
        cgroup_pool: CgroupPool | None = None,
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
        ulimits: Iterable[str] | Mapping[str, int | tuple[int, int]] = (),
        sysctls: Mapping[str, str] | None = None,
        oom_score_adj: int | None = None,
        shm_size: int | str | None = None,
        group_add: Iterable[str | int] = (),
        stdin: StdioSpec = None,
        stdout: StdioSpec = None,
        stderr: StdioSpec = None,
        output_limit: int | None = None,
        on_output_limit: str = "kill",
        add_hosts: Iterable[str] | Mapping[str, str] | None = None,
        dns: Iterable[str] | None = None,
        dns_search: Iterable[str] | None = None,
        dns_options: Iterable[str] | None = None,
        etc_files: bool | None = None,
        v1_accounting: bool = True,
    ) -> None:
        if output_limit is not None and (isinstance(output_limit, bool)
                                         or not isinstance(output_limit, int)
                                         or output_limit < 0):
            raise ConfigError(f"invalid output_limit {output_limit!r}: a number of bytes >= 0")
        if on_output_limit not in ("kill", "drain"):
            raise ConfigError(f"invalid on_output_limit {on_output_limit!r}: 'kill' or 'drain'")
        self.id = container_id or os.urandom(32).hex()
        #: --add-host, --dns* (checked before anything is created)
        self._etc_options = _etc_options(add_hosts, dns, dns_search, dns_options)
        nsmap: dict[NamespaceKind | str, bool | Namespace] = {
            k: v for k, v in (namespaces or {}).items()}
        self._keep_rootfs = keep_rootfs  # a named container: its layer outlives a run
        self._record_dir = container_id is not None  # its directory is a lifecycle record
        default_hostname = hostname is None and _uts_is_new(nsmap)
        if default_hostname:
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
        #: /etc/hosts, hostname, resolv.conf of the container's own in every
        #: network mode (docker's) when a mode was chosen, for an image, or
        #: with --add-host/--dns*; a bare network=None rootfs run gets none
        self._etc_wanted = (network is not None or image is not None or
                            self._etc_options is not None) if etc_files is None \
            else bool(etc_files)
        self.network: NetworkMode = network or NetworkMode.NONE
        if self.network.kind == "host" and default_hostname:
            from nsprim.network.etc import host_hostname

            hostname = host_hostname()  # docker: the host's, with the host's network
        if self.network.kind != "none":
            if any(k in ("net", NamespaceKind.NET) for k in nsmap):
                raise ConfigError("give network= or namespaces={'net': ...}, not both")
            nsmap["net"] = self.network.kind != "host"  # bridge/container: at start()
        self.attachment: Attachment | NetAttachment | None = None
        self._extra_attachments: list[NetAttachment] = []  # eth1...: network.extra
        self._pasta_wanted = False  # rootless default network (nsprim.rootless)
        self._usernet: UserNet | None = None
        self._netns: Namespace | None = None
        self._etc_dir: str | None = None
        #: what start() acquired on the host, each pushed as it is acquired
        #: (cgroup, overlay, network namespace, bridge attachment, /etc
        #: files) and released in reverse by _release_resources()
        self._resources = ExitStack()
        cfg = make_config(
            argv, rootfs=rootfs, hostname=hostname, env=env, cwd=cwd, user=user,
            namespaces=nsmap, user_namespace=user_namespace, cap_add=cap_add,
            cap_drop=cap_drop, no_new_privileges=no_new_privileges, seccomp=seccomp,
            privileged=privileged, devices=devices, read_only=read_only,
            mounts=mounts, masked_paths=masked_paths, readonly_paths=readonly_paths,
            mount_dev=mount_dev, mount_sys=mount_sys, pass_fds=pass_fds,
            new_session=new_session, die_with_parent=die_with_parent, tty=tty, init=init,
            nondumpable=nondumpable, user_root=user_root, extra_groups=extra_groups,
            groups_only=groups_only, wait_start_fd=wait_start_fd, domainname=domainname,
            ulimits=ulimits, sysctls=sysctls, oom_score_adj=oom_score_adj, shm_size=shm_size,
            group_add=group_add,
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
            if os.geteuid() != 0:  # rootless: only with delegation (nsprim.rootless)
                from nsprim.rootless import check_limits

                check_limits([k for k, v in limit_args.items() if v is not None]
                             + ["device_read_bps"] * bool(device_read_bps)
                             + ["device_write_bps"] * bool(device_write_bps))
            if cgroup is not None:
                raise ConfigError("give a cgroup or limits (memory=, cpus=, ...), not both")
            self._limits = make_limits(device_read_bps=tuple(device_read_bps),
                                       device_write_bps=tuple(device_write_bps),
                                       **limit_args)  # type: ignore[arg-type]
        if cgroup_pool is not None and (cgroup is not None or self._limits is not None):
            raise ConfigError("give a cgroup_pool, a cgroup or limits (memory=, ...), "
                              "only one")
        self._pool = cgroup_pool
        self._v1_accounting = v1_accounting
        #: the container's cgroup: given, taken from cgroup_pool at start(),
        #: or created at start() for the limits
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
        # subprocess.Popen's discipline: one thread reaps (_waitlock, held
        # while it blocks); the pidfd is closed under both locks, and signals
        # are sent under _fdlock, so no thread ever uses a closed (or reused)
        # fd number
        self._waitlock = _thread.allocate_lock()
        self._fdlock = _thread.allocate_lock()
        self._output_limit = output_limit
        self._on_output_limit = on_output_limit
        #: what communicate() has read so far, per stream (kept across a
        #: timeout, as subprocess does); True once a stream passed output_limit
        self._chunks: dict[int, list[bytes]] = {1: [], 2: []}
        self._sizes = {1: 0, 2: 0}
        self._open_streams: set[int] | None = None
        self._input_left: memoryview | None = None
        self.stdout_truncated = False
        self.stderr_truncated = False
        #: True once the container was killed for passing its output_limit
        self.output_limit_killed = False
        #: when the command was exec'd, and how long it ran (monotonic seconds)
        self.started_at: float | None = None
        self.duration: float | None = None
        #: the first process's resource usage (its own and its reaped children's)
        self.rusage: Any = None
        #: the accounting of the cgroup the container made for itself, read
        #: when it exited, before the cgroup was removed (None without one)
        self.stats: CgroupStats | None = None
        #: release what start() acquired when the first process is reaped
        #: (the asyncio front end releases in a worker instead)
        self._release_on_reap = True
        #: namespaces opened by exec() for its commands, closed with the container
        self._exec_ns: dict[NamespaceKind | str, bool | Namespace] | None = None

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
                    self.cgroup = Cgroup.create(self.id[:16], limits=self._limits,
                                                v1_accounting=self._v1_accounting)
                except OSError:
                    if self._limits != Limits():
                        raise
                    # a cgroup for accounting only (limits=Limits(): stats, pause):
                    # a host without usable cgroups runs the container without
                self._owns_cgroup = self.cgroup is not None
                if self.cgroup is not None:
                    self._resources.callback(self._release_cgroup)
                if self.cgroup is not None and not self.config.privileged \
                        and os.geteuid() == 0:
                    # docker's device rules (nodev holds without a cgroup too;
                    # rootless: a delegated cgroup takes no BPF program, and
                    # the user namespace makes no device nodes)
                    devices.apply(self.cgroup.fd, self.cgroup.v1_paths.get("devices"),
                                  devices.rules_for(self.config.devices))
            if self._pool is not None and self.cgroup is None:
                self.cgroup = self._pool.acquire()
                self._resources.callback(self._return_cgroup)
            if self.image is not None:
                rootless = isinstance(self.config.user_namespace, UserMapping)
                self._overlay = OverlayRootfs(self.image.layers, id=self.id,
                                              keep=self._keep_rootfs,
                                              reuse=self._record_dir,
                                              in_userns=rootless).mount()
                self._resources.callback(self._release_overlay)
                if rootless:  # rmi cannot see an overlay in the child's mount namespace
                    from nsprim.images.store import lease_layers

                    lease = lease_layers(self.image.layers)
                    if lease is not None:
                        self._resources.callback(lease.release)
            self._start(self._resolve_network(self._resolve_volumes()))
        except BaseException:
            self._release_resources()
            raise
        return self

    def _resolve_network(self, cfg: ContainerConfig) -> ContainerConfig:
        """bridge: a network namespace made and wired before the container
        joins it; container:X: X's namespace."""
        mode = self.network
        if mode.kind == "network":
            return self._join_network(cfg)
        if mode.kind not in ("bridge", "container"):
            return self._etc_files(cfg, None)
        if mode.kind == "bridge" and isinstance(cfg.user_namespace, UserMapping):
            # rootless: the container's own network namespace, wired by pasta
            # once its id maps are written (_write_id_maps)
            from nsprim.rootless import usermode_network_tool

            if usermode_network_tool() is None:
                from nsprim.rootless import RootlessError

                raise RootlessError("the default network without root needs pasta: install "
                                    "it (`apt-get install passt`), or use --network none "
                                    "or host")
            self._pasta_wanted = True
            return cfg
        if mode.kind == "bridge":
            from nsprim.network import bridge

            return self._attach_netns(cfg, lambda netns, inner, publish: bridge.attach(
                self.id, netns, inner=inner, publish=publish, bandwidth=mode.bandwidth))
        cfg = self._etc_files(cfg, None)  # container:X
        target = mode.target
        if isinstance(target, Namespace):
            self._netns = Namespace(os.dup(target.fd), NamespaceKind.NET)
        else:
            pid = target.pid if isinstance(target, Container) else target
            if not isinstance(pid, int):
                raise ConfigError(f"unknown container {target!r} for network container:")
            self._netns = Namespace.of(pid, NamespaceKind.NET)
        self._resources.callback(self._release_netns)
        ns = dict(cfg.namespaces)
        ns[NamespaceKind.NET] = self._netns
        return _record.replace(cfg, namespaces=ns)

    def _etc_files(self, cfg: ContainerConfig, address: str | None) -> ContainerConfig:
        """/etc/hosts, /etc/hostname and /etc/resolv.conf bound in for the
        none, host and container modes (docker's; see nsprim.network.etc):
        localhost always resolves.  container:X with a Container X takes
        X's files, as docker shares them."""
        if cfg.rootfs is None or not self._etc_wanted or \
                isinstance(cfg.user_namespace, UserMapping):
            return cfg
        mode = self.network
        files: dict[str, str] = {}
        target = mode.target
        if mode.kind == "container" and isinstance(target, Container) and \
                target._etc_dir is not None and self._etc_options is None:
            from nsprim.network.etc import ETC_TARGETS, etc_dir, etc_prefix

            files = {t: os.path.join(etc_dir(target._etc_dir),
                                     etc_prefix(target.id) + os.path.basename(t))
                     for t in ETC_TARGETS}
            files = {t: f for t, f in files.items() if os.path.exists(f)}
        if not files:
            from nsprim.network.etc import (
                HOST_GATEWAY,
                EtcOptions,
                etc_dir,
                etc_files,
                etc_prefix,
                write_files,
            )

            opts = self._etc_options or EtcOptions()
            gateway = None
            if any(ip == HOST_GATEWAY for _, ip in opts.add_hosts):
                from nsprim.network.bridge import host_gateway

                gateway = host_gateway()
            self._etc_dir = run_dir()
            self._resources.callback(self._release_etc_dir)
            files = write_files(etc_dir(self._etc_dir), etc_files(
                cfg.hostname or self.id[:12], address, domainname=cfg.domainname,
                options=opts, gateway=gateway, host_network=mode.kind == "host"),
                etc_prefix(self.id))
        taken = {m.target for m in cfg.mounts}
        mounts = list(cfg.mounts) + [Bind(src, dst) for dst, src in files.items()
                                     if dst not in taken]
        return _record.replace(cfg, mounts=tuple(mounts))

    def _join_network(self, cfg: ContainerConfig) -> ContainerConfig:
        """A user-defined network (nsprim.network.user): like the bridge,
        with the network's DNS at 127.0.0.11."""
        from nsprim.network import user

        mode = self.network
        if isinstance(cfg.user_namespace, UserMapping):
            raise ConfigError("user-defined networks need root")
        return self._attach_netns(
            cfg, lambda netns, inner, publish: user.attach(
                str(mode.target), self.id, netns, inner=inner, aliases=mode.aliases,
                ip=mode.ip, ip6=mode.ip6, publish=publish,
                upstream=self._etc_options.dns if self._etc_options is not None else None),
            nameservers=[user.DNS_ADDRESS])

    def _publish_specs(self) -> list[PortSpec]:
        """The ports to publish: the mode's, and with publish_all (-P) every
        port the image exposes, on a free host port."""
        publish = list(self.network.publish)
        if self.network.publish_all and self.image is not None:
            for p in self.image.exposed_ports:
                port, _, proto = p.partition("/")
                publish.append(PortSpec(int(port), 0, proto or "tcp"))
        return publish

    def _attach_netns(self, cfg: ContainerConfig,
                      attach: Callable[[Namespace, Rtnl, list[PortSpec]],
                                       Attachment | NetAttachment],
                      nameservers: list[str] | None = None) -> ContainerConfig:
        """What the default bridge and a user-defined network share: a new
        network namespace (from the pool), `attach(netns, inner, publish)`
        wiring it, and /etc/hosts, hostname, resolv.conf naming its address
        (`nameservers` replace the host's)."""
        from nsprim.network.rtnl import Rtnl

        self._netns, inner = Rtnl.pooled_netns()
        self._resources.callback(self._release_netns)
        self.attachment = attach(self._netns, inner, self._publish_specs())
        self._resources.callback(self._release_attachment)
        if self.network.extra:
            self._attach_extra()
            if nameservers is None:  # the bridge's container asks the networks' DNS
                from nsprim.network.user import DNS_ADDRESS

                nameservers = [DNS_ADDRESS]
        mounts = list(cfg.mounts)
        if cfg.rootfs is not None:
            from nsprim.network.bridge import write_etc_files
            from nsprim.network.etc import etc_dir, etc_prefix

            self._etc_dir = run_dir()
            self._resources.callback(self._release_etc_dir)
            files = write_etc_files(etc_dir(self._etc_dir), cfg.hostname or self.id[:12],
                                    self.attachment.address, domainname=cfg.domainname,
                                    options=self._etc_options,
                                    gateway=self.attachment.gateway,
                                    prefix=etc_prefix(self.id), nameservers=nameservers)
            taken = {m.target for m in mounts}
            mounts += [Bind(src, dst) for dst, src in files.items() if dst not in taken]
        ns = dict(cfg.namespaces)
        ns[NamespaceKind.NET] = self._netns
        return _record.replace(cfg, namespaces=ns, mounts=tuple(mounts))

    def _attach_extra(self) -> None:
        """The mode's other user-defined networks, after the first: eth1,
        eth2... each with its names in that network's DNS (``network
        connect`` of a created container, kept by docker across restarts)."""
        from nsprim.network import user

        assert self._netns is not None
        self._resources.callback(self._release_extra)
        upstream = self._etc_options.dns if self._etc_options is not None else None
        for slot, (name, aliases, ip, ip6) in enumerate(self.network.extra, 1):
            self._extra_attachments.append(user.attach(
                # its own netlink socket: the first attach closed `inner`
                name, self.id, self._netns, aliases=aliases, ip=ip, ip6=ip6,
                ifname=f"eth{slot}", ifindex=0, upstream=upstream or None))

    def _release_extra(self) -> None:
        gone = (self.returncode is not None
                and self.config.ns_setting(NamespaceKind.PID) is True)
        while self._extra_attachments:
            self._extra_attachments.pop().detach(netns_gone=gone)

    def _start_pasta(self) -> None:
        from nsprim.rootless import start_pasta

        assert self.pid is not None
        publish = [(p.container_port, p.host_port, p.proto,
                    "" if p.host_ip == "0.0.0.0" else p.host_ip)
                   for p in self._publish_specs()]
        d = os.path.join(run_dir(), "pasta")
        os.makedirs(d, 0o700, exist_ok=True)
        self._usernet = start_pasta(self.pid, publish, os.path.join(d, self.id + ".pid"))
        self._resources.callback(self._release_usernet)

    def _release_usernet(self) -> None:
        if self._usernet is not None:
            net, self._usernet = self._usernet, None
            net.close()

    @property
    def ip_address(self) -> str | None:
        """The container's address on the bridge network, if it has one."""
        return self.attachment.address if self.attachment is not None else None

    @property
    def ports(self) -> list[dict[str, object]]:
        """Published ports: {proto, host_ip, host_port, container_port}."""
        if self._usernet is not None:
            return list(self._usernet.ports)
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
            from nsprim import events  # docker's volume mount / unmount events

            events.volume("mount", mt.name, container=self.id, destination=mt.target,
                          propagation="", **{"read/write": str(not mt.readonly).lower()})
            self._resources.callback(events.volume, "unmount", mt.name, container=self.id)
        if self._overlay is not None:
            with open(os.path.join(self._overlay.dir, "volumes"), "w") as f:
                f.write("\n".join(used) + "\n")
        return _record.replace(cfg, mounts=tuple(resolved))

    def _populate(self, data_dir: str, target: str) -> None:
        """Fill a new volume with what the image has at `target` (docker's
        rule); nothing there (or not a directory) is an empty volume."""
        assert self._overlay is not None
        if self._overlay.in_userns:  # rootless: the overlay is not mounted here
            from nsprim.rootless import populate_volume

            populate_volume(data_dir, self._overlay.layers, target,
                            os.path.join(self._overlay.dir, "populate"))
            return
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
            ov = self._overlay
            plan = build_plan(cfg, (stdio[0], stdio[1], stdio[2]), self.cgroup,
                              parent_maps=self._pasta_wanted,
                              overlay=ov.mount_data() if ov is not None and ov.in_userns
                              else None)
            self._plan = plan
            child = _spawn_child(plan, cfg.die_with_parent)
            self.pid = child.pid
            self._pidfd = child.pidfd
        except BaseException:
            self._close_pipes()
            raise
        finally:
            for fd in close_after:
                os.close(fd)
        try:
            try:
                master, failed = _spawn.handshake(child, self._write_id_maps)
            except BaseException:
                self._abort()
                raise
            self.pty_master = master
            self.started_at = time.monotonic()
            if failed is not None:
                self._close_pipes()
                self._child_failed(plan, *failed)
        finally:
            child.sock.close()

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
        if isinstance(m, UserMapping):  # rootless: newuidmap, or setgroups denied first
            assert self.pid is not None
            m.write(self.pid)
            if self._pasta_wanted:
                self._start_pasta()
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
        """The return code if the process has ended, else None.  Safe from
        any thread: while another thread is in wait(), it returns None."""
        if self.returncode is not None or self.pid is None:
            return self.returncode
        if not self._waitlock.acquire(False):
            return None  # another thread is reaping (as Popen.poll)
        try:
            if self.returncode is None and self._pidfd >= 0:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
                if pid != 0:
                    self._reaped(status, ru)
        finally:
            self._waitlock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's first process to end; return its code
        (negative: killed by that signal).  Raises subprocess.TimeoutExpired.
        Safe from several threads at once: one reaps, all get the code."""
        if self.returncode is not None:
            return self.returncode
        if self.pid is None:
            raise RuntimeError("container not started")
        if timeout is None:
            self._waitlock.acquire()
        else:
            deadline = time.monotonic() + timeout
            if not self._waitlock.acquire(True, max(timeout, 0.0)):
                self._timeout_expired(timeout)
        try:
            if self.returncode is None:
                if timeout is not None:
                    import select

                    p = select.poll()
                    p.register(self._pidfd, select.POLLIN)
                    left = max(0.0, deadline - time.monotonic())
                    if not p.poll(int(left * 1000 + 0.999)):
                        self._timeout_expired(timeout)
                _pid, status, ru = os.wait4(self.pid, 0)
                self._reaped(status, ru)
        finally:
            self._waitlock.release()
        assert self.returncode is not None
        return self.returncode

    def _timeout_expired(self, timeout: float) -> NoReturn:
        import subprocess

        raise subprocess.TimeoutExpired(list(self.config.argv), timeout)

    def _reaped(self, status: int, rusage: Any) -> None:
        """The first process was reaped (under _waitlock): its code, then the
        pidfd closed, then what start() acquired released (stats first)."""
        self.rusage = rusage
        if self.started_at is not None:
            self.duration = time.monotonic() - self.started_at
        code = os.waitstatus_to_exitcode(status)
        with self._fdlock:
            self.returncode = code
            fd, self._pidfd = self._pidfd, -1
            os.close(fd)
        if self._release_on_reap:
            self._finish()

    def _finish(self) -> None:
        """After the reap: the cgroup's accounting and OOM kills read, then
        every resource released (blocking: the cgroup must empty)."""
        cg = self.cgroup
        if cg is not None and not cg.removed:
            try:
                self.oom_killed = cg.oom_kills() > self._oom_before
                if self._owns_cgroup:
                    self.stats = cg.stats()
            except OSError:
                pass
        self._close_exec_ns()
        self._release_resources()

    @property
    def cpu_time(self) -> tuple[float, float] | None:
        """(user, system) CPU seconds of the container, once it has exited:
        its cgroup's when it made one, else its first process's and the
        children that process reaped (getrusage)."""
        st = self.stats
        if st is not None and st.cpu_user_usec is not None and st.cpu_system_usec is not None:
            return st.cpu_user_usec / 1e6, st.cpu_system_usec / 1e6
        ru = self.rusage
        if ru is None:
            return None
        return float(ru.ru_utime), float(ru.ru_stime)

    # ------------------------------------------------------------ exec
    def _exec_namespaces(self) -> dict[NamespaceKind | str, bool | Namespace]:
        """The namespaces an exec'd command joins: each the container made or
        joined, opened once from its first process and kept until it exits."""
        with self._fdlock:
            if self._exec_ns is None:
                if self.pid is None or self.returncode is not None:
                    raise ProcessLookupError(errno.ESRCH, "the container is not running")
                ns: dict[NamespaceKind | str, bool | Namespace] = {}
                try:
                    for kind in (NamespaceKind.USER, NamespaceKind.MNT, NamespaceKind.UTS,
                                 NamespaceKind.IPC, NamespaceKind.NET, NamespaceKind.PID,
                                 NamespaceKind.CGROUP, NamespaceKind.TIME):
                        setting = self.config.ns_setting(kind)
                        ns[kind] = (Namespace.of(self.pid, kind)
                                    if setting is not False else False)
                except BaseException:
                    for v in ns.values():
                        if isinstance(v, Namespace):
                            v.close()
                    raise
                self._exec_ns = ns
            return dict(self._exec_ns)

    def _close_exec_ns(self) -> None:
        with self._fdlock:
            ns, self._exec_ns = self._exec_ns, None
        for v in (ns or {}).values():
            if isinstance(v, Namespace):
                v.close()

    def exec_start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | Iterable[str] | None = None,
        cwd: str | None = None,
        user: str | int | tuple[int, int] | None = None,
        stdin: StdioSpec = None,
        stdout: StdioSpec = None,
        stderr: StdioSpec = None,
        tty: bool = False,
        output_limit: int | None = None,
        on_output_limit: str = "kill",
    ) -> Container:
        """Start `argv` inside this running container (``docker exec``) and
        return it as a started Container (Popen-like: ``wait``,
        ``communicate``, ``kill``, ``stdout``...).

        The command joins every namespace the container has and its cgroup,
        and gets the container's capabilities, seccomp profile,
        no_new_privileges, environment (plus `env`), user (or `user`, looked
        up in the container's /etc/passwd) and working directory (or `cwd`,
        resolved inside the container).  It is spawned as the CLI's exec is:
        from a non-dumpable process, every other fd closed, a fresh session
        keyring.  In a container with its own pid namespace it dies with the
        container's first process.

        :param argv: the command and its arguments.
        :param env: extra variables (a mapping or ``KEY=VALUE`` strings).
        :param cwd: the working directory inside the container.
        :param user: ``"name"``, ``"uid[:gid]"``, an int, or ``(uid, gid)``.
        :param stdin: None (inherit), PIPE, DEVNULL, an fd or a file; likewise
            `stdout` and `stderr` (which also takes STDOUT).
        :param tty: give the command a terminal (``pty_master`` on the result).
        :param output_limit: bytes kept per stream by communicate().
        :param on_output_limit: ``"kill"`` or ``"drain"`` past the limit.
        """
        cfg = self.config
        ns = self._exec_namespaces()
        pid_ns_own = cfg.ns_setting(NamespaceKind.PID) is not False
        extra = list(validate_env(env))
        base = list(cfg.env)
        if cfg.hostname is not None and not any(e.startswith("HOSTNAME=") for e in base):
            base.insert(0, f"HOSTNAME={cfg.hostname}")
        c = Container(
            list(argv), namespaces=ns, env=base + extra, cwd=cwd or cfg.cwd or "/",
            user=user, user_root=f"/proc/{self.pid}/root", cgroup=self.cgroup,
            nondumpable=True, tty=tty,
            die_with_parent=cfg.die_with_parent and not pid_ns_own,
            stdin=stdin, stdout=stdout, stderr=stderr, output_limit=output_limit,
            on_output_limit=on_output_limit, seccomp=None,
            container_id=None)
        c.config = _record.replace(
            c.config, capabilities=cfg.capabilities, seccomp=cfg.seccomp,
            no_new_privileges=cfg.no_new_privileges, privileged=cfg.privileged,
            user=c.config.user if user is not None else cfg.user)
        c.id = self.id
        c._record_dir = False
        return c.start()

    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | Iterable[str] | None = None,
        cwd: str | None = None,
        user: str | int | tuple[int, int] | None = None,
        stdin: StdioSpec = None,
        stdout: StdioSpec = None,
        stderr: StdioSpec = None,
        capture_output: bool = False,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        raise_on_timeout: bool = True,
        tty: bool = False,
        output_limit: int | None = None,
        on_output_limit: str = "kill",
    ) -> CompletedContainer:
        """Run `argv` inside this running container and wait for it, as
        run() does for a new one (``docker exec``; see :meth:`exec_start`
        for what the command gets).  On timeout the command is killed (the
        container keeps running) and subprocess.TimeoutExpired raised with
        the output so far, or with ``raise_on_timeout=False`` a result with
        ``timed_out=True`` returned.  `check`: a non-zero exit raises
        subprocess.CalledProcessError.  The result's cpu_time is the
        command's own (getrusage)."""
        import subprocess

        stdin, stdout, stderr = _stdio_for_run(capture_output, input, stdin, stdout, stderr)
        c = self.exec_start(argv, env=env, cwd=cwd, user=user, stdin=stdin, stdout=stdout,
                            stderr=stderr, tty=tty, output_limit=output_limit,
                            on_output_limit=on_output_limit)
        timed_out = False
        with c:
            try:
                out, err = c.communicate(input, timeout)
            except subprocess.TimeoutExpired as e:
                timed_out = True
                c.kill()
                c.wait()
                c._drain_now()
                out, err = c._output(1), c._output(2)
                if raise_on_timeout:
                    e.output, e.stderr = out, err
                    raise
        result = _completed(c, out, err, timed_out)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, out, err)
        return result

    def hand_over(self) -> list[int]:
        """For a process that takes this running container over (the
        supervisor, before it execs its shim): the fds that keep the
        container's host resources owned -- the locks of its overlay, its
        cgroup and its lease, and the sockets holding its published ports --
        to be kept open (inheritable) while the container lives.  Our
        reference to its network namespace is closed: the container holds it."""
        fds: list[int] = []
        for holder in (self._overlay, self.cgroup if self._owns_cgroup else None,
                       self.attachment):
            if holder is not None:
                fds += holder.held_fds()
        for extra in self._extra_attachments:
            fds += extra.held_fds()
        if self.attachment is not None and self.pidfd >= 0:
            self.attachment.serve_detached(self.pidfd)  # the IPv6 ports' proxy
        self._release_netns()
        return fds

    def _release_resources(self) -> None:
        """Release what start() acquired, in reverse order of acquisition:
        the /etc files, the bridge attachment, our reference to the network
        namespace, the overlay (and its container layer), the cgroup we
        created (killing what is left in it).  Every release runs even if
        one fails; idempotent."""
        self._resources.close()

    def _release_cgroup(self) -> None:
        if self._owns_cgroup and self.cgroup is not None:
            self._owns_cgroup = False
            self.cgroup.remove()

    def _return_cgroup(self) -> None:
        if self._pool is not None and self.cgroup is not None:
            pool, cg, self.cgroup = self._pool, self.cgroup, None
            self._pool = None
            pool.release(cg)

    def _release_overlay(self) -> None:
        if self._overlay is not None:
            overlay, self._overlay = self._overlay, None
            overlay.close()

    def _release_netns(self) -> None:
        if self._netns is not None:
            netns, self._netns = self._netns, None
            netns.close()  # our reference: the namespace dies with the container

    def _release_attachment(self) -> None:
        if self.attachment is not None:
            gone = (self.returncode is not None
                    and self.config.ns_setting(NamespaceKind.PID) is True)
            attachment, self.attachment = self.attachment, None
            attachment.detach(netns_gone=gone)

    def _release_etc_dir(self) -> None:
        if self._etc_dir is not None:
            from nsprim.network.etc import remove_files

            remove_files(self._etc_dir, self.id)  # (_etc_dir: the run dir)
            self._etc_dir = None

    def send_signal(self, sig: int) -> None:
        """Signal the container's first process (no-op once it has been
        reaped; never another process, from any thread)."""
        with self._fdlock:
            if self.returncode is None and self._pidfd >= 0:
                try:
                    signal.pidfd_send_signal(self._pidfd, sig)
                except ProcessLookupError:
                    pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL (or `sig`) the container's first process."""
        self.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM the first process (as PID 1 it ignores signals it has no
        handler for: use kill() or init=True for a command that has none)."""
        self.send_signal(signal.SIGTERM)

    def kill_all(self) -> None:
        """SIGKILL every process of the container: its cgroup's when it has
        one, else its first process (which takes its pid namespace with it)."""
        cg = self.cgroup
        if cg is not None and (self._owns_cgroup or self._pool is not None) \
                and not cg.removed:
            try:
                cg.kill()
            except OSError:
                pass
        self.kill()

    def _take(self, stream: int, chunk: bytes) -> bool:
        """Keep what output_limit allows of `chunk` from stdout (1) or stderr
        (2); True when the stream just passed the limit and the container is
        to be killed."""
        limit = self._output_limit
        size = self._sizes[stream]
        self._sizes[stream] = size + len(chunk)
        if limit is None:
            self._chunks[stream].append(chunk)
            return False
        if size < limit:
            self._chunks[stream].append(chunk[:limit - size])
        if size + len(chunk) <= limit:
            return False
        first = size <= limit
        if stream == 1:
            self.stdout_truncated = True
        else:
            self.stderr_truncated = True
        return first and self._on_output_limit == "kill"

    def _output(self, stream: int) -> bytes | None:
        f = self.stdout if stream == 1 else self.stderr
        if f is None and not self._chunks[stream]:
            return None
        return b"".join(self._chunks[stream])

    def communicate(self, input: bytes | None = None, timeout: float | None = None
                    ) -> tuple[bytes | None, bytes | None]:
        """Send `input`, read stdout/stderr to EOF, wait; like Popen.communicate.

        On timeout, subprocess.TimeoutExpired carries what was read so far
        (``.stdout``/``.stderr``); a later communicate() goes on where it
        stopped and returns all of it.  With ``output_limit=N`` only the first
        N bytes of each stream are kept (``stdout_truncated``/
        ``stderr_truncated``) and the container is killed (``on_output_limit=
        "kill"``) or the rest read and dropped (``"drain"``)."""
        import selectors
        import subprocess

        deadline = None if timeout is None else time.monotonic() + timeout
        if self._open_streams is None:
            self._open_streams = {i for i, f in ((1, self.stdout), (2, self.stderr))
                                  if f is not None}
            if self.stdin is not None and input:
                self._input_left = memoryview(input)
            elif self.stdin is not None:
                self.stdin.close()
        sel = selectors.DefaultSelector()
        files = {1: self.stdout, 2: self.stderr}
        with sel:
            if self._input_left is not None and self.stdin is not None \
                    and not self.stdin.closed:
                sel.register(self.stdin, selectors.EVENT_WRITE)
            for i in self._open_streams:
                f = files[i]
                assert f is not None
                sel.register(f, selectors.EVENT_READ, i)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(list(self.config.argv), timeout or 0,
                                                    self._output(1), self._output(2))
                for key, _ in sel.select(left):
                    fobj: Any = key.fileobj
                    if key.events & selectors.EVENT_WRITE:
                        view = self._input_left
                        assert view is not None
                        try:
                            n = os.write(fobj.fileno(), view[:65536])
                        except BrokenPipeError:
                            n = len(view)
                        self._input_left = view = view[n:]
                        if not view:
                            sel.unregister(fobj)
                            fobj.close()
                    else:
                        chunk = os.read(fobj.fileno(), 65536)
                        if not chunk:
                            sel.unregister(fobj)
                            self._open_streams.discard(key.data)
                        elif self._take(key.data, chunk):
                            self.output_limit_killed = True
                            self.kill_all()
        stdout, stderr = self._output(1), self._output(2)
        self._close_pipes()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self.wait(left)
        except subprocess.TimeoutExpired as e:
            e.output, e.stderr = stdout, stderr
            raise
        return stdout, stderr

    def _drain_now(self) -> None:
        """Read what the pipes hold right now, without blocking (after a kill:
        the output written before it)."""
        import select

        for i, f in ((1, self.stdout), (2, self.stderr)):
            if f is None or f.closed or (self._open_streams is not None
                                         and i not in self._open_streams):
                continue
            p = select.poll()  # not select(): fds past 1023 are common in servers
            p.register(f.fileno(), select.POLLIN)
            for _ in range(1024):  # at most 64 MiB: a limit of its own
                if not p.poll(0):
                    break
                chunk = os.read(f.fileno(), 65536)
                if not chunk:
                    break
                self._take(i, chunk)

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


class _ProcessSpawner:
    """One thread that lives as long as the process and clones every
    die_with_parent container started from another thread.

    The kernel sends PR_SET_PDEATHSIG when the *thread* that cloned the
    child exits, not the process: a container started from a worker thread
    would die with the worker.  Cloned from here (or from the main thread,
    which lives as long as the interpreter), it dies when the process dies,
    whichever thread asked for it.  Only the clone runs here; the handshake
    stays with the caller."""

    _instance: _ProcessSpawner | None = None
    _guard = _thread.allocate_lock()

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: queue.SimpleQueue[tuple[Plan, list[Any], Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="nsprim-spawner",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> _ProcessSpawner:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
                os.register_at_fork(after_in_child=cls._forget)
            return cls._instance

    @classmethod
    def _forget(cls) -> None:
        cls._instance = None  # threads do not survive fork()
        cls._guard = _thread.allocate_lock()

    def _serve(self) -> None:
        while True:
            plan, box, done = self._queue.get()
            try:
                box.append(_spawn.spawn(plan))
            except BaseException as e:  # handed to the caller
                box.append(e)
            finally:
                done.release()

    def spawn(self, plan: Plan) -> _spawn.Child:
        box: list[Any] = []
        done = _thread.allocate_lock()
        done.acquire()
        self._queue.put((plan, box, done))
        done.acquire()
        if isinstance(box[0], BaseException):
            raise box[0]
        child: _spawn.Child = box[0]
        return child


def _spawn_child(plan: Plan, die_with_parent: bool) -> _spawn.Child:
    if die_with_parent:
        # without the threading module imported, no thread was started by it:
        # this is the main thread (and importing it costs the CLI 1 ms)
        threading = sys.modules.get("threading")
        if threading is not None and threading.current_thread() is not threading.main_thread():
            return _ProcessSpawner.get().spawn(plan)
    return _spawn.spawn(plan)


if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import Unpack

    class ContainerOptions(TypedDict, total=False):
        """The keywords of :class:`Container` that run() passes on."""

        rootfs: str | os.PathLike[str] | None
        image: str | Image | None
        entrypoint: Sequence[str] | None
        hostname: str | None
        env: Mapping[str, str] | Iterable[str] | None
        cwd: str | None
        user: str | int | tuple[int, int] | None
        namespaces: NamespacesArg | None
        user_namespace: IdMap | UserMapping | str | None
        cap_add: Iterable[str]
        cap_drop: Iterable[str]
        no_new_privileges: bool
        seccomp: str | os.PathLike[str] | Mapping[str, object] | None
        privileged: bool
        devices: Iterable[str]
        read_only: bool
        mounts: Iterable[MountSpec]
        masked_paths: Iterable[str] | None
        readonly_paths: Iterable[str] | None
        mount_dev: bool
        mount_sys: bool
        pass_fds: Iterable[int]
        new_session: bool
        die_with_parent: bool
        tty: bool
        init: bool
        nondumpable: bool
        user_root: str | None
        container_id: str | None
        keep_rootfs: bool
        network: NetworkMode | str | None
        cgroup: Cgroup | None
        cgroup_pool: CgroupPool | None
        memory: str | int | None
        memory_swap: str | int | None
        cpus: str | float | None
        cpu_shares: int | None
        cpu_weight: int | None
        cpuset: str | None
        cpuset_mems: str | None
        pids: int | None
        device_read_bps: Iterable[str]
        device_write_bps: Iterable[str]
        output_limit: int | None
        on_output_limit: str
        ulimits: Iterable[str] | Mapping[str, int | tuple[int, int]]
        sysctls: Mapping[str, str] | None
        oom_score_adj: int | None
        shm_size: int | str | None
        group_add: Iterable[str | int]
        domainname: str | None
        add_hosts: Iterable[str] | Mapping[str, str] | None
        dns: Iterable[str] | None
        dns_search: Iterable[str] | None
        dns_options: Iterable[str] | None
        etc_files: bool | None


def _etc_options(add_hosts: Iterable[str] | Mapping[str, str] | None,
                 dns: Iterable[str] | None, dns_search: Iterable[str] | None,
                 dns_options: Iterable[str] | None) -> EtcOptions | None:
    """The checked --add-host/--dns* options (None: none given)."""
    if not add_hosts and not dns and not dns_search and not dns_options:
        return None
    from nsprim.network.etc import etc_options

    return etc_options(add_hosts, dns, dns_search, dns_options)


def _completed(c: Container, out: bytes | None, err: bytes | None,
               timed_out: bool = False) -> CompletedContainer:
    from nsprim._completed import CompletedContainer

    assert c.returncode is not None
    st = c.stats
    return CompletedContainer(
        list(c.config.argv), c.returncode, out, err, container_id=c.id,
        oom_killed=c.oom_killed, duration=c.duration, timed_out=timed_out,
        cpu_time=c.cpu_time, memory_peak=None if st is None else st.memory_peak,
        pids_peak=None if st is None else st.pids_peak, stats=st,
        stdout_truncated=c.stdout_truncated, stderr_truncated=c.stderr_truncated)


def _stdio_for_run(capture_output: bool, input: bytes | None, stdin: StdioSpec,
                   stdout: StdioSpec, stderr: StdioSpec) -> tuple[StdioSpec, StdioSpec, StdioSpec]:
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("capture_output cannot be combined with stdout or stderr")
        stdout = stderr = PIPE
    if input is not None:
        if stdin is not None:
            raise ValueError("input and stdin cannot both be given")
        stdin = PIPE
    return stdin, stdout, stderr


def run(
    argv: Sequence[str] | None = None,
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    raise_on_timeout: bool = True,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    **kwargs: Unpack[ContainerOptions],
) -> CompletedContainer:
    """Run `argv` in a new container and wait for it, like subprocess.run.

    Takes every keyword of :class:`Container` (``output_limit`` and
    ``on_output_limit`` among them).

    :param input: bytes written to the command's stdin, which is then closed.
    :param capture_output: stdout and stderr are captured (``result.stdout``).
    :param timeout: seconds; then every process of the container is killed
        and subprocess.TimeoutExpired raised, carrying the output read until
        then (``.stdout``/``.stderr``) -- or, with ``raise_on_timeout=False``,
        a result with ``timed_out=True`` is returned.
    :param check: a non-zero exit raises subprocess.CalledProcessError.

    The result also carries ``duration``, ``cpu_time``, ``oom_killed`` and,
    when the container made a cgroup of its own (a limit was given),
    ``memory_peak``, ``pids_peak`` and ``stats``; ``stdout_truncated`` and
    ``stderr_truncated`` tell whether ``output_limit`` cut a stream.
    """
    import subprocess

    stdin, stdout, stderr = _stdio_for_run(capture_output, input, stdin, stdout, stderr)
    c = Container(argv, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)
    timed_out = False
    with c:
        try:
            out, err = c.communicate(input, timeout)
        except subprocess.TimeoutExpired as e:
            timed_out = True
            c.kill_all()
            c.wait()
            c._drain_now()  # what the container wrote before it was killed
            out, err = c._output(1), c._output(2)
            if raise_on_timeout:
                e.output, e.stderr = out, err
                raise
    result = _completed(c, out, err, timed_out)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, result.args, out, err)
    return result
