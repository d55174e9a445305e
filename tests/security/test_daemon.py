"""What `nsprim daemon` promises an attacker who can reach its socket with
bad or hostile requests, or who is a host user who should not reach it:

- the socket is 0660 root:GROUP from the moment it exists;
- oversized bodies, bad JSON, fields of the wrong type, hostile names and
  paths get a 4xx and change nothing (no record, no name, no volume);
- a container made through the API gets the same containment as one made
  by the CLI (docker's capabilities, seccomp, nodev, masked paths): the API
  is only another front end to the spec;
- tar bodies (archive PUT, load, build) are extracted confined to the
  container (or the build context), or refused with a 4xx: nothing is
  written outside.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import DockerDaemon, cli_at, need
from ..test_daemon import api


def _records(d: DockerDaemon) -> list[str]:
    p = Path(d.root) / "containers"
    return sorted(os.listdir(p)) if p.exists() else []


def _names(d: DockerDaemon) -> Any:
    p = Path(d.root) / "names.json"
    return json.loads(p.read_text()) if p.exists() else {}


@pytest.fixture(scope="module")
def base(images: dict[str, str], docker_daemon: DockerDaemon) -> str:
    assert docker_daemon.docker("pull", images["base"]).returncode == 0
    return images["base"]


def test_socket_mode_and_group(docker_daemon: DockerDaemon, tmp_path: Path) -> None:
    st = os.stat(docker_daemon.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)
    # --group: the group owns it; a live socket is never taken over
    sock = tmp_path / "g.sock"
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", str(tmp_path / "s"),
                          "daemon", "-H", f"unix://{sock}", "--group", "65534"],
                         stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 30
        while not sock.exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 65534
        r = subprocess.run([sys.executable, "-m", "nsprim", "--root", str(tmp_path / "s2"),
                            "daemon", "-H", f"unix://{sock}"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 125 and "another daemon is listening" in r.stderr
    finally:
        p.terminate()
        assert p.wait(30) == 0
    assert not sock.exists()


def test_unprivileged_user_cannot_connect(docker_daemon: DockerDaemon) -> None:
    need(os.geteuid() == 0, "needs root")
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            f"try:\n s.connect({docker_daemon.sock!r})\nexcept PermissionError:\n sys.exit(3)\n"
            "sys.exit(0)")
    # pytest's directories are 0700: the user is stopped at the path or at the socket
    r = subprocess.run(["/usr/bin/python3", "-c", code], user=65534, group=65534,
                       capture_output=True, timeout=30)
    assert r.returncode == 3, r.stderr


def test_bad_bodies_change_nothing(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    before, names = _records(d), _names(d)
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "invalid JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        ({"Image": base, "Cmd": "x", "Env": "A=1"}, 400, "Env"),
        ({"Image": base, "Tty": "yes"}, 400, "Tty"),
        ({"Image": base, "HostConfig": {"Memory": "1g"}}, 400, "Memory"),
        ({"Image": base, "HostConfig": {"Binds": ["/nonexistent-nsprim:/x"]}}, 400,
         "does not exist"),
        ({"Image": base, "HostConfig": {"Binds": ["../etc:/x"]}}, 400, "volume"),
        ({"Image": base, "HostConfig": {"Mounts": [{"Type": "npipe", "Target": "/x"}]}}, 400,
         "npipe"),
        ({"Image": base, "HostConfig": {"CapAdd": ["NOT_A_CAP"]}}, 400, "NOT_A_CAP"),
        ({"Image": base, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}},
         400, "99999"),
        ({"Image": base, "HostConfig": {"NetworkMode": "mynet"}}, 501, "user-defined"),
        # /etc/hosts and resolv.conf lines cannot be forged through the API either
        ({"Image": base, "HostConfig": {"ExtraHosts": ["a:1.2.3.4\n6.6.6.6 evil"]}}, 400,
         "add-host"),
        ({"Image": base, "HostConfig": {"ExtraHosts": "a:1.2.3.4"}}, 400, "ExtraHosts"),
        ({"Image": base, "HostConfig": {"Dns": ["10.0.0.1\nnameserver 6.6.6.6"]}}, 400,
         "--dns"),
        ({"Image": base, "HostConfig": {"DnsSearch": ["a b"]}}, 400, "dns-search"),
        ({"Image": base, "Domainname": "bad_domain"}, 400, "domainname"),
        ({"Image": base, "Healthcheck": {"Test": ["CMD", "true"]}}, 400, "Healthcheck"),
        ({"Image": base, "Env": ["BAD KEY=1"]}, 400, "BAD KEY"),
        ({"Image": "local/none:1"}, 404, "No such image"),
        ({"Image": "UPPER/Case"}, 400, ""),
        ({"Image": base, "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, 400,
         "sometimes"),
        ({"Image": base, "HostConfig": {"SecurityOpt": ["seccomp=/etc/shadow"]}}, 400, ""),
    ]
    for body, status, words in cases:
        st, _, out = api(d, "POST", "/containers/create?name=hostile", body)
        assert st == status, (body, st, out)
        msg = json.loads(out)["message"]
        assert words in msg, (body, msg)
    st, _, out = api(d, "POST", "/containers/create?name=../../etc", {"Image": base})
    assert st == 400 and "invalid container name" in json.loads(out)["message"]
    assert _records(d) == before and _names(d) == names


def test_oversized_and_malformed_requests(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    before = _records(d)
    big = b'{"Image": "' + b"a" * (5 << 20) + b'"}'
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/json\r\nContent-Length: " + str(len(big)).encode() + b"\r\n\r\n")
    head = s.recv(65536)
    s.close()
    assert head.startswith(b"HTTP/1.1 413 "), head[:80]
    # chunked, no length announced: cut at the limit
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(80):
            s.sendall(b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    head = s.recv(65536)
    s.close()
    assert head.startswith(b"HTTP/1.1 413 "), head[:80]
    # a header block that never ends
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    try:
        s.sendall(b"GET /_ping HTTP/1.1\r\nX: " + b"b" * (200 << 10))
    except (BrokenPipeError, ConnectionResetError):
        pass
    head = s.recv(65536)
    s.close()
    assert head == b"" or head.split(b" ")[1][:1] == b"4", head[:80]
    # garbage instead of HTTP
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    s.sendall(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
    head = s.recv(65536)
    s.close()
    assert head == b"" or head.startswith(b"HTTP/1.1 400"), head[:80]
    assert _records(d) == before
    st, _, body = api(d, "GET", "/_ping")  # and it still serves
    assert (st, body) == (200, b"OK")


def test_bad_query_values(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon
    for path, status in (("/containers/json?filters=%7Bnot", 400),
                         ("/containers/json?filters=%7B%22bogus%22%3A%5B%5D%7D", 400),
                         ("/containers/json?all=maybe", 400),
                         ("/containers/nope/json", 404),
                         ("/containers/nope/logs?stdout=1", 404),
                         ("/images/nope:1/json", 404),
                         ("/volumes/..%2F..%2Fetc", 404),
                         ("/networks/mine", 404)):
        st, _, out = api(d, "GET", path)
        assert st == status, (path, st, out)
        assert json.loads(out)["message"]
    st, _, out = api(d, "POST", "/containers/create", {"Image": base, "Cmd": ["true"]})
    cid = json.loads(out)["Id"]
    try:
        st, _, out = api(d, "POST", f"/containers/{cid}/wait?condition=sometime")
        assert st == 400
        st, _, out = api(d, "POST", f"/containers/{cid}/kill?signal=SIGNOPE")
        assert st == 400 and "SIGNOPE" in json.loads(out)["message"]
        st, _, out = api(d, "GET", f"/containers/{cid}/logs?stdout=1&tail=-3")
        assert st == 400
        st, _, out = api(d, "POST", "/images/create?fromImage=" + "%2F" * 3)
        assert st == 400
        st, _, out = api(d, "POST", "/images/create?fromImage=x", headers={
            "X-Registry-Auth": "%%%not-base64"})
        assert st == 400 and "X-Registry-Auth" in json.loads(out)["message"]
        st, _, out = api(d, "POST", "/volumes/create", {"Name": "../escape"})
        assert st == 400 and not (Path(d.root) / "escape").exists()
    finally:
        api(d, "DELETE", f"/containers/{cid}?force=1")


def test_tar_bodies_refused_and_nothing_written(docker_daemon: DockerDaemon,
                                                base: str) -> None:
    """archive PUT: a '..' name is a 400; build: the
    context is extracted confined; load: the store's confined loader refuses
    hostile archives; nothing is written outside, no image is added."""
    import io
    import tarfile

    d = docker_daemon
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../../../tmp/nsprim-daemon-escape")
        info.size = 2
        t.addfile(info, io.BytesIO(b"x\n"))
    r = d.docker("run", "-d", base, "sleep", "60")
    cid = r.stdout.strip()
    try:
        st, _, out = api(d, "PUT", f"/containers/{cid}/archive?path=/tmp", buf.getvalue(),
                         headers={"Content-Type": "application/x-tar"})
        assert st == 400 and "archive" in json.loads(out)["message"], (st, out)
        images_before = api(d, "GET", "/images/json")[2]
        # build: the context is extracted confined (../ names stay inside it),
        # so this one has no Dockerfile: the build fails, nothing is made
        for q, body in (("t=evil:1", buf.getvalue()), ("t=evil:1&dockerfile=../../etc/passwd",
                                                        buf.getvalue()),
                        ("t=evil:1", b"\x1f\x8b" + b"gzip bomb" * 10)):
            st, _, out = api(d, "POST", f"/build?{q}", body,
                             headers={"Content-Type": "application/x-tar"})
            assert st == 400 or (st == 200 and b'"errorDetail"' in out), (q, st, out)
        assert not list((Path(d.root) / "tmp-api").glob("build-*"))
        # load: the store's confined loader refuses the archive, adds nothing
        for body in (buf.getvalue(), b"not a tar at all", _hostile_save()):
            st, _, out = api(d, "POST", "/images/load", body,
                             headers={"Content-Type": "application/x-tar"})
            assert st == 400, (st, out)
            assert "invalid image archive" in json.loads(out)["message"]
        assert api(d, "GET", "/images/json")[2] == images_before
        assert not os.path.exists("/tmp/nsprim-daemon-escape")
        assert not os.listdir(Path(d.root) / "tmp-api")  # the spooled bodies are gone
    finally:
        d.docker("rm", "-f", cid)


def test_api_containers_have_the_cli_containment(docker_daemon: DockerDaemon,
                                                 base: str) -> None:
    d = docker_daemon
    r = d.docker("run", "--rm", base, "sh", "-c",
                 "grep -E 'CapEff|Seccomp:|NoNewPrivs' /proc/self/status; "
                 "wc -c < /proc/timer_list; "
                 "mknod /tmp/n c 1 3 && (cat /tmp/n; echo rc=$?)")
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":\t") for line in r.stdout.splitlines()[:3])
    assert status["CapEff"] == "00000000a80425fb"  # docker's 14 capabilities
    assert status["Seccomp"] == "2"
    assert r.stdout.splitlines()[3].strip() == "0"  # /proc/timer_list is masked (empty)
    assert "rc=1" in r.stdout and "Permission denied" in r.stdout + r.stderr  # nodev
    # the CLI's view of the same container kind: identical capabilities
    cli = cli_at(d.root, "run", "--rm", base, "grep", "CapEff", "/proc/self/status")
    assert cli.stdout.split()[1] == status["CapEff"]


def _hostile_save() -> bytes:
    """A docker save archive whose manifest points a layer outside it and
    whose layer writes through ../ names."""
    import io
    import tarfile

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("../../../../tmp/nsprim-daemon-escape")
        info.size = 2
        t.addfile(info, io.BytesIO(b"x\n"))
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["evil:1"],
                            "Layers": ["../../etc/passwd", "l.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in (("manifest.json", manifest), ("c.json", cfg),
                           ("l.tar", layer.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _tar(*members: tuple[str, str, bytes]) -> bytes:
    """A tar of (kind, name, data-or-link-target) members."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                t.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, data.decode()
                t.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_put_hostile_bodies_confined(docker_daemon: DockerDaemon, base: str,
                                             tmp_path: Path) -> None:
    """docker cp's PUT with an attacker's archive: '..' names, absolute
    symlinks written through, a symlink the container made pointing at a
    host directory, hardlinks out, device nodes, a gzip bomb's garbage:
    each a 4xx or confined to the container; nothing appears on the host."""
    d = docker_daemon
    host = tmp_path / "host-target"
    host.mkdir()
    target = str(host)
    r = d.docker("run", "-d", base, "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        # the container's own symlink to the host directory's path
        assert d.docker("exec", cid, "ln", "-s", target, "/tmp/out").returncode == 0
        bodies = [
            _tar(("file", "../../../../" + target.lstrip("/") + "/dots", b"x")),
            _tar(("file", "a/../../" + target.lstrip("/") + "/dots2", b"x")),
            _tar(("sym", "esc", target.encode()), ("file", "esc/through-abs", b"x")),
            _tar(("sym", "rel", b"../../../../../../" + target.lstrip("/").encode()),
                 ("file", "rel/through-rel", b"x")),
            _tar(("file", "out/through-container-link", b"x")),
            _tar(("hard", "hl", b"/etc/shadow")),
            _tar(("chr", "null2", b"")),
            b"\x1f\x8b" + b"not really gzip" * 100,
            b"not a tar" * 1000,
        ]
        statuses = []
        for body in bodies:
            for path in ("/tmp", "/tmp/out"):
                st, _, out = api(d, "PUT", f"/containers/{cid}/archive?path={path}", body,
                                 headers={"Content-Type": "application/x-tar"})
                assert st in (200, 400, 403, 404), (st, out)
                assert os.listdir(host) == [], (body[:80], path, st, out)
                statuses.append(st)
        assert 400 in statuses and 200 in statuses  # some refused, some confined
        # what was extracted stayed in the container: the link was followed
        # inside its root, where no such directory exists, or was made there
        r = d.docker("exec", cid, "sh", "-c", "ls -la /tmp; ls /dev/null2 2>&1; "
                     "test -e /tmp/null2 && echo DEVICE")
        assert "DEVICE" not in r.stdout
        # an absolute symlink is kept as a link in the container's root, where
        # it resolves inside that root
        r = d.docker("exec", cid, "readlink", "/tmp/esc")
        assert r.returncode == 0 and r.stdout.strip() == target
        st, _, out = api(d, "PUT", f"/containers/{cid}/archive?path=/tmp/out",
                         _tar(("file", "f", b"x")))
        assert st in (404, 200) and os.listdir(host) == []
        # bad parameters: no path, a path that is not a directory, a bad boolean
        st, _, out = api(d, "PUT", f"/containers/{cid}/archive", _tar(("file", "f", b"x")))
        assert st == 400
        st, _, out = api(d, "PUT", f"/containers/{cid}/archive?path=/etc/hostname",
                         _tar(("file", "f", b"x")))
        assert st == 400 and "not a directory" in json.loads(out)["message"]
        st, _, out = api(d, "PUT", f"/containers/{cid}/archive?path=/tmp&copyUIDGID=maybe",
                         _tar(("file", "f", b"x")))
        assert st == 400 and "copyUIDGID" in json.loads(out)["message"]
        st, _, _ = api(d, "PUT", "/containers/no-such/archive?path=/tmp",
                       _tar(("file", "f", b"x")))
        assert st == 404
        # GET through the container's symlink to a host path: the container's view
        st, h, out = api(d, "GET", f"/containers/{cid}/archive?path=/tmp/out/../../etc/shadow")
        assert st in (200, 404)
        if st == 200:
            import base64
            got = json.loads(base64.b64decode(h["x-docker-container-path-stat"]))
            assert got["name"] == "shadow"
        assert not os.listdir(Path(d.root) / "tmp-api")  # spooled bodies are gone
    finally:
        d.docker("rm", "-f", cid)
