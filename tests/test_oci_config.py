"""config.json (OCI runtime-spec 1.0-1.2) <-> ContainerSpec: the mapping,
its refusals (each naming the field), and round trips (hypothesis)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.errors import ConfigError
from nsprim.oci.config import (
    MAX_CONFIG,
    default_config,
    from_spec,
    load_bundle,
    parse_resources,
    spec_id,
    to_spec,
)
from nsprim.spec import ContainerSpec

BUNDLE = "/bundle"


def base() -> dict[str, Any]:
    return default_config()


def test_default_config_maps_to_runc_like_spec() -> None:
    s = to_spec(base(), BUNDLE, "c1")
    assert s.cmd == ("sh",) and s.tty is True and s.rootfs == "/bundle/rootfs"
    assert s.read_only is True and s.network == "none" and s.user == "0:0"
    assert s.cap_drop == ("ALL",) and "NET_RAW" in s.cap_add and "SYS_ADMIN" not in s.cap_add
    assert s.rlimits == {"RLIMIT_NOFILE": [1024, 1024]}
    assert s.id == spec_id("c1") and len(s.id) == 64
    assert s.seccomp == "unconfined"  # no linux.seccomp: no filter (runtime-spec)
    assert "/proc/kcore" in (s.masked_paths or ())


def test_fields_mapped() -> None:
    c = base()
    p = c["process"]
    p["user"] = {"uid": 1000, "gid": 100, "umask": 0o27, "additionalGids": [5, 6]}
    p["oomScoreAdj"] = 500
    p["cwd"] = "/tmp"
    c["domainname"] = "example.org"
    c["mounts"] += [
        {"destination": "/data", "type": "bind", "source": "/srv/x", "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "size=1m", "mode=700"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
    ]
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                if n["type"] not in ("pid", "network")] + [
        {"type": "network", "path": "/run/netns/x"}]
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"}
    c["linux"]["resources"] = {"memory": {"limit": 64 << 20, "swap": 128 << 20},
                               "cpu": {"shares": 512, "quota": 50000, "period": 100000,
                                       "cpus": "0"}, "pids": {"limit": 64}}
    c["annotations"] = {"a": "b"}
    s = to_spec(c, BUNDLE, "c2")
    assert s.user == "1000:100" and s.umask == 0o27 and s.additional_gids == (5, 6)
    assert s.oom_score_adj == 500 and s.workdir == "/tmp" and s.domainname == "example.org"
    assert s.volumes == ("/srv/x:/data:ro",)
    assert s.tmpfs == ("/scratch:size=1m,mode=700",)
    assert s.namespaces == {"pid": "host", "net": "/run/netns/x"}
    assert s.network == "none"
    assert s.sysctls["kernel.shmmax"] == "1000000"
    assert (s.memory, s.memory_swap, s.cpu_shares, s.cpus, s.cpuset_cpus, s.pids_limit) == (
        str(64 << 20), str(128 << 20), 512, "0.5", "0", 64)
    assert s.labels == {"a": "b"}


def test_no_network_namespace_is_host_network() -> None:
    c = base()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
    s = to_spec(c, BUNDLE, "c")
    assert s.network == "host" and "net" not in s.namespaces


def _set(c: Any, path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        c = c[int(k)] if k.isdigit() else c.setdefault(k, {})
    if keys[-1] == "+":
        c.append(value)
    elif keys[-1].isdigit():
        c[int(keys[-1])] = value
    else:
        c[keys[-1]] = value


BAD = [
    ("linux.namespaces.0.type", "bogus", "linux.namespaces[0].type"),
    ("root.path", "../../etc", "root.path"),
    ("root.path", "", "root.path"),
    ("mounts.0.destination", "proc", "mounts[0].destination"),
    ("mounts.+", {"destination": "/x", "type": "nfs", "source": "a"}, "mounts[6].type"),
    ("mounts.+", {"destination": "/x", "type": "bind", "source": "/a",
                  "options": ["rbind", "bogus"]}, "mounts[6].options[1]"),
    ("mounts.+", {"destination": "/x", "type": "bind", "source": "/a",
                  "options": ["rbind", "idmap"]}, "mounts[6].options"),
    ("mounts.+", {"destination": "/../x", "type": "bind", "source": "/a",
                  "options": ["rbind"]}, "mounts[6].destination"),
    ("linux.intelRdt", {"closID": "x"}, "linux.intelRdt"),
    ("process.apparmorProfile", "docker-default", "process.apparmorProfile"),
    ("process.selinuxLabel", "system_u:system_r:x", "process.selinuxLabel"),
    ("process.args", [], "process.args"),
    ("process.cwd", "tmp", "process.cwd"),
    ("process.env", ["NOEQUALS"], "process.env[0]"),
    ("process.user.uid", -1, "process.user.uid"),
    ("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}],
     "process.rlimits[0].type"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}],
     "process.rlimits[0]"),
    ("process.oomScoreAdj", 5000, "process.oomScoreAdj"),
    ("process.capabilities.bounding", ["NOT A CAP"], "process.capabilities.bounding[0]"),
    ("linux.sysctl", {"kernel.panic": "1"}, "linux.sysctl['kernel.panic']"),
    ("linux.resources.hugepageLimits", [{"pageSize": "2MB", "limit": 1}],
     "linux.resources.hugepageLimits"),
    ("linux.resources.unified", {"memory.max": "1"}, "linux.resources.unified"),
    ("linux.personality", {"domain": "LINUX32"}, "linux.personality.domain"),
    ("linux.timeOffsets", {"monotonic": {"secs": 1}}, "linux.timeOffsets"),
    ("linux.rootfsPropagation", "sideways", "linux.rootfsPropagation"),
    ("hooks.prestart", [{"path": "relative/hook"}], "hooks.prestart[0].path"),
    ("hooks.bogus", [], "hooks.bogus"),
    ("ociVersion", "2.0.0", "ociVersion"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}],
     "linux.uidMappings"),
]


@pytest.mark.parametrize("path,value,field", BAD, ids=[b[2] for b in BAD])
def test_bad_config_names_the_field(path: str, value: Any, field: str) -> None:
    c = base()
    _set(c, path, value)
    with pytest.raises(ConfigError) as e:
        to_spec(c, BUNDLE, "c")
    assert field in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_mount_namespace_is_required() -> None:
    c = base()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
    with pytest.raises(ConfigError, match=r"linux\.namespaces"):
        to_spec(c, BUNDLE, "c")


def test_bad_ids() -> None:
    for bad in ("", "a/b", "..", "x" * 2000, "a b"):
        with pytest.raises(ConfigError, match="invalid container id"):
            to_spec(base(), BUNDLE, bad)


def test_load_bundle_bounds(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b" " * (MAX_CONFIG + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_bundle(str(tmp_path))
    os.unlink(tmp_path / "config.json")
    os.mkfifo(tmp_path / "config.json")  # never blocks
    with pytest.raises(ConfigError, match="not a regular file"):
        load_bundle(str(tmp_path))
    with pytest.raises(ConfigError, match="opening"):
        load_bundle(str(tmp_path / "nope"))


def test_resources_for_update() -> None:
    assert parse_resources({"memory": {"limit": 1 << 30}, "pids": {"limit": 10}}) == {
        "memory": str(1 << 30), "pids_limit": 10}
    with pytest.raises(ConfigError, match="blockIO.throttleReadBpsDevice"):
        parse_resources({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                                   "rate": 1}]}})


# ----------------------------------------------------------- round trips

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_path = st.lists(_word, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)).filter(
    lambda p: not p.startswith(("/proc", "/dev", "/sys")))
_caps = st.sets(st.sampled_from(["CHOWN", "KILL", "NET_RAW", "SYS_ADMIN", "SETUID", "MKNOD"]))
_rl = st.dictionaries(st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE"]),
                      st.tuples(st.integers(0, 2**20), st.integers(0, 2**20)).map(
                          lambda t: [min(t), max(t)]), max_size=3)


@st.composite
def specs(draw: st.DrawFn) -> ContainerSpec:
    host = draw(st.sets(st.sampled_from(["pid", "ipc", "uts", "cgroup"])))
    joined = draw(st.dictionaries(st.sampled_from(["pid", "ipc", "net"]),
                                  _path.map(lambda p: "/run/netns" + p), max_size=2))
    ns = {k: "host" for k in host}
    ns.update(joined)
    network = "none" if "net" in joined else draw(st.sampled_from(["none", "host"]))
    uts_new = "uts" not in ns
    return ContainerSpec(
        id=spec_id("c"), name=None, network=network, entrypoint=(), seccomp="unconfined",
        etc_files=False,  # an OCI bundle's /etc is its own
        cap_drop=("ALL",), rootfs="/bundle/rootfs",
        read_only=draw(st.booleans()),
        cmd=tuple(draw(st.lists(st.text(min_size=1, max_size=6).filter(
            lambda s: "\x00" not in s), min_size=1, max_size=4))),
        env=tuple(f"{k}={v}" for k, v in draw(st.dictionaries(
            _word.map(str.upper), _word, max_size=3)).items()),
        workdir=draw(_path), tty=draw(st.booleans()),
        user=f"{draw(st.integers(0, 70000))}:{draw(st.integers(0, 70000))}",
        additional_gids=tuple(draw(st.lists(st.integers(0, 70000), max_size=3))),
        additional_gids_only=True,
        umask=draw(st.none() | st.integers(0, 0o777)),
        oom_score_adj=draw(st.none() | st.integers(-1000, 1000)),
        cap_add=tuple(sorted(draw(_caps))), rlimits=draw(_rl),
        no_new_privileges=draw(st.booleans()),
        hostname=draw(st.none() | _word) if uts_new else None,
        domainname=draw(st.none() | _word) if uts_new else None,
        volumes=tuple(f"{s}:{d}:{m}" for s, d, m in draw(st.lists(st.tuples(
            _path, _path, st.sampled_from(["ro", "rw"])), max_size=3))),
        tmpfs=tuple(draw(st.lists(_path, max_size=2))),
        namespaces=ns,
        memory=draw(st.none() | st.integers(6 << 20, 1 << 40).map(str)),
        pids_limit=draw(st.none() | st.integers(1, 10000)),
        cpu_shares=draw(st.none() | st.integers(2, 262144)),
        masked_paths=tuple(draw(st.lists(_path, max_size=3))),
        readonly_paths=tuple(draw(st.lists(_path, max_size=3))),
        sysctls={"net.core.somaxconn": "128"} if network == "none" else {},
        hooks={"prestart": [{"path": "/bin/true", "args": ["true"]}]}
        if draw(st.booleans()) else {},
        labels=draw(st.dictionaries(_word, _word, max_size=3)),
    )


@settings(max_examples=200, deadline=None)
@given(specs())
def test_round_trip_spec_config_spec(spec: ContainerSpec) -> None:
    config = from_spec(spec)
    json.dumps(config)  # a JSON document
    assert to_spec(config, BUNDLE, "c") == spec


@settings(max_examples=100, deadline=None)
@given(specs())
def test_round_trip_config_is_stable(spec: ContainerSpec) -> None:
    config = from_spec(spec)
    again = from_spec(to_spec(copy.deepcopy(config), BUNDLE, "c"))
    assert again == config
