"""asyncio front end: containers driven by the running event loop.

``await aio.run([...], rootfs=R, capture_output=True)`` is :func:`nsprim.run`
for coroutines, and :class:`AsyncContainer` is :class:`nsprim.Container`'s
asyncio twin (``start``, ``wait``, ``communicate``, ``exec``, ``kill``).

How it runs: the container's exit is seen by the loop watching its pidfd
(``loop.add_reader``: a pidfd is readable once the process has exited), its
pipes are read and written by the loop (non-blocking fds, ``add_reader`` /
``add_writer``): no thread per container.  What may block goes to the loop's
default executor (a small, bounded pool): the clone and setup of a container
(about a millisecond of the kernel's work, done in parallel on several cores
there), and the release of what it acquired (removing a cgroup waits for it
to empty; unmounting an overlay).  Reaping itself never blocks: it happens
after the pidfd said the process had exited.

Timeouts and output limits behave as in :func:`nsprim.run`; cancelling a
coroutine that awaits a container kills the container and releases it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from nsprim.container import (
    PIPE,
    Container,
    _completed,
    _stdio_for_run,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from typing_extensions import Unpack

    from nsprim._completed import CompletedContainer
    from nsprim.container import ContainerOptions, StdioSpec

__all__ = ["AsyncContainer", "run", "PIPE"]


class AsyncContainer:
    """A :class:`Container` driven by the running asyncio loop.

    ``AsyncContainer(argv, **container_keywords)`` takes every keyword of
    Container; nothing happens until ``await start()`` (or ``async with``).
    The underlying Container is ``.container`` (its ``pid``, ``id``,
    ``stats``... are there).
    """

    def __init__(self, argv: Sequence[str] | None = None, *,
                 _container: Container | None = None, **kwargs: Any) -> None:
        c = _container if _container is not None else Container(argv, **kwargs)
        c._release_on_reap = False  # released by _finish(), in a worker
        #: the Container this drives
        self.container = c
        self._exited: asyncio.Future[None] | None = None
        self._finished = False

    # ------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        """The first process's pid (None before start)."""
        return self.container.pid

    @property
    def returncode(self) -> int | None:
        """Its return code once it has exited and been reaped, else None."""
        return self.container.returncode

    # ------------------------------------------------------------ life
    async def start(self) -> AsyncContainer:
        """Start the container (its setup runs in the loop's executor)."""
        c = self.container
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, c.start)
        for f in (c.stdout, c.stderr, c.stdin):
            if f is not None:
                os.set_blocking(f.fileno(), False)
        return self

    def _exit_future(self) -> asyncio.Future[None]:
        """Resolved when the pidfd turns readable (the process has exited)."""
        if self._exited is None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            self._exited = fut
            c = self.container
            if c.returncode is not None or c.pidfd < 0:
                fut.set_result(None)
            else:
                fd = c.pidfd

                def exited() -> None:
                    loop.remove_reader(fd)
                    if not fut.done():
                        fut.set_result(None)

                loop.add_reader(fd, exited)
        return self._exited

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the first process to end and release the container;
        return its code.  Raises subprocess.TimeoutExpired."""
        c = self.container
        if c.pid is None:
            raise RuntimeError("container not started")
        if c.returncode is None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exit_future()), timeout)
            except asyncio.TimeoutError:
                raise subprocess.TimeoutExpired(list(c.config.argv), timeout or 0) from None
            while c.poll() is None:  # readable: the reap does not block
                await asyncio.sleep(0.001)  # (unless another thread reaps now)
        await self._finish()
        assert c.returncode is not None
        return c.returncode

    async def _finish(self) -> None:
        """Stats read and resources released, in a worker (blocking)."""
        if self._finished:
            return
        self._finished = True
        c = self.container
        if c.returncode is None:
            return
        if c.cgroup is not None and (c._owns_cgroup or c._pool is not None) \
                or c._overlay is not None \
                or c.attachment is not None or c._netns is not None:
            await asyncio.get_running_loop().run_in_executor(None, c._finish)
        else:
            c._finish()

    def send_signal(self, sig: int) -> None:
        """Signal the first process (a no-op once it has been reaped)."""
        self.container.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the first process."""
        self.container.kill()

    def kill_all(self) -> None:
        """SIGKILL every process of the container (its cgroup's if it has one)."""
        self.container.kill_all()

    # ------------------------------------------------------------ pipes
    async def communicate(self, input: bytes | None = None, timeout: float | None = None
                          ) -> tuple[bytes | None, bytes | None]:
        """Write `input`, read stdout and stderr to EOF, wait; as
        Container.communicate (output kept across a timeout, output_limit)."""
        c = self.container
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if c._open_streams is None:
            c._open_streams = {i for i, f in ((1, c.stdout), (2, c.stderr)) if f is not None}
            if c.stdin is not None and input:
                c._input_left = memoryview(input)
            elif c.stdin is not None:
                c.stdin.close()
        done: asyncio.Future[None] = loop.create_future()
        readers: dict[int, int] = {}
        writer = -1
        open_streams = c._open_streams

        def maybe_done() -> None:
            if not readers and writer < 0 and not done.done():
                done.set_result(None)

        def on_read(stream: int, fd: int) -> None:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                loop.remove_reader(fd)
                readers.pop(stream, None)
                open_streams.discard(stream)
                maybe_done()
            elif c._take(stream, chunk):
                c.output_limit_killed = True
                c.kill_all()

        def on_write(fd: int) -> None:
            nonlocal writer
            view = c._input_left
            assert view is not None and c.stdin is not None
            try:
                n = os.write(fd, view[:65536])
            except BlockingIOError:
                return
            except BrokenPipeError:
                n = len(view)
            c._input_left = view = view[n:]
            if not view:
                loop.remove_writer(fd)
                writer = -1
                c.stdin.close()
                maybe_done()

        for stream in sorted(open_streams):
            f = c.stdout if stream == 1 else c.stderr
            assert f is not None
            readers[stream] = f.fileno()
            loop.add_reader(f.fileno(), on_read, stream, f.fileno())
        if c._input_left is not None and c.stdin is not None and not c.stdin.closed:
            writer = c.stdin.fileno()
            loop.add_writer(writer, on_write, writer)
        maybe_done()
        try:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait_for(asyncio.shield(done), left)
        except asyncio.TimeoutError:
            raise subprocess.TimeoutExpired(list(c.config.argv), timeout or 0,
                                            c._output(1), c._output(2)) from None
        finally:
            for fd in readers.values():
                loop.remove_reader(fd)
            if writer >= 0:
                loop.remove_writer(writer)
        out, err = c._output(1), c._output(2)
        c._close_pipes()
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await self.wait(left)
        except subprocess.TimeoutExpired as e:
            e.output, e.stderr = out, err
            raise
        return out, err

    async def _complete(self, input: bytes | None, timeout: float | None, check: bool,
                        raise_on_timeout: bool, kill_all: bool) -> CompletedContainer:
        """communicate, then a result; killed and released whatever happens."""
        c = self.container
        timed_out = False
        try:
            try:
                out, err = await self.communicate(input, timeout)
            except subprocess.TimeoutExpired as e:
                timed_out = True
                c.kill_all() if kill_all else c.kill()
                await self.wait()
                c._drain_now()
                out, err = c._output(1), c._output(2)
                if raise_on_timeout:
                    e.output, e.stderr = out, err
                    raise
        finally:
            if c.returncode is None:
                c.kill_all() if kill_all else c.kill()
                await asyncio.shield(self.wait())
            c._close_pipes()
            await self._finish()
        result = _completed(c, out, err, timed_out)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, out, err)
        return result

    # ------------------------------------------------------------ exec
    async def exec_start(self, argv: Sequence[str], **kwargs: Any) -> AsyncContainer:
        """Start `argv` in this running container (Container.exec_start's
        keywords); the returned AsyncContainer drives it."""
        loop = asyncio.get_running_loop()
        c = await loop.run_in_executor(None, lambda: self.container.exec_start(argv, **kwargs))
        for f in (c.stdout, c.stderr, c.stdin):
            if f is not None:
                os.set_blocking(f.fileno(), False)
        return AsyncContainer(_container=c)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | Iterable[str] | None = None,
        cwd: str | None = None,
        user: str | int | tuple[int, int] | None = None,
        stdin: StdioSpec = None,
        stdout: StdioSpec = None,
        stderr: StdioSpec = None,
        capture_output: bool = False,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        raise_on_timeout: bool = True,
        tty: bool = False,
        output_limit: int | None = None,
        on_output_limit: str = "kill",
    ) -> CompletedContainer:
        """Container.exec for coroutines: run `argv` in this container and
        wait for it (the container keeps running)."""
        stdin, stdout, stderr = _stdio_for_run(capture_output, input, stdin, stdout, stderr)
        p = await self.exec_start(argv, env=env, cwd=cwd, user=user, stdin=stdin,
                                  stdout=stdout, stderr=stderr, tty=tty,
                                  output_limit=output_limit, on_output_limit=on_output_limit)
        return await p._complete(input, timeout, check, raise_on_timeout, kill_all=False)

    # ------------------------------------------------------------ context
    async def __aenter__(self) -> AsyncContainer:
        if self.container.pid is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        c = self.container
        c._close_pipes()
        if c.pid is not None and c.returncode is None:
            c.kill_all()
            await asyncio.shield(self.wait())
        await self._finish()
        c._close_pipes()


async def run(
    argv: Sequence[str] | None = None,
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    raise_on_timeout: bool = True,
    stdin: StdioSpec = None,
    stdout: StdioSpec = None,
    stderr: StdioSpec = None,
    **kwargs: Unpack[ContainerOptions],
) -> CompletedContainer:
    """:func:`nsprim.run` for coroutines: start `argv` in a new container,
    feed `input`, collect its output, wait; the same keywords and result.
    Cancelled, it kills the container and releases it before re-raising."""
    stdin, stdout, stderr = _stdio_for_run(capture_output, input, stdin, stdout, stderr)
    ac = AsyncContainer(argv, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)
    await ac.start()
    return await ac._complete(input, timeout, check, raise_on_timeout, kill_all=True)
