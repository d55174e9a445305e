from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from benchmarks._common import build_floor, make_rootfs


@pytest.fixture(scope="session")
def rootfs() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("benchmarks need root")
    path = make_rootfs()
    yield path
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


@pytest.fixture(scope="session")
def floor() -> Iterator[str]:
    path = build_floor()
    yield path
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
