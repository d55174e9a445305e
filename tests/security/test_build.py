"""Hostile builds: a build context, an archive or a stage that points out
must never make nsprim build read or write outside the context, the
destination or the stage; RUN steps get the same containment as run."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from ..test_build import _build, _write, base_image  # noqa: F401 (a fixture)


def _secret() -> bytes:
    with open("/etc/shadow", "rb") as f:
        return f.read()


def _layer_bytes(layer: str) -> bytes:
    """Everything the layer's regular files hold."""
    out = b""
    for dirpath, _dirs, files in os.walk(layer):
        for n in files:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out += f.read()
    return out


def test_context_symlink_to_etc_shadow_is_not_followed_out(base_image: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    from nsprim.images.build import BuildError

    need_secret = _secret()
    assert need_secret  # the host's file exists and is not empty
    ctx = _write(tmp_path, {"Dockerfile": f"FROM {base_image}\nCOPY shadow /stolen\n"})
    os.symlink("/etc/shadow", ctx / "shadow")
    # the link resolves inside the context: <context>/etc/shadow, which is not there
    with pytest.raises(BuildError, match=r"line 2, step 2/2 .*shadow.*not found"):
        _build(ctx)
    # through a link to the host's root, the same
    os.symlink("/", ctx / "hostroot")
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nCOPY hostroot/etc/shadow /stolen\n")
    with pytest.raises(BuildError, match="not found"):
        _build(ctx)
    # copied as part of a directory, a link stays a link (never its target's content)
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nLABEL s={uuid.uuid4().hex}\n"
                                    "COPY . /ctx/\n")
    img, _b, _o = _build(ctx)
    layer = img.layers[-1]  # type: ignore[attr-defined]
    assert os.readlink(os.path.join(layer, "ctx", "shadow")) == "/etc/shadow"
    assert need_secret not in _layer_bytes(layer)


def test_context_file_replaced_by_a_link_in_a_subdirectory(base_image: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """A directory of the context that is a link out: resolved in the context."""
    from nsprim.images.build import BuildError

    ctx = _write(tmp_path, {"Dockerfile": f"FROM {base_image}\nCOPY sub/passwd /x\n"})
    os.symlink("/etc", ctx / "sub")
    with pytest.raises(BuildError, match="not found"):
        _build(ctx)


def _hostile_tar(path: Path, victim: Path, hardlink: bool = False) -> None:
    with tarfile.open(path, "w") as t:
        def add(name: str, data: bytes = b"", **kw: object) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            for k, v in kw.items():
                setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data) if data else None)
        add("../../../../" + str(victim).lstrip("/") + ".dotdot", b"escaped\n")
        add(str(victim) + ".abs", b"escaped\n")
        add("uplink", type=tarfile.SYMTYPE, linkname=str(victim.parent))
        add("uplink/" + victim.name + ".vialink", b"escaped\n")
        if hardlink:
            add("hard", type=tarfile.LNKTYPE, linkname="/etc/shadow")
        add("ok.txt", b"fine\n")


def test_add_of_a_hostile_tar_stays_in_the_destination(base_image: str,  # noqa: F811
                                                       tmp_path: Path) -> None:
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "pwned"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _hostile_tar(ctx / "evil.tar", victim)
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nLABEL s={uuid.uuid4().hex}\n"
                                    "ADD evil.tar /dest/\n")
    img, _b, _o = _build(ctx)                               # docker's behaviour: extracted,
    assert sorted(os.listdir(victim_dir)) == []             # but nothing written outside
    assert not os.path.exists("/etc/shadow.abs")
    layer = Path(img.layers[-1])  # type: ignore[attr-defined]
    assert (layer / "dest" / "ok.txt").read_text() == "fine\n"
    inside = victim.relative_to("/")
    assert (layer / "dest" / (str(inside) + ".abs")).read_text() == "escaped\n"
    assert (layer / "dest" / (str(inside) + ".dotdot")).read_text() == "escaped\n"
    assert (layer / "dest" / (str(inside) + ".vialink")).read_text() == "escaped\n"
    # a hardlink to the host's /etc/shadow: resolved in the destination, where
    # there is none: a clear error, nothing of the host's file anywhere
    from nsprim.images.build import BuildError

    _hostile_tar(ctx / "evil.tar", victim, hardlink=True)
    with pytest.raises(BuildError, match=r"step 3/3 .*ADD evil.tar: cannot extract: No such file"):
        _build(ctx)
    assert sorted(os.listdir(victim_dir)) == []


def test_copy_from_a_stage_cannot_escape_the_stage(base_image: str,  # noqa: F811
                                                   tmp_path: Path) -> None:
    from nsprim.images.build import BuildError

    salt = uuid.uuid4().hex
    stage = (f"FROM {base_image} AS src\nLABEL s={salt}\n"
             "RUN echo stage-secret > /etc/shadow && ln -s /etc/shadow /leak && "
             "ln -s ../../../../../etc /up\n")
    for path in ("/leak", "../../../../etc/shadow", "/up/shadow"):
        ctx = _write(tmp_path / path.replace("/", "_"), {
            "Dockerfile": stage + f"FROM {base_image}\nCOPY --from=src {path} /got\n"})
        img, _b, _o = _build(ctx)
        got = Path(img.layers[-1], "got").read_bytes()  # type: ignore[attr-defined]
        assert got == b"stage-secret\n"                  # the stage's file, never the host's
    ctx = _write(tmp_path / "missing", {
        "Dockerfile": f"FROM {base_image}\nCOPY --from={base_image} ../../etc/shadow /got\n"})
    with pytest.raises(BuildError, match="not found"):
        _build(ctx)


def test_destination_symlink_in_the_image_stays_in_the_image(base_image: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    marker = f"nsprim-build-escape-{uuid.uuid4().hex}"
    ctx = _write(tmp_path, {"Dockerfile": f"FROM {base_image}\n"
                            f"RUN ln -s /tmp /{marker}\n"
                            f"COPY f /{marker}/{marker}\n", "f": "data\n"})
    host_tmp = Path("/tmp", marker)
    img, _b, _o = _build(ctx)
    assert not host_tmp.exists()
    assert Path(img.layers[-1], "tmp", marker).read_text() == "data\n"  # type: ignore[attr-defined]


def test_run_steps_are_contained_like_run(base_image: str, tmp_path: Path) -> None:  # noqa: F811
    """RUN goes through nsprim's spawn: seccomp filter, docker's capabilities,
    only fds 0-2, a fresh session keyring, its own pid namespace."""
    ctx = _write(tmp_path, {"Dockerfile": f"FROM {base_image}\nLABEL s={uuid.uuid4().hex}\n"
                            "RUN grep -E '^(Seccomp|CapEff|CapBnd):' /proc/self/status "
                            "> /status && ls /proc/self/fd > /fds && echo $$ > /pid && "
                            "cat /proc/keys > /keys 2>&1; true\n"})
    img, _b, _o = _build(ctx)
    layer = Path(img.layers[-1])  # type: ignore[attr-defined]
    status = dict(line.split(":\t") for line in (layer / "status").read_text().splitlines())
    assert status["Seccomp"] == "2"
    assert status["CapEff"] == "00000000a80425fb"          # docker's 14 capabilities
    assert (layer / "fds").read_text().split() == ["0", "1", "2", "3"]  # 3: ls's own dir
    assert int((layer / "pid").read_text()) < 10            # a pid namespace of its own


def test_add_of_a_gzip_bomb_stops_at_the_ratio(base_image: str, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A context archive is bounded as a pulled layer: NSPRIM_LAYER_MAX_RATIO."""
    import gzip

    from nsprim.images.build import BuildError

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        ti = tarfile.TarInfo("zeros")
        ti.size = 64 << 20
        t.addfile(ti, io.BytesIO(bytes(ti.size)))
    (ctx / "bomb.tar.gz").write_bytes(gzip.compress(raw.getvalue(), 9))
    assert (ctx / "bomb.tar.gz").stat().st_size < 1 << 20
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nLABEL s={uuid.uuid4().hex}\n"
                                    "ADD bomb.tar.gz /b/\n")
    monkeypatch.setenv("NSPRIM_LAYER_MAX_RATIO", "10")
    from nsprim.images.store import ImageStore, default_store

    store = ImageStore(default_store().root)       # reads the setting
    with pytest.raises(BuildError, match=r"ADD bomb.tar.gz: expands to more than 10485760"):
        _build(ctx, store=store)
