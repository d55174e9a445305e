"""The image commands as docker users script them: images' SIZE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import need
from .test_images import docker_size


@pytest.fixture
def root(tmp_path: Path) -> Iterator[str]:
    """A state root of the test's own; every container is gone afterwards."""
    need(os.geteuid() == 0, "needs root")
    r = str(tmp_path / "state")
    yield r
    for line in cli(r, "ps", "-a", "-q").stdout.split():
        cli(r, "rm", "-f", line)
    cli(r, "ps")  # collects
    assert cli(r, "ps", "-a", "-q").stdout.strip() == ""


def cli(root: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsprim", "--root", root, *args],
                          capture_output=True, text=True, timeout=timeout)


def image_rows(root: str) -> list[dict[str, str]]:
    r = cli(root, "images", "--format", "json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def layers(root: str) -> list[str]:
    return sorted(os.listdir(os.path.join(root, "images", "layers")))


def human(n: int) -> str:
    """docker's SIZE: go-units HumanSizeWithPrecision(n, 3)."""
    units = ["B", "kB", "MB", "GB", "TB"]
    x, i = float(n), 0
    while x >= 1000 and i < len(units) - 1:
        x /= 1000
        i += 1
    return f"{x:.3g}{units[i]}"


def test_images_size_is_the_unpacked_size_of_all_layers(root: str,
                                                         images: dict[str, str]) -> None:
    assert cli(root, "pull", images["base"]).returncode == 0
    assert cli(root, "pull", images["app"]).returncode == 0  # its base layer exists
    from nsprim.images import ImageStore

    store = ImageStore(os.path.join(root, "images"))
    want = {store.get(images[k]).id[7:19]: human(sum(docker_size(d)
                                                     for d in store.get(images[k]).layers))
            for k in ("base", "app")}
    assert {i["ID"]: i["Size"] for i in image_rows(root)} == want
    table = cli(root, "images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert sorted(line.split()[-1] for line in table[1:]) == sorted(want.values())
