"""The `nsprim` command: docker-like commands, flags and exit codes.

Exit codes follow docker: the command's own; 125 when nsprim itself fails
(bad flags, setup errors); 126 when the command cannot be executed; 127 when
it is not found; 128+N when it was killed by signal N.  Errors are one line on
stderr.  Heavy imports happen inside the commands, so that ``nsprim --version``
starts fast.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn
EXIT_NSPRIM = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


class UsageError(Exception):
    pass


class _Interrupted(BaseException):
    """A signal that came before the container ran: it is nsprim's own."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized from $COLUMNS or the terminal without
    importing shutil: argparse builds one for every add_argument, and shutil
    (with its compression modules) cost 2 ms of the CLI's 30."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()
                                                 if sys.__stdout__ else 1).columns
                except (OSError, ValueError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


# argparse's messages are looked up through gettext, whose first lookup
# imports locale (1 ms); Python ships no translation of them, so the lookup
# is the identity and is skipped.
argparse._ = lambda message: message  # type: ignore[attr-defined]
argparse.ngettext = lambda one, many, n: one if n == 1 else many  # type: ignore[attr-defined]


class _Parser(argparse.ArgumentParser):
    """Flags are matched exactly, never by abbreviation (docker's rule): with
    abbreviations, ``--pid host`` was taken as ``--pids-limit``.  Every
    subcommand's parser is one of these (parser_class=_Parser)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _fail(msg: str, code: int = EXIT_NSPRIM) -> int:
    print(f"nsprim: {msg}", file=sys.stderr)
    return code


_INT = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", re.ASCII)


def _int_arg(what: str) -> Any:
    def conv(v: str) -> int:
        if not _INT.fullmatch(v):  # int() also takes " 1", "1_0" and other scripts' digits
            raise argparse.ArgumentTypeError(f"invalid {what} {v!r}: expected an integer")
        return int(v)
    return conv


def _seconds_arg(v: str) -> float:
    if not _SECONDS.fullmatch(v):
        raise argparse.ArgumentTypeError(f"invalid time {v!r}: expected seconds, e.g. 10")
    return float(v)


def _collect_leftovers() -> None:
    """Remove what killed nsprim processes left behind (nsprim.collect)."""
    from nsprim.collect import collect

    collect(images=False)


def _collect_image_tmp() -> None:
    """What a killed pull or load left in images/tmp goes with the next
    command of any kind; one listdir when there is nothing."""
    from nsprim.collect import _entries
    from nsprim.state import state_root

    if not _entries(os.path.join(state_root(), "images", "tmp")):
        return
    from nsprim.images.store import default_store

    try:
        default_store()  # opening the store collects tmp/ (pulls still running stay)
    except OSError:
        pass


def _oneline(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)
    return " ".join(text.split())


class _Null:
    """Stands for the parser of a subcommand that was not chosen: building
    every subcommand's arguments costs more than the container work."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: self


class _OnlyOne:
    """add_subparsers' result, building only the chosen subcommand."""

    def __init__(self, sub: Any, only: str) -> None:
        self._sub, self._only = sub, only

    def add_parser(self, name: str, **kw: Any) -> Any:
        return self._sub.add_parser(name, **kw) if name == self._only else _Null()


#: each subcommand's handler, "module:function" of this package, imported
#: only when chosen (one module per command group)
_DISPATCH = {
    "run": "run:cmd_run",
    "ps": "containers:cmd_ps", "logs": "containers:cmd_logs", "stop": "containers:cmd_stop",
    "kill": "containers:cmd_kill", "start": "containers:cmd_start",
    "restart": "containers:cmd_restart", "rm": "containers:cmd_rm",
    "wait": "containers:cmd_wait", "inspect": "containers:cmd_inspect",
    "exec": "containers:cmd_exec",
    "pull": "images:cmd_pull", "load": "images:cmd_load", "images": "images:cmd_images",
    "rmi": "images:cmd_rmi",
    "volume": "volumes:cmd_volume", "network": "networks:cmd_network",
    "attach": "attach:cmd_attach", "create": "run:cmd_run",
}
#: commands whose module also builds their parsers: "module:adder" (adder(sub)
#: adds the subcommand; the handler is the module's cmd_NAME), imported only
#: when chosen
_MODULES = {
    "cp": "cp:add_parser",
    "stats": "stats:add_parser", "top": "stats:add_top_parser",
    "port": "stats:add_port_parser",
    "pause": "manage:add_pause_parser", "unpause": "manage:add_pause_parser",
    "rename": "manage:add_rename_parser", "update": "manage:add_update_parser",
    "diff": "manage:add_diff_parser", "export": "manage:add_export_parser",
    "container-prune": "system:add_parser", "image-prune": "system:add_parser",
    "volume-prune": "system:add_parser", "system-prune": "system:add_parser",
    "system-df": "system:add_df_parser", "info": "system:add_info_parser",
    "version": "system:add_version_parser", "commit": "commit:add_parser",
    "events": "events:add_parser",
    "system-delegate": "system:add_delegate_parser",
}
_DISPATCH.update({name: f"{where.split(':')[0]}:cmd_{name.replace('-', '_')}"
                  for name, where in _MODULES.items()})
# build, tag, save, history, push, login, logout, builder (cli/build.py)
_BUILD_COMMANDS = ("build", "tag", "save", "history", "push", "login", "logout", "builder")
_DISPATCH.update({"build": "build:cmd_build", "tag": "build:cmd_tag", "save": "build:cmd_save",
                  "history": "build:cmd_history", "push": "build:cmd_push",
                  "login": "build:cmd_login", "logout": "build:cmd_logout",
                  "builder": "build:cmd_builder"})
_COMMANDS = frozenset(_DISPATCH)

#: docker's management commands (``container ls``, ``image rm``...) as the
#: plain commands they stand for; a subcommand not listed keeps its name
#: (``container stop`` is ``stop``)
_MANAGEMENT = {
    "container": {"ls": ["ps"], "list": ["ps"], "ps": ["ps"],
                  "inspect": ["inspect", "--type", "container"], "remove": ["rm"],
                  "prune": ["container-prune"]},
    "image": {"ls": ["images"], "list": ["images"], "rm": ["rmi"], "remove": ["rmi"],
              "inspect": ["inspect", "--type", "image"], "prune": ["image-prune"]},
    "volume": {"prune": ["volume-prune"]},  # the rest: the volume command's own
    "system": {"prune": ["system-prune"], "df": ["system-df"], "info": ["info"],
               "delegate": ["system-delegate"]},
}


def _skip_root(argv: list[str]) -> int:
    """The index of the first argument after the ``--root`` options."""
    i = 0
    while i < len(argv) and (argv[i] == "--root" or argv[i].startswith("--root=")):
        i += 2 if argv[i] == "--root" else 1
    return i


def _expand_management(argv: list[str]) -> list[str]:
    """``[--root R] container ls -a`` -> ``[--root R] ps -a``."""
    i = _skip_root(argv)
    if i + 1 >= len(argv) or argv[i] not in _MANAGEMENT:
        return argv
    sub = argv[i + 1]
    plain = _MANAGEMENT[argv[i]].get(sub)
    if plain is None:
        if argv[i] in _COMMANDS or sub not in _COMMANDS or sub in _MANAGEMENT:
            # `volume rm` is the volume command's own; else the parser names
            # the bad subcommand
            return argv
        plain = [sub]
    return argv[:i] + plain + argv[i + 2:]


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand of `argv`, if plain to see (else the whole parser is built)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--root":
            i += 2
        elif a.startswith("--root="):
            i += 1
        else:
            return a if a in _COMMANDS else None
    return None


def _build_parser(only: str | None = None) -> _Parser:
    p = _Parser(prog="nsprim", description="Container primitives: run commands in containers.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--root", metavar="DIR", help="state root (default /var/lib/nsprim; "
                   "NSPRIM_ROOT)")
    # prog given: argparse would format the usage to find it (milliseconds per command)
    sub: Any = p.add_subparsers(dest="command", parser_class=_Parser, prog="nsprim")
    if only is not None:
        sub = _OnlyOne(sub, only)
    if only == "create":  # create takes run's flags, and starts nothing
        r = sub.add_parser("create", help="create a container (start it later)",
                           add_help=False, description="Create a container.")
        r.set_defaults(create_only=True)
    else:
        r = sub.add_parser("run", help="run a command in a new container", add_help=False,
                           description="Run a command in a new container.")
    r.add_argument("--help", action="help", help="show this help message and exit")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("-d", "--detach", action="store_true", help="run in the background, print "
                   "the container id")
    r.add_argument("--name", help="the container's name")
    r.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    r.add_argument("--restart", default="no",
                   help="restart policy: no, always, unless-stopped, on-failure[:N]")
    r.add_argument("--stop-signal", metavar="SIGNAL",
                   help="signal to stop the container (default: the image's STOPSIGNAL, "
                   "else SIGTERM)")
    r.add_argument("--stop-timeout", type=_int_arg("stop-timeout"), metavar="SECONDS",
                   help="seconds to wait on stop before SIGKILL (default 10)")
    r.add_argument("--init", action="store_true",
                   help="run a minimal init as PID 1: forwards signals, reaps zombies")
    r.add_argument("--rootfs", metavar="DIR",
                   help="root filesystem directory (instead of an IMAGE)")
    r.add_argument("--entrypoint", metavar="CMD", help="override the image's ENTRYPOINT")
    r.add_argument("--hostname", "-h", dest="hostname", metavar="NAME")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read environment variables from a file")
    r.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                   help="set metadata on the container")
    r.add_argument("--label-file", action="append", default=[], metavar="FILE",
                   help="read labels from a file (KEY=VALUE lines)")
    r.add_argument("--mount", action="append", default=[],
                   metavar="type=bind|volume|tmpfs,...", help="attach a filesystem mount")
    r.add_argument("-w", "--workdir", metavar="DIR")
    r.add_argument("-u", "--user", metavar="UID[:GID]")
    r.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    r.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    r.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    r.add_argument("--read-only", action="store_true", help="mount the rootfs read-only")
    r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    r.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    r.add_argument("--network", "--net", default="bridge", metavar="MODE",
                   help="bridge (default), none, host or container:NAME")
    r.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:]HOSTPORT:PORT[/PROTO]", help="publish a container port")
    r.add_argument("-P", "--publish-all", action="store_true",
                   help="publish the image's exposed ports on free host ports")
    r.add_argument("--network-alias", action="append", default=[], metavar="ALIAS",
                   help="another name of the container on its user-defined network")
    r.add_argument("--ip", metavar="IPV4", help="the address on a user-defined network")
    r.add_argument("--ip6", metavar="IPV6", help="the IPv6 address on a user-defined network")
    r.add_argument("--network-bandwidth", metavar="RATE",
                   help="shape the container's traffic, e.g. 100mbit")
    r.add_argument("--add-host", dest="add_hosts", action="append", default=[],
                   metavar="NAME:IP", help="add a line to /etc/hosts (IP: host-gateway "
                   "for the bridge's gateway)")
    r.add_argument("--dns", action="append", default=[], metavar="IP",
                   help="a nameserver for /etc/resolv.conf (replaces the host's)")
    r.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN",
                   help="a search domain for /etc/resolv.conf ('.': none)")
    r.add_argument("--dns-option", dest="dns_options", action="append", default=[],
                   metavar="OPT", help="a resolver option for /etc/resolv.conf")
    r.add_argument("--domainname", metavar="NAME", help="the container's NIS domain name")
    r.add_argument("--userns-map", metavar="HOSTUID[:SIZE]",
                   help="new user namespace: container uid 0 is HOSTUID")
    r.add_argument("--userns", metavar="MODE",
                   help="rootless: auto (default), full, single or keep-id")
    r.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json")
    r.add_argument("--privileged", action="store_true",
                   help="every capability and host device, no seccomp, no masked paths")
    r.add_argument("--device", action="append", default=[],
                   metavar="HOST[:CONTAINER[:rwm]]", help="add a host device")
    g = r.add_argument_group("resources (a cgroup of the container's own)")
    g.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, e.g. 256m")
    g.add_argument("--memory-swap", metavar="SIZE", help="memory + swap limit; -1 unlimited")
    g.add_argument("--cpus", metavar="N", help="CPUs, e.g. 0.5")
    g.add_argument("--cpu-shares", type=_int_arg("cpu-shares"), metavar="N",
                   help="relative weight (v1 shares)")
    g.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs to run on, e.g. 0-1")
    g.add_argument("--cpuset-mems", metavar="LIST", help="memory nodes, e.g. 0")
    g.add_argument("--pids-limit", type=_int_arg("pids-limit"), metavar="N",
                   help="process limit (0 or -1: unlimited)")
    g.add_argument("--device-read-bps", action="append", default=[], metavar="DEV:RATE")
    g.add_argument("--device-write-bps", action="append", default=[], metavar="DEV:RATE")
    g.add_argument("--memory-reservation", metavar="SIZE", help="memory soft limit")
    g.add_argument("--cpu-period", type=_int_arg("cpu-period"), metavar="USEC",
                   help="CFS period (with --cpu-quota)")
    g.add_argument("--cpu-quota", type=_int_arg("cpu-quota"), metavar="USEC",
                   help="CFS quota per period")
    g.add_argument("--blkio-weight", type=_int_arg("blkio-weight"), metavar="N",
                   help="block I/O weight, 10 to 1000 (where the scheduler has one)")
    x = r.add_argument_group("process and namespaces (issue 12)")
    x.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    x.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    x.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm (default 64m)")
    x.add_argument("--oom-score-adj", type=_int_arg("oom-score-adj"), metavar="N")
    x.add_argument("--group-add", action="append", default=[], metavar="GROUP")
    x.add_argument("--pid", dest="pid_mode", metavar="host|container:NAME")
    x.add_argument("--ipc", dest="ipc_mode", metavar="host|container:NAME|shareable|private")
    x.add_argument("--uts", dest="uts_mode", metavar="host")
    x.add_argument("--platform", metavar="OS[/ARCH]", help="checked against this host's")
    x.add_argument("--cidfile", metavar="FILE", help="write the container id to FILE")
    x.add_argument("--health-cmd", metavar="COMMAND", help="check command (sh -c)")
    x.add_argument("--health-interval", metavar="DURATION", help="between checks (30s)")
    x.add_argument("--health-timeout", metavar="DURATION", help="one check at most (30s)")
    x.add_argument("--health-start-period", metavar="DURATION",
                   help="failures do not count before (0s)")
    x.add_argument("--health-retries", type=_int_arg("health-retries"), metavar="N",
                   help="failures in a row to be unhealthy (3)")
    x.add_argument("--no-healthcheck", action="store_true",
                   help="no check, not even the image's HEALTHCHECK")
    x.add_argument("--log-driver", metavar="json-file", help="json-file only")
    x.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="max-size=SIZE (default 20m), max-file=N (default 5)")
    x.add_argument("--pull", choices=None, default="missing", metavar="always|missing|never")
    x.add_argument("-a", "--attach", action="append", default=[],
                   metavar="STDIN|STDOUT|STDERR", help="streams to attach (foreground)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="[IMAGE] CMD")

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="show all containers")
    ps.add_argument("-q", "--quiet", action="store_true", help="only ids")
    ps.add_argument("-n", "--last", type=_int_arg("--last"), default=-1, metavar="N",
                    help="the N last created containers (all states)")
    ps.add_argument("-l", "--latest", action="store_true", help="the last created container")
    ps.add_argument("-s", "--size", action="store_true", help="total file sizes")
    ps.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    ps.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name, id, label, status, ancestor, exited, before, since, "
                    "network, volume, publish, expose")
    ps.add_argument("--format", metavar="FORMAT",
                    help="table, table TEMPLATE, json or a Go template")
    lg = sub.add_parser("logs", help="show a container's output")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("--tail", metavar="N")
    lg.add_argument("--since", metavar="TIME", help="only after TIME (RFC 3339, Unix "
                    "time, or a duration ago: 10m)")
    lg.add_argument("--until", metavar="TIME", help="only before TIME")
    lg.add_argument("container")
    for cname, chelp in (("stop", "stop containers (stop signal, then SIGKILL)"),
                         ("restart", "restart containers")):
        sp = sub.add_parser(cname, help=chelp)
        sp.add_argument("-t", "--time", type=_seconds_arg, default=None, metavar="SECONDS",
                        help="seconds before SIGKILL (default: the container's "
                        "--stop-timeout, else 10)")
        sp.add_argument("containers", nargs="+")
    kl = sub.add_parser("kill", help="signal containers")
    kl.add_argument("-s", "--signal", default="KILL")
    kl.add_argument("containers", nargs="+")
    for cname, chelp in (("start", "start stopped containers"),
                         ("wait", "wait for containers, print their exit codes")):
        sp = sub.add_parser(cname, help=chelp)
        if cname == "start":
            sp.add_argument("-a", "--attach", action="store_true",
                            help="attach to its output (and exit with its status)")
            sp.add_argument("-i", "--interactive", action="store_true",
                            help="attach to its stdin too")
        sp.add_argument("containers", nargs="+")
    ins = sub.add_parser("inspect", help="show containers, images, volumes or networks as JSON")
    ins.add_argument("-f", "--format", metavar="FORMAT", help="json or a Go template")
    ins.add_argument("--type", choices=["container", "image", "volume", "network"])
    ins.add_argument("-s", "--size", action="store_true", help="container sizes")
    ins.add_argument("containers", nargs="+", metavar="NAME")
    at = sub.add_parser("attach", help="attach to a running container's stdio")
    at.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    at.add_argument("container")
    rmc = sub.add_parser("rm", help="remove containers")
    rmc.add_argument("-f", "--force", action="store_true")
    rmc.add_argument("-v", "--volumes", action="store_true",
                     help="remove the container's anonymous volumes")
    rmc.add_argument("containers", nargs="+")
    ex = sub.add_parser("exec", help="run a command in a running container", add_help=False)
    ex.add_argument("--help", action="help")
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-d", "--detach", action="store_true", help="run in the background")
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-w", "--workdir")
    ex.add_argument("-u", "--user")
    ex.add_argument("container")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)

    pl = sub.add_parser("pull", help="pull an image from a registry")
    pl.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    pl.add_argument("-q", "--quiet", action="store_true")
    ld = sub.add_parser("load", help="load a docker save archive or an OCI layout")
    ld.add_argument("-i", "--input", metavar="FILE", help="default: standard input")
    ld.add_argument("-q", "--quiet", action="store_true")
    im = sub.add_parser("images", help="list images")
    im.add_argument("-q", "--quiet", action="store_true")
    im.add_argument("-a", "--all", action="store_true")
    im.add_argument("--no-trunc", action="store_true")
    im.add_argument("--digests", action="store_true")
    im.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="reference, label, dangling, before, since")
    im.add_argument("--format", metavar="FORMAT")
    im.add_argument("repository", nargs="?")
    rm = sub.add_parser("rmi", help="remove images")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    vol = sub.add_parser("volume", help="manage named volumes")
    vs = vol.add_subparsers(dest="volume_command", parser_class=_Parser)
    vc = vs.add_parser("create")
    vc.add_argument("name")
    vl = vs.add_parser("ls", aliases=["list"])
    vl.add_argument("-q", "--quiet", action="store_true")
    vl.add_argument("--format", metavar="FORMAT")
    vl.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name, label, driver")
    vr = vs.add_parser("rm", aliases=["remove"])
    vr.add_argument("names", nargs="+")
    vi = vs.add_parser("inspect")
    vi.add_argument("-f", "--format", metavar="FORMAT")
    vi.add_argument("names", nargs="+")
    net = sub.add_parser("network", help="the networks (bridge, host, none, user-defined)")
    ns = net.add_subparsers(dest="network_command", parser_class=_Parser)
    nl = ns.add_parser("ls", aliases=["list"])
    nl.add_argument("-q", "--quiet", action="store_true")
    nl.add_argument("--no-trunc", action="store_true")
    nl.add_argument("--format", metavar="FORMAT")
    nl.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name, id, driver, type, label, scope")
    ni = ns.add_parser("inspect")
    ni.add_argument("-f", "--format", metavar="FORMAT")
    ni.add_argument("names", nargs="+")
    from nsprim.cli.networks import add_network_parsers

    add_network_parsers(ns)
    import importlib

    done: set[str] = set()
    for name, where in _MODULES.items():
        if (only is None or only == name) and where not in done:
            done.add(where)  # one adder may make several commands (pause, unpause)
            mod, adder = where.split(":")
            getattr(importlib.import_module(f"nsprim.cli.{mod}"), adder)(sub)
    if only is None or only in _BUILD_COMMANDS:
        from nsprim.cli import build as _build_cli

        _build_cli.add_parsers(sub)
    return p


#: parsers built ahead by the CLI helper (nsprim.helper), each used once by
#: the forked child that runs the command
_PREBUILT: dict[str | None, _Parser] = {}


def _for_each(names: list[str], action: Any) -> int:
    """Run action(record, name) for each container named; errors are one line
    each; the exit status is 1 if any failed (docker's behaviour)."""
    from nsprim.lifecycle import find

    rc = 0
    for name in names:
        try:
            if action(find(name), name) is False:
                rc = 1
        except (LookupError, OSError) as e:
            _fail(_oneline(e))
            rc = 1
    return rc


def _print_rows(a: argparse.Namespace, rows: list[dict[str, Any]], header: str,
                line: Any) -> None:
    """docker's listing conventions: -q ids, --format json a line each, else a table."""
    import json

    if a.quiet:
        for r in rows:
            print(r["ID"])
    elif a.format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(header)
        for r in rows:
            print(line(r))


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "daemon" in args[:3]:  # its own parser: nsprim [--root DIR] daemon ...
        i = args.index("daemon")
        before = args[:i]
        if before in ([], ["--root", *before[1:2]]) or (len(before) == 1 and
                                                          before[0].startswith("--root=")):
            from nsprim.daemon import main as daemon_main

            root = before[1] if len(before) == 2 else (before[0][7:] if before else None)
            return daemon_main(args[i + 1:], root)
    args = _expand_management(args)
    chosen = _chosen(args)
    if chosen is None:
        rest = args[_skip_root(args):]
        if rest and rest[0] in _MANAGEMENT:  # `container bogus`: one line
            sub = rest[1] if len(rest) > 1 else ""
            return _fail(f"{rest[0]}: unknown command {sub!r}", 1)
    parser = _PREBUILT.pop(chosen, None) or _build_parser(chosen)
    try:
        a = parser.parse_args(args)
    except UsageError as e:
        return _fail(str(e))
    if a.version:
        from nsprim import __version__

        print(f"nsprim {__version__}")
        return 0
    if a.root:
        from nsprim.state import use_root

        use_root(a.root)  # explicit: the environment is left alone
    if a.command in ("logs", "wait", "stop", "start", "restart", "rm", "kill",
                     "exec"):  # (ps and inspect collect when a record they read needs it)
        from nsprim.lifecycle import collect

        collect()  # the view stays true when a supervisor was killed
    try:
        _collect_image_tmp()
    except ValueError as e:  # rootless: a state directory that is not the user's
        return _fail(str(e))
    where = _DISPATCH.get(a.command or "")
    if where is None:
        parser.print_help(sys.stderr)
        return EXIT_NSPRIM
    import importlib

    module, func = where.split(":")
    handler: Any = getattr(importlib.import_module(f"nsprim.cli.{module}"), func)
    return int(handler(a))


if __name__ == "__main__":
    sys.exit(main())
