"""The `nsprim` command as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import nsprim_cli


def one_line_error(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nsprim: ")
    assert "Traceback" not in stderr


def test_version() -> None:
    r = nsprim_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("nsprim ")


def test_run_output_and_flags(rootfs: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "--hostname", "h1", "-e", "A=b",
                   "-w", "/tmp", "-u", "1000:1000", "--", "sh", "-c",
                   "echo $A $HOSTNAME; pwd; id -u; id -g; hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:5] == ["b h1", "/tmp", "1000", "1000", "h1"]


@pytest.mark.parametrize("cmd,code", [
    (["sh", "-c", "exit 3"], 3),
    (["true"], 0),
    (["no-such-command"], 127),
    (["/notexec"], 126),
])
def test_exit_codes(rootfs: str, cmd: list[str], code: int) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "--", *cmd)
    assert r.returncode == code, r.stderr
    if code >= 126:
        one_line_error(r.stderr)
        assert cmd[0] in r.stderr


def test_killed_by_signal_is_128_plus_n(rootfs: str) -> None:
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "run", "--rm", "--rootfs", rootfs,
                          "--", "sh", "-c", "echo up; exec sleep 30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "up\n"
        # find the container's process on the host: a child of the CLI
        children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGKILL)
        assert p.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        p.kill()
        p.wait()


def test_sigterm_forwarded_to_container(rootfs: str) -> None:
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "run", "--rm", "--rootfs", rootfs,
                          "--", "sh", "-c", "trap 'exit 9' TERM; echo up; "
                          "while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "up\n"
        time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 9
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("args,needle", [
    (["--hostname", "bad_name"], "bad_name"),
    (["-u", "99999999999"], "99999999999"),
    (["-u", "ghost"], "ghost"),
    (["-e", "=x"], "''"),
    (["--cap-add", "NOPE"], "NOPE"),
    # docker's CLI makes ./relative absolute: the error names that path
    (["-v", "./relative:/x"], f"{os.getcwd()}/relative"),
    (["-v", "vol:relative"], "vol:relative"),
    (["-v", "bad name:/x"], "bad name"),
    (["-v", "/no/such/dir:/x"], "/no/such/dir"),
    (["--network", "moon"], "moon"),
    (["--userns-map", "abc"], "abc"),
])
def test_bad_input_is_one_line_125(rootfs: str, args: list[str], needle: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, *args, "--", "true")
    assert r.returncode == 125
    one_line_error(r.stderr)
    assert needle in r.stderr


def test_bad_rootfs(tmp_path: Path) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", str(tmp_path / "nope"), "--", "true")
    assert r.returncode == 125
    one_line_error(r.stderr)
    assert "nope" in r.stderr


def test_unknown_flag_is_125() -> None:
    r = nsprim_cli("run", "--frobnicate")
    assert r.returncode == 125
    one_line_error(r.stderr)


def test_read_only_and_volume(rootfs: str, tmp_path: Path) -> None:
    d = tmp_path / "vol"
    d.mkdir()
    # each write on its own line with its own status: the volume and the tmpfs
    # are writable, the read-only root is not, and /run/ok really is in /run
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "--read-only", "-v", f"{d}:/data",
                   "--tmpfs", "/run:size=1m", "--", "sh", "-c",
                   "echo hi > /data/f; echo data=$?; touch /run/ok; echo run=$?; "
                   "touch /nope; echo nope=$?; ls /run; grep ' /run ' /proc/self/mounts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["data=0", "run=0", "nope=1", "ok"], r.stdout
    assert lines[4].split()[:3] == ["tmpfs", "/run", "tmpfs"], r.stdout
    assert "/nope" in r.stderr and "Read-only file system" in r.stderr, r.stderr
    assert (d / "f").read_text() == "hi\n"
    assert not os.path.exists(os.path.join(rootfs, "nope"))
    assert not os.path.exists(os.path.join(rootfs, "run", "ok"))  # it went to the tmpfs


def test_memory_limit_oom_is_137(rootfs: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "-m", "32m", "--memory-swap", "32m",
                   "--", "sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done")
    assert r.returncode == 137


def _cgroup_file(pid: int, controller: str, v1_name: str, v2_name: str) -> str:
    """The host path of `pid`'s cgroup file for `controller`: `v1_name` in a
    v1 hierarchy of that controller, else `v2_name` in the unified one."""
    from nsprim.cgroup import host_layout

    lay = host_layout()
    v2_path = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(",") and controller in lay.v1:
            return os.path.join(lay.v1[controller] + path, v1_name)
        if ctrls == "":
            v2_path = path
    assert lay.v2 is not None and v2_path is not None and controller in lay.v2_controllers, \
        f"no {controller} controller for pid {pid}"
    return os.path.join(lay.v2 + v2_path, v2_name)


def _read(path: str) -> str:
    return Path(path).read_text().strip()


def test_resource_flags_together(rootfs: str) -> None:
    # the limits are read, while the container runs, from the cgroup files
    # its process is in (as the host sees them: v1 or v2, whichever is here)
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "run", "--rm", "--rootfs", rootfs,
                          "-m", "256m", "--memory-swap", "256m", "--cpus", "0.5",
                          "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "64",
                          "--", "sh", "-c", "echo up; exec sleep 30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "up\n"
        children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        assert len(children) == 1
        pid = int(children[0])
        from nsprim.cgroup import host_layout, shares_to_weight

        v1 = host_layout().v1
        mem = _cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max")
        assert int(_read(mem)) == 256 << 20
        if "memory" in v1:
            swap = os.path.join(os.path.dirname(mem), "memory.memsw.limit_in_bytes")
            if os.path.exists(swap):  # swap accounting on: memory + swap = 256m
                assert int(_read(swap)) == 256 << 20
        else:
            swap = os.path.join(os.path.dirname(mem), "memory.swap.max")
            if os.path.exists(swap):  # v2 counts swap alone: none
                assert _read(swap) == "0"
        pids = _cgroup_file(pid, "pids", "pids.max", "pids.max")
        assert _read(pids) == "64"
        cpus = _cgroup_file(pid, "cpuset", "cpuset.cpus", "cpuset.cpus")
        assert _read(cpus) == "0"
        if "cpu" in v1:
            d = os.path.dirname(_cgroup_file(pid, "cpu", "cpu.shares", "cpu.weight"))
            quota, period = _read(f"{d}/cpu.cfs_quota_us"), _read(f"{d}/cpu.cfs_period_us")
            assert int(quota) * 2 == int(period), (quota, period)  # 0.5 CPU
            assert _read(f"{d}/cpu.shares") == "512"
        else:
            d = os.path.dirname(_cgroup_file(pid, "cpu", "cpu.shares", "cpu.weight"))
            quota, period = _read(f"{d}/cpu.max").split()
            assert int(quota) * 2 == int(period), (quota, period)
            assert _read(f"{d}/cpu.weight") == str(shares_to_weight(512))
        os.kill(pid, signal.SIGKILL)
        assert p.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("args,needle", [
    (["-m", "abc"], "'abc'"),
    (["-m", "1k"], "minimum"),
    (["--memory-swap", "1g"], "memory-swap"),
    (["--cpus", "-1"], "'-1'"),
    (["--cpu-shares", "1"], "cpu-shares 1"),
    (["--cpuset-cpus", "0-999"], "0-999"),
    (["--pids-limit", "ten"], "'ten'"),
    (["--device-write-bps", "/dev/null:1mb"], "/dev/null"),
])
def test_bad_resource_flags(rootfs: str, args: list[str], needle: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, *args, "--", "true")
    assert r.returncode == 125
    one_line_error(r.stderr)
    assert needle in r.stderr


def test_init_flag(rootfs: str) -> None:
    # what --init changes: PID 1 is the sealed nsprim-init (a memfd), which
    # forks the command as PID 2 and passes its exit code through
    script = "readlink /proc/1/exe; echo $$; exit 4"
    r = nsprim_cli("run", "--rm", "--init", "--network", "none", "--rootfs", rootfs, "--",
                   "sh", "-c", script)
    assert r.returncode == 4, r.stderr
    assert r.stdout.splitlines() == ["/memfd:nsprim-init (deleted)", "2"], r.stdout
    # without it the command itself is PID 1 (sh is busybox here)
    r = nsprim_cli("run", "--rm", "--network", "none", "--rootfs", rootfs, "--",
                   "sh", "-c", script)
    assert r.returncode == 4, r.stderr
    assert r.stdout.splitlines() == ["/bin/busybox", "1"], r.stdout


def test_root_flag_is_passed_not_put_in_the_environment(tmp_path: Path, rootfs: str) -> None:
    """--root chooses the state root explicitly: the caller's environment is
    untouched (a library user calling main() keeps theirs), and a detached
    container's supervisor is given the root on its command line."""
    import nsprim.state
    from nsprim.cli import main

    before = os.environ.get("NSPRIM_ROOT")
    root = str(tmp_path / "explicit")
    try:
        assert main(["--root", root, "volume", "ls"]) == 0
        assert os.environ.get("NSPRIM_ROOT") == before
        assert nsprim.state._root_path() == root
    finally:
        nsprim.state._chosen = None  # back to the environment's default
    assert nsprim.state._root_path() == before
    env = {k: v for k, v in os.environ.items() if k not in ("NSPRIM_ROOT", "NSPRIM_RUN")}
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "run", "-d", "--name",
                        "explicit", "--network", "none", "--rootfs", rootfs, "sleep", "30"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        ps = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "ps", "-q"],
                            env=env, capture_output=True, text=True, timeout=60)
        assert r.stdout.strip()[:12] in ps.stdout
        assert os.path.isdir(os.path.join(root, "containers", r.stdout.strip()))
    finally:
        subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "rm", "-f", "explicit"],
                       env=env, capture_output=True, timeout=60)
