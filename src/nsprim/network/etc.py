"""The text of a container's /etc/hosts, /etc/hostname and /etc/resolv.conf
as docker writes them, and docker's ``--add-host``/``--dns*`` values parsed
and checked (pure logic; the bridge module and the Container write the files).

hosts: docker's default block (``127.0.0.1 localhost``, ``::1 localhost
ip6-localhost ip6-loopback`` and the IPv6 multicast names), then each
``--add-host`` (``IP<TAB>name``), then the container's own address
(``IP<TAB>host.domain host``).  With the host's network the file is the
host's own /etc/hosts with the added hosts appended.

resolv.conf (docker's rules): the host's file; its loopback nameservers are
unreachable from another network namespace and are dropped (when the host
runs systemd-resolved, whose stub 127.0.0.53 is all /etc/resolv.conf names,
its upstreams in /run/systemd/resolve/resolv.conf are used); none left gives
docker's fallback 8.8.8.8 and 8.8.4.4.  ``--dns`` replaces the nameservers,
``--dns-search`` the search list (``.``: none), ``--dns-option`` the
options.  With the host's network the host's file is kept as it is (its
loopback resolvers are reachable), with the same overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from nsprim._record import record
from nsprim.errors import ConfigError

__all__ = ["EtcOptions", "parse_add_host", "hosts_text", "resolv_text", "HOST_GATEWAY",
           "DEFAULT_HOSTS", "FALLBACK_NAMESERVERS", "etc_options"]

HOST_GATEWAY = "host-gateway"
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")
SYSTEMD_RESOLV = "/run/systemd/resolve/resolv.conf"
_MAX_FILE = 1 << 20  # the host's files are read up to 1 MiB
# a name in /etc/hosts: dot-separated labels of letters, digits, '-' and '_'
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?", re.ASCII)
_DOMAIN = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)
_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
_MAX_ITEMS = 256


@record(frozen=True)
class EtcOptions:
    """What a container's /etc files carry beyond the defaults."""

    add_hosts: tuple[tuple[str, str], ...] = ()  # (name, IP or "host-gateway")
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] | None = None    # None: the host's
    dns_options: tuple[str, ...] | None = None   # None: the host's

    @property
    def empty(self) -> bool:
        return not self.add_hosts and not self.dns and self.dns_search is None and \
            self.dns_options is None


def _ip(value: str, what: str) -> str:
    """A canonical IPv4 or IPv6 address (``[::1]`` too), else a ConfigError
    naming `value`."""
    import ipaddress

    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if not text.isascii() or "%" in text:
        raise ConfigError(f"invalid IP address in {what}: {value!r}")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(f"invalid IP address in {what}: {value!r}") from None


def parse_add_host(spec: str) -> tuple[str, str]:
    """docker's ``--add-host NAME:IP`` (or ``NAME=IP``; an IPv6 address as it
    is, ``h:::1``, or in brackets, ``h=[::1]``; ``host-gateway`` for the
    bridge's gateway) -> (name, canonical IP or "host-gateway")."""
    if not isinstance(spec, str):
        raise ConfigError(f"bad format for add-host: {spec!r}")
    sep = "=" if "=" in spec else ":"
    name, found, ip = spec.partition(sep)
    if not found or not name or not ip:
        raise ConfigError(f"bad format for add-host: {spec!r} (expected NAME:IP)")
    if not _HOSTNAME.fullmatch(name):
        raise ConfigError(f"invalid host name in add-host: {name!r}")
    if ip == HOST_GATEWAY:
        return name, ip
    return name, _ip(ip, f"add-host {spec!r}")


def _dns(value: str) -> str:
    return _ip(value, "--dns") if isinstance(value, str) else _ip(repr(value), "--dns")


def _search(value: str) -> str:
    if not isinstance(value, str) or (value != "." and not _DOMAIN.fullmatch(value)):
        raise ConfigError(f"invalid --dns-search {value!r}: not a valid domain")
    return value


def _option(value: str) -> str:
    if not isinstance(value, str) or not _OPTION.fullmatch(value):
        raise ConfigError(f"invalid --dns-option {value!r}: a resolver option such as "
                          "ndots:2 or edns0")
    return value


def _items(values: Iterable[str] | str | None, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out = list(values)
    if len(out) > _MAX_ITEMS:
        raise ConfigError(f"too many {what} values: at most {_MAX_ITEMS}")
    return out


def etc_options(add_hosts: Iterable[str] | Mapping[str, str] | None = None,
                dns: Iterable[str] | None = None, dns_search: Iterable[str] | None = None,
                dns_options: Iterable[str] | None = None) -> EtcOptions:
    """The checked EtcOptions of docker's flags (each bad value a ConfigError
    naming it).  `add_hosts`: ``"name:ip"`` strings, or a mapping name -> ip."""
    if isinstance(add_hosts, Mapping):
        hosts = [parse_add_host(f"{k}={v}") for k, v in add_hosts.items()]
    else:
        hosts = [parse_add_host(h) for h in _items(add_hosts, "--add-host")]
    search = [_search(s) for s in _items(dns_search, "--dns-search")]
    opts = [_option(o) for o in _items(dns_options, "--dns-option")]
    return EtcOptions(tuple(hosts), tuple(_dns(d) for d in _items(dns, "--dns")),
                      tuple(search) if search else None, tuple(opts) if opts else None)


NO_OPTIONS = EtcOptions()


# ------------------------------------------------------------------ hosts

def hosts_text(hostname: str | None, address: str | None, *, domainname: str | None = None,
               extra: Sequence[tuple[str, str]] = (), gateway: str | None = None,
               base: str | None = None) -> str:
    """/etc/hosts: `base` (the host's file, for the host's network) or
    docker's default block; the added hosts (``host-gateway`` -> `gateway`);
    then ``address<TAB>host.domain host`` when there is an address."""
    text = DEFAULT_HOSTS if base is None else base
    if text and not text.endswith("\n"):
        text += "\n"
    for name, ip in extra:
        if ip == HOST_GATEWAY:
            if gateway is None:
                raise ConfigError(f"add-host {name}:{HOST_GATEWAY}: no host gateway address")
            ip = gateway
        text += f"{ip}\t{name}\n"
    if address and hostname:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        text += f"{address}\t{names}\n"
    return text


# ------------------------------------------------------------- resolv.conf

def _read_small(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_FILE).decode("utf-8", "replace")
    except OSError:
        return None


def _nameserver(line: str) -> str | None:
    parts = line.split()
    if parts[:1] == ["nameserver"] and len(parts) > 1:
        return parts[1]
    return None


_PLAIN_V4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", re.ASCII)


def _is_loopback(ns: str) -> bool:
    if _PLAIN_V4.fullmatch(ns):  # the common case, without importing ipaddress
        return ns.startswith("127.")
    import ipaddress

    try:
        return ipaddress.ip_address(ns.split("%")[0]).is_loopback
    except ValueError:
        return True  # not an address: dropped with the unreachable ones


def resolv_text(opts: EtcOptions = NO_OPTIONS, *, host_network: bool = False,
                host_file: str = "/etc/resolv.conf", systemd_file: str = SYSTEMD_RESOLV,
                nameservers: Sequence[str] | None = None) -> str:
    """/etc/resolv.conf by docker's rules (see the module's doc).
    `nameservers` (a caller's own resolver, e.g. a user-defined network's DNS
    at 127.0.0.11) replace the host's and win over `opts.dns`: as docker's
    embedded DNS, the container always asks its network's resolver."""
    text = _read_small(host_file) or ""
    lines = text.splitlines()
    servers = [ns for ns in (_nameserver(line) for line in lines) if ns is not None]
    if not host_network and servers and all(_is_loopback(s) for s in servers):
        upstream = _read_small(systemd_file)  # systemd-resolved's stub: its upstreams
        if upstream is not None:
            lines = upstream.splitlines()
    other: list[str] = []
    servers_out: list[str] = []
    search: list[str] = []
    options: list[str] = []
    given = list(nameservers or ()) or list(opts.dns)
    for line in lines:
        ns = _nameserver(line)
        key = line.split()[:1]
        if ns is not None:
            if not given and (host_network or not _is_loopback(ns)):
                servers_out.append(line)
        elif key in (["search"], ["domain"]):
            if opts.dns_search is None:
                search.append(line)
        elif key == ["options"]:
            if opts.dns_options is None:
                options.append(line)
        else:
            other.append(line)
    if given:
        servers_out = [f"nameserver {s}" for s in given]
    elif not servers_out:
        servers_out = [f"nameserver {s}" for s in FALLBACK_NAMESERVERS]
    if opts.dns_search is not None and opts.dns_search != (".",):
        search = ["search " + " ".join(s for s in opts.dns_search if s != ".")]
    if opts.dns_options is not None:
        options = ["options " + " ".join(opts.dns_options)]
    elif nameservers:
        options = ["options ndots:0"]  # docker's, with its embedded DNS
    # docker's order: nameservers, search, options (comments first)
    out = other + servers_out + search + options
    return "\n".join(out) + "\n"


def embedded_resolv_text(text: str, address: str) -> str | None:
    """A container's resolv.conf `text` turned to its network's resolver at
    `address` (docker rewrites it so when a default-bridge container is
    connected to a user-defined network): the nameservers replaced, search
    and options kept, ``ndots:0`` added unless an ndots is given.  None: it
    asks `address` already."""
    lines = text.splitlines()
    servers = [ns for ns in (_nameserver(line) for line in lines) if ns is not None]
    if servers == [address]:
        return None
    other = [line for line in lines if _nameserver(line) is None and
             line.split()[:1] not in (["search"], ["domain"], ["options"])]
    search = [line for line in lines if line.split()[:1] in (["search"], ["domain"])]
    options = [line for line in lines if line.split()[:1] == ["options"]]
    if not any(w.startswith("ndots:") for line in options for w in line.split()[1:]):
        options = [(options[0] + " ndots:0") if options else "options ndots:0"] + options[1:]
    return "\n".join(other + [f"nameserver {address}"] + search + options) + "\n"


def rewrite_resolv(run: str, container_id: str, address: str) -> bool:
    """Point the resolv.conf nsprim bound into `container_id` at `address`,
    in place (the bind mount keeps its inode).  False: it has none of
    nsprim's, or it asks `address` already."""
    path = os.path.join(etc_dir(run), etc_prefix(container_id) + "resolv.conf")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "r+b") as f:
        new = embedded_resolv_text(f.read(_MAX_FILE).decode("utf-8", "replace"), address)
        if new is None:
            return False
        f.seek(0)
        f.truncate()
        f.write(new.encode())
    return True


def host_hostname() -> str:
    """The host's hostname (docker's --network host gives it to the container)."""
    return os.uname().nodename


def write_files(directory: str, files: Mapping[str, str], prefix: str = "") -> dict[str, str]:
    """Write target -> text under `directory` (one file per target: `prefix`
    and its basename); returns target -> file."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    out = {}
    for target, text in files.items():
        path = os.path.join(directory, prefix + os.path.basename(target))
        with open(path, "w") as f:
            f.write(text)
        out[target] = path
    return out


ETC_TARGETS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def etc_dir(run: str) -> str:
    """Where a run dir keeps its containers' /etc files: flat, one file per
    container and target (``<id>.hosts``...), so that releasing them is three
    unlinks (no rmdir: 2-3 ms on some hosts)."""
    return os.path.join(run, "etc")


def etc_prefix(container_id: str) -> str:
    return container_id + "."


def remove_files(run: str, container_id: str) -> None:
    """Remove the /etc files of `container_id` (what is not there is fine)."""
    for t in ETC_TARGETS:
        try:
            os.unlink(os.path.join(etc_dir(run), etc_prefix(container_id) +
                                   os.path.basename(t)))
        except OSError:
            pass


def etc_files(hostname: str, address: str | None, *, domainname: str | None = None,
              options: EtcOptions = NO_OPTIONS, gateway: str | None = None,
              host_network: bool = False,
              nameservers: Sequence[str] | None = None) -> dict[str, str]:
    """target -> text of a container's /etc/hosts, /etc/hostname and
    /etc/resolv.conf (docker's; the host's hosts file with the host's
    network)."""
    base = (_read_small("/etc/hosts") or "") if host_network else None
    return {"/etc/hosts": hosts_text(hostname, address, domainname=domainname,
                                     extra=options.add_hosts, gateway=gateway, base=base),
            "/etc/hostname": hostname + "\n",
            "/etc/resolv.conf": resolv_text(options, host_network=host_network,
                                            nameservers=nameservers)}
