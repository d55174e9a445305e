"""Health checks: docker's ``--health-*`` flags and the image's HEALTHCHECK.

A container with a check gets a small monitor process (``python -m
nsprim.health ID``), started next to its supervisor: every interval it runs
the check inside the container through nsprim's exec path (the container's
namespaces, cgroup, capabilities, seccomp profile; nothing of the host's),
with the timeout, and keeps docker's ``State.Health`` in the record's state:
``{"Status": "starting"|"healthy"|"unhealthy", "FailingStreak": N, "Log":
[{"Start", "End", "ExitCode", "Output"}, ...]}`` (the last 5 results, 4 KiB
of output each).  Failures during the start period do not count.  The
monitor ends when the container's process does.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping, Sequence

from nsprim.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["parse_duration", "resolve", "start_monitor", "DEFAULTS"]

#: docker's defaults (seconds; retries)
DEFAULTS = {"interval": 30.0, "timeout": 30.0, "start_period": 0.0, "retries": 3}
MAX_LOG = 5
MAX_OUTPUT = 4096

_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+|0", re.ASCII)
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str) -> float:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in seconds."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ConfigError(f"invalid {what} {text!r}: a duration such as 30s, 1m30s or "
                          "500ms")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def check_spec(spec: Any) -> None:
    """The checks of a spec's health fields (spec.validate)."""
    test = spec.health_test
    if test is not None:
        if not isinstance(test, (list, tuple)) or not test or not all(
                isinstance(x, str) for x in test):
            raise ConfigError(f"invalid health check {test!r}")
        if test[0] not in ("NONE", "CMD", "CMD-SHELL") or \
                test[0] != "NONE" and len(test) < 2:
            raise ConfigError(f"invalid health check {list(test)!r}: NONE, CMD ARGS... or "
                              "CMD-SHELL COMMAND")
    for name in ("interval", "timeout", "start_period"):
        v = getattr(spec, f"health_{name}")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                              v < 0 or (v and v < 0.001)):
            raise ConfigError(f"invalid --health-{name.replace('_', '-')} {v!r}: at least "
                              "1ms (0: the default)")
    r = spec.health_retries
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 0):
        raise ConfigError(f"invalid --health-retries {r!r}: a number of retries, 0 or more")


def from_flags(a: Any) -> dict[str, Any]:
    """The spec's health fields from ``run``'s flags (ConfigError naming a bad
    value)."""
    out: dict[str, Any] = {}
    if getattr(a, "no_healthcheck", False):
        if getattr(a, "health_cmd", None):
            raise ConfigError("conflicting options: --no-healthcheck and --health-cmd")
        out["health_test"] = ("NONE",)
    elif getattr(a, "health_cmd", None):
        out["health_test"] = ("CMD-SHELL", a.health_cmd)
    for name in ("interval", "timeout", "start_period"):
        v = getattr(a, f"health_{name}", None)
        if v is not None:
            out[f"health_{name}"] = parse_duration(v, f"--health-{name.replace('_', '-')}")
    if getattr(a, "health_retries", None) is not None:
        out["health_retries"] = a.health_retries
    return out


def resolve(spec: Any, image_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The check to run (None: none) from the spec, over the image's
    HEALTHCHECK (docker's merge: each field the flags leave unset comes from
    the image)."""
    hc = (image_config or {}).get("Healthcheck") or {}
    if not isinstance(hc, Mapping):
        hc = {}
    test = spec.health_test if spec.health_test is not None else hc.get("Test")
    if not test or test[0] == "NONE" or not isinstance(test, (list, tuple)):
        return {}

    def pick(field: str, key: str) -> float:
        v = getattr(spec, f"health_{field}")
        if v:
            return float(v)
        img = hc.get(key)
        if isinstance(img, int) and img > 0:
            return img / 1e9  # the image's are nanoseconds
        return float(DEFAULTS[field])

    img_retries = hc.get("Retries")
    retries: int = spec.health_retries if spec.health_retries else (
        img_retries if isinstance(img_retries, int) and img_retries > 0
        else int(DEFAULTS["retries"]))
    return {"test": list(test), "interval": pick("interval", "Interval"),
            "timeout": pick("timeout", "Timeout"),
            "start_period": pick("start_period", "StartPeriod"), "retries": int(retries)}


def start_monitor(rec: Any) -> None:
    """Start the monitor of `rec` if it has a check (no wait)."""
    if not rec.config.get("health"):
        return
    import subprocess

    from nsprim.state import root_args

    rec.update_state(health={"Status": "starting", "FailingStreak": 0, "Log": []})
    subprocess.Popen([sys.executable, "-m", "nsprim.health", *root_args(), rec.id],
                     start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def _stamp(t: float) -> str:
    ns = int(t * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + \
        f".{ns % 10**9:09d}Z"


def run_check(rec: Any, pid: int, check: Mapping[str, Any]) -> tuple[int, str]:
    """Run the check once in the container: (exit code, output)."""
    import subprocess

    from nsprim.container import PIPE, STDOUT
    from nsprim.spec import exec_container

    test = check["test"]
    argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    try:
        c = exec_container(rec.spec, pid, argv, stdin=None, stdout=PIPE, stderr=STDOUT)
        c.start()
    except (OSError, ValueError, LookupError) as e:
        return -1, str(e)[:MAX_OUTPUT]
    try:
        try:
            out, _ = c.communicate(timeout=check["timeout"])
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
            return -1, f"Health check exceeded timeout ({check['timeout']}s)"
        return int(c.returncode or 0), (out or b"")[:MAX_OUTPUT].decode("utf-8", "replace")
    finally:
        if c.cgroup is not None:
            c.cgroup.close()


def monitor(container_id: str) -> int:
    """The monitor's loop (``python -m nsprim.health ID``)."""
    from nsprim.lifecycle import Record, _live_pid

    rec = Record(container_id)
    check = rec.config.get("health") or {}
    if not check:
        return 0
    live = _live_pid(rec)
    if live is None:
        return 0
    started = time.monotonic()
    streak = 0
    log: list[dict[str, Any]] = []
    status = "starting"
    while True:
        time.sleep(check["interval"])
        if _live_pid(rec) != live:
            return 0
        t0 = time.time()
        code, output = run_check(rec, live[0], check)
        log = (log + [{"Start": _stamp(t0), "End": _stamp(time.time()), "ExitCode": code,
                       "Output": output}])[-MAX_LOG:]
        in_start = time.monotonic() - started < check["start_period"]
        if code == 0:
            streak, status = 0, "healthy"
        elif not in_start:
            streak += 1
            if streak >= check["retries"]:
                status = "unhealthy"
        if _live_pid(rec) != live:
            return 0
        rec.update_state(health={"Status": status, "FailingStreak": streak, "Log": log})


def _main(argv: Sequence[str]) -> int:
    args = list(argv)
    if len(args) >= 4 and args[0] == "--root" and args[2] == "--run":
        from nsprim.state import use_root

        use_root(args[1], args[3])
        args = args[4:]
    if len(args) != 1:
        print("usage: python -m nsprim.health [--root DIR --run DIR] CONTAINER_ID",
              file=sys.stderr)
        return 2
    return monitor(args[0])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
