"""docker's JSON for the API: nsprim.dockerfmt's shapes (one source with the
CLI's inspect and ps), given the daemon's view of a container's status."""

from __future__ import annotations

import os
from typing import Any

from nsprim.lifecycle import Record


def _state_of(rec: Record) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Config, state and docker's status.  A container whose process has
    ended is exited at once (the shim's exit record), also while its
    supervisor is still finishing: as docker answers right after a wait."""
    cfg, st = rec.config, rec.state
    status = rec.status
    if status == "starting":
        status = "created"
    if status in ("running", "restarting"):
        try:
            with open(os.path.join(rec.dir, "exit")) as f:
                code_s, _sig, ns = f.read().split()
            started = st.get("started_at")
            if isinstance(started, (int, float)) and int(ns) / 1e9 >= started and \
                    cfg.get("restart", "no") in ("no", ""):
                st = dict(st, status="exited", exit_code=int(code_s),
                          finished_at=int(ns) / 1e9)
                status = "removing" if cfg.get("auto_remove") else "exited"
        except (OSError, ValueError):
            pass
    if status == "running" and st.get("paused"):
        status = "paused"
    return cfg, st, status


def _loaded(rec: Record) -> Any:
    """The record as dockerfmt reads it, with the daemon's view of the status
    (exited as soon as the process has, see _state_of)."""
    from nsprim.dockerfmt.load import Container
    from nsprim.spec import ContainerSpec

    cfg, st, status = _state_of(rec)
    spec = ContainerSpec.from_json(cfg if cfg.get("id") else dict(cfg, id=rec.id))
    if status == "dead" and st.get("status") == "starting":
        status = "created"
    return Container(rec, spec, st, status)


def container_summaries(recs: list[Record]) -> list[dict[str, Any]]:
    """docker's ContainerSummary of each record (nsprim.dockerfmt's shapes)."""
    from nsprim.dockerfmt.load import summarize

    return summarize([_loaded(r) for r in recs])


def container_summary(rec: Record) -> dict[str, Any]:
    return container_summaries([rec])[0]


def container_inspect(rec: Record) -> dict[str, Any]:
    """docker's ContainerInspectResponse (nsprim.dockerfmt's), with what only
    the API's records know: StdinOnce and the Attach* flags of the create."""
    from nsprim.dockerfmt.load import inspect_container

    out = inspect_container(_loaded(rec))
    cfg = rec.config
    attach = cfg.get("attach") or {}
    c = out.setdefault("Config", {})
    c["StdinOnce"] = bool(cfg.get("stdin_once"))
    for k in ("AttachStdin", "AttachStdout", "AttachStderr"):
        if k in attach:
            c[k] = bool(attach[k])
    return out


def image_summary(img: Any) -> dict[str, Any]:
    from nsprim.dockerfmt.load import _image_json

    return _image_json(img, True)


def image_inspect(img: Any) -> dict[str, Any]:
    from nsprim.dockerfmt.load import _image_json

    return _image_json(img, False)


def familiar(names: list[str]) -> list[str]:
    from nsprim.images.reference import parse_reference

    out = []
    for n in names:
        try:
            out.append(parse_reference(n).familiar())
        except Exception:  # noqa: BLE001 - a name the parser no longer takes: shown as is
            out.append(n)
    return out


def network(name: str) -> dict[str, Any]:
    from nsprim.dockerfmt.load import inspect_network

    return inspect_network(name)
