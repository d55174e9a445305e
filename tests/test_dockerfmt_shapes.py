"""docker's shapes (nsprim.dockerfmt.shapes), field by field against the
Docker Engine API's definitions (moby's swagger.yaml, API v1.43-v1.50):
every field docker returns, with its JSON type; values checked where nsprim
knows them.  Pure functions: no root needed."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.dockerfmt import shapes
from nsprim.spec import ContainerSpec

# JSON types, as the swagger names them ("?" = x-nullable / omitempty nil)
S, N, B, OBJ, A = "string", "integer", "boolean", "object", "array"

CONTAINER_STATE = {
    "Status": S, "Running": B, "Paused": B, "Restarting": B, "OOMKilled": B, "Dead": B,
    "Pid": N, "ExitCode": N, "Error": S, "StartedAt": S, "FinishedAt": S,
}
RESTART_POLICY = {"Name": S, "MaximumRetryCount": N}
PORT_BINDING = {"HostIp": S, "HostPort": S}
HOST_CONFIG = {
    "Binds": A + "?", "ContainerIDFile": S, "LogConfig": OBJ, "NetworkMode": S,
    "PortBindings": OBJ, "RestartPolicy": OBJ, "AutoRemove": B, "VolumeDriver": S,
    "VolumesFrom": A + "?", "ConsoleSize": A, "CapAdd": A + "?", "CapDrop": A + "?",
    "CgroupnsMode": S, "Dns": A, "DnsOptions": A, "DnsSearch": A, "ExtraHosts": A + "?",
    "GroupAdd": A + "?", "IpcMode": S, "Cgroup": S, "Links": A + "?", "OomScoreAdj": N,
    "PidMode": S, "Privileged": B, "PublishAllPorts": B, "ReadonlyRootfs": B,
    "SecurityOpt": A + "?", "UTSMode": S, "UsernsMode": S, "ShmSize": N, "Runtime": S,
    "Isolation": S, "CpuShares": N, "Memory": N, "NanoCpus": N, "CgroupParent": S,
    "BlkioWeight": N, "BlkioWeightDevice": A, "BlkioDeviceReadBps": A,
    "BlkioDeviceWriteBps": A, "BlkioDeviceReadIOps": A, "BlkioDeviceWriteIOps": A,
    "CpuPeriod": N, "CpuQuota": N, "CpuRealtimePeriod": N, "CpuRealtimeRuntime": N,
    "CpusetCpus": S, "CpusetMems": S, "Devices": A, "DeviceCgroupRules": A + "?",
    "DeviceRequests": A + "?", "MemoryReservation": N, "MemorySwap": N,
    "MemorySwappiness": N + "?", "OomKillDisable": B, "PidsLimit": N + "?",
    "Ulimits": A + "?", "CpuCount": N, "CpuPercent": N, "IOMaximumIOps": N,
    "IOMaximumBandwidth": N, "MaskedPaths": A, "ReadonlyPaths": A,
}
CONTAINER_CONFIG = {
    "Hostname": S, "Domainname": S, "User": S, "AttachStdin": B, "AttachStdout": B,
    "AttachStderr": B, "ExposedPorts": OBJ + "?", "Tty": B, "OpenStdin": B, "StdinOnce": B,
    "Env": A + "?", "Cmd": A + "?", "Image": S, "Volumes": OBJ + "?", "WorkingDir": S,
    "Entrypoint": A + "?", "OnBuild": A + "?", "Labels": OBJ,
}
MOUNT_POINT = {"Type": S, "Source": S, "Destination": S, "Mode": S, "RW": B,
               "Propagation": S}
MOUNT_POINT_VOLUME = dict(MOUNT_POINT, Name=S, Driver=S)
ENDPOINT_SETTINGS = {
    "IPAMConfig": OBJ + "?", "Links": A + "?", "Aliases": A + "?", "MacAddress": S,
    "DriverOpts": OBJ + "?", "NetworkID": S, "EndpointID": S, "Gateway": S, "IPAddress": S,
    "IPPrefixLen": N, "IPv6Gateway": S, "GlobalIPv6Address": S, "GlobalIPv6PrefixLen": N,
    "DNSNames": A + "?",
}
NETWORK_SETTINGS = {
    "Bridge": S, "SandboxID": S, "HairpinMode": B, "LinkLocalIPv6Address": S,
    "LinkLocalIPv6PrefixLen": N, "Ports": OBJ, "SandboxKey": S,
    "SecondaryIPAddresses": A + "?", "SecondaryIPv6Addresses": A + "?", "EndpointID": S,
    "Gateway": S, "GlobalIPv6Address": S, "GlobalIPv6PrefixLen": N, "IPAddress": S,
    "IPPrefixLen": N, "IPv6Gateway": S, "MacAddress": S, "Networks": OBJ,
}
CONTAINER_INSPECT = {
    "Id": S, "Created": S, "Path": S, "Args": A, "State": OBJ, "Image": S,
    "ResolvConfPath": S, "HostnamePath": S, "HostsPath": S, "LogPath": S, "Name": S,
    "RestartCount": N, "Driver": S, "Platform": S, "MountLabel": S, "ProcessLabel": S,
    "AppArmorProfile": S, "ExecIDs": A + "?", "HostConfig": OBJ, "GraphDriver": OBJ,
    "Mounts": A, "Config": OBJ, "NetworkSettings": OBJ,
}
GRAPH_DRIVER = {"Name": S, "Data": OBJ + "?"}
CONTAINER_SUMMARY = {
    "Id": S, "Names": A, "Image": S, "ImageID": S, "Command": S, "Created": N, "Ports": A,
    "Labels": OBJ, "State": S, "Status": S, "HostConfig": OBJ, "NetworkSettings": OBJ,
    "Mounts": A,
}
PORT = {"IP": S, "PrivatePort": N, "PublicPort": N, "Type": S}
PS_JSON = {k: S for k in ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes",
                          "Mounts", "Names", "Networks", "Ports", "RunningFor", "Size",
                          "State", "Status")}
IMAGE_INSPECT = {
    "Id": S, "RepoTags": A, "RepoDigests": A, "Parent": S, "Comment": S, "Created": S,
    "DockerVersion": S, "Author": S, "Config": OBJ, "Architecture": S, "Os": S, "Size": N,
    "GraphDriver": OBJ, "RootFS": OBJ, "Metadata": OBJ,
}
IMAGE_CONFIG = {
    "User": S, "ExposedPorts": OBJ + "?", "Env": A + "?", "Cmd": A + "?", "Volumes": OBJ + "?",
    "WorkingDir": S, "Entrypoint": A + "?", "OnBuild": A + "?", "Labels": OBJ + "?",
}
IMAGE_SUMMARY = {
    "Id": S, "ParentId": S, "RepoTags": A, "RepoDigests": A, "Created": N, "Size": N,
    "SharedSize": N, "Labels": OBJ + "?", "Containers": N,
}
IMAGES_JSON = {k: S for k in ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID",
                              "Repository", "SharedSize", "Size", "Tag", "UniqueSize",
                              "VirtualSize")}
VOLUME = {"CreatedAt": S, "Driver": S, "Labels": OBJ + "?", "Mountpoint": S, "Name": S,
          "Options": OBJ + "?", "Scope": S}
VOLUME_LS_JSON = {k: S for k in ("Availability", "Driver", "Group", "Labels", "Links",
                                 "Mountpoint", "Name", "Scope", "Size", "Status")}
NETWORK = {
    "Name": S, "Id": S, "Created": S, "Scope": S, "Driver": S, "EnableIPv4": B,
    "EnableIPv6": B, "IPAM": OBJ, "Internal": B, "Attachable": B, "Ingress": B,
    "ConfigFrom": OBJ, "ConfigOnly": B, "Containers": OBJ, "Options": OBJ, "Labels": OBJ,
}
NETWORK_CONTAINER = {"Name": S, "EndpointID": S, "MacAddress": S, "IPv4Address": S,
                     "IPv6Address": S}
NETWORK_LS_JSON = {k: S for k in ("CreatedAt", "Driver", "ID", "IPv4", "IPv6", "Internal",
                                  "Labels", "Name", "Scope")}

_PY = {S: str, N: int, B: bool, OBJ: dict, A: list}


def check(obj: Any, schema: dict[str, str], where: str = "", *, exact: bool = True) -> None:
    """Every field of `schema` is in `obj` with its JSON type (bool is not an
    integer); with `exact`, no other field either."""
    assert isinstance(obj, dict), f"{where}: {obj!r} is not an object"
    missing = set(schema) - set(obj)
    assert not missing, f"{where}: missing {sorted(missing)}"
    if exact:
        extra = set(obj) - set(schema)
        assert not extra, f"{where}: fields docker does not have: {sorted(extra)}"
    for name, kind in schema.items():
        v = obj[name]
        base = kind.rstrip("?")
        if v is None:
            assert kind.endswith("?"), f"{where}.{name} is null, docker's is a {base}"
            continue
        want = _PY[base]
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
        assert ok, f"{where}.{name} = {v!r}: docker's is a {base}"
    json.dumps(obj)  # serialisable as it is


def rfc3339_ok(text: str) -> bool:
    if text == shapes.ZERO_TIME:
        return True
    return shapes.parse_rfc3339(text) > 0 and text.endswith("Z") and "T" in text


IMAGE_CONFIG_OCI = {
    "created": "2024-05-06T10:20:30.123456789Z", "architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
               "Env": ["PATH=/usr/bin:/bin", "NGINX_VERSION=1.27"], "WorkingDir": "/srv",
               "User": "www", "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
               "Labels": {"maintainer": "x", "tier": "img"}, "StopSignal": "SIGQUIT",
               "Volumes": {"/cache": {}}},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
}
IID = "sha256:" + "b" * 64
CID = "c" * 64


def web_spec(**kw: Any) -> ContainerSpec:
    base: dict[str, Any] = dict(
        id=CID, name="web", created=1714990830.5, image="nginx:latest", image_id=IID,
        publish=("19101:80", "127.0.0.1:5353:53/udp"), volumes=("data:/data", "/srv/h:/h:ro"),
        tmpfs=("/run:size=64k",), env=("NGINX_VERSION=2", "A=1"), memory="256m",
        cpus="0.5", pids_limit=64, labels={"tier": "web", "app": "shop"}, restart="on-failure:3",
        device_read_bps=("/dev/vda:1mb",), devices=("/dev/fuse:/dev/f:rw",))
    base.update(kw)
    return ContainerSpec(**base)


RUNNING = {"status": "running", "pid": 4242, "started_at": 1714990831.25, "ip": "10.88.0.5",
           "ports": [{"proto": "tcp", "host_ip": "", "host_port": 19101, "container_port": 80},
                     {"proto": "udp", "host_ip": "127.0.0.1", "host_port": 5353,
                      "container_port": 53}],
           "restart_count": 2}
EXITED = {"status": "exited", "exit_code": 3, "started_at": 1714990831.25,
          "finished_at": 1714990900.0, "ip": "10.88.0.5", "ports": RUNNING["ports"]}
NET = {"gateway": "10.88.0.1", "prefixlen": 16, "subnet": "10.88.0.0/16"}


def inspect(spec: ContainerSpec, state: dict[str, Any], status: str | None = None,
            image: dict[str, Any] | None = IMAGE_CONFIG_OCI) -> dict[str, Any]:
    return shapes.container_inspect(spec, state, status=status or state["status"],
                                    image_config=image, log_path="/x/container.log",
                                    volumes_dir="/var/lib/nsprim/volumes",
                                    container_dir="/var/lib/nsprim/containers/" + spec.id,
                                    etc_dir="/run/nsprim/containers/" + spec.id, network=NET,
                                    layers=["/l/1", "/l/2"])


def check_inspect(d: dict[str, Any]) -> None:
    check(d, CONTAINER_INSPECT, "inspect")
    check(d["State"], CONTAINER_STATE, "State")
    check(d["HostConfig"], HOST_CONFIG, "HostConfig", exact=False)
    check(d["HostConfig"]["RestartPolicy"], RESTART_POLICY, "RestartPolicy")
    for key, bindings in d["HostConfig"]["PortBindings"].items():
        assert "/" in key
        for b in bindings:
            check(b, PORT_BINDING, "PortBindings")
    check(d["Config"], CONTAINER_CONFIG, "Config", exact=False)
    check(d["GraphDriver"], GRAPH_DRIVER, "GraphDriver")
    for m in d["Mounts"]:
        check(m, MOUNT_POINT_VOLUME if m["Type"] == "volume" else MOUNT_POINT, "Mounts")
    check(d["NetworkSettings"], NETWORK_SETTINGS, "NetworkSettings")
    for name, ep in d["NetworkSettings"]["Networks"].items():
        check(ep, ENDPOINT_SETTINGS, f"Networks.{name}")
    for bindings in d["NetworkSettings"]["Ports"].values():
        for b in bindings or []:
            check(b, PORT_BINDING, "NetworkSettings.Ports")
    for t in (d["Created"], d["State"]["StartedAt"], d["State"]["FinishedAt"]):
        assert rfc3339_ok(t), t
    assert d["Name"].startswith("/")


def test_inspect_running_fields_and_values() -> None:
    d = inspect(web_spec(), RUNNING)
    check_inspect(d)
    assert d["Id"] == CID and d["Name"] == "/web" and d["Image"] == IID
    assert d["Created"] == "2024-05-06T10:20:30.5Z"
    assert d["State"]["StartedAt"] == "2024-05-06T10:20:31.25Z"
    assert d["State"]["FinishedAt"] == shapes.ZERO_TIME
    assert d["State"]["Status"] == "running" and d["State"]["Running"] is True
    assert d["State"]["Pid"] == 4242 and d["RestartCount"] == 2
    # the image's entrypoint and CMD merged in (bug 12)
    assert d["Path"] == "/docker-entrypoint.sh"
    assert d["Args"] == ["nginx", "-g", "daemon off;"]
    cfg = d["Config"]
    assert cfg["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert cfg["Entrypoint"] == ["/docker-entrypoint.sh"]
    assert cfg["Env"] == ["NGINX_VERSION=2", "A=1", "PATH=/usr/bin:/bin"]
    assert cfg["WorkingDir"] == "/srv" and cfg["User"] == "www"
    assert cfg["Labels"] == {"maintainer": "x", "tier": "web", "app": "shop"}
    assert cfg["ExposedPorts"] == {"443/tcp": {}, "53/udp": {}, "80/tcp": {}}
    assert cfg["StopSignal"] == "SIGQUIT" and cfg["Image"] == "nginx:latest"
    hc = d["HostConfig"]
    assert hc["Memory"] == 256 << 20 and hc["NanoCpus"] == 500_000_000
    assert hc["PidsLimit"] == 64
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "19101"}],
                                  "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["Binds"] == ["data:/data", "/srv/h:/h:ro"]
    assert hc["Tmpfs"] == {"/run": "size=64k"}
    assert hc["BlkioDeviceReadBps"] == [{"Path": "/dev/vda", "Rate": 1 << 20}]
    assert hc["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f",
                              "CgroupPermissions": "rw"}]
    assert d["Mounts"] == [
        {"Type": "volume", "Name": "data", "Source": "/var/lib/nsprim/volumes/data/_data",
         "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True,
         "Propagation": ""},
        {"Type": "bind", "Source": "/srv/h", "Destination": "/h", "Mode": "ro", "RW": False,
         "Propagation": "rprivate"}]
    ns = d["NetworkSettings"]
    assert ns["Ports"] == {"443/tcp": None, "53/udp": [{"HostIp": "127.0.0.1",
                                                          "HostPort": "5353"}],
                           "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "19101"}]}
    assert ns["IPAddress"] == "10.88.0.5" and ns["Gateway"] == "10.88.0.1"
    assert ns["IPPrefixLen"] == 16 and ns["MacAddress"] == "02:42:0a:58:00:05"
    bridge = ns["Networks"]["bridge"]
    assert bridge["IPAddress"] == "10.88.0.5" and bridge["Gateway"] == "10.88.0.1"
    assert bridge["NetworkID"] == shapes.network_id("bridge")
    assert d["GraphDriver"]["Data"]["LowerDir"] == "/l/2:/l/1"


def test_inspect_exited_and_created() -> None:
    d = inspect(web_spec(), EXITED)
    check_inspect(d)
    assert d["State"]["Status"] == "exited" and not d["State"]["Running"]
    assert d["State"]["ExitCode"] == 3 and d["State"]["Pid"] == 0
    assert d["State"]["FinishedAt"] == "2024-05-06T10:21:40Z"
    assert d["NetworkSettings"]["Ports"] == {} and d["NetworkSettings"]["IPAddress"] == ""
    assert d["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    c = inspect(web_spec(), {"status": "created"})
    check_inspect(c)
    assert c["State"]["StartedAt"] == shapes.ZERO_TIME and c["State"]["Status"] == "created"
    s = inspect(web_spec(), {"status": "starting"})
    assert s["State"]["Status"] == "created"


def test_inspect_entrypoint_override_drops_image_cmd() -> None:
    d = inspect(web_spec(entrypoint=("echo", "hi")), RUNNING)
    assert d["Path"] == "echo" and d["Args"] == ["hi"]
    assert d["Config"]["Cmd"] is None and d["Config"]["Entrypoint"] == ["echo", "hi"]
    d = inspect(web_spec(cmd=("sh", "-c", "x")), RUNNING)
    assert d["Path"] == "/docker-entrypoint.sh" and d["Args"] == ["sh", "-c", "x"]
    assert d["Config"]["Cmd"] == ["sh", "-c", "x"]


def test_inspect_rootfs_host_none_container_networks() -> None:
    spec = ContainerSpec(id=CID, name="r", created=time.time(), rootfs="/srv/rootfs",
                         cmd=("sleep", "1"), network="host")
    d = inspect(spec, {"status": "running", "pid": 1}, image=None)
    check_inspect(d)
    assert d["Image"] == "" and d["Config"]["Image"] == "/srv/rootfs"
    assert list(d["NetworkSettings"]["Networks"]) == ["host"]
    # docker: copies of the host's files, the container's own
    assert d["ResolvConfPath"] == f"/run/nsprim/containers/{CID}.resolv.conf"
    assert d["HostsPath"] == f"/run/nsprim/containers/{CID}.hosts"
    assert d["HostConfig"]["NetworkMode"] == "host"
    d = inspect(ContainerSpec(id=CID, name="n", rootfs="/r", cmd=("a",), network="none"),
                {"status": "exited"}, image=None)
    assert list(d["NetworkSettings"]["Networks"]) == ["none"]
    d = inspect(ContainerSpec(id=CID, name="n", rootfs="/r", cmd=("a",),
                              network="container:web"), {"status": "exited"}, image=None)
    assert d["NetworkSettings"]["Networks"] == {}
    assert d["HostsPath"] == ""  # web's


def test_summary_and_ps_row() -> None:
    now = 1714990830.5 + 600
    s = shapes.container_summary(web_spec(), RUNNING, status="running",
                                 image_config=IMAGE_CONFIG_OCI, network=NET, now=now,
                                 volumes_dir="/v")
    check(s, CONTAINER_SUMMARY, "summary")
    for p in s["Ports"]:
        check(p, PORT if "PublicPort" in p else {"PrivatePort": N, "Type": S}, "Ports")
    assert s["Names"] == ["/web"] and s["Created"] == 1714990830
    assert s["Command"] == "/docker-entrypoint.sh nginx -g 'daemon off;'"
    assert s["Status"] == "Up 9 minutes" and s["State"] == "running"
    row = shapes.ps_row(s, now=now)
    check(row.to_json(), PS_JSON, "ps --format json")
    assert row.ID() == CID[:12] and row.Names() == "web"
    assert row.Command() == '"/docker-entrypoint.…"'
    assert row.RunningFor() == "10 minutes ago"
    assert row.Ports() == "127.0.0.1:5353->53/udp, 0.0.0.0:19101->80/tcp, 443/tcp"
    assert row.Label("tier") == "web" and row.Label("nope") == ""
    assert row.Labels() == "app=shop,maintainer=x,tier=web"
    assert row.Networks() == "bridge" and row.LocalVolumes() == "1"
    assert row.Mounts() == "data,/srv/h"
    full = shapes.ps_row(s, trunc=False, now=now)
    assert full.ID() == CID
    assert full.Command() == '"/docker-entrypoint.sh nginx -g \'daemon off;\'"'
    ex = shapes.container_summary(web_spec(), EXITED, status="exited",
                                  image_config=IMAGE_CONFIG_OCI, now=1714990900.0 + 2)
    assert ex["Status"] == "Exited (3) 2 seconds ago" and ex["Ports"] == []
    sized = shapes.container_summary(web_spec(), EXITED, status="exited", now=now,
                                     size_rw=12, size_root_fs=4_260_000)
    assert sized["SizeRw"] == 12 and sized["SizeRootFs"] == 4_260_000
    assert shapes.ps_row(sized).Size() == "12B (virtual 4.26MB)"


def test_image_shapes() -> None:
    names = ["docker.io/library/nginx:latest", "localhost:5000/app:1"]
    d = shapes.image_inspect(IID, IMAGE_CONFIG_OCI, names=names,
                             repo_digests=["nginx@sha256:" + "d" * 64], size=1234,
                             diff_ids=["sha256:" + "a" * 64], layers=["/l/a"])
    check(d, IMAGE_INSPECT, "image inspect")
    check(d["Config"], IMAGE_CONFIG, "image Config", exact=False)
    assert d["RepoTags"] == ["nginx:latest", "localhost:5000/app:1"]
    assert d["RootFS"] == {"Type": "layers", "Layers": ["sha256:" + "a" * 64]}
    assert d["Created"] == "2024-05-06T10:20:30.123456789Z" and d["Architecture"] == "amd64"
    assert d["Config"]["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert d["Config"]["StopSignal"] == "SIGQUIT"
    s = shapes.image_summary(IID, IMAGE_CONFIG_OCI, names=names, size=1234)
    check(s, IMAGE_SUMMARY, "image summary")
    assert s["Created"] == int(datetime.datetime(2024, 5, 6, 10, 20, 30,
                                                 tzinfo=datetime.timezone.utc).timestamp())
    row = shapes.images_row(s, "localhost:5000/app:1", now=s["Created"] + 3 * 86400)
    check(row.to_json(), IMAGES_JSON, "images --format json")
    assert (row.Repository(), row.Tag(), row.ID()) == ("localhost:5000/app", "1", "b" * 12)
    assert row.Size() == "1.23kB" and row.CreatedSince() == "3 days ago"
    assert row.Label("tier") == "img"
    none = shapes.images_row(s, None)
    assert (none.Repository(), none.Tag()) == ("<none>", "<none>")


def test_volume_and_network_shapes() -> None:
    v = shapes.volume_inspect("data", "/var/lib/nsprim/volumes/data/_data",
                              "2024-05-06T10:20:30Z")
    check(v, VOLUME, "volume")
    assert list(v) == sorted(v)  # docker volume inspect's order
    check(shapes.volume_row(v).to_json(), VOLUME_LS_JSON, "volume ls --format json")
    assert shapes.volume_row(v).Name() == "data"
    members = [{"Id": CID, "Name": "web", "IPAddress": "10.88.0.5", "IPPrefixLen": 16}]
    n = shapes.network_inspect("bridge", subnet="10.88.0.0/16", gateway="10.88.0.1",
                               containers=members, created=1714990830.0)
    check(n, NETWORK, "network")
    check(n["Containers"][CID], NETWORK_CONTAINER, "network Containers")
    assert n["Containers"][CID]["IPv4Address"] == "10.88.0.5/16"
    assert n["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}]
    assert shapes.network_inspect("none")["Driver"] == "null"
    assert shapes.network_inspect("host")["IPAM"]["Config"] == []
    row = shapes.network_row(n)
    check(row.to_json(), NETWORK_LS_JSON, "network ls --format json")
    assert row.ID() == n["Id"][:12] and row.Driver() == "bridge"


# -------------------------------------------------------------- the formats

def test_docker_duration_and_size_words() -> None:
    table = [(0.3, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
             (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
             (3599, "59 minutes"), (3600, "About an hour"), (5399, "About an hour"),
             (5400, "2 hours"), (47 * 3600, "47 hours"), (48 * 3600, "2 days"),
             (14 * 86400, "2 weeks"), (60 * 86400, "2 months"), (730 * 86400, "2 years")]
    for secs, words in table:
        assert shapes.human_duration(secs) == words, secs
    for n, text in ((0, "0B"), (999, "999B"), (1000, "1kB"), (4_260_000, "4.26MB"),
                    (219_000_000, "219MB"), (1.5e9, "1.5GB")):
        assert shapes.human_size(n) == text


def test_go_quote() -> None:
    assert shapes.go_quote('sh -c "x"\n') == '"sh -c \\"x\\"\\n"'
    assert shapes.go_quote("\x01é") == '"\\x01é"'


@given(st.floats(min_value=1, max_value=4e9, allow_nan=False))
def test_rfc3339_round_trip(t: float) -> None:
    text = shapes.rfc3339(t)
    assert rfc3339_ok(text)
    assert abs(shapes.parse_rfc3339(text) - t) < 1e-5
    frac = text[20:-1] if "." in text else ""
    assert not frac.endswith("0")  # Go's RFC3339Nano drops trailing zeros


@given(st.floats(min_value=0, max_value=1e9), st.floats(min_value=0, max_value=1e9))
def test_durations_never_go_backwards(a: float, b: float) -> None:
    order = ["Less than a second", "second", "minute", "hour", "day", "week", "month", "year"]

    def rank(words: str) -> int:
        return max(i for i, w in enumerate(order) if w in words)

    lo, hi = sorted((a, b))
    assert rank(shapes.human_duration(lo)) <= rank(shapes.human_duration(hi))


ports_st = st.lists(st.tuples(st.integers(1, 65535), st.integers(1, 65535),
                              st.sampled_from(["tcp", "udp"]),
                              st.sampled_from(["0.0.0.0", "127.0.0.1"])), max_size=8,
                    unique_by=lambda p: (p[1], p[2], p[3]))


@given(ports_st)
def test_display_ports_shows_every_published_port(ports: list[tuple[int, int, str, str]]
                                                  ) -> None:
    items = [{"IP": ip, "PrivatePort": c, "PublicPort": h, "Type": t} for c, h, t, ip in ports]
    text = shapes.display_ports(items)
    for c, h, t, ip in ports:
        found = f"{ip}:{h}->{c}/{t}" in text.split(", ")
        in_range = any(part.startswith(f"{ip}:") and part.endswith(f"/{t}") and "-" in part
                       for part in text.split(", "))
        assert found or in_range, (ports, text)
    if not ports:
        assert text == ""


spec_st = st.builds(
    ContainerSpec, id=st.just(CID), name=st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True),
    created=st.floats(1, 4e9), image=st.sampled_from([None, "busybox"]),
    image_id=st.sampled_from([None, IID]),
    cmd=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    entrypoint=st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=2).map(tuple)),
    env=st.lists(st.from_regex(r"[A-Z]{1,3}=[a-z]{0,3}", fullmatch=True), max_size=3
                 ).map(tuple),
    publish=st.lists(st.sampled_from(["80", "8080:80", "127.0.0.1:53:53/udp", "1-3:1-3",
                                      "bad:spec:x:y"]), max_size=3).map(tuple),
    volumes=st.lists(st.sampled_from(["v:/v", "/h:/c:ro", "/h:/d"]), max_size=2).map(tuple),
    memory=st.sampled_from([None, "64m", "1g"]), cpus=st.sampled_from([None, "0.5", "2"]),
    network=st.sampled_from(["bridge", "host", "none", "container:x"]),
    restart=st.sampled_from(["no", "always", "on-failure:5"]),
    labels=st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), max_size=3))
state_st = st.fixed_dictionaries({
    "status": st.sampled_from(["created", "starting", "running", "restarting", "exited",
                               "dead"]),
    "pid": st.integers(1, 1 << 22), "exit_code": st.one_of(st.none(), st.integers(0, 255)),
    "started_at": st.one_of(st.none(), st.floats(1, 4e9)),
    "finished_at": st.one_of(st.none(), st.floats(1, 4e9)),
    "ip": st.sampled_from([None, "10.88.0.9"]),
    "ports": st.just(RUNNING["ports"])})


@settings(max_examples=150)
@given(spec_st, state_st, st.sampled_from([None, IMAGE_CONFIG_OCI]))
def test_any_record_gives_docker_shapes(spec: ContainerSpec, state: dict[str, Any],
                                        image: dict[str, Any] | None) -> None:
    d = inspect(spec, state, image=image)
    check_inspect(d)
    running = d["State"]["Running"]
    assert running == (state["status"] in ("running", "restarting"))
    assert [d["Path"], *d["Args"]] == (shapes.argv(spec, image) or [""])
    s = shapes.container_summary(spec, state, status=state["status"], image_config=image,
                                 now=4e9)
    check(s, CONTAINER_SUMMARY, "summary")
    check(shapes.ps_row(s, now=4e9).to_json(), PS_JSON, "ps row")
    if not running:
        assert s["Ports"] == [] and d["NetworkSettings"]["Ports"] == {}


@given(st.tuples(*[st.integers(0, 255)] * 4))
def test_mac_is_the_one_the_bridge_sets(ip: tuple[int, int, int, int]) -> None:
    from nsprim.network import mac_for_ip

    text = ".".join(map(str, ip))
    assert shapes.mac_for_ip(text) == mac_for_ip(text)
    assert shapes.mac_for_ip(text).startswith("02:42:")


def test_masked_paths_are_the_runtimes() -> None:
    from nsprim.config import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

    assert shapes.MASKED_PATHS == DEFAULT_MASKED_PATHS
    assert shapes.READONLY_PATHS == DEFAULT_READONLY_PATHS


@pytest.mark.parametrize("name", [
    "busybox", "busybox:1.36", "library/busybox", "docker.io/library/nginx:latest",
    "user/app:2", "docker.io/user/app", "localhost:5000/app:1", "localhost/x",
    "registry.example.com:443/a/b/c:t", "quay.io/library/x:1", "library/a/b:1",
    "busybox@sha256:" + "a" * 64, "docker.io/library/busybox:1@sha256:" + "b" * 64,
])
def test_familiar_names_are_the_references(name: str) -> None:
    from nsprim.images.reference import parse_reference

    ref = parse_reference(name)
    assert shapes.familiar(str(ref)) == ref.familiar()
