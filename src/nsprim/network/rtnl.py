"""A small synchronous rtnetlink client: messages encoded and decoded by
pyroute2's message classes, sent on a plain netlink socket of our own.

pyroute2's IPRoute drives every call through an asyncio loop (about half a
millisecond each) and opens a socket in another network namespace by forking
(about 9 ms); container start-up needs a few calls in a namespace that was
just made, so this module creates its socket in the target namespace from a
short-lived thread (setns is per thread) and talks to the kernel directly.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from nsprim.namespace import Namespace

__all__ = ["Rtnl", "NetlinkError"]

_IFF_UP = 0x1
_NLMSG_ERROR = 2


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
            box: dict[str, Any] = {}

            def make() -> None:
                try:
                    with netns.enter():
                        box["s"] = self._socket()
                except BaseException as e:  # carried to the caller
                    box["e"] = e

            t = threading.Thread(target=make)
            t.start()
            t.join()
            if "e" in box:
                raise box["e"]
            self.sock = box["s"]
        self.seq = 0

    @classmethod
    def new_netns(cls) -> tuple[Namespace, Rtnl]:
        """A new network namespace and a socket in it, made by one short thread."""
        box: dict[str, socket.socket] = {}

        def make_socket() -> None:
            box["s"] = cls._socket()

        ns = Namespace.create("net", then=make_socket)
        return ns, cls(sock=box["s"])

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
    def _request(self, msg: Any, mtype: int, flags: int, what: str) -> None:
        self.seq += 1
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self.seq
        msg["header"]["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
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
                off += (length + 3) & ~3
                if length == 0:
                    break

    # ---------------------------------------------------------------- ops
    def link_index(self, name: str) -> int:
        """The index of interface `name` (ENODEV if there is none)."""
        try:
            return socket.if_nametoindex(name) if self._in_caller_ns() else self._lookup(name)
        except OSError:
            raise OSError(errno.ENODEV, f"no network interface {name!r}") from None

    def _in_caller_ns(self) -> bool:
        return getattr(self, "_caller", False)

    def _lookup(self, name: str) -> int:
        # RTM_GETLINK by name, answered with one RTM_NEWLINK
        self.seq += 1
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        msg["header"]["type"] = 18  # RTM_GETLINK
        msg["header"]["flags"] = NLM_F_REQUEST
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        data = self.sock.recv(65536)
        length, kind = struct.unpack_from("=IH", data, 0)
        if kind == _NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, 16)
            raise OSError(-err, os.strerror(-err))
        (index,) = struct.unpack_from("=i", data, 16 + 4)
        return int(index)

    def add_bridge(self, name: str) -> None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name),
                        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
        self._request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"creating bridge {name}")

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, *, master: int | None = None,
                 peer_index: int = 0) -> None:
        """A veth pair: `name` here (up, in bridge `master`), `peer` in the
        namespace of `peer_netns_fd` (with interface index `peer_index`)."""
        msg = ifinfmsg()
        attrs: list[tuple[str, Any]] = [
            ("IFLA_IFNAME", name),
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [
                    ("VETH_INFO_PEER", {"index": peer_index,
                                        "attrs": [("IFLA_IFNAME", peer),
                                                  ("IFLA_NET_NS_FD", peer_netns_fd)]}),
                ]}),
            ]}),
        ]
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
            msg["change"] = _IFF_UP
            msg["flags"] = _IFF_UP
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"creating veth {name}")

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 mtu: int | None = None) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        attrs: list[tuple[str, Any]] = []
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        msg["attrs"] = attrs
        if up is not None:
            msg["change"] = _IFF_UP
            msg["flags"] = _IFF_UP if up else 0
        self._request(msg, RTM_NEWLINK, 0, f"configuring link {index}")

    def del_link(self, name: str) -> None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        self._request(msg, RTM_DELLINK, 0, f"deleting link {name}")

    def add_addr(self, index: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self._request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                      f"adding address {address}/{prefixlen}")

    def add_default_route(self, gateway: str) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = 254  # main
        msg["proto"] = 3  # boot
        msg["scope"] = 0  # universe
        msg["type"] = 1  # unicast
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_TABLE", 254)]
        self._request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      f"adding default route via {gateway}")
