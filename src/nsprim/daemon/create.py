"""Docker's ``ContainerCreate`` body -> :class:`nsprim.spec.ContainerSpec`.

The one place the API's create body is read.  Every field is type-checked
(a wrong type is a 400 naming the field) and what nsprim cannot do is
refused by name rather than ignored.  The result is validated by
:func:`nsprim.spec.validate` like the CLI's flags, before anything is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nsprim.daemon.server import ApiError
from nsprim.spec import ContainerSpec

__all__ = ["CreateRequest", "parse_create"]

#: docker's default /dev/shm size: accepted (nsprim's /dev/shm is a tmpfs of its own)
_DEFAULT_SHM = 64 << 20


@dataclass
class CreateRequest:
    """What a create body asks for: the spec, plus what the record keeps for
    the API alone (stdin handling, the original Config bits for inspect)."""

    spec: ContainerSpec
    stdin_once: bool
    extra: dict[str, Any]


def _field(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
           default: Any = None) -> Any:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ApiError(400, f"invalid {where}{key}: expected {_docker_type(names)}, "
                       f"got {type(v).__name__} {str(v)[:60]!r}")
    return v


def _docker_type(py: str) -> str:
    return {"str": "string", "int": "integer", "bool": "boolean", "list": "array",
            "dict": "object"}.get(py, py)


def _strlist(d: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    """A list of strings; docker also takes a single string for Cmd/Entrypoint."""
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, str) and key in ("Cmd", "Entrypoint", "Test"):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ApiError(400, f"invalid {where}{key}: expected an array of strings")
    return list(v)


def _strmap(d: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    v = _field(d, key, dict, where, {})
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ApiError(400, f"invalid {where}{key}: expected an object of strings")
    return dict(v)


def _ulimits(host: Mapping[str, Any], where: str) -> dict[str, list[int]]:
    """HostConfig.Ulimits ([{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
    -1 unlimited) -> the spec's rlimits."""
    from nsprim.errors import ConfigError
    from nsprim.spec import rlimits_from_ulimits

    got = _field(host, "Ulimits", list, where, []) or []
    specs = []
    for i, u in enumerate(got):
        if not isinstance(u, dict) or not isinstance(u.get("Name"), str) or not all(
                isinstance(u.get(k), int) and not isinstance(u.get(k), bool)
                for k in ("Soft", "Hard")):
            raise ApiError(400, f"invalid {where}Ulimits[{i}]: expected "
                           '{"Name": NAME, "Soft": N, "Hard": N}')
        specs.append(f"{u['Name']}={u['Soft']}:{u['Hard']}")
    try:
        return rlimits_from_ulimits(specs)
    except ConfigError as e:
        raise ApiError(400, f"invalid {where}Ulimits: {e}") from None


def _sysctls(host: Mapping[str, Any], where: str) -> dict[str, str]:
    from nsprim.errors import ConfigError
    from nsprim.spec import parse_sysctls

    got = _strmap(host, "Sysctls", where)
    try:
        return parse_sysctls([f"{k}={v}" for k, v in got.items()])
    except ConfigError as e:
        raise ApiError(400, f"invalid {where}Sysctls: {e}") from None


def _etc(host: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig.ExtraHosts ("name:IP"), Dns, DnsSearch, DnsOptions and
    Config.Domainname -> the spec's /etc fields (checked by spec.validate)."""
    out: dict[str, Any] = {
        field: tuple(_strlist(host, key, "HostConfig.") or ())
        for field, key in (("add_hosts", "ExtraHosts"), ("dns", "Dns"),
                           ("dns_search", "DnsSearch"), ("dns_options", "DnsOptions"))}
    domain = _field(body, "Domainname", str, "", "")
    if domain:
        out["domainname"] = domain
    return out


def _refuse_nonempty(d: Mapping[str, Any], key: str, where: str, why: str) -> None:
    if d.get(key):
        raise ApiError(400, f"{where}{key} is not supported by nsprim: {why}")


def _ports(bindings: Any, exposed: list[str], publish_all: bool) -> list[str]:
    """PortBindings ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}) -> -p specs."""
    out: list[str] = []
    if not isinstance(bindings, dict):
        raise ApiError(400, "invalid HostConfig.PortBindings: expected an object")
    for cport, hosts in bindings.items():
        if not isinstance(cport, str):
            raise ApiError(400, "invalid HostConfig.PortBindings key")
        port, _, proto = cport.partition("/")
        proto = proto or "tcp"
        if hosts is not None and not isinstance(hosts, list):
            raise ApiError(400, f"invalid HostConfig.PortBindings[{cport!r}]: expected a list")
        for h in hosts or [{}]:
            if not isinstance(h, dict):
                raise ApiError(400, f"invalid HostConfig.PortBindings[{cport!r}]")
            ip = _field(h, "HostIp", str, "PortBindings.", "")
            hp = _field(h, "HostPort", str, "PortBindings.", "")
            if ip:  # 0.0.0.0: IPv4 only, ::: IPv6 only; none: both (docker's)
                where = f"[{ip}]" if ":" in ip else ip
                out.append(f"{where}:{hp}:{port}/{proto}")
            elif hp:
                out.append(f"{hp}:{port}/{proto}")
            else:
                out.append(f"{port}/{proto}")
    if publish_all:
        bound = {p.partition("/")[0] + "/" + (p.partition("/")[2] or "tcp") for p in bindings}
        for e in exposed:
            key = e if "/" in e else e + "/tcp"
            if key not in bound:
                out.append(key)
    return out


def _mounts(mounts: Any) -> tuple[list[str], list[str]]:
    """HostConfig.Mounts -> (-v specs, --tmpfs specs)."""
    vols: list[str] = []
    tmpfs: list[str] = []
    if not isinstance(mounts, list):
        raise ApiError(400, "invalid HostConfig.Mounts: expected an array")
    for m in mounts:
        if not isinstance(m, dict):
            raise ApiError(400, "invalid HostConfig.Mounts entry: expected an object")
        kind = _field(m, "Type", str, "Mounts.", "volume")
        target = _field(m, "Target", str, "Mounts.", "")
        if not target:
            raise ApiError(400, "invalid mount config: Target must not be empty")
        ro = _field(m, "ReadOnly", bool, "Mounts.", False)
        if kind in ("bind", "volume"):
            src = _field(m, "Source", str, "Mounts.", "")
            if not src:
                if kind == "bind":
                    raise ApiError(400, "invalid mount config for type \"bind\": field Source "
                                   "must not be empty")
                import os

                src = os.urandom(32).hex()  # an anonymous volume
            vols.append(f"{src}:{target}{':ro' if ro else ''}")
        elif kind == "tmpfs":
            opts = _field(m, "TmpfsOptions", dict, "Mounts.", {})
            parts = []
            size = _field(opts, "SizeBytes", int, "TmpfsOptions.", None)
            mode = _field(opts, "Mode", int, "TmpfsOptions.", None)
            if size:
                parts.append(f"size={size}")
            if mode is not None:
                parts.append(f"mode={mode:o}")
            if ro:
                parts.append("ro")
            tmpfs.append(target + (":" + ",".join(parts) if parts else ""))
        else:
            raise ApiError(400, f"mount type {kind!r} is not supported by nsprim")
    return vols, tmpfs


def _network(host: Mapping[str, Any], body: Mapping[str, Any]
             ) -> tuple[str, tuple[str, ...], str | None, str | None]:
    """The network mode, and on a user-defined network the endpoint's
    aliases and addresses (NetworkingConfig.EndpointsConfig)."""
    mode = _field(host, "NetworkMode", str, "HostConfig.", "") or "default"
    if mode == "default":
        mode = "bridge"
    nc = _field(body, "NetworkingConfig", dict, "", {})
    eps = _field(nc, "EndpointsConfig", dict, "NetworkingConfig.", {})
    builtin = ("bridge", "host", "none")
    if mode in builtin or mode.startswith("container:"):
        for name in eps:
            if name not in (*builtin, "default", mode):
                raise ApiError(501, f"network {name!r}: a second network at create is not "
                               "supported by nsprim (connect it once it runs)")
        return mode, (), None, None
    from nsprim.network import user

    try:
        net = user.get(mode)
    except user.NetworkError:
        raise ApiError(404, f"network {mode} not found") from None
    aliases: list[str] = []
    ip = ip6 = None
    for name, ep in eps.items():
        if name not in (mode, net.name, net.id):
            raise ApiError(501, f"network {name!r}: a second network at create is not "
                           "supported by nsprim (connect it once it runs)")
        if isinstance(ep, dict):
            aliases += [str(a) for a in ep.get("Aliases") or [] if isinstance(a, str)]
            ipam = ep.get("IPAMConfig") or {}
            if isinstance(ipam, dict):
                ip = ipam.get("IPv4Address") or None
                ip6 = ipam.get("IPv6Address") or None
    return mode, tuple(dict.fromkeys(aliases)), ip, ip6


def parse_create(body: Any, name: str | None) -> CreateRequest:
    """The spec a create body asks for (not yet validated against the host:
    the caller runs :func:`nsprim.spec.validate`)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid create body: expected a JSON object")
    w = ""
    image = _field(body, "Image", str, w, "")
    if not image:
        raise ApiError(400, "no image given: Image must be set")
    cmd = _strlist(body, "Cmd", w)
    ep = _strlist(body, "Entrypoint", w)
    if ep == [""]:
        ep = []
    env = _strlist(body, "Env", w) or []
    labels = _strmap(body, "Labels", w)
    exposed = list(_field(body, "ExposedPorts", dict, w, {}).keys())
    tty = _field(body, "Tty", bool, w, False)
    open_stdin = _field(body, "OpenStdin", bool, w, False)
    stdin_once = _field(body, "StdinOnce", bool, w, False)
    hc = _field(body, "Healthcheck", dict, w, None)
    if hc and (_strlist(hc, "Test", "Healthcheck.") or ["NONE"])[0] != "NONE":
        raise ApiError(400, "Healthcheck is not supported by nsprim")
    stop_timeout = _field(body, "StopTimeout", int, w, None)
    host: dict[str, Any] = _field(body, "HostConfig", dict, w, {})
    hw = "HostConfig."
    binds = _strlist(host, "Binds", hw) or []
    vols, tmpfs = _mounts(_field(host, "Mounts", list, hw, []))
    tmpfs_map = _strmap(host, "Tmpfs", hw)
    tmpfs += [f"{k}:{v}" if v else k for k, v in tmpfs_map.items()]
    publish_all = _field(host, "PublishAllPorts", bool, hw, False)
    publish = _ports(_field(host, "PortBindings", dict, hw, {}), exposed, publish_all)
    rp = _field(host, "RestartPolicy", dict, hw, {})
    restart = _field(rp, "Name", str, "RestartPolicy.", "") or "no"
    retries = _field(rp, "MaximumRetryCount", int, "RestartPolicy.", 0)
    if restart == "on-failure" and retries:
        restart = f"on-failure:{retries}"
    memory = _field(host, "Memory", int, hw, 0)
    swap = _field(host, "MemorySwap", int, hw, 0)
    nano = _field(host, "NanoCpus", int, hw, 0)
    shares = _field(host, "CpuShares", int, hw, 0)
    pids = _field(host, "PidsLimit", int, hw, None)
    shm = _field(host, "ShmSize", int, hw, 0)
    if shm not in (0, _DEFAULT_SHM):
        raise ApiError(400, f"HostConfig.ShmSize {shm} is not supported by nsprim (its "
                       "/dev/shm is a tmpfs of the default size)")
    for key, why in (("VolumesFrom", "not implemented"),
                     ("Links", "legacy links are not implemented")):
        _refuse_nonempty(host, key, hw, why)
    for key in ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        v = _field(host, key, str, hw, "")
        if v and v not in ("private", "shareable"):
            raise ApiError(400, f"{hw}{key} {v!r} is not supported by nsprim")
    devices = []
    for d in _field(host, "Devices", list, hw, []):
        if not isinstance(d, dict):
            raise ApiError(400, "invalid HostConfig.Devices entry: expected an object")
        src = _field(d, "PathOnHost", str, "Devices.", "")
        dst = _field(d, "PathInContainer", str, "Devices.", "") or src
        perm = _field(d, "CgroupPermissions", str, "Devices.", "") or "rwm"
        devices.append(f"{src}:{dst}:{perm}")
    from nsprim.errors import ConfigError
    from nsprim.spec import security_opts

    try:
        sec = security_opts(_strlist(host, "SecurityOpt", hw) or [])
    except ConfigError as e:
        raise ApiError(400, str(e)) from None
    init = _field(host, "Init", bool, hw, False)
    net_mode, net_aliases, net_ip, net_ip6 = _network(host, body)
    spec = ContainerSpec(
        name=name, image=image, cmd=tuple(cmd or ()),
        entrypoint=None if ep is None else tuple(ep),
        env=tuple(env), workdir=_field(body, "WorkingDir", str, w, "") or None,
        user=_field(body, "User", str, w, "") or None,
        hostname=_field(body, "Hostname", str, w, "") or None,
        tty=tty, interactive=open_stdin, init=bool(init),
        network=net_mode, network_aliases=net_aliases, ip=net_ip, ip6=net_ip6,
        publish=tuple(publish), publish_all=False,
        cap_add=tuple(_strlist(host, "CapAdd", hw) or ()),
        cap_drop=tuple(_strlist(host, "CapDrop", hw) or ()),
        privileged=_field(host, "Privileged", bool, hw, False), devices=tuple(devices),
        read_only=_field(host, "ReadonlyRootfs", bool, hw, False),
        volumes=tuple(binds + vols), tmpfs=tuple(tmpfs),
        memory=str(memory) if memory else None,
        memory_swap=str(swap) if swap else None,
        cpus=f"{nano / 1e9:g}" if nano else None, cpu_shares=shares or None,
        cpuset_cpus=_field(host, "CpusetCpus", str, hw, "") or None,
        cpuset_mems=_field(host, "CpusetMems", str, hw, "") or None,
        pids_limit=pids if pids and pids > 0 else None,
        restart=restart, auto_remove=_field(host, "AutoRemove", bool, hw, False),
        stop_signal=_field(body, "StopSignal", str, w, "") or None,
        stop_timeout=stop_timeout, labels=labels,
        rlimits=_ulimits(host, hw), sysctls=_sysctls(host, hw), **sec, **_etc(host, body))
    extra = {"exposed_ports": exposed, "stdin_once": stdin_once,
             "attach": {k: bool(body.get(k)) for k in
                        ("AttachStdin", "AttachStdout", "AttachStderr")}}
    return CreateRequest(spec, stdin_once, extra)
