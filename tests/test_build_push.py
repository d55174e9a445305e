"""nsprim push and login against Debian's docker-registry on loopback; what
was pushed is read back by skopeo and by nsprim pull, and run by podman."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .test_build import _build, _write, base_image, podman_root  # noqa: F401 (fixtures)


def _cli(*args: str, env: dict[str, str] | None = None, input: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nsprim", *args], capture_output=True,
                          text=True, timeout=120, env=env, input=input)


def test_push_skips_present_blobs_mounts_across_repos_and_reads_back(
        base_image: str, registry: object, tmp_path: Path,  # noqa: F811
        podman_root: list[str]) -> None:  # noqa: F811
    host = registry.host  # type: ignore[attr-defined]
    salt = uuid.uuid4().hex
    ctx = _write(tmp_path / "ctx", {"Dockerfile": f"FROM {base_image}\nLABEL salt={salt}\n"
                                    "RUN echo pushed > /msg\nCOPY f /f\n"
                                    "CMD [\"cat\", \"/msg\", \"/f\"]\n", "f": "file\n"})
    name = f"{host}/push/app:{salt[:8]}"
    img, _b, _o = _build(ctx, tags=[name])
    assert len(img.diff_ids) == 3  # type: ignore[attr-defined]
    r = _cli("push", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": Pushed") == 3
    digest = r.stdout.strip().splitlines()[-1].split("digest: ")[1]
    # again: every blob is there
    r = _cli("push", name)
    assert r.returncode == 0 and r.stdout.count("Layer already exists") == 3, r.stdout
    # another repository of the same registry: mounted, not sent
    other = f"{host}/push/other:{salt[:8]}"
    assert _cli("tag", name, other).returncode == 0
    r = _cli("push", other)
    assert r.returncode == 0 and r.stdout.count("Mounted from push/app") == 3, r.stdout
    # skopeo reads what was pushed: Docker schema 2, the same digest
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                        f"docker://{name}"], capture_output=True, text=True)
    manifest = json.loads(r.stdout)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert len(manifest["layers"]) == 3
    import hashlib

    assert "sha256:" + hashlib.sha256(r.stdout.encode()).hexdigest() == digest
    # nsprim pulls it back into another store: the same image id (same config)
    from nsprim.images.store import ImageStore

    back = ImageStore(str(tmp_path / "other-store")).pull(name)
    assert back.id == img.id and back.diff_ids == img.diff_ids  # type: ignore[attr-defined]
    # podman pulls and runs it
    r = subprocess.run(podman_root + ["run", "--rm", "--tls-verify=false", "--network", "none",
                                      "--ulimit", "nofile=1024:1024", "--ulimit",
                                      "nproc=1024:1024", name], capture_output=True, text=True,
                       timeout=180)
    assert r.stdout == "pushed\nfile\n", r.stderr


def test_push_oci_manifest_on_request(base_image: str, registry: object) -> None:  # noqa: F811
    host = registry.host  # type: ignore[attr-defined]
    name = f"{host}/push/oci:{uuid.uuid4().hex[:8]}"
    assert _cli("tag", base_image, name).returncode == 0
    r = _cli("push", "--format", "oci", name)
    assert r.returncode == 0, r.stderr
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                          f"docker://{name}"], capture_output=True, text=True).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_login_push_logout_with_basic_auth(base_image: str, auth_registry: object,  # noqa: F811
                                           tmp_path: Path) -> None:
    reg = auth_registry
    host = reg.host  # type: ignore[attr-defined]
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker"))
    name = f"{host}/auth/app:{uuid.uuid4().hex[:8]}"
    assert _cli("tag", base_image, name, env=env).returncode == 0
    # no login: refused, one line
    r = _cli("push", name, env=env)
    assert r.returncode == 1 and "wants a login" in r.stderr
    # a wrong password is refused and not stored
    r = _cli("login", "-u", "tester", "--password-stdin", host, env=env, input="wrong\n")
    assert r.returncode == 1 and "unauthorized" in r.stderr
    assert not (tmp_path / "docker" / "config.json").exists()
    r = _cli("login", "-u", "tester", "--password-stdin", host, env=env, input="s3cret\n")
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    cfg = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert host in cfg["auths"]
    assert oct(os.stat(tmp_path / "docker" / "config.json").st_mode & 0o777) == "0o600"
    r = _cli("push", name, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds",
                        "tester:s3cret", f"docker://{name}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = _cli("logout", host, env=env)
    assert r.returncode == 0
    assert host not in json.loads((tmp_path / "docker" / "config.json").read_text())["auths"]


@pytest.mark.parametrize("args, message", [
    (["push", "no-such-image-here:1"], "no such image"),
    (["push", "127.0.0.1:1/x@sha256:" + "0" * 64], "push a tag"),
    (["login", "-u", "a:b", "--password-stdin", "127.0.0.1:1"], "invalid username"),
])
def test_push_and_login_bad_input(args: list[str], message: str) -> None:
    r = _cli(*args, input="pw\n")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
