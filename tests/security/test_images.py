"""Images and registries: what a hostile registry, image or archive cannot do.

- credentials go only to the registry they were configured for, and a token
  realm is an http(s) URL, never a local file;
- a layer is bounded while it streams: no longer than its descriptor, no
  larger than a ratio of it, no image larger than a total; a killed pull
  leaves nothing that the next command does not collect;
- tar headers are bounded before tarfile parses them (CVE-2024-6232);
- whiteouts are confined to the layer like every other name;
- wrong JSON types and names are one clean error, and nothing is stored.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nsprim import ConfigError
from nsprim.images import ImageStore, LayerError, RegistryError
from nsprim.images.layer import extract_layer, open_layer_stream
from nsprim.images.reference import parse_reference
from nsprim.images.registry import RegistryClient

from ..conftest import need, nsprim_cli
from ..registry import FakeRegistry, LoopbackServer, docker_config, send, sha, tar_of

BASIC = "Basic " + base64.b64encode(b"tester:s3cret").decode()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "state" / "images"))


@pytest.fixture
def reg() -> Iterator[FakeRegistry]:
    with FakeRegistry() as r:
        yield r


def small_layer(text: bytes = b"hello\n") -> tuple[bytes, bytes]:
    t = tar_of({"hello.txt": text})
    return gzip.compress(t), t


def wants_basic(r: FakeRegistry, inner: Any) -> Any:
    """Wrap a route so that it answers 401 (Basic) unless the login came."""
    def route(h: Any) -> None:
        if h.headers.get("Authorization") != BASIC:
            send(h, 401, b"{}", {"WWW-Authenticate": 'Basic realm="reg"'})
            return
        inner(h)
    return route


def store_is_empty(store: ImageStore) -> bool:
    return (store.images() == [] and os.listdir(os.path.join(store.root, "layers")) == []
            and os.listdir(os.path.join(store.root, "tmp")) == [])


# ------------------------------------------------------------ 10. credentials

def test_login_is_not_sent_to_the_realm_of_a_redirect_target(
        reg: FakeRegistry, tmp_path: Path) -> None:
    """The registry redirects a blob to another host; that host answers 401
    with a token realm of its own.  The registry's Basic login must not reach
    it (today's code sent it to the hostile realm)."""
    with LoopbackServer() as evil:
        evil.routes["/blob"] = lambda h: send(
            h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="{evil.url}/token",service="x"'})
        evil.routes["/token"] = lambda h: send(h, 200, b'{"token": "stolen"}')
        blob, _ = small_layer()
        digest = sha(blob)
        reg.routes[f"/v2/app/blobs/{digest}"] = wants_basic(
            reg, lambda h: send(h, 307, b"", {"Location": f"{evil.url}/blob"}))
        with docker_config(tmp_path, reg.host, "tester", "s3cret"):
            client = RegistryClient(parse_reference(f"{reg.host}/app"))
            with pytest.raises(RegistryError, match="asks for credentials") as e:
                with client.blob(digest) as r:
                    r.read()
        assert evil.host in str(e.value)
        # the hostile host saw requests, but never the login nor a token
        assert evil.seen, "the redirect was not followed at all"
        assert evil.auths() == [], evil.auths()
    # the registry itself did get the login
    assert BASIC in reg.auths()


def test_login_is_not_sent_to_a_redirect_target_asking_basic(
        reg: FakeRegistry, tmp_path: Path) -> None:
    with LoopbackServer() as evil:
        evil.routes["/blob"] = lambda h: send(h, 401, b"{}",
                                              {"WWW-Authenticate": 'Basic realm="evil"'})
        blob, _ = small_layer()
        digest = sha(blob)
        reg.routes[f"/v2/app/blobs/{digest}"] = wants_basic(
            reg, lambda h: send(h, 302, b"", {"Location": f"{evil.url}/blob"}))
        with docker_config(tmp_path, reg.host, "tester", "s3cret"):
            client = RegistryClient(parse_reference(f"{reg.host}/app"))
            with pytest.raises(RegistryError):
                client.blob(digest).close()
        assert evil.seen and evil.auths() == []


def test_file_realm_is_refused_and_the_file_never_read(
        reg: FakeRegistry, tmp_path: Path) -> None:
    """A realm of file:///... made nsprim read a local file and send its
    `token` to the registry.  The file here is a FIFO: opening it for
    reading is what a writer thread waits for, so "never read" is exact."""
    fifo = tmp_path / "secret.json"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        with open(fifo, "w") as f:   # returns once someone opens it to read
            opened.set()
            f.write('{"token": "host-secret"}')

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    reg.routes["/v2/app/manifests/latest"] = lambda h: send(
        # the '#' keeps the query a client appends out of the path
        h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="file://{fifo}#",service="x"'})
    try:
        with pytest.raises(RegistryError, match="refusing token realm 'file://"):
            RegistryClient(parse_reference(f"{reg.host}/app")).manifest()
        time.sleep(0.2)
        assert not opened.is_set(), "the realm file was opened"
        assert not any(a and "host-secret" in a for a in reg.auths())
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the writer finish
        t.join(5)
        os.close(fd)


@pytest.mark.parametrize("realm", ["ftp://127.0.0.1/token", "data:,{}", "gopher://x/",
                                   "/relative/token", "javascript:x"])
def test_realm_must_be_http_or_https(reg: FakeRegistry, realm: str) -> None:
    reg.routes["/v2/app/manifests/latest"] = lambda h: send(
        h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}"'})
    with pytest.raises(RegistryError, match="refusing token realm"):
        RegistryClient(parse_reference(f"{reg.host}/app")).manifest()


@pytest.mark.parametrize("answer", [b"[]", b'"token"', b"null", b'{"token": ["a"]}',
                                    b'{"token": "a\\r\\nX-Injected: 1"}', b"not json"])
def test_token_answer_of_the_wrong_type_is_one_error(reg: FakeRegistry, answer: bytes) -> None:
    reg.routes["/v2/app/manifests/latest"] = lambda h: send(
        h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="{reg.url}/token"'})
    reg.routes["/token"] = lambda h: send(h, 200, answer)
    with pytest.raises(RegistryError) as e:
        RegistryClient(parse_reference(f"{reg.host}/app")).manifest()
    assert "token" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------ 11. bounded layers

def zero_bomb(n_mib: int) -> tuple[bytes, bytes, int]:
    """A gzip'd tar of one file of `n_mib` MiB of zeros: (blob, tar header
    and trailer only, uncompressed length)."""
    ti = tarfile.TarInfo("bomb")
    ti.size = n_mib << 20
    header = ti.tobuf(format=tarfile.PAX_FORMAT)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(header)]
    zero = bytes(1 << 20)
    for _ in range(n_mib):
        parts.append(c.compress(zero))
    parts.append(c.compress(bytes(1024)))
    parts.append(c.flush())
    return b"".join(parts), header, len(header) + (n_mib << 20) + 1024


def wchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def test_gzip_bomb_stops_early(reg: FakeRegistry, tmp_path: Path) -> None:
    """256 MiB of zeros in 250 kB of gzip, under a digest that does not
    match: extraction stops at the ratio (here 4x, counted on at least
    1 MiB), not after writing the bomb out."""
    need(os.geteuid() == 0, "layers are extracted with their owners: needs root")
    blob, _hdr, total = zero_bomb(256)
    manifest = reg.add_image("bomb", [(blob, b"")])
    # the digest names other content: today's code wrote all 256 MiB first
    assert manifest["layers"][0]["digest"] == sha(blob)
    store = ImageStore(str(tmp_path / "images"), max_ratio=4)
    before, t0 = wchar(), time.monotonic()
    with pytest.raises(LayerError, match="expands to more than 4194304 bytes") as e:
        store.pull(f"{reg.host}/bomb")
    written, took = wchar() - before, time.monotonic() - t0
    assert "NSPRIM_LAYER_MAX_RATIO" in str(e.value)
    assert written < 16 << 20, f"{written} bytes written for a {total}-byte bomb"
    assert took < 10
    assert store_is_empty(store)


def test_ratio_and_size_settings_come_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPRIM_LAYER_MAX_RATIO", "7")
    monkeypatch.setenv("NSPRIM_IMAGE_MAX_SIZE", "3g")
    s = ImageStore(str(tmp_path / "a"))
    assert (s.max_ratio, s.max_size) == (7, 3 << 30)
    monkeypatch.setenv("NSPRIM_LAYER_MAX_RATIO", "lots")
    with pytest.raises(ConfigError, match="NSPRIM_LAYER_MAX_RATIO.*'lots'"):
        ImageStore(str(tmp_path / "b"))
    monkeypatch.delenv("NSPRIM_LAYER_MAX_RATIO")
    monkeypatch.delenv("NSPRIM_IMAGE_MAX_SIZE")
    s = ImageStore(str(tmp_path / "c"))
    assert s.max_ratio >= 50 and s.max_size >= 16 << 30  # generous for real images


def test_image_size_cap_stops_a_layer_that_fits_its_ratio(reg: FakeRegistry,
                                                          tmp_path: Path) -> None:
    need(os.geteuid() == 0, "needs root")
    blob, _hdr, _total = zero_bomb(64)
    reg.add_image("big", [(blob, b"")])
    store = ImageStore(str(tmp_path / "images"), max_size="8m")
    before = wchar()
    with pytest.raises(LayerError, match="image larger than 8388608 bytes"):
        store.pull(f"{reg.host}/big")
    assert wchar() - before < 24 << 20
    assert store_is_empty(store)


def test_blob_longer_than_its_descriptor_stops_there(reg: FakeRegistry,
                                                     tmp_path: Path) -> None:
    """The descriptor says 1000 bytes, the registry streams 64 MiB: reading
    stops right after byte 1000."""
    need(os.geteuid() == 0, "needs root")
    served = gzip.compress(os.urandom(4 << 20), 1)

    def endless(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(served)))
        h.end_headers()
        try:
            h.wfile.write(served)
        except OSError:
            pass

    manifest = reg.add_image("long", [(served, tar_of({"a": b"a"}))], sizes=[1000])
    reg.routes[f"/v2/long/blobs/{manifest['layers'][0]['digest']}"] = endless
    store = ImageStore(str(tmp_path / "images"))
    with pytest.raises(LayerError, match="longer than the 1000 bytes its descriptor gives"):
        store.pull(f"{reg.host}/long")
    assert store_is_empty(store)


@pytest.mark.parametrize("size", [1 << 62, -1, "12", True, 1.5, None])
def test_absurd_descriptor_sizes_are_refused_before_download(
        reg: FakeRegistry, tmp_path: Path, size: object) -> None:
    blob, t = small_layer()
    manifest = reg.add_image("absurd", [(blob, t)])
    manifest["layers"][0]["size"] = size
    reg.manifest("absurd", "latest", json.dumps(manifest).encode())
    store = ImageStore(str(tmp_path / "images"))
    with pytest.raises((LayerError, RegistryError), match="size"):
        store.pull(f"{reg.host}/absurd")
    assert not any(p.endswith(manifest["layers"][0]["digest"]) for p, _a in reg.seen)
    assert store_is_empty(store)


def test_killed_pull_is_collected_and_running_pulls_are_kept(reg: FakeRegistry,
                                                             tmp_path: Path) -> None:
    """A pull stalls mid-layer.  While it runs, another store (and an rmi)
    leaves its work alone; after kill -9, the next store collects it."""
    need(os.geteuid() == 0, "needs root")
    release = threading.Event()
    ti = tarfile.TarInfo("f")
    ti.size = 32 << 20
    t = ti.tobuf(format=tarfile.PAX_FORMAT) + bytes(32 << 20) + bytes(1024)
    blob = gzip.compress(t, 1)
    manifest = reg.add_image("slow", [(blob, t)])

    def stall(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(blob)))
        h.end_headers()
        h.wfile.write(blob[:len(blob) // 2])
        h.wfile.flush()
        release.wait(60)

    reg.routes[f"/v2/slow/blobs/{manifest['layers'][0]['digest']}"] = stall
    small, st_ = small_layer(b"other\n")
    reg.add_image("other", [(small, st_)])
    state = tmp_path / "state"
    root = state / "images"
    store = ImageStore(str(root))
    store.pull(f"{reg.host}/other")
    code = ("import sys; from nsprim.images import ImageStore; "
            "ImageStore(sys.argv[1]).pull(sys.argv[2])")
    p = subprocess.Popen([sys.executable, "-c", code, str(root), f"{reg.host}/slow"],
                         stderr=subprocess.PIPE)
    try:
        tmp = root / "tmp"
        deadline = time.monotonic() + 30
        work: list[Path] = []
        while time.monotonic() < deadline:
            work = [d for d in tmp.iterdir() if d.is_dir() and (d / "f").exists()
                    and (d / "f").stat().st_size > 0]
            if work:
                break
            time.sleep(0.05)
        assert work, f"the pull did not start: {p.stderr.read1() if p.stderr else ''!r}"
        # a running pull keeps its work: a new store, and rmi of another image
        ImageStore(str(root))
        removed = store.remove(f"{reg.host}/other")
        assert any(r.startswith("Deleted: sha256:") for r in removed)
        assert all(d.exists() for d in work)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        release.set()
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stderr:
            p.stderr.close()
    assert os.listdir(tmp) != []  # left by the kill
    r = nsprim_cli("--root", str(state), "ps")  # the next command, of any kind
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp) == []
    assert os.listdir(root / "layers") == []


# ------------------------------------------------------------ 12. tar headers

def pax_member(records: dict[str, str], name: str = "f", data: bytes = b"x") -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size, ti.pax_headers = len(data), records
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def header(name: bytes, kind: bytes, size: int) -> bytes:
    """A ustar header block, checksum right, nothing else checked."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1_700_000_000
    h[156:157] = kind
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def padded(b: bytes) -> bytes:
    return b + bytes(-len(b) % 512)


def raw_pax_member(pax: bytes, name: bytes = b"f", data: bytes = b"x") -> bytes:
    """A PAX 'x' header with exactly `pax` as its data (no checks), then a file."""
    return (header(b"pax", b"x", len(pax)) + padded(pax) + header(name, b"0", len(data))
            + padded(data) + bytes(1024))


@pytest.mark.parametrize("archive,needle", [
    # CVE-2024-6232: a run of digits makes tarfile's hdrcharset search quadratic
    (lambda: raw_pax_member(b"1" * (256 << 10)), "digits"),
    (lambda: pax_member({"comment": "7" * 100_000}), "digits"),
    # larger than any sane header: refused before tarfile reads it into memory
    (lambda: pax_member({"comment": "a" * (4 << 20)}), "extended header"),
    (lambda: pax_member({"path": "d/" * (1 << 20) + "f"}, "f"), "extended header"),
    # records whose keyword runs into the next ones (tarfile's regex scans on)
    (lambda: raw_pax_member(b"5 ab\n" * 50_000 + b"=x\n"), "malformed PAX record"),
    (lambda: pax_member({"GNU.sparse.size": "10"}), "sparse"),
])
def test_hostile_tar_headers_fail_fast(tmp_path: Path, archive: Any, needle: str) -> None:
    data = archive()
    t0 = time.monotonic()
    with pytest.raises(LayerError, match=needle):
        stream, _ = open_layer_stream(io.BytesIO(data))
        extract_layer(stream, str(tmp_path))
    assert time.monotonic() - t0 < 2
    assert os.listdir(tmp_path) == []


def test_long_gnu_name_header_is_bounded(tmp_path: Path) -> None:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo("x" * (2 << 20))
        t.addfile(ti, io.BytesIO(b""))
    with pytest.raises(LayerError, match="'L' extended header"):
        extract_layer(io.BytesIO(b.getvalue()), str(tmp_path))


def test_chains_of_extended_headers_are_bounded(tmp_path: Path) -> None:
    """tarfile recurses once per extended header: 5000 of them in front of
    one member was a RecursionError traceback."""
    longname = header(b"././@LongLink", b"L", 2) + padded(b"a\0")
    data = longname * 5000 + header(b"f", b"0", 0) + bytes(1024)
    with pytest.raises(LayerError, match="extended headers in front of one member"):
        extract_layer(io.BytesIO(data), str(tmp_path))
    pax = header(b"pax", b"x", 11) + padded(b"11 a=bcdef\n")
    with pytest.raises(LayerError, match="two PAX headers in front of one member"):
        extract_layer(io.BytesIO(pax * 2 + header(b"f", b"0", 0) + bytes(1024)), str(tmp_path))
    # one of each is what real archives have
    extract_layer(io.BytesIO(longname + pax + header(b"f", b"0", 0) + bytes(1024)),
                  str(tmp_path))
    assert os.listdir(tmp_path) == ["a"]


def test_load_archive_with_oversized_pax_header_fails_fast(store: ImageStore,
                                                           tmp_path: Path) -> None:
    """`load` indexes the archive with tarfile: its headers are checked
    first (today: 100% CPU for minutes)."""
    archive = tmp_path / "evil.tar"
    archive.write_bytes(raw_pax_member(b"1" * (512 << 10), b"manifest.json", b"[]"))
    t0 = time.monotonic()
    with pytest.raises(LayerError, match="digits"):
        store.load(str(archive))
    assert time.monotonic() - t0 < 2
    archive.write_bytes(gzip.compress(pax_member({"comment": "a" * (3 << 20)},
                                                 "manifest.json", b"[]")))
    with pytest.raises(LayerError, match="extended header"):
        store.load(str(archive))
    assert store_is_empty(store)
    r = nsprim_cli("--root", str(tmp_path / "cli"), "load", "-i", str(archive))
    assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ------------------------------------------------------------ 13. whiteouts

def test_whiteout_of_dotdot_touches_nothing_outside(tmp_path: Path) -> None:
    """`.wh...` whites out `..`: it deleted everything in images/tmp beside
    the layer being extracted."""
    tmp = tmp_path / "tmp"
    layer, other = tmp / "layer", tmp / "other-pull"
    layer.mkdir(parents=True)
    other.mkdir()
    (other / "work").write_text("in progress")
    for name in (".wh...", "sub/.wh...", "sub/.wh..", "./.wh...", "a/b/.wh..."):
        with pytest.raises(LayerError, match="invalid whiteout name"):
            extract_layer(io.BytesIO(tar_of({"sub/keep": b"k", name: b""})), str(layer))
        assert (other / "work").read_text() == "in progress"
        assert layer.is_dir() and tmp.is_dir()


def test_whiteouts_still_work(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "overlay whiteouts are 0/0 devices: needs root")
    data = tar_of({"etc/.wh.passwd": b"", "var/a": b"a", "var/.wh..wh..opq": b"",
                   "var/b": b"b", "usr/.wh..wh.plnk": b""})
    extract_layer(io.BytesIO(data), str(tmp_path))
    wh = os.lstat(tmp_path / "etc" / "passwd")
    assert wh.st_rdev == 0 and not (tmp_path / "etc" / ".wh.passwd").exists()
    assert os.getxattr(tmp_path / "var", "trusted.overlay.opaque") == b"y"
    # the opaque marker hides lower layers, not this layer's own entries
    assert (tmp_path / "var" / "a").read_text() == "a"
    assert (tmp_path / "var" / "b").read_text() == "b"
    assert os.listdir(tmp_path / "usr") == []  # aufs metadata is skipped


# ------------------------------------------------------------ 15. bad input

@pytest.mark.parametrize("name", ["busybox:é", "busybox:١٢", "bücher/x", "x:tag\u200b",
                                  "localhost:٥٠٠٠/x", "x@sha256:" + "٠" * 64])
def test_non_ascii_references_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_reference(name)
    assert repr(name) in str(e.value)


def test_cli_non_ascii_tag_is_one_line_exit_125(tmp_path: Path) -> None:
    for args in (["pull", "busybox:é"], ["run", "--rm", "busybox:é"]):
        r = nsprim_cli("--root", str(tmp_path / "s"), *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 125 and len(lines) == 1, r.stderr
        assert "busybox:é" in lines[0] and "codec" not in lines[0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[a-z0-9./:@_-]{1,40}", fullmatch=True)
       | st.from_regex(r"[a-z]{1,8}:\w{1,8}", fullmatch=True))
@example("busybox:é")
def test_parse_reference_raises_only_config_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ConfigError:
        return
    assert str(ref).isascii() and parse_reference(str(ref)) == ref


@pytest.mark.parametrize("body,needle", [
    (b"[]", "a list"),
    (b'{"schemaVersion": 2, "config": [], "layers": []}', "config"),
    (b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"a" * 64 +
     b'", "size": 1}, "layers": null}', "'layers'"),
    (b'{"schemaVersion": 2, "config": {"digest": "sha256:' + b"a" * 64 +
     b'", "size": 1}, "layers": [7]}', "layer 0"),
    (b'{"schemaVersion": 2, "config": {"digest": "../../x", "size": 1}, "layers": []}',
     "digest"),
    (b'{"manifests": {"a": 1}}', "'manifests'"),
    (b'{"manifests": [{"digest": "sha256:' + b"a" * 64 + b'", "size": 1, "platform": 3}]}',
     "platform"),
    (b'{"mediaType": 5, "layers": []}', "mediaType"),
])
def test_registry_json_of_wrong_types_is_one_error(reg: FakeRegistry, tmp_path: Path,
                                                   body: bytes, needle: str) -> None:
    reg.manifest("bad", "latest", body)
    store = ImageStore(str(tmp_path / "images"))
    with pytest.raises(RegistryError, match=needle) as e:
        store.pull(f"{reg.host}/bad")
    assert "\n" not in str(e.value)
    assert store_is_empty(store)


@pytest.mark.parametrize("config", [{"rootfs": None}, {"rootfs": {"diff_ids": "x"}},
                                    {"config": {"Entrypoint": "sh"}},
                                    {"config": {"Env": [1]}}, {"config": []}])
def test_image_config_of_wrong_types_is_one_error(reg: FakeRegistry, tmp_path: Path,
                                                  config: dict[str, Any]) -> None:
    blob, t = small_layer()
    reg.add_image("cfg", [(blob, t)], config=config)
    store = ImageStore(str(tmp_path / "images"))
    with pytest.raises(LayerError, match="config"):
        store.pull(f"{reg.host}/cfg")
    assert store_is_empty(store)


def docker_archive(path: Path, manifest: object, *, tags: list[str] | None = None) -> None:
    """A docker-save archive with one real layer and `manifest` as its
    manifest.json (the string "ok" for the right one)."""
    _blob, layer = small_layer()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
                         "config": {"Cmd": ["sh"]}}).encode()
    if manifest == "ok":
        manifest = [{"Config": "config.json", "Layers": ["l/layer.tar"], "RepoTags": tags}]
    with tarfile.open(path, "w") as t:
        for name, data in (("config.json", config), ("l/layer.tar", layer),
                           ("manifest.json", json.dumps(manifest).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


@pytest.mark.parametrize("manifest,needle", [
    ({"Config": "config.json"}, "not a list"),
    ([{"Config": "config.json", "Layers": None}], "'Layers'"),
    ([["config.json"]], "not an object"),
    ([{"Config": 5, "Layers": []}], "'Config'"),
    ([{"Config": "config.json", "Layers": [1]}], "'Layers'"),
    ([{"Config": "config.json", "Layers": ["l/layer.tar"], "RepoTags": "x:y"}], "'RepoTags'"),
    ([{"Config": "../../etc/passwd", "Layers": []}], "leaves the archive"),
])
def test_load_manifest_of_wrong_types_is_one_error(store: ImageStore, tmp_path: Path,
                                                   manifest: object, needle: str) -> None:
    archive = tmp_path / "a.tar"
    docker_archive(archive, manifest)
    with pytest.raises(LayerError, match=needle) as e:
        store.load(str(archive))
    assert "\n" not in str(e.value)
    assert store_is_empty(store)


@pytest.mark.parametrize("tag", ["UPPER/x:1", "ok:tag", "bad tag", "x:é", ""])
def test_load_with_an_invalid_repotag_stores_nothing(store: ImageStore, tmp_path: Path,
                                                     tag: str) -> None:
    archive = tmp_path / "a.tar"
    docker_archive(archive, "ok", tags=["good/name:1", tag])
    if tag == "ok:tag":
        (img,) = store.load(str(archive))
        assert "docker.io/library/ok:tag" in img.names
        return
    with pytest.raises(ConfigError, match="invalid reference format"):
        store.load(str(archive))
    assert store_is_empty(store)
    assert not os.path.exists(os.path.join(store.root, "repositories.json")) or \
        store._repos() == {}


def test_cli_load_errors_are_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    for manifest in ({"not": "a list"}, [{"Config": "config.json", "Layers": None}]):
        docker_archive(archive, manifest)
        r = nsprim_cli("--root", str(tmp_path / "s"), "load", "-i", str(archive))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 125 and len(lines) == 1 and "manifest.json" in lines[0], \
            r.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["sha256:" + "a" * 64, "config.json"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["config", "layers", "manifests", "digest", "size",
                                       "mediaType", "platform", "rootfs", "diff_ids",
                                       "Config", "Layers", "RepoTags", "Env", "os"]),
                      inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_validation_raises_only_the_domain_error(value: object) -> None:
    from nsprim.images import schema

    body = json.dumps(value).encode()
    for check in (
        lambda: schema.manifest_parts(schema.parse_object(body, "m", LayerError), "m",
                                      LayerError),
        lambda: schema.index_entries(schema.parse_object(body, "i", LayerError), "i",
                                     LayerError),
        lambda: schema.config_diff_ids(schema.parse_object(body, "c", LayerError), "c",
                                       LayerError),
        lambda: schema.docker_manifest_entries(body, "manifest.json", LayerError),
    ):
        try:
            check()
        except LayerError as e:
            assert "\n" not in str(e)
