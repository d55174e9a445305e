"""nsprim stats, top, port: what running containers use and publish.

- ``stats [-a] [--no-stream] [--no-trunc] [--format table|json|TEMPLATE] [CONTAINER...]``
  (``--format``: the Go template language of ``ps``, ``table`` and ``json``; docker's
  fields .Container .Name .ID .CPUPerc .MemUsage .MemPerc .NetIO .BlockIO .PIDs):
  CPU %, memory usage / limit, memory %, net I/O (the host side of the
  container's veth), block I/O and pids, from the container's cgroup.  CPU %
  is measured over the time the command takes to read everything (at least
  20 ms; docker's over one second), as docker computes it: the container's
  CPU time over the elapsed time, times 100 (100% is one CPU).
- ``top CONTAINER [ps OPTIONS]``: the host's ``ps`` (default ``-ef``) limited
  to the container's processes (those in its pid namespace).
- ``port CONTAINER [PRIVATE_PORT[/PROTO]]``: its published ports.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from nsprim.cli import _oneline
from nsprim.stats import MIN_WINDOW, collect
from nsprim.stats import bytes_size as bytes_size  # re-exported: cli.system uses the units
from nsprim.stats import human_size as human_size

EXIT_ERROR = 1



def add_parser(sub: Any) -> None:
    st = sub.add_parser("stats", help="show containers' resource usage")
    st.add_argument("-a", "--all", action="store_true", help="all containers, not only "
                    "running ones")
    st.add_argument("--no-stream", action="store_true", help="print once and exit")
    st.add_argument("--no-trunc", action="store_true", help="full ids")
    st.add_argument("--format", default="table", metavar="table|json|TEMPLATE")
    st.add_argument("containers", nargs="*", metavar="CONTAINER")


def add_top_parser(sub: Any) -> None:
    tp = sub.add_parser("top", help="show a container's processes", add_help=False)
    tp.add_argument("--help", action="help")
    tp.add_argument("container")
    tp.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="[ps OPTIONS]")


def add_port_parser(sub: Any) -> None:
    pt = sub.add_parser("port", help="list a container's published ports")
    pt.add_argument("container")
    pt.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def _error(msg: str) -> int:
    print(f"Error response from daemon: {msg}", file=sys.stderr)
    return EXIT_ERROR




HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
           "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
           "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
           "{{.BlockIO}}\t{{.PIDs}}")


def check_format(fmt: str) -> str:
    """docker's ``stats --format`` value as a template (``table`` and
    nothing: the default table; ``json``: a JSON object per line; else a Go
    template, ``table TEMPLATE`` with a header row).  TemplateError (a
    ValueError) for a template that does not parse."""
    fmt = fmt.strip()
    if fmt in ("", "table"):
        return DEFAULT
    if fmt == "json":
        return fmt
    from nsprim.dockerfmt.gotemplate import parse, prepare_format

    parse(prepare_format(fmt)[1])
    return fmt


def stats_rows(rows: list[dict[str, str]]) -> list[Any]:
    """Rows with docker's stats fields (methods, as the template engine and
    ``emit`` read them)."""
    from nsprim.dockerfmt.shapes import _Row

    return [_Row(r) for r in rows]


def render(rows: list[dict[str, str]], fmt: str) -> tuple[int, str]:
    """(status, text) of `rows` in the checked format `fmt`; an error is
    printed as docker words it."""
    import contextlib
    import io

    from nsprim.cli.listing import emit

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = emit(fmt, stats_rows(rows), default=DEFAULT, headers=HEADERS)
    return rc, buf.getvalue()


def cmd_stats(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import alive, find, records

    try:
        fmt = check_format(a.format)
    except ValueError as e:
        print(f"template parsing error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        chosen = [find(n) for n in a.containers] if a.containers else records()
    except LookupError as e:
        return _error(_oneline(e))
    typed = {r.id: n for r, n in zip(chosen, a.containers, strict=True)} if a.containers else {}
    while True:
        recs = []
        for r in chosen:  # each record's files read once
            st, cfg = r.state, r.config
            running = st.get("status") in ("running", "restarting") and \
                alive(st.get("supervisor_pid"), st.get("supervisor_start"))
            if running or a.all or a.containers:
                recs.append((cfg.get("created", 0), r.id, str(cfg.get("name", "")), running))
        if not a.containers:
            recs.sort(reverse=True)
        rows = []
        for s in collect([x[1:] for x in recs]):
            row = s.row(not a.no_trunc)
            if s.id in typed:  # docker's .Container: the name or id as typed
                row["Container"] = typed[s.id]
            rows.append(row)
        rc, text = render(rows, fmt)
        if rc:
            return rc
        if a.no_stream:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text if sys.stdout.isatty() else text)
        sys.stdout.flush()
        try:
            time.sleep(max(0.0, 1.0 - MIN_WINDOW))
        except KeyboardInterrupt:
            return 0


# ------------------------------------------------------------------- top

def cmd_top(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import find
    from nsprim.stats import TopError, top

    try:
        rec = find(a.container)
    except LookupError as e:
        return _error(_oneline(e))
    try:
        header, lines = top(rec, a.ps_args or None)
    except TopError as e:
        return _error(str(e))
    print(header)
    for line in lines:
        print(line)
    return 0


# ------------------------------------------------------------------ port

def cmd_port(a: argparse.Namespace) -> int:
    from nsprim.lifecycle import find

    try:
        rec = find(a.container)
    except LookupError as e:
        return _error(_oneline(e))
    ports = rec.state.get("ports") or [] if rec.running else []
    want_port = want_proto = None
    if a.port:
        p, _, proto = a.port.partition("/")
        if not p.isascii() or not p.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            print(f"nsprim: invalid port {a.port!r}: expected PORT[/tcp|udp]", file=sys.stderr)
            return 125
        want_port, want_proto = int(p), proto or "tcp"
    found = False
    for p in sorted(ports, key=lambda x: (int(x.get("container_port", 0)),
                                          str(x.get("proto")))):
        cport, proto = int(p.get("container_port", 0)), str(p.get("proto", "tcp"))
        if want_port is not None and (cport, proto) != (want_port, want_proto):
            continue
        found = True
        from nsprim.network.ports import join_host_port

        where = join_host_port(str(p.get("host_ip") or ""), p.get("host_port"))
        print(where if want_port is not None else f"{cport}/{proto} -> {where}")
    if want_port is not None and not found:
        return _error(f"No public port '{want_port}/{want_proto}' published for "
                      f"{a.container}")
    return 0
