"""The `nsprim` command: docker-like commands, flags and exit codes.

Exit codes follow docker: the command's own; 125 when nsprim itself fails
(bad flags, setup errors); 126 when the command cannot be executed; 127 when
it is not found; 128+N when it was killed by signal N.  Errors are one line on
stderr.  Heavy imports happen inside the commands, so that ``nsprim --version``
starts fast.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_NSPRIM = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _fail(msg: str, code: int = EXIT_NSPRIM) -> int:
    print(f"nsprim: {msg}", file=sys.stderr)
    return code


def _parse_volume(spec: str) -> Any:
    """``-v /host:/ctr[:ro]`` (a bind: the host path must exist) or
    ``-v NAME:/ctr[:ro]`` (a named volume, created on first use)."""
    from nsprim.config import Bind
    from nsprim.errors import ConfigError
    from nsprim.volumes import Volume

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"invalid volume specification {spec!r}: expected SRC:DST[:ro|rw]")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ConfigError(f"invalid volume mode {mode!r} in {spec!r}: expected ro or rw")
    if not parts[1].startswith("/"):
        raise ConfigError(f"invalid volume specification {spec!r}: the container path "
                          "must be absolute")
    if not parts[0].startswith("/"):
        if "/" in parts[0] or parts[0].startswith("."):
            raise ConfigError(f"invalid volume specification {spec!r}: a host path must be "
                              "absolute; a volume name has no '/'")
        return Volume(parts[0], parts[1], readonly=mode == "ro")
    if not os.path.exists(parts[0]):
        raise ConfigError(f"invalid volume {spec!r}: host path {parts[0]!r} does not exist")
    return Bind(parts[0], parts[1], readonly=mode == "ro")


def _parse_tmpfs(spec: str) -> Any:
    from nsprim.config import Tmpfs
    from nsprim.errors import ConfigError

    target, _, opts = spec.partition(":")
    size = None
    mode = 0o1777
    ro = False
    for o in filter(None, opts.split(",")):
        k, _, v = o.partition("=")
        try:
            if k == "size":
                size = _parse_size(v)
            elif k == "mode":
                mode = int(v, 8)
            elif k in ("ro", "rw"):
                ro = k == "ro"
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"invalid tmpfs option {o!r} in {spec!r}") from None
    return Tmpfs(target, size=size, mode=mode, readonly=ro)


def _parse_size(v: str) -> int:
    units = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    v = v.strip().lower()
    num = v.rstrip("bkmg")
    unit = v[len(num):]
    if unit not in units or not num.isdigit():
        raise ValueError(v)
    return int(num) * units[unit]


def _parse_uidmap(spec: str) -> Any:
    from nsprim.config import IdMap
    from nsprim.errors import ConfigError

    try:
        parts = [int(p) for p in spec.split(":")]
    except ValueError:
        raise ConfigError(f"invalid --userns-map {spec!r}: expected HOSTUID[:SIZE]") from None
    if len(parts) == 1:
        return IdMap(parts[0])
    if len(parts) == 2:
        return IdMap(parts[0], size=parts[1])
    raise ConfigError(f"invalid --userns-map {spec!r}: expected HOSTUID[:SIZE]")


def _env_list(values: list[str]) -> list[str]:
    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:  # docker: -e NAME takes the value from the caller
            out.append(f"{v}={os.environ[v]}")
    return out


def _int_arg(what: str) -> Any:
    def conv(v: str) -> int:
        try:
            return int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {v!r}: expected an integer") \
                from None
    return conv


def _collect_leftovers() -> None:
    """Remove what killed nsprim processes left behind (cgroups, overlays)."""
    from nsprim.cgroup import Cgroup
    from nsprim.network import bridge
    from nsprim.rootfs import OverlayRootfs

    for collect in (OverlayRootfs.collect, bridge.collect, Cgroup.collect):
        try:
            collect()
        except OSError:
            pass


def _oneline(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)
    return " ".join(text.split())


def _build_parser() -> _Parser:
    p = _Parser(prog="nsprim", description="Container primitives: run commands in containers.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--root", metavar="DIR", help="state root (default /var/lib/nsprim; "
                   "NSPRIM_ROOT)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("run", help="run a command in a new container", add_help=False,
                       description="Run a command in a new container.")
    r.add_argument("--help", action="help", help="show this help message and exit")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits "
                   "(the only mode until detached containers land)")
    r.add_argument("--rootfs", metavar="DIR",
                   help="root filesystem directory (instead of an IMAGE)")
    r.add_argument("--entrypoint", metavar="CMD", help="override the image's ENTRYPOINT")
    r.add_argument("--hostname", "-h", dest="hostname", metavar="NAME")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
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
    r.add_argument("--network-bandwidth", metavar="RATE",
                   help="shape the container's traffic, e.g. 100mbit")
    r.add_argument("--userns-map", metavar="HOSTUID[:SIZE]",
                   help="new user namespace: container uid 0 is HOSTUID")
    r.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[=true|false]")
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
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="[IMAGE] CMD")

    pl = sub.add_parser("pull", help="pull an image from a registry")
    pl.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    pl.add_argument("-q", "--quiet", action="store_true")
    ld = sub.add_parser("load", help="load a docker save archive or an OCI layout")
    ld.add_argument("-i", "--input", required=True, metavar="FILE")
    ld.add_argument("-q", "--quiet", action="store_true")
    im = sub.add_parser("images", help="list images")
    im.add_argument("-q", "--quiet", action="store_true")
    im.add_argument("--format", choices=["table", "json"], default="table")
    rm = sub.add_parser("rmi", help="remove images")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    vol = sub.add_parser("volume", help="manage named volumes")
    vs = vol.add_subparsers(dest="volume_command", parser_class=_Parser)
    vc = vs.add_parser("create")
    vc.add_argument("name")
    vl = vs.add_parser("ls")
    vl.add_argument("-q", "--quiet", action="store_true")
    vl.add_argument("--format", choices=["table", "json"], default="table")
    vr = vs.add_parser("rm")
    vr.add_argument("names", nargs="+")
    vi = vs.add_parser("inspect")
    vi.add_argument("names", nargs="+")
    return p


def cmd_run(a: argparse.Namespace) -> int:
    from nsprim.container import DEVNULL, Container
    from nsprim.errors import ConfigError, SpawnError

    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    image = None
    if a.rootfs is None:
        if not cmd:
            return _fail("run: requires an IMAGE (or --rootfs DIR)")
        image, cmd = cmd[0], cmd[1:]
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
    elif not cmd:
        return _fail("run: no command given")
    nnp = True
    for opt in a.security_opt:
        if opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
            nnp = True
        elif opt in ("no-new-privileges=false", "no-new-privileges:false"):
            nnp = False
        else:
            return _fail(f"run: unsupported --security-opt {opt!r}")
    try:
        from nsprim.network import NetworkMode

        network = NetworkMode.parse(a.network, publish=a.publish, publish_all=a.publish_all,
                                    bandwidth=a.network_bandwidth)
        mounts = [_parse_volume(v) for v in a.volume] + [_parse_tmpfs(t) for t in a.tmpfs]
        _collect_leftovers()
        c = Container(
            cmd or None, rootfs=a.rootfs, image=image,
            entrypoint=None if a.entrypoint is None else ([a.entrypoint] if a.entrypoint
                                                          else []),
            hostname=a.hostname, env=_env_list(a.env), cwd=a.workdir,
            user=a.user, network=network,
            user_namespace=_parse_uidmap(a.userns_map) if a.userns_map else None,
            cap_add=a.cap_add, cap_drop=a.cap_drop, no_new_privileges=nnp,
            read_only=a.read_only, mounts=mounts,
            memory=a.memory, memory_swap=a.memory_swap, cpus=a.cpus,
            cpu_shares=a.cpu_shares, cpuset=a.cpuset_cpus, cpuset_mems=a.cpuset_mems,
            pids=a.pids_limit, device_read_bps=a.device_read_bps,
            device_write_bps=a.device_write_bps,
            stdin=None if a.interactive else DEVNULL, die_with_parent=True,
        )
    except ConfigError as e:
        return _fail(str(e))
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    if a.rootfs is not None and not os.path.isdir(a.rootfs):
        return _fail(f"invalid rootfs {a.rootfs!r}: not a directory")

    def forward(signum: int, _frame: Any) -> None:
        c.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        try:
            c.start()
        except SpawnError as e:
            if e.step == "exec":
                code = EXIT_NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) \
                    else EXIT_CANNOT_EXEC
                return _fail(f"{cmd[0]}: {os.strerror(e.errno or 0)}", code)
            return _fail(str(e.strerror))
        except ConfigError as e:
            return _fail(str(e))
        except OSError as e:
            return _fail(str(e))
        rc = c.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rc if rc >= 0 else 128 - rc


def cmd_pull(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store, print_progress

    try:
        img = default_store().pull(a.image, progress=None if a.quiet else print_progress())
    except (LookupError, OSError, ValueError) as e:
        return _fail(_oneline(e))
    if not a.quiet:
        digests = ", ".join(d.rsplit("@", 1)[1] for d in img.repo_digests[-1:])
        print(f"Digest: {digests}" if digests else f"Image: {img.id}")
    print(a.image if a.quiet else f"Pulled {a.image} ({img.id[:19]})")
    return 0


def cmd_load(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store

    try:
        imgs = default_store().load(a.input)
    except (LookupError, OSError, ValueError, KeyError) as e:
        return _fail(_oneline(e))
    for img in imgs:
        for n in img.names or [img.id]:
            print(f"Loaded image: {n}")
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{n}B"


def cmd_images(a: argparse.Namespace) -> int:
    import json

    from nsprim.images.reference import parse_reference
    from nsprim.images.store import default_store

    rows = []
    for img in default_store().images():
        for n in img.names or ["<none>:<none>"]:
            if n == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                fam = parse_reference(n).familiar()
                repo, _, tag = fam.rpartition(":")
            rows.append({"Repository": repo, "Tag": tag, "ID": img.id[7:19],
                         "Size": _human(img.size), "Layers": len(img.layers)})
    if a.quiet:
        for r in rows:
            print(r["ID"])
    elif a.format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'REPOSITORY':40} {'TAG':16} {'IMAGE ID':14} {'SIZE':>8}")
        for r in rows:
            print(f"{r['Repository']:40} {r['Tag']:16} {r['ID']:14} {r['Size']:>8}")
    return 0


def cmd_rmi(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store

    rc = 0
    for name in a.images:
        try:
            for line in default_store().remove(name, force=a.force):
                print(line)
        except (LookupError, OSError) as e:
            _fail(_oneline(e))
            rc = 1
    return rc


def cmd_volume(a: argparse.Namespace) -> int:
    import json

    from nsprim import volumes
    from nsprim.errors import ConfigError

    try:
        if a.volume_command == "create":
            info, _ = volumes.create(a.name)
            print(info.name)
        elif a.volume_command == "ls":
            vols = volumes.list_volumes()
            if a.quiet:
                for v in vols:
                    print(v.name)
            elif a.format == "json":
                for v in vols:
                    print(json.dumps(v.to_json()))
            else:
                print(f"{'DRIVER':10} VOLUME NAME")
                for v in vols:
                    print(f"{'local':10} {v.name}")
        elif a.volume_command == "rm":
            for n in a.names:
                volumes.remove(n)
                print(n)
        elif a.volume_command == "inspect":
            print(json.dumps([volumes.get(n).to_json() for n in a.names], indent=4))
        else:
            return _fail("volume: expected create, ls, rm or inspect")
    except (ConfigError, LookupError, OSError) as e:
        return _fail(_oneline(e))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        a = parser.parse_args(argv)
    except UsageError as e:
        return _fail(str(e))
    if a.version:
        from nsprim import __version__

        print(f"nsprim {__version__}")
        return 0
    if a.root:
        os.environ["NSPRIM_ROOT"] = os.path.abspath(a.root)
    commands = {"run": cmd_run, "pull": cmd_pull, "load": cmd_load, "images": cmd_images,
                "rmi": cmd_rmi, "volume": cmd_volume}
    if a.command in commands:
        return commands[a.command](a)
    parser.print_help(sys.stderr)
    return EXIT_NSPRIM


if __name__ == "__main__":
    sys.exit(main())
