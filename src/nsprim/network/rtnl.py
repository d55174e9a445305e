"""A small synchronous rtnetlink client: the handful of messages container
networking needs (a bridge, a veth pair with one end in another namespace,
an address, a route, link state), encoded with struct and sent on a plain
netlink socket.

pyroute2 does this too, but importing it costs about 100 ms (it loads the
whole library) and each IPRoute call goes through an asyncio loop (about half
a millisecond); container start-up needs a few calls.  pyroute2 stays the
tool for traffic control (see bridge._shape), imported only there.  A socket
in another network namespace is made by a short-lived thread (setns is per
thread), not by forking as pyroute2 does.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from nsprim.namespace import Namespace

__all__ = ["Rtnl", "NetlinkError"]

_IFF_UP = 0x1
_NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE = \
    16, 17, 18, 20, 21, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 4, 10, 18, 28
IFLA_ADDRESS = 1
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY, RTA_TABLE = 5, 15
_IFA_F_NODAD = 0x02


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


_pool: list[tuple[Namespace, Rtnl]] = []
_pool_lock = threading.Lock()
_refilling = False


def _refill() -> None:
    global _refilling
    try:
        # only the namespace: a spare veth would show on the host as a link
        # that belongs to no container
        spare = Rtnl.new_netns()
        with _pool_lock:
            if not _pool:
                _pool.append(spare)
                spare = None  # type: ignore[assignment]
        if spare is not None:
            spare[1].close()
            spare[0].close()
    except OSError:
        pass
    finally:
        with _pool_lock:
            _refilling = False


class NetlinkError(OSError):
    pass


class Rtnl:
    """One NETLINK_ROUTE socket, in the calling thread's network namespace or in
    `netns`.  Calls raise OSError with the kernel's errno."""

    def __init__(self, netns: Namespace | None = None, *,
                 sock: socket.socket | None = None) -> None:
        if sock is not None:
            self.sock = sock
        elif netns is None:
            self.sock = self._socket()
        else:
            self.sock = netns.run_in(self._socket)
        self.seq = 0

    @classmethod
    def new_netns(cls) -> tuple[Namespace, Rtnl]:
        """A new network namespace and a socket in it, made by one short thread."""
        box: dict[str, socket.socket] = {}

        def make_socket() -> None:
            box["s"] = cls._socket()

        ns = Namespace.create("net", then=make_socket)
        return ns, cls(sock=box["s"])

    @classmethod
    def pooled_netns(cls) -> tuple[Namespace, Rtnl]:
        """Like new_netns, but from a spare made in the background: the next
        one is prepared by a daemon thread while this one is used.  Nothing
        can leak: an unused spare is only an fd of this process."""
        with _pool_lock:
            spare = _pool.pop() if _pool else None
            global _refilling
            start = not _refilling
            _refilling = True
        if start:
            threading.Thread(target=_refill, name="nsprim-netns-pool", daemon=True).start()
        return spare if spare is not None else cls.new_netns()

    @staticmethod
    def _socket() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        s.bind((0, 0))
        return s

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- core
    def _request(self, mtype: int, flags: int, payload: bytes, what: str) -> None:
        self.seq += 1
        hdr = struct.pack("=IHHII", 16 + len(payload), mtype,
                          NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(hdr + payload)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if kind == _NLMSG_ERROR and seq == self.seq:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err:
                        raise NetlinkError(-err, f"{what} failed: {os.strerror(-err)}")
                    return
                if length == 0:
                    break
                off += (length + 3) & ~3

    # ---------------------------------------------------------------- ops
    def add_bridge(self, name: str) -> None:
        payload = _ifinfo() + _str(IFLA_IFNAME, name) + \
            _attr(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "bridge"))
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload,
                      f"creating bridge {name}")

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, *, master: int | None = None,
                 peer_index: int = 0, peer_mac: str | None = None) -> None:
        """A veth pair: `name` here (up, in bridge `master`), `peer` in the
        namespace of `peer_netns_fd` (with interface index `peer_index` and
        the MAC address `peer_mac`, ``02:42:...``)."""
        peer_info = _ifinfo(peer_index) + _str(IFLA_IFNAME, peer) + \
            _u32(IFLA_NET_NS_FD, peer_netns_fd)
        if peer_mac is not None:
            peer_info += _attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
        linkinfo = _str(IFLA_INFO_KIND, "veth") + \
            _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        up = _IFF_UP if master is not None else 0
        payload = _ifinfo(0, up, up) + _str(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, linkinfo)
        if master is not None:
            payload += _u32(IFLA_MASTER, master)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload, f"creating veth {name}")

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 mtu: int | None = None) -> None:
        change = _IFF_UP if up is not None else 0
        payload = _ifinfo(index, _IFF_UP if up else 0, change)
        if master is not None:
            payload += _u32(IFLA_MASTER, master)
        if mtu is not None:
            payload += _u32(IFLA_MTU, mtu)
        self._request(RTM_NEWLINK, 0, payload, f"configuring link {index}")

    def del_link(self, name: str) -> None:
        self._request(RTM_DELLINK, 0, _ifinfo() + _str(IFLA_IFNAME, name),
                      f"deleting link {name}")

    def rename_link(self, index: int, name: str) -> None:
        """Rename a link (the kernel refuses while it is up: EBUSY)."""
        self._request(RTM_NEWLINK, 0, _ifinfo(index) + _str(IFLA_IFNAME, name),
                      f"renaming link {index} to {name}")

    def del_addr(self, index: int, address: str, prefixlen: int) -> None:
        a = socket.inet_aton(address)
        payload = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index) + \
            _attr(IFA_LOCAL, a) + _attr(IFA_ADDRESS, a)
        self._request(RTM_DELADDR, 0, payload, f"deleting address {address}/{prefixlen}")

    def add_addr(self, index: int, address: str, prefixlen: int) -> None:
        a = socket.inet_aton(address)
        payload = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index) + \
            _attr(IFA_LOCAL, a) + _attr(IFA_ADDRESS, a)
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload,
                      f"adding address {address}/{prefixlen}")

    def add_default_route(self, gateway: str) -> None:
        # family, dst_len, src_len, tos, table main, proto boot, scope universe, unicast
        payload = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0) + \
            _attr(RTA_GATEWAY, socket.inet_aton(gateway)) + _u32(RTA_TABLE, 254)
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, payload,
                      f"adding default route via {gateway}")

    def add_addr6(self, index: int, address: str, prefixlen: int) -> None:
        """An IPv6 address, usable at once (IFA_F_NODAD: no duplicate address
        detection delay; IPAM hands each address out once)."""
        a = socket.inet_pton(socket.AF_INET6, address)
        payload = struct.pack("=BBBBI", socket.AF_INET6, prefixlen, _IFA_F_NODAD, 0, index) + \
            _attr(IFA_ADDRESS, a)
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload,
                      f"adding address {address}/{prefixlen}")

    def add_default_route6(self, gateway: str) -> None:
        payload = struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 254, 3, 0, 1, 0) + \
            _attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, gateway)) + \
            _u32(RTA_TABLE, 254)
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, payload,
                      f"adding default route via {gateway}")
