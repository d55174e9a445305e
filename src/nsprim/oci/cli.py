"""``nsprim-runtime``: runc's command line (what podman's conmon, containerd's
shim and dockerd call), over nsprim's spec and spawn engine.

Global flags: ``--root DIR`` (default ``$NSPRIM_RUNTIME_ROOT``, else
/run/nsprim-runtime), ``--log FILE``,
``--log-format text|json``, ``--debug``, ``--systemd-cgroup`` (accepted:
cgroups are always made by nsprim on the filesystem, under ``nsprim/``;
no systemd unit is created and ``cgroupsPath`` is not used), ``--version``.

Errors: one line on stderr and, with ``--log``, one line in the log file
(``{"level":"error","msg":...,"time":...}`` with ``--log-format json``);
exit status 1, runc's wording where clients match on it.

This module imports only the standard library at start; the commands that
spawn import :mod:`nsprim.oci.create` when they run.
"""

from __future__ import annotations

import json
import os
import sys
import time

from nsprim.oci import state as st_mod
from nsprim.oci.state import TYPE_CHECKING, RuntimeError_

if TYPE_CHECKING:  # typing costs milliseconds at start-up; only mypy needs it
    import argparse
    from typing import Any, NoReturn

DEFAULT_ROOT = "/run/nsprim-runtime"
VERSION = "nsprim-runtime 0.1.0\nspec: 1.2.0"


class _Log:
    path: str | None = None
    fmt = "text"
    debug = False


def _log(level: str, msg: str) -> None:
    if _Log.path is None:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
    if _Log.fmt == "json":
        line = json.dumps({"level": level, "msg": msg, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg={json.dumps(msg)}'
    try:
        fd = os.open(_Log.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def fail(msg: str, code: int = 1) -> NoReturn:
    _log("error", msg)
    print(f"nsprim-runtime: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="nsprim-runtime", allow_abbrev=False,
                                description="A runc-compatible OCI runtime built on nsprim.")
    # NSPRIM_RUNTIME_ROOT: the default for callers that cannot pass --root
    # every time (podman does not give its --runtime-flag to its exit command)
    p.add_argument("--root", default=os.environ.get("NSPRIM_RUNTIME_ROOT") or DEFAULT_ROOT)
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default=None)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default=None)
    p.add_argument("--criu", default=None)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="cmd")

    def add(name: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, allow_abbrev=False)

    for name in ("create", "run"):
        c = add(name)
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file", default=None)
        c.add_argument("--console-socket", default=None)
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
            c.add_argument("--keep", action="store_true")
        c.add_argument("id")
    add("start").add_argument("id")
    add("state").add_argument("id")
    k = add("kill")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="TERM")
    d = add("delete")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    e = add("exec")
    e.add_argument("-p", "--process", default=None)
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file", default=None)
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--console-socket", default=None)
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("--cwd", default=None)
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user", default=None)
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--additional-gids", "-g", action="append", default=[])
    e.add_argument("--process-label", default=None)
    e.add_argument("--apparmor", default=None)
    e.add_argument("--ignore-paused", action="store_true")
    e.add_argument("--cgroup", default=None)
    e.add_argument("id")
    e.add_argument("command", nargs=argparse.REMAINDER)
    ps = add("ps")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    add("pause").add_argument("id")
    add("resume").add_argument("id")
    u = add("update")
    u.add_argument("-r", "--resources", default=None)
    u.add_argument("--memory", default=None)
    u.add_argument("--pids-limit", type=int, default=None)
    u.add_argument("id")
    ls = add("list")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    s = add("spec")
    s.add_argument("-b", "--bundle", default=".")
    s.add_argument("--rootless", action="store_true")
    add("features")
    return p


_GLOBAL_VALUE = {"--root": "root", "--log": "log", "--log-format": "log_format",
                 "--log-level": "log_level", "--rootless": "rootless", "--criu": "criu"}
_GLOBAL_BOOL = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}


def _fast_parse(argv: list[str]) -> Any:
    """The calls clients make most (state, start, kill, delete, list, ps
    --format json) parsed without argparse (which costs more than the
    command); None for anything else, which argparse then parses."""
    ns: dict[str, Any] = {"root": os.environ.get("NSPRIM_RUNTIME_ROOT") or DEFAULT_ROOT,
                          "log": None, "log_format": "text", "debug": False,
                          "version": False}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        flag, eq, value = argv[i].partition("=")
        if flag in _GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            ns[_GLOBAL_VALUE[flag]] = value
        elif flag in _GLOBAL_BOOL and not eq:
            ns[_GLOBAL_BOOL[flag]] = True
        else:
            return None
        i += 1
    if ns["log_format"] not in ("text", "json") or i >= len(argv):
        return None
    cmd, rest = argv[i], argv[i + 1:]
    ns["cmd"] = cmd
    if any(not a or a.startswith("-") for a in rest):
        if cmd == "delete" and rest[:1] in (["--force"], ["-f"]):
            ns["force"], rest = True, rest[1:]
        elif cmd == "kill" and rest[:1] in (["--all"], ["-a"]):
            ns["all"], rest = True, rest[1:]
        elif cmd == "ps" and rest[:2] in (["--format", "json"], ["-f", "json"]):
            ns["format"], rest = "json", rest[2:]
        if any(not a or a.startswith("-") for a in rest):
            return None
    if cmd in ("state", "start") and len(rest) == 1:
        ns["id"] = rest[0]
    elif cmd == "delete" and len(rest) == 1:
        ns["id"] = rest[0]
        ns.setdefault("force", False)
    elif cmd == "kill" and len(rest) in (1, 2):
        ns["id"], ns["signal"] = rest[0], rest[1] if len(rest) == 2 else "TERM"
        ns.setdefault("all", False)
    elif cmd == "ps" and len(rest) == 1 and ns.get("format") == "json":
        ns["id"] = rest[0]
    else:
        return None
    return type("Args", (), ns)()


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _fast_parse(argv) or _parser().parse_args(argv)
    _Log.path, _Log.fmt, _Log.debug = args.log, args.log_format, args.debug
    if args.version:
        print(VERSION)
        return 0
    if args.cmd is None:
        fail("no command given (create, start, run, state, kill, delete, exec, ps, ...)")
    try:
        return int(_dispatch(args) or 0)
    except RuntimeError_ as e:
        fail(str(e))
    except OSError as e:
        fail(str(e))
    except Exception as e:  # a ConfigError (a ValueError) and the like: one line
        if args.debug:
            raise
        fail(str(e))


def _dispatch(a: Any) -> int | None:
    root = os.path.abspath(a.root)
    cmd = a.cmd
    if cmd == "state":
        st = st_mod.load(root, a.id)
        print(json.dumps(st_mod.oci_state(st), indent=2))
    elif cmd == "kill":
        st = st_mod.load(root, a.id)
        sig = st_mod.parse_signal(a.signal)
        if a.all:
            st_mod.kill_all(st, sig)
        else:
            if st_mod.status(st) == "stopped":
                raise RuntimeError_("container not running")
            st_mod.signal_pid(st, sig)
    elif cmd == "delete":
        _delete(root, a.id, a.force)
    elif cmd == "start":
        _start(root, a.id)
    elif cmd == "list":
        _list(root, a.format, a.quiet)
    elif cmd == "ps":
        st = st_mod.load(root, a.id)
        pids = st_mod.cgroup_pids(st)
        if a.format == "json":
            print(json.dumps(pids))
        else:
            print("PID   CMD")
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    cmdline = ""
                print(f"{pid:<5} {cmdline.strip()}")
    elif cmd == "spec":
        from nsprim.oci.config import default_config

        path = os.path.join(a.bundle, "config.json")
        if os.path.exists(path):
            raise RuntimeError_(f"File {path} exists. Remove it first")
        with open(path, "x") as f:
            json.dump(default_config(rootless=a.rootless), f, indent=2)
            f.write("\n")
    elif cmd == "features":
        print(json.dumps(_features(), indent=2))
    else:
        from nsprim.oci import create

        return create.command(root, a)
    return None


def _start(root: str, cid: str) -> None:
    st = st_mod.load(root, cid)
    s = st_mod.status(st)
    if s == "stopped":
        raise RuntimeError_("cannot start a container that has stopped")
    if s != "created":
        raise RuntimeError_("cannot start an already running container")
    fifo = os.path.join(st["_dir"], "exec.fifo")
    st_mod.run_hooks(st, "startContainer", "created", strict=True)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise RuntimeError_("cannot start a container that has stopped") from None
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    try:
        os.unlink(fifo)
    except FileNotFoundError:
        pass
    st_mod.run_hooks(st, "poststart", "running", strict=False)


def _delete(root: str, cid: str, force: bool) -> None:
    try:
        st = st_mod.load(root, cid)
    except st_mod.NotExist:
        if force:
            return
        raise
    s = st_mod.status(st)
    if s in ("running", "paused") and not force:
        raise RuntimeError_(f"cannot delete container {cid} that is not stopped: {s}")
    if s != "stopped":
        if s == "paused" and st.get("cgroup_v2"):
            try:
                with open(os.path.join(st["cgroup_v2"], "cgroup.freeze"), "w") as f:
                    f.write("0")
            except OSError:
                pass
        st_mod.kill_all(st, 9)
        try:
            st_mod.signal_pid(st, 9)
        except RuntimeError_:
            pass
        st_mod.wait_gone(st)
    st_mod.run_hooks(st, "poststop", "stopped", strict=False)
    st_mod.remove_cgroups(st)
    import shutil

    shutil.rmtree(st["_dir"], ignore_errors=True)


def _list(root: str, fmt: str, quiet: bool) -> None:
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    for n in names:
        if n.startswith("."):
            continue
        try:
            st = st_mod.load(root, n)
        except RuntimeError_:
            continue
        out.append(st_mod.oci_state(st))
    if quiet:
        for s in out:
            print(s["id"])
    elif fmt == "json":
        print(json.dumps(out))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for s in out:
            print(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} "
                  f"{s['created']}")


def _features() -> dict[str, Any]:
    from nsprim.oci.config import _FLAG_WORDS, HOOKS, NAMESPACES

    caps = ["CAP_" + c for c in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
        "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
        "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
        "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
        "CHECKPOINT_RESTORE").split()]
    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.2.0",
        "hooks": list(HOOKS),
        "mountOptions": sorted(_FLAG_WORDS - {"idmap", "ridmap", "z", "Z", "U"}),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": caps,
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {"enabled": True,
                        "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_LOG", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE"],
                        "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
                                      "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ",
                                      "SCMP_CMP_NE"],
                        "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                  "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "nsprim-runtime"},
    }


if __name__ == "__main__":
    sys.exit(main())
