"""The everyday docker commands and flags of issue 12 ("missing commands
and flags"): cp, and the bad-input checks of every new flag."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .conftest import cli_at


def _volumes(root: str) -> list[str]:
    d = Path(root) / "volumes"
    return sorted(n for n in os.listdir(d) if not n.startswith(".")) if d.exists() else []


def _cli(root: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_at(root, *args)


@pytest.fixture
def running(private_root: str, fresh_rootfs: str) -> str:
    r = cli_at(private_root, "run", "-d", "--name", "c1", "--network", "none", "--rootfs",
               fresh_rootfs, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    return private_root


# ------------------------------------------------------------------- cp

def test_cp_both_ways_running(running: str, tmp_path: Path) -> None:
    root = running
    assert _cli(root, "exec", "c1", "sh", "-c",
                "mkdir -p /tmp/d/sub && echo hi > /tmp/d/f && echo g > /tmp/d/sub/g && "
                "chown 1000:1000 /tmp/d/f").returncode == 0
    # a directory that does not exist on the host becomes DEST
    assert _cli(root, "cp", "c1:/tmp/d", str(tmp_path / "new")).returncode == 0
    assert (tmp_path / "new" / "sub" / "g").read_text() == "g\n"
    assert os.stat(tmp_path / "new" / "f").st_uid == 0  # the caller's without -a
    # into an existing directory: DEST/basename; -a keeps owners
    assert _cli(root, "cp", "-a", "c1:/tmp/d", str(tmp_path)).returncode == 0
    assert os.stat(tmp_path / "d" / "f").st_uid == 1000
    # contents only with /.
    (tmp_path / "cont").mkdir()
    assert _cli(root, "cp", "c1:/tmp/d/.", str(tmp_path / "cont")).returncode == 0
    assert sorted(os.listdir(tmp_path / "cont")) == ["f", "sub"]
    # a file to a new name, and back in to a directory and a new name
    assert _cli(root, "cp", "c1:/tmp/d/f", str(tmp_path / "g.txt")).returncode == 0
    assert (tmp_path / "g.txt").read_text() == "hi\n"
    os.chown(tmp_path / "g.txt", 1234, 1234)
    assert _cli(root, "cp", str(tmp_path / "g.txt"), "c1:/tmp/").returncode == 0
    assert _cli(root, "cp", str(tmp_path / "new"), "c1:/tmp/copied").returncode == 0
    r = _cli(root, "exec", "c1", "sh", "-c", "stat -c %u /tmp/g.txt; cat /tmp/copied/sub/g")
    assert r.stdout == "0\ng\n", r.stderr


def test_cp_tar_streams(running: str) -> None:
    root = running
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "cp", "c1:/etc",
                        "-"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        names = t.getnames()
    assert names[0] == "etc" and "etc/passwd" in names
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("in/x.txt")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "cp", "-",
                        "c1:/tmp"], input=buf.getvalue(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _cli(root, "exec", "c1", "cat", "/tmp/in/x.txt").stdout == "abc"


def test_cp_stopped_container_with_image(private_root: str, images: dict[str, str],
                                         tmp_path: Path) -> None:
    """A stopped container's root: its image's layers and what it wrote."""
    root = private_root
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    r = _cli(root, "run", "--name", "done", "--network", "none", images["app"], "sh", "-c",
             "echo mine > /app/mine.txt")
    assert r.returncode == 0, r.stderr
    assert _cli(root, "cp", "done:/app", str(tmp_path / "app")).returncode == 0
    assert sorted(os.listdir(tmp_path / "app")) == ["hello.txt", "mine.txt"]
    (tmp_path / "put.txt").write_text("put\n")
    assert _cli(root, "cp", str(tmp_path / "put.txt"), "done:/app/").returncode == 0
    rec_upper = Path(root) / "containers"
    ups = [p for p in rec_upper.glob("*/upper/app/put.txt")]
    assert len(ups) == 1 and ups[0].read_text() == "put\n"
    assert not [m for m in open("/proc/self/mountinfo") if str(rec_upper) in m]


@pytest.mark.parametrize("args, line", [
    (["cp", "/a", "/b"], "Error: must specify at least one container source"),
    (["cp", "c1:/a", "c1:/b"], "Error: copying between containers is not supported"),
    (["cp", "nosuch:/a", "/tmp"], "Error response from daemon: No such container: nosuch"),
    (["cp", "c1:/nope", "/tmp"],
     "Error response from daemon: Could not find the file /nope in container c1"),
    (["cp", "c1:/etc/passwd/", "/tmp"], "Error response from daemon: /etc/passwd/: not a "
     "directory"),
])
def test_cp_errors(running: str, args: list[str], line: str) -> None:
    r = _cli(running, *args)
    assert (r.returncode, r.stderr) == (1, line + "\n")


def test_cp_dir_onto_file_and_missing_dir(running: str, tmp_path: Path) -> None:
    tmp_path = tmp_path / "host"
    tmp_path.mkdir()
    (tmp_path / "f").write_text("x")
    r = _cli(running, "cp", "c1:/etc", str(tmp_path / "f"))
    assert r.returncode == 1 and "cannot copy a directory to a file" in r.stderr
    r = _cli(running, "cp", "c1:/etc/passwd", str(tmp_path / "nodir") + "/")
    assert r.returncode == 1 and "must exist" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["f"]


# --------------------------------------- env files, labels, mounts, volumes

def test_env_file_labels_mounts(private_root: str, fresh_rootfs: str, tmp_path: Path) -> None:
    root = private_root
    (tmp_path / "env").write_text("# comment\nA=1\n\nB=two words\nHOME_FROM_HOST\n")
    (tmp_path / "labels").write_text("from.file=yes\nk=file\n")
    rel = tmp_path / "rel"
    rel.mkdir()
    (rel / "x").write_text("R\n")
    r = subprocess.run(
        [sys.executable, "-m", "nsprim", "--root", root, "run", "--name", "m", "--network",
         "none", "--rootfs", fresh_rootfs, "--env-file", str(tmp_path / "env"), "-e", "A=3",
         "-v", "./rel:/r:ro,Z", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
         "--mount", f"type=bind,src={rel},dst=/b,readonly", "--mount", "type=volume,target=/mv",
         "-l", "k=cli", "--label", "bare", "--label-file", str(tmp_path / "labels"),
         "sh", "-c", "echo $A $B $HOME_FROM_HOST; cat /r/x /b/x; touch /r/y /b/y || echo ro; "
         "grep -c ' /t tmpfs' /proc/mounts"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=dict(os.environ, HOME_FROM_HOST="h"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "3 two words h" and lines[1:3] == ["R", "R"]
    assert "ro" in lines and lines[-1] == "1" and not (rel / "y").exists()
    spec = json.loads((next((Path(root) / "containers").glob("*/spec.json"))).read_text())
    assert spec["labels"] == {"k": "cli", "bare": "", "from.file": "yes"}
    assert spec["volumes"] == [f"{rel}:/r:ro,Z"]
    assert len(spec["anonymous_volumes"]) == 1  # the --mount without a source
    vols = _volumes(root)
    assert vols == spec["anonymous_volumes"]
    assert _cli(root, "rm", "-v", "m").returncode == 0
    assert _volumes(root) == []


def test_anonymous_volumes_rm_and_image_volume(private_root: str, images: dict[str, str]
                                              ) -> None:
    root = private_root
    assert _cli(root, "pull", "-q", images["vol"]).returncode == 0
    # the image's VOLUME /data: an anonymous volume filled from the image
    r = _cli(root, "run", "--name", "v1", "--network", "none", "-v", "/extra", images["vol"],
             "sh", "-c", "cat /data/seed; echo new > /data/n; grep -c ' /data ' /proc/mounts")
    assert (r.returncode, r.stdout) == (0, "seed\n1\n"), r.stderr
    vols = _volumes(root)
    assert len(vols) == 2
    assert any((Path(root) / "volumes" / v / "_data" / "n").exists() for v in vols)
    assert _cli(root, "rm", "v1").returncode == 0      # without -v: kept (docker)
    assert _volumes(root) == vols
    for v in vols:
        assert _cli(root, "volume", "rm", v).returncode == 0
    # --rm removes them; a -v over the VOLUME replaces it
    r = _cli(root, "run", "--rm", "--network", "none", "-v", "named:/data", images["vol"])
    assert (r.returncode, r.stdout) == (0, "seed\n"), r.stderr
    assert _volumes(root) == ["named"]
    assert _cli(root, "volume", "rm", "named").returncode == 0


# ------------------------------------------------------------- bad input

BAD_RUN_FLAGS = [
    (["--env-file", "/nonexistent/env"], "open /nonexistent/env: no such file or directory"),
    (["--label-file", "/nonexistent/l"], "open /nonexistent/l: no such file or directory"),
    (["-l", "=v"], "invalid label '=v': empty name"),
    (["--mount", "type=foo,target=/x"], "invalid type 'foo'"),
    (["--mount", "type=bind,source=/nonexistent,target=/x"],
     "bind source path does not exist: /nonexistent"),
    (["--mount", "type=bind,source=rel,target=/x"], "invalid source 'rel'"),
    (["--mount", "target=/x,bogus=1"], "unexpected key 'bogus'"),
    (["--mount", "type=volume"], "target is required"),
    (["--mount", "type=tmpfs,target=/x,tmpfs-size=1q"], "invalid tmpfs-size '1q'"),
    (["--mount", "type=tmpfs,target=/x,tmpfs-mode=999"], "invalid tmpfs-mode '999'"),
    (["--mount", "type=volume,target=/x,readonly=maybe"], "invalid readonly 'maybe'"),
    (["--mount", "type=bind,src=/tmp,target=/x,bind-propagation=odd"],
     "invalid bind-propagation 'odd'"),
    (["--mount", "type=volume,target=/proc/x"], "/proc/x"),
    (["-v", "/x:/y:zz"], "invalid volume mode 'zz'"),
    (["-v", "/x:/y:ro,rw"], "invalid volume mode 'ro,rw'"),
    (["-v", "relative"], "invalid volume specification 'relative'"),
]


@pytest.mark.parametrize("flags, needle", BAD_RUN_FLAGS)
def test_bad_run_flags(private_root: str, fresh_rootfs: str, flags: list[str],
                       needle: str) -> None:
    """One line naming the value, exit 125, nothing created."""
    r = _cli(private_root, "run", "--rm", "--network", "none", "--rootfs", fresh_rootfs,
             *flags, "true")
    assert r.returncode == 125, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert r.stderr.startswith("nsprim: ")
    d = Path(private_root) / "containers"
    assert not d.exists() or os.listdir(d) == []
    assert _volumes(private_root) == []


# ------------------------------------- stats, top, port, pause, rename, update

def _cgroup_file(root: str, cid: str, ctrl: str, name: str) -> str:
    """A file of the container's cgroup, read by a process of its state root."""
    code = ("import sys; from nsprim.cgroup import Cgroup; cg = Cgroup.open(sys.argv[1]); "
            "d = cg.v1_paths.get(sys.argv[2]) or cg.v2_path; "
            "print(open(d + '/' + sys.argv[3]).read().strip())")
    r = subprocess.run([sys.executable, "-c", code, cid[:16], ctrl, name], text=True,
                       capture_output=True, env=dict(os.environ, NSPRIM_ROOT=root),
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _id(root: str, name: str) -> str:
    for d in (Path(root) / "containers").iterdir():
        spec = json.loads((d / "spec.json").read_text())
        if spec["name"] == name:
            return d.name
    raise AssertionError(name)


def test_stats_top_port(private_root: str, fresh_rootfs: str) -> None:
    root = private_root
    r = _cli(root, "run", "-d", "--name", "st", "-m", "64m", "-p", "127.0.0.1::80",
             "--rootfs", fresh_rootfs, "sh", "-c", "sleep 1000 & sleep 1001")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "stats", "--no-stream", "--format", "json")
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["Name"] == "st" and row["ID"] == _id(root, "st")[:12]
    assert row["MemUsage"].endswith(" / 64MiB") and row["PIDs"] == "2"
    assert row["CPUPerc"].endswith("%") and " / " in row["NetIO"] and " / " in row["BlockIO"]
    r = _cli(root, "stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}", "st")
    assert r.stdout.split("\n")[1].split() == ["st", "2"], r.stdout
    r = _cli(root, "stats", "--no-stream")
    # Go's tabwriter as docker's: columns at least 10 wide, 3 spaces apart
    assert r.stdout.startswith("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %")
    r = _cli(root, "top", "st")
    assert r.returncode == 0 and "sleep 1000" in r.stdout and "sleep 1001" in r.stdout
    assert r.stdout.startswith("UID") and len(r.stdout.splitlines()) == 3
    r = _cli(root, "port", "st")
    assert r.returncode == 0 and r.stdout.startswith("80/tcp -> 127.0.0.1:"), r.stdout
    host_port = int(r.stdout.strip().rsplit(":", 1)[1])
    assert _cli(root, "port", "st", "80/tcp").stdout == f"127.0.0.1:{host_port}\n"
    r = _cli(root, "port", "st", "81")
    assert (r.returncode, r.stderr) == (
        1, "Error response from daemon: No public port '81/tcp' published for st\n")


def test_pause_rename_update(private_root: str, fresh_rootfs: str) -> None:
    root = private_root
    r = _cli(root, "run", "-d", "--name", "p1", "--network", "none", "--rootfs", fresh_rootfs,
             "sh", "-c", "while :; do echo x >> /tmp/ticks; sleep 0.05; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    ticks = Path(fresh_rootfs) / "tmp" / "ticks"
    assert _cli(root, "pause", "p1").stdout == "p1\n"
    r = _cli(root, "pause", "p1")
    assert (r.returncode, r.stderr) == (
        1, f"Error response from daemon: container {cid} is already paused\n")
    import time

    before = ticks.read_text()
    time.sleep(0.5)
    assert ticks.read_text() == before  # frozen
    assert _cli(root, "unpause", "p1").returncode == 0
    time.sleep(0.5)
    assert len(ticks.read_text()) > len(before)
    r = _cli(root, "unpause", "p1")
    assert r.returncode == 1 and "is not paused" in r.stderr
    # rename: the new name finds it, the old one does not
    assert _cli(root, "rename", "p1", "p2").returncode == 0
    assert _cli(root, "exec", "p2", "true").returncode == 0
    assert _cli(root, "exec", "p1", "true").returncode == 1
    assert _cli(root, "run", "-d", "--name", "other", "--network", "none", "--rootfs",
                fresh_rootfs, "sleep", "100").returncode == 0
    r = _cli(root, "rename", "p2", "other")
    assert r.returncode == 1 and 'name "/other" is already in use' in r.stderr
    r = _cli(root, "rename", "p2", "bad name")
    assert r.returncode == 125 and "bad name" in r.stderr
    # update: the running cgroup and the spec
    r = _cli(root, "update", "--memory", "96m", "--pids-limit", "40", "--cpu-quota", "20000",
             "p2")
    assert (r.returncode, r.stdout) == (0, "p2\n"), r.stderr
    assert _cgroup_file(root, cid, "memory", "memory.limit_in_bytes") == str(96 << 20)
    assert _cgroup_file(root, cid, "pids", "pids.max") == "40"
    assert _cgroup_file(root, cid, "cpu", "cpu.cfs_quota_us") == "20000"
    spec = json.loads((Path(root) / "containers" / cid / "spec.json").read_text())
    assert (spec["memory"], spec["pids_limit"], spec["cpu_quota"]) == ("96m", 40, 20000)
    r = _cli(root, "update", "--memory", "1q", "p2")
    assert r.returncode == 125 and "'1q'" in r.stderr
    assert _cgroup_file(root, cid, "memory", "memory.limit_in_bytes") == str(96 << 20)


def test_diff_and_export(private_root: str, images: dict[str, str], tmp_path: Path) -> None:
    root = private_root
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    r = _cli(root, "run", "--name", "d1", "--network", "none", images["app"], "sh", "-c",
             "echo n > /app/new; rm /app/hello.txt; mkdir /newdir")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "diff", "d1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for want in ("C /app", "A /app/new", "D /app/hello.txt", "A /newdir"):
        assert want in lines, r.stdout
    out = tmp_path / "fs.tar"
    assert _cli(root, "export", "-o", str(out), "d1").returncode == 0
    with tarfile.open(out) as t:
        names = set(t.getnames())
    assert {"bin/busybox", "app/new", "newdir"} <= names and "app/hello.txt" not in names
    assert not any(n.startswith("/") or n.startswith("./") for n in names)
    # a running container: its filesystem, not /proc
    r = _cli(root, "run", "-d", "--name", "d2", "--network", "none", images["app"], "sleep",
             "100")
    assert r.returncode == 0, r.stderr
    exported = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "export",
                               "d2"], capture_output=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    with tarfile.open(fileobj=io.BytesIO(exported.stdout)) as t:
        names = set(t.getnames())
    assert "app/hello.txt" in names and not any(n.startswith("proc/") for n in names)


# ---------------------------------------------------------- run's new flags

def test_process_flags(private_root: str, fresh_rootfs: str) -> None:
    root = private_root
    r = _cli(root, "run", "--rm", "--rootfs", fresh_rootfs, "--ulimit", "nofile=512:1024",
             "--oom-score-adj", "300", "--sysctl", "net.ipv4.ip_forward=1", "--shm-size", "8m",
             "--group-add", "123", "--group-add", "extra", "sh", "-c",
             "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; "
             "cat /proc/sys/net/ipv4/ip_forward; df -k /dev/shm | tail -1; id -G")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["512", "1024", "300", "1"]
    assert lines[4].split()[1] == "8192"
    groups = lines[5].split()
    assert groups == ["0", "123", "2000"]  # root's, 123 and extra's
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_forward = f.read()
    r = _cli(root, "run", "--rm", "--network", "none", "--rootfs", fresh_rootfs, "--sysctl",
             f"net.ipv4.ip_forward={1 - int(host_forward)}", "true")
    assert r.returncode == 0
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_forward  # the container's namespace's, not the host's


def test_namespace_flags(private_root: str, fresh_rootfs: str) -> None:
    import socket

    root = private_root
    r = _cli(root, "run", "--rm", "--network", "none", "--rootfs", fresh_rootfs, "--uts",
             "host", "--ipc", "host", "--pid", "host", "sh", "-c",
             "hostname; readlink /proc/self/ns/ipc; ls /proc | grep -c '^[0-9]'")
    assert r.returncode == 0, r.stderr
    host, ipc, nprocs = r.stdout.split()
    assert host == socket.gethostname() and ipc == os.readlink("/proc/self/ns/ipc")
    assert int(nprocs) > 5
    assert _cli(root, "run", "-d", "--name", "ns1", "--network", "none", "--ipc", "shareable",
                "--rootfs", fresh_rootfs, "sleep", "1000").returncode == 0
    r = _cli(root, "run", "--rm", "--network", "none", "--pid", "container:ns1", "--ipc",
             "container:ns1", "--rootfs", fresh_rootfs, "sh", "-c",
             "ps -o comm | grep -c sleep; readlink /proc/self/ns/ipc")
    assert r.returncode == 0, r.stderr
    count, ipc2 = r.stdout.split()
    assert count == "1"
    r = _cli(root, "exec", "ns1", "readlink", "/proc/self/ns/ipc")
    assert r.stdout.strip() == ipc2
    r = _cli(root, "run", "--rm", "--network", "none", "--pid", "container:nosuch",
             "--rootfs", fresh_rootfs, "true")
    assert r.returncode == 125 and "nosuch" in r.stderr


def test_cidfile_pull_attach(private_root: str, fresh_rootfs: str, tmp_path: Path) -> None:
    root = private_root
    cidfile = tmp_path / "cid"
    r = _cli(root, "run", "-d", "--cidfile", str(cidfile), "--network", "none", "--rootfs",
             fresh_rootfs, "true")
    assert r.returncode == 0 and cidfile.read_text() == r.stdout.strip()
    r = _cli(root, "run", "--rm", "--cidfile", str(cidfile), "--network", "none", "--rootfs",
             fresh_rootfs, "true")
    assert r.returncode == 125 and "container ID file found" in r.stderr
    r = _cli(root, "run", "--rm", "--pull", "never", "--network", "none",
             "localhost:1/nothing/here")
    assert (r.returncode, r.stderr) == (125, "nsprim: No such image: localhost:1/nothing/here\n")
    r = _cli(root, "run", "--name", "att", "-a", "STDOUT", "--network", "none", "--rootfs",
             fresh_rootfs, "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "")
    r = _cli(root, "logs", "att")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


BAD_RUN_FLAGS_2 = [
    (["--ulimit", "nofile=2:1"], "invalid ulimit 'nofile=2:1'"),
    (["--ulimit", "bogus=1"], "invalid ulimit 'bogus=1'"),
    (["--ulimit", "nofile=x"], "invalid ulimit 'nofile=x'"),
    (["--sysctl", "kernel.hostname=x"], "sysctl 'kernel.hostname' is not allowed"),
    (["--sysctl", "novalue"], "invalid --sysctl 'novalue'"),
    (["--sysctl", "../../etc=1"], "invalid sysctl '../../etc'"),
    (["--shm-size", "0"], "invalid shm-size 0"),
    (["--shm-size", "1q"], "invalid shm-size '1q'"),
    (["--oom-score-adj", "5000"], "invalid --oom-score-adj 5000"),
    (["--oom-score-adj", "x"], "invalid oom-score-adj 'x'"),
    (["--group-add", "a:b"], "invalid --group-add 'a:b'"),
    (["--pid", "moon"], "invalid --pid 'moon'"),
    (["--ipc", "weird"], "invalid --ipc 'weird'"),
    (["--uts", "container:x"], "invalid --uts 'container:x'"),
    (["--platform", "linux/s390x" if os.uname().machine != "s390x" else "linux/amd64"],
     "invalid --platform"),
    (["--platform", "LINUX"], "invalid --platform 'LINUX'"),
    (["--memory-reservation", "1q"], "invalid memory-reservation '1q'"),
    (["-m", "10m", "--memory-reservation", "20m"], "invalid memory-reservation '20m'"),
    (["--cpu-quota", "5"], "invalid cpu-quota 5"),
    (["--cpu-period", "10"], "invalid cpu-period 10"),
    (["--cpus", "1", "--cpu-quota", "50000"], "conflicting options: --cpus and --cpu-"),
    (["--blkio-weight", "5"], "invalid blkio-weight 5"),
    (["--pull", "sometimes"], "invalid pull option: 'sometimes'"),
    (["-a", "stdweird"], 'invalid argument "stdweird" for "-a, --attach" flag'),
    (["-d", "-a", "stdout"], "conflicting options: cannot specify both --attach and"),
    (["--cidfile", "/nonexistent/dir/cid"], "invalid --cidfile '/nonexistent/dir/cid'"),
]


@pytest.mark.parametrize("flags, needle", BAD_RUN_FLAGS_2)
def test_bad_run_flags_2(private_root: str, fresh_rootfs: str, flags: list[str],
                         needle: str) -> None:
    test_bad_run_flags(private_root, fresh_rootfs, flags, needle)


# ------------------------------------------------ exec -d, logs --since/--until

def test_exec_detached_and_log_times(private_root: str, fresh_rootfs: str) -> None:
    import time

    root = private_root
    r = _cli(root, "run", "-d", "--name", "e1", "--network", "none", "--rootfs", fresh_rootfs,
             "sh", "-c", "echo early; sleep 2; echo late; sleep 1000")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "exec", "-d", "e1", "sh", "-c", "sleep 0.5; echo done > /tmp/exec-d")
    assert (r.returncode, r.stdout) == (0, "")
    deadline = time.monotonic() + 10
    while not (Path(fresh_rootfs) / "tmp" / "exec-d").exists():
        assert time.monotonic() < deadline, "exec -d did not run"
        time.sleep(0.1)
    r = _cli(root, "exec", "-d", "e1", "no-such-program")
    assert r.returncode == 127 and "no-such-program" in r.stderr
    while _cli(root, "logs", "e1").stdout != "early\nlate\n":  # late: 2 s after early
        assert time.monotonic() < deadline + 10
        time.sleep(0.2)
    from nsprim.cli.when import log_time

    stamps = [log_time(line.split()[0]) for line in
              _cli(root, "logs", "-t", "e1").stdout.splitlines()]
    assert len(stamps) == 2 and stamps[0] is not None and stamps[1] is not None
    mid = f"{(stamps[0] + stamps[1]) / 2:.3f}"
    assert _cli(root, "logs", "--since", mid, "e1").stdout == "late\n"
    assert _cli(root, "logs", "--until", mid, "e1").stdout == "early\n"
    assert _cli(root, "logs", "--since", "1h", "e1").stdout == "early\nlate\n"
    assert _cli(root, "logs", "--until", "1h", "e1").stdout == ""
    assert _cli(root, "logs", "--since", "2000-01-01T00:00:00Z", "--until",
                str(int(time.time()) + 60), "e1").stdout == "early\nlate\n"
    r = _cli(root, "logs", "--since", "yesterday", "e1")
    assert r.returncode == 125 and "'yesterday'" in r.stderr


@pytest.mark.parametrize("text, want", [
    ("2026-11-28T15:04:05Z", 1795878245.0), ("2026-11-28T15:04:05.5Z", 1795878245.5),
    ("2026-11-28T16:04:05+01:00", 1795878245.0), ("2026-11-28", 1795824000.0),
    ("1795878245", 1795878245.0), ("10m", 1000.0 - 600), ("1h30m", 1000.0 - 5400),
    ("1.5s", 998.5),
])
def test_parse_time(text: str, want: float) -> None:
    from nsprim.cli.when import parse_time

    assert parse_time(text, "since", now=1000.0) == pytest.approx(want)


from hypothesis import given as _given  # noqa: E402
from hypothesis import strategies as _st  # noqa: E402


@_given(_st.integers(0, 4_000_000_000), _st.integers(0, 999_999_999))
def test_log_time_roundtrip(secs: int, nanos: int) -> None:
    """The stamps the shim and the foreground log write read back exactly."""
    import time as _time

    from nsprim.cli.when import log_time

    stamp = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(secs)) + f".{nanos:09d}Z"
    t = log_time(stamp)
    assert t is not None and abs(t - (secs + nanos / 1e9)) < 1e-6


@_given(_st.text(max_size=20))
def test_parse_time_never_crashes(text: str) -> None:
    from nsprim.cli.when import parse_time

    try:
        parse_time(text, "since", now=0.0)
    except ValueError as e:
        assert "since" in str(e)


# ------------------------------------------- prune, df, info, version, spellings

def test_prune_df_info_version(private_root: str, fresh_rootfs: str, images: dict[str, str]
                               ) -> None:
    root = private_root
    assert _cli(root, "pull", "-q", images["base"]).returncode == 0
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    assert _cli(root, "run", "--name", "gone", "--network", "none", "-v", "/anon", "-v",
                "named:/n", "--rootfs", fresh_rootfs, "sh", "-c",
                "head -c 5000 /dev/zero > /anon/f").returncode == 0
    assert _cli(root, "run", "-d", "--name", "live", "--network", "none", images["app"],
                "sleep", "1000").returncode == 0
    # docker's management spellings
    ls = _cli(root, "container", "ls", "-a", "-q").stdout.split()
    assert len(ls) == 2 and _cli(root, "image", "ls", "-q").stdout.split()
    r = _cli(root, "system", "df", "--format", "json")
    rows = {row["Type"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert (rows["Containers"]["TotalCount"], rows["Containers"]["Active"]) == (2, 1)
    assert (rows["Images"]["TotalCount"], rows["Images"]["Active"]) == (2, 1)
    assert rows["Local Volumes"]["TotalCount"] == 2
    info = json.loads(_cli(root, "info", "--format", "json").stdout)
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"],
            info["Images"]) == (2, 1, 1, 2)
    assert info["DockerRootDir"] == root and info["NCPU"] == os.cpu_count()
    assert _cli(root, "info").stdout.startswith("Server:\n Containers: 2\n  Running: 1\n")
    v = json.loads(_cli(root, "version", "--format", "json").stdout)
    assert v["Client"]["Version"] == v["Server"]["Version"]
    # without -f: docker's question; "n" keeps everything
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "container", "prune"],
                       input="n\n", capture_output=True, text=True, timeout=60)
    assert "Are you sure you want to continue? [y/N]" in r.stdout
    assert len(_cli(root, "ps", "-a", "-q").stdout.split()) == 2
    # volumes: the stopped container still uses them
    assert "Deleted Volumes" not in _cli(root, "volume", "prune", "-f").stdout
    r = _cli(root, "container", "prune", "-f")
    assert r.stdout.startswith("Deleted Containers:\n") and "Total reclaimed space:" in r.stdout
    assert len(_cli(root, "ps", "-a", "-q").stdout.split()) == 1  # the running one stays
    r = _cli(root, "volume", "prune", "-f")  # anonymous ones only, without -a
    assert r.stdout.startswith("Deleted Volumes:\n") and "Total reclaimed space: 5kB" in \
        r.stdout
    assert _volumes(root) == ["named"]
    assert _cli(root, "volume", "prune", "-f", "-a").returncode == 0
    assert _volumes(root) == []
    # images: the running container's stays; -a removes the other (named) one
    r = _cli(root, "image", "prune", "-f")
    assert "Deleted Images" not in r.stdout
    r = _cli(root, "system", "prune", "-f", "-a")
    assert r.returncode == 0 and "Deleted Images:" in r.stdout, r.stdout
    assert len(_cli(root, "images", "-q").stdout.split()) == 1
    r = _cli(root, "system", "df", "--format", "yaml")
    assert r.returncode == 125 and "'yaml'" in r.stderr


# ----------------------------------------------------------- log rotation

@pytest.mark.parametrize("detach", [True, False])
def test_logs_rotate(private_root: str, fresh_rootfs: str, detach: bool) -> None:
    """--log-opt max-size/max-file: at most max-file files of about max-size;
    logs reads them in order (the shim for -d, the CLI in the foreground)."""
    import time

    root = private_root
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    r = _cli(root, "run", *(["-d"] if detach else []), "--name", "chat", "--network", "none",
             "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "--rootfs", fresh_rootfs,
             "sh", "-c", script + ("; sleep 1000" if detach else ""))
    assert r.returncode == 0, r.stderr
    cdir = Path(root) / "containers" / _id(root, "chat")
    deadline = time.monotonic() + 20
    while "line-299" not in _cli(root, "logs", "--tail", "1", "chat").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    files = sorted(p.name for p in cdir.glob("container.log*"))
    assert files == ["container.log", "container.log.1", "container.log.2"]
    assert all((cdir / f).stat().st_size < 2048 + 200 for f in files)
    lines = _cli(root, "logs", "chat").stdout.splitlines()
    n = int(lines[0].split("-")[1])
    assert n > 0 and lines == [f"line-{i}" for i in range(n, 300)]  # the oldest are gone
    assert _cli(root, "logs", "--tail", "2", "chat").stdout == "line-298\nline-299\n"


def test_log_cap_by_default(private_root: str, fresh_rootfs: str) -> None:
    from nsprim.spec import ContainerSpec, log_limits

    assert log_limits(ContainerSpec()) == (20 << 20, 5)


BAD_RUN_FLAGS_3 = [
    (["--log-opt", "max-size=1"], "invalid log-opt max-size '1'"),
    (["--log-opt", "max-size=big"], "'big'"),
    (["--log-opt", "max-file=0"], "invalid log-opt max-file '0'"),
    (["--log-opt", "bogus=1"], "unknown log opt 'bogus'"),
    (["--log-opt", "novalue"], "invalid --log-opt 'novalue'"),
    (["--log-opt", "compress=true"], "invalid log-opt compress='true'"),
    (["--log-driver", "syslog"], "invalid --log-driver 'syslog'"),
]


@pytest.mark.parametrize("flags, needle", BAD_RUN_FLAGS_3)
def test_bad_run_flags_3(private_root: str, fresh_rootfs: str, flags: list[str],
                         needle: str) -> None:
    test_bad_run_flags(private_root, fresh_rootfs, flags, needle)


# ------------------------------------------------------------- health checks

def _health(root: str, name: str) -> dict[str, object]:
    st = json.loads((Path(root) / "containers" / _id(root, name) / "state.json").read_text())
    h = st.get("health")
    return h if isinstance(h, dict) else {}


def _wait_health(root: str, name: str, status: str) -> dict[str, object]:
    import time

    deadline = time.monotonic() + 20
    while (h := _health(root, name)).get("Status") != status:
        assert time.monotonic() < deadline, h
        time.sleep(0.1)
    return h


def test_health_checks(private_root: str, fresh_rootfs: str) -> None:
    root = private_root
    r = _cli(root, "run", "-d", "--name", "h1", "--network", "none", "--health-cmd",
             "test -e /tmp/ok && echo fine", "--health-interval", "100ms", "--health-retries",
             "2", "--rootfs", fresh_rootfs, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    h = _wait_health(root, "h1", "unhealthy")
    assert isinstance(h["FailingStreak"], int) and h["FailingStreak"] >= 2
    assert _cli(root, "exec", "h1", "touch", "/tmp/ok").returncode == 0
    h = _wait_health(root, "h1", "healthy")
    log = h["Log"]
    assert isinstance(log, list) and 1 <= len(log) <= 5
    assert log[-1]["ExitCode"] == 0 and log[-1]["Output"] == "fine\n"
    # what docker shows of it: ps's status, inspect's State.Health, the filter
    r = _cli(root, "ps", "--format", "{{.Status}}", "--filter", "health=healthy")
    assert r.returncode == 0 and r.stdout.strip().endswith("(healthy)"), r.stdout
    assert _cli(root, "ps", "-q", "--filter", "health=unhealthy").stdout == ""
    r = _cli(root, "inspect", "-f", "{{.State.Health.Status}}", "h1")
    assert r.stdout == "healthy\n", r.stderr
    # paused: docker's state and status words
    assert _cli(root, "pause", "h1").returncode == 0
    r = _cli(root, "ps", "--format", "{{.State}} {{.Status}}")
    assert r.stdout.startswith("paused Up ") and r.stdout.rstrip().endswith("(Paused)"), r.stdout
    assert _cli(root, "inspect", "-f", "{{.State.Paused}}", "h1").stdout == "true\n"
    assert _cli(root, "unpause", "h1").returncode == 0
    # a check that takes longer than its timeout fails
    r = _cli(root, "run", "-d", "--name", "h2", "--network", "none", "--health-cmd",
             "sleep 10", "--health-interval", "100ms", "--health-timeout", "200ms",
             "--health-retries", "1", "--rootfs", fresh_rootfs, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    h = _wait_health(root, "h2", "unhealthy")
    entry = h["Log"][-1]  # type: ignore[index]
    assert entry["ExitCode"] == -1 and "exceeded timeout" in entry["Output"]
    # the monitors end with their containers
    assert _cli(root, "rm", "-f", "h1", "h2").returncode == 0
    import time

    deadline = time.monotonic() + 10
    while True:
        mine = subprocess.run(["pgrep", "-f", f"nsprim.health --root {root}"],
                              capture_output=True, text=True).stdout.split()
        if not mine:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.2)


def test_health_resolve_merges_the_image() -> None:
    from nsprim.health import resolve
    from nsprim.spec import ContainerSpec

    img = {"Healthcheck": {"Test": ["CMD", "/bin/check"], "Interval": 5_000_000_000,
                           "Retries": 7}}
    assert resolve(ContainerSpec(), img) == {"test": ["CMD", "/bin/check"], "interval": 5.0,
                                             "timeout": 30.0, "start_period": 0.0,
                                             "retries": 7}
    got = resolve(ContainerSpec(health_test=("CMD-SHELL", "true"), health_interval=1.0), img)
    assert (got["test"], got["interval"], got["retries"]) == (["CMD-SHELL", "true"], 1.0, 7)
    assert resolve(ContainerSpec(health_test=("NONE",)), img) == {}
    assert resolve(ContainerSpec(), None) == {}


BAD_RUN_FLAGS_4 = [
    (["--health-cmd", "true", "--health-interval", "5x"], "invalid --health-interval '5x'"),
    (["--health-cmd", "true", "--health-timeout=-1s"], "invalid --health-timeout '-1s'"),
    (["--health-cmd", "true", "--health-start-period", "soon"],
     "invalid --health-start-period 'soon'"),
    (["--health-cmd", "true", "--health-retries", "-1"], "invalid --health-retries -1"),
    (["--health-cmd", "true", "--no-healthcheck"], "--no-healthcheck and --health-cmd"),
]


@pytest.mark.parametrize("flags, needle", BAD_RUN_FLAGS_4)
def test_bad_run_flags_4(private_root: str, fresh_rootfs: str, flags: list[str],
                         needle: str) -> None:
    test_bad_run_flags(private_root, fresh_rootfs, flags, needle)


# ------------------------------------------------------------------- commit

def test_commit(private_root: str, images: dict[str, str]) -> None:
    root = private_root
    assert _cli(root, "pull", "-q", images["app"]).returncode == 0
    r = _cli(root, "run", "--name", "c1", "--network", "none", images["app"], "sh", "-c",
             "echo new > /app/new.txt; rm /app/hello.txt; mkdir -p /d; echo x > /d/x")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "commit", "-m", "my change", "-a", "me", "c1", "localhost/committed:v1")
    assert r.returncode == 0, r.stderr
    new_id = r.stdout.strip()
    assert new_id.startswith("sha256:")
    # the new image: the change applied (a file added, one deleted), the image's CMD kept
    r = _cli(root, "run", "--rm", "--network", "none", "localhost/committed:v1", "sh", "-c",
             "cat /app/new.txt /d/x; test -e /app/hello.txt && echo still || echo gone")
    assert (r.returncode, r.stdout) == (0, "new\nx\ngone\n"), r.stderr
    from nsprim.images.store import ImageStore

    img = ImageStore(str(Path(root) / "images")).get("localhost/committed:v1")
    assert img.id == new_id and img.config["author"] == "me"
    assert img.config["history"][-1]["comment"] == "my change"
    assert len(img.diff_ids) == len(ImageStore(str(Path(root) / "images")).get(
        images["app"]).diff_ids) + 1
    # a running one (paused while its layer is read), without a name
    assert _cli(root, "run", "-d", "--name", "c2", "--network", "none", images["app"],
                "sh", "-c", "echo run > /run.txt; sleep 1000").returncode == 0
    import time

    time.sleep(0.5)
    r = _cli(root, "commit", "c2")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "run", "--rm", "--network", "none", r.stdout.strip(), "cat", "/run.txt")
    assert r.stdout == "run\n", r.stderr
    r = _cli(root, "commit", "c2", "Bad:Name")
    assert r.returncode == 125 and "Bad:Name" in r.stderr
    r = _cli(root, "commit", "nosuch")
    assert (r.returncode, r.stderr) == (1, "Error response from daemon: No such container: "
                                           "nosuch\n")


# ------------------------------------------------------------------- events

def test_events(private_root: str, fresh_rootfs: str) -> None:
    import time

    root = private_root
    t0 = f"{time.time():.3f}"
    follow = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", root, "events",
                               "--since", t0, "--filter", "container=ev"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert _cli(root, "run", "-d", "--name", "ev", "--network", "none", "--rootfs",
                    fresh_rootfs, "sleep", "1000").returncode == 0
        assert _cli(root, "pause", "ev").returncode == 0
        assert _cli(root, "unpause", "ev").returncode == 0
        assert _cli(root, "rm", "-f", "ev").returncode == 0
        assert _cli(root, "run", "--name", "other", "--network", "none", "--rootfs",
                    fresh_rootfs, "true").returncode == 0
        t1 = f"{time.time():.3f}"
        r = _cli(root, "events", "--since", t0, "--until", t1, "--format", "json")
        evs = [json.loads(x) for x in r.stdout.splitlines()]
        mine = [e["Action"] for e in evs if e["Actor"]["Attributes"]["name"] == "ev"]
        assert mine == ["create", "start", "pause", "unpause", "die", "destroy"], mine
        die = next(e for e in evs if e["Action"] == "die" and
                   e["Actor"]["Attributes"]["name"] == "ev")
        assert die["Actor"]["Attributes"]["exitCode"] == "137"
        assert [e["Action"] for e in evs if e["Actor"]["Attributes"]["name"] == "other"] \
            == ["create", "start", "die"]
        r = _cli(root, "events", "--since", t0, "--until", t1, "--filter", "event=start")
        lines = r.stdout.splitlines()
        assert len(lines) == 2 and all(" container start " in x for x in lines)
        assert "name=ev" in lines[0] and lines[0].split()[0].endswith("Z")
        # the follower saw ev's events as they came, and not other's
        seen: list[str] = []
        deadline = time.monotonic() + 10
        assert follow.stdout is not None
        while len(seen) < 6 and time.monotonic() < deadline:
            got = follow.stdout.readline().split()
            if not got:
                break  # it ended: the assertion below says what it saw
            seen.append(got[2])
        assert seen == ["create", "start", "pause", "unpause", "die", "destroy"]
    finally:
        follow.kill()
        follow.wait()
    r = _cli(root, "events", "--filter", "bogus=1")
    assert r.returncode == 125 and "'bogus=1'" in r.stderr
    r = _cli(root, "events", "--since", "later")
    assert r.returncode == 125 and "'later'" in r.stderr
