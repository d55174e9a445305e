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
           "parse_volume", "parse_mount", "read_env_file", "parse_labels",
           "with_anonymous_volumes",
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
    network_aliases: tuple[str, ...] = ()  # --network-alias (user-defined networks)
    ip: str | None = None  # --ip, --ip6 (user-defined networks)
    ip6: str | None = None
    # `network connect` to a created/stopped/running container: its other
    # user-defined networks ({name, aliases, ip, ip6}), attached as eth1...
    extra_networks: tuple[Any, ...] = ()
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
    #: RLIMIT name ("RLIMIT_NOFILE") -> [soft, hard], OCI's shape (2**64-1:
    #: unlimited); docker's --ulimit nofile=SOFT:HARD is translated to it
    rlimits: Mapping[str, Sequence[int]] = field(default_factory=dict)
    umask: int | None = None
    oom_score_adj: int | None = None
    #: OCI hooks (runtime-spec shape), run by the OCI front end on the host
    hooks: Mapping[str, Any] = field(default_factory=dict)
    # issue 12's flags (cli/run.py); docker's spellings
    mounts: tuple[str, ...] = ()               # --mount type=bind|volume|tmpfs,...
    anonymous_volumes: tuple[str, ...] = ()    # names made for -v /dst, VOLUME; rm -v
    memory_reservation: str | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    blkio_weight: int | None = None
    pid_mode: str | None = None                # host | container:NAME
    ipc_mode: str | None = None                # host | container:NAME | shareable | private
    uts_mode: str | None = None                # host
    group_add: tuple[str, ...] = ()
    platform: str | None = None
    log_opts: Mapping[str, str] = field(default_factory=dict)  # --log-opt max-size=...
    health_test: tuple[str, ...] | None = None  # docker's Test: NONE | CMD ... | CMD-SHELL c
    health_interval: float | None = None        # seconds (None: the image's, else 30s)
    health_timeout: float | None = None
    health_start_period: float | None = None
    health_retries: int | None = None
    health: Mapping[str, Any] = field(default_factory=dict)  # resolved at run (nsprim.health)
    #: key -> value, written in the container's namespaces (docker's
    #: --sysctl, OCI's linux.sysctl)
    sysctls: Mapping[str, str] = field(default_factory=dict)
    shm_size: str | None = None
    # /etc files (nsprim.network.etc): docker's --add-host NAME:IP, --dns,
    # --dns-search, --dns-option; etc_files False: none of nsprim's (OCI)
    add_hosts: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    etc_files: bool = True

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
        data = _legacy(data)
        for f in _record.fields(cls):
            if f.name not in data or data[f.name] is None and f.name in _NOT_NONE:
                continue
            v = data[f.name]
            if isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
        return cls(**kw)


def _legacy(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Records written before rlimits and sysctls were one field each:
    ``ulimits`` (docker's NAME=SOFT[:HARD] strings) and ``sysctl`` (OCI's)."""
    if not data.get("ulimits") and not data.get("sysctl"):
        return data
    out = dict(data)
    ulimits, sysctl = out.pop("ulimits", None), out.pop("sysctl", None)
    if ulimits:
        out["rlimits"] = {**rlimits_from_ulimits(ulimits), **(out.get("rlimits") or {})}
    if isinstance(sysctl, Mapping):
        out["sysctls"] = {**sysctl, **(out.get("sysctls") or {})}
    return out


#: OCI's "unlimited" (RLIM_INFINITY): docker's -1
RLIM_INFINITY = 2**64 - 1


def rlimits_from_ulimits(values: Sequence[str]) -> dict[str, list[int]]:
    """docker's ``--ulimit NAME=SOFT[:HARD]`` (-1: unlimited) -> the spec's
    ``{"RLIMIT_NOFILE": [soft, hard]}``; checked as docker checks them."""
    from nsprim.config import ULIMITS, parse_ulimit

    names = {v: k for k, v in ULIMITS.items()}
    out: dict[str, list[int]] = {}
    for u in values:
        res, soft, hard = parse_ulimit(u)
        out["RLIMIT_" + names[res].upper()] = [RLIM_INFINITY if soft == -1 else soft,
                                               RLIM_INFINITY if hard == -1 else hard]
    return out


def ulimits_of(rlimits: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    """The spec's rlimits as the runtime's ``ulimits`` (docker's names, -1:
    unlimited)."""
    def one(v: int) -> int:
        return -1 if v >= 1 << 63 else v

    return {k[len("RLIMIT_"):].lower(): (one(v[0]), one(v[1])) for k, v in rlimits.items()}


def _check_rlimits(rlimits: Any) -> None:
    from nsprim.config import ULIMITS

    if not isinstance(rlimits, Mapping):
        raise ConfigError(f"invalid rlimits {rlimits!r}")
    for k, v in rlimits.items():
        if not isinstance(k, str) or not k.startswith("RLIMIT_") or \
                k[len("RLIMIT_"):].lower() not in ULIMITS:
            raise ConfigError(f"invalid rlimit {k!r}: expected RLIMIT_ and one of "
                              + ", ".join(sorted(n.upper() for n in ULIMITS)))
        if not isinstance(v, Sequence) or len(v) != 2 or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= RLIM_INFINITY
                for x in v):
            raise ConfigError(f"invalid rlimit {k} {v!r}: expected [soft, hard], integers "
                              f"from 0 to {RLIM_INFINITY}")
        if v[0] > v[1]:
            raise ConfigError(f"invalid rlimit {k} {v[0]}:{v[1]}: the soft limit must be "
                              "less than or equal to the hard limit")


_NOT_NONE = {"cmd", "env", "volumes", "tmpfs", "publish", "cap_add", "cap_drop", "devices",
             "device_read_bps", "device_write_bps", "labels", "restart", "network",
             "seccomp", "namespaces", "additional_gids", "rlimits", "hooks",
             "mounts", "anonymous_volumes", "group_add", "sysctls", "log_opts",
             "health", "add_hosts", "dns", "dns_search", "dns_options"}


# ------------------------------------------------------------ docker flags

def parse_volume(spec: str) -> Any:
    """``-v /host:/ctr[:OPTS]`` (a bind: the host path must exist),
    ``-v NAME:/ctr[:OPTS]`` (a named volume, created on first use) or
    ``-v /ctr`` (an anonymous volume: a Volume named "anonymous" until
    :func:`with_anonymous_volumes` names it).  OPTS: ``ro`` or ``rw``, and
    SELinux's ``z``/``Z`` (accepted; no SELinux labelling is done here)."""
    from nsprim.config import Bind, validate_mount_target
    from nsprim.volumes import Volume

    parts = spec.split(":")
    if len(parts) == 1 and parts[0].startswith("/"):
        try:
            target = validate_mount_target(parts[0], "volume target")
        except ConfigError as e:
            raise ConfigError(f"invalid volume specification {spec!r}: {e}") from None
        return Volume("anonymous", target)
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"invalid volume specification {spec!r}: expected SRC:DST[:ro|rw]")
    opts = parts[2].split(",") if len(parts) == 3 else []
    if any(o not in ("ro", "rw", "z", "Z") for o in opts) or \
            sum(o in ("ro", "rw") for o in opts) > 1 or sum(o in ("z", "Z") for o in opts) > 1:
        raise ConfigError(f"invalid volume mode {parts[2]!r} in {spec!r}: expected ro or rw "
                          "(and z or Z)")
    mode = "ro" if "ro" in opts else "rw"
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


def absolute_volume(spec: str, cwd: str | None = None) -> str:
    """``-v ./dir:/ctr`` with the host path made absolute (from the caller's
    working directory, as docker's CLI does); other specs unchanged."""
    src, sep, rest = spec.partition(":")
    if sep and (src in (".", "..") or src.startswith("./") or src.startswith("../")):
        return os.path.normpath(os.path.join(cwd or os.getcwd(), src)) + sep + rest
    return spec


_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


def parse_mount(spec: str) -> Any:
    """docker's ``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]``
    (also ``src``, ``dst``/``destination``, ``ro``, ``bind-propagation``,
    ``volume-nocopy``, ``tmpfs-size``, ``tmpfs-mode``, ``consistency``) ->
    Bind, Volume (named "anonymous" without a source) or Tmpfs."""
    from nsprim.config import Bind, Tmpfs, validate_mount_target
    from nsprim.units import parse_size
    from nsprim.volumes import Volume

    kv: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, val = item.partition("=")
        key = key.strip().lower()
        if key in ("src", "source"):
            key = "source"
        elif key in ("dst", "destination", "target"):
            key = "target"
        elif key == "ro":
            key = "readonly"
        if key not in ("type", "source", "target", "readonly", "bind-propagation",
                       "volume-nocopy", "tmpfs-size", "tmpfs-mode", "consistency",
                       "bind-nonrecursive", "volume-driver", "volume-opt", "volume-label"):
            raise ConfigError(f"invalid argument {spec!r} for --mount: unexpected key "
                              f"{key!r} in {item!r}")
        if key in kv:
            raise ConfigError(f"invalid argument {spec!r} for --mount: {key!r} given twice")
        kv[key] = val
    kind = kv.get("type", "volume")
    if kind not in _MOUNT_TYPES:
        raise ConfigError(f"invalid argument {spec!r} for --mount: invalid type {kind!r}: "
                          "bind, volume or tmpfs")
    target = kv.get("target")
    if not target:
        raise ConfigError(f"invalid argument {spec!r} for --mount: target is required")
    ro_text = kv.get("readonly", "false").lower()
    if ro_text not in _TRUE + _FALSE:
        raise ConfigError(f"invalid argument {spec!r} for --mount: invalid readonly "
                          f"{kv['readonly']!r}")
    ro = ro_text in _TRUE
    prop = kv.get("bind-propagation")
    if prop is not None and (kind != "bind" or prop not in (
            "private", "rprivate", "shared", "rshared", "slave", "rslave")):
        raise ConfigError(f"invalid argument {spec!r} for --mount: invalid bind-propagation "
                          f"{prop!r}")
    if any(k.startswith("tmpfs-") for k in kv) and kind != "tmpfs" or \
            any(k.startswith("volume-") for k in kv) and kind != "volume":
        raise ConfigError(f"invalid argument {spec!r} for --mount: options of another "
                          f"type for type={kind}")
    for k in ("volume-driver",):
        if k in kv and kv[k] not in ("", "local"):
            raise ConfigError(f"invalid argument {spec!r} for --mount: only the local volume "
                              "driver is supported")
    try:
        if kind == "tmpfs":
            if kv.get("source"):
                raise ConfigError(f"invalid argument {spec!r} for --mount: a tmpfs has no "
                                  "source")
            mode_text = kv.get("tmpfs-mode", "1777")
            if not _OCTAL_MODE.fullmatch(mode_text):
                raise ConfigError(f"invalid argument {spec!r} for --mount: invalid tmpfs-mode "
                                  f"{mode_text!r}")
            size = parse_size(kv["tmpfs-size"], "tmpfs-size") if "tmpfs-size" in kv else None
            return Tmpfs(target, size=size, mode=int(mode_text, 8), readonly=ro)
        src = kv.get("source", "")
        if kind == "bind":
            if not src.startswith("/"):
                raise ConfigError(f"invalid mount config for type \"bind\": invalid source "
                                  f"{src!r}: an absolute host path is required")
            if not os.path.exists(src):
                raise ConfigError(f"invalid mount config for type \"bind\": bind source "
                                  f"path does not exist: {src}")
            return Bind(src, target, readonly=ro)
        validate_mount_target(target, "mount target")
        return Volume(src or "anonymous", target, readonly=ro)
    except ConfigError as e:
        if str(e).startswith(("invalid argument", "invalid mount config")):
            raise
        raise ConfigError(f"invalid argument {spec!r} for --mount: {e}") from None


def with_anonymous_volumes(spec: ContainerSpec, image_volumes: Sequence[str] = ()
                           ) -> ContainerSpec:
    """`spec` with a fresh name for each anonymous volume (``-v /dst``,
    ``--mount type=volume`` without a source, and each of the image's
    VOLUMEs that no mount covers), listed in ``anonymous_volumes`` so that
    ``rm -v`` (and ``--rm``) removes them."""
    from nsprim.config import validate_mount_target

    names = list(spec.anonymous_volumes)
    vols, mounts = [], []
    targets: set[str] = set()

    def fresh() -> str:
        n = os.urandom(32).hex()
        names.append(n)
        return n

    for v in spec.volumes:
        m = parse_volume(v)
        targets.add(m.target)
        vols.append(f"{fresh()}:{v}" if ":" not in v else v)
    for v in spec.mounts:
        m = parse_mount(v)
        targets.add(m.target)
        if type(m).__name__ == "Volume" and m.name == "anonymous":
            v = f"{v},source={fresh()}"
        mounts.append(v)
    for t in spec.tmpfs:
        targets.add(parse_tmpfs(t).target)
    for path in image_volumes:
        try:
            target = validate_mount_target(path, "image VOLUME")
        except ConfigError:
            continue  # as docker: a VOLUME it cannot mount is skipped
        if target not in targets:
            targets.add(target)
            vols.append(f"{fresh()}:{target}")
    return _record.replace(spec, volumes=tuple(vols), mounts=tuple(mounts),
                               anonymous_volumes=tuple(names))


_LABEL_KEY = re.compile(r"[^=\s][^=]*", re.ASCII)


def read_env_file(path: str, what: str = "env file") -> list[str]:
    """docker's --env-file (and --label-file): one KEY=VALUE a line (a bare
    KEY takes the caller's value), blank lines and ``#`` comments skipped."""
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except OSError as e:
        raise ConfigError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    if len(data) > 1 << 20:
        raise ConfigError(f"{what} {path!r}: larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path!r}: not UTF-8 text") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise ConfigError(f"{what} {path!r} line {n}: invalid variable {key!r}: "
                              "names have no whitespace")
        out.append(line)
    return out


def parse_labels(values: Sequence[str], files: Sequence[str] = ()) -> dict[str, str]:
    """--label-file files then --label KEY[=VALUE] values (later ones win)."""
    out: dict[str, str] = {}
    items = [x for f in files for x in read_env_file(f, "label file")] + list(values)
    for item in items:
        key, _, val = item.partition("=")
        if not _LABEL_KEY.fullmatch(key):
            raise ConfigError(f"invalid label {item!r}: empty name")
        out[key] = val
    return out


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
        hostname=a.hostname,
        env=tuple(env_list([e for f in getattr(a, "env_file", None) or ()
                            for e in read_env_file(f)] + list(a.env))),
        workdir=a.workdir, user=a.user,
        network=a.network, publish=tuple(a.publish), publish_all=a.publish_all,
        network_bandwidth=a.network_bandwidth, userns_map=a.userns_map,
        network_aliases=tuple(getattr(a, "network_alias", None) or ()),
        ip=getattr(a, "ip", None), ip6=getattr(a, "ip6", None),
        userns=getattr(a, "userns", None),
        cap_add=tuple(a.cap_add), cap_drop=tuple(a.cap_drop), **security_opts(a.security_opt),
        privileged=a.privileged, devices=tuple(a.device), read_only=a.read_only,
        volumes=tuple(absolute_volume(v) for v in a.volume), tmpfs=tuple(a.tmpfs),
        mounts=tuple(getattr(a, "mount", None) or ()),
        labels=parse_labels(getattr(a, "label", None) or (),
                            getattr(a, "label_file", None) or ()),
        memory=a.memory,
        memory_swap=a.memory_swap, cpus=a.cpus, cpu_shares=a.cpu_shares,
        cpuset_cpus=a.cpuset_cpus, cpuset_mems=a.cpuset_mems, pids_limit=a.pids_limit,
        device_read_bps=tuple(a.device_read_bps), device_write_bps=tuple(a.device_write_bps),
        restart=a.restart, auto_remove=a.rm, tty=a.tty, interactive=a.interactive,
        init=a.init, detach=a.detach, stop_signal=a.stop_signal,
        stop_timeout=a.stop_timeout,
        **{f: getattr(a, f) for f in _RUN_EXTRA if getattr(a, f, None) is not None},
        group_add=tuple(getattr(a, "group_add", None) or ()),
        rlimits=rlimits_from_ulimits(getattr(a, "ulimit", None) or ()),
        sysctls=parse_sysctls(getattr(a, "sysctl", None) or ()),
        shm_size=getattr(a, "shm_size", None),
        log_opts=parse_log_opts(getattr(a, "log_opt", None) or (),
                                getattr(a, "log_driver", None)),
        **_health_flags(a), **_etc_flags(a))


def _etc_flags(a: Any) -> dict[str, Any]:
    """--add-host, --dns, --dns-search, --dns-option, --domainname."""
    out: dict[str, Any] = {f: tuple(getattr(a, f, None) or ())
                           for f in ("add_hosts", "dns", "dns_search", "dns_options")}
    if getattr(a, "domainname", None) is not None:
        out["domainname"] = a.domainname
    return out


def _health_flags(a: Any) -> dict[str, Any]:
    from nsprim.health import from_flags

    return from_flags(a)


#: the log's default cap (docker's "local" driver's: 20m x 5): a chatty
#: container cannot fill the disk
LOG_MAX_SIZE = "20m"
LOG_MAX_FILE = 5


def parse_log_opts(values: Sequence[str], driver: str | None = None) -> dict[str, str]:
    """--log-opt KEY=VALUE (json-file's max-size, max-file; compress=false)."""
    if driver not in (None, "json-file", "local"):
        raise ConfigError(f"invalid --log-driver {driver!r}: json-file (or local) only")
    out: dict[str, str] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep:
            raise ConfigError(f"invalid --log-opt {v!r}: expected KEY=VALUE")
        out[key] = val
    return out


def log_limits(spec: ContainerSpec) -> tuple[int, int]:
    """(bytes per log file, files) of `spec`'s log."""
    from nsprim.units import parse_size

    opts = spec.log_opts
    size = parse_size(opts.get("max-size", LOG_MAX_SIZE), "log-opt max-size")
    files = opts.get("max-file", str(LOG_MAX_FILE))
    if not files.isascii() or not files.isdigit() or not 1 <= int(files) <= 1000:
        raise ConfigError(f"invalid log-opt max-file {files!r}: from 1 to 1000")
    return size, int(files)


#: the sysctls of a container's own namespaces, any front end's (net, ipc,
#: mqueue, uts: OCI's linux.sysctl takes them all); docker's --sysctl is
#: checked against docker's list where it is parsed (config.validate_sysctl)
_NAMESPACED_SYSCTL = re.compile(
    r"(kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)"
    r"|fs\.mqueue\.[a-z_]+|net\.[A-Za-z0-9_./-]+|kernel\.(hostname|domainname))", re.ASCII)


def parse_sysctls(values: Sequence[str]) -> dict[str, str]:
    """docker's ``--sysctl KEY=VALUE`` flags, each checked against docker's list."""
    from nsprim.config import validate_sysctl

    out: dict[str, str] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid --sysctl {v!r}: expected KEY=VALUE")
        out[validate_sysctl(key, val)] = val
    return out


#: flags of issue 12 copied as they are from ``nsprim run``'s arguments
_RUN_EXTRA = ("memory_reservation", "cpu_period", "cpu_quota", "blkio_weight",
              "oom_score_adj", "pid_mode", "ipc_mode", "uts_mode", "platform")


def limits_of(spec: ContainerSpec) -> Any:
    """The cgroup limits of `spec` (nsprim.cgroup.Limits; all None is a
    cgroup for accounting only: stats, pause, update)."""
    from nsprim.cgroup import make_limits

    return make_limits(memory=spec.memory, memory_swap=spec.memory_swap, cpus=spec.cpus,
                       cpu_shares=spec.cpu_shares, cpuset=spec.cpuset_cpus,
                       cpuset_mems=spec.cpuset_mems, pids=spec.pids_limit,
                       device_read_bps=tuple(spec.device_read_bps),
                       device_write_bps=tuple(spec.device_write_bps),
                       memory_reservation=spec.memory_reservation,
                       cpu_period=spec.cpu_period, cpu_quota=spec.cpu_quota,
                       blkio_weight=spec.blkio_weight)


_NS_MODE = {"pid_mode": ("--pid", ("host",)), "uts_mode": ("--uts", ("host",)),
            "ipc_mode": ("--ipc", ("host", "shareable", "private"))}
_PLATFORM = re.compile(r"[a-z0-9_]+(/[a-z0-9_]+(/[a-z0-9_]+)?)?", re.ASCII)
_GROUP = re.compile(r"[0-9]{1,10}|[a-zA-Z_][a-zA-Z0-9_.-]{0,31}", re.ASCII)


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI's words."""
    import platform

    m = platform.machine()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
                     "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
                     "riscv64": "riscv64"}.get(m, m)


def _validate_extra(spec: ContainerSpec) -> None:
    """The checks of issue 12's flags."""
    from nsprim.lifecycle import check_name

    for f, (flag, words) in _NS_MODE.items():
        v = getattr(spec, f)
        if v is None or v in words:
            continue
        if isinstance(v, str) and v.startswith("container:") and f != "uts_mode":
            check_name(v[len("container:"):])
            continue
        raise ConfigError(f"invalid {flag} {v!r}: expected "
                          + ", ".join(words) + ("" if f == "uts_mode" else " or container:NAME"))
    if spec.oom_score_adj is not None and (isinstance(spec.oom_score_adj, bool) or
                                           not isinstance(spec.oom_score_adj, int) or
                                           not -1000 <= spec.oom_score_adj <= 1000):
        raise ConfigError(f"invalid --oom-score-adj {spec.oom_score_adj!r}: from -1000 to "
                          "1000")
    for g in spec.group_add:
        if not isinstance(g, str) or not _GROUP.fullmatch(g):
            raise ConfigError(f"invalid --group-add {g!r}: a group name or number")
    from nsprim.config import validate_shm_size, validate_sysctl

    _check_rlimits(spec.rlimits)
    if not isinstance(spec.sysctls, Mapping):
        raise ConfigError(f"invalid sysctls {spec.sysctls!r}")
    for k, v in spec.sysctls.items():
        if not isinstance(k, str) or not _NAMESPACED_SYSCTL.fullmatch(k) or ".." in k:
            validate_sysctl(k, v)  # its message: docker's list
        if not isinstance(v, str) or "\n" in v or "\0" in v or len(v) > 4096:
            raise ConfigError(f"invalid sysctl value {v!r} for {k}")
        if k.startswith("net.") and spec.network in ("host",):
            raise ConfigError(f"sysctl {k!r} is not allowed with --network host: it would "
                              "change the host's")
        if not k.startswith("net.") and spec.ipc_mode == "host":
            raise ConfigError(f"sysctl {k!r} is not allowed with --ipc host")
    validate_shm_size(spec.shm_size)
    from nsprim.health import check_spec

    check_spec(spec)
    if not isinstance(spec.log_opts, Mapping):
        raise ConfigError(f"invalid log options {spec.log_opts!r}")
    for k, v in spec.log_opts.items():
        if k not in ("max-size", "max-file", "compress") or \
                k == "compress" and v not in ("false", "0"):
            raise ConfigError(f"unknown log opt {k!r}" if k != "compress" else
                              f"invalid log-opt compress={v!r}: compression is not "
                              "supported")
    _validate_etc(spec)
    size, _ = log_limits(spec)
    if size < 1024:
        raise ConfigError(f"invalid log-opt max-size {spec.log_opts['max-size']!r}: at "
                          "least 1k")
    if spec.platform is not None:
        if not _PLATFORM.fullmatch(spec.platform):
            raise ConfigError(f"invalid --platform {spec.platform!r}: expected os[/arch"
                              "[/variant]]")
        want = tuple(spec.platform.split("/")[:2])
        have = host_platform()
        if want[0] != have[0] or len(want) > 1 and want[1] != have[1]:
            raise ConfigError(f"invalid --platform {spec.platform!r}: this host runs "
                              f"{have[0]}/{have[1]} only")


def _validate_etc(spec: ContainerSpec) -> None:
    """--add-host, --dns*, --domainname (nsprim.network.etc's checks)."""
    from nsprim.network.etc import etc_options

    for f in ("add_hosts", "dns", "dns_search", "dns_options"):
        v = getattr(spec, f)
        if not isinstance(v, (tuple, list)) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"invalid {f} {v!r}: a list of strings")
    if spec.add_hosts or spec.dns or spec.dns_search or spec.dns_options:
        etc_options(spec.add_hosts, spec.dns, spec.dns_search, spec.dns_options)
        # container:X shares X's files (docker's words)
        if isinstance(spec.network, str) and spec.network.startswith("container:"):
            raise ConfigError("conflicting options: custom host-to-IP mapping and the network "
                              "mode" if spec.add_hosts else
                              "conflicting options: dns and the network mode")
    if spec.domainname is not None:
        from nsprim.config import validate_hostname

        try:
            validate_hostname(spec.domainname)
        except ConfigError:
            raise ConfigError(f"invalid domainname {spec.domainname!r}: labels are letters, "
                              "digits and '-'") from None


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
    mode = NetworkMode.parse(spec.network, publish=list(spec.publish),
                             publish_all=spec.publish_all, bandwidth=spec.network_bandwidth)
    if spec.network_aliases or spec.ip or spec.ip6:
        from nsprim.network.user import parse_ip

        if mode.kind != "network":
            raise ConfigError("network-scoped aliases and --ip are only supported for "
                              "user-defined networks")
        if spec.ip:
            parse_ip(spec.ip, "--ip")
        if spec.ip6:
            parse_ip(spec.ip6, "--ip6")
    for v in spec.volumes:
        parse_volume(v)
    for t in spec.tmpfs:
        parse_tmpfs(t)
    for mnt in spec.mounts:
        parse_mount(mnt)
    if not isinstance(spec.labels, Mapping) or not all(
            isinstance(k, str) and _LABEL_KEY.fullmatch(k) and isinstance(v, str)
            for k, v in spec.labels.items()):
        raise ConfigError(f"invalid labels {spec.labels!r}")
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
              spec.cpuset_mems, spec.pids_limit, spec.memory_reservation, spec.cpu_period,
              spec.cpu_quota, spec.blkio_weight)
    if any(v is not None for v in limits) or spec.device_read_bps or spec.device_write_bps:
        limits_of(spec)  # make_limits's checks (nsprim.cgroup only when a limit is given)
        if os.geteuid() != 0:
            from nsprim.rootless import check_limits

            check_limits(_limit_flags(spec))
    _validate_extra(spec)


def _limit_flags(spec: ContainerSpec) -> list[str]:
    """The flags of `spec` that need a cgroup, as a user typed them."""
    pairs = (("-m", spec.memory), ("--memory-swap", spec.memory_swap), ("--cpus", spec.cpus),
             ("--cpu-shares", spec.cpu_shares), ("--cpuset-cpus", spec.cpuset_cpus),
             ("--cpuset-mems", spec.cpuset_mems), ("--pids-limit", spec.pids_limit),
             ("--device-read-bps", spec.device_read_bps or None),
             ("--device-write-bps", spec.device_write_bps or None),
             ("--memory-reservation", spec.memory_reservation),
             ("--cpu-period", spec.cpu_period), ("--cpu-quota", spec.cpu_quota),
             ("--blkio-weight", spec.blkio_weight))
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
        if network.kind == "network":  # its name resolves, as its aliases do
            network = NetworkMode.network(
                net, aliases=((spec.name,) if spec.name else ()) + tuple(spec.network_aliases),
                ip=spec.ip, ip6=spec.ip6, publish=network.publish,
                publish_all=spec.publish_all)
        if spec.extra_networks and network.kind in ("network", "bridge"):
            network = _record.replace(network, extra=tuple(
                (str(e["name"]), ((spec.name,) if spec.name else ())
                 + tuple(e.get("aliases") or ()), e.get("ip"), e.get("ip6"))
                for e in spec.extra_networks))
    if spec.volumes or spec.mounts:  # unnamed ones (the Python API) get a name now
        spec = with_anonymous_volumes(spec)
    mounts = [parse_volume(v) for v in spec.volumes] + [parse_tmpfs(t) for t in spec.tmpfs] + \
        [parse_mount(m) for m in spec.mounts]
    namespaces: dict[str, Any] = {}
    for kind, mode in (("pid", spec.pid_mode), ("ipc", spec.ipc_mode), ("uts", spec.uts_mode)):
        if mode == "host":
            namespaces[kind] = False
        elif mode and mode.startswith("container:"):
            from nsprim.lifecycle import _live_pid, find
            from nsprim.namespace import Namespace

            orec = find(mode[len("container:"):])
            live = _live_pid(orec) if orec.running else None
            if live is None:
                raise LookupError(f"container {mode[10:]} is not running")
            namespaces[kind] = Namespace.of(live[0], kind)
    oci: dict[str, Any] = {}
    if spec.masked_paths is not None:
        oci["masked_paths"] = spec.masked_paths
    if spec.readonly_paths is not None:
        oci["readonly_paths"] = spec.readonly_paths
    if spec.namespaces:
        from nsprim.namespace import Namespace

        namespaces.update({k: False if v == "host" else Namespace.from_path(v, k)
                           for k, v in spec.namespaces.items()})
    if spec.additional_gids:
        oci["extra_groups"] = spec.additional_gids
    if spec.additional_gids_only:
        oci["groups_only"] = True
    if spec.domainname is not None:
        oci["domainname"] = spec.domainname
    oci.update(extra)
    if namespaces:
        oci["namespaces"] = {**namespaces, **extra.get("namespaces", {})}
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
        mounts=mounts, init=spec.init,
        # always a cgroup, as docker (stats, pause, update), but for a user
        # without root and without limits (no cgroup of theirs to make)
        limits=limits_of(spec) if os.geteuid() == 0 or _limit_flags(spec) else None,
        ulimits=ulimits_of(spec.rlimits), sysctls=spec.sysctls,
        oom_score_adj=spec.oom_score_adj,
        shm_size=spec.shm_size, group_add=spec.group_add,
        container_id=spec.id, keep_rootfs=not spec.auto_remove,
        add_hosts=spec.add_hosts, dns=spec.dns, dns_search=spec.dns_search,
        dns_options=spec.dns_options, etc_files=spec.etc_files, **oci)


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
