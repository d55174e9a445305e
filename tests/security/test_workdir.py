"""The working directory nsprim makes when it is missing (NSP_OP_WORKDIR),
tried by an attacker who controls the image and the command: symlinks in the
rootfs or in a volume (absolute, climbing ``../..``, through
/proc/self/root, a parent that is a link to /), ``..`` components, a file
where a directory is expected, paths too long for the kernel, and another
container that swaps the directory for a symlink while it is made.

nsprim may make directories only inside the container's root or a volume's
source, and may chown only a directory it has just made: never the root
(``-w /new/..``), never a volume's source, never a host file.  Each test
compares the host's view (owner, mode, existence) before and after; a
refusal is one line with docker's exit code (125, 127 for "no such file or
directory")."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import run
from nsprim.errors import SpawnError

from ..conftest import cli_at
from ..test_frontend import Front
from ..test_frontend import front as front  # noqa: F401 - the fixture, both CLI paths
from ..test_oci_runtime import Runtime, make_bundle, runtime_at, write_config

USER = "1000:1000"

Snapshot = dict[str, tuple[int, int, int]]


def snapshot(*tops: Path) -> Snapshot:
    """owner, group and mode of every entry under `tops` (links not followed)."""
    out: Snapshot = {}
    for top in tops:
        st = os.lstat(top)
        out[str(top)] = (st.st_uid, st.st_gid, st.st_mode)
        for d, dirs, files in os.walk(top):
            for n in dirs + files:
                st = os.lstat(os.path.join(d, n))
                out[os.path.join(d, n)] = (st.st_uid, st.st_gid, st.st_mode)
    return out


class Scene:
    """A rootfs of the test's own (a host directory: what is chowned in it is
    chowned on the host), a volume's source, and a victim directory of the
    host that nothing may touch."""

    def __init__(self, tmp_path: Path, rootfs: str) -> None:
        self.root = Path(rootfs)
        self.vol = tmp_path / "vol"
        self.vol.mkdir(mode=0o755)
        self.victim = tmp_path / "victim"
        self.victim.mkdir(mode=0o700)
        (self.victim / "secret").write_text("HOST-SECRET\n")
        os.chmod(self.victim / "secret", 0o600)
        self.new = f"nsp-wd-{uuid.uuid4().hex[:8]}"  # a name no host path has
        # the rootfs's own entries, without what the test itself adds below
        self.before = self.host_view()

    def host_view(self) -> Snapshot:
        view = snapshot(self.victim, self.vol)
        for p in (self.root, self.root / "etc", self.root / "tmp"):
            st = os.lstat(p)
            view[str(p)] = (st.st_uid, st.st_gid, st.st_mode)
        return view

    def assert_host_unchanged(self, parents_made_in_the_volume: bool = False) -> None:
        view = self.host_view()
        if parents_made_in_the_volume:  # root's, 0755, as the parents docker makes
            assert view.pop(str(self.vol / self.new)) == (0, 0, 0o40755)
        assert view == self.before
        assert not os.path.lexists("/" + self.new)
        assert not os.path.lexists(self.victim / self.new)


@pytest.fixture
def scene(tmp_path: Path, fresh_rootfs: str) -> Scene:
    return Scene(tmp_path, fresh_rootfs)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsprim: "), stderr
    return lines[0]


def _climb(target: Path | str) -> str:
    return "../" * 30 + str(target).lstrip("/")


# name -> (links to make: {path in rootfs or "vol/...": target}, -w, what follows:
#          "made:<path in the root>" the container starts there and that
#          directory is the only thing made (owned by the user);
#          "refused:<needle>" one line with that text, exit 125 or 127)
CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "absolute-link": ({"wd": "{victim}"}, "/wd/{new}", "refused:No such file or directory"),
    "climbing-link": ({"wd": "{climb}"}, "/wd/{new}", "refused:No such file or directory"),
    "proc-self-root": ({}, "/proc/self/root{victim}/{new}",
                       "refused:Too many levels of symbolic links"),
    "proc-link-in-image": ({"wd": "/proc/self/root{victim}"}, "/wd/{new}",
                           "refused:Too many levels of symbolic links"),
    "parent-is-link-to-root": ({"p": "/"}, "/p/{new}", "made:/{new}"),
    "dotdot-after-a-new-dir": ({}, "/{new}/..", "made:"),
    "dotdots-above-the-root": ({}, "/../../..{victim}/{new}", "made:{victim}/{new}"),
    "volume-link-out": ({"vol/out": "{victim}"}, "/v/out/{new}",
                        "refused:No such file or directory"),
    "volume-climbing-link": ({"vol/out": "{climb}"}, "/v/out/{new}",
                             "refused:No such file or directory"),
    "volume-dotdot": ({}, "/v/{new}/..", "made:"),
    "volume-link-to-root": ({"vol/r": "/"}, "/v/r/{new}", "made:/{new}"),
    "a-file": ({}, "/etc/passwd", "refused:Cannot mkdir: /etc/passwd is not a directory"),
    "under-a-file": ({}, "/etc/passwd/{new}", "refused:Not a directory"),
    "a-link-to-a-host-file": ({"wd": "{victim}/secret"}, "/wd",
                              "refused:No such file or directory"),
    "long-path": ({}, "/a" * 3000, "refused:longer than 4095 bytes"),
    "long-name": ({}, "/" + "a" * 300, "refused:File name too long"),
}


def _fill(s: str, sc: Scene) -> str:
    return s.format(victim=sc.victim, climb=_climb(sc.victim), new=sc.new)


def _plant(sc: Scene, links: dict[str, str]) -> None:
    for where, target in links.items():
        at = sc.vol / where[4:] if where.startswith("vol/") else sc.root / where
        os.symlink(_fill(target, sc), at)
    sc.before = sc.host_view()  # the links are the attacker's, in place before


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_workdir_touches_nothing_outside(front: Front,  # noqa: F811
                                                 scene: Scene, case: str) -> None:
    links, wd, expect = CASES[case]
    _plant(scene, links)
    wd = _fill(wd, scene)
    r = front("run", "--rm", "--network", "none", "-u", USER, "-v", f"{scene.vol}:/v",
              "-w", wd, "--rootfs", str(scene.root), "sh", "-c", "pwd; stat -c %u .",
              timeout=60)
    kind, _, what = expect.partition(":")
    scene.assert_host_unchanged(wd.startswith("/v/") and wd.endswith("/.."))
    if kind == "refused":
        assert r.returncode in (125, 127), (r.returncode, r.stdout, r.stderr)
        assert _fill(what, scene) in one_line(r.stderr)
        # docker's CLI: 127 when the runtime says "no such file or directory"
        assert (r.returncode == 127) == ("No such file or directory" in r.stderr)
        return
    assert r.returncode == 0, r.stderr
    made = _fill(what, scene)
    if made:  # the one directory made: inside the root, the container user's
        st = os.lstat(str(scene.root) + made)
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert r.stdout.split()[1] == "1000"
    else:  # "..": nothing was chowned; the start is the root or the volume
        assert r.stdout.split()[1] == "0"
    assert cli_at(front.root, "ps", "-a", "-q").stdout == ""


def test_api_dotdot_workdir_chowns_nothing(scene: Scene) -> None:
    """The Python API, the same plan: cwd="/new/.." starts in / and chowns
    neither the rootfs nor anything in it."""
    r = run(["sh", "-c", "pwd; stat -c %u ."], rootfs=str(scene.root), user=USER,
            cwd=f"/{scene.new}/..", capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == [b"/", b"0"], r
    scene.assert_host_unchanged()
    for cwd, step in ((f"/proc/self/root{scene.victim}/x", "workdir"),
                      ("/etc/passwd", "chdir")):
        with pytest.raises(SpawnError) as ei:
            run(["pwd"], rootfs=str(scene.root), user=USER, cwd=cwd, timeout=30)
        assert ei.value.step == step
    scene.assert_host_unchanged()


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    yield from runtime_at(tmp_path / "oci")


def test_oci_process_cwd_dotdot_and_links_chown_nothing(rt: Runtime, scene: Scene,
                                                        tmp_path: Path) -> None:
    """config.json's process.cwd is the bundle author's: the same refusals."""
    os.symlink(str(scene.victim), scene.root / "wd")
    scene.before = scene.host_view()
    for i, cwd in enumerate((f"/{scene.new}/..", f"/wd/{scene.new}",
                             f"/proc/self/root{scene.victim}/{scene.new}")):
        b = tmp_path / f"b{i}"
        c = make_bundle(b, str(scene.root), ["sh", "-c", "pwd; stat -c %u ."])
        c["process"]["cwd"] = cwd
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        write_config(b, c)
        r = rt("run", "--bundle", str(b), f"wd{i}")
        if i == 0:
            assert r.returncode == 0 and r.stdout.split() == ["/", "0"], r
        else:
            assert r.returncode != 0, r
        scene.assert_host_unchanged()
    assert rt("list", "-q").stdout == ""


def test_container_swapping_the_workdir_for_a_link(private_root: str, scene: Scene) -> None:
    """A running container sharing the volume swaps the directory being made
    for a symlink to / or /etc (and for a directory of its own) as fast as
    it can, while others start with -u 1000 -w /v/w: the one chown may only
    land on a directory of the volume, never the root, /etc or the source."""
    script = ("cd /v; while :; do mkdir w 2>/dev/null; rmdir w 2>/dev/null; "
              "ln -s /etc w 2>/dev/null; rm -f w; ln -s / w 2>/dev/null; rm -f w; done")
    a = cli_at(private_root, "run", "-d", "--name", "swapper", "--network", "none",
               "-v", f"{scene.vol}:/v", "--rootfs", str(scene.root), "sh", "-c", script)
    assert a.returncode == 0, a.stderr
    try:
        for _ in range(25):
            r = cli_at(private_root, "run", "--rm", "--network", "none", "-u", USER, "-v",
                       f"{scene.vol}:/v", "-w", "/v/w", "--rootfs", str(scene.root), "true",
                       timeout=60)
            assert r.returncode in (0, 125, 127), r.stderr  # started, or one line
            for p in (scene.root, scene.root / "etc", scene.vol):
                assert os.lstat(p).st_uid == 0, p
        # the swapper ran all along (the race was on)
        assert json.loads(cli_at(private_root, "inspect", "swapper").stdout)[0][
            "State"]["Running"]
    finally:
        cli_at(private_root, "rm", "-f", "swapper")
    for path, (uid, gid, mode) in scene.before.items():
        if Path(path).is_relative_to(scene.vol) and path != str(scene.vol):
            continue  # the swapper's own churn in the volume
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, st.st_mode) == (uid, gid, mode), path
    assert snapshot(scene.victim) == {k: v for k, v in scene.before.items()
                                      if Path(k).is_relative_to(scene.victim)}


def test_build_workdir_through_a_link_stays_in_the_image(tmp_path: Path,
                                                         scene: Scene) -> None:
    """A Dockerfile's WORKDIR (build's _Root.dir, which makes it) through a
    link of the base image to a host directory, or above the root: made
    inside the image or refused, never on the host."""
    from nsprim.images.build import _Root

    os.symlink(str(scene.victim), scene.root / "wd")
    scene.before = scene.host_view()
    root = _Root(str(scene.root))
    try:
        with pytest.raises(FileNotFoundError):
            root.dir(f"/wd/{scene.new}/x")
        os.close(root.dir(f"/../..{scene.victim}/{scene.new}"))
    finally:
        root.close()
    scene.assert_host_unchanged()
    assert os.path.isdir(str(scene.root) + f"{scene.victim}/{scene.new}")


def test_oci_exec_cwd_that_is_not_there_is_named_as_such(rt: Runtime, scene: Scene,
                                                        tmp_path: Path) -> None:
    """exec does not make a working directory (runc's neither): a missing one
    or one through a link out is refused in runc's words, naming the
    directory, not the command."""
    os.symlink(str(scene.victim), scene.root / "wd")
    scene.before = scene.host_view()
    b = tmp_path / "bx"
    make_bundle(b, str(scene.root), ["sleep", "100"])
    rt("create", "--bundle", str(b), "wx", check=True)
    rt("start", "wx", check=True)
    try:
        for cwd in ("/missing", f"/wd/{scene.new}"):
            r = rt("exec", "--cwd", cwd, "wx", "true")
            assert r.returncode != 0
            assert f'chdir to cwd ("{cwd}") set in config.json failed: no such file or ' \
                'directory' in r.stderr, r.stderr
            assert "executable file not found" not in r.stderr
        scene.assert_host_unchanged()
    finally:
        rt("delete", "--force", "wx")


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=1500),
       st.integers(min_value=0, max_value=3))
def test_absolute_paths_are_bounded_by_path_max(tail: str, widen: int) -> None:
    """A path is refused, before any container, exactly when the kernel could
    not take it (PATH_MAX with its NUL), with a message of bounded length."""
    from nsprim.config import PATH_MAX, validate_abs_path
    from nsprim.errors import ConfigError

    p = "/" + tail * (1 + widen)
    try:
        size = len(p.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate outside surrogateescape's range
        with pytest.raises(ConfigError, match="not a valid file name"):
            validate_abs_path(p, "working directory")
        return
    if size < PATH_MAX:
        assert validate_abs_path(p, "working directory") == p
    else:
        with pytest.raises(ConfigError, match="longer than 4095 bytes") as ei:
            validate_abs_path(p, "working directory")
        assert len(str(ei.value)) < 200
