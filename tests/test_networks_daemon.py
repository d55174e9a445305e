"""User-defined networks through `nsprim daemon`: docker-compose v1's default
project network (two services find each other by service name), and the
docker CLI's network commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import DockerDaemon, need


@pytest.fixture(scope="module")
def base(images: dict[str, str], docker_daemon: DockerDaemon) -> str:
    assert docker_daemon.docker("pull", images["base"]).returncode == 0
    return images["base"]


def test_compose_services_find_each_other_by_name(docker_daemon: DockerDaemon, base: str,
                                                  tmp_path: Path) -> None:
    need(shutil.which("docker-compose") is not None,
         "needs docker-compose v1 (apt-get install docker-compose)")
    (tmp_path / "docker-compose.yml").write_text(f"""
version: "2.4"
services:
  web:
    image: {base}
    command: ["sleep", "300"]
  backend:
    image: {base}
    command: ["sh", "-c", "echo from-backend > /tmp/hostname; exec httpd -f -p 8080 -h /tmp"]
""")

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", "nspnet", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env=docker_daemon.env)

    r = compose("up", "-d")
    try:
        assert r.returncode == 0, r.stderr
        nets = json.loads(docker_daemon.docker("network", "inspect", "nspnet_default").stdout)
        assert len(nets[0]["Containers"]) == 2
        got = None
        for _ in range(50):
            got = docker_daemon.docker("exec", "nspnet_web_1", "wget", "-qO-",
                                       "http://backend:8080/hostname")
            if got.returncode == 0:
                break
            time.sleep(0.1)
        assert got is not None and got.stdout == "from-backend\n", got.stderr
        # and by container name
        got = docker_daemon.docker("exec", "nspnet_web_1", "nslookup", "nspnet_backend_1")
        assert got.returncode == 0, got.stdout + got.stderr
    finally:
        down = compose("down", "-t", "1")
    assert down.returncode == 0, down.stderr
    assert "nspnet_default" not in docker_daemon.docker("network", "ls").stdout


def test_docker_cli_network_commands(docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon.docker
    r = d("network", "create", "--label", "k=v", "clinet")
    assert r.returncode == 0, r.stderr
    try:
        assert "clinet" in d("network", "ls", "--filter", "label=k=v").stdout
        assert d("network", "create", "clinet").returncode != 0
        r = d("run", "-d", "--name", "clin1", "--network", "clinet", "--network-alias", "one",
              base, "sleep", "60")
        assert r.returncode == 0, r.stderr
        r = d("run", "--rm", "--network", "clinet", base, "nslookup", "one")
        assert r.returncode == 0 and "Address" in r.stdout, r.stdout + r.stderr
        r = d("network", "rm", "clinet")
        assert r.returncode != 0 and "active endpoints" in r.stderr
        d("rm", "-f", "clin1")
    finally:
        d("rm", "-f", "clin1")
        assert d("network", "rm", "clinet").returncode == 0
    assert d("network", "inspect", "clinet").returncode != 0


def test_docker_cli_connects_a_created_container_to_a_second_network(
        docker_daemon: DockerDaemon, base: str) -> None:
    d = docker_daemon.docker
    for net in ("dmna", "dmnb"):
        assert d("network", "create", net).returncode == 0
    try:
        r = d("create", "--name", "dmx", "--network", "dmna", base, "sleep", "60")
        assert r.returncode == 0, r.stderr
        r = d("network", "connect", "--alias", "dmalias", "dmnb", "dmx")
        assert r.returncode == 0, r.stderr
        r = d("network", "connect", "dmnb", "dmx")
        assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
        assert d("start", "dmx").returncode == 0
        r = d("exec", "dmx", "ip", "-4", "addr", "show", "eth1")
        assert r.returncode == 0 and "inet " in r.stdout, r.stdout + r.stderr
        for name in ("dmx", "dmalias"):
            r = d("run", "--rm", "--network", "dmnb", base, "nslookup", name)
            assert r.returncode == 0 and "Address" in r.stdout, r.stdout + r.stderr
        nets = json.loads(d("inspect", "dmx").stdout)[0]["NetworkSettings"]["Networks"]
        assert set(nets) == {"dmna", "dmnb"} and nets["dmnb"]["IPAddress"]
        info = json.loads(d("network", "inspect", "dmnb").stdout)[0]
        assert "dmx" in [c["Name"] for c in info["Containers"].values()]
        assert d("stop", "-t", "1", "dmx").returncode == 0
        assert d("network", "disconnect", "dmnb", "dmx").returncode == 0
        nets = json.loads(d("inspect", "dmx").stdout)[0]["NetworkSettings"]["Networks"]
        assert set(nets) == {"dmna"}
    finally:
        d("rm", "-f", "dmx")
        for net in ("dmna", "dmnb"):
            d("network", "rm", net)
    assert "dmnb" not in d("network", "ls").stdout
