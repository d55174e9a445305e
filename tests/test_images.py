"""Images against a real registry: pull, share, verify, whiteouts, multi-arch,
auth, load, rmi, volumes, and containers on overlays."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsprim import ConfigError, Container, OverlayRootfs, Volume, run
from nsprim.images import ImageNotFound, ImageStore, LayerError, RegistryError

from .conftest import nsprim_cli
from .registry import Registry, docker_config


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NSPRIM_ROOT", str(tmp_path / "state"))
    yield


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "state" / "images"))


def tree_digest(path: str) -> str:
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files + dirs):
            p = os.path.join(root, name)
            st = os.lstat(p)
            h.update(f"{p[len(path):]}:{st.st_mode}:{st.st_uid}:{st.st_size}".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def docker_size(path: str) -> int:
    """docker's size of a layer directory (moby's directory.Size), written
    out on its own: every non-directory's st_size, a hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for n in dirs + files:
            st = os.lstat(os.path.join(top, n))
            if stat.S_ISDIR(st.st_mode) or st.st_size == 0 or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def test_pull_and_run(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["app"])
    assert len(img.layers) == 2 and all(os.path.isdir(d) for d in img.layers)
    assert img.cmd == ["cat", "/app/hello.txt"]
    assert "APP=1" in img.env and img.working_dir == "/app"
    assert img.exposed_ports == ["80/tcp"] and img.labels == {"test": "nsprim"}
    r = run(image=img, capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello from app\n"
    r = run(["sh", "-c", "pwd; echo $APP $FROM_IMAGE"], image=img, capture_output=True)
    assert r.stdout == b"/app\n1 base\n"


def test_repull_is_noop(store: ImageStore, images: dict[str, str]) -> None:
    store.pull(images["app"])
    events: list[str] = []
    img = store.pull(images["app"], progress=lambda layer, status: events.append(status))
    assert "Pull complete" not in events and "Pulling fs layer" not in events
    assert len(img.layers) == 2


def test_shared_base_layer_stored_once(store: ImageStore, images: dict[str, str]) -> None:
    base = store.pull(images["base"])
    events: list[str] = []
    app = store.pull(images["app"], progress=lambda layer, status: events.append(status))
    assert events.count("Already exists") == 1 and events.count("Pull complete") == 1
    assert app.layers[0] == base.layers[0]
    assert len(os.listdir(os.path.join(store.root, "layers"))) == 2


def test_size_is_the_unpacked_size_of_all_layers(store: ImageStore,
                                                 images: dict[str, str]) -> None:
    base = store.pull(images["base"])
    app = store.pull(images["app"])  # its base layer is here already
    assert base.size == docker_size(base.layers[0]) > 0  # unpacked, not compressed
    want = docker_size(app.layers[0]) + docker_size(app.layers[1])
    assert app.size == want and want > base.size
    assert store.get(images["app"]).size == want
    assert store.pull(images["app"]).size == want  # a pull of what is here


def test_size_of_a_load_over_layers_already_here(store: ImageStore,
                                                 images: dict[str, str]) -> None:
    first = {i.id: i.size for i in store.load(images["layout"])}
    again = {i.id: i.size for i in store.load(images["layout"])}
    assert again == first
    for img in store.images():
        assert img.size == sum(docker_size(d) for d in img.layers) > 0, img.names


def test_size_of_an_older_record_is_measured_and_kept(store: ImageStore,
                                                      images: dict[str, str]) -> None:
    img = store.pull(images["app"])
    path = os.path.join(store.root, "images", img.id[7:] + ".json")
    with open(path) as f:
        rec = json.load(f)
    rec.pop("layer_sizes", None)
    rec["size"] = 0
    with open(path, "w") as f:
        json.dump(rec, f)
    want = [docker_size(d) for d in img.layers]
    assert store.get(img.id).size == sum(want)
    with open(path) as f:
        assert json.load(f)["layer_sizes"] == want


def test_whiteouts_hide_lower_files(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["wh"])
    r = run(image=img, capture_output=True)
    assert r.stdout.split(b"\n")[0] == b"gone"
    assert b"No such file" in r.stdout
    # the lower layer still has the files; the upper layer has whiteouts
    assert os.path.exists(os.path.join(img.layers[0], "bin", "vi"))
    st = os.lstat(os.path.join(img.layers[1], "bin", "vi"))
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0


def test_multi_arch_index_picks_host_platform(store: ImageStore,
                                              images: dict[str, str]) -> None:
    img = store.pull(images["multi"])
    assert "FAKE=arm64" not in img.env
    assert run(image=img, capture_output=True).stdout == b"hello from app\n"
    arm = store.pull(images["multi"], platform=("linux", "arm64", None))
    assert "FAKE=arm64" in arm.env and arm.layers == img.layers


def test_entrypoint_and_cmd_rules(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["ep"])
    assert run(image=img, capture_output=True).stdout == b"entry default-arg\n"
    assert run(["x", "y"], image=img, capture_output=True).stdout == b"entry x y\n"
    r = run(["hostname"], image=img, entrypoint=[], hostname="h", capture_output=True)
    assert r.stdout == b"h\n"


def test_digest_mismatch_rejected_and_nothing_left(
        store: ImageStore, tmp_path: Path, images: dict[str, str]) -> None:
    import json

    # a registry of this test's own: its blobs get corrupted
    (tmp_path / "reg").mkdir()
    reg = Registry(tmp_path / "reg")
    try:
        ref = reg.push(Path(images["layout"]), "app", "test/corrupt") + ":latest"
        layout = Path(images["layout"])
        index = json.loads((layout / "index.json").read_text())
        desc = next(m for m in index["manifests"]
                    if m["annotations"]["org.opencontainers.image.ref.name"] == "app")
        manifest = json.loads((layout / "blobs/sha256" / desc["digest"][7:]).read_bytes())
        top = manifest["layers"][-1]["digest"][7:]
        blob = next(p for p in reg.blob_files() if p.parent.name == top)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other content
        blob.write_bytes(bytes(data))
        with pytest.raises((LayerError, RegistryError)):
            store.pull(ref)
    finally:
        reg.stop()
    # nothing of the failed pull remains: no layer (not even the good base
    # layer it fetched), no image, no temporary directory
    assert os.listdir(os.path.join(store.root, "layers")) == []
    assert os.listdir(os.path.join(store.root, "tmp")) == []
    assert store.images() == []


def test_unknown_image_and_bad_reference(store: ImageStore, registry: Registry) -> None:
    with pytest.raises(RegistryError, match="not found"):
        store.pull(f"{registry.host}/no/such:tag")
    with pytest.raises(ConfigError, match="UPPER"):
        store.pull("UPPER/case")
    with pytest.raises(ImageNotFound):
        store.get("never-pulled")


def test_unreachable_registry(store: ImageStore) -> None:
    from .registry import free_port

    with pytest.raises(RegistryError, match="cannot reach"):
        store.pull(f"127.0.0.1:{free_port()}/x:y")


def test_basic_auth_from_docker_config(store: ImageStore, tmp_path: Path,
                                       auth_registry: Registry,
                                       images: dict[str, str]) -> None:
    ref = auth_registry.push(Path(images["layout"]), "app", "private/app") + ":latest"
    with pytest.raises(RegistryError, match="login|unauthorized"):
        store.pull(ref)
    with docker_config(tmp_path, auth_registry.host, "tester", "s3cret"):
        img = store.pull(ref)
    assert img.cmd == ["cat", "/app/hello.txt"]


def test_load_docker_archive_and_oci_layout(store: ImageStore, tmp_path: Path,
                                            images: dict[str, str]) -> None:
    archive = tmp_path / "app.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{images['layout']}:app",
                    f"docker-archive:{archive}:example.com/loaded/app:v1"], check=True,
                   capture_output=True)
    (img,) = store.load(str(archive))
    assert "example.com/loaded/app:v1" in img.names
    assert run(image=img, capture_output=True).stdout == b"hello from app\n"
    loaded = store.load(images["layout"])
    assert any(i.id == img.id for i in loaded)


def test_container_writes_never_reach_layers(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["app"])
    before = [tree_digest(d) for d in img.layers]
    r = run(["sh", "-c", "echo x > /app/hello.txt; rm /bin/ls; touch /new; mkdir /d"],
            image=img, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert [tree_digest(d) for d in img.layers] == before
    assert run(image=img, capture_output=True).stdout == b"hello from app\n"


def test_overlay_rootfs_api(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["base"])
    with OverlayRootfs(img.layers) as root:
        r = run(["sh", "-c", "echo hi > /f"], rootfs=root)
        assert r.returncode == 0
        assert os.listdir(root.upper) == ["f"]
        path = root.path
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.join(img.layers[0], "f"))


def test_read_only_image_rootfs(store: ImageStore, images: dict[str, str]) -> None:
    img = store.pull(images["base"])
    r = run(["sh", "-c", "touch /x; echo rc=$?"], image=img, read_only=True,
            capture_output=True)
    assert b"rc=1" in r.stdout


def test_named_volume_survives_and_is_populated(store: ImageStore,
                                                images: dict[str, str]) -> None:
    img = store.pull(images["base"])
    r = run(["sh", "-c", "cat /data/seed; echo kept > /data/new"], image=img,
            mounts=[Volume("vol1", "/data")], capture_output=True)
    assert r.stdout == b"from the image\n", r.stderr
    r = run(["cat", "/data/new"], image=img, mounts=[Volume("vol1", "/data", readonly=True)],
            capture_output=True)
    assert r.stdout == b"kept\n"
    r = run(["sh", "-c", "echo x > /data/y; echo rc=$?"], image=img,
            mounts=[Volume("vol1", "/data", readonly=True)], capture_output=True)
    assert b"rc=1" in r.stdout


def test_rmi_frees_only_unused_layers(store: ImageStore, images: dict[str, str]) -> None:
    base = store.pull(images["base"])
    app = store.pull(images["app"])
    store.remove(images["app"])
    assert os.path.isdir(base.layers[0]) and not os.path.exists(app.layers[1])
    with pytest.raises(ImageNotFound):
        store.get(images["app"])
    store.remove(images["base"])
    assert os.listdir(os.path.join(store.root, "layers")) == []


def test_image_run_leaves_nothing(store: ImageStore, images: dict[str, str],
                                  tmp_path: Path) -> None:
    img = store.pull(images["app"])
    with Container(["sleep", "30"], image=img) as c:
        assert c.pid is not None
    assert os.listdir(tmp_path / "state" / "containers") == []


def test_cli_pull_images_run_rmi(images: dict[str, str], tmp_path: Path) -> None:
    root = str(tmp_path / "cli-state")
    r = nsprim_cli("--root", root, "pull", images["app"])
    assert r.returncode == 0, r.stderr
    r = nsprim_cli("--root", root, "images", "--format", "json")
    assert "test/app" in r.stdout
    r = nsprim_cli("--root", root, "run", "--rm", images["app"])
    assert r.returncode == 0 and r.stdout == "hello from app\n"
    r = nsprim_cli("--root", root, "run", "--rm", "-v", "cvol:/data", images["app"], "sh", "-c",
                   "cat /data/seed; echo 1 > /data/n")
    assert r.stdout == "from the image\n"
    r = nsprim_cli("--root", root, "volume", "ls", "-q")
    assert r.stdout.split() == ["cvol"]
    r = nsprim_cli("--root", root, "volume", "inspect", "cvol")
    assert '"Name": "cvol"' in r.stdout
    r = nsprim_cli("--root", root, "rmi", images["app"])
    assert r.returncode == 0 and "Deleted" in r.stdout
    r = nsprim_cli("--root", root, "volume", "rm", "cvol")
    assert r.returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["pull", "UPPER"], "lowercase"),
    (["pull", "127.0.0.1:1/x"], "cannot reach"),
    (["run", "--rm", "not..valid"], "not..valid"),
    (["rmi", "nothing-here"], "nothing-here"),
    (["volume", "rm", "nosuchvol"], "nosuchvol"),
    (["volume", "create", "bad/name"], "bad/name"),
])
def test_cli_errors_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    r = nsprim_cli("--root", str(tmp_path / "s"), *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsprim: ") and needle in lines[0], r.stderr
