"""Test helpers: a real OCI registry (Debian's docker-registry) on loopback,
and test images built with umoci and pushed with skopeo -- independent tools,
so nsprim is checked against what others produce."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nsprim.testing import busybox_rootfs


def tools_present() -> bool:
    return all(shutil.which(t) for t in ("docker-registry", "skopeo", "umoci"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    def __init__(self, workdir: Path, *, user: str | None = None, password: str | None = None):
        self.dir = workdir
        self.storage = workdir / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.user, self.password = user, password
        cfg: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "error"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if user is not None:
            htp = workdir / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", user, password or ""], check=True,
                                 capture_output=True, text=True).stdout
            htp.write_text(out)
            cfg["auth"] = {"htpasswd": {"realm": "nsprim-test", "path": str(htp)}}
        (workdir / "config.yml").write_text(json.dumps(cfg))  # YAML is a JSON superset
        self.proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                break
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {err[-500:]}")
            time.sleep(0.05)

    def push(self, layout: Path, tag: str, repo: str, *, all_: bool = False) -> str:
        """skopeo copy an OCI layout tag to repo:tag here; returns the reference."""
        ref = f"{self.host}/{repo}"
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.user is not None:
            cmd += ["--dest-creds", f"{self.user}:{self.password}"]
        if all_:
            cmd.append("--all")
        subprocess.run(cmd + [f"oci:{layout}:{tag}", f"docker://{ref}"], check=True,
                       capture_output=True)
        return ref

    def blob_files(self) -> list[Path]:
        return sorted((self.storage / "docker/registry/v2/blobs").rglob("data"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


class ImageBuilder:
    """OCI images in one layout, built layer by layer with umoci."""

    def __init__(self, workdir: Path, busybox: str) -> None:
        self.dir = workdir
        self.layout = workdir / "layout"
        self.busybox = busybox
        umoci("init", "--layout", str(self.layout))
        self._n = 0

    def _bundle(self) -> Path:
        self._n += 1
        return self.dir / f"bundle{self._n}"

    def base(self, tag: str = "base") -> None:
        """busybox + /etc/passwd; CMD sh."""
        umoci("new", "--image", f"{self.layout}:{tag}")
        b = self._bundle()
        umoci("unpack", "--image", f"{self.layout}:{tag}", str(b))
        busybox_rootfs(b / "rootfs", self.busybox)
        (b / "rootfs" / "data").mkdir()
        (b / "rootfs" / "data" / "seed").write_text("from the image\n")
        umoci("repack", "--image", f"{self.layout}:{tag}", str(b))
        shutil.rmtree(b)
        umoci("config", "--image", f"{self.layout}:{tag}", "--config.cmd", "sh",
              "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "--config.env", "FROM_IMAGE=base", "--config.workingdir", "/",
              "--config.exposedports", "80/tcp", "--config.label", "test=nsprim")

    def derive(self, base: str, tag: str, files: dict[str, str] | None = None,
               delete: tuple[str, ...] = (), cmd: list[str] | None = None,
               env: list[str] | None = None, workdir: str | None = None,
               entrypoint: list[str] | None = None) -> None:
        """A new image `tag`: `base` plus one layer (files added, paths deleted)."""
        b = self._bundle()
        umoci("unpack", "--image", f"{self.layout}:{base}", str(b))
        for path, content in (files or {}).items():
            p = b / "rootfs" / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        for path in delete:
            p = b / "rootfs" / path.lstrip("/")
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        umoci("repack", "--image", f"{self.layout}:{tag}", str(b))
        shutil.rmtree(b)
        args = []
        for c in cmd or []:
            args += ["--config.cmd", c]
        for e in env or []:
            args += ["--config.env", e]
        for e in entrypoint or []:
            args += ["--config.entrypoint", e]
        if workdir:
            args += ["--config.workingdir", workdir]
        if args:
            umoci("config", "--image", f"{self.layout}:{tag}", *args)

    def index(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.layout / "index.json").read_text())
        return data

    def blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    def write_blob(self, data: bytes) -> tuple[str, int]:
        import hashlib

        d = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(d).write_bytes(data)
        return d, len(data)

    def multiarch(self, tag: str, source: str) -> None:
        """`tag`: an image index of `source` (this host's arch) and a fake arm64
        image (other config, same layers) -- like a multi-arch manifest list."""
        idx = self.index()
        desc = next(m for m in idx["manifests"]  # type: ignore[attr-defined]
                    if m["annotations"]["org.opencontainers.image.ref.name"] == source)
        manifest = json.loads(self.blob_path(desc["digest"]).read_bytes())
        config = json.loads(self.blob_path(manifest["config"]["digest"]).read_bytes())
        config["architecture"] = "arm64"
        config.setdefault("config", {})["Env"] = ["FAKE=arm64"]
        cd, cs = self.write_blob(json.dumps(config).encode())
        other = dict(manifest, config=dict(manifest["config"], digest=cd, size=cs))
        od, osz = self.write_blob(json.dumps(other).encode())
        from nsprim.images.registry import host_platform

        _, arch, _ = host_platform()
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [
                     {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": od, "size": osz,
                      "platform": {"os": "linux", "architecture": "arm64"}},
                     {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": desc["digest"], "size": desc["size"],
                      "platform": {"os": "linux", "architecture": arch}},
                 ]}
        xd, xs = self.write_blob(json.dumps(index).encode())
        idx["manifests"].append(  # type: ignore[attr-defined]
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xs,
             "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.layout / "index.json").write_text(json.dumps(idx))


@contextmanager
def docker_config(tmp: Path, host: str, user: str, password: str) -> Iterator[None]:
    import base64

    d = tmp / "docker-config"
    d.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    old = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(d)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = old
