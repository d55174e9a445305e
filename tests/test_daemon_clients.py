"""`nsprim daemon` driven by docker-py, testcontainers and docker-compose v1."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import DockerDaemon, need
from .registry import free_port


@pytest.fixture(scope="module")
def client(docker_daemon: DockerDaemon) -> Any:
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=docker_daemon.host, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def base(images: dict[str, str], docker_daemon: DockerDaemon) -> str:
    assert docker_daemon.docker("pull", images["base"]).returncode == 0
    return images["base"]


def test_docker_py_run_logs_wait_exec(client: Any, base: str) -> None:
    import docker

    out = client.containers.run(base, ["sh", "-c", "echo hi; echo err >&2"], remove=True)
    assert out == b"hi\n"
    with pytest.raises(docker.errors.ContainerError) as ei:
        client.containers.run(base, ["sh", "-c", "exit 3"], remove=True)
    assert ei.value.exit_status == 3
    c = client.containers.run(base, ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.1; "
                                     "done; exit 4"], detach=True)
    lines = list(c.logs(stream=True))
    assert b"".join(lines) == b"l1\nl2\nl3\n"
    assert c.wait() == {"StatusCode": 4, "Error": None}
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 4
    c.remove()
    c = client.containers.run(base, ["sleep", "60"], detach=True, name="pyexec",
                              labels={"k": "v"})
    try:
        assert client.containers.list(filters={"label": "k=v"})[0].id == c.id
        r = c.exec_run(["sh", "-c", "echo exec-out; exit 2"])
        assert (r.exit_code, r.output) == (2, b"exec-out\n")
        r = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert r.output == (b"o\n", b"e\n")
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound) as nf:
        client.containers.get("pyexec")
    assert nf.value.status_code == 404


def test_docker_py_errors_images_volumes(client: Any, base: str,
                                         images: dict[str, str]) -> None:
    import docker

    img = client.images.pull(images["ep"])
    assert img.id.startswith("sha256:")
    assert client.images.get(images["ep"]).id == img.id
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("local/none:1")
    c = client.containers.create(base, ["true"], name="pyconflict")
    try:
        with pytest.raises(docker.errors.APIError) as ei:
            client.containers.create(base, ["true"], name="pyconflict")
        assert ei.value.status_code == 409
    finally:
        c.remove()
    with pytest.raises(docker.errors.APIError) as ei:
        client.api.create_container(base, ["true"], host_config={"Memory": "lots"})
    assert ei.value.status_code == 400
    v = client.volumes.create("pyvol")
    assert v.name == "pyvol" and "pyvol" in [x.name for x in client.volumes.list()]
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")
    assert {n.name for n in client.networks.list()} >= {"bridge", "host", "none"}


@pytest.mark.filterwarnings("ignore:The wait_for_logs function:DeprecationWarning")
def test_testcontainers_start_logs_port_stop(docker_daemon: DockerDaemon, base: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("testcontainers")
    for k, v in docker_daemon.env.items():
        if k.startswith(("DOCKER_", "TESTCONTAINERS_")):
            monkeypatch.setenv(k, v)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with DockerContainer(base).with_exposed_ports(80).with_command(
            ["sh", "-c", "echo ready; exec httpd -f -p 80 -h /etc"]) as c:
        wait_for_logs(c, "ready", timeout=20)
        host, port = c.get_container_host_ip(), c.get_exposed_port(80)
        cid = c.get_wrapped_container().id
        body = b""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://{host}:{port}/hostname", timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        assert body.decode().strip() == cid[:12]
    assert cid[:12] not in docker_daemon.docker("ps", "-aq").stdout.split()


def test_compose_up_ps_logs_down(docker_daemon: DockerDaemon, base: str,
                                 tmp_path: Path) -> None:
    need(shutil.which("docker-compose") is not None,
         "needs docker-compose v1 (apt-get install docker-compose)")
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(f"""
version: "2.4"
services:
  web:
    image: {base}
    command: ["sh", "-c", "echo web up; exec httpd -f -p 80 -h /etc"]
    network_mode: bridge
    ports: ["127.0.0.1:{port}:80"]
  backend:
    image: {base}
    command: ["sh", "-c", "echo backend up; echo from-backend > /tmp/hostname;
              exec httpd -f -p 8080 -h /tmp"]
    network_mode: bridge
""")

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", "nsptest", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env=docker_daemon.env)

    r = compose("up", "-d")
    try:
        assert r.returncode == 0, r.stderr
        ps = compose("ps")
        assert "nsptest_web_1" in ps.stdout and "nsptest_backend_1" in ps.stdout
        assert ps.stdout.count(" Up ") == 2, ps.stdout
        body = b""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname",
                                              timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        assert body.strip()
        ip = docker_daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                                  "nsptest_backend_1").stdout.strip()
        got = docker_daemon.docker("exec", "nsptest_web_1", "wget", "-qO-",
                                   f"http://{ip}:8080/hostname")
        assert got.stdout == "from-backend\n", got.stderr
        deadline = time.monotonic() + 10
        while "backend up" not in (logs := compose("logs")).stdout:
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(0.1)
        assert "web up" in logs.stdout
    finally:
        down = compose("down", "-t", "1")
    assert down.returncode == 0, down.stderr
    assert docker_daemon.docker("ps", "-aq").stdout.split() == []


def test_docker_py_archive_stats_and_manage(client: Any, base: str) -> None:
    """put_archive/get_archive (docker cp's endpoints), stats, top, pause,
    rename, update, diff and export through docker-py."""
    import docker

    c = client.containers.run(base, ["sleep", "60"], detach=True)
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("f")
            info.size = 2
            info.uid = info.gid = 1234
            t.addfile(info, io.BytesIO(b"x\n"))
        assert c.put_archive("/tmp", buf.getvalue()) is True
        assert c.exec_run(["cat", "/tmp/f"]).output == b"x\n"
        assert c.exec_run(["stat", "-c", "%u", "/tmp/f"]).output == b"0\n"  # no copyUIDGID
        stream, st = c.get_archive("/tmp/f")
        assert st["name"] == "f" and st["size"] == 2 and st["linkTarget"] == ""
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            f = t.extractfile("f")
            assert f is not None and f.read() == b"x\n"
        _, st = c.get_archive("/tmp")
        assert st["mode"] & (1 << 31)  # Go's ModeDir
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/no/such")
        with pytest.raises(docker.errors.NotFound):
            c.put_archive("/no/such/dir", buf.getvalue())
        s = c.stats(stream=False)
        assert s["id"] == c.id and s["pids_stats"]["current"] == 1
        assert s["memory_stats"]["usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
        assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert {"read", "preread", "blkio_stats", "networks"} <= set(s)
        gen = c.stats(decode=True)
        first, second = next(gen), next(gen)
        assert second["precpu_stats"] == first["cpu_stats"]
        gen.close()
        top = c.top()
        assert "PID" in top["Titles"] and any("sleep" in p[-1] for p in top["Processes"])
        c.pause()
        c.reload()
        assert c.status == "paused"
        with pytest.raises(docker.errors.APIError) as ei:
            c.pause()
        assert ei.value.status_code == 409
        c.unpause()
        c.rename("pyrenamed")
        c.reload()
        assert c.name == "pyrenamed"
        with pytest.raises(docker.errors.APIError) as ei:
            c.rename("pyrenamed")
        assert ei.value.status_code == 400
        assert c.update(mem_limit="80m", cpu_shares=512) == {"Warnings": []}
        c.reload()
        assert (c.attrs["HostConfig"]["Memory"], c.attrs["HostConfig"]["CpuShares"]) == \
            (80 << 20, 512)
        with pytest.raises(docker.errors.APIError) as ei:
            client.api.update_container(c.id, mem_limit=-5)
        assert ei.value.status_code == 400
        assert {"Path": "/tmp/f", "Kind": 1} in c.diff()
        data = b"".join(c.export())
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            assert "tmp/f" in {n.lstrip("./") for n in t.getnames()}
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.api.stats(c.id, stream=False)


def test_docker_cli_etc_files_and_ipv6_ports(docker_daemon: DockerDaemon, base: str,
                                             client: Any) -> None:
    """The docker CLI v28 and docker-py through nsprim's daemon: --add-host,
    --dns*, --hostname/--domainname land in the container's files and in
    inspect; -p publishes on 0.0.0.0 and [::], shown as docker shows them."""
    d = docker_daemon
    r = d.docker("run", "--rm", "--add-host", "db:10.1.2.3", "--add-host", "v6:::1",
                 "--dns", "192.0.2.53", "--dns-search", "corp.example", "--dns-option",
                 "ndots:3", "--hostname", "web", "--domainname", "example.com", base,
                 "sh", "-c", "cat /etc/hosts /etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "10.1.2.3\tdb" in lines and "::1\tv6" in lines
    assert any(x.endswith("\tweb.example.com web") for x in lines), lines
    assert lines[-3:] == ["nameserver 192.0.2.53", "search corp.example", "options ndots:3"]
    # docker-py's spelling of the same, read back from inspect
    c = client.containers.create(base, ["true"], extra_hosts={"db": "10.1.2.3"},
                                 dns=["192.0.2.53"], dns_search=["corp.example"])
    try:
        hc = c.attrs["HostConfig"]
        assert (hc["ExtraHosts"], hc["Dns"], hc["DnsSearch"]) == \
            (["db:10.1.2.3"], ["192.0.2.53"], ["corp.example"])
    finally:
        c.remove()
    # a bad value: docker's CLI gets the daemon's one line, nothing is created
    before = d.docker("ps", "-aq").stdout
    r = d.docker("run", "--rm", "--dns-search", "bad..domain", base, "true")
    assert r.returncode != 0 and "bad..domain" in r.stderr
    assert d.docker("ps", "-aq").stdout == before
    port = free_port()
    r = d.docker("run", "-d", "--name", "web6", "-p", f"{port}:80", base,
                 "httpd", "-f", "-p", "80", "-h", "/etc")
    assert r.returncode == 0, r.stderr
    try:
        ps = d.docker("ps", "--format", "{{.Ports}}", "--filter", "name=web6").stdout
        assert ps == f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp\n"
        assert d.docker("port", "web6").stdout == \
            f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://[::1]:{port}/hostname", timeout=2) as u:
                    assert u.read().strip() == r.stdout.strip()[:12].encode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        d.docker("rm", "-f", "web6")
