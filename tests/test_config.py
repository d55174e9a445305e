"""Pure logic: configuration validation, capabilities, plan building.
Property tests with hypothesis; no kernel needed."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nsprim import Bind, ConfigError, IdMap, Tmpfs
from nsprim._native import lib
from nsprim.caps import ALL_CAPS, DOCKER_DEFAULT_CAPS, cap_mask, resolve_caps
from nsprim.config import (
    make_config,
    parse_user,
    validate_env,
    validate_hostname,
)
from nsprim.plan import build_plan

label = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?\Z")


@given(st.lists(label, min_size=1, max_size=4))
def test_valid_hostnames_accepted(labels: list[str]) -> None:
    name = ".".join(labels)
    assume(len(name) <= 64)
    assert validate_hostname(name) == name


@given(st.text(min_size=1, max_size=80))
def test_hostname_rejections_name_the_value(name: str) -> None:
    try:
        validate_hostname(name)
    except ConfigError as e:
        assert repr(name) in str(e)
        assert "\n" not in str(e)
    else:
        assert len(name.encode()) <= 64
        assert set(name) <= set(string.ascii_letters + string.digits + "-.")
        assert not any(p.startswith("-") or p.endswith("-") or not p for p in name.split("."))


# names: no '=', no whitespace or control characters (a newline would forge a line)
keys = st.text(alphabet=st.characters(blacklist_characters="=",
                                      blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn",
                                                            "Zs", "Zl", "Zp")),
               min_size=1, max_size=10)
values = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=20)


@given(st.dictionaries(keys, values, max_size=8))
def test_env_roundtrip(env: dict[str, str]) -> None:
    out = validate_env(env)
    back = dict(e.split("=", 1) for e in out)
    assert back == env
    assert validate_env(list(out)) == out


@given(keys, values, values)
def test_env_later_wins(k: str, v1: str, v2: str) -> None:
    assert validate_env([f"{k}={v1}", f"{k}={v2}"]) == (f"{k}={v2}",)


@pytest.mark.parametrize("bad", [["NOEQUALS"], ["=v"], ["A=\x00"], {"": "x"}, {"A=B": "x"},
                                 ["A\nB=1"], {"A\n": "x"}, {"A B": "x"}, {"A\x1b": "x"}])
def test_env_rejections(bad: object) -> None:
    with pytest.raises(ConfigError):
        validate_env(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=2**32 - 2), st.integers(min_value=0, max_value=2**32 - 2))
def test_numeric_user_specs(uid: int, gid: int) -> None:
    assert parse_user(f"{uid}:{gid}") == (str(uid), str(gid))
    assert parse_user(uid) == (str(uid), None)
    assert parse_user((uid, gid)) == (str(uid), str(gid))


@given(st.integers().filter(lambda x: x < 0 or x > 2**32 - 2))
def test_out_of_range_uid_rejected(uid: int) -> None:
    with pytest.raises(ConfigError, match=str(uid)):
        parse_user(uid)
    with pytest.raises(ConfigError):
        parse_user(f"{abs(uid)}:{abs(uid) + 2**32}")


@pytest.mark.parametrize("bad", ["", ":", "a:b:c", "a:", ":b", "\u0661\u0660\u0660\u0660",
                                 "1000:\u0661", "\u00b9", "a\n", "1" * 5000])
def test_bad_user_strings(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_user(bad)


@given(st.integers(min_value=0, max_value=2**32 - 2), st.integers(min_value=1, max_value=2**20))
def test_idmap_translation(host: int, size: int) -> None:
    if host + size - 1 > 2**32 - 2:
        with pytest.raises(ConfigError):
            IdMap(host, size=size)
        return
    m = IdMap(host, size=size)
    assert m.to_host_uid(0) == host
    assert m.to_host_uid(size - 1) == host + size - 1
    assert m.to_host_uid(size) is None
    assert m.uid_map() == f"0 {host} {size}\n"


caps = st.sampled_from(sorted(ALL_CAPS))


@given(st.lists(caps, max_size=5), st.lists(caps, max_size=5))
def test_caps_add_wins_over_drop(add: list[str], drop: list[str]) -> None:
    result = resolve_caps(add, drop)
    assert set(add) <= result
    assert not (set(drop) - set(add)) & result
    assert result <= (DOCKER_DEFAULT_CAPS | set(add))


def test_caps_all_keywords() -> None:
    assert resolve_caps(drop=["ALL"]) == frozenset()
    assert resolve_caps(drop=["ALL"], add=["cap_net_admin"]) == {"NET_ADMIN"}
    assert resolve_caps(add=["ALL"]) == frozenset(ALL_CAPS)
    assert cap_mask(DOCKER_DEFAULT_CAPS) == 0xA80425FB  # docker's CapBnd
    with pytest.raises(ConfigError, match="'CAP_BOGUS'"):
        resolve_caps(add=["CAP_BOGUS"])


paths = st.lists(st.from_regex(r"\A[a-z]{1,8}\Z"), min_size=1, max_size=3).map(
    lambda p: "/" + "/".join(p))


@given(
    hostname=st.none() | label,
    net=st.booleans(),
    ro=st.booleans(),
    binds=st.lists(st.tuples(paths, paths, st.booleans()), max_size=3),
    tmpfs=st.lists(paths, max_size=2),
    argv=st.lists(st.text(alphabet=string.ascii_letters, min_size=1), min_size=1, max_size=4),
    nnp=st.booleans(),
    init=st.booleans(),
)
def test_plan_shape(hostname: str | None, net: bool, ro: bool,
                    binds: list[tuple[str, str, bool]], tmpfs: list[str],
                    argv: list[str], nnp: bool, init: bool) -> None:
    mounts = [Bind(s, d, r) for s, d, r in binds] + [Tmpfs(t) for t in tmpfs]
    cfg = make_config(argv, rootfs="/srv/root", hostname=hostname, namespaces={"net": net},
                      read_only=ro, mounts=mounts, user="0:0", no_new_privileges=nnp,
                      init=init)
    plan = build_plan(cfg, (0, 1, 2))
    kinds = [op.kind for op in plan.ops]
    # executes, last, through the sealed helper: [name, mode, sync fd, PATH, argv...]
    assert kinds[-1] == lib.NSP_OP_EXEC and kinds.count(lib.NSP_OP_EXEC) == 1
    assert plan.exec_fd >= 0 and plan.sync
    assert plan.ops[-1].argv[1:3] == ("i" if init else "x", "3")
    assert plan.ops[-1].argv[4:] == tuple(argv)
    # nothing of the host is open when the working directory is resolved
    assert kinds.index(lib.NSP_OP_FDS) < kinds.index(lib.NSP_OP_CHDIR)
    # a fresh keyring before seccomp (which refuses keyctl); seccomp last
    # with no_new_privs, else while CAP_SYS_ADMIN is still there
    sec = kinds.index(lib.NSP_OP_SECCOMP)
    assert kinds.index(lib.NSP_OP_SESSION_KEYRING) < sec
    if nnp:
        assert sec == len(kinds) - 2 and kinds.index(lib.NSP_OP_NO_NEW_PRIVS) < sec
    else:
        assert lib.NSP_OP_NO_NEW_PRIVS not in kinds
        assert sec < kinds.index(lib.NSP_OP_CAP_BOUNDING)
    # nodev on the root and on every user bind
    assert plan.ops[kinds.index(lib.NSP_OP_ROOT)].flags & lib.NSP_F_NODEV
    assert all(op.flags & lib.NSP_F_NODEV for op in plan.ops if op.step == "bind_mount")
    pivot = kinds.index(lib.NSP_OP_PIVOT_ROOT)
    mount_kinds = {lib.NSP_OP_ROOT, lib.NSP_OP_MOUNT, lib.NSP_OP_BIND, lib.NSP_OP_MASK,
                   lib.NSP_OP_READONLY, lib.NSP_OP_SYMLINK}
    assert all(k not in mount_kinds for k in kinds[pivot:])
    assert kinds.index(lib.NSP_OP_ROOT) < pivot
    for k in (lib.NSP_OP_CAP_BOUNDING, lib.NSP_OP_SETID, lib.NSP_OP_CAPS, lib.NSP_OP_FDS):
        assert pivot < kinds.index(k) < len(kinds) - 1
    assert kinds.index(lib.NSP_OP_CAP_BOUNDING) < kinds.index(lib.NSP_OP_CAPS)
    assert (lib.NSP_OP_LOOPBACK_UP in kinds) == net
    assert (lib.NSP_OP_HOSTNAME in kinds) == (hostname is not None)
    # every user mount is in the plan, in order
    binds_in_plan = [(op.src, op.dst) for op in plan.ops if op.step == "bind_mount"]
    assert binds_in_plan == [(s, d) for s, d, _ in binds]
    assert (plan.ops[pivot - 1].step == "readonly_rootfs") == ro
    assert plan.clone_flags & lib.CLONE_NEWNS
    assert bool(plan.clone_flags & lib.CLONE_NEWNET) == net


@pytest.mark.parametrize("kwargs,needle", [
    ({"rootfs": "relative/dir"}, None),
    ({"cwd": "tmp"}, "'tmp'"),
    ({"namespaces": {"user": True}}, "IdMap"),
    ({"namespaces": {"mnt": False}, "rootfs": "/x"}, "mount namespace"),
    ({"mounts": [object()], "rootfs": "/x"}, "invalid mount"),
    ({"pass_fds": [-1]}, "-1"),
])
def test_config_rejections(kwargs: dict[str, object], needle: str | None) -> None:
    if needle is None:  # relative rootfs is made absolute, not rejected
        cfg = make_config(["true"], **kwargs)  # type: ignore[arg-type]
        assert cfg.rootfs is not None and cfg.rootfs.startswith("/")
        return
    with pytest.raises(ConfigError, match=needle):
        make_config(["true"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [[], "ls", ["a\x00b"]])
def test_bad_argv(argv: object) -> None:
    with pytest.raises(ConfigError):
        make_config(argv)  # type: ignore[arg-type]


@given(st.text(max_size=30))
def test_env_keys_valid_or_config_error(key: str) -> None:
    try:
        out = validate_env({key: "v"})
    except ConfigError as e:
        assert repr(key) in str(e)
        assert not key or "=" in key or not key.isprintable() or \
            any(c.isspace() for c in key)
        return
    assert out == (f"{key}=v",)
    assert "\n" not in key and "=" not in key and key


@given(st.text(max_size=30))
def test_user_specs_valid_or_config_error(spec: str) -> None:
    try:
        user, group = parse_user(spec) or ("", None)
    except ConfigError:
        return
    for part in (user, group):
        if part is not None and any(c.isdigit() for c in part) and part.isdigit():
            assert part.isascii() and int(part) <= 2**32 - 2
        assert part is None or "\n" not in part


@given(st.text(alphabet="/.abproc", max_size=20))
def test_mount_targets_clean_or_refused(target: str) -> None:
    try:
        t = Tmpfs(target)
    except ConfigError:
        return
    parts = t.target.split("/")
    assert t.target.startswith("/") and t.target != "/"
    assert ".." not in parts and "." not in parts and "" not in parts[1:]
    assert parts[1] != "proc"


def test_tmpfs_takes_dockers_sizes_as_the_cli_does() -> None:
    assert Tmpfs("/run", size="16m").size == 16 << 20
    assert Tmpfs("/run", size="1.5g").size == 3 << 29
    with pytest.raises(ConfigError, match="'lots'"):
        Tmpfs("/run", size="lots")
