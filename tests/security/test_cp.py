"""``nsprim cp`` against a hostile container: symlinks in the container that
point at host paths, ``..`` and links in archives, a container that swaps a
directory for a symlink while the copy runs.  Nothing outside the
container's root is read or written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ..conftest import cli_at

SECRET = "host-secret-7f3a"


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hostdir"
    d.mkdir()
    (d / "secret").write_text(SECRET + "\n")
    return d


@pytest.fixture
def box(private_root: str, fresh_rootfs: str) -> str:
    r = cli_at(private_root, "run", "-d", "--name", "box", "--network", "none", "--rootfs",
               fresh_rootfs, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    return private_root


def _sh(root: str, script: str) -> None:
    r = cli_at(root, "exec", "box", "sh", "-c", script)
    assert r.returncode == 0, r.stderr


def _reads_stay_inside(root: str, where: str, host_dir: Path, out: Path) -> None:
    """`where` holds links ``abs`` (to the host's secret), ``absdir`` (to
    its directory) and ``up`` (``..`` many times): cp -L through each, and
    a tar of ``up/HOST_DIR``, find nothing (resolved in the container)."""
    for src in (f"{where}/abs", f"{where}/absdir/secret", f"{where}/up{host_dir}/secret"):
        r = cli_at(root, "cp", "-L", src, str(out / "b"))
        assert r.returncode == 1 and "Could not find the file" in r.stderr, (src, r.stderr)
        assert not (out / "b").exists()
    r = cli_at(root, "cp", f"{where}/up{host_dir}", "-")
    assert r.returncode == 1 and SECRET not in r.stdout


def _host_unchanged(host_dir: Path) -> None:
    assert sorted(os.listdir(host_dir)) == ["secret"]
    assert (host_dir / "secret").read_text() == SECRET + "\n"
    assert os.stat(host_dir / "secret").st_nlink == 1


def test_symlink_to_host_path_is_not_followed_out(box: str, host_dir: Path,
                                                  tmp_path: Path) -> None:
    _sh(box, f"ln -s {host_dir}/secret /tmp/abs; ln -s {host_dir} /tmp/absdir; "
             "ln -s ../../../../../../../../.. /tmp/up")
    out = tmp_path / "out"
    out.mkdir()
    # without -L: the link itself
    assert cli_at(box, "cp", "box:/tmp/abs", str(out / "a")).returncode == 0
    assert os.readlink(out / "a") == f"{host_dir}/secret"
    # with -L, through a directory link, through ..: resolved in the container
    _reads_stay_inside(box, "box:/tmp", host_dir, out)
    _host_unchanged(host_dir)


def test_writes_through_container_symlinks_stay_inside(box: str, host_dir: Path,
                                                       fresh_rootfs: str,
                                                       tmp_path: Path) -> None:
    _sh(box, f"ln -s {host_dir} /tmp/absdir; ln -s ../../../../../../.. /tmp/up; "
             f"ln -s {host_dir}/secret /tmp/abs")
    src = tmp_path / "payload"
    src.write_text("pwned\n")
    for dest in ("box:/tmp/absdir/", "box:/tmp/abs", f"box:/tmp/up{host_dir}/"):
        cli_at(box, "cp", str(src), dest)  # fails or lands inside: never outside
    _host_unchanged(host_dir)
    inside = Path(fresh_rootfs) / str(host_dir).lstrip("/")
    assert not inside.exists() or sorted(os.listdir(inside)) in ([], ["payload"],
                                                                  ["payload", "secret"])


def _tar(members: list[tuple[str, bytes, str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, kind, link, data in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, link
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.mark.parametrize("members, refused", [
    ([("../../../../../../../../..{h}/dotdot", tarfile.REGTYPE, "", b"x")], True),
    ([("{h}/abs", tarfile.REGTYPE, "", b"x")], False),
    ([("l", tarfile.SYMTYPE, "{h}", None), ("l/via-link", tarfile.REGTYPE, "", b"x")], None),
    ([("u", tarfile.SYMTYPE, "../../../../../../..", None),
      ("u{h}/via-dotdot", tarfile.REGTYPE, "", b"x")], False),
    ([("hl", tarfile.LNKTYPE, "{h}/secret", None)], False),
    ([("hl", tarfile.LNKTYPE, "../../../../../../..{h}/secret", None)], True),
])
def test_hostile_archive_on_stdin(box: str, host_dir: Path, fresh_rootfs: str,
                                  members: list[tuple[str, bytes, str, bytes | None]],
                                  refused: bool | None) -> None:
    """`..` in a member name or a hardlink is refused; absolute names and
    symlinks (whatever their target) resolve inside the container."""
    h = str(host_dir)
    data = _tar([(n.format(h=h), k, link.format(h=h), d) for n, k, link, d in members])
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", box, "cp", "-",
                        "box:/tmp"], input=data, capture_output=True, timeout=60)
    if refused:
        assert r.returncode == 1 and b"'..' is not allowed" in r.stderr, r.stderr
    elif refused is None or members[0][1] == tarfile.LNKTYPE:
        # the link's target (the parent of the next member) is looked up in
        # the container, where it is not
        assert r.returncode == 1 and b"No such file" in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
        written = [n.format(h=h).split("/")[-1] for n, _, _, d in members if d is not None]
        inside = Path(fresh_rootfs) / "tmp" / h.lstrip("/") / written[0]
        if members[0][1] == tarfile.SYMTYPE:  # u -> ../..: the container's root
            inside = Path(fresh_rootfs) / h.lstrip("/") / written[0]
        assert inside.read_bytes() == b"x"
    _host_unchanged(host_dir)
    assert not (host_dir.parent / "dotdot").exists()


def test_container_swapping_a_directory_for_a_symlink(box: str, host_dir: Path,
                                                      tmp_path: Path) -> None:
    """The container flips /tmp/race/d between a directory and a symlink to
    the host directory while files are copied out of and into it."""
    _sh(box, "mkdir -p /tmp/race")
    flip = subprocess.Popen(
        [sys.executable, "-m", "nsprim", "--root", box, "exec", "box", "sh", "-c",
         f"while :; do rm -rf /tmp/race/d; mkdir /tmp/race/d; echo in > /tmp/race/d/f; "
         f"rm -rf /tmp/race/d; ln -s {host_dir} /tmp/race/d; done"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    payload = tmp_path / "payload"
    payload.write_text("pwned\n")
    try:
        for i in range(15):
            r = subprocess.run([sys.executable, "-m", "nsprim", "--root", box, "cp",
                                "box:/tmp/race", "-"], capture_output=True, timeout=60)
            assert SECRET.encode() not in r.stdout
            if r.returncode == 0:
                with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
                    for m in t.getmembers():
                        f = t.extractfile(m) if m.isreg() else None
                        assert f is None or SECRET.encode() not in f.read()
            r = subprocess.run([sys.executable, "-m", "nsprim", "--root", box, "cp", "-L",
                                "box:/tmp/race/d/secret", str(tmp_path / f"o{i}")],
                               capture_output=True, timeout=60)
            assert r.returncode == 1 or SECRET not in (tmp_path / f"o{i}").read_text()
            subprocess.run([sys.executable, "-m", "nsprim", "--root", box, "cp",
                            str(payload), "box:/tmp/race/d/"], capture_output=True, timeout=60)
    finally:
        flip.kill()
        flip.wait()
    _host_unchanged(host_dir)


def test_setuid_and_devices_do_not_reach_the_host(box: str, tmp_path: Path) -> None:
    _sh(box, "cp /bin/busybox /tmp/suid; chmod 4755 /tmp/suid; mknod /tmp/mem c 1 1")
    out = tmp_path / "out"
    out.mkdir()
    assert cli_at(box, "cp", "box:/tmp/suid", str(out)).returncode == 0
    assert os.stat(out / "suid").st_mode & 0o7777 == 0o755
    r = cli_at(box, "cp", "box:/tmp/mem", str(out))
    assert r.returncode == 0 and not os.path.lexists(out / "mem")


# ------------------------------------------- a stopped container's volumes

def _mounted_on_host(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(str(path)) for line in f)


def test_stopped_container_volume_symlinks_stay_inside(private_root: str, fresh_rootfs: str,
                                                       host_dir: Path, tmp_path: Path) -> None:
    """A volume holding symlinks that point at host paths (absolute, ``..``)
    and at the host directory: reading and writing through them, with the
    container stopped (its volume mounted for the copy), stays inside its
    root."""
    root = private_root
    r = cli_at(root, "run", "--name", "vbox", "--network", "none", "-v", "evil:/data",
               "--rootfs", fresh_rootfs, "sh", "-c",
               f"ln -s {host_dir}/secret /data/abs; ln -s {host_dir} /data/absdir; "
               "ln -s ../../../../../../../../.. /data/up; echo in-vol > /data/own")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    assert cli_at(root, "cp", "vbox:/data/own", str(out / "own")).returncode == 0
    assert (out / "own").read_text() == "in-vol\n"  # the volume is seen
    _reads_stay_inside(root, "vbox:/data", host_dir, out)
    payload = tmp_path / "payload"
    payload.write_text("pwned\n")
    for dest in ("vbox:/data/absdir/", "vbox:/data/abs", f"vbox:/data/up{host_dir}/"):
        cli_at(root, "cp", str(payload), dest)  # fails or lands inside: never outside
    # a tar on stdin whose members climb out of the volume
    evil = _tar([(f"../../../../../../../../..{host_dir}/x", b"x", "file", None)])
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "cp", "-",
                        "vbox:/data"], input=evil, capture_output=True, timeout=60)
    assert r.returncode != 0
    _host_unchanged(host_dir)
    assert not _mounted_on_host(tmp_path)


def test_mount_target_symlinked_out_by_another_container(private_root: str, fresh_rootfs: str,
                                                         host_dir: Path,
                                                         tmp_path: Path) -> None:
    """A shared volume where another container planted symlinks at the place
    a bind of a stopped container goes (``/data/nested``): the bind is
    mounted (if at all) inside the container's root, never on the host path
    the symlink names."""
    root = private_root
    r = cli_at(root, "run", "--rm", "--network", "none", "-v", "shared:/s", "--rootfs",
               fresh_rootfs, "sh", "-c", f"ln -s {host_dir} /s/nested; "
               "ln -s ../../../../../../../../../.. /s/up")
    assert r.returncode == 0, r.stderr
    src = tmp_path / "bindsrc"
    src.mkdir()
    (src / "inbind").write_text("bound\n")
    r = cli_at(root, "create", "--name", "victim", "--network", "none", "-v", "shared:/data",
               "-v", f"{src}:/data/nested", "-v", f"{src}:/data/up{host_dir}",
               "--rootfs", fresh_rootfs, "true")
    assert r.returncode == 0, r.stderr
    payload = tmp_path / "payload"
    payload.write_text("pwned\n")
    for dest in ("victim:/data/nested/", f"victim:/data/up{host_dir}/", "victim:/data/nested"):
        cli_at(root, "cp", str(payload), dest)
    r = cli_at(root, "cp", "victim:/data/nested/secret", "-")
    assert SECRET not in r.stdout
    _host_unchanged(host_dir)
    assert sorted(os.listdir(src)) in (["inbind"], ["inbind", "payload"])
    assert not _mounted_on_host(tmp_path)
