"""Fixtures of the containment tests: a static probe binary (probe.c) that
tries, from inside a container, what an attacker would, and a rootfs of the
test's own with the probe in it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import build_busybox_rootfs, need


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    need(cc is not None, "needs a C compiler (apt-get install gcc libc6-dev)")
    assert cc is not None
    out = tmp_path_factory.mktemp("probe") / "probe"
    src = Path(__file__).with_name("probe.c")
    r = subprocess.run([cc, "-static", "-O1", "-o", str(out), str(src)], capture_output=True,
                       text=True)
    need(r.returncode == 0, f"a static probe could not be built: {r.stderr[-300:]}")
    return str(out)


@pytest.fixture
def hostile_rootfs(tmp_path: Path, probe: str) -> Iterator[str]:
    """A busybox rootfs of this test's own, with the probe at /probe."""
    from nsprim.testing import find_static_busybox

    need(os.geteuid() == 0, "needs root")
    bb = find_static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    os.chmod(tmp_path, 0o755)
    root = build_busybox_rootfs(tmp_path / "rootfs", bb)
    shutil.copy(probe, root / "probe")
    os.chmod(root / "probe", 0o755)
    yield str(root)
