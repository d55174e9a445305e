"""The ContainerCreate body -> ContainerSpec mapping (daemon/create.py):
docker's fields land where the CLI's flags do, and any JSON at all is either
a spec or a clean 4xx/501 ApiError (never another exception)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nsprim.daemon.create import parse_create
from nsprim.daemon.server import ApiError


def test_fields_map_onto_the_spec() -> None:
    cr = parse_create({
        "Image": "busybox", "Cmd": ["sh", "-c", "x"], "Entrypoint": "", "Env": ["A=1"],
        "WorkingDir": "/w", "User": "1000:1000", "Labels": {"k": "v"}, "Tty": True,
        "OpenStdin": True, "StdinOnce": True, "StopSignal": "SIGINT", "StopTimeout": 3,
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "HostConfig": {
            "Binds": ["/srv:/data:ro"], "AutoRemove": True, "Memory": 256 << 20,
            "MemorySwap": -1, "NanoCpus": 500_000_000, "CpuShares": 512, "CpusetCpus": "0",
            "PidsLimit": 64, "CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"], "Privileged": False,
            "ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"}, "Init": True,
            "NetworkMode": "default", "PublishAllPorts": True,
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                             "443/tcp": [{"HostIp": "", "HostPort": ""}]},
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
            "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v", "ReadOnly": True},
                       {"Type": "tmpfs", "Target": "/t",
                        "TmpfsOptions": {"SizeBytes": 1024, "Mode": 0o700}}],
            "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                         "CgroupPermissions": "rwm"}],
            "SecurityOpt": ["no-new-privileges"], "ShmSize": 67108864,
        }}, "web")
    s = cr.spec
    assert (s.name, s.image, s.cmd, s.entrypoint) == ("web", "busybox", ("sh", "-c", "x"), ())
    assert (s.env, s.workdir, s.user, dict(s.labels)) == (("A=1",), "/w", "1000:1000",
                                                          {"k": "v"})
    assert s.tty and s.interactive and cr.stdin_once and s.init and s.read_only
    assert (s.stop_signal, s.stop_timeout, s.auto_remove) == ("SIGINT", 3, True)
    assert (s.memory, s.memory_swap, s.cpus, s.cpu_shares, s.cpuset_cpus, s.pids_limit) == \
        (str(256 << 20), "-1", "0.5", 512, "0", 64)
    assert (s.cap_add, s.cap_drop, s.network, s.restart) == (("NET_ADMIN",), ("ALL",),
                                                             "bridge", "no")
    assert s.volumes == ("/srv:/data:ro", "v:/v:ro")
    assert set(s.tmpfs) == {"/run:size=1m", "/t:size=1024,mode=700"}
    # -p 127.0.0.1:8080:80, -p 443, and -P adds the exposed ports not bound
    assert set(s.publish) == {"127.0.0.1:8080:80/tcp", "443/tcp", "53/udp"}
    assert s.devices == ("/dev/fuse:/dev/fuse:rwm",) and s.no_new_privileges
    assert cr.extra["exposed_ports"] == ["80/tcp", "53/udp"]
    u = parse_create({"Image": "x", "HostConfig": {
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                    {"Name": "core", "Soft": -1, "Hard": -1}],
        "Sysctls": {"net.ipv4.ip_forward": "1"}}}, None).spec
    # one shape with the OCI front end's: RLIMIT_* -> [soft, hard], 2**64-1 unlimited
    assert u.rlimits == {"RLIMIT_NOFILE": [1024, 2048], "RLIMIT_CORE": [2**64 - 1] * 2}
    assert u.sysctls == {"net.ipv4.ip_forward": "1"}
    r = parse_create({"Image": "x", "HostConfig": {"RestartPolicy": {
        "Name": "on-failure", "MaximumRetryCount": 3}}}, None).spec
    assert r.restart == "on-failure:3" and r.entrypoint is None and r.cmd == ()


@pytest.mark.parametrize("body,status,words", [
    ({}, 400, "Image"),
    ({"Image": 5}, 400, "Image"),
    ({"Image": "x", "Cmd": [1]}, 400, "Cmd"),
    ({"Image": "x", "Env": "A=1"}, 400, "Env"),
    ({"Image": "x", "Labels": {"a": 1}}, 400, "Labels"),
    ({"Image": "x", "HostConfig": []}, 400, "HostConfig"),
    ({"Image": "x", "HostConfig": {"Memory": True}}, 400, "Memory"),
    ({"Image": "x", "HostConfig": {"NetworkMode": "mynet"}}, 404, "network mynet not found"),
    ({"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"mynet": {}}}}, 501, "mynet"),
    ({"Image": "x", "HostConfig": {"Ulimits": [{"Name": "nofile"}]}}, 400, "Ulimits"),
    ({"Image": "x", "HostConfig": {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}},
     400, "bogus"),
    ({"Image": "x", "HostConfig": {"Sysctls": {"vm.swappiness": "1"}}}, 400, "vm.swappiness"),
    ({"Image": "x", "HostConfig": {"ShmSize": 1}}, 400, "ShmSize"),
    ({"Image": "x", "HostConfig": {"PidMode": "host"}}, 400, "PidMode"),
    ({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "Target": "/x"}]}}, 400,
     "Source"),
    ({"Image": "x", "HostConfig": {"SecurityOpt": ["apparmor=x"]}}, 400, "security-opt"),
    ({"Image": "x", "Healthcheck": {"Test": ["CMD-SHELL", "true"]}}, 400, "Healthcheck"),
])
def test_refused_clearly(body: dict[str, Any], status: int, words: str) -> None:
    with pytest.raises(ApiError) as ei:
        parse_create(body, None)
    assert ei.value.status == status and words in ei.value.message


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
_keys = st.sampled_from(["Image", "Cmd", "Entrypoint", "Env", "Labels", "Tty", "OpenStdin",
                         "ExposedPorts", "StopTimeout", "Healthcheck", "HostConfig",
                         "NetworkingConfig", "User", "WorkingDir"])
_host_keys = st.sampled_from(["Binds", "Mounts", "PortBindings", "PublishAllPorts",
                              "NetworkMode", "AutoRemove", "RestartPolicy", "Memory",
                              "NanoCpus", "CapAdd", "Tmpfs", "Devices", "SecurityOpt",
                              "ShmSize", "PidsLimit", "ExtraHosts", "Ulimits", "Sysctls"])


@settings(max_examples=400, deadline=None)
@example({}, {"PortBindings": {"": 1}})  # a TypeError once: the bindings are no list
@given(st.dictionaries(_keys, _json, max_size=8), st.dictionaries(_host_keys, _json,
                                                                  max_size=8))
def test_any_body_is_a_spec_or_an_api_error(body: dict[str, Any],
                                            host: dict[str, Any]) -> None:
    body = dict(body, Image=body.get("Image", "busybox"))
    if host:
        body["HostConfig"] = host
    try:
        cr = parse_create(body, None)
    except ApiError as e:
        assert e.status in (400, 501) and e.message
        return
    assert cr.spec.image == body["Image"]
    assert all(isinstance(x, str) for x in cr.spec.cmd + cr.spec.env + cr.spec.volumes)


def test_etc_fields_map_onto_the_spec() -> None:
    from nsprim.errors import ConfigError
    from nsprim.spec import validate

    s = parse_create({
        "Image": "x", "Hostname": "web", "Domainname": "example.com",
        "HostConfig": {"ExtraHosts": ["db:10.0.0.5", "v6:::1",
                                      "host.docker.internal:host-gateway"],
                       "Dns": ["192.0.2.53"], "DnsSearch": ["corp.example"],
                       "DnsOptions": ["ndots:2"],
                       "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"},
                                                   {"HostIp": "::1", "HostPort": "8081"},
                                                   {"HostIp": "0.0.0.0", "HostPort": "8082"}]}},
    }, None).spec
    assert (s.hostname, s.domainname) == ("web", "example.com")
    assert s.add_hosts == ("db:10.0.0.5", "v6:::1", "host.docker.internal:host-gateway")
    assert (s.dns, s.dns_search, s.dns_options) == (("192.0.2.53",), ("corp.example",),
                                                    ("ndots:2",))
    # none given: both families; "::1": IPv6 only; "0.0.0.0": IPv4 only (docker's)
    assert s.publish == ("8080:80/tcp", "[::1]:8081:80/tcp", "0.0.0.0:8082:80/tcp")
    validate(s.from_json({**s.to_json(), "image": None, "rootfs": "/", "cmd": ["true"]}))
    # a bad value: the API's 400 comes from validate's one line
    bad = parse_create({"Image": "x", "HostConfig": {"ExtraHosts": ["db:1.2.3"]}}, None).spec
    with pytest.raises(ConfigError, match="'1.2.3'"):
        validate(bad)
    with pytest.raises(ApiError) as ei:
        parse_create({"Image": "x", "HostConfig": {"Dns": "1.1.1.1"}}, None)
    assert ei.value.status == 400 and "Dns" in ei.value.message
