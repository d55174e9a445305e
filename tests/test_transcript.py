"""The docker walk-through as a script: every line nsprim prints is compared
with docker's transcript for the same commands (issue 12).

The expected lines are docker's format, written from what docker v28 prints
for these commands; ids, times and durations are normalised, and a table's
padding (its width follows the longest cell) is compared as one separator.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from .conftest import cli_at

# what changes from run to run, in the order it is replaced
_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{64}\b"), "<ID>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<SHORT>"),
    (re.compile(r"(Less than a second|About a minute|About an hour|\d+ (second|minute|hour)s?)"
                r" ago"), "<AGO>"),
    (re.compile(r"Up (Less than a second|About a minute|\d+ (second|minute)s?)"), "Up <UP>"),
    (re.compile(r"127\.0\.0\.1:\d+/"), "<REGISTRY>/"),
    (re.compile(r"0\.0\.0\.0:\d+->"), "0.0.0.0:<PORT>->"),
    (re.compile(r"\[::\]:\d+->"), "[::]:<PORT>->"),
    (re.compile(r"-> 0\.0\.0\.0:\d+$"), "-> 0.0.0.0:<PORT>"),
    (re.compile(r"-> \[::\]:\d+$"), "-> [::]:<PORT>"),
    (re.compile(r"\s{2,}|\t"), "  "),  # a table's padding, a tab
]


def _norm(text: str) -> list[str]:
    out = []
    for line in text.rstrip("\n").split("\n") if text.strip() else []:
        line = line.rstrip()
        for pat, rep in _NORMALISE:
            line = pat.sub(rep, line)
        out.append(line)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# (command, expected exit status, docker's output after normalisation);
# {img} is the image reference, {port} a free host port
SCRIPT: list[tuple[str, int, list[str]]] = [
    ("run -d --name web -p {port}:80 {img} httpd -f -p 80", 0, ["<ID>"]),
    ("ps", 0, [
        "CONTAINER ID  IMAGE  COMMAND  CREATED  STATUS  PORTS  NAMES",
        # docker v28 publishes on IPv4 and IPv6
        '<SHORT>  {img}  "httpd -f -p 80"  <AGO>  Up <UP>  0.0.0.0:<PORT>->80/tcp, '
        '[::]:<PORT>->80/tcp  web',
    ]),
    ("ps --format {{{{.Names}}}}:{{{{.Image}}}}", 0, ["web:{img}"]),
    ("inspect -f {{{{.State.Status}}}}/{{{{.Config.Cmd}}}}/{{{{.Name}}}} web", 0,
     ["running/[httpd -f -p 80]//web"]),
    ("port web", 0, ["80/tcp -> 0.0.0.0:<PORT>", "80/tcp -> [::]:<PORT>"]),
    ("exec web echo hello", 0, ["hello"]),
    ("stop -t 1 web", 0, ["web"]),
    ("ps -a --format '{{{{.Names}}}}\\t{{{{.Status}}}}'", 0, ["web  Exited (137) <AGO>"]),
    ("start web", 0, ["web"]),
    ("ps -q", 0, ["<SHORT>"]),
    ("rm web", 1, ["Error response from daemon: cannot remove container \"/web\": "
                   "container is running: stop the container before removing or force "
                   "remove"]),
    ("rm -f web", 0, ["web"]),
    ("ps -a", 0, ["CONTAINER ID  IMAGE  COMMAND  CREATED  STATUS  PORTS  NAMES"]),
    ("run --name once {img} sh -c 'echo out; echo err >&2; exit 3'", 3, ["out", "err"]),
    ("logs once", 0, ["out", "err"]),
    ("rm once", 0, ["once"]),
    ("run --rm {img} echo gone", 0, ["gone"]),
    ("volume create data", 0, ["data"]),
    ("volume ls", 0, ["DRIVER  VOLUME NAME", "local  data"]),
    ("volume rm data", 0, ["data"]),
    ("logs nosuch", 1, ["Error response from daemon: No such container: nosuch"]),
]


def test_walk_through_matches_dockers_transcript(private_root: str,
                                                 images: dict[str, str]) -> None:
    import shlex

    img = images["base"]
    assert cli_at(private_root, "pull", "-q", img).returncode == 0
    port = _free_port()
    for command, status, expected in SCRIPT:
        argv = shlex.split(command.format(img=img, port=port))
        r = cli_at(private_root, *argv)
        got = _norm(r.stdout + r.stderr)
        want = _norm("\n".join(expected).replace("{img}", img))
        assert (r.returncode, got) == (status, want), f"nsprim {' '.join(argv)}"
        if argv[:2] == ["run", "-d"]:
            time.sleep(0.2)  # it is up: the next lines say "Up"


@pytest.mark.parametrize("text,want", [
    ("6e7b41a1cb63   base   \"sh\"   1 second ago   Up 2 seconds   web",
     ["<SHORT>  base  \"sh\"  <AGO>  Up <UP>  web"]),
    ("a" * 64 + "\n", ["<ID>"]),
    ("Exited (0) About a minute ago", ["Exited (0) <AGO>"]),
])
def test_normalisation(text: str, want: list[str]) -> None:
    assert _norm(text) == want
