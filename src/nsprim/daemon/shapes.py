"""docker's JSON for nsprim's records: container summary and inspect, image,
volume, network.  Small functions the daemon calls by name, so the shared
``nsprim.dockerfmt.shapes`` can replace them when it lands."""

from __future__ import annotations

import os
import time
from typing import Any

from nsprim.lifecycle import Record


def iso(t: float | None) -> str:
    if not t:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _argv(cfg: dict[str, Any]) -> list[str]:
    """The command as docker shows it (entrypoint + cmd, the image's where unset)."""
    ep = cfg.get("entrypoint")
    cmd = list(cfg.get("cmd") or [])
    image_cfg = cfg.get("image_config") or {}
    if ep is None:
        ep = image_cfg.get("Entrypoint") or []
        if not cmd:
            cmd = list(image_cfg.get("Cmd") or [])
    return list(ep) + cmd


def _ports_inspect(st: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in cfg.get("exposed_ports") or []:
        out.setdefault(p if "/" in p else p + "/tcp", None)
    for p in st.get("ports") or []:
        key = f"{p['container_port']}/{p['proto']}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": p.get("host_ip") or "0.0.0.0",
                         "HostPort": str(p["host_port"])})
    return out


def _ports_summary(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"IP": p.get("host_ip") or "0.0.0.0", "PrivatePort": int(p["container_port"]),
             "PublicPort": int(p["host_port"]), "Type": p["proto"]}
            for p in st.get("ports") or []]


def _status_text(rec: Record, st: dict[str, Any], status: str) -> str:
    def ago(t: float | None) -> str:
        d = max(0.0, time.time() - (t or time.time()))
        for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if d >= secs:
                n = int(d // secs)
                return f"{n} {unit if n > 1 else unit[:-1]}"
        if d < 1:
            return "Less than a second"
        return f"{int(d)} seconds"
    if status == "running":
        return f"Up {ago(st.get('started_at'))}"
    if status == "restarting":
        return f"Restarting ({st.get('exit_code')}) {ago(st.get('finished_at'))} ago"
    if status == "exited":
        return f"Exited ({st.get('exit_code')}) {ago(st.get('finished_at'))} ago"
    return status.capitalize()


def _networks(st: dict[str, Any], cfg: dict[str, Any], running: bool) -> dict[str, Any]:
    mode = cfg.get("network") or "bridge"
    if mode.startswith("container:"):
        return {}
    ip = (st.get("ip") or "") if running else ""
    gw = (st.get("gateway") or "") if running else ""
    return {mode: {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": mode,
                   "EndpointID": "", "Gateway": gw, "IPAddress": ip,
                   "IPPrefixLen": int(st.get("prefixlen") or 16) if ip else 0,
                   "IPv6Gateway": "",
                   "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
                   "DriverOpts": None}}


def _state_of(rec: Record) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Config, state and docker's status.  A container whose process has
    ended is exited at once (the shim's exit record), also while its
    supervisor is still finishing: as docker answers right after a wait."""
    cfg, st = rec.config, rec.state
    status = rec.status
    if status == "starting":
        status = "created"
    if status in ("running", "restarting"):
        try:
            with open(os.path.join(rec.dir, "exit")) as f:
                code_s, _sig, ns = f.read().split()
            started = st.get("started_at")
            if isinstance(started, (int, float)) and int(ns) / 1e9 >= started and \
                    cfg.get("restart", "no") in ("no", ""):
                st = dict(st, status="exited", exit_code=int(code_s),
                          finished_at=int(ns) / 1e9)
                status = "removing" if cfg.get("auto_remove") else "exited"
        except (OSError, ValueError):
            pass
    return cfg, st, status


def container_summary(rec: Record) -> dict[str, Any]:
    cfg, st, status = _state_of(rec)
    running = status == "running"
    argv = _argv(cfg)
    return {
        "Id": rec.id, "Names": ["/" + str(cfg.get("name", ""))],
        "Image": cfg.get("image") or cfg.get("rootfs") or "",
        "ImageID": cfg.get("image_id") or "", "Command": " ".join(argv),
        "Created": int(cfg.get("created") or 0),
        "Ports": _ports_summary(st) if running else [],
        "Labels": dict(cfg.get("labels") or {}), "State": status,
        "Status": _status_text(rec, st, status),
        "HostConfig": {"NetworkMode": cfg.get("network") or "bridge"},
        "NetworkSettings": {"Networks": _networks(st, cfg, running)},
        "Mounts": _mounts(cfg),
    }


def _mounts(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for v in cfg.get("volumes") or []:
        parts = v.split(":")
        src, dst = parts[0], parts[1] if len(parts) > 1 else ""
        rw = not (len(parts) > 2 and parts[2] == "ro")
        if src.startswith("/"):
            out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": "",
                        "RW": rw, "Propagation": "rprivate"})
        else:
            from nsprim.volumes import volumes_dir

            out.append({"Type": "volume", "Name": src,
                        "Source": os.path.join(volumes_dir(), src, "_data"),
                        "Destination": dst, "Driver": "local", "Mode": "", "RW": rw,
                        "Propagation": ""})
    for t in cfg.get("tmpfs") or []:
        out.append({"Type": "tmpfs", "Source": "", "Destination": t.partition(":")[0],
                    "Mode": "", "RW": True, "Propagation": ""})
    return out


def container_inspect(rec: Record) -> dict[str, Any]:
    cfg, st, status = _state_of(rec)
    running = status == "running"
    argv = _argv(cfg)
    image_cfg = cfg.get("image_config") or {}
    env = list(image_cfg.get("Env") or []) + list(cfg.get("env") or [])
    restart, _, retries = str(cfg.get("restart") or "no").partition(":")
    ports = _ports_inspect(st, cfg) if running else {
        p if "/" in p else p + "/tcp": None for p in cfg.get("exposed_ports") or []}
    cpus = cfg.get("cpus")
    attach = cfg.get("attach") or {}
    return {
        "Id": rec.id, "Created": iso(cfg.get("created")),
        "Path": argv[0] if argv else "", "Args": argv[1:],
        "State": {"Status": status, "Running": running, "Paused": False,
                  "Restarting": status == "restarting", "OOMKilled": bool(st.get("oom_killed")),
                  "Dead": status == "dead", "Pid": st.get("pid") or 0 if running else 0,
                  "ExitCode": int(st.get("exit_code") or 0), "Error": st.get("error") or "",
                  "StartedAt": iso(st.get("started_at")),
                  "FinishedAt": iso(st.get("finished_at"))},
        "Image": cfg.get("image_id") or "", "ResolvConfPath": "", "HostnamePath": "",
        "HostsPath": "", "LogPath": rec.log_path, "Name": "/" + str(cfg.get("name", "")),
        "RestartCount": int(st.get("restart_count") or 0), "Driver": "overlay2",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "Binds": [v for v in cfg.get("volumes") or [] if v.startswith("/")] or None,
            "NetworkMode": cfg.get("network") or "bridge",
            "PortBindings": {}, "RestartPolicy": {"Name": restart,
                                                  "MaximumRetryCount": int(retries or 0)},
            "AutoRemove": bool(cfg.get("auto_remove")), "Privileged": bool(cfg.get("privileged")),
            "PublishAllPorts": bool(cfg.get("publish_all")),
            "ReadonlyRootfs": bool(cfg.get("read_only")),
            "CapAdd": cfg.get("cap_add") or None, "CapDrop": cfg.get("cap_drop") or None,
            "Init": bool(cfg.get("init")), "Memory": _int_size(cfg.get("memory")),
            "MemorySwap": _int_size(cfg.get("memory_swap")),
            "NanoCpus": int(float(cpus) * 1e9) if cpus else 0,
            "CpuShares": cfg.get("cpu_shares") or 0, "CpusetCpus": cfg.get("cpuset_cpus") or "",
            "PidsLimit": cfg.get("pids_limit"),
            "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in cfg.get("tmpfs") or []},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": _mounts(cfg),
        "Config": {
            "Hostname": cfg.get("hostname") or rec.id[:12], "Domainname": "",
            "User": cfg.get("user") or image_cfg.get("User") or "",
            "AttachStdin": attach.get("AttachStdin", False),
            "AttachStdout": attach.get("AttachStdout", False),
            "AttachStderr": attach.get("AttachStderr", False),
            "ExposedPorts": {p if "/" in p else p + "/tcp": {}
                             for p in cfg.get("exposed_ports") or []} or None,
            "Tty": bool(cfg.get("tty")), "OpenStdin": bool(cfg.get("interactive")),
            "StdinOnce": bool(cfg.get("stdin_once")), "Env": env,
            "Cmd": cfg.get("cmd") or image_cfg.get("Cmd"),
            "Image": cfg.get("image") or "", "Volumes": None,
            "WorkingDir": cfg.get("workdir") or image_cfg.get("WorkingDir") or "",
            "Entrypoint": cfg.get("entrypoint") if cfg.get("entrypoint") is not None
            else image_cfg.get("Entrypoint"),
            "OnBuild": None, "Labels": dict(cfg.get("labels") or {}),
            "StopSignal": cfg.get("stop_signal") or None,
            "StopTimeout": cfg.get("stop_timeout"),
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "Ports": ports, "IPAddress": (st.get("ip") or "") if running else "",
            "IPPrefixLen": int(st.get("prefixlen") or 16) if running and st.get("ip") else 0,
            "Gateway": (st.get("gateway") or "") if running else "",
            "MacAddress": "", "Networks": _networks(st, cfg, running),
        },
    }


def _int_size(v: Any) -> int:
    if v in (None, ""):
        return 0
    try:
        from nsprim.units import parse_size

        return -1 if str(v) == "-1" else int(parse_size(str(v), "size"))
    except (ValueError, OSError):
        return 0


def image_summary(img: Any) -> dict[str, Any]:
    return {"Id": img.id, "ParentId": "", "RepoTags": _familiar(img.names),
            "RepoDigests": list(img.repo_digests), "Created": _created(img),
            "Size": int(img.size), "SharedSize": -1, "VirtualSize": int(img.size),
            "Labels": img.labels or None, "Containers": -1}


def _familiar(names: list[str]) -> list[str]:
    from nsprim.images.reference import parse_reference

    out = []
    for n in names:
        try:
            out.append(parse_reference(n).familiar())
        except Exception:  # noqa: BLE001 - a name the parser no longer takes: shown as is
            out.append(n)
    return out


def _created(img: Any) -> int:
    c = img.config.get("created")
    if not isinstance(c, str):
        return 0
    import datetime

    try:
        return int(datetime.datetime.fromisoformat(c.replace("Z", "+00:00")[:26] + (
            "+00:00" if "+" not in c[19:] else "")).timestamp())
    except ValueError:
        return 0


def image_inspect(img: Any) -> dict[str, Any]:
    c = img.config
    cfg = dict(c.get("config") or {})
    return {"Id": img.id, "RepoTags": _familiar(img.names),
            "RepoDigests": list(img.repo_digests), "Parent": "", "Comment": "",
            "Created": c.get("created") or "0001-01-01T00:00:00Z",
            "DockerVersion": "", "Author": c.get("author") or "",
            "Config": {"Hostname": "", "Domainname": "", "User": cfg.get("User", ""),
                       "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"),
                       "Entrypoint": cfg.get("Entrypoint"),
                       "WorkingDir": cfg.get("WorkingDir", ""),
                       "ExposedPorts": cfg.get("ExposedPorts"), "Volumes": cfg.get("Volumes"),
                       "Labels": cfg.get("Labels"), "StopSignal": cfg.get("StopSignal"),
                       "OnBuild": None, "Image": ""},
            "Architecture": c.get("architecture", ""), "Os": c.get("os", "linux"),
            "Size": int(img.size), "VirtualSize": int(img.size),
            "GraphDriver": {"Name": "overlay2", "Data": None},
            "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}


def network(name: str) -> dict[str, Any]:
    driver = {"bridge": "bridge", "host": "host", "none": "null"}[name]
    ipam: dict[str, Any] = {"Driver": "default", "Options": None, "Config": []}
    if name == "bridge":
        ipam["Config"] = [{"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}]
    return {"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
            "Driver": driver, "EnableIPv6": False, "IPAM": ipam, "Internal": False,
            "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {}}
