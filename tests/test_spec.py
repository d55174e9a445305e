"""ContainerSpec: JSON round trips, every flag combination the CLI accepts
gives a spec that validate() accepts, and bad values are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim.cli import _build_parser
from nsprim.errors import ConfigError
from nsprim.spec import ContainerSpec, from_run_flags, validate

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
tuples = st.lists(texts, max_size=3).map(tuple)


@settings(max_examples=200, deadline=None)
@given(st.builds(
    ContainerSpec, id=texts, name=st.none() | texts, created=st.floats(0, 2e9),
    image=st.none() | texts, rootfs=st.none() | texts, volumes=tuples, tmpfs=tuples,
    cmd=tuples, entrypoint=st.none() | tuples, env=tuples, workdir=st.none() | texts,
    tty=st.booleans(), init=st.booleans(), network=texts, publish=tuples,
    cap_add=tuples, cap_drop=tuples, no_new_privileges=st.booleans(),
    seccomp=st.sampled_from(["default", "unconfined"]) | st.dictionaries(
        texts, st.integers() | texts, max_size=3),
    privileged=st.booleans(), devices=tuples, memory=st.none() | texts,
    cpu_shares=st.none() | st.integers(0, 1 << 20), pids_limit=st.none() | st.integers(-1, 99),
    restart=texts, auto_remove=st.booleans(), stop_signal=st.none() | texts,
    stop_timeout=st.none() | st.integers(0, 999),
    labels=st.dictionaries(texts, texts, max_size=3)))
def test_spec_round_trips_through_json(spec: ContainerSpec) -> None:
    text = json.dumps(spec.to_json())
    assert ContainerSpec.from_json(json.loads(text)) == spec


_FLAGS = st.lists(st.sampled_from([
    ["--rm"], ["-d"], ["--name", "web-1"], ["--init"], ["--hostname", "box"],
    ["-e", "A=1"], ["-e", "B=two words"], ["-w", "/tmp"], ["-u", "1000:1000"], ["-u", "user"],
    ["--cap-add", "NET_ADMIN"], ["--cap-drop", "ALL"], ["--read-only"],
    ["-v", "data:/data"], ["-v", "/tmp:/mnt:ro"], ["--tmpfs", "/run:size=1m,mode=755"],
    ["--network", "none"], ["--network", "host"], ["-p", "8080:80"], ["-p", "127.0.0.1:53:53/udp"],
    ["-P"], ["--network-bandwidth", "10mbit"], ["--userns-map", "100000:65536"],
    ["--security-opt", "no-new-privileges"], ["--security-opt", "seccomp=unconfined"],
    ["--privileged"], ["--device", "/dev/null:/dev/x:r"], ["-m", "256m"],
    ["-m", "64m", "--memory-swap", "-1"], ["--cpus", "0.5"], ["--cpu-shares", "512"],
    ["--cpuset-cpus", "0"], ["--pids-limit", "64"], ["--restart", "on-failure:3"],
    ["--stop-signal", "SIGINT"], ["--stop-timeout", "5"], ["-i"],
    ["--ulimit", "nofile=512:1024"], ["--ulimit", "core=-1"], ["--ulimit", "nproc=10:-1"],
]), max_size=6)


@settings(max_examples=150, deadline=None)
@given(_FLAGS)
def test_every_accepted_flag_combination_validates(flags: list[list[str]]) -> None:
    argv = ["run", *[x for f in flags for x in f], "--rootfs", "/", "true"]
    a = _build_parser("run").parse_args(argv)
    spec = from_run_flags(a, None, ["true"])
    # the only refusals a set of valid flags may meet: docker's conflicts
    conflict = (spec.auto_remove and spec.restart != "no") or (spec.detach and spec.tty) or (
        spec.network in ("none", "host")
        and bool(spec.publish or spec.publish_all or spec.network_bandwidth))
    try:
        validate(spec)
    except ConfigError as e:
        assert conflict, e
    else:
        assert not conflict
    again = ContainerSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec


@pytest.mark.parametrize("change,needle", [
    ({"restart": "sometimes"}, "sometimes"),
    ({"stop_signal": "SIGNOPE"}, "SIGNOPE"),
    ({"volumes": ("/nope-nope:/x",)}, "nope-nope"),
    ({"memory": "lots"}, "lots"),
    ({"devices": ("/etc/passwd",)}, "/etc/passwd"),
    ({"seccomp": {"defaultAction": "NOPE"}}, "NOPE"),
    ({"publish": ("99999:80",)}, "99999"),
    ({"rootfs": None}, "image or a rootfs"),
    ({"rlimits": {"RLIMIT_BOGUS": [1, 1]}}, "RLIMIT_BOGUS"),
    ({"rlimits": {"RLIMIT_NOFILE": [2, 1]}}, "RLIMIT_NOFILE"),
    ({"sysctls": {"vm.swappiness": "1"}}, "vm.swappiness"),
])
def test_validate_names_the_bad_value(change: dict[str, object], needle: str) -> None:
    from nsprim._record import replace

    spec = replace(ContainerSpec(rootfs="/", cmd=("true",)), **change)
    with pytest.raises(ConfigError, match=needle):
        validate(spec)


def test_a_record_of_an_older_version_loads() -> None:
    """Records written before spec.json (config.json, extra keys) still load."""
    old = {"name": "x", "cmd": ["sh"], "volumes": ["a:/a"], "nonsense": 1, "env": None,
           "restart": "always", "created": 5.0}
    spec = ContainerSpec.from_json(old)
    assert spec.cmd == ("sh",) and spec.volumes == ("a:/a",) and spec.env == ()
    assert spec.restart == "always" and spec.created == 5.0


# ---------------------------------------------- issue 12: mounts and volumes

from hypothesis import given as _given  # noqa: E402
from hypothesis import strategies as _st  # noqa: E402


@_given(_st.lists(_st.sampled_from(["/a", "/b", "/c/d", "n1:/e", "/tmp:/f:ro"]),
                  max_size=4, unique=True),
        _st.lists(_st.sampled_from(["/a", "/img", "/c/d", "/x"]), max_size=3, unique=True))
def test_with_anonymous_volumes_names_each_once(vols: list[str], image_vols: list[str]
                                                ) -> None:
    from nsprim.spec import ContainerSpec, parse_volume, with_anonymous_volumes

    spec = with_anonymous_volumes(ContainerSpec(rootfs="/", cmd=("x",), volumes=tuple(vols)),
                                  image_vols)
    targets = [parse_volume(v).target for v in spec.volumes]
    assert len(targets) == len(set(targets))  # one mount a target
    assert set(targets) == {v.split(":")[1] if ":" in v else v for v in vols} | set(image_vols)
    anon = [v.split(":")[0] for v in spec.volumes if ":" in v and len(v.split(":")[0]) == 64]
    assert sorted(anon) == sorted(spec.anonymous_volumes)
    assert all(":" in v for v in spec.volumes)
    again = with_anonymous_volumes(spec, image_vols)  # a restart names nothing new
    assert again.volumes == spec.volumes and again.anonymous_volumes == spec.anonymous_volumes


def test_parse_mount_kinds(tmp_path: Path) -> None:
    from nsprim.config import Bind, Tmpfs
    from nsprim.spec import parse_mount
    from nsprim.volumes import Volume

    assert parse_mount(f"type=bind,src={tmp_path},dst=/x,ro") == Bind(str(tmp_path), "/x",
                                                                       readonly=True)
    assert parse_mount("type=volume,source=v,target=/y") == Volume("v", "/y")
    assert parse_mount("target=/z") == Volume("anonymous", "/z")
    t = parse_mount("type=tmpfs,destination=/t,tmpfs-size=64k,tmpfs-mode=700")
    assert isinstance(t, Tmpfs) and (t.size, t.mode) == (65536, 0o700)


# ------------------------------- one field for rlimits, one for sysctls


def test_rlimits_and_sysctls_have_one_shape() -> None:
    """docker's --ulimit/--sysctl and OCI's process.rlimits/linux.sysctl land
    in the same two fields, and records of older versions (ulimits, sysctl)
    load into them."""
    from nsprim.oci.config import default_config, from_spec, to_spec
    from nsprim.spec import RLIM_INFINITY, ulimits_of

    a = _build_parser("run").parse_args(
        ["run", "--ulimit", "nofile=512:1024", "--ulimit", "core=-1", "--sysctl",
         "net.core.somaxconn=128", "--rootfs", "/", "true"])
    spec = from_run_flags(a, None, ["true"])
    validate(spec)
    assert spec.rlimits == {"RLIMIT_NOFILE": [512, 1024],
                            "RLIMIT_CORE": [RLIM_INFINITY, RLIM_INFINITY]}
    assert spec.sysctls == {"net.core.somaxconn": "128"}
    assert ulimits_of(spec.rlimits) == {"nofile": (512, 1024), "core": (-1, -1)}
    assert "ulimits" not in spec.to_json() and "sysctl" not in spec.to_json()
    config = default_config()
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
    config["linux"]["sysctl"] = {"net.core.somaxconn": "128"}
    oci = to_spec(config, "/bundle", "c1")
    assert dict(oci.rlimits) == {"RLIMIT_NOFILE": [512, 1024]}
    assert dict(oci.sysctls) == spec.sysctls
    back = from_spec(oci)
    assert back["linux"]["sysctl"] == {"net.core.somaxconn": "128"}
    assert {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024} in back["process"]["rlimits"]
    old = ContainerSpec.from_json({"cmd": ["true"], "ulimits": ["nofile=512:1024"],
                                   "sysctl": {"net.core.somaxconn": "128"}})
    assert dict(old.rlimits) == {"RLIMIT_NOFILE": [512, 1024]}
    assert dict(old.sysctls) == {"net.core.somaxconn": "128"}
