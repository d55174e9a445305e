"""nsprim-runtime's paths tried the way an attacker would: config.json and
the rootfs come from an image or a client, so a mount destination, a working
directory or a root path that points out of the rootfs must stay inside it,
hooks run on the host's files (never the container's), and what the
container gets is what every nsprim container gets (fds, /proc/self/exe)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..test_oci_runtime import RUNTIME, Runtime, make_bundle, runtime_at, write_config


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    yield from runtime_at(tmp_path)


def _climb(target: Path) -> str:
    """A relative link that climbs far above any root, then goes to `target`."""
    return "../" * 30 + str(target).lstrip("/")


def test_mount_destination_symlink_stays_in_rootfs(rt: Runtime, fresh_rootfs: str,
                                                   tmp_path: Path) -> None:
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    (host_dir / "keep").write_text("host file\n")
    root = Path(fresh_rootfs)
    os.symlink(str(host_dir), root / "abs-escape")  # absolute: the host's path
    os.symlink(_climb(host_dir), root / "rel-escape")  # relative climb
    b = tmp_path / "b"
    c = make_bundle(b, fresh_rootfs, ["sh", "-c", "ls /abs-escape /rel-escape; "
                                      "echo x > /abs-escape/pwned; echo y > /rel-escape/pwned2"])
    c["root"]["readonly"] = False
    c["mounts"] += [{"destination": "/abs-escape", "type": "tmpfs", "source": "tmpfs",
                     "options": ["size=1m"]},
                    {"destination": "/rel-escape", "type": "tmpfs", "source": "tmpfs",
                     "options": ["size=1m"]}]
    write_config(b, c)
    # the link targets do not exist inside the root: refused, never followed out
    r = rt("run", "--bundle", str(b), "c1")
    assert r.returncode == 1 and "resolving /abs-escape in the root" in r.stderr, r.stderr
    assert sorted(os.listdir(host_dir)) == ["keep"]
    assert rt("list", "-q").stdout == ""
    # they exist inside the root: the mounts land there
    inside = root / str(host_dir).lstrip("/")
    inside.mkdir(parents=True)
    r = rt("run", "--bundle", str(b), "c1")
    assert r.returncode == 0, r.stderr
    assert "keep" not in r.stdout  # the mounts hid nothing of the host's
    assert sorted(os.listdir(host_dir)) == ["keep"]
    assert os.listdir(inside) == []  # written to the tmpfs on it, gone with it


def test_bind_destination_symlink_cannot_cover_host_files(rt: Runtime, fresh_rootfs: str,
                                                          tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("s3cret\n")
    src = tmp_path / "src"
    src.mkdir()
    root = Path(fresh_rootfs)
    os.symlink(_climb(victim), root / "dst")
    b = tmp_path / "b"
    c = make_bundle(b, fresh_rootfs, ["sh", "-c", "cat /dst/secret 2>&1; "
                                      f"cat {victim}/secret 2>&1; echo done"])
    c["root"]["readonly"] = False
    c["mounts"].append({"destination": "/dst", "type": "bind", "source": str(src),
                        "options": ["rbind", "ro"]})
    write_config(b, c)
    r = rt("run", "--bundle", str(b), "c1")
    assert r.returncode == 1 and "resolving /dst in the root" in r.stderr, r.stderr
    (root / str(victim).lstrip("/")).mkdir(parents=True)
    r = rt("run", "--bundle", str(b), "c1")
    assert "s3cret" not in r.stdout and r.stdout.strip().endswith("done"), r.stderr
    assert (victim / "secret").read_text() == "s3cret\n"


def test_cwd_symlink_out_of_rootfs(rt: Runtime, fresh_rootfs: str, tmp_path: Path) -> None:
    host_only = tmp_path / "host-only"
    host_only.mkdir()
    (host_only / "HOST-MARKER").write_text("x")
    root = Path(fresh_rootfs)
    os.symlink(str(host_only), root / "abs-cwd")
    os.symlink(_climb(host_only), root / "rel-cwd")
    for link in ("/abs-cwd", "/rel-cwd", "/proc/self/cwd", "/proc/1/root/../../.."):
        b = tmp_path / ("b" + link.replace("/", "_"))
        c = make_bundle(b, fresh_rootfs, ["sh", "-c", "pwd; ls"])
        c["process"]["cwd"] = link
        write_config(b, c)
        r = rt("run", "--bundle", str(b), "c1")
        assert "HOST-MARKER" not in r.stdout, (link, r.stdout)
        assert rt("list", "-q").stdout == ""


def test_exec_process_cwd_symlink_out_of_rootfs(rt: Runtime, fresh_rootfs: str,
                                                tmp_path: Path) -> None:
    host_only = tmp_path / "host-only"
    host_only.mkdir()
    (host_only / "HOST-MARKER").write_text("x")
    os.symlink(_climb(host_only), Path(fresh_rootfs) / "rel-cwd")
    b = tmp_path / "b"
    make_bundle(b, fresh_rootfs, ["sleep", "100"])
    rt("create", "--bundle", str(b), "c1", check=True)
    rt("start", "c1", check=True)
    proc = {"args": ["sh", "-c", "ls"], "cwd": "/rel-cwd", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = rt("exec", "--process", str(tmp_path / "p.json"), "c1")
    assert "HOST-MARKER" not in r.stdout
    r = rt("exec", "--cwd", str(host_only), "c1", "ls")
    assert "HOST-MARKER" not in r.stdout


def test_root_path_escaping_the_bundle_refused(rt: Runtime, fresh_rootfs: str,
                                               tmp_path: Path) -> None:
    b = tmp_path / "b"
    c = make_bundle(b, fresh_rootfs, ["true"])
    for bad in ("../rootfs", "rootfs/../../..", "./../x"):
        c["root"]["path"] = bad
        write_config(b, c)
        r = rt("create", "--bundle", str(b), "c1")
        assert r.returncode == 1 and "root.path" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(rt.root, "c1"))


def test_hooks_run_the_hosts_file_not_the_containers(rt: Runtime, fresh_rootfs: str,
                                                     tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\nreadlink /proc/self/ns/mnt > {marker}\n")
    hook.chmod(0o755)
    # the container's own file at the same path: must never be what runs
    fake = Path(fresh_rootfs) / str(hook).lstrip("/")
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f"#!/bin/sh\necho inside > {marker}.inside\n")
    fake.chmod(0o755)
    b = tmp_path / "b"
    c = make_bundle(b, fresh_rootfs, ["true"])
    c["hooks"] = {"createContainer": [{"path": str(hook)}],
                  "startContainer": [{"path": str(hook)}]}
    write_config(b, c)
    r = rt("run", "--bundle", str(b), "c1")
    assert r.returncode == 0, r.stderr
    assert marker.read_text().strip() == os.readlink("/proc/self/ns/mnt")
    assert not Path(str(marker) + ".inside").exists()
    assert not (Path(fresh_rootfs) / str(marker).lstrip("/")).exists()


def test_no_fd_of_the_runtime_reaches_the_container(rt: Runtime, rootfs: str,
                                                    tmp_path: Path) -> None:
    """The runc CVE-2024-21626 class: an fd the caller (or the runtime) has
    open is not in the container, and /proc/self/exe is no host binary."""
    b = tmp_path / "b"
    make_bundle(b, rootfs, ["sh", "-c", "ls /proc/self/fd; readlink /proc/1/exe; "
                            "ls -l /proc/self/fd/ | grep -c exec.fifo"])
    leak = os.open(str(tmp_path), os.O_RDONLY)  # inheritable: the runtime gets it
    try:
        r = subprocess.run([RUNTIME, "--root", rt.root, "run", "--bundle", str(b), "c1"],
                           capture_output=True, text=True, timeout=60, pass_fds=(leak,))
    finally:
        os.close(leak)
    lines = r.stdout.split()
    assert lines[:4] == ["0", "1", "2", "3"] and len(lines) == 6, r.stdout + r.stderr
    assert lines[4] not in (os.path.realpath(sys.executable), RUNTIME)
    assert lines[5] == "0"


def test_config_json_is_bounded_and_not_followed_to_a_device(rt: Runtime, rootfs: str,
                                                             tmp_path: Path) -> None:
    b = tmp_path / "b"
    b.mkdir()
    os.symlink("/dev/zero", b / "config.json")  # would never end
    r = rt("create", "--bundle", str(b), "c1", timeout=30)
    assert r.returncode == 1 and "not a regular file" in r.stderr
    os.unlink(b / "config.json")
    (b / "config.json").write_text('{"a": ' * 100000 + "1" + "}" * 100000)
    r = rt("create", "--bundle", str(b), "c1", timeout=30)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "config.json" in r.stderr
    assert rt("list", "-q").stdout == ""
