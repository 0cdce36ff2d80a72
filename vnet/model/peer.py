"""Which addresses can be a peer: one rule, for `vn` and for both datapaths.

A peer is another vnet host that floods are forwarded to and accepted from.  A
multicast or broadcast peer would flood the whole underlay, and a loopback address or
one of the host's own would send every flood back to the host itself, so each is
refused, in the same words wherever it is asked: by vn's controller before anything
changes, by vnetd for a `peer.add` on its socket or a peer in the state file, and by
the kernel module (kmod/peer.c, `vnet_peer_check`, whose extended-ack texts are
these; keep the two in step).  Only IPv4 gets this far: an IPv6 address is refused
when it is parsed (vnet.model.addr).

A host has at most MAX_PEERS peers, counted the same way in the three places (the
module: kmod/vnet.yaml's max-peers, VNET_MAX_PEERS, and the same words): every
broadcast frame is copied to each peer, so a list without end would let anyone who
may add peers (root in a user namespace, for the module) keep a CPU busy copying.

"This host" is the datapath's network namespace, told by its local routing table
(what `ip route show table local` prints): the kernel module asks the same table
(`inet_addr_type`), so both datapaths agree on addresses added while they run.
"""
from __future__ import annotations

import socket
from collections.abc import Collection, Iterable

from vnet.errors import DatapathError
from vnet.model.addr import is_host_ipv4

__all__ = ["NOT_UNICAST", "LOOPBACK", "OWN", "MAX_PEERS", "TOO_MANY", "LocalRoute", "peer_problem",
           "check_peer", "check_peer_room"]

NOT_UNICAST = "a peer must be a unicast address"
LOOPBACK = "a peer must not be a loopback address"
OWN = "a peer must not be an address of this host"
#: Peers of one host at most (VNET_MAX_PEERS of the module's netlink spec).
MAX_PEERS = 256
TOO_MANY = f"a host has at most {MAX_PEERS} peers"

#: An entry of the local routing table: destination, prefix length, and its type
#: ("local" for an address of the host, "broadcast" for a subnet's broadcast address).
LocalRoute = tuple[str, int, str]


def _as_int(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def _local_type(addr: str, local: Iterable[LocalRoute]) -> str | None:
    """The type of the longest local-table entry covering `addr`, as the kernel's
    inet_addr_type() finds it."""
    value, best, found = _as_int(addr), -1, None
    for dst, plen, kind in local:
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if plen > best and value & mask == _as_int(dst) & mask:
            best, found = plen, kind
    return found


def peer_problem(addr: str, local: Iterable[LocalRoute]) -> str | None:
    """Why the dotted quad `addr` cannot be a peer of a host with local table `local`,
    or None if it can."""
    if addr.startswith("127."):
        return LOOPBACK
    if not is_host_ipv4(addr):  # 0/8, multicast, 240/4 and the broadcast address
        return NOT_UNICAST
    kind = _local_type(addr, local)
    if kind == "local":
        return OWN
    if kind == "broadcast":
        return NOT_UNICAST
    return None


def check_peer(addr: str, local: Iterable[LocalRoute], shown: str | None = None) -> None:
    """Refuse `addr` as a peer with the rule's words; `shown` is how the user gave it
    (a name and what it resolved to), if not as `addr`."""
    problem = peer_problem(addr, local)
    if problem is not None:
        raise DatapathError("EINVAL", f"cannot add peer {shown or addr}: {problem}")


def check_peer_room(addr: str, known: Collection[str], shown: str | None = None) -> None:
    """Refuse a new peer `addr` when the host has `known` peers already, MAX_PEERS of
    them; a known peer (a change of port) is never refused."""
    if addr not in known and len(known) >= MAX_PEERS:
        raise DatapathError("ENOSPC", f"cannot add peer {shown or addr}: {TOO_MANY}")
