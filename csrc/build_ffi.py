"""cffi builder for nsprim's C core (out-of-line API mode).

Nothing the C headers say is written again here.  The cdef is made at build
time, in this order:

1. kernel constants: the names Python uses (``_KERNEL_CONSTANTS``) and every
   ``CAP_*`` capability number of <linux/capability.h> up to CAP_LAST_CAP,
   found by running the C preprocessor on that header; all declared
   ``#define NAME ...`` so their values come from the compiler;
2. the syscall wrappers of syscalls.h and the spawn engine of spawn.h: the
   text between the ``/* cdef-begin */`` and ``/* cdef-end */`` markers of
   each header, turned into a cdef by ``header_cdef``.

So a field added to a struct of spawn.h, a new op kind or a new wrapper needs
no edit in this file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = ("syscalls.h", "spawn.h")

# constants of the kernel (and libc) headers that Python reads from `lib`
_KERNEL_CONSTANTS = (
    # clone / namespaces
    "CLONE_NEWNS CLONE_NEWUTS CLONE_NEWIPC CLONE_NEWUSER CLONE_NEWPID "
    "CLONE_NEWNET CLONE_NEWCGROUP CLONE_NEWTIME CLONE_INTO_CGROUP CLONE_PIDFD "
    # mount(2)
    "MS_RDONLY MS_NOSUID MS_NODEV MS_NOEXEC MS_REMOUNT MS_BIND MS_REC MS_PRIVATE "
    "MS_SLAVE MS_SHARED MS_STRICTATIME MS_RELATIME MS_MOVE MNT_DETACH MNT_FORCE "
    # new mount API
    "OPEN_TREE_CLONE OPEN_TREE_CLOEXEC AT_RECURSIVE AT_EMPTY_PATH "
    "MOVE_MOUNT_F_EMPTY_PATH MOVE_MOUNT_T_EMPTY_PATH FSOPEN_CLOEXEC FSMOUNT_CLOEXEC "
    "FSCONFIG_SET_FLAG FSCONFIG_SET_STRING FSCONFIG_CMD_CREATE "
    "MOUNT_ATTR_RDONLY MOUNT_ATTR_NOSUID MOUNT_ATTR_NODEV MOUNT_ATTR_NOEXEC "
    "MOUNT_ATTR_IDMAP "
    # *at(2) and openat2(2)
    "AT_FDCWD CLOSE_RANGE_CLOEXEC RESOLVE_IN_ROOT RESOLVE_NO_MAGICLINKS O_PATH"
).split()

_BEGIN = "/* cdef-begin"
_END = "/* cdef-end */"
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_]\w*)(\(?)\s*(.*)")
_STATIC_INLINE = re.compile(r"\bstatic\s+inline\s+")
_ENUM_OR_STRUCT = re.compile(r"\b(enum|struct|union)\s+(\w+)\s*\{")


class CdefError(RuntimeError):
    """A header's cdef region holds something this builder cannot declare."""


def _compiler() -> list[str]:
    """The C compiler the extension is built with (CC wins, as in distutils)."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def kernel_capabilities() -> list[str]:
    """``CAP_*`` names of <linux/capability.h>, CAP_CHOWN .. CAP_LAST_CAP (and
    CAP_LAST_CAP itself), read from the preprocessor's macro dump."""
    try:
        out = subprocess.run(
            [*_compiler(), "-dM", "-E", "-x", "c", "-"],
            input="#include <linux/capability.h>\n",
            capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or e
        raise CdefError(f"cannot preprocess <linux/capability.h>: {detail}") from e
    defines: dict[str, str] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"#define (CAP_\w+) (\S+)", line.strip())
        if m:
            defines[m.group(1)] = m.group(2)

    def value(name: str, depth: int = 0) -> int | None:
        v = defines.get(name)
        if v is None or depth > 8:
            return None
        if v.isdigit():
            return int(v)
        return value(v, depth + 1)  # an alias (CAP_LAST_CAP CAP_CHECKPOINT_RESTORE)

    last = value("CAP_LAST_CAP")
    if last is None:
        raise CdefError("<linux/capability.h> defines no numeric CAP_LAST_CAP")
    numbered = {n: v for n in defines if (v := value(n)) is not None and v <= last}
    return sorted(numbered, key=lambda n: (n == "CAP_LAST_CAP", numbered[n], n))


def _region(text: str, name: str) -> str:
    """The text between the cdef markers of header `name` (all such regions)."""
    parts = []
    pos = 0
    while (start := text.find(_BEGIN, pos)) >= 0:
        start = text.index("*/", start) + 2  # the begin marker may carry a comment
        end = text.find(_END, start)
        if end < 0:
            raise CdefError(f"{name}: cdef-begin without cdef-end")
        parts.append(text[start:end])
        pos = end + len(_END)
    if not parts:
        raise CdefError(f"{name}: no /* cdef-begin */ ... /* cdef-end */ region")
    return "\n".join(parts)


def _matching_brace(text: str, open_at: int) -> int:
    """Index of the ``}`` closing the ``{`` at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise CdefError("unbalanced braces in a cdef region")


def _split_top(body: str) -> list[str]:
    """`body` split at the commas outside parentheses."""
    items, depth, cur = [], 0, []
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def _declarations(code: str) -> str:
    """C declarations (comments and directives gone) made cffi-ready: a
    ``static inline`` definition becomes its prototype; an enum keeps its
    names and takes its values from the compiler (``...``); a struct or union
    keeps its fields and takes its layout from the compiler (``...;``)."""
    out: list[str] = []
    pos = 0
    while pos < len(code):
        fn = _STATIC_INLINE.search(code, pos)
        agg = _ENUM_OR_STRUCT.search(code, pos)
        m = min((x for x in (fn, agg) if x is not None), key=lambda x: x.start(), default=None)
        if m is None:
            out.append(code[pos:])
            break
        out.append(code[pos:m.start()])
        if m is fn:
            brace = code.find("{", m.end())
            semi = code.find(";", m.end())
            if brace < 0 or (0 <= semi < brace):
                raise CdefError(f"static inline without a body: {code[m.start():semi]!r}")
            out.append(" ".join(code[m.end():brace].split()) + ";")
            pos = _matching_brace(code, brace) + 1
        else:
            kind, tag = m.group(1), m.group(2)
            close = _matching_brace(code, m.end() - 1)
            body = code[m.end():close]
            if kind == "enum":
                names = [item.split("=")[0].strip() for item in _split_top(body)]
                names = [n for n in names if n != "..."]
                out.append(f"enum {tag} {{ {', '.join(names)}, ... }}")
            else:
                fields = " ".join(body.split())
                if not fields.endswith("...;"):
                    fields += " ...;"
                out.append(f"{kind} {tag} {{ {fields} }}")
            pos = close + 1
    return "".join(out)


def header_cdef(path: str) -> str:
    """The cdef of header `path`: the declarations of its cdef regions, each
    ``#define NAME value`` as ``#define NAME ...``."""
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        region = _COMMENT.sub(" ", _region(f.read(), name))
    defines: list[str] = []
    code: list[str] = []
    for line in region.splitlines():
        if not line.lstrip().startswith("#"):
            code.append(line)
            continue
        d = _DEFINE.fullmatch(line.strip())
        if d is None or d.group(2) or not d.group(3):
            raise CdefError(f"{name}: cffi cannot declare {line.strip()!r}; "
                            "keep it out of the cdef region")
        defines.append(f"#define {d.group(1)} ...")
    decls = _declarations("\n".join(code))
    decls = "\n".join(ln.rstrip() for ln in decls.splitlines() if ln.strip())
    return "\n".join(defines) + "\n" + decls + "\n"


def make_cdef() -> str:
    constants = [*_KERNEL_CONSTANTS, *kernel_capabilities()]
    parts = ["".join(f"#define {c} ...\n" for c in constants)]
    parts += [header_cdef(os.path.join(HERE, h)) for h in HEADERS]
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(make_cdef())
ffibuilder.set_source(
    "nsprim._nsprim_c",
    "".join(f'#include "{h}"\n' for h in HEADERS) + "#include <linux/capability.h>\n",
    sources=[os.path.relpath(os.path.join(HERE, "spawn.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
