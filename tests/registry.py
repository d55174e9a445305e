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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
               entrypoint: list[str] | None = None, stopsignal: str | None = None,
               volumes: list[str] | None = None) -> None:
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
        if stopsignal:
            args += ["--config.stopsignal", stopsignal]
        for v in volumes or []:
            args += ["--config.volume", v]
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


# ------------------------------------------------------------------ loopback
# A registry of the test's own, in a thread: stdlib http.server on 127.0.0.1.
# It serves what a test puts in `routes`, records every request (and the
# Authorization header it carried), and can play a hostile host.

Handler = Callable[[Any], None]  # given the http.server request handler


class LoopbackServer:
    """http.server on 127.0.0.1 in a daemon thread.  `routes` maps a path
    (without the query) to a function that answers the request; unknown
    paths get 404.  `seen` lists (path, Authorization header or None)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, Handler] = {}
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                server.seen.append((self.path, self.headers.get("Authorization")))
                route = server.routes.get(path)
                if route is None:
                    send(self, 404, b'{"errors": []}')
                    return
                route(self)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def auths(self) -> list[str]:
        return [a for _p, a in self.seen if a]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send(h: Any, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(code)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


class FakeRegistry(LoopbackServer):
    """A registry API on loopback: add_image() puts a manifest, its config
    and its layer blobs under /v2/REPO/."""

    def add_image(self, repo: str, layers: list[tuple[bytes, bytes]], tag: str = "latest",
                  *, sizes: list[int] | None = None, config: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
        """`layers`: (blob as served, uncompressed tar) pairs.  `sizes`
        overrides the descriptor sizes.  Returns the manifest."""
        cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
               "rootfs": {"type": "layers", "diff_ids": [sha(t) for _b, t in layers]}}
        cfg.update(config or {})
        cfg_bytes = json.dumps(cfg).encode()
        self.blob(repo, cfg_bytes)
        descs = []
        for i, (blob, _t) in enumerate(layers):
            self.blob(repo, blob)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": sha(blob), "size": sizes[i] if sizes else len(blob)})
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": sha(cfg_bytes), "size": len(cfg_bytes)},
                    "layers": descs}
        self.manifest(repo, tag, json.dumps(manifest).encode())
        return manifest

    def manifest(self, repo: str, tag: str, body: bytes) -> None:
        def answer(h: Any) -> None:
            send(h, 200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        self.routes[f"/v2/{repo}/manifests/{tag}"] = answer
        self.routes[f"/v2/{repo}/manifests/{sha(body)}"] = answer

    def blob(self, repo: str, data: bytes, digest: str | None = None) -> str:
        d = digest or sha(data)
        self.routes[f"/v2/{repo}/blobs/{d}"] = lambda h: send(h, 200, data)
        return d
