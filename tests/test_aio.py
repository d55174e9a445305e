"""nsprim.aio: containers on the running asyncio loop, no thread per
container.  Real containers; needs root."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading

import pytest

from nsprim import PIPE, aio, run


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_run_captures_and_reports(rootfs: str) -> None:
    r = asyncio.run(aio.run(["sh", "-c", "read x; echo out $x; echo err >&2; exit 3"],
                            rootfs=rootfs, input=b"in\n", capture_output=True))
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out in\n", b"err\n")
    assert r.duration is not None and r.cpu_time is not None


def test_two_hundred_containers_on_one_loop(rootfs: str) -> None:
    run(["true"], rootfs=rootfs, pids=16)  # per-process caches opened once
    fds, threads = fd_count(), threading.active_count()
    peak_threads = 0

    async def main() -> list[bytes]:
        nonlocal peak_threads

        async def one(i: int) -> bytes:
            nonlocal peak_threads
            r = await aio.run(["sh", "-c", f"sleep 0.5; echo {i}"], rootfs=rootfs,
                              capture_output=True, pids=16 if i % 4 == 0 else None,
                              timeout=120)
            peak_threads = max(peak_threads, threading.active_count())
            assert r.returncode == 0
            assert (r.pids_peak is not None) == (i % 4 == 0)
            return r.stdout

        return await asyncio.gather(*(one(i) for i in range(200)))

    outs = asyncio.run(main())
    assert outs == [f"{i}\n".encode() for i in range(200)]
    # a bounded executor, not a thread per container
    assert peak_threads - threads <= (os.cpu_count() or 1) + 5
    assert fd_count() == fds


def test_timeout_kills_and_keeps_output(rootfs: str) -> None:
    async def main() -> None:
        with pytest.raises(subprocess.TimeoutExpired) as ei:
            await aio.run(["sh", "-c", "echo partial; sleep 30"], rootfs=rootfs,
                          capture_output=True, timeout=0.5)
        assert ei.value.stdout == b"partial\n"
        r = await aio.run(["sh", "-c", "echo partial; sleep 30"], rootfs=rootfs,
                          capture_output=True, timeout=0.5, raise_on_timeout=False)
        assert r.timed_out and r.returncode == -signal.SIGKILL

    asyncio.run(main())


def test_output_limit_on_the_loop(rootfs: str) -> None:
    r = asyncio.run(aio.run(["yes"], rootfs=rootfs, capture_output=True, output_limit=4096,
                            timeout=30))
    assert r.stdout == b"y\n" * 2048 and r.stdout_truncated
    assert r.returncode == -signal.SIGKILL


def test_cancel_kills_the_container(rootfs: str) -> None:
    fds = fd_count()

    async def main() -> None:
        t = asyncio.ensure_future(aio.run(["sleep", "30"], rootfs=rootfs, memory="32m"))
        await asyncio.sleep(0.5)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    assert fd_count() == fds


def test_async_container_exec_and_kill(rootfs: str) -> None:
    async def main() -> None:
        async with aio.AsyncContainer(["sleep", "30"], rootfs=rootfs, env={"A": "1"}) as c:
            r = await c.exec(["sh", "-c", "echo $A; cat /proc/1/cmdline"], capture_output=True)
            assert r.stdout == b"1\nsleep\x0030\x00"
            p = await c.exec_start(["cat"], stdin=PIPE, stdout=PIPE)
            out, _ = await p.communicate(b"x" * 200000, timeout=10)
            assert out == b"x" * 200000 and p.returncode == 0
            assert c.returncode is None
            c.kill()
            assert await c.wait(timeout=10) == -signal.SIGKILL

    asyncio.run(main())


def test_wait_timeout(rootfs: str) -> None:
    async def main() -> None:
        async with aio.AsyncContainer(["sleep", "30"], rootfs=rootfs) as c:
            with pytest.raises(subprocess.TimeoutExpired):
                await c.wait(timeout=0.2)
            assert c.returncode is None
        assert c.returncode == -signal.SIGKILL

    asyncio.run(main())
