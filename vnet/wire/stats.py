# Generated from kmod/vnet.yaml by python -m tools.genl; do not edit.
"""The counters and drop reasons a datapath reports in `vn stats`: one registry for both.

The names are what users read and scripts match, so vnetd and the kernel module must
use the same strings for the same event.  Both take them from the `counter` and `drop`
enums of kmod/vnet.yaml: vnetd counts into lists indexed by the constants below, the
module into arrays indexed by `enum vnet_counter` and `enum vnet_drop`, whose name
tables (kmod/netlink_gen.c) hold these strings in this order (tests/unit/test_stats.py
compares them).  A reason only one datapath can meet (a tap read error in vnetd, an
allocation failure in the module) is still listed once.
"""
from __future__ import annotations

#: Counters of normal work, per namespace, in the module's `enum vnet_counter` order.
COUNTERS: tuple[str, ...] = (
    "floods",  # frames sent to the group (broadcast, multicast, unknown unicast)
    "unknown-unicast-floods",  # unicast frames flooded because the destination MAC was not cached
    "announces-sent",  # VARP announces sent (replies and gratuitous)
    "announces-received",  # VARP announces applied to the cache
    "varp-requests",  # VARP requests received
    "forwards-received",  # VFWD packets that passed every check
    "udp-received",  # UDP packets accepted from another host
    "etherip-received",  # raw protocol-97 packets accepted from another host
    "capture-lost",  # module only: endpoint frames a capture missed (no memory for their message)
    "challenges-sent",  # challenges sent to a host whose session this host has not confirmed
    "answers-sent",  # answers sent to a host that challenged this one
    "sessions-confirmed",  # answers that confirmed another host's session
)

#: Why a packet was dropped, per namespace (doc/wire-format.md and doc/security.md give the checks
#: in order), in the module's `enum vnet_drop` order.
DROPS: tuple[str, ...] = (
    "short",  # shorter than its headers
    "bad-message-id",  # an unknown vnet message id, or VFWD where it is not accepted
    "bad-version",  # an EtherIP version word that is not accepted
    "unknown-vnet",  # names a vnet this host does not have
    "bad-source-mac",  # a frame with a multicast source MAC
    "not-a-peer",  # VFWD from a host that is not a peer
    "bad-forward",  # a malformed VFWD
    "own-packet",  # a packet of ours come back, or a message naming this host as its sender
    "bad-sender",  # a message naming as its sender an address no host can have
    "duplicate",  # a multicast packet seen again (loop protection)
    "hop-limit",  # a VFWD delivered here but not re-sent (inner TTL 1 or less)
    "other-group",  # a VFWD re-sent to a group other than ours
    "send-error",  # sending failed
    "no-route",  # no route to the destination
    "bad-family",  # a VARP announce of an address family other than IPv4
    "bad-opcode",  # a VARP message that is neither request nor announce
    "no-memory",  # an allocation failed
    "oversize",  # larger than the vnet's MTU allows, or too long to relay to a peer
    "unprotected",  # a plain packet for a secure vnet
    "security-mismatch",  # a sealed message whose level is not its vnet's
    "unknown-key",  # a sealed message under a key id the vnet does not hold
    "replay",  # a sealed message too old or seen before
    "bad-tag",  # a sealed message whose tag does not verify
    "bad-seal",  # a sealed message whose body is malformed
    "old-seal",  # a sealed message of the old format (message id 4), from a host not upgraded
    "unconfirmed",  # a sealed message from a session this host has not confirmed (yet)
    "bad-answer",  # an answer to no challenge of this host's
    "table-full",  # a MAC not learned: its vnet's share of the VARP cache or vif table is full
    "recv-error",  # vnetd only: a socket read failed
    "tap-read-error",  # vnetd only: a tap read failed
    "tap-write-error",  # a write to a port failed (vnetd: its tap), or a frame waiting in a port's link control queue was lost because the port or its interface went away
    "tap-runt",  # vnetd only: a tap gave less than a header
    "pause-frame",  # an 802.3x pause frame from a port (a switch does not forward them)
    "link-suspended",  # a frame from or for a suspended port (vn port-set --suspend)
    "link-loss",  # a frame for a port dropped by its link control's loss
    "link-rate",  # a frame for a port beyond its rate limit (it would wait more than 100 ms behind the frames before it) or, on the module, beyond the 1000 frames a port's link control queue holds
)

C_FLOODS = 0
C_UNKNOWN_UNICAST_FLOODS = 1
C_ANNOUNCES_SENT = 2
C_ANNOUNCES_RECEIVED = 3
C_VARP_REQUESTS = 4
C_FORWARDS_RECEIVED = 5
C_UDP_RECEIVED = 6
C_ETHERIP_RECEIVED = 7
C_CAPTURE_LOST = 8
C_CHALLENGES_SENT = 9
C_ANSWERS_SENT = 10
C_SESSIONS_CONFIRMED = 11

D_SHORT = 0
D_BAD_MESSAGE_ID = 1
D_BAD_VERSION = 2
D_UNKNOWN_VNET = 3
D_BAD_SOURCE_MAC = 4
D_NOT_A_PEER = 5
D_BAD_FORWARD = 6
D_OWN_PACKET = 7
D_BAD_SENDER = 8
D_DUPLICATE = 9
D_HOP_LIMIT = 10
D_OTHER_GROUP = 11
D_SEND_ERROR = 12
D_NO_ROUTE = 13
D_BAD_FAMILY = 14
D_BAD_OPCODE = 15
D_NO_MEMORY = 16
D_OVERSIZE = 17
D_UNPROTECTED = 18
D_SECURITY_MISMATCH = 19
D_UNKNOWN_KEY = 20
D_REPLAY = 21
D_BAD_TAG = 22
D_BAD_SEAL = 23
D_OLD_SEAL = 24
D_UNCONFIRMED = 25
D_BAD_ANSWER = 26
D_TABLE_FULL = 27
D_RECV_ERROR = 28
D_TAP_READ_ERROR = 29
D_TAP_WRITE_ERROR = 30
D_TAP_RUNT = 31
D_PAUSE_FRAME = 32
D_LINK_SUSPENDED = 33
D_LINK_LOSS = 34
D_LINK_RATE = 35


def named(names: tuple[str, ...], counts: list[int]) -> dict[str, int]:
    """The counts that are not 0, by name: what `vn stats` lists (the module leaves
    out zeros too)."""
    return {name: n for name, n in zip(names, counts) if n}
