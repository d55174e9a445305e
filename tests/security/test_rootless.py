"""Rootless containment, tried as an attacker would: two unprivileged users
side by side (tests/rootless_users.py), each running containers.  Neither
sees, signals, enters or removes the other's containers, or reads the
other's state; root inside a rootless container is only the user outside."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ..rootless_users import Users

NONET = ("--network", "none")


@pytest.fixture
def a_running(rootless_users: Users) -> Iterator[tuple[str, int]]:
    """User a's detached container `secret`: (its id, its host pid)."""
    a = rootless_users["a"]
    r = a.nsprim("run", "-d", "--name", "secret", *NONET, "--tmpfs", "/tmp",
                 "--rootfs", rootless_users.rootfs,
                 "--", "sh", "-c", "echo s3cret > /tmp/s3cret-file; exec sleep 300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    import json

    ins = a.nsprim("inspect", "secret")
    pid = int(json.loads(ins.stdout)[0]["State"]["Pid"])
    assert pid > 0, ins.stdout
    try:
        yield cid, pid
    finally:
        rm = a.nsprim("rm", "-f", "secret")
        assert rm.returncode == 0, rm.stderr


def test_other_user_sees_none_of_the_containers(rootless_users: Users,
                                                a_running: tuple[str, int]) -> None:
    cid, _ = a_running
    b = rootless_users["b"]
    assert cid[:12] in rootless_users["a"].nsprim("ps", "-q").stdout
    ps = b.nsprim("ps", "-a", "-q")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.strip() == ""
    for cmd in (("stop", "-t", "0", "secret"), ("rm", "-f", "secret"), ("logs", "secret"),
                ("exec", "secret", "true"), ("kill", cid[:12]), ("inspect", cid)):
        r = b.nsprim(*cmd)
        assert r.returncode != 0, (cmd, r.stdout)
    # still running for its owner
    assert cid[:12] in rootless_users["a"].nsprim("ps", "-q").stdout


def test_other_user_cannot_name_the_others_state_root(rootless_users: Users,
                                                      a_running: tuple[str, int]) -> None:
    """--root pointing at a's state: refused (owned by another uid), nothing read."""
    a, b = rootless_users["a"], rootless_users["b"]
    r = b.nsprim("--root", a.data_root, "ps", "-a")
    assert r.returncode != 0
    assert a_running[0][:12] not in r.stdout
    r = b.run("/bin/ls", a.data_root)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = b.run("/bin/cat", os.path.join(a.data_root, "names.json"))
    assert r.returncode != 0


def test_other_user_cannot_signal_or_enter(rootless_users: Users,
                                           a_running: tuple[str, int]) -> None:
    _, pid = a_running
    a, b = rootless_users["a"], rootless_users["b"]
    # the owner reaches it (the control): the secret is there to be found
    assert a.run("/bin/cat", f"/proc/{pid}/root/tmp/s3cret-file").stdout.strip() == "s3cret"
    r = b.run("/bin/kill", "-9", str(pid))
    assert r.returncode != 0
    for path in (f"/proc/{pid}/root/tmp/s3cret-file", f"/proc/{pid}/environ"):
        r = b.run("/bin/cat", path)
        assert r.returncode != 0 and "s3cret" not in r.stdout, path
    r = b.run("/usr/bin/nsenter", "-t", str(pid), "-a", "/bin/true")
    assert r.returncode != 0
    r = b.run("/usr/bin/nsenter", "-t", str(pid), "-U", "--preserve-credentials", "/bin/true")
    assert r.returncode != 0
    assert os.path.exists(f"/proc/{pid}")  # b did nothing to it


def test_container_root_is_only_the_user(rootless_users: Users) -> None:
    """Root inside cannot write what the host's root owns in its rootfs, nor
    load modules, nor raise its capabilities over host ids; setuid root
    binaries it writes are the user's."""
    a = rootless_users["a"]
    r = a.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "sh", "-c",
                 "echo x >> /etc/passwd; echo rc=$?; "
                 "mknod /tmp/sda b 8 0 2>/dev/null; echo mknod=$?; "
                 "cat /proc/self/uid_map | head -1")
    assert r.returncode == 0, r.stderr
    assert "rc=1" in r.stdout  # /etc/passwd is the host root's: not writable by the user
    assert "mknod=1" in r.stdout
    assert r.stdout.splitlines()[-1].split() == ["0", str(a.uid), "1"]
    with open(os.path.join(rootless_users.rootfs, "etc", "passwd")) as f:
        assert "x\n" not in f.read().splitlines(keepends=True)[-1:]


def test_containers_of_two_users_do_not_see_each_other(rootless_users: Users,
                                                       a_running: tuple[str, int]) -> None:
    b = rootless_users["b"]
    r = b.nsprim("run", "--rm", *NONET, "--rootfs", rootless_users.rootfs, "--", "sh", "-c",
                 "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done "
                 "| grep -c '^sleep 300 $'; ls /tmp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].strip() == "0"
    assert "s3cret-file" not in r.stdout


def _hostile_archive(dest: str, target_dir: str) -> None:
    """A `docker save` archive whose one layer tries to write outside
    itself: through a symlink to `target_dir`, a `..` name, an absolute name
    and a hardlink out; and a file whose recorded owner is a subordinate id."""
    import hashlib
    import io
    import json
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, target_dir
        t.addfile(link)
        for name in ("escape/planted", "../../../../" + target_dir.lstrip("/") + "/dotdot",
                     target_dir + "/absolute"):
            f = tarfile.TarInfo(name)
            f.size, f.uid, f.gid = 4, 1000, 1000
            t.addfile(f, io.BytesIO(b"evil"))
        hard = tarfile.TarInfo("hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        t.addfile(hard)
    layer = buf.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["x"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in (("config.json", config), ("l.tar", layer),
                           ("manifest.json", json.dumps([{
                               "Config": "config.json", "RepoTags": ["hostile:1"],
                               "Layers": ["l.tar"]}]).encode())):
            i = tarfile.TarInfo(name)
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
    with open(dest, "wb") as f:
        f.write(out.getvalue())
    os.chmod(dest, 0o644)


def test_hostile_layer_loaded_rootless_stays_inside(rootless_users: Users) -> None:
    """Extraction as the user, then owners applied as root of a user
    namespace: nothing lands in (or is chowned in) the user's home."""
    a = rootless_users["a"]
    target = os.path.join(a.home, "target")
    assert a.run("/bin/mkdir", target).returncode == 0
    archive = os.path.join(rootless_users.base, "hostile.tar")
    _hostile_archive(archive, target)
    r = a.nsprim("load", "-i", archive, timeout=120)
    assert os.listdir(target) == [], r.stderr
    assert os.stat(target).st_uid == a.uid
    if r.returncode == 0:
        layers = os.path.join(a.data_root, "images", "layers")
        for d in os.listdir(layers):
            esc = os.path.join(layers, d, "escape")
            if os.path.islink(esc):
                assert os.readlink(esc) == target  # kept as a link, inside the layer
        assert a.nsprim("rmi", "hostile:1").returncode == 0
    else:
        assert len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(target) == []
    with open("/etc/passwd") as f:
        assert "evil" not in f.read()


_PROBE = ("grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; "
          "echo fds $(ls /proc/self/fd | tr '\\n' ' '); "
          "echo map $(head -1 /proc/self/uid_map); "
          "echo x >> /etc/passwd 2>/dev/null; echo passwd $?; "
          "mknod /dev/sdz b 8 0 2>/dev/null; echo mknod $?")


def _probe_fields(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        k, _, v = line.replace(":", " ", 1).partition(" ")
        fields[k] = " ".join(v.split())
    return fields


def test_rootless_build_run_step_is_contained(rootless_users: Users,
                                              images: dict[str, str]) -> None:
    """A RUN step of a rootless build (the build runs as root of the user's
    user namespace): docker's seccomp filter and 14 capabilities, only fds
    0-2, root inside is the user outside, no device nodes, and the host's
    files it can reach are not writable."""
    import subprocess

    a = rootless_users["a"]
    r = a.nsprim("pull", images["base"], timeout=120)
    assert r.returncode == 0, r.stderr
    ctx = os.path.join(a.home, "sec-build")
    os.makedirs(ctx, exist_ok=True)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {images['base']}\nRUN ({_PROBE}) > /probe.txt 2>&1\n"
                "CMD [\"cat\", \"/probe.txt\"]\n")
    subprocess.run(["chown", "-R", f"{a.uid}:{a.gid}", ctx], check=True)
    r = a.nsprim("build", "-q", "-t", "localhost/secbuild:1", ctx, timeout=300)
    assert r.returncode == 0, r.stderr
    try:
        out = a.nsprim("run", "--rm", *NONET, "localhost/secbuild:1")
        assert out.returncode == 0, out.stderr
        f = _probe_fields(out.stdout)
        assert f["Seccomp"] == "2" and f["NoNewPrivs"] == "0"
        assert f["CapEff"] == "00000000a80425fb"
        assert f["fds"].split() == ["0", "1", "2", "3"]  # 3: ls's own directory
        assert f["map"].split() == ["0", str(a.uid), "1"]  # root inside = a outside
        assert f["mknod"] == "1"
    finally:
        a.nsprim("rmi", "localhost/secbuild:1")


def test_usernet_container_is_contained(rootless_users: Users) -> None:
    """A container on the user's network (made as root of the user's user
    namespace): the same protections, root inside is only the user."""
    import shutil
    import subprocess

    a = rootless_users["a"]
    rootfs = os.path.join(a.home, "sec-usernet-rootfs")
    if not os.path.isdir(rootfs):
        shutil.copytree(rootless_users.rootfs, rootfs, symlinks=True)
        subprocess.run(["chown", "-R", f"{a.uid}:{a.gid}", rootfs], check=True)
    r = a.nsprim("run", "--rm", "--network", "usernet", "--rootfs", rootfs, "--",
                 "sh", "-c", _PROBE)
    assert r.returncode == 0, r.stderr
    f = _probe_fields(r.stdout)
    assert f["Seccomp"] == "2" and f["CapEff"] == "00000000a80425fb"
    assert f["fds"].split() == ["0", "1", "2", "3"]
    assert f["map"].split() == ["0", str(a.uid), "1"]
    assert f["mknod"] == "1"


def test_rootless_exec_init_and_workdir_fds(rootless_users: Users,
                                            a_running: tuple[str, int]) -> None:
    """exec into a rootless container, a rootless --init and a -w through
    /proc/self/fd/N (run and exec): the same protections as run's, and no fd
    of the setup leads out at the working directory."""
    a = rootless_users["a"]
    r = a.nsprim("exec", "secret", "sh", "-c", _PROBE)
    assert r.returncode == 0, r.stderr
    f = _probe_fields(r.stdout)
    assert f["Seccomp"] == "2" and f["NoNewPrivs"] == "0"
    assert f["CapEff"] == "00000000a80425fb"
    assert f["fds"].split() == ["0", "1", "2", "3"]  # 3: ls's own directory
    assert f["map"].split() == ["0", str(a.uid), "1"]
    r = a.nsprim("run", "--rm", "--init", *NONET, "--rootfs", rootless_users.rootfs, "--",
                 "sh", "-c", "readlink /proc/1/exe; grep Seccomp: /proc/1/status")
    assert r.stdout.split() == ["/memfd:nsprim-init", "(deleted)", "Seccomp:", "2"], r
    climb = "cd ../../../../../../../..; ls"
    for n in range(3, 10):
        r = a.nsprim("run", "--rm", *NONET, "-w", f"/proc/self/fd/{n}", "--rootfs",
                     rootless_users.rootfs, "--", "sh", "-c", climb)
        assert r.returncode in (125, 127) and "home" not in r.stdout.split(), (n, r)
        r = a.nsprim("exec", "-w", f"/proc/self/fd/{n}", "secret", "sh", "-c", climb)
        assert r.returncode != 0 and "home" not in r.stdout.split(), (n, r)
