"""`nsprim run` and `exec` as docker users script them (issue 12: flags
matched exactly, -it without a terminal, the exec-failure message, the logs
of a foreground container)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli_at as cli


@pytest.fixture
def root(private_root: str) -> str:
    """A state root of the test's own (see conftest.private_root)."""
    return private_root


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nsprim: ")
    return lines[0]


# ------------------------------------------------ 10: no abbreviated flags

@pytest.mark.parametrize("argv", [
    ["run", "--usern", "host", "--rootfs", "/", "true"],  # was --userns(-map)
    ["run", "--cpu-sha", "5", "--rootfs", "/", "true"],  # was --cpu-shares
    ["run", "--pids", "5", "--rootfs", "/", "true"],
    ["run", "--priv", "--rootfs", "/", "true"],  # was --privileged
    ["ps", "--al"],
    ["logs", "--foll", "x"],
    ["volume", "ls", "--quie"],
])
def test_flags_are_not_matched_by_abbreviation(argv: list[str]) -> None:
    from nsprim.cli import UsageError, _build_parser

    flag = next(x for x in argv if x.startswith("--"))
    for only in (None, argv[0]):  # the whole parser and the chosen command's alone
        with pytest.raises(UsageError, match="unrecognized arguments: " + flag):
            _build_parser(only).parse_args(argv)


def test_abbreviated_flag_is_one_line_125(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", str(tmp_path), "run",
                        "--pids", "5", "--rootfs", "/", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 125
    line = one_line_error(r.stderr)
    assert "--pids" in line and "pids-limit" not in line


def test_exact_flags_and_short_groups_still_parse() -> None:
    from nsprim.cli import _build_parser

    a = _build_parser("run").parse_args(["run", "-it", "--pids-limit", "5",
                                         "--userns-map", "100000", "--rootfs", "/", "sh"])
    assert (a.interactive, a.tty, a.pids_limit, a.userns_map) == (True, True, 5, "100000")


# ------------------------------------- 6: -it refused when stdin is no terminal

def test_run_it_without_a_terminal_is_refused(root: str, rootfs: str) -> None:
    """`echo data | nsprim run -it ... cat` waited forever (the container's
    terminal never saw the end of the piped input); docker refuses at once,
    before creating anything, with exit 1 (its CLI's status for this error)."""
    try:
        r = cli(root, "run", "--rm", "-it", "--network", "none", "--rootfs", rootfs, "cat",
                input="data\n", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("run -it with a piped stdin hung")
    assert r.returncode == 1, r.stderr
    assert one_line_error(r.stderr) == "nsprim: the input device is not a TTY"
    assert r.stdout == ""
    assert cli(root, "ps", "-a", "-q").stdout == ""  # nothing was created


def test_run_t_without_i_takes_a_piped_stdin(root: str, rootfs: str) -> None:
    """docker refuses only -i with -t: -t alone does not read our stdin."""
    r = cli(root, "run", "--rm", "-t", "--network", "none", "--rootfs", rootfs, "echo", "hi",
            input="data\n", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\r\n", "\n") == "hi\n"


def test_exec_it_without_a_terminal_is_refused(root: str, rootfs: str) -> None:
    r = cli(root, "run", "-d", "--name", "itx", "--network", "none", "--rootfs", rootfs,
            "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = cli(root, "exec", "-it", "itx", "cat", input="data\n", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("exec -it with a piped stdin hung")
    assert r.returncode == 1, r.stderr
    assert one_line_error(r.stderr) == "nsprim: the input device is not a TTY"
    # a missing container is named first (docker inspects before CheckTty)
    r = cli(root, "exec", "-it", "nosuch", "cat", input="", timeout=15)
    # docker's order: the missing container is reported first, in its words
    assert r.returncode == 1 and \
        r.stderr.strip() == "Error response from daemon: No such container: nosuch"
    # and -i alone still takes the piped input
    r = cli(root, "exec", "-i", "itx", "cat", input="data\n", timeout=15)
    assert (r.returncode, r.stdout) == (0, "data\n"), r.stderr


# ------------------------------- 8: the exec failure names the program exec'd

@pytest.mark.parametrize("cmd,code,message", [
    (["no-such-command"], 127,
     'exec: "no-such-command": executable file not found in $PATH'),
    (["/no/such"], 127, 'exec: "/no/such": stat /no/such: no such file or directory'),
    (["/notexec"], 126, 'exec: "/notexec": permission denied'),
])
def test_exec_failure_in_dockers_words(root: str, rootfs: str, cmd: list[str], code: int,
                                       message: str) -> None:
    r = cli(root, "run", "--rm", "--network", "none", "--rootfs", rootfs, "--", *cmd)
    assert r.returncode == code, r.stderr
    assert one_line_error(r.stderr) == f"nsprim: {message}"


@pytest.mark.parametrize("flags,code,message", [
    (["--entrypoint", "echo hi"], 127, 'exec: "echo hi": executable file not found in $PATH'),
    (["--entrypoint", "/no/such"], 127,
     'exec: "/no/such": stat /no/such: no such file or directory'),
])
def test_exec_failure_names_the_entrypoint_not_the_image(
        root: str, images: dict[str, str], flags: list[str], code: int, message: str) -> None:
    """`--entrypoint 'echo hi' IMAGE` said `IMAGE: No such file or directory`:
    the program named is the one execve was given (ENTRYPOINT/CMD resolved)."""
    ref = images["app"]
    r = cli(root, "run", "--rm", "--network", "none", *flags, ref)
    assert r.returncode == code, r.stderr
    line = one_line_error(r.stderr)
    assert line == f"nsprim: {message}"
    assert ref not in line
    assert cli(root, "ps", "-a", "-q").stdout == ""  # --rm: nothing kept


# ----------------------------- 11: a foreground container's output is kept

def _log_entries(root: str, name: str) -> list[dict[str, str]]:
    data = json.loads(cli(root, "inspect", name).stdout)
    with open(data[0]["LogPath"]) as f:
        return [json.loads(line) for line in f]


def test_foreground_output_is_kept_for_logs(root: str, rootfs: str) -> None:
    """docker keeps a foreground container's output: `run --name x IMAGE echo
    hi; logs x` prints hi.  It is still shown live, stdout and stderr apart."""
    r = cli(root, "run", "--name", "fg", "--network", "none", "--rootfs", rootfs, "sh", "-c",
            "echo out1; echo err1 >&2; echo out2; printf 'no newline'")
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == ("out1\nout2\nno newline", "err1\n")
    logs = cli(root, "logs", "fg")
    assert logs.returncode == 0, logs.stderr
    assert (logs.stdout, logs.stderr) == ("out1\nout2\nno newline", "err1\n")
    entries = _log_entries(root, "fg")
    assert [(e["stream"], e["log"]) for e in entries if e["stream"] == "stdout"] == \
        [("stdout", "out1\n"), ("stdout", "out2\n"), ("stdout", "no newline")]
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["err1\n"]
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in entries)
    tail = cli(root, "logs", "--tail", "1", "fg")
    assert tail.stdout + tail.stderr in ("no newline", "err1\n")


def test_foreground_output_of_a_failing_container_is_kept(root: str, rootfs: str) -> None:
    r = cli(root, "run", "--name", "fgfail", "--network", "none", "--rootfs", rootfs, "sh",
            "-c", "echo dying >&2; exit 3")
    assert (r.returncode, r.stderr) == (3, "dying\n")
    assert cli(root, "logs", "fgfail").stderr == "dying\n"


def test_foreground_terminal_output_is_kept(root: str, rootfs: str) -> None:
    """With -t the terminal's output is the container's stdout (docker logs it
    as written, \\r\\n and all)."""
    r = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "run", "--name",
                        "fgtty", "-t", "--network", "none", "--rootfs", rootfs, "echo", "hi"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi\r\n"
    logs = subprocess.run([sys.executable, "-m", "nsprim", "--root", root, "logs", "fgtty"],
                          capture_output=True, timeout=60)
    assert (logs.returncode, logs.stdout) == (0, b"hi\r\n"), logs.stderr


def test_foreground_reader_gone_stops_the_writer(root: str, rootfs: str) -> None:
    """`nsprim run ... yes | head -1` ends: when our stdout is closed the
    container sees EPIPE, as when it wrote to that pipe itself."""
    p = subprocess.Popen([sys.executable, "-m", "nsprim", "--root", root, "run", "--rm",
                          "--network", "none", "--rootfs", rootfs, "yes"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"y\n"
        p.stdout.close()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the container went on writing to a closed pipe")
        # yes ends on EPIPE (1; 141 = 128 + SIGPIPE where it is not ignored)
        assert p.returncode in (1, 128 + 13)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stderr is not None:
            p.stderr.close()


# ------------------------------------- a working directory that is not there

def test_missing_workdir_is_made_in_the_mount_it_falls_in(root: str, rootfs: str,
                                                         tmp_path: Path) -> None:
    """docker (and runc) make a -w that is missing: after the mounts, so one
    inside a volume is made in the volume, its last part owned by the
    container's user."""
    r = cli(root, "run", "--rm", "--network", "none", "-u", "1000:1000", "-v",
            f"{tmp_path}:/data", "-w", "/data/a/b", "--rootfs", rootfs, "sh", "-c",
            "pwd && touch mine", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/data/a/b\n"
    made = tmp_path / "a" / "b"
    assert (made.stat().st_uid, made.stat().st_gid) == (1000, 1000)
    assert (tmp_path / "a").stat().st_uid == 0  # the parents: root's, 0755
    assert (made / "mine").stat().st_uid == 1000
    r = cli(root, "run", "--rm", "--network", "none", "--tmpfs", "/scratch", "-w",
            "/scratch/x", "--rootfs", rootfs, "pwd", timeout=30)
    assert (r.returncode, r.stdout) == (0, "/scratch/x\n"), r.stderr


def test_workdir_through_a_symlink_stays_in_the_root(root: str, rootfs: str,
                                                    tmp_path: Path) -> None:
    """A link in the container pointing out of it is followed as inside: its
    target (absent inside) is not made, on the host or anywhere."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "out").symlink_to(str(tmp_path / "host"))
    r = cli(root, "run", "--rm", "--network", "none", "-v", f"{vol}:/v", "-w", "/v/out/x",
            "--rootfs", rootfs, "pwd", timeout=30)
    assert not (tmp_path / "host").exists()  # nothing made on the host's side
    assert r.returncode == 127  # docker's CLI: 127 for "no such file or directory"
    assert r.stderr == "nsprim: workdir: resolving /v/out/x in the root: " \
        "No such file or directory\n"
