"""nsprim.archive: docker's archive format out of a root, and tar streams
into one (the library behind ``nsprim cp`` and the API's /archive)."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.archive import (
    ArchiveError,
    PathStat,
    extract_archive,
    go_mode,
    host_root,
    stat_path,
    write_archive,
)
from nsprim.archive import (
    _member_path as member_path,
)
from nsprim.cli.cp import _placement as placement
from nsprim.cli.cp import _split as split


def _tree(base: Path) -> Path:
    r = base / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "d" / "sub").mkdir(parents=True)
    (r / "d" / "f").write_text("hello\n")
    (r / "d" / "sub" / "g").write_text("x" * 70000)
    os.link(r / "d" / "f", r / "d" / "hard")
    os.symlink("/etc", r / "d" / "abs")
    os.symlink("../etc/passwd", r / "d" / "rel")
    os.mkfifo(r / "d" / "fifo")
    return r


def _tar(files: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in files:
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
           ) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, mode
    return ti


def test_write_archive_docker_format(tmp_path: Path) -> None:
    r = _tree(tmp_path)
    out = io.BytesIO()
    with host_root(str(r)) as root:
        st_ = write_archive(root, "/d", out)
    assert st_.name == "d" and st_.is_dir
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        members = {m.name: m for m in t.getmembers()}
        assert sorted(members) == ["d", "d/abs", "d/f", "d/fifo", "d/hard", "d/rel", "d/sub",
                                   "d/sub/g"]
        assert members["d/abs"].issym() and members["d/abs"].linkname == "/etc"
        hard = members["d/hard"] if members["d/hard"].islnk() else members["d/f"]
        assert hard.islnk() and hard.linkname in ("d/f", "d/hard")
        assert members["d/fifo"].isfifo()
        g = t.extractfile("d/sub/g")
        assert g is not None and g.read() == b"x" * 70000


def test_write_archive_follow_link_stays_in_root(tmp_path: Path) -> None:
    r = _tree(tmp_path)
    out = io.BytesIO()
    with host_root(str(r)) as root:
        write_archive(root, "/d/rel", out, follow_link=True)
        with pytest.raises(FileNotFoundError):
            write_archive(root, "/nope", io.BytesIO())
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        (m,) = t.getmembers()
        f = t.extractfile(m)
        assert m.name == "rel" and f is not None and f.read().startswith(b"root:x")


def test_stat_path_is_dockers_header(tmp_path: Path) -> None:
    r = _tree(tmp_path)
    with host_root(str(r)) as root:
        link = stat_path(root, "/d/rel")
        d = stat_path(root, "/d")
        f = stat_path(root, "d/f")
    assert link.link_target == "/etc/passwd" and link.mode & (1 << 27)
    assert d.mode == (1 << 31) | 0o755 and d.is_dir
    assert f.size == 6 and f.mode == 0o644 and not f.is_dir
    decoded = json.loads(base64.b64decode(f.header()))
    assert set(decoded) == {"name", "size", "mode", "mtime", "linkTarget"}
    assert decoded["name"] == "f" and decoded["mtime"].endswith("Z")


@given(st.integers(0, 0o7777), st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK,
                                                  stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK,
                                                  stat.S_IFSOCK]))
def test_go_mode_keeps_permissions_and_type(perm: int, fmt: int) -> None:
    m = go_mode(fmt | perm)
    assert m & 0o777 == perm & 0o777
    assert bool(m & (1 << 23)) == bool(perm & stat.S_ISUID)
    assert bool(m & (1 << 31)) == (fmt == stat.S_IFDIR)
    assert bool(m & (1 << 27)) == (fmt == stat.S_IFLNK)
    assert PathStat("x", 0, m, 0.0, "").is_dir == (fmt == stat.S_IFDIR)


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.d", "..."]), max_size=6))
def test_member_path_never_climbs(parts: list[str]) -> None:
    name = "/".join(parts)
    try:
        rel = member_path(name, None)
    except ArchiveError:
        assert ".." in parts
        return
    assert rel is not None and ".." not in rel.split("/") and not rel.startswith("/")


def test_extract_archive_roundtrip_and_owners(tmp_path: Path) -> None:
    r = _tree(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    out = io.BytesIO()
    with host_root(str(r)) as root:
        write_archive(root, "/d", out)
    out.seek(0)
    with host_root(str(dest)) as root:
        n = extract_archive(root, "/", out)
    assert n == 8
    assert (dest / "d" / "f").read_text() == "hello\n"
    assert os.readlink(dest / "d" / "abs") == "/etc"
    assert os.stat(dest / "d" / "f").st_ino == os.stat(dest / "d" / "hard").st_ino
    assert stat.S_ISFIFO(os.lstat(dest / "d" / "fifo").st_mode)


def test_extract_strips_setuid_on_the_host_unless_kept(tmp_path: Path) -> None:
    data = _tar([(_entry("suid", mode=0o4755), b"#!/bin/sh\n")])
    for preserve, want in ((False, 0o755), (True, 0o4755)):
        dest = tmp_path / f"d{preserve}"
        dest.mkdir()
        with host_root(str(dest)) as root:
            extract_archive(root, "/", io.BytesIO(data), preserve_owner=preserve)
        assert stat.S_IMODE(os.stat(dest / "suid").st_mode) == want


@pytest.mark.parametrize("members", [
    [(_entry("../escape"), b"x")],
    [(_entry("a/../../escape"), b"x")],
    [(_entry("h", tarfile.LNKTYPE, "../outside"), None)],
])
def test_extract_refuses_dotdot(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
                                ) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "outside").write_text("secret")
    with host_root(str(dest)) as root, pytest.raises(ArchiveError, match=r"'\.\.'"):
        extract_archive(root, "/", io.BytesIO(_tar(members)))
    assert not (tmp_path / "escape").exists()
    assert os.stat(tmp_path / "outside").st_nlink == 1
    assert os.listdir(dest) == []


@pytest.mark.parametrize("kind", ["abs-link", "dotdot-link", "hardlink"])
def test_extract_symlinks_resolve_inside_the_root(tmp_path: Path, kind: str) -> None:
    """An archive's symlink to a host path, then a member through it: the
    write lands under the root or fails, never in the host directory."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("s")
    dest = tmp_path / "dest"
    dest.mkdir()
    table: dict[str, list[tuple[tarfile.TarInfo, bytes | None]]] = {
        "abs-link": [(_entry("l", tarfile.SYMTYPE, str(host)), None),
                     (_entry("l/pwned"), b"x")],
        "dotdot-link": [(_entry("up", tarfile.SYMTYPE, "../../../../../.."), None),
                        (_entry(f"up{host}/pwned"), b"x")],
        "hardlink": [(_entry("h", tarfile.LNKTYPE, f"{host}/secret"), None)],
    }
    members = table[kind]
    with host_root(str(dest)) as root:
        try:
            extract_archive(root, "/", io.BytesIO(_tar(members)))
        except FileNotFoundError:
            assert kind != "dotdot-link"
        else:
            assert kind == "dotdot-link"
            assert (dest / str(host).lstrip("/") / "pwned").read_text() == "x"
    assert os.listdir(host) == ["secret"] and os.stat(host / "secret").st_nlink == 1


def test_extract_skips_devices_and_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    dev = _entry("null", tarfile.CHRTYPE, mode=0o666)
    dev.devmajor, dev.devminor = 1, 3
    dest = tmp_path / "dest"
    dest.mkdir()
    with host_root(str(dest)) as root:
        assert extract_archive(root, "/", io.BytesIO(_tar([(dev, None)]))) == 0
        assert not (dest / "null").exists()
        monkeypatch.setenv("NSPRIM_CP_MAX_FILES", "2")
        many = _tar([(_entry(f"f{i}"), b"") for i in range(5)])
        with pytest.raises(ArchiveError, match="more than 2"):
            extract_archive(root, "/", io.BytesIO(many))
        monkeypatch.setenv("NSPRIM_CP_MAX_FILES", "100")
        monkeypatch.setenv("NSPRIM_CP_MAX_SIZE", "1k")
        with pytest.raises(ArchiveError, match="larger than 1024"):
            extract_archive(root, "/", io.BytesIO(_tar([(_entry("big"), b"y" * 4096)])))


def test_extract_dir_and_file_conflicts(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "f").write_text("old")
    with host_root(str(dest)) as root:
        with pytest.raises(ArchiveError, match="cannot overwrite directory"):
            extract_archive(root, "/", io.BytesIO(_tar([(_entry("d"), b"x")])))
        with pytest.raises(ArchiveError, match="cannot overwrite non-directory"):
            extract_archive(root, "/", io.BytesIO(_tar([(_entry("f", tarfile.DIRTYPE,
                                                                 mode=0o755), None)])))
        extract_archive(root, "/", io.BytesIO(_tar([(_entry("f"), b"new")])))
    assert (dest / "f").read_text() == "new"


def test_extract_refuses_hostile_headers(tmp_path: Path) -> None:
    """The header checks of image layers apply (a huge PAX header)."""
    ti = _entry("x")
    ti.pax_headers = {"comment": "1" * 100}
    dest = tmp_path / "dest"
    dest.mkdir()
    with host_root(str(dest)) as root, pytest.raises(ArchiveError, match="digits"):
        extract_archive(root, "/", io.BytesIO(_tar([(ti, b"")])))


@pytest.mark.parametrize("arg, want", [
    ("c1:/tmp/x", ("c1", "/tmp/x")), ("c1:", ("c1", "/")), ("/abs:x", (None, "/abs:x")),
    ("./rel:x", (None, "./rel:x")), ("-", (None, "-")), ("plain", (None, "plain")),
])
def test_split(arg: str, want: tuple[str | None, str]) -> None:
    assert split(arg) == want


@pytest.mark.parametrize("src, src_dir, dst, dst_dir, exists, want", [
    ("/a/f", False, "/d", True, True, ("/d", "f", "")),           # into a directory
    ("/a/f", False, "/d/g", False, True, ("/d", "g", "")),        # replaces a file
    ("/a/f", False, "/d/new", False, False, ("/d", "new", "")),   # a new name
    ("/a/f", False, "/d/new/", False, False, ("", "", 'destination directory "/d/new/" '
                                                       "must exist")),
    ("/a/s", True, "/d", True, True, ("/d", "s", "")),             # dir into dir
    ("/a/s/.", True, "/d", True, True, ("/d", ".", "")),           # its contents
    ("/a/s", True, "/d/new", False, False, ("/d", "new", "")),     # becomes DEST
    ("/a/s", True, "/d/g", False, True, ("", "", "cannot copy a directory to a file: /d/g")),
])
def test_placement_is_dockers(src: str, src_dir: bool, dst: str, dst_dir: bool, exists: bool,
                              want: tuple[str, str, str]) -> None:
    assert placement(src, src_dir, dst, dst_dir, exists, lambda p: p == "/d") == want
