"""The image commands as docker users script them: rmi's conflicts with
containers made from the image, and images' SIZE."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import cli_at as cli
from .test_images import docker_size


@pytest.fixture
def root(private_root: str) -> str:
    """A state root of the test's own (see conftest.private_root)."""
    return private_root


def image_rows(root: str) -> list[dict[str, str]]:
    r = cli(root, "images", "--format", "json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def layers(root: str) -> list[str]:
    return sorted(os.listdir(os.path.join(root, "images", "layers")))


def refused(r: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 1 and docker's message, on one line."""
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr == f"nsprim: {message}\n"


def test_rmi_keeps_the_image_of_a_running_container(root: str,
                                                     images: dict[str, str]) -> None:
    ref = images["app"]
    assert cli(root, "pull", ref).returncode == 0
    (short,) = cli(root, "images", "-q").stdout.split()
    before = layers(root)
    r = cli(root, "run", "-d", "--name", "web", ref, "sh", "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()[:12]
    refused(cli(root, "rmi", ref),
            f'conflict: unable to remove repository reference "{ref}" (must force) - '
            f"container {cid} is using its referenced image {short}")
    for args in (["rmi", short], ["rmi", "-f", short], ["rmi", "-f", "sha256:" + short]):
        refused(cli(root, *args), f"conflict: unable to delete {short} (cannot be forced) - "
                f"image is being used by running container {cid}")
    assert [(i["Repository"] + ":" + i["Tag"], i["ID"]) for i in image_rows(root)] == \
        [(ref, short)]
    # -f by name only untags: the image and its layers stay for the container
    r = cli(root, "rmi", "-f", ref)
    assert r.returncode == 0 and r.stdout == f"Untagged: {ref}\n", r.stderr
    assert [(i["Repository"], i["ID"]) for i in image_rows(root)] == [("<none>", short)]
    assert layers(root) == before
    r = cli(root, "restart", "-t", "5", "web")
    assert r.returncode == 0, r.stderr
    assert cli(root, "ps", "-q").stdout.split() == [cid]
    refused(cli(root, "rmi", short), f"conflict: unable to delete {short} (cannot be forced) - "
            f"image is being used by running container {cid}")


def test_rmi_of_an_image_a_stopped_container_uses_needs_force(
        root: str, images: dict[str, str]) -> None:
    ref = images["app"]
    assert cli(root, "pull", ref).returncode == 0
    (short,) = cli(root, "images", "-q").stdout.split()
    before = layers(root)
    r = cli(root, "run", "--name", "done", ref)
    assert r.returncode == 0 and r.stdout == "hello from app\n", r.stderr
    (cid,) = cli(root, "ps", "-a", "-q").stdout.split()
    refused(cli(root, "rmi", ref),
            f'conflict: unable to remove repository reference "{ref}" (must force) - '
            f"container {cid} is using its referenced image {short}")
    refused(cli(root, "rmi", short), f"conflict: unable to delete {short} (must be forced) - "
            f"image is being used by stopped container {cid}")
    assert [i["ID"] for i in image_rows(root) if i["Repository"] != "<none>"] == [short]
    r = cli(root, "rmi", "-f", ref)
    assert r.returncode == 0 and r.stdout == f"Untagged: {ref}\n", r.stderr
    assert [(i["Repository"], i["ID"]) for i in image_rows(root)] == [("<none>", short)]
    assert layers(root) == before
    r = cli(root, "rmi", "-f", short)  # nothing left to untag; the container keeps it
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert layers(root) == before
    # the container still starts from it
    assert cli(root, "start", "done").returncode == 0
    assert cli(root, "wait", "done").stdout.strip() == "0"
    assert "hello from app" in cli(root, "logs", "done").stdout
    # once the container is gone, the image goes
    assert cli(root, "rm", "done").returncode == 0
    r = cli(root, "rmi", short)
    assert r.returncode == 0 and r.stdout.startswith("Deleted: sha256:" + short), r.stderr
    assert layers(root) == [] and image_rows(root) == []


def test_rmi_untags_a_name_of_several_while_a_container_uses_the_image(
        root: str, images: dict[str, str]) -> None:
    """Only the last name is kept for a container (docker's isSingleReference)."""
    ref = images["app"]
    assert cli(root, "pull", ref).returncode == 0
    (short,) = cli(root, "images", "-q").stdout.split()
    assert cli(root, "run", "--name", "once", ref).returncode == 0
    # a second name for the same image: the docker archive of it, loaded
    archive = os.path.join(root, "..", "app.tar")
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{images['layout']}:app",
                    f"docker-archive:{archive}:example.com/second/app:v1"], check=True,
                   capture_output=True)
    assert cli(root, "load", "-i", archive).returncode == 0
    assert sorted(i["ID"] for i in image_rows(root)) == [short, short]
    r = cli(root, "rmi", ref)
    assert r.returncode == 0 and r.stdout == f"Untagged: {ref}\n", r.stderr
    refused(cli(root, "rmi", "example.com/second/app:v1"),
            'conflict: unable to remove repository reference "example.com/second/app:v1" '
            f"(must force) - container {cli(root, 'ps', '-a', '-q').stdout.strip()} is "
            f"using its referenced image {short}")


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
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[-1] for line in table[1:]) == sorted(want.values())
