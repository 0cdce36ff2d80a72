"""This host on the underlay: its address and group, and the sockets vnetd uses there.

`Underlay` answers what the packet rules ask about the host (is this source one of
our addresses, is it on our subnet, which group do we flood to) and needs no socket,
so tests build one from plain values.  `Sockets` opens the real sockets.  The rules
send only through `Sender`s, anything with a socket's `sendmsg`: the daemon passes
the sockets, a test passes recorders.
"""
from __future__ import annotations

import ctypes
import socket
import struct
from typing import Protocol

from pyroute2 import IPRoute

from vnet.errors import DatapathError
from vnet.host import netdev
from vnet.model.addr import is_multicast_ipv4
from vnet.wire import formats as wire

IP_MULTICAST_ALL = 49
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 0, 2
IP_RECVTTL = 12
SO_NO_CHECK = 11
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
#: Abstract Unix socket names are per network namespace: holding this one means
#: "the vnet datapath of this namespace", since port 1798 can be bound twice.
NETNS_LOCK = b"\0vnet-datapath"
RCVBUF = 4 << 20


def check_group(addr: str) -> None:
    """The one check of a group address, for -m, the persisted setting and varp.mcaddr."""
    if not is_multicast_ipv4(addr):
        raise DatapathError("EINVAL", f"{addr} is not a multicast address (224.0.0.0/4)")


class Sender(Protocol):
    """Where the packet rules send: a socket's sendmsg(parts, (), 0, (addr, port))."""

    def sendmsg(self, buffers, ancdata=..., flags: int = ..., address=...) -> int: ...


class Underlay:
    """Our underlay address (and every other address of ours), its subnet, the group
    and the port.  The address is fixed for the daemon's life; the group can change."""

    def __init__(self, address: str, prefix_len: int, self_addrs: set[str] | None = None,
                 device: str = "", ifindex: int = 0, mcaddr: str = wire.DEFAULT_GROUP,
                 port: int = wire.PORT, ttl: int = wire.DEFAULT_TTL) -> None:
        self.address = address
        self.address_b = socket.inet_aton(address)
        self.device = device
        self.ifindex = ifindex
        # 0.0.0.0 is ours too: a packet from it can only be our own echo.
        self.self_addrs = (self_addrs or set()) | {address, "0.0.0.0"}
        self.onlink_mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        self.onlink_net = int.from_bytes(self.address_b, "big") & self.onlink_mask
        self.port = port
        self.ttl = ttl
        self.set_group(mcaddr)

    @classmethod
    def find(cls, ipr: IPRoute, address: str, mcaddr: str = wire.DEFAULT_GROUP,
             port: int = wire.PORT, ttl: int = wire.DEFAULT_TTL) -> Underlay:
        """The underlay of `address`, which must be an address of this host."""
        found = {a: (ifname, index, plen) for ifname, a, index, plen in netdev.ipv4_addresses(ipr)}
        if address not in found:
            raise DatapathError("EADDRNOTAVAIL", f"{address} is not an address of this host "
                                f"(have: {', '.join(sorted(found)) or 'none'})")
        device, ifindex, prefix_len = found[address]
        return cls(address, prefix_len, set(found), device, ifindex, mcaddr, port, ttl)

    def set_group(self, mcaddr: str) -> None:
        check_group(mcaddr)
        self.mcaddr = mcaddr
        self.mcaddr_b = socket.inet_aton(mcaddr)
        self.set_vnet_groups(getattr(self, "vnet_groups", ()))

    def set_vnet_groups(self, groups) -> None:
        """The groups of vnets with their own (config `group`) that we receive too;
        `groups_b` is every group we take, the shared one included, for the
        per-packet checks."""
        self.vnet_groups = frozenset(groups)
        self.groups_b = frozenset(socket.inet_aton(g) for g in self.vnet_groups) | {self.mcaddr_b}

    def relayed(self, src: str) -> bool:
        """A multicast from an off-link source can only be a peer's re-send."""
        return int.from_bytes(socket.inet_aton(src), "big") & self.onlink_mask != self.onlink_net

    def membership(self, group_b: bytes | None = None) -> bytes:
        return struct.pack("4s4si", group_b or self.mcaddr_b, self.address_b, self.ifindex)


class Sockets:
    """The namespace lock and the four sockets, all non-blocking:

    `udp` (0.0.0.0:port, unicast only), `etherip` (raw protocol 97: unicast and the
    group), `ip` (raw IP with our own headers, for re-sending VFWD packets with the
    origin's address) and `group` (group:port, reopened when the group changes);
    and one socket group:port for each group of a vnet that has its own, in
    `vnet_groups`.  The raw socket needs no membership of those: any socket's makes
    the host take the group, and a raw socket gets every group the host takes."""

    def __init__(self, here: Underlay) -> None:
        self.here = here
        self.lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.lock.bind(NETNS_LOCK)
        except OSError:
            self.lock.close()
            raise DatapathError("EADDRINUSE", "another vnet datapath (vnetd) is already running "
                                "in this network namespace") from None
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        u.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        self._multicast_options(u)
        big_buffer(u)
        # As the original: UDP checksum 0 (the inner frame has its own) and DF clear,
        # so full-size frames are fragmented by the host rather than dropped.
        u.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        u.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        try:
            u.bind(("0.0.0.0", here.port))
        except OSError as e:
            u.close()
            self.lock.close()
            raise DatapathError.from_os_error(e, f"cannot bind UDP port {here.port} "
                                              "(is another vnetd or the vnet module running here?)")
        self.udp = u
        self.etherip = socket.socket(socket.AF_INET, socket.SOCK_RAW, wire.IPPROTO_ETHERIP)
        self._multicast_options(self.etherip)
        big_buffer(self.etherip)
        self.etherip.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        # The same, DF clear, for vnets with an MTU above the default; it only sends.
        self.etherip_frag = socket.socket(socket.AF_INET, socket.SOCK_RAW, wire.IPPROTO_ETHERIP)
        self._multicast_options(self.etherip_frag)
        self.etherip_frag.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        drop_all_filter(self.etherip_frag)
        self.ip = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._multicast_options(self.ip)
        for s in (u, self.etherip, self.etherip_frag, self.ip):
            s.setblocking(False)
        self.group: socket.socket | None = None
        self.vnet_groups: dict[str, socket.socket] = {}
        self.join_group()

    def _multicast_options(self, s: socket.socket) -> None:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self.here.address_b)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.here.ttl)

    def join_group(self) -> socket.socket:
        """(Re)open the socket that receives the group's floods and VARP messages, and
        move the raw socket's membership to the group `here` names now."""
        if self.group is not None:
            try:
                self.etherip.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self._joined)
            except OSError:
                pass
            self.group.close()
        membership = self.here.membership()
        m = self.group_socket(self.here.mcaddr)
        self.etherip.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self._joined = membership
        self.group = m
        return m

    def group_socket(self, addr: str) -> socket.socket:
        """A socket that receives the group `addr` on port 1798, with each packet's
        arrival TTL, after joining it on the underlay device."""
        m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            m.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            m.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            big_buffer(m)
            m.bind((addr, self.here.port))
            m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         self.here.membership(socket.inet_aton(addr)))
            m.setblocking(False)
        except OSError as e:
            m.close()
            raise DatapathError.from_os_error(e, f"cannot join the multicast group {addr} on "
                                              f"{self.here.device or self.here.address}") from None
        return m

    def close(self) -> None:
        for s in (self.udp, self.group, self.etherip, self.etherip_frag, self.ip, self.lock,
                  *self.vnet_groups.values()):
            if s is not None:
                s.close()


def attach_filter(s: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """Attach a classic BPF socket filter: `program` is its (code, jt, jf, k)
    instructions.  The kernel copies it."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(program), ctypes.addressof(code)))


def drop_all_filter(s: socket.socket) -> None:
    """A socket filter that takes nothing: for a socket used only to send, so the
    kernel queues it no copies of what arrives."""
    attach_filter(s, ((0x06, 0, 0, 0),))  # BPF_RET|BPF_K 0


def big_buffer(s: socket.socket) -> None:
    """A receive buffer that rides out a burst while the loop is busy elsewhere."""
    for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # beyond the cap as root, else the capped one
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
            return
        except OSError:
            continue
