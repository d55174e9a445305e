"""Shared fixtures: a busybox rootfs built by the tests, probes that skip
(or fail, under NSPRIM_TESTS_MUST_RUN=1), and a check that nothing the suite
mounted is left on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nsprim.testing import busybox_rootfs, find_static_busybox

MUST_RUN = os.environ.get("NSPRIM_TESTS_MUST_RUN") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip the test unless `condition`; under NSPRIM_TESTS_MUST_RUN=1, fail."""
    if not condition:
        if MUST_RUN:
            pytest.fail(f"required, but not available here: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if MUST_RUN and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under NSPRIM_TESTS_MUST_RUN=1: {rep.longrepr}"


def _is_root() -> bool:
    return os.geteuid() == 0


def _static_busybox() -> str | None:
    return find_static_busybox()


@pytest.fixture
def root() -> None:
    need(_is_root(), "needs root")


def build_busybox_rootfs(dest: Path, busybox: str) -> Path:
    return busybox_rootfs(dest, busybox)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A read-mostly busybox rootfs shared by the session (tests must not modify it
    except under /tmp)."""
    need(_is_root(), "needs root")
    bb = _static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    path = build_busybox_rootfs(tmp_path_factory.mktemp("nsprim-rootfs"), bb)
    yield str(path)
    _assert_no_mounts_under(str(path))


@pytest.fixture
def fresh_rootfs(tmp_path: Path) -> str:
    """A rootfs of the test's own, which it may change."""
    need(_is_root(), "needs root")
    bb = _static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    return str(build_busybox_rootfs(tmp_path / "rootfs", bb))


def host_mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _assert_no_mounts_under(path: str) -> None:
    left = [m for m in host_mount_points() if m.startswith(path)]
    assert not left, f"mounts left on the host: {left}"


@pytest.fixture(autouse=True)
def _no_mount_leaks(tmp_path: Path) -> Iterator[None]:
    yield
    _assert_no_mounts_under(str(tmp_path))


def cli_at(root: str, *args: str, timeout: float = 60, **kw: object
           ) -> subprocess.CompletedProcess[str]:
    """The nsprim CLI with the state root `root` (a separate process)."""
    return subprocess.run([sys.executable, "-m", "nsprim", "--root", root, *args],
                          capture_output=True, text=True, timeout=timeout,
                          **kw)  # type: ignore[call-overload]


@pytest.fixture
def private_root(tmp_path: Path) -> Iterator[str]:
    """A state root of the test's own; every container is gone afterwards."""
    need(os.geteuid() == 0, "needs root")
    r = str(tmp_path / "state")
    yield r
    for cid in cli_at(r, "ps", "-a", "-q").stdout.split():
        cli_at(r, "rm", "-f", cid)
    cli_at(r, "ps")  # collects
    assert cli_at(r, "ps", "-a", "-q").stdout.strip() == ""


def nsprim_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the nsprim CLI as a user would (a separate process)."""
    return subprocess.run([sys.executable, "-m", "nsprim", *args], capture_output=True,
                          text=True, timeout=60, **kw)  # type: ignore[call-overload]


@pytest.fixture
def userns_rootfs() -> Iterator[str]:
    """A rootfs whose path a mapped (unprivileged) root can traverse: pytest's
    own temporary directories are mode 0700."""
    need(_is_root(), "needs root")
    bb = _static_busybox()
    need(bb is not None, "needs a static busybox (apt-get install busybox-static)")
    assert bb is not None
    import tempfile

    base = tempfile.mkdtemp(prefix="nsprim-test-userns-")
    os.chmod(base, 0o755)
    try:
        yield str(build_busybox_rootfs(Path(base) / "rootfs", bb))
        _assert_no_mounts_under(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _nsprim_state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test (and every CLI it starts) keeps nsprim's state in a
    temporary root; after the session no cgroup of nsprim may remain."""
    root = tmp_path_factory.mktemp("nsprim-state")
    old = os.environ.get("NSPRIM_ROOT")
    os.environ["NSPRIM_ROOT"] = str(root)
    yield
    from nsprim.helper import stop_under

    stop_under(str(tmp_path_factory.getbasetemp()))  # the CLI helpers the tests started
    if old is None:
        os.environ.pop("NSPRIM_ROOT", None)
    else:
        os.environ["NSPRIM_ROOT"] = old
    if _is_root():
        from nsprim.cgroup import PARENT, host_layout, iter_nsprim_cgroups

        left = list(iter_nsprim_cgroups())
        lay = host_layout()
        parents = [os.path.join(m, PARENT) for m in {lay.v2, *lay.v1.values()}
                   if m and os.path.isdir(os.path.join(m, PARENT))]
        assert not left and not parents, f"cgroups left on the host: {left + parents}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real OCI registry (Debian's docker-registry) on 127.0.0.1."""
    from .registry import Registry, tools_present

    need(_is_root(), "needs root")
    need(tools_present(), "needs docker-registry, skopeo and umoci (apt-get install "
         "docker-registry skopeo umoci)")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A registry that wants a login (htpasswd basic auth)."""
    from .registry import Registry, tools_present

    need(_is_root(), "needs root")
    need(tools_present() and shutil.which("htpasswd") is not None,
         "needs docker-registry, skopeo, umoci and htpasswd (apache2-utils)")
    reg = Registry(tmp_path_factory.mktemp("auth-registry"), user="tester", password="s3cret")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def images(registry: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Test images built with umoci, pushed to the registry with skopeo.
    Returns name -> reference."""
    from .registry import ImageBuilder, Registry

    assert isinstance(registry, Registry)
    bb = _static_busybox()
    assert bb is not None
    b = ImageBuilder(tmp_path_factory.mktemp("images"), bb)
    b.base("base")
    b.derive("base", "app", files={"/app/hello.txt": "hello from app\n"},
             cmd=["cat", "/app/hello.txt"], env=["APP=1"], workdir="/app")
    b.derive("base", "wh", delete=("/bin/vi", "/data"), cmd=["sh", "-c",
             "test -e /bin/vi && echo present || echo gone; ls /data 2>&1"])
    b.derive("app", "ep", entrypoint=["echo", "entry"], cmd=["default-arg"])
    b.derive("base", "stopint", stopsignal="SIGINT",
             cmd=["sh", "-c", "trap 'exit 42' INT; while :; do sleep 0.1; done"])
    b.derive("base", "vol", files={"/data/seed": "seed\n"}, volumes=["/data"],
             cmd=["cat", "/data/seed"])
    b.multiarch("multi", "app")
    refs = {}
    for tag, repo in (("base", "test/base"), ("app", "test/app"), ("wh", "test/wh"),
                      ("ep", "test/ep"), ("stopint", "test/stopint"), ("vol", "test/vol")):
        refs[tag] = registry.push(b.layout, tag, repo) + ":latest"
    refs["multi"] = registry.push(b.layout, "multi", "test/multi", all_=True) + ":latest"
    refs["layout"] = str(b.layout)
    return refs


class DockerDaemon:
    """An `nsprim daemon` of the tests' own: its socket, state root and the
    environment that points the docker CLI and docker-py at it."""

    def __init__(self, base: Path) -> None:
        self.root = str(base / "state")
        self.sock = str(base / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.config_dir = base / "docker-config"
        self.config_dir.mkdir()
        self.log = open(base / "daemon.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.config_dir),
                        TESTCONTAINERS_RYUK_DISABLED="true")
        self.start()

    def start(self) -> None:
        import time

        self.proc = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", self.root,
                                      "daemon", "-H", self.host], stdout=self.log,
                                     stderr=subprocess.STDOUT)

        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.02)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def docker(self, *args: str, timeout: float = 60, **kw: Any
               ) -> subprocess.CompletedProcess[str]:
        """The real docker CLI against this daemon."""
        return subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, **kw)

    def stop(self) -> None:
        for cid in self.docker("ps", "-aq").stdout.split():
            self.docker("rm", "-f", cid)
        # a test that failed midway may leave a network: its bridge and nft
        # tables are host objects that outlive the state root
        self.docker("network", "prune", "-f")
        self.proc.terminate()
        rc = self.proc.wait(30)
        self.log.close()
        assert rc == 0, f"the daemon exited {rc}"
        assert not os.path.exists(self.sock), "the daemon left its socket"


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """`nsprim daemon` on a temporary socket and state root (one per session);
    every container is removed afterwards."""
    need(_is_root(), "needs root")
    need(shutil.which("docker") is not None, "needs the docker CLI (docker-ce-cli or docker.io)")
    d = DockerDaemon(tmp_path_factory.mktemp("daemon"))
    yield d
    d.stop()
    assert cli_at(d.root, "ps", "-a", "-q").stdout.strip() == ""
    nets = cli_at(d.root, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert set(nets) <= {"bridge", "host", "none"}, f"networks left: {nets}"
# the unprivileged users of the rootless tests (tests/rootless_users.py)
from .rootless_users import rootless_users_fixture  # noqa: E402,F401
