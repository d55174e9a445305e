"""`--network usernet`: one user's rootless containers reach each other by
IP address on a network namespace kept for that user (a holder process,
pasta attached once), as rootless podman's rootless-netns; another user's
containers do not reach them; the holder goes with the last container."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from .rootless_users import User, Users

UNET = ("--network", "usernet")


def _get(ip: str) -> list[str]:
    """An HTTP GET of /hostname from inside a container (busybox nc; its
    static wget crashes in glibc's NSS here)."""
    return ["sh", "-c", f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80"]


def _holder(u: User) -> int | None:
    d = os.path.join(u.data_root, "run", "usernet")
    try:
        with open(os.path.join(d, "holder.pid")) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _own_rootfs(u: User, src: str) -> str:
    """A copy of the rootfs that is the user's (root of the user's namespace
    creates the mount targets it lacks, as /etc/hosts)."""
    dest = os.path.join(u.home, "usernet-rootfs")
    if not os.path.isdir(dest):
        shutil.copytree(src, dest, symlinks=True)
        subprocess.run(["chown", "-R", f"{u.uid}:{u.gid}", dest], check=True)
    return dest


def test_usernet_containers_of_one_user_reach_each_other(rootless_users: Users) -> None:
    a, b = rootless_users["a"], rootless_users["b"]
    rf = _own_rootfs(a, rootless_users.rootfs)
    rfb = _own_rootfs(b, rootless_users.rootfs)
    r = a.nsprim("run", "-d", "--name", "web", *UNET, "--rootfs", rf, "--",
                 "httpd", "-f", "-p", "80", "-h", "/etc")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        ip = a.nsprim("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
        assert ip.count(".") == 3, ip
        holder = _holder(a)
        assert holder is not None
        with open(os.path.join(a.data_root, "run", "usernet", "pasta.pid")) as f:
            pasta = int(f.read())
        with open(f"/proc/{pasta}/cmdline", "rb") as f:
            assert os.path.basename(f.read().split(b"\0")[0]) == b"pasta"
        # the same user's second container fetches from the first, by IP
        r = a.nsprim("run", "--rm", *UNET, "--rootfs", rf, "--", *_get(ip))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("HTTP/1.") and r.stdout.strip().endswith(cid[:12]), r.stdout
        assert _holder(a) == holder  # one holder for the user's containers
        # another user's container is on its own network (its own 10.88.0.0/16,
        # where that address is nobody's or its own): a's server is not reached
        r = b.nsprim("run", "--rm", *UNET, "--rootfs", rfb, "--", *_get(ip))
        assert r.returncode != 0 and cid[:12] not in r.stdout, (r.stdout, r.stderr)
        hb = _holder(b)
        assert hb is not None and hb != holder
        # nothing on the host: the bridge and the veths are in the user's namespace
        assert not [n for _i, n in __import__("socket").if_nameindex()
                    if n.startswith("nsp" + cid[:12])]
    finally:
        assert a.nsprim("rm", "-f", "web").returncode == 0
    # the last container gone, the holder (and its pasta) end
    assert _wait_gone(holder)
    assert _wait_gone(pasta)  # pasta leaves with the namespace it served
    hb2 = _holder(b)
    if hb2 is not None:
        assert _wait_gone(hb2)


def test_usernet_needs_a_full_mapping(rootless_users: Users) -> None:
    c = rootless_users["c"]  # no subordinate ids
    r = c.nsprim("run", "--rm", *UNET, "--rootfs", rootless_users.rootfs, "--", "true")
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "usernet" in lines[0] and "/etc/subuid" in lines[0], r.stderr
