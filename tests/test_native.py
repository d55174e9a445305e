"""The C core as cffi declares it: the rules C exports, and declarations that
follow the headers (csrc/build_ffi.py reads csrc/spawn.h and csrc/syscalls.h)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nsprim._native import ffi, lib
from nsprim.plan import Op, compile_plan

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def _needs_parent(ops: list[Op]) -> int:
    arr, keep = compile_plan(ops)
    args = ffi.new("struct nsp_spawn_args *")
    args.ops = arr
    args.nops = len(ops)
    answer = lib.nsp_plan_needs_parent(args)
    del keep
    return int(answer)


def _plain_ops() -> list[Op]:
    return [
        Op(lib.NSP_OP_SETSID, "setsid"),
        Op(lib.NSP_OP_HOSTNAME, "hostname", src="box"),
        Op(lib.NSP_OP_NO_NEW_PRIVS, "no_new_privs"),
        Op(lib.NSP_OP_EXEC, "exec", argv=("/bin/true",), env=()),
    ]


def test_plan_without_sync_or_pty_can_share_memory() -> None:
    assert _needs_parent(_plain_ops()) == 0
    assert _needs_parent([]) == 0


@pytest.mark.parametrize("where", [0, 2, 4])
def test_plan_with_sync_needs_the_parent(where: int) -> None:
    ops = _plain_ops()
    ops.insert(where, Op(lib.NSP_OP_SYNC, "sync"))
    assert _needs_parent(ops) == 1


def test_plan_with_pty_needs_the_parent() -> None:
    ops = _plain_ops()
    ops.insert(3, Op(lib.NSP_OP_PTY, "pty"))
    assert _needs_parent(ops) == 1


def test_only_the_first_nops_ops_count() -> None:
    ops = [*_plain_ops(), Op(lib.NSP_OP_SYNC, "sync")]
    arr, keep = compile_plan(ops)
    args = ffi.new("struct nsp_spawn_args *")
    args.ops = arr
    args.nops = len(ops) - 1  # the SYNC op lies past the plan's end
    assert lib.nsp_plan_needs_parent(args) == 0
    args.nops = len(ops)
    assert lib.nsp_plan_needs_parent(args) == 1
    del keep


def test_struct_fields_follow_spawn_h() -> None:
    """Every field spawn.h gives struct nsp_op and struct nsp_spawn_args is
    what cffi knows, in the header's order."""
    text = re.sub(r"/\*.*?\*/", " ", (CSRC / "spawn.h").read_text(), flags=re.S)
    for tag in ("nsp_op", "nsp_spawn_args", "nsp_spawn_result", "nsp_msg"):
        body = re.search(r"struct\s+" + tag + r"\s*\{(.*?)\};", text, re.S)
        assert body is not None, tag
        names = [re.findall(r"\w+", decl)[-1] for decl in body.group(1).split(";")
                 if decl.strip()]
        assert [name for name, _ in ffi.typeof(f"struct {tag}").fields] == names


def test_constants_are_named() -> None:
    assert lib.AT_FDCWD < 0  # the "current directory" dirfd of the *at calls
    fd = lib.nsp_openat2(lib.AT_FDCWD, os.fsencode("/"), os.O_PATH | os.O_CLOEXEC, 0, 0)
    assert fd >= 0
    os.close(fd)
    assert lib.NSP_EXIT_SETUP == 125
    caps = {n for n in dir(lib) if n.startswith("CAP_") and n != "CAP_LAST_CAP"}
    assert {"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"} <= caps
    # every capability up to the last one the kernel headers know, no gap
    assert sorted(int(getattr(lib, n)) for n in caps) == list(range(lib.CAP_LAST_CAP + 1))
