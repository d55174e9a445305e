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
