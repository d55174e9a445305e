"""nsprim-runtime under the real engines, each on private roots and sockets:
podman (conmon), containerd's ctr (io.containerd.runc.v2 with
--runc-binary, the Kubernetes path) and dockerd (--add-runtime)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import need
from .test_oci_runtime import RUNTIME, cgroups_of, runtime_available

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def _wait_for(path: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"{what} did not start: {out[-2000:]}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _umount_under(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


# ------------------------------------------------------------------ podman

def runtime_wrapper(base: Path, root: str) -> str:
    """``<base>/bin/nsprim-runtime``: the runtime with ``--root root``."""
    (base / "bin").mkdir(exist_ok=True)
    w = base / "bin" / "nsprim-runtime"
    w.write_text(f'#!/bin/sh\nexec {RUNTIME} --root {root} "$@"\n')
    w.chmod(0o755)
    return str(w)


class Podman:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.rt_root = str(base / "runtime")
        conf = base / "containers.conf"
        # podman passes --log-format=json only to runtimes it knows by name
        conf.write_text('[engine]\nruntime_supports_json = ["nsprim-runtime"]\n'
                        'lock_type = "file"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        # the runtime's private root: a wrapper named like the runtime (podman
        # gives neither its --runtime-flag to the exit command that deletes a
        # container nor its environment to the runtime)
        self.runtime = runtime_wrapper(base, self.rt_root)
        self.args = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"),
                     "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--runtime", self.runtime]

    def __call__(self, *args: str, timeout: float = 120, **kw: Any
                 ) -> subprocess.CompletedProcess[str]:
        # conmon writes an "oom" file into its working directory: keep it ours
        kw.setdefault("cwd", str(self.base))
        return subprocess.run([*self.args, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, **kw)


@pytest.fixture(scope="session")
def podman(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Podman, str]]:
    need(shutil.which("podman") is not None, "needs podman (apt-get install podman)")
    need(runtime_available(), "nsprim-runtime is not installed")
    p = Podman(tmp_path_factory.mktemp("podman"))
    r = p("pull", "--tls-verify=false", images["base"])
    assert r.returncode == 0, r.stderr
    yield p, images["base"]
    p("rm", "-a", "-f", "-t", "0")
    p("system", "reset", "-f")
    _umount_under(str(p.base))
    left = [n for n in os.listdir(p.rt_root) if not n.startswith(".")] \
        if os.path.isdir(p.rt_root) else []
    assert left == []
    assert cgroups_of(p.rt_root) == []


def test_podman_run_rm_output_and_exit_codes(podman: tuple[Podman, str]) -> None:
    p, img = podman
    r = p("run", "--rm", "--network", "none", *ULIMITS, img, "sh", "-c",
          "echo hello from podman; echo err >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "hello from podman\n" and "err" in r.stderr
    r = p("run", "--rm", "--network", "none", *ULIMITS, img, "no-such-command")
    assert r.returncode == 127, r.stderr
    r = p("run", "--rm", "--network", "none", *ULIMITS, img, "sh", "-c",
          "sh -c 'kill -9 $$'; exit $?")
    assert r.returncode == 137


def test_podman_detached_logs_exec_pause_stop_rm(podman: tuple[Podman, str]) -> None:
    p, img = podman
    r = p("run", "-d", "--name", "web", "--network", "none", *ULIMITS, img, "sh", "-c",
          "echo up; trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in os.listdir(p.rt_root)  # the private runtime root
    try:
        deadline = time.monotonic() + 20
        while "up" not in p("logs", "web").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = p("exec", "web", "sh", "-c", "echo exec $HOSTNAME; exit 3")
        assert r.returncode == 3 and r.stdout.startswith("exec ")
        r = subprocess.run(["script", "-qec", " ".join(
            [*p.args, "exec", "-it", "web", "sh", "-c", "'tty; echo tty-ok'"]), "/dev/null"],
            capture_output=True, text=True, timeout=60, env=p.env, cwd=str(p.base))
        assert "/dev/pts/" in r.stdout and "tty-ok" in r.stdout, r.stdout + r.stderr
        assert p("pause", "web").returncode == 0
        assert p("inspect", "-f", "{{.State.Status}}", "web").stdout.strip() == "paused"
        assert p("unpause", "web").returncode == 0
        assert p("inspect", "-f", "{{.State.Status}}", "web").stdout.strip() == "running"
        r = p("stop", "-t", "10", "web")
        assert r.returncode == 0, r.stderr
        assert "got-term" in p("logs", "web").stdout
        assert p("inspect", "-f", "{{.State.ExitCode}}", "web").stdout.strip() == "0"
    finally:
        r = p("rm", "-f", "web")
    assert r.returncode == 0
    assert p("ps", "-a", "-q").stdout.strip() == ""


def test_podman_stop_kills_after_timeout_and_rm_force(podman: tuple[Podman, str]) -> None:
    p, img = podman
    assert p("run", "-d", "--name", "stubborn", "--network", "none", *ULIMITS, img, "sh",
             "-c", "trap '' TERM; while :; do sleep 0.1; done").returncode == 0
    r = p("stop", "-t", "1", "stubborn")
    assert r.returncode == 0
    assert p("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout.strip() == "137"
    assert p("run", "-d", "--name", "other", "--network", "none", *ULIMITS, img,
             "sleep", "100").returncode == 0
    assert p("rm", "-f", "-t", "0", "stubborn", "other").returncode == 0
    assert p("ps", "-a", "-q").stdout.strip() == ""


def test_podman_memory_and_pids_limits(podman: tuple[Podman, str]) -> None:
    p, img = podman
    r = p("run", "--rm", "--network", "none", *ULIMITS, "--memory", "20m",
          "--memory-swap", "20m", img, "sh", "-c",
          'x=$(head -c 40000000 /dev/zero | tr "\\0" a); echo survived')
    assert r.returncode == 137 and "survived" not in r.stdout
    r = p("run", "--rm", "--network", "none", *ULIMITS, "--pids-limit", "5", img, "sh", "-c",
          "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done")
    assert "can't fork" in r.stderr


# -------------------------------------------------------------- containerd

class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = str(base / "containerd.sock")
        self.rt_root = str(base / "runc-root")
        cfg = base / "config.toml"
        cfg.write_text(f"""version = 2
root = "{base / 'root'}"
state = "{base / 'state'}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{base / 'debug.sock'}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / 'opt'}"
""")
        self.proc = subprocess.Popen(["containerd", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait_for(self.sock, self.proc, "containerd")

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.sock, "--namespace", "nsprim-test",
                               *args], capture_output=True, text=True, timeout=timeout)

    def run_args(self) -> list[str]:
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary", RUNTIME,
                "--runc-root", self.rt_root]

    def stop(self) -> None:
        _stop(self.proc)
        _umount_under(str(self.base))


@pytest.fixture(scope="session")
def containerd(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Containerd, str]]:
    need(shutil.which("containerd") is not None and shutil.which("ctr") is not None,
         "needs containerd (apt-get install containerd)")
    need(runtime_available(), "nsprim-runtime is not installed")
    c = Containerd(tmp_path_factory.mktemp("containerd"))
    try:
        ref = images["base"]
        r = c.ctr("images", "pull", "--plain-http", ref)
        assert r.returncode == 0, r.stderr
        yield c, ref
        for t in c.ctr("tasks", "ls", "-q").stdout.split():
            c.ctr("tasks", "kill", "-s", "KILL", t)
            c.ctr("tasks", "rm", "-f", t)
        for ct in c.ctr("containers", "ls", "-q").stdout.split():
            c.ctr("containers", "rm", ct)
    finally:
        c.stop()
    assert cgroups_of(c.rt_root) == []


def test_ctr_run_rm_output(containerd: tuple[Containerd, str]) -> None:
    c, ref = containerd
    r = c.ctr("run", "--rm", *c.run_args(), ref, "once", "sh", "-c",
              "echo hello from containerd; exit 5")
    assert r.stdout == "hello from containerd\n", r.stderr
    assert r.returncode == 5
    assert "once" not in c.ctr("containers", "ls", "-q").stdout


def test_ctr_detached_ps_exec_pause_kill(containerd: tuple[Containerd, str]) -> None:
    c, ref = containerd
    r = c.ctr("run", "-d", *c.run_args(), ref, "bg", "sh", "-c",
              "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    try:
        assert "bg" in os.listdir(os.path.join(c.rt_root, "nsprim-test"))  # --runc-root
        ps = c.ctr("tasks", "ps", "bg")
        assert ps.returncode == 0 and len(ps.stdout.strip().splitlines()) >= 2, ps.stderr
        r = c.ctr("tasks", "exec", "--exec-id", "e1", "bg", "sh", "-c", "echo in-exec; exit 2")
        assert "in-exec" in r.stdout and r.returncode == 2, r.stderr
        assert c.ctr("tasks", "pause", "bg").returncode == 0
        assert "PAUSED" in c.ctr("tasks", "ls").stdout
        assert c.ctr("tasks", "resume", "bg").returncode == 0
        assert "RUNNING" in c.ctr("tasks", "ls").stdout
        assert c.ctr("tasks", "kill", "bg").returncode == 0  # TERM
        deadline = time.monotonic() + 20
        while "STOPPED" not in c.ctr("tasks", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        c.ctr("tasks", "rm", "-f", "bg")
        c.ctr("containers", "rm", "bg")
    assert "bg" not in c.ctr("containers", "ls", "-q").stdout


# ------------------------------------------------------------------ dockerd

class Dockerd:
    def __init__(self, base: Path, containerd_sock: str, registry_host: str) -> None:
        self.base = base
        self.sock = str(base / "docker.sock")
        exec_root = base / "exec"
        self.rt_root = str(exec_root / "runtime-runc")  # dockerd 20.10 roots every runtime there
        (base / "daemon.json").write_text("{}")
        self.proc = subprocess.Popen([
            "dockerd", "--host", f"unix://{self.sock}", "--data-root", str(base / "data"),
            "--exec-root", str(exec_root), "--pidfile", str(base / "docker.pid"),
            "--containerd", containerd_sock, "--config-file", str(base / "daemon.json"),
            "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--bridge=none", "--userland-proxy=false", "--add-runtime", f"nsprim={RUNTIME}",
            "--insecure-registry", registry_host, "--storage-driver", "vfs",
            "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=1024:1024"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _wait_for(self.sock, self.proc, "dockerd")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.env.pop("DOCKER_CONTEXT", None)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env)


@pytest.fixture(scope="session")
def dockerd(containerd: tuple[Containerd, str], registry: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dockerd, str]]:
    need(shutil.which("dockerd") is not None and shutil.which("docker") is not None,
         "needs dockerd (apt-get install docker.io) and the docker CLI")
    c, ref = containerd
    d = Dockerd(tmp_path_factory.mktemp("dockerd"), c.sock, registry.host)
    try:
        r = d("pull", ref)
        assert r.returncode == 0, r.stderr
        yield d, ref
        ids = d("ps", "-a", "-q").stdout.split()
        if ids:
            d("rm", "-f", *ids)
    finally:
        _stop(d.proc)
        _umount_under(str(d.base))
    assert cgroups_of(d.rt_root) == []


def test_docker_run_rm_exit_codes(dockerd: tuple[Dockerd, str]) -> None:
    d, ref = dockerd
    r = d("run", "--rm", "--runtime", "nsprim", "--network", "none", ref, "sh", "-c",
          "echo hello from docker; exit 9")
    assert r.returncode == 9 and r.stdout == "hello from docker\n", r.stderr
    r = d("run", "--rm", "--runtime", "nsprim", "--network", "none", ref, "no-such-cmd")
    assert r.returncode == 127, r.stderr


def test_docker_detached_exec_stop_rm(dockerd: tuple[Dockerd, str]) -> None:
    d, ref = dockerd
    r = d("run", "-d", "--name", "dweb", "--runtime", "nsprim", "--network", "none", ref, "sh",
          "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    try:
        info = json.loads(d("inspect", "dweb").stdout)[0]
        assert info["HostConfig"]["Runtime"] == "nsprim" and info["State"]["Running"]
        assert info["Id"] in os.listdir(os.path.join(d.rt_root, "moby"))  # the exec root's
        r = d("exec", "dweb", "sh", "-c", "echo exec-ok; exit 6")
        assert r.returncode == 6 and r.stdout == "exec-ok\n"
        r = d("stop", "-t", "10", "dweb")
        assert r.returncode == 0, r.stderr
        assert d("inspect", "-f", "{{.State.ExitCode}}", "dweb").stdout.strip() == "0"
    finally:
        r = d("rm", "-f", "dweb")
    assert r.returncode == 0
    assert d("ps", "-a", "-q").stdout.strip() == ""
