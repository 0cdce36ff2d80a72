# Generated from kmod/vnet.yaml by python -m tools.genl; do not edit.
"""The generic netlink family "vnet" for pyroute2: constants and the message class.

kmod/vnet.yaml is the spec, and kmod/uapi/vnet_genl.h the C side of the same API; the
client (client.py) imports what it needs from here.
"""
from __future__ import annotations

from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla

VNET_GENL_NAME = "vnet"
VNET_GENL_VERSION = 1

#: Bytes of a vnet id (128 bits, network order).
VNET_ID_LEN = 16

#: The UDP port of vnet traffic, and the default port of a peer.
VNET_PORT = 1798

#: Bytes of a key secret (a ChaCha20-Poly1305 key).
VNET_KEY_LEN = 32

#: Keys of a secure vnet at most (the send key and one more on receive).
VNET_MAX_KEYS = 2

#: Peers of a host (a network namespace) at most, in the module and in vnetd: every broadcast frame
#: is copied to each peer.
VNET_MAX_PEERS = 256

#: MACs one vnet may hold in the VARP cache, and in the vif table, of a namespace (the module) or
#: of a vnetd; past it that vnet learns no new MAC (drop reason table-full).
VNET_MAX_VNET_MACS = 4096

#: MACs of all plain vnets together in the VARP cache, and in the vif table, of a namespace (or a
#: vnetd); secure vnets are held to max-vnet-macs only.
VNET_MAX_TABLE_MACS = 65536

#: Multicast groups the module's socket of a namespace joins at most: the shared one and those of
#: vnets with a group of their own.
VNET_MAX_GROUPS = 32

#: The smallest MTU a vnet may have (IPv4's minimum).
VNET_MIN_MTU = 68

#: The largest MTU a vnet may have: a frame and its encapsulation still fit one IPv4 packet,
#: fragmented on the way.
VNET_MAX_MTU = 65000

# enum vnet_encap - How a vnet carries its frames.
VNET_ENCAP_UDP = 0  # EtherIP in UDP, port 1798
VNET_ENCAP_ETHERIP = 1  # raw EtherIP, IP protocol 97

# enum vnet_port_state - Whether a port has its interface.
VNET_PORT_STATE_WAITING = 0  # no interface of that name in the namespace now, or one that cannot be attached
VNET_PORT_STATE_ATTACHED = 1  # attached to the interface of that name

# enum vnet_endpoint_kind - What a socket endpoint speaks, and which side connects (doc/endpoints.md).
VNET_ENDPOINT_KIND_UDP = 0  # one frame a datagram; bound to ADDR:PORT, sends to REMOTE_ADDR:REMOTE_PORT
VNET_ENDPOINT_KIND_TCP_LISTEN = 1  # listens on ADDR:PORT; the VM's QEMU connects
VNET_ENDPOINT_KIND_TCP_CONNECT = 2  # connects to REMOTE_ADDR:REMOTE_PORT, again and again; the VM's QEMU listens

# enum vnet_endpoint_state - Whether an endpoint carries frames now.
VNET_ENDPOINT_STATE_CONNECTED = 0  # bound (udp), or a connection is up (tcp)
VNET_ENDPOINT_STATE_LISTENING = 1  # tcp-listen with no client now
VNET_ENDPOINT_STATE_WAITING = 2  # tcp-connect between attempts

# enum vnet_security - What a vnet's sealed messages protect (doc/security.md).
VNET_SECURITY_NONE = 0  # plain packets, no keys
VNET_SECURITY_AUTH = 1  # sealed, authenticated
VNET_SECURITY_CONF = 2  # sealed, authenticated and encrypted

# enum vnet_mac_event - What happened to a MAC in a table (VNET_CMD_MAC_EVENT).
VNET_MAC_EVENT_LEARNED = 0  # a new entry
VNET_MAC_EVENT_MOVED = 1  # the entry now has another address (OLD_ADDR is the one it had)
VNET_MAC_EVENT_EXPIRED = 2  # swept, not refreshed for the entry lifetime
VNET_MAC_EVENT_REMOVED = 3  # taken out because the MAC lives elsewhere now, or by a command

# enum vnet_mac_tables - The (vnet, MAC) tables of a namespace.
VNET_MAC_TABLE_VARP = 0  # the VARP cache, remote MACs by care-of address
VNET_MAC_TABLE_VIFS = 1  # the vif table, local MACs by attachment

# enum vnet_capture_direction - Which way an endpoint's frame went (VNET_CMD_ENDPOINT_FRAME).
VNET_CAPTURE_DIRECTION_IN = 0  # from the endpoint's VM into the vnet
VNET_CAPTURE_DIRECTION_OUT = 1  # from the vnet out to the endpoint's VM

# enum vnet_cmd
VNET_CMD_UNSPEC = 0
VNET_CMD_VNET_ADD = 1
VNET_CMD_VNET_DEL = 2
VNET_CMD_VNET_GET = 3
VNET_CMD_VIF_ADD = 4
VNET_CMD_VIF_DEL = 5
VNET_CMD_VIF_GET = 6
VNET_CMD_PEER_ADD = 7
VNET_CMD_PEER_DEL = 8
VNET_CMD_PEER_GET = 9
VNET_CMD_VARP_GET = 10
VNET_CMD_VARP_FLUSH = 11
VNET_CMD_SET = 12
VNET_CMD_GET = 13
VNET_CMD_KEYS_SET = 14
VNET_CMD_PORT_ADD = 15
VNET_CMD_PORT_DEL = 16
VNET_CMD_PORT_GET = 17
VNET_CMD_ENDPOINT_ADD = 18
VNET_CMD_ENDPOINT_DEL = 19
VNET_CMD_ENDPOINT_GET = 20
VNET_CMD_MAC_EVENT = 21
VNET_CMD_ENDPOINT_FRAME = 22
VNET_CMD_PORT_SET = 23

# multicast groups, by name
VNET_MCGRP_MONITOR = "monitor"
VNET_MCGRP_CAPTURE = "capture"


class vnetmsg(genlmsg):
    """A message of family "vnet": every attribute of enum vnet_attr, in its order.

    No `prefix`: with one, pyroute2's msg.get("header") would find VNET_A_HEADER
    instead of the netlink header, and its receive loop breaks on a vnet dump."""

    nla_map = (
        ("VNET_A_UNSPEC", "none"),
        ("VNET_A_ID", "cdata"),  # binary, 16 bytes, network order
        ("VNET_A_IFNAME", "asciiz"),  # string, the device's name
        ("VNET_A_IFINDEX", "uint32"),  # u32
        ("VNET_A_ENCAP", "uint8"),  # u8, enum vnet_encap
        ("VNET_A_SECURITY", "uint8"),  # u8, enum vnet_security
        ("VNET_A_HEADER", "uint32"),  # u32, encapsulation header bytes
        ("VNET_A_MTU", "uint32"),  # u32, MIN_MTU..MAX_MTU, checked by VNET_ADD itself: the range of a u32 policy does not hold 65000 on every kernel the module builds for
        ("VNET_A_MAC", "cdata"),  # binary, 6 bytes
        ("VNET_A_ADDR", "ip4addr"),  # be32, IPv4 address
        ("VNET_A_PORT", "uint16"),  # u16, host order
        ("VNET_A_AGE_MS", "uint64"),  # u64, milliseconds since last refresh
        ("VNET_A_RX_PACKETS", "uint64"),  # u64
        ("VNET_A_TX_PACKETS", "uint64"),  # u64
        ("VNET_A_RX_BYTES", "uint64"),  # u64
        ("VNET_A_TX_BYTES", "uint64"),  # u64
        ("VNET_A_RX_DROPPED", "uint64"),  # u64
        ("VNET_A_TX_DROPPED", "uint64"),  # u64
        ("VNET_A_MCADDR", "ip4addr"),  # be32, multicast group
        ("VNET_A_TTL", "uint32"),  # u32, entry lifetime in seconds
        ("VNET_A_SWEEPS", "uint64"),  # u64, table sweeps so far
        ("VNET_A_COUNTERS", "stats"),  # nest of VNET_A_STAT, names of enum counter
        ("VNET_A_DROPS", "stats"),  # nest of VNET_A_STAT, names of enum drop
        ("VNET_A_STAT", "stat"),  # nest: VNET_A_STAT_NAME, VNET_A_STAT_VALUE
        ("VNET_A_STAT_NAME", "asciiz"),  # string, e.g. "unknown-vnet"
        ("VNET_A_STAT_VALUE", "uint64"),  # u64
        ("VNET_A_PAD", "none"),
        ("VNET_A_KEYS", "keys"),  # nest of VNET_A_KEY, send key first
        ("VNET_A_KEY", "key"),  # nest: VNET_A_KEY_ID, VNET_A_KEY_SECRET
        ("VNET_A_KEY_ID", "uint8"),  # u8
        ("VNET_A_KEY_SECRET", "cdata"),  # binary, 32 bytes, never dumped
        ("VNET_A_VARP_ENTRIES", "uint32"),  # u32, entries in the VARP cache (of the namespace, or of one vnet)
        ("VNET_A_VIF_ENTRIES", "uint32"),  # u32, entries in the vif table (of the namespace, or of one vnet)
        ("VNET_A_VARP_LONGEST_CHAIN", "uint32"),  # u32, entries in the VARP cache's longest hash bucket
        ("VNET_A_VIF_LONGEST_CHAIN", "uint32"),  # u32, entries in the vif table's longest hash bucket
        ("VNET_A_PORT_STATE", "uint8"),  # u8, enum vnet_port_state
        ("VNET_A_PORTS", "uint32"),  # u32, ports of a vnet, attached or waiting
        ("VNET_A_MAC_EVENT", "uint8"),  # u8, enum vnet_mac_event
        ("VNET_A_MAC_TABLE", "uint8"),  # u8, enum vnet_mac_tables
        ("VNET_A_OLD_ADDR", "ip4addr"),  # be32, IPv4 address a MAC had before it moved
        ("VNET_A_ENDPOINT_KIND", "uint8"),  # u8, enum vnet_endpoint_kind
        ("VNET_A_ENDPOINT_STATE", "uint8"),  # u8, enum vnet_endpoint_state
        ("VNET_A_REMOTE_ADDR", "ip4addr"),  # be32, the address an endpoint sends or connects to
        ("VNET_A_REMOTE_PORT", "uint16"),  # u16, host order
        ("VNET_A_CAPTURE_DIRECTION", "uint8"),  # u8, enum vnet_capture_direction
        ("VNET_A_FRAME", "cdata"),  # binary, an Ethernet frame, whole
        ("VNET_A_TIME_NS", "uint64"),  # u64, when the frame was seen, in nanoseconds since the epoch (CLOCK_REALTIME)
        ("VNET_A_GROUP", "ip4addr"),  # be32, a vnet's own multicast group for its floods and VARP messages, or absent: the namespace's shared group (MCADDR)
        ("VNET_A_LINK_SUSPENDED", "uint8"),  # u8, 1 if the port is suspended (no frame in or out), 0 or absent if not
        ("VNET_A_LINK_LOSS", "uint32"),  # u32, link control: frames sent out of the port dropped, in millionths (1000000 is all of them), 0 or absent for none
        ("VNET_A_LINK_CORRUPT", "uint32"),  # u32, link control: frames sent out of the port with one random bit flipped, in millionths, 0 or absent for none
        ("VNET_A_LINK_DELAY", "uint32"),  # u32, link control: microseconds each frame sent out of the port waits, up to 60000000 (a minute)
        ("VNET_A_LINK_JITTER", "uint32"),  # u32, link control: microseconds, up to 60000000; each frame waits a time drawn uniformly from [delay - jitter, delay + jitter], at least 0
        ("VNET_A_LINK_RATE", "uint64"),  # u64, link control: bits per second the port sends at most, 8000 to 100000000000, 0 or absent for no limit
    )

    class stats(nla):
        """VNET_A_COUNTERS / VNET_A_DROPS: the non-zero statistics, by name."""

        nla_flags = NLA_F_NESTED
        nla_map = (
            (23, "VNET_A_STAT", "stat"),
        )

    class stat(nla):
        """VNET_A_STAT: one named statistic."""

        nla_flags = NLA_F_NESTED
        nla_map = (
            (24, "VNET_A_STAT_NAME", "asciiz"),
            (25, "VNET_A_STAT_VALUE", "uint64"),
        )

    class keys(nla):
        """VNET_A_KEYS: one or two VNET_A_KEY nests, the send key first."""

        nla_flags = NLA_F_NESTED
        nla_map = (
            (28, "VNET_A_KEY", "key"),
        )

    class key(nla):
        """VNET_A_KEY: a key id and, towards the module only, its secret."""

        nla_flags = NLA_F_NESTED
        nla_map = (
            (29, "VNET_A_KEY_ID", "uint8"),
            (30, "VNET_A_KEY_SECRET", "cdata"),
        )


# pyroute2 finds a nest's attribute classes on the nest's own class.
vnetmsg.stats.stat = vnetmsg.stat
vnetmsg.keys.key = vnetmsg.key
