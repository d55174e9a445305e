"""Helpers for tests, benchmarks and demos: a root filesystem from the host's
static busybox (Debian's busybox-static), with no network access needed.

    python -m nsprim.testing busybox-rootfs DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["find_static_busybox", "busybox_rootfs"]

_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_static_busybox() -> str | None:
    """The path of a statically linked busybox, or None."""
    for p in _CANDIDATES:
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            head = f.read(1 << 20)
        # a dynamically linked ELF names its interpreter (PT_INTERP)
        if b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head \
                and b"ld-musl" not in head:
            return p
    return None


def busybox_rootfs(dest: str | os.PathLike[str], busybox: str | None = None) -> Path:
    """Make a minimal rootfs at `dest`: busybox and its applets in /bin, the
    usual mount points, /etc/passwd and /etc/group with root, user (1000) and
    nobody, and /notexec (a file without the execute bit)."""
    bb = busybox or find_static_busybox()
    if bb is None:
        raise FileNotFoundError("no static busybox found (apt-get install busybox-static)")
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    for sub in ("bin", "proc", "dev", "sys", "tmp", "etc", "root", "home/user"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "tmp", 0o1777)
    shutil.copy2(bb, d / "bin" / "busybox")
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        link = d / "bin" / a
        if a != "busybox" and not link.is_symlink():
            link.symlink_to("busybox")
    (d / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (d / "etc" / "group").write_text(
        "root:x:0:\ntty:x:5:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n")
    (d / "notexec").write_text("#!/bin/sh\necho no\n")
    os.chmod(d / "notexec", 0o644)
    return d


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "busybox-rootfs":
        print("usage: python -m nsprim.testing busybox-rootfs DIR", file=sys.stderr)
        return 2
    try:
        print(busybox_rootfs(argv[1]))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"nsprim.testing: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
