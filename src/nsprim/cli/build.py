"""The commands of the Dockerfile workflow: build, tag, save, history,
push, login, logout, builder prune.

``add_parsers`` is called by the main parser; it imports nothing heavy.
A failed build exits 1 (docker's code), other failures 125 or 1 as docker.
"""

from __future__ import annotations

import argparse
import os
import sys

from nsprim.cli import _fail, _oneline

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DISPATCH = {
    "build": "build:cmd_build", "tag": "build:cmd_tag", "save": "build:cmd_save",
    "history": "build:cmd_history", "push": "build:cmd_push", "login": "build:cmd_login",
    "logout": "build:cmd_logout", "builder": "build:cmd_builder",
}


def _kv(what: str) -> Any:
    def conv(v: str) -> tuple[str, str | None]:
        k, eq, val = v.partition("=")
        return k, val if eq else None  # checked by the command: a failed build exits 1
    return conv


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("build", help="build an image from a Dockerfile")
    b.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]")
    b.add_argument("-f", "--file", metavar="Dockerfile")
    b.add_argument("--build-arg", action="append", default=[], type=_kv("build arg"),
                   metavar="KEY=VALUE")
    b.add_argument("--target")
    b.add_argument("--no-cache", action="store_true")
    b.add_argument("--pull", action="store_true")
    b.add_argument("--network", default="default")
    b.add_argument("--label", action="append", default=[], type=_kv("label"),
                   metavar="KEY=VALUE")
    b.add_argument("-q", "--quiet", action="store_true")
    b.add_argument("--iidfile", metavar="FILE")
    b.add_argument("context", metavar="CONTEXT|-")
    t = sub.add_parser("tag", help="name an image")
    t.add_argument("source")
    t.add_argument("target")
    s = sub.add_parser("save", help="write images to a docker save archive")
    s.add_argument("-o", "--output", metavar="FILE")
    s.add_argument("--format", choices=["docker", "oci"], default="docker")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    h = sub.add_parser("history", help="show an image's history")
    h.add_argument("-q", "--quiet", action="store_true")
    h.add_argument("--no-trunc", action="store_true")
    h.add_argument("image")
    p = sub.add_parser("push", help="push an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", choices=["docker", "oci"], default="docker")
    p.add_argument("image", metavar="NAME[:TAG]")
    li = sub.add_parser("login", help="store a registry login (~/.docker/config.json)")
    li.add_argument("-u", "--username")
    li.add_argument("-p", "--password")
    li.add_argument("--password-stdin", action="store_true")
    li.add_argument("server", nargs="?", default="docker.io")
    lo = sub.add_parser("logout", help="forget a registry login")
    lo.add_argument("server", nargs="?", default="docker.io")
    bu = sub.add_parser("builder", help="manage the build cache")
    bs = bu.add_subparsers(dest="builder_command")
    pr = bs.add_parser("prune", help="remove the build cache")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("-a", "--all", action="store_true")


def cmd_build(a: argparse.Namespace) -> int:
    if os.geteuid() != 0:  # rootless: the same command, as root of a user namespace
        from nsprim.rootless import run_as_userns_root

        try:
            return run_as_userns_root([sys.executable, "-m", "nsprim", *sys.argv[1:]],
                                      network=a.network != "none")
        except (OSError, ValueError) as e:
            return _fail(_oneline(e), 1)
    from nsprim.images.build import Builder, BuildError

    args: dict[str, str] = {}
    for k, v in a.build_arg + a.label:
        if not k:
            return _fail(f"invalid argument {k}={v or ''}: expected KEY=VALUE", 1)
    for k, v in a.build_arg:
        if v is None:
            if k not in os.environ:
                continue  # docker: an unset variable is left out
            v = os.environ[k]
        args[k] = v
    labels = {k: v or "" for k, v in a.label}
    text: bytes | None = None
    context: str | None = a.context
    if a.context == "-":
        text = sys.stdin.buffer.read((4 << 20) + 1)
        context = None
    elif a.file == "-":
        text = sys.stdin.buffer.read((4 << 20) + 1)
    out = None if a.quiet else sys.stdout
    try:
        builder = Builder(context, dockerfile=None if a.file == "-" else a.file,
                          dockerfile_text=text, tags=a.tag, build_args=args, target=a.target,
                          no_cache=a.no_cache, pull=a.pull, network=a.network, labels=labels,
                          progress=out)
        img = builder.run()
    except BuildError as e:
        return _fail(_oneline(e), 1)
    except (OSError, ValueError, LookupError) as e:
        return _fail(_oneline(e), 1)
    if a.quiet:
        print(img.id)
    if a.iidfile:
        with open(a.iidfile, "w") as f:
            f.write(img.id)
    return 0


def cmd_tag(a: argparse.Namespace) -> int:
    from nsprim.images.store import default_store

    try:
        default_store().tag(a.source, a.target)
    except LookupError as e:
        return _fail(f"No such image: {a.source}" if "no such image" in str(e) else
                     _oneline(e), 1)
    except (OSError, ValueError) as e:
        return _fail(_oneline(e), 1)
    return 0


def cmd_save(a: argparse.Namespace) -> int:
    from nsprim.images.archive import save
    from nsprim.images.store import default_store

    store = default_store()
    try:
        for n in a.images:
            store.get(n)  # every name is checked before anything is written
    except LookupError as e:
        return _fail(_oneline(e), 1)
    if a.output is None and sys.stdout.isatty():
        return _fail("cowardly refusing to save to a terminal. Use the -o flag or "
                     "redirect", 1)
    tmp = None
    try:
        if a.output is None:
            save(a.images, sys.stdout.buffer, format=a.format, store=store)
            sys.stdout.buffer.flush()
        else:
            tmp = a.output + ".nsprim-tmp"
            with open(tmp, "wb") as f:
                save(a.images, f, format=a.format, store=store)
            os.rename(tmp, a.output)
            tmp = None
    except (OSError, ValueError, LookupError) as e:
        return _fail(_oneline(e), 1)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return 0


def _ago(created: str) -> str:
    import datetime

    try:
        t = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + "+00:00"
                                            if created.endswith("Z") else created)
    except ValueError:
        return "N/A"
    s = (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()
    for n, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if s >= n:
            k = int(s // n)
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return "Less than a minute ago" if s >= 1 else "Less than a second ago"


def cmd_history(a: argparse.Namespace) -> int:
    from nsprim.dockerfmt.shapes import human_size as _human
    from nsprim.images.store import default_store, unpacked_size

    try:
        img = default_store().get(a.image)
    except LookupError as e:
        return _fail(f"No such image: {a.image}" if "no such image" in str(e)
                     else _oneline(e), 1)
    rows = []
    layer = len(img.layers)
    entries = img.history or [{"created_by": ""} for _ in img.layers]
    for i, ent in enumerate(reversed(entries)):
        size = 0
        if not ent.get("empty_layer") and layer > 0:
            layer -= 1
            size = unpacked_size(img.layers[layer])
        ident = img.id[7:19] if i == 0 else "<missing>"
        if a.no_trunc and i == 0:
            ident = img.id
        by = " ".join(str(ent.get("created_by", "")).split())
        if not a.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        rows.append((ident, _ago(str(ent.get("created", ""))), by, _human(size),
                     str(ent.get("comment", ""))))
    if a.quiet:
        for r in rows:
            print(r[0])
        return 0
    print(f"{'IMAGE':14} {'CREATED':22} {'CREATED BY':46} {'SIZE':>8}   COMMENT")
    for r in rows:
        print(f"{r[0]:14} {r[1]:22} {r[2]:46} {r[3]:>8}   {r[4]}")
    return 0


def cmd_push(a: argparse.Namespace) -> int:
    from nsprim.images.push import push

    try:
        digest = push(a.image, format=a.format,
                      progress=None if a.quiet else lambda line: print(line, flush=True))
    except (OSError, ValueError, LookupError) as e:
        return _fail(_oneline(e), 1)
    if a.quiet:
        print(a.image)
    else:
        from nsprim.images.reference import parse_reference

        print(f"{parse_reference(a.image).tag or 'latest'}: digest: {digest}")
    return 0


def cmd_login(a: argparse.Namespace) -> int:
    from nsprim.images.push import login

    password = a.password
    if a.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not a.username or password is None:
        return _fail("login needs --username and --password or --password-stdin "
                     "(no prompt)", 1)
    try:
        login(a.server, a.username, password)
    except (OSError, ValueError) as e:
        return _fail(_oneline(e), 1)
    print("Login Succeeded")
    return 0


def cmd_logout(a: argparse.Namespace) -> int:
    from nsprim.images.push import logout

    try:
        found = logout(a.server)
    except (OSError, ValueError) as e:
        return _fail(_oneline(e), 1)
    if not found:
        print(f"Not logged in to {a.server}")
    else:
        print(f"Removing login credentials for {a.server}")
    return 0


def cmd_builder(a: argparse.Namespace) -> int:
    from nsprim.images.build import prune_cache

    if a.builder_command != "prune":
        return _fail("usage: nsprim builder prune [-f]")
    n, removed = prune_cache()
    for line in removed:
        print(line)
    print(f"Total reclaimed: {n} cache records, {len(removed)} layers")
    return 0
