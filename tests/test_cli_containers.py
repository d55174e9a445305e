"""The container commands' failures, as docker reports them (issue 12 bug 9):
exit status 1 and docker's line for a missing or stopped container; 125
only for nsprim's own failures and bad flags."""

from __future__ import annotations

import json

import pytest

from .test_lifecycle import cli, root  # noqa: F401  (the state root fixture)

NO_SUCH = "Error response from daemon: No such container: nosuch"


@pytest.mark.parametrize("args, line", [
    (["stop", "nosuch"], NO_SUCH),
    (["restart", "nosuch"], NO_SUCH),
    (["kill", "nosuch"], NO_SUCH),
    (["rm", "nosuch"], NO_SUCH),
    (["rm", "-f", "nosuch"], NO_SUCH),
    (["start", "nosuch"], NO_SUCH),
    (["wait", "nosuch"], NO_SUCH),
    # what docker v28's CLI prints for these (seen against nsprim daemon's 404)
    (["logs", "nosuch"], NO_SUCH),
    (["exec", "nosuch", "true"], NO_SUCH),
    (["inspect", "nosuch"], "Error: No such object: nosuch"),
])
def test_missing_container_is_status_1(root: str, args: list[str],  # noqa: F811
                                       line: str) -> None:
    r = cli(root, *args)
    assert (r.returncode, r.stderr) == (1, line + "\n")


def test_inspect_prints_what_it_found(root: str, rootfs: str) -> None:  # noqa: F811
    assert cli(root, "run", "--name", "there", "--network", "none", "--rootfs", rootfs,
               "true").returncode == 0
    r = cli(root, "inspect", "there", "nosuch")
    assert r.returncode == 1 and r.stderr == "Error: No such object: nosuch\n"
    assert [c["Name"] for c in json.loads(r.stdout)] == ["/there"]
    r = cli(root, "inspect", "nosuch")
    assert r.returncode == 1 and json.loads(r.stdout) == []


def test_stopped_container(root: str, rootfs: str) -> None:  # noqa: F811
    r = cli(root, "run", "--name", "done", "--network", "none", "--rootfs", rootfs, "true")
    assert r.returncode == 0, r.stderr
    cid = json.loads(cli(root, "inspect", "done").stdout)[0]["Id"]
    r = cli(root, "exec", "done", "true")
    assert (r.returncode, r.stderr) == (
        1, f"Error response from daemon: container {cid} is not running\n")
    r = cli(root, "kill", "done")
    assert (r.returncode, r.stderr) == (
        1, f"Error response from daemon: cannot kill container: done: container {cid} is "
        "not running\n")
    # docker: stopping a stopped container succeeds; so do logs and wait
    for args in (["stop", "done"], ["logs", "done"], ["wait", "done"]):
        r = cli(root, *args)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
    # one missing among several: the others are done, the status is 1
    r = cli(root, "rm", "nosuch", "done")
    assert (r.returncode, r.stdout, r.stderr) == (1, "done\n", NO_SUCH + "\n")


def test_running_container_refused_by_rm(root: str, rootfs: str) -> None:  # noqa: F811
    r = cli(root, "run", "-d", "--name", "busy", "--network", "none", "--rootfs", rootfs,
            "sleep", "100")
    assert r.returncode == 0, r.stderr
    r = cli(root, "rm", "busy")
    assert (r.returncode, r.stderr) == (
        1, 'Error response from daemon: cannot remove container "/busy": container is '
        "running: stop the container before removing or force remove\n")
    assert cli(root, "rm", "-f", "busy").returncode == 0


def test_bad_flags_stay_125(root: str, rootfs: str) -> None:  # noqa: F811
    for args in (["logs", "--tail", "x", "nosuch"], ["kill", "-s", "NOPE", "nosuch"],
                 ["stop", "--bogus", "nosuch"], ["exec", "-u", "a:b:c", "nosuch", "true"],
                 ["run", "--rootfs", rootfs, "--restart", "sometimes", "true"]):
        r = cli(root, *args)
        assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, (args, r.stderr)
