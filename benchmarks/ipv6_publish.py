"""What the IPv6 side of a published port costs, against the IPv4 side of the
same port in the same run: ``-p P:7`` publishes on 0.0.0.0 (nftables DNAT,
in the kernel) and on [::] (nsprim's userland proxy, as docker-proxy), and
the container runs an echo server (Debian's python3, bound in read-only).

Rows (medians; the ratio is IPv6-through-the-proxy / IPv4-through-DNAT):

- round trip of 64 bytes on one open connection,
- a new connection (connect, one round trip, close),
- bulk: 64 MiB sent and echoed back on one connection (MiB/s).

And what the /etc files cost a start: ``run(['/bin/true'], network='none')``
with the container's own /etc/hosts, hostname and resolv.conf (docker's)
against ``etc_files=False``, interleaved, same run.

    python -m benchmarks.ipv6_publish [--n 2000] [--starts 200]

Needs root, IPv6 on loopback and /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from benchmarks._common import make_rootfs, median

_ECHO = """
import socket, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7)); s.listen(128)
print("ready", flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def _roundtrips(host: str, port: int, n: int) -> list[float]:
    out = []
    with socket.create_connection((host, port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"x" * 64
        for _ in range(n):
            t = time.perf_counter()
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += c.recv(64 - len(got))
            out.append(time.perf_counter() - t)
    return out


def _connects(host: str, port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with socket.create_connection((host, port)) as c:
            c.sendall(b"ping")
            assert c.recv(4) == b"ping"
        out.append(time.perf_counter() - t)
    return out


def _bulk(host: str, port: int, size: int) -> float:
    import threading

    chunk = b"x" * 65536
    with socket.create_connection((host, port)) as c:
        def send() -> None:
            for _ in range(size // len(chunk)):
                c.sendall(chunk)
        t = time.perf_counter()
        th = threading.Thread(target=send)
        th.start()
        got = 0
        while got < size:
            d = c.recv(1 << 20)
            assert d
            got += len(d)
        th.join()
        return size / (1 << 20) / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=200)
    a = ap.parse_args(argv)
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        print("needs root and /usr/bin/python3")
        return 0
    import subprocess

    from nsprim import Bind, Container, run
    from nsprim.network import NetworkMode

    rootfs = make_rootfs()
    libs = [Bind(p, p, readonly=True) for p in ("/usr", "/lib", "/lib64") if os.path.isdir(p)]
    port = 19300
    c = Container(["/usr/bin/python3", "-c", _ECHO], rootfs=rootfs, mounts=libs,
                  network=NetworkMode.bridge([f"{port}:7"]), stdout=subprocess.PIPE)
    print(f"{'':34}{'IPv4 (DNAT)':>14}{'IPv6 (proxy)':>14}{'ratio':>8}")
    with c:
        assert c.stdout is not None and c.stdout.readline() == b"ready\n"
        rows = []
        for name, fn, unit in (
                ("round trip, 64 B (median)", lambda h: median(_roundtrips(h, port, a.n)), "us"),
                ("new connection (median)", lambda h: median(_connects(h, port, a.n // 4)),
                 "us"),
                ("bulk echo 64 MiB", lambda h: _bulk(h, port, 64 << 20), "MiB/s")):
            v4, v6 = fn("127.0.0.1"), fn("::1")
            scale = 1e6 if unit == "us" else 1.0
            rows.append((name, v4 * scale, v6 * scale, unit))
        c.kill()
    for name, v4, v6, unit in rows:
        ratio = v6 / v4 if unit == "us" else v4 / v6
        print(f"{name:34}{v4:>11.1f} {unit:<3}{v6:>10.1f} {unit:<3}{ratio:>7.2f}x")
    print("(ratio: how many times slower the IPv6 side is)")

    # the /etc files on a start
    with_files, without = [], []
    for _ in range(5):
        run(["/bin/true"], rootfs=rootfs, network="none")
    for _ in range(a.starts):
        for lst, flag in ((with_files, True), (without, False)):
            t = time.perf_counter()
            run(["/bin/true"], rootfs=rootfs, network="none", etc_files=flag)
            lst.append(time.perf_counter() - t)
    w, wo = median(with_files), median(without)
    print(f"\nrun(['/bin/true'], network='none'): with /etc files {w * 1e3:.2f} ms, "
          f"without {wo * 1e3:.2f} ms: +{(w - wo) * 1e3:.2f} ms ({w / wo:.2f}x)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
