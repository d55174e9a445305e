"""The four escapes fixed earlier, tried again through the front ends whose
files did not try them all: the `nsprim` command (C front end + helper, and
its Python path), the daemon through the docker CLI and docker-py, and `exec`
in each.  (The library, `run -d`/exec of `python -m nsprim`, build RUN, the
OCI runtime and rootless have theirs: test_escape, test_new_exec_paths,
test_build, test_oci, test_rootless.)

For each path that ends in an execve in a container (run, exec, --init):
- no fd leads out at the working directory: -w /proc/self/fd/N never
  starts the command in the host's tree, and the command has only 0-2;
- docker's seccomp profile is on (Seccomp: 2), NoNewPrivs is docker's (0,
  1 with --security-opt no-new-privileges), docker's 14 capabilities;
- --init's PID 1 is the sealed nsprim-init, not a host program;
- a device node made inside (CAP_MKNOD is docker's) opens nowhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import DockerDaemon
from ..test_frontend import Front
from ..test_frontend import front as front  # noqa: F401 - the fixture, both CLI paths

HOST_MARKER = f"/tmp/nsprim-host-marker-{uuid.uuid4().hex[:8]}"
# from the working directory, climb: at the host's / it would read the marker
CLIMB = "cd ../../../../../../../../.. 2>/dev/null; cat ." + HOST_MARKER + " 2>&1; true"
DOCKER_CAPS = "00000000a80425fb"
# what runs in each container: the probe lists the fds it got at exec (a
# child of sh: what sh got), then the protections, then a made device node
# (c 1 11: /dev/kmsg, the host kernel's log)
CHECKS = ("/p/probe fds; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; "
          "mknod /tmp/k-$$ c 1 11 && (head -c1 /tmp/k-$$ >/dev/null 2>&1 && echo DEVICE-OPEN "
          "|| echo device-closed); rm -f /tmp/k-$$; true")
WORKDIR_FDS = range(3, 12)


@pytest.fixture(autouse=True)
def _host_marker() -> Iterator[None]:
    Path(HOST_MARKER).write_text("HOST-SECRET\n")
    yield
    os.unlink(HOST_MARKER)


@pytest.fixture(scope="module")
def probe_dir(probe: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory with only the static probe, bound at /p."""
    import shutil

    d = tmp_path_factory.mktemp("probe-dir")
    os.chmod(d, 0o755)
    shutil.copy(probe, d / "probe")
    os.chmod(d / "probe", 0o755)
    return str(d)


def assert_contained(out: str, nnp: str = "0") -> None:
    lines = out.splitlines()
    fds = [ln.split()[0] for ln in lines if ln[:1].isdigit() and " " in ln]
    assert fds == ["0", "1", "2"], out
    status = dict(ln.split(":\t") for ln in lines if ":\t" in ln)
    assert status == {"Seccomp": "2", "NoNewPrivs": nnp, "CapEff": DOCKER_CAPS}, out
    assert "device-closed" in lines and "DEVICE-OPEN" not in out, out


# ------------------------------------- the nsprim command (C front end + helper)

def test_nsprim_command_run_exec_and_init(front: Front, hostile_rootfs: str,  # noqa: F811
                                          probe_dir: str) -> None:
    base = ["--network", "none", "-v", f"{probe_dir}:/p:ro", "--rootfs", hostile_rootfs]
    r = front("run", "--rm", *base, "sh", "-c", CHECKS)
    assert r.returncode == 0, r.stderr
    assert_contained(r.stdout)
    r = front("run", "--rm", "--security-opt", "no-new-privileges", *base, "sh", "-c", CHECKS)
    assert_contained(r.stdout, nnp="1")
    for n in WORKDIR_FDS:
        r = front("run", "--rm", "-w", f"/proc/self/fd/{n}", *base, "sh", "-c", CLIMB)
        assert "HOST-SECRET" not in r.stdout and r.returncode in (125, 127), (n, r)
    name = f"fe-{uuid.uuid4().hex[:6]}"
    r = front("run", "-d", "--init", "--name", name, *base, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = front("exec", name, "sh", "-c", "readlink /proc/1/exe; " + CHECKS)
        assert r.stdout.startswith("/memfd:nsprim-init (deleted)\n"), r
        assert_contained(r.stdout)
        for n in WORKDIR_FDS:
            r = front("exec", "-w", f"/proc/self/fd/{n}", name, "sh", "-c", CLIMB)
            assert "HOST-SECRET" not in r.stdout and r.returncode != 0, (n, r)
    finally:
        front("rm", "-f", name)


# ------------------------------------------------ the daemon: docker CLI, docker-py

@pytest.fixture(scope="module")
def base(images: dict[str, str], docker_daemon: DockerDaemon) -> str:
    r = docker_daemon.docker("pull", images["base"])
    assert r.returncode == 0, r.stderr
    return images["base"]


def test_docker_cli_run_exec_and_init(docker_daemon: DockerDaemon, base: str,
                                      probe_dir: str) -> None:
    d = docker_daemon
    vol = ["-v", f"{probe_dir}:/p:ro"]
    r = d.docker("run", "--rm", *vol, base, "sh", "-c", CHECKS)
    assert r.returncode == 0, r.stderr
    assert_contained(r.stdout)
    r = d.docker("run", "--rm", "--security-opt", "no-new-privileges", *vol, base, "sh", "-c",
                 CHECKS)
    assert_contained(r.stdout, nnp="1")
    for n in WORKDIR_FDS:
        r = d.docker("run", "--rm", "-w", f"/proc/self/fd/{n}", base, "sh", "-c", CLIMB)
        assert "HOST-SECRET" not in r.stdout and r.returncode != 0, (n, r)
    name = f"fe-{uuid.uuid4().hex[:6]}"
    r = d.docker("run", "-d", "--init", "--name", name, *vol, base, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = d.docker("exec", name, "sh", "-c", "readlink /proc/1/exe; " + CHECKS)
        assert r.stdout.startswith("/memfd:nsprim-init (deleted)\n"), r
        assert_contained(r.stdout)
        for n in WORKDIR_FDS:
            r = d.docker("exec", "-w", f"/proc/self/fd/{n}", name, "sh", "-c", CLIMB)
            assert "HOST-SECRET" not in r.stdout and r.returncode != 0, (n, r)
    finally:
        d.docker("rm", "-f", name)


def test_docker_py_run_and_exec_run(docker_daemon: DockerDaemon, base: str,
                                    probe_dir: str) -> None:
    import docker

    client: Any = docker.DockerClient(base_url=docker_daemon.host, timeout=60)
    vols = {probe_dir: {"bind": "/p", "mode": "ro"}}
    try:
        out = client.containers.run(base, ["sh", "-c", CHECKS], volumes=vols, remove=True)
        assert_contained(out.decode())
        c = client.containers.run(base, ["sleep", "60"], volumes=vols, detach=True,
                                  init=True)
        try:
            code, out = c.exec_run(["sh", "-c", "readlink /proc/1/exe; " + CHECKS])
            assert code == 0 and out.decode().startswith("/memfd:nsprim-init"), out
            assert_contained(out.decode())
            for n in WORKDIR_FDS:
                code, out = c.exec_run(["sh", "-c", CLIMB], workdir=f"/proc/self/fd/{n}")
                assert b"HOST-SECRET" not in out and code != 0, (n, code, out)
        finally:
            c.remove(force=True)
    finally:
        client.close()
