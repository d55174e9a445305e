"""nsprim-runtime (runc's command line) run by an unprivileged user with a
config.json that has a user namespace (`nsprim-runtime spec --rootless`,
runc's rootless spec): run, create/start/state/kill/delete, in a state
root of the user's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .rootless_users import PY, User, Users


def _bundle(u: User, rootfs: str, name: str, args: list[str]) -> str:
    bundle = os.path.join(u.home, name)
    os.mkdir(bundle)
    shutil.copytree(rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
    subprocess.run(["chown", "-R", f"{u.uid}:{u.gid}", bundle], check=True)
    r = _rt(u, "spec", "--rootless", "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


_RT = ("import sys; from nsprim.oci.cli import main; sys.exit(main())")


def _rt(u: User, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    root = os.path.join(u.home, "rt-state")
    if args[0] == "create":  # the container keeps its stdio: not our pipes
        return u.run("/bin/sh", "-c", 'exec "$0" "$@" </dev/null >/dev/null 2>&1', PY, "-c",
                     _RT, "--root", root, *args, timeout=timeout)
    return u.run(PY, "-c", _RT, "--root", root, *args, timeout=timeout)


def test_oci_runtime_rootless_run(rootless_users: Users) -> None:
    for who in ("a", "c"):  # spec --rootless maps the user alone (runc's rootless spec)
        u = rootless_users[who]
        b = _bundle(u, rootless_users.rootfs, f"oci-run-{who}",
                    ["sh", "-c", "id -u; cat /proc/self/uid_map; touch /x || echo ro; "
                                 "exit 3"])
        r = _rt(u, "run", "--bundle", b, f"rl-{who}")
        assert r.returncode == 3, (who, r.stdout, r.stderr)
        lines = r.stdout.split("\n")
        assert lines[0] == "0"
        assert lines[1].split() == ["0", str(u.uid), "1"]
        assert lines[2] == "ro"  # spec's root is read-only
        # run removed its state: the id is free again
        assert _rt(u, "state", f"rl-{who}").returncode != 0


def test_oci_runtime_rootless_lifecycle(rootless_users: Users) -> None:
    u = rootless_users["a"]
    b = _bundle(u, rootless_users.rootfs, "oci-life", ["sleep", "300"])
    r = _rt(u, "create", "--bundle", b, "life")
    assert r.returncode == 0, r.stderr
    st = json.loads(_rt(u, "state", "life").stdout)
    assert st["status"] == "created"
    assert _rt(u, "start", "life").returncode == 0
    st = json.loads(_rt(u, "state", "life").stdout)
    assert st["status"] == "running" and st["pid"] > 0
    with open(f"/proc/{st['pid']}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(u.uid)}  # root inside is the user outside
    assert _rt(u, "kill", "life", "KILL").returncode == 0
    r = _rt(u, "delete", "--force", "life")
    assert r.returncode == 0, r.stderr
    assert _rt(u, "state", "life").returncode != 0


def test_oci_runtime_rootless_refuses_a_mapping_it_cannot_have(rootless_users: Users
                                                                ) -> None:
    u = rootless_users["c"]
    b = _bundle(u, rootless_users.rootfs, "oci-badmap", ["true"])
    with open(os.path.join(b, "config.json")) as f:
        cfg = json.load(f)
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]  # host root
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(cfg, f)
    r = _rt(u, "run", "--bundle", b, "bad")
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "linux.uidMappings" in lines[0], r.stderr
    assert not os.path.exists(os.path.join(u.home, "rt-state", "bad"))
