"""nsprim system prune|df|info, container prune, image prune, volume prune,
info, version (docker's management spellings are cli._MANAGEMENT's).

Prunes ask docker's question unless ``-f``; they print what they deleted and
``Total reclaimed space: SIZE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_ERROR = 1


def add_parser(sub: Any) -> None:
    for name, what in (("container-prune", "remove all stopped containers"),
                       ("image-prune", "remove unused images"),
                       ("volume-prune", "remove unused volumes"),
                       ("system-prune", "remove stopped containers, unused images "
                                        "(and volumes)")):
        p = sub.add_parser(name, help=what)
        p.add_argument("-f", "--force", action="store_true", help="do not ask")
        if name in ("image-prune", "system-prune", "volume-prune"):
            p.add_argument("-a", "--all", action="store_true",
                           help="all unused images" if name != "volume-prune" else
                           "all unused volumes, not only anonymous ones")
        if name == "system-prune":
            p.add_argument("--volumes", action="store_true", help="anonymous volumes too")


def add_df_parser(sub: Any) -> None:
    p = sub.add_parser("system-df", help="disk usage")
    p.add_argument("--format", default="table", metavar="table|json")


def add_info_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="system-wide information")
    p.add_argument("-f", "--format", default=None, metavar="json")


def add_version_parser(sub: Any) -> None:
    p = sub.add_parser("version", help="version information")
    p.add_argument("-f", "--format", default=None, metavar="json")


def add_delegate_parser(sub: Any) -> None:
    p = sub.add_parser("system-delegate",
                       help="(root) delegate a cgroup v2 subtree to USER for rootless limits")
    p.add_argument("user", metavar="USER")
    p.add_argument("--remove", action="store_true",
                   help="remove USER's subtree (killing what is left in it)")


def cmd_system_delegate(a: argparse.Namespace) -> int:
    """nsprim system delegate [--remove] USER (nsprim.rootless.delegate)."""
    from nsprim.cli import _fail
    from nsprim.rootless import DELEGATE_SESSION, delegate

    try:
        d = delegate(a.user, remove=a.remove)
    except (OSError, ValueError) as e:
        return _fail(str(e))
    if a.remove:
        print(f"removed {d}")
    else:
        print(f"delegated {d} to {a.user}; processes of {a.user} started in "
              f"{d}/{DELEGATE_SESSION} may set limits without root")
    return 0


# ----------------------------------------------------------------- sizes

def human(n: float) -> str:
    from nsprim.cli.stats import human_size

    return human_size(n)


def du(path: str) -> int:
    """Bytes in files under `path` (hard links once, symlinks not followed)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if not os.path.isdir(os.path.join(dirpath, n)) or os.path.islink(
                    os.path.join(dirpath, n)):
                total += st.st_size
    return total


def _confirm(a: argparse.Namespace, warning: str) -> bool:
    if a.force:
        return True
    sys.stdout.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


# ------------------------------------------------------------------ what

def _used_volumes() -> set[str]:
    """Volumes any container (running or not) names."""
    from nsprim.lifecycle import records
    from nsprim.spec import parse_mount, parse_volume

    used = set()
    for rec in records():
        spec = rec.config
        for v in spec.get("volumes") or ():
            try:
                m = parse_volume(v)
            except (ValueError, OSError):
                continue
            if type(m).__name__ == "Volume":
                used.add(m.name)
        for v in spec.get("mounts") or ():
            try:
                m = parse_mount(v)
            except (ValueError, OSError):
                continue
            if type(m).__name__ == "Volume":
                used.add(m.name)
    return used


def _anonymous(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def prune_containers() -> tuple[list[str], int]:
    from nsprim.lifecycle import records, remove_record

    gone, space = [], 0
    for rec in records():
        if rec.running or rec.state.get("status") == "starting":
            continue
        space += du(os.path.join(rec.dir, "upper"))
        remove_record(rec)
        gone.append(rec.id)
    return gone, space


def prune_images(all_: bool) -> tuple[list[str], int]:
    """Dangling images (no name), or with `all_` every image no container uses."""
    from nsprim.images.store import ImageInUse, default_store
    from nsprim.lifecycle import records

    store = default_store()
    used = {rec.config.get("image_id") for rec in records()}
    out, space = [], 0
    for img in store.images():
        if img.id in used or (img.names and not all_):
            continue
        try:
            lines = store.remove(img.id, force=False)
        except (LookupError, OSError, ImageInUse):
            continue
        out.extend(lines)
        space += img.size
    return out, space


def prune_volumes(all_: bool) -> tuple[list[str], int]:
    from nsprim import volumes

    used = _used_volumes()
    out, space = [], 0
    for v in volumes.list_volumes():
        if v.name in used or (not all_ and not _anonymous(v.name)):
            continue
        size = du(v.mountpoint)
        try:
            volumes.remove(v.name)
        except (LookupError, OSError, ValueError):
            continue
        out.append(v.name)
        space += size
    return out, space


def _report(title: str, items: list[str]) -> None:
    if items:
        print(f"{title}:")
        for i in items:
            print(i)
        print()


def cmd_container_prune(a: argparse.Namespace) -> int:
    if not _confirm(a, "This will remove all stopped containers."):
        return 0
    gone, space = prune_containers()
    _report("Deleted Containers", gone)
    print(f"Total reclaimed space: {human(space)}")
    return 0


def cmd_image_prune(a: argparse.Namespace) -> int:
    warning = ("This will remove all images without at least one container associated to "
               "them." if a.all else "This will remove all dangling images.")
    if not _confirm(a, warning):
        return 0
    gone, space = prune_images(a.all)
    _report("Deleted Images", gone)
    print(f"Total reclaimed space: {human(space)}")
    return 0


def cmd_volume_prune(a: argparse.Namespace) -> int:
    if not _confirm(a, "This will remove all local volumes not used by at least one "
                       "container." if a.all else
                    "This will remove anonymous local volumes not used by at least one "
                    "container."):
        return 0
    gone, space = prune_volumes(a.all)
    _report("Deleted Volumes", gone)
    print(f"Total reclaimed space: {human(space)}")
    return 0


def cmd_system_prune(a: argparse.Namespace) -> int:
    lines = ["all stopped containers",
             "all images without at least one container associated to them" if a.all
             else "all dangling images"]
    if a.volumes:
        lines.insert(1, "all anonymous volumes not used by at least one container")
    if not _confirm(a, "This will remove:\n" + "".join(f"  - {x}\n" for x in lines)
                    .rstrip("\n")):
        return 0
    gone, space = prune_containers()
    _report("Deleted Containers", gone)
    if a.volumes:
        vols, vspace = prune_volumes(False)
        _report("Deleted Volumes", vols)
        space += vspace
    imgs, ispace = prune_images(a.all)
    _report("Deleted Images", imgs)
    print(f"Total reclaimed space: {human(space + ispace)}")
    return 0


# -------------------------------------------------------------------- df

def disk_usage() -> list[dict[str, Any]]:
    from nsprim import volumes
    from nsprim.images.store import default_store
    from nsprim.lifecycle import records

    recs = records()
    running_images = {r.config.get("image_id") for r in recs if r.running}
    used_images = {r.config.get("image_id") for r in recs}
    imgs = default_store().images()
    img_size = sum(i.size for i in imgs)
    img_reclaim = sum(i.size for i in imgs if i.id not in used_images)
    sizes = {r.id: du(os.path.join(r.dir, "upper")) for r in recs}
    c_reclaim = sum(s for cid, s in sizes.items()
                    if not next(r for r in recs if r.id == cid).running)
    vols = volumes.list_volumes()
    used_vols = _used_volumes()
    vsizes = {v.name: du(v.mountpoint) for v in vols}

    def pct(part: int, whole: int) -> str:
        return f"{human(part)} ({100 * part // whole if whole else 0}%)"

    return [
        {"Type": "Images", "TotalCount": len(imgs),
         "Active": len([i for i in imgs if i.id in running_images]),
         "Size": human(img_size), "Reclaimable": pct(img_reclaim, img_size)},
        {"Type": "Containers", "TotalCount": len(recs),
         "Active": len([r for r in recs if r.running]),
         "Size": human(sum(sizes.values())), "Reclaimable": pct(c_reclaim,
                                                                 sum(sizes.values()))},
        {"Type": "Local Volumes", "TotalCount": len(vols),
         "Active": len([v for v in vols if v.name in used_vols]),
         "Size": human(sum(vsizes.values())),
         "Reclaimable": pct(sum(s for n, s in vsizes.items() if n not in used_vols),
                            sum(vsizes.values()))},
        {"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": "0B",
         "Reclaimable": "0B"},
    ]


def cmd_system_df(a: argparse.Namespace) -> int:
    rows = disk_usage()
    if a.format == "json":
        for r in rows:
            print(json.dumps(r))
        return 0
    if a.format != "table":
        print(f"nsprim: invalid --format {a.format!r}: table or json", file=sys.stderr)
        return 125
    print(f"{'TYPE':15} {'TOTAL':9} {'ACTIVE':9} {'SIZE':11} RECLAIMABLE")
    for r in rows:
        print(f"{r['Type']:15} {r['TotalCount']:<9} {r['Active']:<9} {r['Size']:11} "
              f"{r['Reclaimable']}")
    return 0


# ----------------------------------------------------------- info/version

def os_name() -> str:
    """The host's PRETTY_NAME (os-release), else "Linux"."""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def info() -> dict[str, Any]:
    """docker's Info object: what ``nsprim info`` shows and the daemon's
    ``GET /info`` answers (it adds its ID and API server version)."""
    import platform

    from nsprim import __version__
    from nsprim.cgroup import host_layout
    from nsprim.images.store import default_store
    from nsprim.lifecycle import records
    from nsprim.state import state_root

    recs = records()
    statuses = [(r.status, r.state.get("paused")) for r in recs]  # one read each
    running = sum(1 for s, _ in statuses if s == "running")
    paused = sum(1 for s, p in statuses if s == "running" and p)
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    u = os.uname()
    return {
        "Containers": len(recs), "ContainersRunning": running - paused,
        "ContainersPaused": paused, "ContainersStopped": len(recs) - running,
        "Images": len(default_store().images()), "Driver": "overlay2",
        "DriverStatus": [], "DockerRootDir": state_root(), "Name": u.nodename,
        "OperatingSystem": os_name(), "OSType": "linux", "OSVersion": "",
        "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1, "MemTotal": mem,
        "KernelVersion": u.release, "ServerVersion": __version__, "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if host_layout().kind == "v2" else "1", "MemoryLimit": True,
        "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True, "Debug": False,
        "LoggingDriver": "json-file", "DefaultRuntime": "nsprim",
        "Runtimes": {"nsprim": {"path": "nsprim"}},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Log": ["json-file"], "Authorization": None},
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "Mirrors": []},
        "Labels": [], "ExperimentalBuild": False, "LiveRestoreEnabled": True,
        "Isolation": "", "InitBinary": "nsprim-init", "Warnings": []}


def cmd_info(a: argparse.Namespace) -> int:
    d = info()
    if a.format == "json" or a.format == "{{json .}}":
        print(json.dumps(d))
        return 0
    if a.format is not None:
        print(f"nsprim: invalid --format {a.format!r}: json", file=sys.stderr)
        return 125
    from nsprim.cli.stats import bytes_size

    print("Server:")
    print(f" Containers: {d['Containers']}")
    print(f"  Running: {d['ContainersRunning']}")
    print(f"  Paused: {d['ContainersPaused']}")
    print(f"  Stopped: {d['ContainersStopped']}")
    print(f" Images: {d['Images']}")
    print(f" Server Version: {d['ServerVersion']}")
    print(f" Storage Driver: {d['Driver']}")
    print(f" Cgroup Driver: {d['CgroupDriver']}")
    print(f" Cgroup Version: {d['CgroupVersion']}")
    print(f" Default Runtime: {d['DefaultRuntime']}")
    print(" Security Options:")
    print("  seccomp")
    print("   Profile: builtin")
    print(f" Kernel Version: {d['KernelVersion']}")
    print(f" Operating System: {d['OperatingSystem']}")
    print(f" OSType: {d['OSType']}")
    print(f" Architecture: {d['Architecture']}")
    print(f" CPUs: {d['NCPU']}")
    print(f" Total Memory: {bytes_size(d['MemTotal'])}")
    print(f" Name: {d['Name']}")
    print(f" Docker Root Dir: {d['DockerRootDir']}")
    return 0


def cmd_version(a: argparse.Namespace) -> int:
    import platform

    from nsprim import __version__
    from nsprim.spec import host_platform

    os_, arch = host_platform()
    d = {"Client": {"Version": __version__, "ApiVersion": "1.43",
                    "GoVersion": f"python{platform.python_version()}", "Os": os_,
                    "Arch": arch},
         "Server": {"Version": __version__, "ApiVersion": "1.43", "MinAPIVersion": "1.24",
                    "Os": os_, "Arch": arch, "KernelVersion": os.uname().release}}
    if a.format == "json" or a.format == "{{json .}}":
        print(json.dumps(d))
        return 0
    if a.format is not None:
        print(f"nsprim: invalid --format {a.format!r}: json", file=sys.stderr)
        return 125
    for side in ("Client", "Server"):
        print(f"{side}:" if side == "Client" else f"\n{side}: nsprim")
        for k, v in d[side].items():
            print(f" {k + ':':16}{v}")
    return 0
