"""Named volumes: directories under ``<state root>/volumes/<name>/_data`` that
outlive containers (docker's local driver).

A volume is created on first use; a new, empty volume mounted over a
directory that the image has content in is first filled with that content
(docker's behaviour)."""

from __future__ import annotations

import errno
import json
import os
import re
import time

from nsprim._record import record
from nsprim.errors import ConfigError
from nsprim.state import FileLock, atomic_write, state_root

__all__ = ["Volume", "VolumeInfo", "create", "get", "list_volumes", "remove", "volumes_dir"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@record(frozen=True)
class Volume:
    """Mount named volume `name` at `target` inside the container."""

    name: str
    target: str
    readonly: bool = False

    def __post_init__(self) -> None:
        check_name(self.name)
        if not self.target.startswith("/"):
            raise ConfigError(f"invalid volume target {self.target!r}: must be an absolute path")


@record(frozen=True)
class VolumeInfo:
    name: str
    mountpoint: str
    created_at: str

    def to_json(self) -> dict[str, object]:
        return {"Name": self.name, "Driver": "local", "Mountpoint": self.mountpoint,
                "CreatedAt": self.created_at, "Scope": "local", "Labels": {}, "Options": {}}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 255:
        raise ConfigError(f"invalid volume name {name!r}: letters, digits, '_', '.', '-', "
                          "starting with a letter or digit")
    return name


def volumes_dir() -> str:
    return os.path.join(state_root(), "volumes")


def _lock() -> FileLock:
    os.makedirs(volumes_dir(), mode=0o700, exist_ok=True)
    return FileLock(os.path.join(volumes_dir(), ".lock"))


def get(name: str) -> VolumeInfo:
    check_name(name)
    d = os.path.join(volumes_dir(), name)
    try:
        with open(os.path.join(d, "volume.json")) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise LookupError(f"no such volume: {name}") from None
    return VolumeInfo(name, os.path.join(d, "_data"), meta.get("CreatedAt", ""))


def create(name: str) -> tuple[VolumeInfo, bool]:
    """The volume `name`, created if missing; (info, created now)."""
    check_name(name)
    with _lock():
        try:
            return get(name), False
        except LookupError:
            pass
        d = os.path.join(volumes_dir(), name)
        # _data keeps 0755 (what the container sees); the state root above it
        # is private to root, so other host users never reach the data
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(d, "_data"), mode=0o755, exist_ok=True)
        meta = {"Name": name, "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(os.path.join(d, "volume.json"), json.dumps(meta).encode(), 0o600)
        from nsprim import events

        events.volume("create", name)
        return get(name), True


def list_volumes() -> list[VolumeInfo]:
    try:
        names = sorted(os.listdir(volumes_dir()))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if n.startswith("."):
            continue
        try:
            out.append(get(n))
        except (LookupError, ConfigError):
            continue
    return out


def remove(name: str) -> None:
    info = get(name)
    with _lock():
        if _in_use(info.mountpoint):
            raise OSError(errno.EBUSY, f"volume {name} is in use", name)
        import shutil

        d = os.path.dirname(info.mountpoint)
        if os.geteuid() != 0:  # rootless: subordinate ids' files go through the userns
            from nsprim import rootless

            rootless.remove_tree(d)
            if os.path.lexists(d):
                raise OSError(errno.EACCES, f"volume {name} could not be removed", d)
        else:
            shutil.rmtree(d)
    from nsprim import events

    events.volume("destroy", name)


def _in_use(path: str) -> bool:
    # a volume is bind-mounted into a container's mount namespace only, so look
    # for containers of ours that hold it: their lock files name their volumes
    base = os.path.join(state_root(), "containers")
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return False
    for e in entries:
        try:
            with open(os.path.join(base, e, "volumes")) as f:
                if path in f.read().split("\n"):
                    lock = FileLock.try_acquire(os.path.join(base, e, "lock"))
                    if lock is None:
                        return True
                    lock.release()
        except OSError:
            continue
    return False


def populate(volume_data: str, source_dir_fd: int) -> None:
    """Copy an image directory (an open fd) into a new, empty volume."""
    if os.listdir(volume_data):
        return
    src = f"/proc/{os.getpid()}/fd/{source_dir_fd}/."  # cp is another process
    import subprocess

    subprocess.run(["cp", "-a", src, volume_data], check=True, stdin=subprocess.DEVNULL)
