"""Build the base image of the example, ``nsprim-example/python:3``: the
host's Debian python3 (the interpreter, its shared libraries, its standard
library) and a static busybox, FROM scratch, with ``nsprim build``.

    python examples/seed/make_base.py [TAG]      # the python that has nsprim
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from nsprim.images.build import build
from nsprim.testing import busybox_rootfs, find_static_busybox

SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
        "site-packages", "dist-packages"}


def _libs(path: str) -> set[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    return set(re.findall(r"(/\S+\.so[.\d]*)", out))


def _copy(src: str, root: str) -> None:
    dest = root + src
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.lexists(dest):
        shutil.copy2(src, dest, follow_symlinks=True)


def make_context(ctx: str) -> str:
    bb = find_static_busybox()
    if bb is None:
        raise SystemExit("needs a static busybox (apt-get install busybox-static)")
    root = os.path.join(ctx, "rootfs")
    busybox_rootfs(root, bb)
    exe = os.path.realpath("/usr/bin/python3")
    version = os.path.basename(exe)                      # python3.11
    stdlib = f"/usr/lib/{version}"
    if not version.startswith("python3") or not os.path.isdir(stdlib):
        raise SystemExit("needs Debian's python3 (/usr/bin/python3)")
    _copy(exe, root)
    os.symlink(version, os.path.join(root, "usr/bin/python3"))
    libs = _libs(exe)
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = [d for d in dirnames if d not in SKIP and not d.startswith("config-")]
        for n in filenames:
            p = os.path.join(dirpath, n)
            _copy(p, root)
            if n.endswith(".so"):
                libs |= _libs(p)
    for lib in libs:
        _copy(lib, root)
        real = os.path.realpath(lib)
        if real != lib:
            _copy(real, root)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nCOPY rootfs/ /\nENV PYTHONDONTWRITEBYTECODE=1\n"
                "CMD [\"python3\"]\n")
    return ctx


def main() -> int:
    tag = sys.argv[1] if len(sys.argv) > 1 else "nsprim-example/python:3"
    with tempfile.TemporaryDirectory(prefix="nsprim-pybase-") as ctx:
        img = build(make_context(ctx), tags=[tag], network="none", progress=sys.stdout)
    print(f"{tag}: {img.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
