"""ContainerSpec: one description of a container, from the docker flags to
the record on disk to the Container that runs it.

``nsprim run``'s flags become a :class:`ContainerSpec` (:func:`from_run_flags`);
:func:`validate` lists every check, run before anything is created; the
record on disk is the spec as JSON (``spec.json``), which the supervisor,
``start``, ``restart``, ``inspect`` and ``ps`` all read back
(:meth:`ContainerSpec.from_json`); :func:`to_container` builds the Container
it describes.  Values keep docker's spellings (``-v`` strings, ``"256m"``,
``"on-failure:3"``), so the JSON reads like the command line that made it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from nsprim import _record
from nsprim._record import field, record
from nsprim.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ContainerSpec", "validate", "to_container", "exec_container", "from_run_flags",
           "parse_volume",
           "parse_tmpfs", "parse_uidmap", "env_list", "security_opts", "RESTART"]

RESTART = re.compile(r"no|always|unless-stopped|on-failure(:[0-9]{1,9})?", re.ASCII)
_OCTAL_MODE = re.compile(r"[0-7]{1,4}", re.ASCII)


@record(frozen=True)
class ContainerSpec:
    """A container as docker's flags describe it (frozen, JSON-serialisable)."""

    # identity
    id: str = ""
    name: str | None = None
    created: float = 0.0
    # root
    image: str | None = None
    image_id: str | None = None
    rootfs: str | None = None
    read_only: bool = False
    volumes: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    # process
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    tty: bool = False
    interactive: bool = False
    init: bool = False
    # network
    network: str = "bridge"
    publish: tuple[str, ...] = ()
    publish_all: bool = False
    network_bandwidth: str | None = None
    # ids and security
    userns_map: str | None = None
    userns: str | None = None  # rootless: auto, full, single, keep-id (nsprim.rootless)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    seccomp: str | Mapping[str, Any] = "default"
    privileged: bool = False
    devices: tuple[str, ...] = ()
    # limits
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    device_read_bps: tuple[str, ...] = ()
    device_write_bps: tuple[str, ...] = ()
    # lifecycle
    restart: str = "no"
    auto_remove: bool = False
    detach: bool = False
    stop_signal: str | None = None
    stop_timeout: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # what an OCI runtime-spec bundle carries beyond docker's flags (nsprim.oci)
    #: None: docker's lists
    masked_paths: tuple[str, ...] | None = None
    readonly_paths: tuple[str, ...] | None = None
    #: kind -> "host" (the caller's) or a namespace file to join; absent: new
    namespaces: Mapping[str, str] = field(default_factory=dict)
    additional_gids: tuple[int, ...] = ()
    #: the supplementary groups are additional_gids only (OCI), none from /etc/group
    additional_gids_only: bool = False
    domainname: str | None = None
    #: applied by the front end to the process it spawns from (inherited):
    #: RLIMIT name ("RLIMIT_NOFILE") -> [soft, hard], umask, oom_score_adj
    rlimits: Mapping[str, Sequence[int]] = field(default_factory=dict)
    umask: int | None = None
    oom_score_adj: int | None = None
    #: written in the container's namespaces once it exists
    sysctl: Mapping[str, str] = field(default_factory=dict)
    #: OCI hooks (runtime-spec shape), run by the OCI front end on the host
    hooks: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in _record.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (
                dict(v) if isinstance(v, Mapping) else v)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerSpec:
        """The spec of a record (unknown keys are ignored, missing ones take
        their defaults: records of older versions load)."""
        kw: dict[str, Any] = {}
        for f in _record.fields(cls):
            if f.name not in data or data[f.name] is None and f.name in _NOT_NONE:
                continue
            v = data[f.name]
            if isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
        return cls(**kw)


_NOT_NONE = {"cmd", "env", "volumes", "tmpfs", "publish", "cap_add", "cap_drop", "devices",
             "device_read_bps", "device_write_bps", "labels", "restart", "network",
             "seccomp", "namespaces", "additional_gids", "rlimits", "sysctl", "hooks"}


# ------------------------------------------------------------ docker flags

def parse_volume(spec: str) -> Any:
    """``-v /host:/ctr[:ro]`` (a bind: the host path must exist) or
    ``-v NAME:/ctr[:ro]`` (a named volume, created on first use)."""
    from nsprim.config import Bind, validate_mount_target
    from nsprim.volumes import Volume

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"invalid volume specification {spec!r}: expected SRC:DST[:ro|rw]")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ConfigError(f"invalid volume mode {mode!r} in {spec!r}: expected ro or rw")
    if not parts[1].startswith("/"):
        raise ConfigError(f"invalid volume specification {spec!r}: the container path "
                          "must be absolute")
    try:
        validate_mount_target(parts[1], "volume target", proc_files=parts[0].startswith("/"))
    except ConfigError as e:
        raise ConfigError(f"invalid volume specification {spec!r}: {e}") from None
    if not parts[0].startswith("/"):
        if "/" in parts[0] or parts[0].startswith("."):
            raise ConfigError(f"invalid volume specification {spec!r}: a host path must be "
                              "absolute; a volume name has no '/'")
        return Volume(parts[0], parts[1], readonly=mode == "ro")
    if not os.path.exists(parts[0]):
        raise ConfigError(f"invalid volume {spec!r}: host path {parts[0]!r} does not exist")
    return Bind(parts[0], parts[1], readonly=mode == "ro")


def parse_tmpfs(spec: str) -> Any:
    """``--tmpfs /dst[:size=...,mode=...,ro]``."""
    from nsprim.config import Tmpfs
    from nsprim.units import parse_size

    target, _, opts = spec.partition(":")
    size = None
    mode = 0o1777
    ro = False
    for o in filter(None, opts.split(",")):
        k, _, v = o.partition("=")
        try:
            if k == "size":
                size = parse_size(v, "tmpfs size")
            elif k == "mode" and _OCTAL_MODE.fullmatch(v):
                mode = int(v, 8)
            elif k in ("ro", "rw"):
                ro = k == "ro"
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"invalid tmpfs option {o!r} in {spec!r}") from None
    return Tmpfs(target, size=size, mode=mode, readonly=ro)


def parse_uidmap(spec: str) -> Any:
    """``--userns-map HOSTUID[:SIZE]``."""
    from nsprim.config import IdMap

    if not all(re.fullmatch(r"[0-9]{1,10}", p, re.ASCII) for p in spec.split(":")):
        raise ConfigError(f"invalid --userns-map {spec!r}: expected HOSTUID[:SIZE]")
    parts = [int(p) for p in spec.split(":")]
    if len(parts) == 1:
        return IdMap(parts[0])
    if len(parts) == 2:
        return IdMap(parts[0], size=parts[1])
    raise ConfigError(f"invalid --userns-map {spec!r}: expected HOSTUID[:SIZE]")


def env_list(values: Sequence[str]) -> list[str]:
    """``-e`` values as KEY=VALUE; every name is checked, also one that is
    not set here (docker's ``-e NAME`` takes the caller's value)."""
    from nsprim.config import validate_env_key

    out = []
    for v in values:
        validate_env_key(v.partition("=")[0])
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


def security_opts(opts: Sequence[str]) -> dict[str, Any]:
    """--security-opt values -> the spec's security fields (docker's
    spellings: ``key=value`` or ``key:value``).  A seccomp profile file is
    read now and kept in the spec, as docker does."""
    from nsprim.seccomp import load_profile

    out: dict[str, Any] = {"no_new_privileges": False, "seccomp": "default"}
    for opt in opts:
        key, sep, val = opt.partition("=")
        if not sep:
            key, sep, val = opt.partition(":")
        if key == "no-new-privileges" and val in ("", "true", "false"):
            out["no_new_privileges"] = val != "false"
        elif key == "seccomp" and val in ("unconfined", "default"):
            out["seccomp"] = val
        elif key == "seccomp" and val:
            out["seccomp"] = dict(load_profile(val).data)
        elif key in ("apparmor", "label") and val in ("unconfined", "disable"):
            pass  # no AppArmor or SELinux confinement is applied here to lift
        else:
            raise ConfigError(f"invalid --security-opt: {opt!r}")
    return out


def from_run_flags(a: Any, image: str | None, cmd: Sequence[str]) -> ContainerSpec:
    """The spec of ``nsprim run``'s parsed flags `a` (values are checked by
    :func:`validate`, except the security options, read here)."""
    return ContainerSpec(
        name=a.name, image=image, rootfs=a.rootfs, cmd=tuple(cmd),
        entrypoint=None if a.entrypoint is None else ((a.entrypoint,) if a.entrypoint
                                                      else ()),
        hostname=a.hostname, env=tuple(env_list(a.env)), workdir=a.workdir, user=a.user,
        network=a.network, publish=tuple(a.publish), publish_all=a.publish_all,
        network_bandwidth=a.network_bandwidth, userns_map=a.userns_map,
        userns=getattr(a, "userns", None),
        cap_add=tuple(a.cap_add), cap_drop=tuple(a.cap_drop), **security_opts(a.security_opt),
        privileged=a.privileged, devices=tuple(a.device), read_only=a.read_only,
        volumes=tuple(a.volume), tmpfs=tuple(a.tmpfs), memory=a.memory,
        memory_swap=a.memory_swap, cpus=a.cpus, cpu_shares=a.cpu_shares,
        cpuset_cpus=a.cpuset_cpus, cpuset_mems=a.cpuset_mems, pids_limit=a.pids_limit,
        device_read_bps=tuple(a.device_read_bps), device_write_bps=tuple(a.device_write_bps),
        restart=a.restart, auto_remove=a.rm, tty=a.tty, interactive=a.interactive,
        init=a.init, detach=a.detach, stop_signal=a.stop_signal,
        stop_timeout=a.stop_timeout)


# -------------------------------------------------------------- validation

def validate(spec: ContainerSpec) -> None:
    """Every check of a spec, before anything is created: a ConfigError
    naming the first bad value.  (The image itself is looked up later.)"""
    from nsprim.config import parse_user, validate_env, validate_hostname
    from nsprim.devices import parse_device
    from nsprim.lifecycle import check_name, parse_signal
    from nsprim.network import NetworkMode

    if not isinstance(spec.restart, str) or not RESTART.fullmatch(spec.restart):
        raise ConfigError(f"invalid restart policy {spec.restart!r}: no, always, "
                          "unless-stopped or on-failure[:N]")
    if spec.auto_remove and spec.restart != "no":
        raise ConfigError("conflicting options: --restart and --rm")
    if (spec.image is None) == (spec.rootfs is None):
        raise ConfigError("give an image or a rootfs, not both")
    if spec.rootfs is not None and not os.path.isdir(spec.rootfs):
        raise ConfigError(f"invalid rootfs {spec.rootfs!r}: not a directory")
    if spec.rootfs is not None and not spec.cmd:
        raise ConfigError("run: no command given")
    if spec.name is not None:
        check_name(spec.name)
    validate_env(list(spec.env))
    parse_user(spec.user)
    if spec.hostname is not None:
        validate_hostname(spec.hostname)
    NetworkMode.parse(spec.network, publish=list(spec.publish), publish_all=spec.publish_all,
                      bandwidth=spec.network_bandwidth)
    for v in spec.volumes:
        parse_volume(v)
    for t in spec.tmpfs:
        parse_tmpfs(t)
    for d in spec.devices:
        parse_device(d)
    if spec.userns_map:
        parse_uidmap(spec.userns_map)
    if spec.userns is not None:
        from nsprim.rootless import check_mode

        check_mode(spec.userns)
    if spec.stop_signal is not None:
        parse_signal(spec.stop_signal)
    if spec.stop_timeout is not None and spec.stop_timeout < 0:
        raise ConfigError(f"invalid --stop-timeout {spec.stop_timeout!r}")
    if isinstance(spec.seccomp, Mapping):
        from nsprim.seccomp import load_profile

        load_profile(spec.seccomp)
    elif spec.seccomp not in ("default", "unconfined"):
        raise ConfigError(f"invalid seccomp {spec.seccomp!r}")
    limits = (spec.memory, spec.memory_swap, spec.cpus, spec.cpu_shares, spec.cpuset_cpus,
              spec.cpuset_mems, spec.pids_limit)
    if any(v is not None for v in limits) or spec.device_read_bps or spec.device_write_bps:
        from nsprim.cgroup import make_limits

        make_limits(memory=spec.memory, memory_swap=spec.memory_swap, cpus=spec.cpus,
                    cpu_shares=spec.cpu_shares, cpuset=spec.cpuset_cpus,
                    cpuset_mems=spec.cpuset_mems, pids=spec.pids_limit,
                    device_read_bps=tuple(spec.device_read_bps),
                    device_write_bps=tuple(spec.device_write_bps))
        if os.geteuid() != 0:
            from nsprim.rootless import check_limits

            check_limits(_limit_flags(spec))


def _limit_flags(spec: ContainerSpec) -> list[str]:
    """The flags of `spec` that need a cgroup, as a user typed them."""
    pairs = (("-m", spec.memory), ("--memory-swap", spec.memory_swap), ("--cpus", spec.cpus),
             ("--cpu-shares", spec.cpu_shares), ("--cpuset-cpus", spec.cpuset_cpus),
             ("--cpuset-mems", spec.cpuset_mems), ("--pids-limit", spec.pids_limit),
             ("--device-read-bps", spec.device_read_bps or None),
             ("--device-write-bps", spec.device_write_bps or None))
    return [flag for flag, v in pairs if v is not None]


# ------------------------------------------------------------ the Container

def to_container(spec: ContainerSpec, **extra: Any) -> Any:
    """The Container `spec` describes (its id is the spec's); `extra` are
    Container keywords of the caller's (stdio, tty, die_with_parent)."""
    from nsprim.container import Container
    from nsprim.network import NetworkMode

    net = spec.network
    if net.startswith("container:"):
        from nsprim.lifecycle import find

        other = find(net[len("container:"):]).state
        if not isinstance(other.get("pid"), int):
            raise LookupError(f"container {net[10:]} is not running")
        network = NetworkMode.container(other["pid"])
    else:
        network = NetworkMode.parse(net, publish=list(spec.publish),
                                    publish_all=spec.publish_all,
                                    bandwidth=spec.network_bandwidth)
    mounts = [parse_volume(v) for v in spec.volumes] + [parse_tmpfs(t) for t in spec.tmpfs]
    oci: dict[str, Any] = {}
    if spec.masked_paths is not None:
        oci["masked_paths"] = spec.masked_paths
    if spec.readonly_paths is not None:
        oci["readonly_paths"] = spec.readonly_paths
    if spec.namespaces:
        from nsprim.namespace import Namespace

        oci["namespaces"] = {k: False if v == "host" else Namespace.from_path(v, k)
                             for k, v in spec.namespaces.items()}
    if spec.additional_gids:
        oci["extra_groups"] = spec.additional_gids
    if spec.additional_gids_only:
        oci["groups_only"] = True
    if spec.domainname is not None:
        oci["domainname"] = spec.domainname
    oci.update(extra)
    return Container(
        list(spec.cmd) or None, rootfs=spec.rootfs, image=spec.image_id or None,
        entrypoint=None if spec.entrypoint is None else list(spec.entrypoint),
        hostname=spec.hostname, env=list(spec.env), cwd=spec.workdir, user=spec.user,
        network=network,
        user_namespace=parse_uidmap(spec.userns_map) if spec.userns_map
        else None if spec.userns == "host" else spec.userns,
        cap_add=spec.cap_add, cap_drop=spec.cap_drop,
        no_new_privileges=spec.no_new_privileges, seccomp=spec.seccomp,
        privileged=spec.privileged, devices=spec.devices, read_only=spec.read_only,
        mounts=mounts, init=spec.init, memory=spec.memory, memory_swap=spec.memory_swap,
        cpus=spec.cpus, cpu_shares=spec.cpu_shares, cpuset=spec.cpuset_cpus,
        cpuset_mems=spec.cpuset_mems, pids=spec.pids_limit,
        device_read_bps=spec.device_read_bps, device_write_bps=spec.device_write_bps,
        container_id=spec.id, keep_rootfs=not spec.auto_remove, **oci)


def exec_container(spec: ContainerSpec, pid: int, argv: Sequence[str], *,
                   env: Sequence[str] = (), user: str | None = None,
                   workdir: str | None = None, die_with_parent: bool = True,
                   **extra: Any) -> Any:
    """A Container that runs `argv` inside the running container `spec`
    whose first process is `pid` (docker exec): it joins every namespace of
    that process that differs from ours and its cgroup, and takes its
    environment, user, working directory, capabilities and security.  The
    sibling of :func:`to_container` (runc's setns process)."""
    from nsprim.cgroup import Cgroup
    from nsprim.config import parse_user
    from nsprim.container import Container
    from nsprim.namespace import Namespace, NamespaceKind
    from nsprim.plan import resolve_user

    full_env: list[str] = []
    image_user = image_cwd = None
    if spec.image_id:
        from nsprim.images.store import default_store

        img = default_store().get(spec.image_id)
        full_env, image_user, image_cwd = list(img.env), img.user, img.working_dir
    full_env += list(spec.env) + list(env)
    who = user or spec.user or image_user
    root = f"/proc/{pid}/root"
    _uid, _gid, _groups, home = resolve_user(root, parse_user(who))
    if not any(e.startswith("HOME=") for e in full_env):
        full_env.append(f"HOME={home}")
    kinds = ["mnt", "uts", "ipc", "net", "pid", "cgroup"]
    mine = {k: os.stat(f"/proc/self/ns/{k}").st_ino for k in kinds + ["user"]}
    namespaces: dict[NamespaceKind | str, bool | Namespace] = {}
    for k in kinds + ["user"]:
        if os.stat(f"/proc/{pid}/ns/{k}").st_ino != mine[k]:
            namespaces[k] = Namespace.of(pid, k)
        elif k != "user":
            namespaces[k] = False
    try:
        cg: Cgroup | None = Cgroup.open(spec.id[:16])
    except OSError:
        cg = None
    return Container(list(argv), namespaces=namespaces, cgroup=cg, env=full_env,
                     cwd=workdir or spec.workdir or image_cwd or "/", user=who,
                     user_root=root, cap_add=spec.cap_add, cap_drop=spec.cap_drop,
                     no_new_privileges=spec.no_new_privileges, seccomp=spec.seccomp,
                     privileged=spec.privileged, nondumpable=True,
                     die_with_parent=die_with_parent,
                     **extra)
