"""What nsprim leaves on the host belongs to nsprim's owner and to its own
state root, tried the way an attacker would:

- another host user can neither read a container's files or volume data nor
  run, from the host, a setuid-root binary a container wrote (issue 10, #7);
- one state root never kills another root's containers, nor removes the
  cgroups, bridge or nft table they use (#8);
- a container cannot reach a host service on 127.0.0.1 through the bridge
  (route_localnet, the CVE-2020-8558 class), while ports published on
  127.0.0.1 still work (#9).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim import run, volumes
from nsprim.rootfs import OverlayRootfs
from nsprim.state import run_dir, state_root
from nsprim.volumes import Volume

from ..conftest import need

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run `argv` as an unprivileged host user (shell tools only: the test's
    Python is not executable by other users).  Through /bin/sh: setpriv itself
    still holds root's capabilities when it calls execve."""
    return subprocess.run([*NOBODY, "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
                          capture_output=True, text=True, timeout=20)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every host user can traverse (pytest's are 0700), so that
    only nsprim's own modes stand between another user and its state."""
    d = Path(tempfile.mkdtemp(prefix="nsprim-sec-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def payload_layer(tmp_path: Path) -> str:
    """An image layer with /payload: a static binary printing its euid (it
    does not drop a setuid identity, unlike busybox)."""
    need(os.geteuid() == 0, "needs root")
    need(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    need(shutil.which("gcc") is not None, "needs gcc with a static libc")
    src = tmp_path / "euid.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                   'int main(void) { printf("euid=%d\\n", (int)geteuid()); return 0; }\n')
    layer = tmp_path / "layer"
    layer.mkdir()
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(layer / "payload"), str(src)],
                       capture_output=True, text=True)
    need(r.returncode == 0, f"gcc -static failed: {r.stderr[-200:]}")
    return str(layer)


_PLANT = ("cp /payload /suid && chmod 4755 /suid && echo s3cret > /secret && "
          "chmod 644 /secret && cp /payload /vol/suid && chmod 4755 /vol/suid && "
          "echo s3cret > /vol/secret && chmod 644 /vol/secret")


@pytest.mark.parametrize("old_layout", [False, True], ids=["new-root", "root-of-older-version"])
def test_other_users_reach_no_container_file_and_no_setuid_binary(
        rootfs: str, payload_layer: str, public_dir: Path, monkeypatch: pytest.MonkeyPatch,
        old_layout: bool) -> None:
    root = public_dir / "state"
    if old_layout:  # the modes older versions of nsprim left
        for d, mode in ((root, 0o755), (root / "containers", 0o711),
                        (root / "volumes", 0o711), (root / "run", 0o755)):
            d.mkdir(exist_ok=True)
            os.chmod(d, mode)
    monkeypatch.setenv("NSPRIM_ROOT", str(root))
    try:
        with OverlayRootfs([rootfs, payload_layer]) as ov:
            r = run(["sh", "-c", _PLANT], rootfs=ov, mounts=[Volume("secvol", "/vol")],
                    capture_output=True)
            assert r.returncode == 0, r.stderr
            data = volumes.get("secvol").mountpoint
            for d in (ov.path, ov.upper, data):
                # the container did plant them: a setuid-root binary and a secret
                st = os.stat(os.path.join(d, "suid"))
                assert st.st_uid == 0 and st.st_mode & stat.S_ISUID, d
                with open(os.path.join(d, "secret")) as f:
                    assert f.read() == "s3cret\n"
                # ... that no other host user reaches
                cat = as_nobody("/bin/cat", os.path.join(d, "secret"))
                assert cat.returncode != 0 and "s3cret" not in cat.stdout, (d, cat)
                assert "Permission denied" in cat.stderr, cat.stderr
                ex = as_nobody(os.path.join(d, "suid"))
                assert ex.returncode != 0 and "euid=" not in ex.stdout, (d, ex)
                assert "Permission denied" in ex.stderr, ex.stderr
            for d in (state_root(), run_dir()):
                assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0, oct(os.stat(d).st_mode)
                assert as_nobody("/bin/ls", d).returncode != 0
    finally:
        try:
            volumes.remove("secvol")
        except LookupError:
            pass


def test_a_root_owned_by_another_user_is_refused(public_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    need(os.geteuid() == 0, "needs root")
    root = public_dir / "planted"
    root.mkdir(0o777)
    os.chown(root, 65534, 65534)  # another user made it: they could swap anything in it
    monkeypatch.setenv("NSPRIM_ROOT", str(root))
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        state_root()
