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
    (["-v", "./relative:/x"], "./relative:/x"),
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
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "--read-only", "-v", f"{d}:/data",
                   "--tmpfs", "/run:size=1m", "--", "sh", "-c",
                   "echo hi > /data/f && touch /run/ok && touch /nope; echo rc=$?")
    assert (d / "f").read_text() == "hi\n"
    assert "rc=1" in r.stdout


def test_memory_limit_oom_is_137(rootfs: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "-m", "32m", "--memory-swap", "32m",
                   "--", "sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done")
    assert r.returncode == 137


def test_resource_flags_together(rootfs: str) -> None:
    r = nsprim_cli("run", "--rm", "--rootfs", rootfs, "-m", "256m", "--memory-swap", "256m",
                   "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0",
                   "--pids-limit", "64", "--", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    assert "0::/" in r.stdout.split()


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
    r = nsprim_cli("run", "--rm", "--init", "--network", "none", "--rootfs", rootfs, "--",
                   "sh", "-c", "cat /proc/1/cmdline | wc -c; exit 4")
    assert r.returncode == 4 and r.stdout.strip() != "0", r.stderr
