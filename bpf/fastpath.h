/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The maps vnetd shares with the fast path (fastpath.bpf.c), in the layout
 * vnet/datapath/fastpath/maps.py packs: every field little-endian as on the
 * host, except addresses and ports, which stay in network order as on the wire.
 * A change here is a change there.
 */
#ifndef VNET_FASTPATH_H
#define VNET_FASTPATH_H

#include <linux/types.h>

#define VNET_ID_LEN		16
/* One entry per vnet served by the fast path, and per MAC of them. */
#define FP_MAX_VNETS		1024
#define FP_MAX_MACS		65536

/* cfg.csum: what becomes of a frame whose inner checksum is left partial. */
enum {
	FP_CSUM_LEAVE = 0,	/* the underlay device completes it (a NIC)   */
	FP_CSUM_COMPLETE = 1,	/* nothing will (a veth): complete it here   */
	FP_CSUM_SLOW = 2,	/* cannot tell: such frames go to vnetd       */
};

/* remote.flags */
#define FP_REMOTE_SUPER		1	/* the host takes super-frames */

/* What vnetd says of this host; one entry.  addr 0: the fast path is idle. */
struct fp_config {
	__be32 addr;		/* our underlay address */
	__u32 ifindex;		/* the underlay device decap runs on */
	__be16 port;		/* UDP port, 1798 */
	__u8 ttl;		/* outer TTL of unicast, 64 */
	__u8 csum;		/* FP_CSUM_* */
	__u32 super_max;	/* longest super-frame sent (netdev.SUPER_FRAME_MAX) */
	/* vnetd renews this every sweep: a vnetd killed leaves its filter on the
	 * underlay, which hands packets on to the host's stack once this passed.
	 */
	__u64 alive_until;	/* ns, monotonic */
};

/* A vnet's tap, by its ifindex (encapsulation) ... */
struct fp_tap {
	__u8 vid[VNET_ID_LEN];
	__u32 slot;		/* index into the stats map */
};

/* ... and the same vnet by its id (decapsulation). */
struct fp_vnet {
	__u32 tap_ifindex;
	__u32 slot;
};

/* (vnet, MAC): the key of the remote and local tables. */
struct fp_mac_key {
	__u8 vid[VNET_ID_LEN];
	__u8 mac[6];
	__u8 pad[2];		/* zero */
};

/* Where a remote MAC lives, and when a frame from it last came (ns, monotonic). */
struct fp_remote {
	__be32 addr;
	__u32 flags;		/* FP_REMOTE_* */
	__u64 seen;
};

/* A local MAC, and when a frame from it last left (ns, monotonic). */
struct fp_local {
	__u64 seen;
};

/* Per vnet slot, per CPU: what took the fast path. */
struct fp_stats {
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 rx_bytes;
};

#endif /* VNET_FASTPATH_H */
