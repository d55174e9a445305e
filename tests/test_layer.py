"""Layer extraction and reference parsing: pure-ish logic, real files.
Hostile archives must not touch anything outside the layer directory."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsprim import ConfigError
from nsprim.images.layer import LayerError, clean_name, extract_layer, open_layer_stream
from nsprim.images.reference import parse_reference


def make_tar(entries: list[tuple[str, str, str | None]]) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "f":
                data = (extra or "").encode()
                ti.size = len(data)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(data))
                continue
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra or ""
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra or ""
            t.addfile(ti)
    return b.getvalue()


def extract(data: bytes, dest: Path) -> str:
    stream, _ = open_layer_stream(io.BytesIO(data))
    digest, _ = extract_layer(stream, str(dest))
    return digest


def snapshot(path: Path) -> set[str]:
    return {str(p) for p in path.rglob("*")}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    layer, outside = tmp_path / "layer", tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("intact")
    return layer, outside


def test_hostile_archive_is_confined(dirs: tuple[Path, Path]) -> None:
    layer, outside = dirs
    out = str(outside).lstrip("/")
    before = snapshot(outside)
    data = make_tar([
        ("f", f"../../../../../../{out}/dotdot", "x"),
        ("f", f"/{out}/absolute", "x"),
        ("l", "escape", str(outside)),
        ("f", "escape/through-symlink", "x"),
        ("f", "escape/victim", "overwritten?"),
        ("l", "up", "../../../../../../.."),
        ("f", f"up/{out}/through-dotdot-link", "x"),
        ("h", "hardlink", f"/{out}/victim"),
        ("h", "hardlink2", f"../../../../{out}/victim"),
    ])
    try:
        extract(data, layer)
    except (LayerError, OSError):
        pass  # refusing is fine too; writing outside is not
    assert snapshot(outside) == before
    assert (outside / "victim").read_text() == "intact"
    # what was written landed inside the layer
    assert (layer / out / "dotdot").exists()
    assert (layer / out / "absolute").exists()


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    data = make_tar([("d", "etc", None), (("f", "etc/.wh.passwd", "")),
                     ("d", "var", None), ("f", "var/.wh..wh..opq", ""), ("f", "var/new", "n")])
    extract(data, tmp_path)
    st_ = os.lstat(tmp_path / "etc" / "passwd")
    assert stat.S_ISCHR(st_.st_mode) and st_.st_rdev == 0
    assert os.getxattr(tmp_path / "var", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "etc" / ".wh.passwd").exists()


def test_modes_owners_links_and_digest(tmp_path: Path) -> None:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("bin/su")
        ti.size, ti.mode, ti.uid, ti.gid = 3, 0o4755, 0, 0
        t.addfile(ti, io.BytesIO(b"su!"))
        ti = tarfile.TarInfo("home/u/file")
        ti.size, ti.mode, ti.uid, ti.gid = 1, 0o600, 1000, 1000
        ti.pax_headers = {"SCHILY.xattr.user.test": "v"}
        t.addfile(ti, io.BytesIO(b"x"))
        ti = tarfile.TarInfo("bin/sulink")
        ti.type, ti.linkname = tarfile.SYMTYPE, "su"
        t.addfile(ti)
        ti = tarfile.TarInfo("bin/suhard")
        ti.type, ti.linkname = tarfile.LNKTYPE, "bin/su"
        t.addfile(ti)
        ti = tarfile.TarInfo("dev/null")
        ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, 1, 3, 0o666
        t.addfile(ti)
    raw = b.getvalue()
    import hashlib

    digest = extract(gzip.compress(raw), tmp_path)
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()  # diff_id: uncompressed
    su = os.lstat(tmp_path / "bin" / "su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    f = os.lstat(tmp_path / "home" / "u" / "file")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 1000, 0o600)
    assert os.readlink(tmp_path / "bin" / "sulink") == "su"
    assert os.lstat(tmp_path / "bin" / "suhard").st_ino == su.st_ino
    dev = os.lstat(tmp_path / "dev" / "null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1
    try:
        assert os.getxattr(tmp_path / "home" / "u" / "file", "user.test") == b"v"
    except OSError:
        pass  # a filesystem without user xattrs


def test_corrupt_archives_are_layer_errors(tmp_path: Path) -> None:
    with pytest.raises(LayerError):
        extract(gzip.compress(b"not a tar at all" * 100)[:-8], tmp_path)


names = st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "c d", ".wh.x"]),
                 min_size=1, max_size=8).map("/".join)


@given(names)
def test_clean_name_never_leaves_the_root(name: str) -> None:
    cleaned = clean_name(name)
    assert not cleaned.startswith("/")
    assert ".." not in cleaned.split("/")
    assert os.path.normpath(os.path.join("/root", cleaned)).startswith("/root")


component = st.from_regex(r"\A[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}\Z", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(component, min_size=1, max_size=3),
       st.none() | st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z", fullmatch=True),
       st.none() | st.sampled_from(["localhost:5000", "ghcr.io", "127.0.0.1:5000",
                                    "docker.io", "registry.example.com"]))
def test_reference_roundtrip(path: list[str], tag: str | None, domain: str | None) -> None:
    if domain is None and len(path) > 1 and ("." in path[0] or path[0] == "localhost"):
        path = ["x", *path]  # docker reads such a first component as a registry
    text = "/".join(path)
    if domain:
        text = f"{domain}/{text}"
    if tag:
        text += f":{tag}"
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert ref.tag == (tag or "latest")
    if domain in (None, "docker.io") and len(path) == 1:
        assert ref.path == "library/" + path[0]


@pytest.mark.parametrize("bad", ["", "UPPER", "a:b:c", "a@sha256:123", "-x", "a//b",
                                 "x:" + "t" * 200, "with space"])
def test_bad_references(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_reference(bad)
    assert repr(bad)[:20].strip("'") in str(e.value) or bad == ""
