"""The OCI runtime-spec's config.json (versions 1.0 to 1.2) onto
:class:`nsprim.spec.ContainerSpec`, and back.

:func:`load_bundle` reads a bundle's config.json (bounded), :func:`to_spec`
checks every field it maps and refuses what nsprim cannot honour, naming the
field (``linux.namespaces[2].type``); :func:`from_spec` writes the
config.json of a spec (``nsprim-runtime spec``).  Both are pure: the host is
looked at only for what the runtime-spec says is the host's (a bind's
source, the root's directory), and only by :func:`check_host`.

What is mapped, and how (the rest of the runtime-spec is refused when set,
so nothing is silently dropped, except where said):

- ``process``: args, env, cwd, terminal, user (uid, gid, umask,
  additionalGids), capabilities (the bounding set; nsprim gives the same set
  as effective and permitted, inheritable and ambient empty, as docker),
  rlimits, noNewPrivileges, oomScoreAdj.  apparmorProfile and selinuxLabel
  are refused when the host has no such LSM (and not applied otherwise).
- ``root`` (relative paths may not leave the bundle), hostname, domainname.
- ``mounts``: proc, sysfs, /dev's tmpfs, devpts, mqueue and shm at their
  usual places are nsprim's own (always made, nodev); cgroup/cgroup2 mounts
  are not made; bind/rbind become binds (ro/rw), tmpfs mounts tmpfs.
- ``linux``: namespaces (new, the caller's when absent, joined by path), one
  uid/gid mapping, devices (bound from the host's node of the same number),
  resources (memory, swap, cpu shares/quota/cpuset, pids; device rules are
  docker's plus linux.devices), sysctl (namespaced ones), seccomp,
  maskedPaths, readonlyPaths; cgroupsPath is not used (nsprim names its
  cgroups), rootfsPropagation is private.  intelRdt, hugepageLimits,
  unified, timeOffsets, a new time namespace and personality other than
  LINUX are refused.
- ``hooks`` are kept in the spec and run by the runtime; annotations are
  kept (labels).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nsprim.errors import ConfigError
from nsprim.oci import OCI_VERSION
from nsprim.spec import ContainerSpec

__all__ = ["load_bundle", "to_spec", "from_spec", "check_host", "default_config",
           "parse_resources", "spec_id", "MAX_CONFIG", "NAMESPACES", "HOOKS"]

#: the largest config.json read (runc's own are a few KiB; podman's ~30 KiB)
MAX_CONFIG = 4 << 20

#: runtime-spec namespace type -> nsprim's kind
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}
_KIND_TO_OCI = {v: k for k, v in NAMESPACES.items()}
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
           "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
           "RLIMIT_SIGPENDING", "RLIMIT_STACK")
#: mounts nsprim always makes itself: (type, destination)
_OWN_MOUNTS = {("proc", "/proc"), ("sysfs", "/sys"), ("tmpfs", "/dev"), ("devpts", "/dev/pts"),
               ("mqueue", "/dev/mqueue"), ("tmpfs", "/dev/shm"), ("shm", "/dev/shm"),
               ("bind", "/sys"), ("rbind", "/sys")}
_FLAG_WORDS = {"ro", "rw", "bind", "rbind", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
               "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
               "runbindable", "relatime", "norelatime", "strictatime", "nostrictatime",
               "noatime", "atime", "nodiratime", "diratime", "sync", "async", "dirsync",
               "mand", "nomand", "remount", "defaults", "silent", "loud", "iversion",
               "noiversion", "lazytime", "nolazytime", "z", "Z", "U", "copy", "nocopy",
               "rro", "rrw", "tmpcopyup", "notmpcopyup", "idmap", "ridmap", "newinstance"}
_DATA_KEYS = {"size", "mode", "nr_inodes", "uid", "gid", "ptmxmode"}
_NAMESPACED_SYSCTL = re.compile(
    r"(kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)"
    r"|fs\.mqueue\.[a-z_]+|net\.[A-Za-z0-9_./-]+|kernel\.(hostname|domainname))", re.ASCII)
_ID = re.compile(r"[\w+.-]{1,1024}", re.ASCII)
_MAX_ID = 2**32 - 2


def _bad(field: str, why: str, value: object = None) -> ConfigError:
    shown = "" if value is None else f" {value!r}"
    return ConfigError(f"config.json: invalid {field}{shown}: {why}")


def spec_id(container_id: str) -> str:
    """nsprim's id of the OCI container `container_id` (names its cgroup):
    hex, so any OCI id fits a cgroup's name."""
    return hashlib.sha256(container_id.encode()).hexdigest()


def check_id(container_id: str) -> str:
    if not isinstance(container_id, str) or not _ID.fullmatch(container_id) \
            or container_id in (".", ".."):
        raise ConfigError(f"invalid container id {container_id!r}: letters, digits, "
                          "'_', '+', '-' and '.'")
    return container_id


def load_bundle(bundle: str) -> dict[str, Any]:
    """The config.json of `bundle` (a JSON object of at most MAX_CONFIG bytes)."""
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise ConfigError(f"config.json: opening {path} failed: {e.strerror}") from e
    with open(fd, "rb") as f:
        if not os.path.isfile(f"/proc/self/fd/{fd}"):
            raise ConfigError(f"config.json: {path} is not a regular file")
        raw = f.read(MAX_CONFIG + 1)
    if len(raw) > MAX_CONFIG:
        raise ConfigError(f"config.json: {path} is larger than {MAX_CONFIG} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"config.json: {path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config.json: {path} is not a JSON object")
    return data


# ------------------------------------------------------------ small checks

def _obj(v: object, field: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise _bad(field, "expected an object", v)
    return v


def _list(v: object, field: str) -> Sequence[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(field, "expected an array", v)
    return v


def _strs(v: object, field: str) -> list[str]:
    out = []
    for i, s in enumerate(_list(v, field)):
        if not isinstance(s, str) or "\x00" in s:
            raise _bad(f"{field}[{i}]", "expected a string", s)
        out.append(s)
    return out


def _int(v: object, field: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(field, f"expected an integer from {lo} to {hi}", v)
    return v


def _str(v: object, field: str) -> str:
    if not isinstance(v, str) or "\x00" in v:
        raise _bad(field, "expected a string", v)
    return v


def _abs(v: object, field: str) -> str:
    s = _str(v, field)
    if not s.startswith("/"):
        raise _bad(field, "must be an absolute path", s)
    return s


# ------------------------------------------------------------ the mapping

def to_spec(config: Mapping[str, Any], bundle: str, container_id: str) -> ContainerSpec:
    """The ContainerSpec of an OCI config.json (checked field by field: a
    ConfigError names the first bad one).  Relative paths are the bundle's."""
    check_id(container_id)
    cfg = _obj(config, "config")
    version = _str(cfg.get("ociVersion", ""), "ociVersion")
    if not re.fullmatch(r"1\.[0-9]+\.[0-9]+(-[0-9A-Za-z.+-]*)?", version, re.ASCII):
        raise _bad("ociVersion", "this runtime implements runtime-spec 1.0 to 1.2", version)
    kw: dict[str, Any] = {"id": spec_id(container_id), "name": None, "network": "none",
                          "etc_files": False,
                          "entrypoint": (), "seccomp": "unconfined", "cap_drop": ("ALL",)}

    # root
    root = _obj(cfg.get("root"), "root")
    rpath = _str(root.get("path", ""), "root.path")
    if not rpath:
        raise _bad("root.path", "must be given")
    if not rpath.startswith("/"):
        if ".." in rpath.split("/"):
            raise _bad("root.path", "a relative root may not leave the bundle ('..')", rpath)
        rpath = os.path.join(os.path.abspath(bundle), rpath)
    kw["rootfs"] = os.path.normpath(rpath)
    kw["read_only"] = bool(root.get("readonly", False))

    _process(_obj(cfg.get("process"), "process"), kw)
    if "hostname" in cfg and cfg["hostname"]:
        kw["hostname"] = _str(cfg["hostname"], "hostname")
    if "domainname" in cfg and cfg["domainname"]:
        kw["domainname"] = _str(cfg["domainname"], "domainname")
    _mounts(_list(cfg.get("mounts"), "mounts"), bundle, kw)
    _linux(_obj(cfg.get("linux"), "linux"), kw)
    kw["hooks"] = _hooks(_obj(cfg.get("hooks"), "hooks"))
    ann = _obj(cfg.get("annotations"), "annotations")
    for k, v in ann.items():
        if not isinstance(v, str):
            raise _bad(f"annotations[{k!r}]", "expected a string", v)
    kw["labels"] = dict(ann)
    if "uts" in kw.get("namespaces", {}):
        for f in ("hostname", "domainname"):
            if kw.get(f):
                raise _bad(f, "needs a new uts namespace", kw[f])
    return ContainerSpec(**kw)


def _process(p: Mapping[str, Any], kw: dict[str, Any]) -> None:
    if not p:
        raise _bad("process", "must be given (this runtime starts a process)")
    args = _strs(p.get("args"), "process.args")
    if not args:
        raise _bad("process.args", "no command given", args)
    kw["cmd"] = tuple(args)
    env = _strs(p.get("env"), "process.env")
    for i, e in enumerate(env):
        if "=" not in e or e.startswith("="):
            raise _bad(f"process.env[{i}]", "expected KEY=VALUE", e)
    kw["env"] = tuple(env)
    kw["workdir"] = _abs(p.get("cwd", "/"), "process.cwd")
    kw["tty"] = p.get("terminal", False) is True
    user = _obj(p.get("user"), "process.user")
    uid = _int(user.get("uid", 0), "process.user.uid", 0, _MAX_ID)
    gid = _int(user.get("gid", 0), "process.user.gid", 0, _MAX_ID)
    kw["user"] = f"{uid}:{gid}"
    kw["additional_gids_only"] = True  # runc: additionalGids, nothing from /etc/group
    kw["additional_gids"] = tuple(_int(g, f"process.user.additionalGids[{i}]", 0, _MAX_ID)
                                  for i, g in enumerate(_list(user.get("additionalGids"),
                                                              "process.user.additionalGids")))
    if user.get("umask") is not None:
        kw["umask"] = _int(user["umask"], "process.user.umask", 0, 0o777)
    if user.get("username"):
        raise _bad("process.user.username", "is for Windows", user["username"])
    caps = _obj(p.get("capabilities"), "process.capabilities")
    for setname in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        for i, c in enumerate(_strs(caps.get(setname), f"process.capabilities.{setname}")):
            if not re.fullmatch(r"CAP_[A-Z_]{2,32}", c, re.ASCII):
                raise _bad(f"process.capabilities.{setname}[{i}]", "not a capability name", c)
    bounding = _strs(caps.get("bounding"), "process.capabilities.bounding")
    kw["cap_add"] = tuple(sorted({c[4:] for c in bounding}))
    rl: dict[str, list[int]] = {}
    for i, r in enumerate(_list(p.get("rlimits"), "process.rlimits")):
        r = _obj(r, f"process.rlimits[{i}]")
        t = _str(r.get("type", ""), f"process.rlimits[{i}].type")
        if t not in RLIMITS:
            raise _bad(f"process.rlimits[{i}].type", "unknown rlimit", t)
        if t in rl:
            raise _bad(f"process.rlimits[{i}].type", "given twice", t)
        soft = _int(r.get("soft"), f"process.rlimits[{i}].soft", 0, 2**64 - 1)
        hard = _int(r.get("hard"), f"process.rlimits[{i}].hard", 0, 2**64 - 1)
        if soft > hard:
            raise _bad(f"process.rlimits[{i}]", "soft limit above hard limit", t)
        rl[t] = [soft, hard]
    kw["rlimits"] = rl
    kw["no_new_privileges"] = p.get("noNewPrivileges", False) is True
    if p.get("oomScoreAdj") is not None:
        kw["oom_score_adj"] = _int(p["oomScoreAdj"], "process.oomScoreAdj", -1000, 1000)
    for field, lsm in (("apparmorProfile", "apparmor"), ("selinuxLabel", "selinux")):
        if p.get(field):
            if not _host_has_lsm(lsm):
                raise _bad(f"process.{field}", f"this host has no {lsm}", p[field])
            raise _bad(f"process.{field}", f"{lsm} profiles are not applied by nsprim",
                       p[field])
    if p.get("ioPriority") or p.get("scheduler") or p.get("execCPUAffinity"):
        raise _bad("process", "ioPriority, scheduler and execCPUAffinity are not supported")


def _host_has_lsm(name: str) -> bool:
    try:
        with open("/sys/kernel/security/lsm") as f:
            return name in f.read().split(",")
    except OSError:
        return os.path.exists(f"/sys/module/{name}/parameters/enabled") and name == "apparmor"


def _mount_opts(opts: list[str], field: str) -> tuple[set[str], dict[str, str]]:
    words: set[str] = set()
    data: dict[str, str] = {}
    for i, o in enumerate(opts):
        k, sep, v = o.partition("=")
        if sep:
            if k not in _DATA_KEYS:
                raise _bad(f"{field}.options[{i}]", "unknown mount option", o)
            data[k] = v
        elif o in _FLAG_WORDS:
            words.add(o)
        else:
            raise _bad(f"{field}.options[{i}]", "unknown mount option", o)
    return words, data


def _mounts(mounts: Sequence[Any], bundle: str, kw: dict[str, Any]) -> None:
    volumes: list[str] = []
    tmpfs: list[str] = []
    for i, m in enumerate(mounts):
        field = f"mounts[{i}]"
        m = _obj(m, field)
        dst = _str(m.get("destination", ""), f"{field}.destination")
        if not dst.startswith("/"):
            raise _bad(f"{field}.destination", "must be an absolute path", dst)
        if ".." in dst.split("/"):
            raise _bad(f"{field}.destination", "'..' is not allowed", dst)
        dst = os.path.normpath(dst)
        opts = _strs(m.get("options"), f"{field}.options")
        words, data = _mount_opts(opts, field)
        mtype = _str(m.get("type", "bind" if words & {"bind", "rbind"} else ""),
                     f"{field}.type")
        if "idmap" in words or "ridmap" in words or m.get("uidMappings") or \
                m.get("gidMappings"):
            raise _bad(f"{field}.options", "idmapped mounts are not supported", dst)
        is_bind = mtype in ("bind", "rbind", "none", "") and bool(words & {"bind", "rbind"}) \
            or mtype in ("bind", "rbind")
        if (mtype, dst) in _OWN_MOUNTS or (is_bind and dst == "/sys"):
            continue  # nsprim's own
        if mtype in ("cgroup", "cgroup2"):
            continue  # not made (see the module's docstring)
        if is_bind:
            src = _str(m.get("source", ""), f"{field}.source")
            if not src:
                raise _bad(f"{field}.source", "a bind needs a source")
            if not src.startswith("/"):
                src = os.path.join(os.path.abspath(bundle), src)
            if ":" in src or ":" in dst:
                raise _bad(field, "':' in a bind's path is not supported", f"{src}:{dst}")
            ro = "ro" in words and "rw" not in words
            volumes.append(f"{os.path.normpath(src)}:{dst}:{'ro' if ro else 'rw'}")
        elif mtype == "tmpfs":
            parts = [f"{k}={data[k]}" for k in ("size", "mode") if k in data]
            if "ro" in words:
                parts.append("ro")
            if ":" in dst or "," in dst:
                raise _bad(f"{field}.destination", "':' and ',' are not supported", dst)
            tmpfs.append(dst + (":" + ",".join(parts) if parts else ""))
        else:
            raise _bad(f"{field}.type", "unsupported mount type", mtype)
    kw["volumes"] = tuple(volumes)
    kw["tmpfs"] = tuple(tmpfs)


def _linux(lx: Mapping[str, Any], kw: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for i, n in enumerate(_list(lx.get("namespaces"), "linux.namespaces")):
        n = _obj(n, f"linux.namespaces[{i}]")
        t = n.get("type")
        if t not in NAMESPACES:
            raise _bad(f"linux.namespaces[{i}].type", "unknown namespace type", t)
        kind = NAMESPACES[t]
        if kind in seen:
            raise _bad(f"linux.namespaces[{i}].type", "given twice", t)
        path = _str(n.get("path", ""), f"linux.namespaces[{i}].path")
        if path and not path.startswith("/"):
            raise _bad(f"linux.namespaces[{i}].path", "must be an absolute path", path)
        seen[kind] = path
    if "mnt" not in seen or seen["mnt"]:
        raise _bad("linux.namespaces", "this runtime needs a new mount namespace")
    if seen.get("time") == "":
        raise _bad("linux.namespaces", "a new time namespace is not supported", "time")
    if seen.get("user") == "" and os.geteuid() != 0:
        kw["userns"] = _rootless_userns(lx)  # rootless: a mode of nsprim.rootless
    elif seen.get("user") == "":
        kw["userns_map"] = _idmap(lx)
    elif lx.get("uidMappings") or lx.get("gidMappings"):
        raise _bad("linux.uidMappings", "given without a new user namespace")
    joined = {k: p for k, p in seen.items() if p}
    host = {k: "host" for k in ("pid", "net", "ipc", "uts", "cgroup") if k not in seen}
    kw["namespaces"] = {**host, **joined}
    kw["network"] = "none" if "net" in seen else "host"
    if "net" in joined:
        kw["network"] = "none"
    if "host" == kw["namespaces"].get("net"):
        del kw["namespaces"]["net"]  # network "host" says it

    devices = []
    for i, d in enumerate(_list(lx.get("devices"), "linux.devices")):
        d = _obj(d, f"linux.devices[{i}]")
        path = _abs(d.get("path", ""), f"linux.devices[{i}].path")
        if d.get("type") not in ("c", "b", "u"):
            raise _bad(f"linux.devices[{i}].type", "expected c, b or u", d.get("type"))
        _int(d.get("major"), f"linux.devices[{i}].major", 0, 2**32 - 1)
        _int(d.get("minor"), f"linux.devices[{i}].minor", 0, 2**32 - 1)
        devices.append(f"{path}:{path}:rwm")
    kw["devices"] = tuple(devices)

    kw.update(parse_resources(_obj(lx.get("resources"), "linux.resources")))
    sysctl = _obj(lx.get("sysctl"), "linux.sysctl")
    for k, v in sysctl.items():
        if not _NAMESPACED_SYSCTL.fullmatch(k) or ".." in k:
            raise _bad(f"linux.sysctl[{k!r}]", "not a namespaced sysctl", k)
        if k.startswith("net.") and "net" not in seen:
            raise _bad(f"linux.sysctl[{k!r}]", "needs a network namespace of the container")
        if k.startswith(("kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue")) \
                and "ipc" not in seen:
            raise _bad(f"linux.sysctl[{k!r}]", "needs an ipc namespace of the container")
        _str(v, f"linux.sysctl[{k!r}]")
    kw["sysctls"] = dict(sysctl)
    if lx.get("seccomp") is not None:
        kw["seccomp"] = dict(_obj(lx["seccomp"], "linux.seccomp"))
        for f in ("listenerPath", "listenerMetadata"):
            if kw["seccomp"].get(f):
                raise _bad(f"linux.seccomp.{f}", "seccomp notification is not supported")
    prop = lx.get("rootfsPropagation", "")
    if prop not in ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"):
        raise _bad("linux.rootfsPropagation", "unknown propagation", prop)
    if "maskedPaths" in lx:
        kw["masked_paths"] = tuple(_abs(p, f"linux.maskedPaths[{i}]")
                                   for i, p in enumerate(_list(lx["maskedPaths"],
                                                               "linux.maskedPaths")))
    if "readonlyPaths" in lx:
        kw["readonly_paths"] = tuple(_abs(p, f"linux.readonlyPaths[{i}]")
                                     for i, p in enumerate(_list(lx["readonlyPaths"],
                                                                 "linux.readonlyPaths")))
    pers = _obj(lx.get("personality"), "linux.personality")
    if pers and pers.get("domain") != "LINUX":
        raise _bad("linux.personality.domain", "only LINUX is supported", pers.get("domain"))
    for f in ("intelRdt", "timeOffsets", "memoryPolicy", "netDevices"):
        if lx.get(f):
            raise _bad(f"linux.{f}", "is not supported by this runtime")
    if lx.get("mountLabel") and not _host_has_lsm("selinux"):
        raise _bad("linux.mountLabel", "this host has no selinux", lx["mountLabel"])
    if lx.get("cgroupsPath") is not None:
        _str(lx["cgroupsPath"], "linux.cgroupsPath")


def _rootless_userns(lx: Mapping[str, Any]) -> str:
    """Without root, the mappings a config.json may ask for are the ones an
    unprivileged user can have: the user alone (runc's ``spec --rootless``),
    or the user and its subordinate range (newuidmap); as nsprim.rootless's
    single and full modes."""
    from nsprim import rootless

    got = []
    for f in ("uidMappings", "gidMappings"):
        ms = _list(lx.get(f), f"linux.{f}")
        ext = []
        for i, m in enumerate(ms):
            m = _obj(m, f"linux.{f}[{i}]")
            ext.append((_int(m.get("containerID"), f"linux.{f}[{i}].containerID", 0, _MAX_ID),
                        _int(m.get("hostID"), f"linux.{f}[{i}].hostID", 0, _MAX_ID),
                        _int(m.get("size"), f"linux.{f}[{i}].size", 1, _MAX_ID)))
        got.append(tuple(ext))
    for mode in ("single", "full"):
        try:
            want = rootless.mapping(mode)
        except rootless.RootlessError:
            continue
        if (want.uids, want.gids) == (got[0], got[1]):
            return mode
    raise _bad("linux.uidMappings", "without root, map container 0 to your uid (size 1), "
               "or also 1.. to your /etc/subuid range (as `nsprim-runtime spec --rootless`)",
               lx.get("uidMappings"))


def _idmap(lx: Mapping[str, Any]) -> str:
    maps = []
    for f in ("uidMappings", "gidMappings"):
        ms = _list(lx.get(f), f"linux.{f}")
        if len(ms) != 1:
            raise _bad(f"linux.{f}", "exactly one mapping is supported", len(ms))
        m = _obj(ms[0], f"linux.{f}[0]")
        maps.append((_int(m.get("containerID"), f"linux.{f}[0].containerID", 0, 0),
                     _int(m.get("hostID"), f"linux.{f}[0].hostID", 0, _MAX_ID),
                     _int(m.get("size"), f"linux.{f}[0].size", 1, _MAX_ID)))
    if maps[0] != maps[1]:
        raise _bad("linux.gidMappings", "must equal uidMappings here", lx.get("gidMappings"))
    return f"{maps[0][1]}:{maps[0][2]}"


def parse_resources(res: Mapping[str, Any]) -> dict[str, Any]:
    """linux.resources -> the spec's limit fields (``update --resources`` too)."""
    out: dict[str, Any] = {}
    mem = _obj(res.get("memory"), "linux.resources.memory")
    if mem.get("limit") is not None and mem["limit"] > 0:
        out["memory"] = str(_int(mem["limit"], "linux.resources.memory.limit", 1, 2**63 - 1))
    if mem.get("swap") is not None and mem["swap"] != 0:
        sw = _int(mem["swap"], "linux.resources.memory.swap", -1, 2**63 - 1)
        out["memory_swap"] = str(sw)
    cpu = _obj(res.get("cpu"), "linux.resources.cpu")
    if cpu.get("shares"):
        out["cpu_shares"] = _int(cpu["shares"], "linux.resources.cpu.shares", 2, 262144)
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota is not None and quota > 0:
        q = _int(quota, "linux.resources.cpu.quota", 1, 2**62)
        p = _int(period or 100000, "linux.resources.cpu.period", 1000, 1000000)
        out["cpus"] = repr(q / p)
    if cpu.get("cpus"):
        out["cpuset_cpus"] = _str(cpu["cpus"], "linux.resources.cpu.cpus")
    if cpu.get("mems"):
        out["cpuset_mems"] = _str(cpu["mems"], "linux.resources.cpu.mems")
    for f in ("realtimeRuntime", "realtimePeriod", "idle", "burst"):
        if cpu.get(f):
            raise _bad(f"linux.resources.cpu.{f}", "is not supported", cpu[f])
    pids = _obj(res.get("pids"), "linux.resources.pids")
    if pids.get("limit") is not None and pids["limit"] > 0:
        out["pids_limit"] = _int(pids["limit"], "linux.resources.pids.limit", 1, 2**62)
    for f in ("hugepageLimits", "unified", "rdma"):
        if res.get(f):
            raise _bad(f"linux.resources.{f}", "is not supported by this runtime")
    blk = _obj(res.get("blockIO"), "linux.resources.blockIO")
    for f in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
              "throttleWriteIOPSDevice", "weightDevice"):
        if blk.get(f):
            raise _bad(f"linux.resources.blockIO.{f}", "is not supported by this runtime")
    for i, d in enumerate(_list(res.get("devices"), "linux.resources.devices")):
        d = _obj(d, f"linux.resources.devices[{i}]")
        if not isinstance(d.get("allow"), bool):
            raise _bad(f"linux.resources.devices[{i}].allow", "expected a boolean",
                       d.get("allow"))
        acc = d.get("access", "rwm")
        if not isinstance(acc, str) or not set(acc) <= set("rwm"):
            raise _bad(f"linux.resources.devices[{i}].access", "expected r, w and m", acc)
    return out


def _hooks(h: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, hooks in h.items():
        if name not in HOOKS:
            raise _bad(f"hooks.{name}", "unknown hook")
        lst = []
        for i, hk in enumerate(_list(hooks, f"hooks.{name}")):
            f = f"hooks.{name}[{i}]"
            hk = _obj(hk, f)
            one: dict[str, Any] = {"path": _abs(hk.get("path", ""), f"{f}.path")}
            if "args" in hk:
                one["args"] = _strs(hk["args"], f"{f}.args")
            if "env" in hk:
                one["env"] = _strs(hk["env"], f"{f}.env")
            if hk.get("timeout") is not None:
                one["timeout"] = _int(hk["timeout"], f"{f}.timeout", 1, 86400)
            lst.append(one)
        if lst:
            out[name] = lst
    return out


def check_host(spec: ContainerSpec) -> None:
    """What config.json names on the host exists: the root is a directory
    (reached without a symlink at its last step leading elsewhere is fine:
    it is the host's), and each device has a host node of its number."""
    if spec.rootfs is None or not os.path.isdir(spec.rootfs):
        raise _bad("root.path", "not a directory", spec.rootfs)


# ------------------------------------------------------------ the reverse

def from_spec(spec: ContainerSpec, bundle_root: str = "rootfs") -> dict[str, Any]:
    """The config.json of `spec` (what :func:`to_spec` maps back to it)."""
    from nsprim.config import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

    uid, _, gid = (spec.user or "0:0").partition(":")
    caps = sorted("CAP_" + c for c in spec.cap_add)
    proc: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {"uid": int(uid), "gid": int(gid or 0)},
        "args": list(spec.cmd),
        "env": list(spec.env),
        "cwd": spec.workdir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": k, "soft": v[0], "hard": v[1]} for k, v in spec.rlimits.items()],
        "noNewPrivileges": spec.no_new_privileges,
    }
    if spec.additional_gids:
        proc["user"]["additionalGids"] = list(spec.additional_gids)
    if spec.umask is not None:
        proc["user"]["umask"] = spec.umask
    if spec.oom_score_adj is not None:
        proc["oomScoreAdj"] = spec.oom_score_adj
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    for v in spec.volumes:
        src, dst, mode = v.split(":")
        mounts.append({"destination": dst, "type": "bind", "source": src,
                       "options": ["rbind", mode]})
    for t in spec.tmpfs:
        dst, _, opts = t.partition(":")
        mounts.append({"destination": dst, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev"] + [o for o in opts.split(",") if o]})
    ns_on = spec.namespaces
    namespaces: list[dict[str, str]] = []
    for kind in ("pid", "net", "ipc", "uts", "mnt", "cgroup", "user", "time"):
        if kind == "net":
            if spec.network == "host" and "net" not in ns_on:
                continue
        elif kind == "user":
            if not spec.userns_map and "user" not in ns_on:
                continue
        elif kind == "time" and "time" not in ns_on:
            continue
        v = ns_on.get(kind, "")
        if v == "host":
            continue
        entry = {"type": _KIND_TO_OCI[kind]}
        if v:
            entry["path"] = v
        namespaces.append(entry)
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": list(DEFAULT_MASKED_PATHS if spec.masked_paths is None
                            else spec.masked_paths),
        "readonlyPaths": list(DEFAULT_READONLY_PATHS if spec.readonly_paths is None
                              else spec.readonly_paths),
        "resources": _resources_of(spec),
    }
    if spec.userns_map:
        host, _, size = spec.userns_map.partition(":")
        m = [{"containerID": 0, "hostID": int(host), "size": int(size or 65536)}]
        linux["uidMappings"] = m
        linux["gidMappings"] = [dict(x) for x in m]
    if spec.devices:
        linux["devices"] = [_device_of(d.split(":")[0]) for d in spec.devices]
    if spec.sysctls:
        linux["sysctl"] = dict(spec.sysctls)
    if isinstance(spec.seccomp, Mapping):
        linux["seccomp"] = dict(spec.seccomp)
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": proc,
        "root": {"path": spec.rootfs or bundle_root, "readonly": spec.read_only},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.hostname:
        out["hostname"] = spec.hostname
    if spec.domainname:
        out["domainname"] = spec.domainname
    if spec.hooks:
        out["hooks"] = {k: [dict(h) for h in v] for k, v in spec.hooks.items()}
    if spec.labels:
        out["annotations"] = dict(spec.labels)
    return out


def _device_of(path: str) -> dict[str, Any]:
    st = os.stat(path)
    import stat as stat_mod

    return {"path": path, "type": "b" if stat_mod.S_ISBLK(st.st_mode) else "c",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


def _resources_of(spec: ContainerSpec) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.memory is not None:
        res.setdefault("memory", {})["limit"] = int(spec.memory)
    if spec.memory_swap is not None:
        res.setdefault("memory", {})["swap"] = int(spec.memory_swap)
    cpu: dict[str, Any] = {}
    if spec.cpu_shares is not None:
        cpu["shares"] = spec.cpu_shares
    if spec.cpus is not None:
        cpu["period"] = 100000
        cpu["quota"] = round(float(spec.cpus) * 100000)
    if spec.cpuset_cpus:
        cpu["cpus"] = spec.cpuset_cpus
    if spec.cpuset_mems:
        cpu["mems"] = spec.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    if spec.pids_limit is not None:
        res["pids"] = {"limit": spec.pids_limit}
    return res


def default_config(rootless: bool = False) -> dict[str, Any]:
    """``nsprim-runtime spec``: runc's default config.json (``sh`` in
    ``rootfs`` with a terminal, docker's capabilities, masks and namespaces)."""
    from nsprim.caps import DOCKER_DEFAULT_CAPS

    spec = ContainerSpec(
        cmd=("sh",), env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "TERM=xterm"),
        workdir="/", user="0:0", tty=True, hostname="nsprim", network="none",
        cap_add=tuple(sorted(DOCKER_DEFAULT_CAPS)), read_only=True,
        rlimits={"RLIMIT_NOFILE": [1024, 1024]}, no_new_privileges=True)
    cfg = from_spec(spec)
    cfg["root"]["path"] = "rootfs"
    if rootless:
        uid, gid = os.getuid(), os.getgid()
        lx = cfg["linux"]
        lx["namespaces"].append({"type": "user"})
        lx["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        lx["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        del lx["resources"]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "sysfs"] + [
            {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    return cfg
