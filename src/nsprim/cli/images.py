"""The commands on images: pull, load, images, rmi."""

from __future__ import annotations

import argparse

from nsprim.cli import (
    _fail,
    _oneline,
    _print_rows,
)


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
    import tempfile

    from nsprim.images.store import default_store

    tmp = None
    try:
        if a.input is None or a.input == "-":  # docker load < FILE
            import shutil
            import sys

            tmp = tempfile.NamedTemporaryFile(prefix="nsprim-load-", suffix=".tar")
            shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
            tmp.flush()
        imgs = default_store().load(a.input if tmp is None else tmp.name)
    except (LookupError, OSError, ValueError, KeyError) as e:
        return _fail(_oneline(e))
    finally:
        if tmp is not None:
            tmp.close()
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
    _print_rows(a, rows, f"{'REPOSITORY':40} {'TAG':16} {'IMAGE ID':14} {'SIZE':>8}",
                lambda r: f"{r['Repository']:40} {r['Tag']:16} {r['ID']:14} {r['Size']:>8}")
    return 0


def cmd_rmi(a: argparse.Namespace) -> int:
    from nsprim.images.store import ImageInUse, default_store

    rc = 0
    for name in a.images:
        try:
            for line in default_store().remove(name, force=a.force):
                print(line)
        except (LookupError, OSError, ImageInUse) as e:
            _fail(_oneline(e))
            rc = 1
    return rc
