"""The counters and drop reasons a datapath reports in `vn stats`: one registry for both.

The names are what users read and scripts match, so vnetd and the kernel module must
use the same strings for the same event.  Both take them from here: vnetd counts into
lists indexed by the constants below, and the module's `enum vnet_counter`,
`enum vnet_drop` and their name tables are the same lists in the same order
(tests/unit/test_stats.py compares them).  A reason only one datapath can meet (a tap
read error in vnetd, an allocation failure in the module) is still listed once.
"""
from __future__ import annotations

#: Counters of normal work, in the module's `enum vnet_counter` order.
COUNTERS: tuple[str, ...] = (
    "floods",
    "unknown-unicast-floods",
    "announces-sent",
    "announces-received",
    "varp-requests",
    "forwards-received",
    "udp-received",
    "etherip-received",
)

#: Why a packet was dropped, in the module's `enum vnet_drop` order.
DROPS: tuple[str, ...] = (
    "short",
    "bad-message-id",
    "bad-version",
    "unknown-vnet",
    "bad-source-mac",
    "not-a-peer",
    "bad-forward",
    "own-packet",
    "duplicate",
    "hop-limit",
    "other-group",
    "send-error",
    "no-route",
    "bad-family",
    "bad-opcode",
    "no-memory",
    "oversize",
    "unprotected",
    "security-mismatch",
    "unknown-key",
    "replay",
    "bad-tag",
    "bad-seal",
    "recv-error",
    "tap-read-error",
    "tap-write-error",
    "tap-runt",
)

(C_FLOODS, C_UNKNOWN_UNICAST_FLOODS, C_ANNOUNCES_SENT, C_ANNOUNCES_RECEIVED, C_VARP_REQUESTS,
 C_FORWARDS_RECEIVED, C_UDP_RECEIVED, C_ETHERIP_RECEIVED) = range(len(COUNTERS))

(D_SHORT, D_BAD_MESSAGE_ID, D_BAD_VERSION, D_UNKNOWN_VNET, D_BAD_SOURCE_MAC, D_NOT_A_PEER,
 D_BAD_FORWARD, D_OWN_PACKET, D_DUPLICATE, D_HOP_LIMIT, D_OTHER_GROUP, D_SEND_ERROR, D_NO_ROUTE,
 D_BAD_FAMILY, D_BAD_OPCODE, D_NO_MEMORY, D_OVERSIZE, D_UNPROTECTED, D_SECURITY_MISMATCH,
 D_UNKNOWN_KEY, D_REPLAY, D_BAD_TAG, D_BAD_SEAL, D_RECV_ERROR, D_TAP_READ_ERROR, D_TAP_WRITE_ERROR,
 D_TAP_RUNT) = range(len(DROPS))


def named(names: tuple[str, ...], counts: list[int]) -> dict[str, int]:
    """The counts that are not 0, by name: what `vn stats` lists (the module leaves
    out zeros too)."""
    return {name: n for name, n in zip(names, counts) if n}
