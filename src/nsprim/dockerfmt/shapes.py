"""docker's JSON, made from nsprim's records: pure functions.

Inputs are what nsprim keeps: a container's :class:`~nsprim.spec.ContainerSpec`
(``spec.json``), its lifecycle state (``state.json``: status, pid, times,
exit code, address, published ports), and the image's OCI config (the image
store's ``Image.config``).  Outputs follow the Docker Engine API (v1.43 and
later; field names, types and order as ``docker inspect`` prints them):

==========================  ===========================================
:func:`container_inspect`   ``GET /containers/{id}/json``, ``docker inspect``
:func:`container_summary`   ``GET /containers/json`` (one element)
:func:`ps_row`              one row of ``docker ps`` (``--format``'s fields)
:func:`image_inspect`       ``GET /images/{name}/json``, ``docker image inspect``
:func:`image_summary`       ``GET /images/json`` (one element)
:func:`images_row`          one row of ``docker images``
:func:`volume_inspect`      ``GET /volumes/{name}``, ``docker volume inspect``
:func:`volume_row`          one row of ``docker volume ls``
:func:`network_inspect`     ``GET /networks/{id}``, ``docker network inspect``
:func:`network_row`         one row of ``docker network ls``
==========================  ===========================================

Times are RFC 3339 with nanoseconds (Go's ``RFC3339Nano``: trailing zeros
dropped), the zero time ``0001-01-01T00:00:00Z`` where docker has none;
durations and sizes are written as docker's CLI writes them (go-units'
``HumanDuration`` and ``HumanSizeWithPrecision``).  No I/O here: the
caller (:mod:`nsprim.dockerfmt.load`, the daemon) reads the records.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:  # (the spec is imported by the callers: listing images needs none of it)
    from typing import Any

    from nsprim.spec import ContainerSpec

    JSON = dict[str, Any]

__all__ = ["ZERO_TIME", "rfc3339", "human_duration", "human_size", "go_quote",
           "ellipsis", "docker_status", "status_text", "merged_config", "argv",
           "port_bindings", "exposed_ports", "mounts", "container_inspect",
           "container_summary", "ps_row", "PsRow", "display_ports", "image_inspect",
           "image_summary", "images_row", "volume_inspect", "volume_row",
           "network_inspect", "network_row", "network_id", "mac_for_ip", "BUILTIN_NETWORKS",
           "PS_TABLE", "IMAGES_TABLE", "VOLUMES_TABLE", "NETWORKS_TABLE", "HEADERS"]

ZERO_TIME = "0001-01-01T00:00:00Z"

#: docker's default ``--format`` of each listing, and the header of each field
PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
            "{{.Ports}}\t{{.Names}}")
IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
VOLUMES_TABLE = "table {{.Driver}}\t{{.Name}}"
NETWORKS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
    "State": "STATE", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
    "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES", "Repository": "REPOSITORY",
    "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED", "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    "Driver": "DRIVER", "Name": "NAME", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
    "IPv6": "IPV6", "IPv4": "IPV4", "Internal": "INTERNAL", "Availability": "AVAILABILITY",
    "Group": "GROUP", "Links": "LINKS",
}
#: headers that depend on the listing (docker's "VOLUME NAME", "NETWORK ID", "IMAGE ID")
VOLUME_HEADERS = dict(HEADERS, Name="VOLUME NAME")
NETWORK_HEADERS = dict(HEADERS, ID="NETWORK ID")
IMAGE_HEADERS = dict(HEADERS, ID="IMAGE ID")

#: the networks every host has (docker's built-in three); nsprim's bridge is "bridge"
BUILTIN_NETWORKS = ("bridge", "host", "none")
_NETWORK_DRIVER = {"bridge": "bridge", "host": "host", "none": "null"}


# ------------------------------------------------------------------ formats

def rfc3339(t: float | None) -> str:
    """Go's ``RFC3339Nano`` of a Unix time, in UTC (the zero time for None/0)."""
    if not t:
        return ZERO_TIME
    # a float Unix time holds microseconds, not nanoseconds: digits past
    # them would be noise
    ns = round(t * 1e6) * 1000
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def go_time(t: float) -> str:
    """Go's ``time.Time.String()`` of a Unix time (whole seconds), local time:
    ``2024-05-06 10:20:30 +0000 UTC`` (docker's ``CreatedAt`` columns)."""
    lt = time.localtime(int(t))
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", lt) + (lt.tm_zone or "")


def human_duration(seconds: float) -> str:
    """go-units' ``HumanDuration``: "Less than a second", "About a minute",
    "3 hours", "2 weeks"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(n: float, precision: int = 3) -> str:
    """go-units' ``HumanSizeWithPrecision`` (decimal units: "4.26MB", "0B")."""
    size = float(n)
    i = 0
    while size >= 1000 and i < len(_SIZE_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_SIZE_UNITS[i]}"


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote``: double quotes, Go escapes for the rest."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def ellipsis(s: str, maxlen: int) -> str:
    """docker's ``Ellipsis``: at most `maxlen` characters, the last one "…"."""
    if len(s) <= maxlen:
        return s
    if maxlen <= 0:
        return ""
    return s[:maxlen - 1] + "…"


def _sha(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def mac_for_ip(ip: str) -> str:
    """The MAC address nsprim gives a bridge endpoint (docker's: 02:42 and
    the IPv4 address; nsprim.network.mac_for_ip, without importing the
    network package for a listing)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


_NETWORK_IDS: dict[str, str] = {}


def network_id(name: str) -> str:
    """A network's id (64 hex digits, stable for its name)."""
    nid = _NETWORK_IDS.get(name)
    if nid is None:
        from nsprim.events import network_id as _id  # one formula, for events too

        nid = _NETWORK_IDS[name] = _id(name)
    return nid


# ------------------------------------------------------------------ status

def docker_status(status: str) -> str:
    """nsprim's status -> docker's (created, running, paused, restarting,
    removing, exited, dead)."""
    if status == "starting":
        return "created"
    if status in ("created", "running", "paused", "restarting", "removing", "exited", "dead"):
        return status
    return "dead"


def health_status(state: Mapping[str, Any]) -> str | None:
    """The health check's status (starting, healthy, unhealthy), if it has one."""
    h = state.get("health")
    s = h.get("Status") if isinstance(h, Mapping) else None
    return s if s in ("starting", "healthy", "unhealthy") else None


def status_text(status: str, state: Mapping[str, Any], now: float) -> str:
    """docker's ``Status`` column: "Up 3 minutes", "Up 3 minutes (healthy)",
    "Exited (0) 2 seconds ago"."""
    s = docker_status(status)
    code = state.get("exit_code") or 0
    if s == "running":
        health = health_status(state)
        up = "Up " + human_duration(now - float(state.get("started_at") or now))
        if health is None:
            return up
        return up + (" (health: starting)" if health == "starting" else f" ({health})")
    if s == "paused":
        return "Up " + human_duration(now - float(state.get("started_at") or now)) + \
            " (Paused)"
    if s == "restarting":
        return f"Restarting ({code}) " + \
            human_duration(now - float(state.get("finished_at") or now)) + " ago"
    if s == "exited":
        return f"Exited ({code}) " + \
            human_duration(now - float(state.get("finished_at") or now)) + " ago"
    if s == "removing":
        return "Removal In Progress"
    return s.capitalize()


def _health_json(h: Mapping[str, Any]) -> JSON:
    """docker's State.Health: Status, FailingStreak, Log [{Start, End,
    ExitCode, Output}]."""
    log = h.get("Log")
    return {"Status": str(h.get("Status")), "FailingStreak": int(h.get("FailingStreak") or 0),
            "Log": [e for e in log if isinstance(e, Mapping)] if isinstance(log, list) else []}


# ------------------------------------------------------------------ config

def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _str_map(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping):
        return {}
    return {k: x for k, x in v.items() if isinstance(k, str) and isinstance(x, str)}


def _key_set(v: Any) -> dict[str, Any]:
    return {k: {} for k in v if isinstance(k, str)} if isinstance(v, Mapping) else {}


def _image_cfg(image_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The image's ``config`` with every field of the type docker's has: an
    image's config comes from a registry or an archive, so a field of
    another type is left out rather than trusted."""
    c = image_config.get("config") if isinstance(image_config, Mapping) else None
    if not isinstance(c, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key in ("Entrypoint", "Cmd", "Env", "OnBuild", "Shell"):
        if key in c:
            out[key] = _strs(c[key])
    for key in ("User", "WorkingDir", "StopSignal"):
        if isinstance(c.get(key), str):
            out[key] = c[key]
    for key in ("ExposedPorts", "Volumes"):
        if key in c:
            out[key] = _key_set(c[key])
    if "Labels" in c:
        out["Labels"] = _str_map(c["Labels"])
    hc = c.get("Healthcheck")
    if isinstance(hc, Mapping) and hc:
        out["Healthcheck"] = {k: v for k, v in hc.items() if isinstance(k, str)
                              and isinstance(v, (str, int, list)) and not isinstance(v, bool)}
    if isinstance(c.get("ArgsEscaped"), bool):
        out["ArgsEscaped"] = c["ArgsEscaped"]
    return out


def argv(spec: ContainerSpec, image_config: Mapping[str, Any] | None) -> list[str]:
    """The command the container runs: docker's rule (``--entrypoint``
    replaces the image's entrypoint and drops its CMD; arguments replace the
    CMD)."""
    ic = _image_cfg(image_config)
    if spec.entrypoint is not None:
        return list(spec.entrypoint) + list(spec.cmd)
    return list(ic.get("Entrypoint") or []) + (list(spec.cmd) or list(ic.get("Cmd") or []))


def _env(spec: ContainerSpec, ic: Mapping[str, Any]) -> list[str]:
    """docker's merge: the container's variables, then the image's whose
    names the container did not set."""
    mine = list(spec.env)
    keys = {e.partition("=")[0] for e in mine}
    return mine + [e for e in ic.get("Env") or [] if e.partition("=")[0] not in keys]


def _publish_specs(spec: ContainerSpec) -> list[Any]:
    if not spec.publish:
        return []
    from nsprim.network.ports import parse_publish

    out = []
    for p in spec.publish:
        try:
            out += parse_publish(p)
        except ValueError:
            continue  # a record of another version: what cannot be read is left out
    return out


def exposed_ports(spec: ContainerSpec, image_config: Mapping[str, Any] | None
                  ) -> dict[str, Any] | None:
    """``Config.ExposedPorts``: the image's and the published ones."""
    out: dict[str, Any] = {k: {} for k in _image_cfg(image_config).get("ExposedPorts") or {}}
    for p in _publish_specs(spec):
        out.setdefault(f"{p.container_port}/{p.proto}", {})
    return dict(sorted(out.items())) or None


def port_bindings(spec: ContainerSpec) -> dict[str, list[JSON]]:
    """``HostConfig.PortBindings``: ``{"80/tcp": [{"HostIp": "", "HostPort":
    "19101"}]}`` as asked (an empty HostPort: any free port)."""
    out: dict[str, list[JSON]] = {}
    for p in _publish_specs(spec):
        out.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port) if p.host_port else ""})
    return out


def _host_hostname() -> str:
    import os

    return os.uname().nodename


def merged_config(spec: ContainerSpec, image_config: Mapping[str, Any] | None) -> JSON:
    """``Config``: the container's settings with the image's config merged in,
    docker's rules."""
    ic = _image_cfg(image_config)
    if spec.entrypoint is not None:
        entrypoint: list[str] | None = list(spec.entrypoint) or None
        cmd: list[str] | None = list(spec.cmd) or None
    else:
        entrypoint = list(ic.get("Entrypoint") or []) or None
        cmd = list(spec.cmd) or list(ic.get("Cmd") or []) or None
    labels = {**dict(ic.get("Labels") or {}), **dict(spec.labels)}
    out: JSON = {
        "Hostname": spec.hostname or (_host_hostname() if spec.network == "host"
                                      else spec.id[:12]),
        "Domainname": spec.domainname or "",
        "User": spec.user if spec.user is not None else (ic.get("User") or ""),
        "AttachStdin": spec.interactive and not spec.detach,
        "AttachStdout": not spec.detach,
        "AttachStderr": not spec.detach,
        "ExposedPorts": exposed_ports(spec, image_config),
        "Tty": spec.tty,
        "OpenStdin": spec.interactive,
        "StdinOnce": spec.interactive and not spec.detach,
        "Env": _env(spec, ic) or None,
        "Cmd": cmd,
        "Image": spec.image or spec.rootfs or "",
        "Volumes": dict(ic.get("Volumes") or {}) or None,
        "WorkingDir": spec.workdir or ic.get("WorkingDir") or "",
        "Entrypoint": entrypoint,
        "OnBuild": ic.get("OnBuild") or None,
        "Labels": labels,
    }
    if ic.get("Healthcheck"):
        out["Healthcheck"] = ic["Healthcheck"]
    stop_signal = spec.stop_signal or ic.get("StopSignal")
    if stop_signal:
        out["StopSignal"] = stop_signal
    if spec.stop_timeout is not None:
        out["StopTimeout"] = spec.stop_timeout
    return out


def mounts(spec: ContainerSpec, volumes_dir: str = "") -> list[JSON]:
    """``Mounts``: the ``-v`` binds and named volumes, docker's MountPoint
    objects (``--tmpfs`` mounts are in ``HostConfig.Tmpfs``, as docker's)."""
    out: list[JSON] = []
    for v in spec.volumes:
        parts = v.split(":")
        if len(parts) < 2:
            continue
        src, dst = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        rw = "ro" not in mode.split(",")
        if src.startswith("/"):
            out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": mode,
                        "RW": rw, "Propagation": "rprivate"})
        else:
            source = f"{volumes_dir.rstrip('/')}/{src}/_data" if volumes_dir else ""
            out.append({"Type": "volume", "Name": src, "Source": source, "Destination": dst,
                        "Driver": "local", "Mode": mode or "z", "RW": rw,
                        "Propagation": ""})
    return out


def _tmpfs(spec: ContainerSpec) -> dict[str, str]:
    out = {}
    for t in spec.tmpfs:
        target, _, opts = t.partition(":")
        out[target] = opts
    return out


def _size(value: str | int | None) -> int:
    if value is None or value == "":
        return 0
    if value in (-1, "-1"):
        return -1
    from nsprim.units import parse_size

    try:
        return parse_size(value)
    except ValueError:
        return 0


def _nano_cpus(cpus: str | None) -> int:
    try:
        return round(float(cpus) * 1e9) if cpus else 0
    except ValueError:
        return 0


def _restart_policy(restart: str) -> JSON:
    name, _, count = (restart or "no").partition(":")
    return {"Name": name, "MaximumRetryCount": int(count) if count.isdigit() else 0}


def _devices(spec: ContainerSpec) -> list[JSON]:
    out = []
    for d in spec.devices:
        parts = d.split(":")
        host, ctr, perms = parts[0], parts[0], "rwm"
        if len(parts) == 2:
            if parts[1] and not parts[1].startswith("/") and set(parts[1]) <= set("rwm"):
                perms = parts[1]
            else:
                ctr = parts[1]
        elif len(parts) >= 3:
            ctr, perms = parts[1], parts[2]
        out.append({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms})
    return out


def _throttle(values: Sequence[str]) -> list[JSON]:
    out = []
    for v in values:
        path, _, rate = v.rpartition(":")
        out.append({"Path": path, "Rate": _size(rate)})
    return out


#: nsprim.config's DEFAULT_MASKED_PATHS and DEFAULT_READONLY_PATHS (docker's;
#: a test keeps them the same), here so that inspect need not import the
#: runtime's config module
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _host_config(spec: ContainerSpec) -> JSON:
    memory = _size(spec.memory)
    swap = _size(spec.memory_swap)
    pids = spec.pids_limit if spec.pids_limit and spec.pids_limit > 0 else None
    security = []
    if spec.no_new_privileges:
        security.append("no-new-privileges")
    if spec.seccomp == "unconfined":
        security.append("seccomp=unconfined")
    elif isinstance(spec.seccomp, Mapping):
        security.append("seccomp=<profile>")
    out: JSON = {
        "Binds": list(spec.volumes) or None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": spec.network,
        "PortBindings": port_bindings(spec),
        "RestartPolicy": _restart_policy(spec.restart),
        "AutoRemove": spec.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "ConsoleSize": [0, 0],
        "CapAdd": list(spec.cap_add) or None,
        "CapDrop": list(spec.cap_drop) or None,
        "CgroupnsMode": "private",
        "Dns": list(spec.dns),
        "DnsOptions": list(spec.dns_options),
        "DnsSearch": list(spec.dns_search),
        "ExtraHosts": list(spec.add_hosts) or None,
        "GroupAdd": None,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": None,
        "OomScoreAdj": 0,
        "PidMode": "",
        "Privileged": spec.privileged,
        "PublishAllPorts": spec.publish_all,
        "ReadonlyRootfs": spec.read_only,
        "SecurityOpt": security or None,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 67108864,
        "Runtime": "nsprim",
        "Isolation": "",
        "CpuShares": spec.cpu_shares or 0,
        "Memory": memory,
        "NanoCpus": _nano_cpus(spec.cpus),
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": _throttle(spec.device_read_bps),
        "BlkioDeviceWriteBps": _throttle(spec.device_write_bps),
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": spec.cpuset_cpus or "",
        "CpusetMems": spec.cpuset_mems or "",
        "Devices": _devices(spec),
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "MemoryReservation": 0,
        "MemorySwap": swap if spec.memory_swap is not None else (memory * 2 if memory else 0),
        "MemorySwappiness": None,
        "OomKillDisable": False,
        "PidsLimit": pids,
        "Ulimits": [{"Name": k[len("RLIMIT_"):].lower(),
                     "Hard": -1 if v[1] >= 1 << 63 else v[1],
                     "Soft": -1 if v[0] >= 1 << 63 else v[0]}
                    for k, v in spec.rlimits.items()] or None,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": [] if spec.privileged else list(MASKED_PATHS),
        "ReadonlyPaths": [] if spec.privileged else list(READONLY_PATHS),
    }
    if spec.tmpfs:
        out["Tmpfs"] = _tmpfs(spec)
    if spec.init:
        out["Init"] = True
    return out


# --------------------------------------------------------------- networking

def _network_name(spec: ContainerSpec) -> str | None:
    """The network the container is on, None when it shares another's."""
    net = spec.network or "bridge"
    return None if net.startswith("container:") else net


def _endpoint(spec: ContainerSpec, state: Mapping[str, Any], running: bool,
              net: Mapping[str, Any]) -> JSON:
    ip = str(state.get("ip") or "") if running else ""
    name = _network_name(spec) or ""
    user = name not in BUILTIN_NETWORKS  # a user-defined network: what the supervisor noted
    names = ([spec.name] if spec.name else []) + list(spec.network_aliases) + [spec.id[:12]]
    return {
        "IPAMConfig": None, "Links": None,
        "Aliases": list(spec.network_aliases) or None if user else None,
        "MacAddress": mac_for_ip(ip) if ip else "",
        "DriverOpts": None,
        "NetworkID": network_id(name) if not user else _user_network_id(name),
        "EndpointID": _sha("endpoint", spec.id, ip) if ip else "",
        "Gateway": str((state.get("gateway") if user else net.get("gateway")) or "")
        if ip else "",
        "IPAddress": ip,
        "IPPrefixLen": int((state.get("prefixlen") if user else net.get("prefixlen")) or 0)
        if ip else 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "DNSNames": names if user else None,
    }


def _extra_endpoints(spec: ContainerSpec, running: bool) -> dict[str, JSON]:
    """The endpoints of the networks `network connect` added (eth1...):
    their leases while it runs."""
    from nsprim.network import user

    leases = user.endpoints_of(spec.id) if running else {}
    out: dict[str, JSON] = {}
    for e in spec.extra_networks:
        if not isinstance(e, Mapping) or not isinstance(e.get("name"), str):
            continue
        lease = leases.get(e["name"]) or {}
        ip = str(lease.get("address") or "")
        n = lease.get("network")
        aliases = [str(a) for a in e.get("aliases") or ()]
        ipam = {k: v for k, v in (("IPv4Address", e.get("ip")), ("IPv6Address", e.get("ip6")))
                if v}
        out[e["name"]] = {
            "IPAMConfig": ipam or None, "Links": None, "Aliases": aliases or None,
            "MacAddress": mac_for_ip(ip) if ip else "", "DriverOpts": None,
            "NetworkID": _user_network_id(e["name"]),
            "EndpointID": _sha("endpoint", spec.id, ip) if ip else "",
            "Gateway": str(n.gateway) if ip and n is not None else "",
            "IPAddress": ip,
            "IPPrefixLen": int(n.subnet.split("/")[1]) if ip and n is not None else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": str(lease.get("ip6") or ""),
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": ([spec.name] if spec.name else []) + aliases + [spec.id[:12]]}
    return out


def _user_network_id(name: str) -> str:
    from nsprim.network import user

    try:
        return user.get(name).id
    except user.NetworkError:
        return ""


def _published(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ports = state.get("ports") or []
    return [p for p in ports if isinstance(p, Mapping)]


def _network_ports(spec: ContainerSpec, state: Mapping[str, Any],
                   image_config: Mapping[str, Any] | None, running: bool) -> JSON:
    if not running:
        return {}
    out: JSON = {k: None for k in exposed_ports(spec, image_config) or {}}
    for p in _published(state):
        key = f"{p.get('container_port')}/{p.get('proto', 'tcp')}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": p.get("host_ip") or "0.0.0.0",
                         "HostPort": str(p.get("host_port"))})
    return dict(sorted(out.items()))


def _network_settings(spec: ContainerSpec, state: Mapping[str, Any],
                      image_config: Mapping[str, Any] | None, running: bool,
                      net: Mapping[str, Any]) -> JSON:
    name = _network_name(spec)
    networks = {} if name is None else {name: _endpoint(spec, state, running, net)}
    if spec.extra_networks:
        networks.update(_extra_endpoints(spec, running))
    ep = networks.get("bridge") or {}
    pid = state.get("pid")
    return {
        "Bridge": "",
        "SandboxID": _sha("sandbox", spec.id) if running else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": _network_ports(spec, state, image_config, running),
        "SandboxKey": f"/proc/{pid}/ns/net" if running and isinstance(pid, int) else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": ep.get("EndpointID", ""),
        "Gateway": ep.get("Gateway", ""),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": ep.get("IPAddress", ""),
        "IPPrefixLen": ep.get("IPPrefixLen", 0),
        "IPv6Gateway": "",
        "MacAddress": ep.get("MacAddress", ""),
        "Networks": networks,
    }


# --------------------------------------------------------------- containers

def _is_running(status: str) -> bool:
    return docker_status(status) in ("running", "paused", "restarting")


def container_inspect(spec: ContainerSpec, state: Mapping[str, Any], *, status: str,
                      image_config: Mapping[str, Any] | None = None,
                      log_path: str = "", volumes_dir: str = "", container_dir: str = "",
                      etc_dir: str = "", network: Mapping[str, Any] | None = None,
                      layers: Sequence[str] = ()) -> JSON:
    """docker's ``ContainerInspectResponse``.  `status` is the record's
    (:attr:`nsprim.lifecycle.Record.status`); `network` the bridge's
    ``{"gateway", "prefixlen"}``; `layers` the image's layer directories."""
    s = docker_status(status)
    running = _is_running(status)
    command = argv(spec, image_config)
    pid = state.get("pid")
    graph: JSON
    if spec.image_id and container_dir:
        graph = {"Data": {"LowerDir": ":".join(reversed(layers)) or None,
                          "MergedDir": f"{container_dir}/merged",
                          "UpperDir": f"{container_dir}/upper",
                          "WorkDir": f"{container_dir}/work"},
                 "Name": "overlay2"}
    else:
        graph = {"Data": {"RootDir": spec.rootfs} if spec.rootfs else None,
                 "Name": "rootfs" if spec.rootfs else "overlay2"}
    # the container's own files, in every mode but container: (etc_dir:
    # <run>/etc/<id>, the files <id>.hosts...)
    etc = etc_dir.rstrip("/") if etc_dir and spec.etc_files and \
        not spec.network.startswith("container:") else ""
    return {
        "Id": spec.id,
        "Created": rfc3339(spec.created),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": s,
            "Running": running,
            "Paused": s == "paused",
            "Restarting": s == "restarting",
            "OOMKilled": bool(state.get("oom_killed")),
            "Dead": s == "dead",
            "Pid": pid if running and isinstance(pid, int) and s != "restarting" else 0,
            "ExitCode": int(state.get("exit_code") or 0),
            "Error": str(state.get("error") or ""),
            "StartedAt": rfc3339(state.get("started_at")),
            "FinishedAt": rfc3339(state.get("finished_at")),
            **({"Health": _health_json(state["health"])} if health_status(state) else {}),
        },
        "Image": spec.image_id or "",
        "ResolvConfPath": f"{etc}.resolv.conf" if etc else "",
        "HostnamePath": f"{etc}.hostname" if etc else "",
        "HostsPath": f"{etc}.hosts" if etc else "",
        "LogPath": log_path,
        "Name": "/" + (spec.name or ""),
        "RestartCount": int(state.get("restart_count") or 0),
        "Driver": graph["Name"],
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(spec),
        "GraphDriver": graph,
        "Mounts": mounts(spec, volumes_dir),
        "Config": merged_config(spec, image_config),
        "NetworkSettings": _network_settings(spec, state, image_config, running,
                                             network or {}),
    }


def _summary_command(command: Sequence[str]) -> str:
    """docker's ``Command`` of a container summary: arguments with a space in
    single quotes."""
    if not command:
        return ""
    return " ".join([command[0]] + [f"'{a}'" if " " in a else a for a in command[1:]])


def container_summary(spec: ContainerSpec, state: Mapping[str, Any], *, status: str,
                      image_config: Mapping[str, Any] | None = None, volumes_dir: str = "",
                      network: Mapping[str, Any] | None = None, now: float | None = None,
                      size_rw: int | None = None, size_root_fs: int | None = None) -> JSON:
    """docker's ``ContainerSummary`` (an element of ``GET /containers/json``)."""
    now = time.time() if now is None else now
    running = _is_running(status)
    ic = _image_cfg(image_config)
    ports: list[JSON] = []
    if running:
        published = set()
        for p in _published(state):
            proto = str(p.get("proto", "tcp"))
            ports.append({"IP": p.get("host_ip") or "0.0.0.0",
                          "PrivatePort": int(p.get("container_port") or 0),
                          "PublicPort": int(p.get("host_port") or 0), "Type": proto})
            published.add(f"{p.get('container_port')}/{proto}")
        # every port -p asked for is in the state's ports: the image's
        # exposed ones are what is left
        for key in sorted(ic.get("ExposedPorts") or {}):
            port, _, proto = key.partition("/")
            if key not in published and port.isascii() and port.isdigit() and len(port) < 6:
                ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    name = _network_name(spec)
    networks = {} if name is None else {name: _endpoint(spec, state, running, network or {})}
    out: JSON = {
        "Id": spec.id,
        "Names": ["/" + (spec.name or "")],
        "Image": spec.image or spec.rootfs or "",
        "ImageID": spec.image_id or "",
        "Command": _summary_command(argv(spec, image_config)),
        "Created": int(spec.created),
        "Ports": ports,
        "Labels": {**dict(ic.get("Labels") or {}), **dict(spec.labels)},
        "State": docker_status(status),
        "Status": status_text(status, state, now),
        "HostConfig": {"NetworkMode": spec.network or "bridge"},
        "NetworkSettings": {"Networks": networks},
        "Mounts": mounts(spec, volumes_dir),
    }
    if size_rw is not None:
        out["SizeRw"] = size_rw
    if size_root_fs is not None:
        out["SizeRootFs"] = size_root_fs
    return out


def display_ports(ports: Iterable[Mapping[str, Any]]) -> str:
    """docker's ``PORTS`` column: ``0.0.0.0:19101->80/tcp``, consecutive
    ports as ranges (``0.0.0.0:8000-8001->80-81/tcp``), exposed ports
    alone (``443/tcp``)."""
    groups: dict[tuple[str, str, bool], list[tuple[int, int]]] = {}
    for p in ports:
        ip = str(p.get("IP") or "")
        public = int(p.get("PublicPort") or 0)
        key = (ip, str(p.get("Type") or "tcp"), bool(public))
        groups.setdefault(key, []).append((int(p.get("PrivatePort") or 0), public))
    items = []
    for (ip, proto, has_public), pairs in groups.items():
        pairs.sort()
        runs: list[list[tuple[int, int]]] = []
        for pr in pairs:
            if runs and pr[0] == runs[-1][-1][0] + 1 and \
                    (not has_public or pr[1] == runs[-1][-1][1] + 1):
                runs[-1].append(pr)
            else:
                runs.append([pr])
        for run in runs:
            priv = str(run[0][0]) if len(run) == 1 else f"{run[0][0]}-{run[-1][0]}"
            if has_public:
                pub = str(run[0][1]) if len(run) == 1 else f"{run[0][1]}-{run[-1][1]}"
                where = f"[{ip}]" if ":" in ip else ip  # Go's net.JoinHostPort
                items.append((run[0][0], f"{where}:{pub}->{priv}/{proto}"))
            else:
                items.append((run[0][0], f"{priv}/{proto}"))
    items.sort()
    return ", ".join(text for _, text in items)


class PsRow:
    """One row of ``docker ps``: the fields ``--format`` templates use
    (``{{.ID}}``, ``{{.Label "x"}}``...), as docker's CLI writes them."""

    FIELDS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts",
              "Names", "Networks", "Ports", "RunningFor", "Size", "State", "Status")

    def __init__(self, summary: Mapping[str, Any], *, trunc: bool = True,
                 now: float | None = None) -> None:
        self.summary = summary
        self.trunc = trunc
        self.now = time.time() if now is None else now

    def ID(self) -> str:  # noqa: N802 - docker's field names
        cid = str(self.summary["Id"])
        return cid[:12] if self.trunc else cid

    def Image(self) -> str:  # noqa: N802
        image = str(self.summary.get("Image") or "")
        if self.trunc and image.startswith("sha256:"):
            return image[7:19]
        return image

    def Command(self) -> str:  # noqa: N802
        command = str(self.summary.get("Command") or "")
        return go_quote(ellipsis(command, 20) if self.trunc else command)

    def CreatedAt(self) -> str:  # noqa: N802
        return go_time(float(self.summary.get("Created") or 0))

    def RunningFor(self) -> str:  # noqa: N802
        return human_duration(self.now - float(self.summary.get("Created") or 0)) + " ago"

    def Ports(self) -> str:  # noqa: N802
        return display_ports(self.summary.get("Ports") or [])

    def State(self) -> str:  # noqa: N802
        return str(self.summary.get("State") or "")

    def Status(self) -> str:  # noqa: N802
        return str(self.summary.get("Status") or "")

    def Size(self) -> str:  # noqa: N802
        rw = human_size(int(self.summary.get("SizeRw") or 0))
        virtual = int(self.summary.get("SizeRootFs") or 0)
        return f"{rw} (virtual {human_size(virtual)})" if virtual > 0 else rw

    def Names(self) -> str:  # noqa: N802
        return ",".join(n.lstrip("/") for n in self.summary.get("Names") or [])

    def Labels(self) -> str:  # noqa: N802
        labels = self.summary.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def Label(self, name: str) -> str:  # noqa: N802
        return str((self.summary.get("Labels") or {}).get(name, ""))

    def Mounts(self) -> str:  # noqa: N802
        names = []
        for m in self.summary.get("Mounts") or []:
            name = str(m.get("Name") or m.get("Source") or "")
            names.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(names)

    def LocalVolumes(self) -> str:  # noqa: N802
        return str(sum(1 for m in self.summary.get("Mounts") or []
                       if m.get("Driver") == "local"))

    def Networks(self) -> str:  # noqa: N802
        nets = (self.summary.get("NetworkSettings") or {}).get("Networks") or {}
        return ",".join(sorted(nets))

    def to_json(self) -> JSON:
        """What ``{{json .}}`` and ``--format json`` print."""
        return {f: getattr(self, f)() for f in self.FIELDS}


def ps_row(summary: Mapping[str, Any], *, trunc: bool = True,
           now: float | None = None) -> PsRow:
    return PsRow(summary, trunc=trunc, now=now)


# ------------------------------------------------------------------- images

def _config_str(config: Mapping[str, Any], key: str) -> str:
    v = config.get(key)
    return v if isinstance(v, str) else ""


def _image_created(config: Mapping[str, Any]) -> str:
    created = config.get("created")
    return created if isinstance(created, str) and created else ZERO_TIME


def parse_rfc3339(text: str) -> float:
    """Unix time of an RFC 3339 string (0 when it is none)."""
    import datetime

    if not text or text.startswith("0001-"):
        return 0.0
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    main, dot, rest = t.partition(".")
    if dot:  # Python takes at most 6 fraction digits
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        t = f"{main}.{(digits + '000000')[:6]}{tz}"
    try:
        return datetime.datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


def _image_config_json(ic: Mapping[str, Any]) -> JSON:
    out: JSON = {
        "User": ic.get("User") or "",
        "ExposedPorts": dict(ic.get("ExposedPorts") or {}) or None,
        "Env": list(ic.get("Env") or []) or None,
        "Cmd": list(ic.get("Cmd") or []) or None,
        "Volumes": dict(ic.get("Volumes") or {}) or None,
        "WorkingDir": ic.get("WorkingDir") or "",
        "Entrypoint": list(ic.get("Entrypoint") or []) or None,
        "OnBuild": list(ic.get("OnBuild") or []) or None,
        "Labels": dict(ic.get("Labels") or {}) or None,
    }
    for key in ("Healthcheck", "ArgsEscaped", "StopSignal", "Shell"):
        if ic.get(key):
            out[key] = ic[key]
    return out


def familiar(name: str) -> str:
    """docker's short form of a name as the image store keeps it
    (``docker.io/library/busybox:latest`` -> ``busybox:latest``; names of
    other registries stay whole): Reference.familiar() of a normalised name,
    without parsing it again."""
    domain, sep, rest = name.partition("/")
    if not sep or domain != "docker.io":
        return name
    if rest.startswith("library/") and rest.partition("@")[0].count("/") == 1:
        return rest[len("library/"):]
    return rest


def _repo_tags(names: Sequence[str]) -> list[str]:
    return [familiar(n) for n in names]


def image_inspect(image_id: str, config: Mapping[str, Any], *, names: Sequence[str] = (),
                  repo_digests: Sequence[str] = (), size: int = 0,
                  diff_ids: Sequence[str] = (), layers: Sequence[str] = ()) -> JSON:
    """docker's ``ImageInspect`` of an image of the store (`config` is its
    OCI config)."""
    ic = _image_cfg(config)
    out: JSON = {
        "Id": image_id,
        "RepoTags": _repo_tags(names),
        "RepoDigests": list(repo_digests),
        "Parent": "",
        "Comment": _config_str(config, "comment"),
        "Created": _image_created(config),
        "DockerVersion": "",
        "Author": _config_str(config, "author"),
        "Config": _image_config_json(ic),
        "Architecture": _config_str(config, "architecture"),
        "Os": _config_str(config, "os") or "linux",
        "Size": size,
        "GraphDriver": {"Data": {"LowerDir": ":".join(reversed(layers))} if layers else None,
                        "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(diff_ids)},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }
    if _config_str(config, "variant"):
        out["Variant"] = config["variant"]
    return out


def image_summary(image_id: str, config: Mapping[str, Any], *, names: Sequence[str] = (),
                  repo_digests: Sequence[str] = (), size: int = 0,
                  containers: int = -1) -> JSON:
    """docker's ``ImageSummary`` (an element of ``GET /images/json``)."""
    return {
        "Id": image_id,
        "ParentId": "",
        "RepoTags": _repo_tags(names),
        "RepoDigests": list(repo_digests),
        "Created": int(parse_rfc3339(_image_created(config))),
        "Size": size,
        "SharedSize": -1,
        "Labels": dict(_image_cfg(config).get("Labels") or {}) or None,
        "Containers": containers,
    }


class _Row:
    """A listing row whose fields are plain strings (images, volumes, networks)."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None
        return lambda: value

    def Label(self, name: str) -> str:  # noqa: N802
        labels = self.__dict__.get("labels") or {}
        return str(labels.get(name, ""))

    def to_json(self) -> JSON:
        return dict(self.fields)


def images_row(summary: Mapping[str, Any], repo_tag: str | None = None, *,
               trunc: bool = True, digest: str | None = None,
               now: float | None = None) -> _Row:
    """One row of ``docker images`` for one of the image's tags (None: the
    image without a tag, ``<none>:<none>``)."""
    now = time.time() if now is None else now
    if repo_tag:
        at = repo_tag.rfind("@")
        name = repo_tag[:at] if at > 0 else repo_tag
        slash = name.rfind("/")
        colon = name.rfind(":")
        repo, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "<none>")
    else:
        repo, tag = "<none>", "<none>"
    iid = str(summary["Id"])
    short = iid[7:19] if iid.startswith("sha256:") else iid[:12]
    created = float(summary.get("Created") or 0)
    size = int(summary.get("Size") or 0)
    containers = int(summary.get("Containers", -1))
    row = _Row({
        "Containers": "N/A" if containers < 0 else str(containers),
        "CreatedAt": go_time(created),
        "CreatedSince": human_duration(now - created) + " ago" if created else "N/A",
        "Digest": digest or "<none>",
        "ID": short if trunc else iid,
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": human_size(size),
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(size, 4),
    })
    row.__dict__["labels"] = summary.get("Labels") or {}
    return row


# ------------------------------------------------------------------ volumes

def volume_inspect(name: str, mountpoint: str, created_at: str, *,
                   labels: Mapping[str, str] | None = None,
                   options: Mapping[str, str] | None = None) -> JSON:
    """docker's ``Volume`` (``docker volume inspect``'s key order)."""
    return {"CreatedAt": created_at, "Driver": "local", "Labels": dict(labels or {}) or None,
            "Mountpoint": mountpoint, "Name": name, "Options": dict(options or {}) or None,
            "Scope": "local"}


def volume_row(volume: Mapping[str, Any]) -> _Row:
    labels = volume.get("Labels") or {}
    row = _Row({"Availability": "N/A", "Driver": str(volume.get("Driver") or "local"),
                "Group": "N/A",
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "Links": "N/A", "Mountpoint": str(volume.get("Mountpoint") or ""),
                "Name": str(volume["Name"]), "Scope": str(volume.get("Scope") or "local"),
                "Size": "N/A", "Status": "N/A"})
    row.__dict__["labels"] = labels
    return row


# ----------------------------------------------------------------- networks

def network_inspect(name: str, *, subnet: str = "", gateway: str = "",
                    bridge: str = "nsprim0", created: float = 0.0,
                    containers: Iterable[Mapping[str, Any]] = ()) -> JSON:
    """docker's ``Network`` of one of the three built-in networks.
    `containers` are ``{"Id", "Name", "IPAddress", "IPPrefixLen"}`` of the
    running containers on it."""
    driver = _NETWORK_DRIVER.get(name, "bridge")
    config = [{"Subnet": subnet, "Gateway": gateway}] if subnet and name == "bridge" else []
    members: JSON = {}
    for c in containers:
        ip = str(c.get("IPAddress") or "")
        members[str(c["Id"])] = {
            "Name": str(c.get("Name") or "").lstrip("/"),
            "EndpointID": _sha("endpoint", str(c["Id"]), ip) if ip else "",
            "MacAddress": mac_for_ip(ip) if ip else "",
            "IPv4Address": f"{ip}/{c.get('IPPrefixLen') or 0}" if ip else "",
            "IPv6Address": "",
        }
    options: JSON = {}
    if name == "bridge":
        options = {"com.docker.network.bridge.name": bridge,
                   "com.docker.network.bridge.enable_ip_masquerade": "true",
                   "com.docker.network.driver.mtu": "1500"}
    return {
        "Name": name,
        "Id": network_id(name),
        "Created": rfc3339(created),
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": name == "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": members,
        "Options": options,
        "Labels": {},
    }


def network_row(network: Mapping[str, Any], *, trunc: bool = True) -> _Row:
    labels = network.get("Labels") or {}
    nid = str(network["Id"])
    row = _Row({"CreatedAt": go_time(parse_rfc3339(str(network.get("Created") or ""))),
                "Driver": str(network.get("Driver") or ""),
                "ID": nid[:12] if trunc else nid,
                "IPv4": str(bool(network.get("EnableIPv4"))).lower(),
                "IPv6": str(bool(network.get("EnableIPv6"))).lower(),
                "Internal": str(bool(network.get("Internal"))).lower(),
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "Name": str(network["Name"]), "Scope": str(network.get("Scope") or "local")})
    row.__dict__["labels"] = labels
    return row


# ------------------------------------------------------------- templates

#: fields docker's Go types declare as slices (a null prints ``[]`` in a
#: template) and as maps (``map[]``); values of ``Ports`` maps are slices
NIL_SLICES = frozenset({
    "Binds", "VolumesFrom", "CapAdd", "CapDrop", "ExtraHosts", "GroupAdd", "Links",
    "SecurityOpt", "DeviceCgroupRules", "DeviceRequests", "Ulimits", "Env", "Cmd",
    "Entrypoint", "OnBuild", "ExecIDs", "SecondaryIPAddresses", "SecondaryIPv6Addresses",
    "Aliases", "DNSNames", "RepoTags", "RepoDigests", "Layers", "Shell", "Dns", "DnsOptions",
    "DnsSearch", "Mounts", "Args", "Devices", "MaskedPaths", "ReadonlyPaths"})
NIL_MAPS = frozenset({"ExposedPorts", "Volumes", "Labels", "IPAMConfig", "DriverOpts",
                      "Options", "Data", "Tmpfs", "PortBindings", "Networks", "Containers"})


def template_view(obj: Any) -> Any:
    """An inspect object as docker's typed values show it to a ``--format``
    template (nil slices and maps print ``[]`` and ``map[]``)."""
    from nsprim.dockerfmt.gotemplate import typed

    return typed(obj, NIL_SLICES, NIL_MAPS, frozenset({"Ports"}))
