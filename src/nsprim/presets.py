"""Presets: sets of run()/Container keywords for a purpose, overridable
field by field.

:data:`SANDBOX` is what a code-execution sandbox should run untrusted code
with, so that its author need not know each choice::

    from nsprim import run, presets

    r = run(["python3", "-c", code], rootfs=root, **presets.sandbox())
    r = run(["sh", "-c", code], rootfs=root, **presets.sandbox(memory="64m", timeout=2))
    r.timed_out, r.oom_killed, r.stdout_truncated, r.memory_peak, r.pids_peak

What it is, field by field (each one a keyword of :func:`nsprim.run`):

- ``user="65534:65534"``: the command runs as nobody (no name lookup
  needed), never as root;
- ``cap_drop=("ALL",)``: no capability at all, so docker's seccomp profile
  (``seccomp="default"``) also refuses every namespace creation -- user
  namespaces included (``unshare``, ``clone`` with ``CLONE_NEW*``; ``clone3``
  is ENOSYS) -- and ``mount``, ``ptrace``, ``bpf``, ``keyctl``...;
- ``no_new_privileges=True``: no setuid binary of the image regains root;
- ``read_only=True`` and a ``Tmpfs("/tmp", size=64 MiB)``: the root cannot
  be written; /tmp can, up to its size (ENOSPC past it);
- ``network="none"``: a network namespace with only ``lo``;
- ``memory="256m"``, ``memory_swap="256m"`` (no swap) and ``pids=64``: a
  memory hog is OOM-killed (``oom_killed``) and a fork bomb stops at 64
  processes; both in a cgroup of the container's own, removed (everything
  in it killed) when it ends;
- ``timeout=10`` with ``raise_on_timeout=False``: a command that runs too
  long is killed, and the result says ``timed_out=True`` (its output so far
  kept);
- ``output_limit=1 MiB`` per stream, ``on_output_limit="kill"``: the first
  MiB of each stream is kept (``stdout_truncated``), then the container is
  killed: the caller's memory stays bounded;
- ``die_with_parent=True``: the container dies when the calling process
  dies, whichever thread started it;
- ``ulimits``: 1024 open files, files of at most 64 MiB (``SIGXFSZ``
  past it), no core dumps.

Everything the default container has stays: new pid, mount, uts, ipc,
cgroup and net namespaces (PID 1 is the command: when it exits, every
process it left behind is killed), docker's masked paths, nodev, a fresh
session keyring, no fd of the caller's but 0-2.

"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from nsprim.config import Tmpfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from typing_extensions import Unpack

    from nsprim.container import Container, ContainerOptions

    class RunOptions(ContainerOptions, total=False):
        """run()'s own keywords beside Container's."""

        input: bytes | None
        capture_output: bool
        timeout: float | None
        check: bool
        raise_on_timeout: bool

__all__ = ["SANDBOX", "sandbox", "sandbox_container", "TMP_SIZE", "OUTPUT_LIMIT"]

#: the size of the sandbox's /tmp
TMP_SIZE = 64 << 20
#: bytes kept of each output stream
OUTPUT_LIMIT = 1 << 20

#: the sandbox preset: run() keywords (read-only; see the module's text)
SANDBOX: Mapping[str, Any] = MappingProxyType({
    "user": "65534:65534",
    "cap_drop": ("ALL",),
    "no_new_privileges": True,
    "seccomp": "default",
    "read_only": True,
    "mounts": (Tmpfs("/tmp", size=TMP_SIZE, mode=0o1777),),
    "network": "none",
    "memory": "256m",
    "memory_swap": "256m",
    "pids": 64,
    "timeout": 10.0,
    "raise_on_timeout": False,
    "capture_output": True,
    "output_limit": OUTPUT_LIMIT,
    "on_output_limit": "kill",
    "die_with_parent": True,
    "ulimits": MappingProxyType({"nofile": (1024, 1024), "fsize": (TMP_SIZE, TMP_SIZE),
                                 "core": 0}),
})

_RUN_ONLY = ("input", "capture_output", "timeout", "check", "raise_on_timeout")


def sandbox(**overrides: Unpack[RunOptions]) -> RunOptions:
    """The :data:`SANDBOX` keywords with `overrides` applied, for
    ``run(argv, rootfs=..., **sandbox(...))`` (or ``aio.run``).  A field
    given as None is dropped back to run()'s own default (``timeout=None``:
    no timeout)."""
    from nsprim.container import Container, run

    out: dict[str, Any] = dict(SANDBOX)
    out.update(overrides)
    known = set(Container.__init__.__code__.co_varnames) | set(run.__code__.co_varnames)
    for k in out:
        if k not in known:
            raise TypeError(f"sandbox() got an unexpected keyword {k!r}")
    if "stdout" in overrides or "stderr" in overrides:
        out.pop("capture_output", None)
    return out  # type: ignore[return-value]


def sandbox_container(argv: Any, **overrides: Any) -> Container:
    """A Container with the :data:`SANDBOX` keywords (without run()'s own:
    timeout, output capture) and `overrides`; for exec-style sandboxes that
    keep one warm container and ``exec()`` commands in it.  Give the
    commands a timeout and an output limit of their own."""
    from nsprim.container import Container

    kw = {k: v for k, v in SANDBOX.items() if k not in _RUN_ONLY}
    kw.update(overrides)
    return Container(argv, **kw)
