/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/* Generated from kmod/vnet.yaml by python -m tools.genl; do not edit. */
/*
 * Generic netlink interface of the vnet module: family "vnet", version 1.
 *
 * Every command acts on the network namespace of the netlink socket that sends
 * it, and needs CAP_NET_ADMIN in that namespace. Requests are validated
 * strictly before a command runs: an unknown attribute, a wrong length or an
 * out-of-range value is refused with EINVAL.
 *
 * KEYS is a nest of one or two KEY nests, each with KEY_ID and KEY_SECRET (32
 * bytes, ChaCha20-Poly1305), with distinct ids. The first is the send key;
 * every key is accepted on receive. Secrets are never sent back.
 *
 * Errors are negative errnos with an extended-ack message that says what is
 * wrong ("vnet does not exist", "not a peer", ...).
 *
 * The commands (kmod/vnet.yaml documents each, with its errors):
 *
 * VNET_CMD_VNET_ADD        ID, IFNAME, ENCAP, SECURITY, KEYS, MTU, GROUP
 * VNET_CMD_VNET_DEL        ID
 * VNET_CMD_VNET_GET        dump; each reply: ID, IFNAME, IFINDEX, ENCAP,
 *                          SECURITY, HEADER, KEYS, MTU, GROUP, RX_PACKETS,
 *                          TX_PACKETS, RX_BYTES, TX_BYTES, RX_DROPPED,
 *                          TX_DROPPED, VARP_ENTRIES, VIF_ENTRIES, PORTS
 * VNET_CMD_VIF_ADD         ID, MAC
 * VNET_CMD_VIF_DEL         ID, MAC
 * VNET_CMD_VIF_GET         dump; each reply: ID, MAC, AGE_MS
 * VNET_CMD_PEER_ADD        ADDR, PORT
 * VNET_CMD_PEER_DEL        ADDR
 * VNET_CMD_PEER_GET        dump; each reply: ADDR, PORT, TX_PACKETS,
 *                          RX_PACKETS
 * VNET_CMD_VARP_GET        dump; each reply: ID, MAC, ADDR, AGE_MS
 * VNET_CMD_VARP_FLUSH      no attributes
 * VNET_CMD_SET             MCADDR, ADDR
 * VNET_CMD_GET             reply: MCADDR, PORT, TTL, SWEEPS, ADDR, IFINDEX,
 *                          IFNAME, COUNTERS, DROPS, VARP_ENTRIES, VIF_ENTRIES,
 *                          VARP_LONGEST_CHAIN, VIF_LONGEST_CHAIN
 * VNET_CMD_KEYS_SET        ID, KEYS
 * VNET_CMD_PORT_ADD        ID, IFNAME
 * VNET_CMD_PORT_DEL        ID, IFNAME
 * VNET_CMD_PORT_GET        dump; each reply: ID, IFNAME, PORT_STATE, IFINDEX,
 *                          RX_PACKETS, TX_PACKETS, RX_BYTES, TX_BYTES,
 *                          LINK_SUSPENDED, LINK_LOSS, LINK_CORRUPT,
 *                          LINK_DELAY, LINK_JITTER, LINK_RATE
 * VNET_CMD_ENDPOINT_ADD    ID, ENDPOINT_KIND, ADDR, PORT, REMOTE_ADDR,
 *                          REMOTE_PORT
 * VNET_CMD_ENDPOINT_DEL    ID, ENDPOINT_KIND, ADDR, PORT, REMOTE_ADDR,
 *                          REMOTE_PORT
 * VNET_CMD_ENDPOINT_GET    dump; each reply: ID, ENDPOINT_KIND, ADDR, PORT,
 *                          REMOTE_ADDR, REMOTE_PORT, ENDPOINT_STATE, COUNTERS
 * VNET_CMD_MAC_EVENT       event on group "monitor": ID, MAC, MAC_EVENT,
 *                          MAC_TABLE, ADDR, OLD_ADDR
 * VNET_CMD_ENDPOINT_FRAME  event on group "capture": ID, ENDPOINT_KIND, ADDR,
 *                          PORT, REMOTE_ADDR, REMOTE_PORT, CAPTURE_DIRECTION,
 *                          TIME_NS, FRAME
 * VNET_CMD_PORT_SET        ID, IFNAME, LINK_SUSPENDED, LINK_LOSS,
 *                          LINK_CORRUPT, LINK_DELAY, LINK_JITTER, LINK_RATE
 */
#ifndef _UAPI_VNET_GENL_H
#define _UAPI_VNET_GENL_H

#define VNET_GENL_NAME		"vnet"
#define VNET_GENL_VERSION	1

#define VNET_MCGRP_MONITOR	"monitor"
#define VNET_MCGRP_CAPTURE	"capture"

/* Bytes of a vnet id (128 bits, network order). */
#define VNET_ID_LEN		16

/* The UDP port of vnet traffic, and the default port of a peer. */
#define VNET_PORT		1798

/* Bytes of a key secret (a ChaCha20-Poly1305 key). */
#define VNET_KEY_LEN		32

/* Keys of a secure vnet at most (the send key and one more on receive). */
#define VNET_MAX_KEYS		2

/*
 * Peers of a host (a network namespace) at most, in the module and in vnetd:
 * every broadcast frame is copied to each peer.
 */
#define VNET_MAX_PEERS		256

/*
 * MACs one vnet may hold in the VARP cache, and in the vif table, of a
 * namespace (the module) or of a vnetd; past it that vnet learns no new MAC
 * (drop reason table-full).
 */
#define VNET_MAX_VNET_MACS	4096

/*
 * MACs of all plain vnets together in the VARP cache, and in the vif table, of
 * a namespace (or a vnetd); secure vnets are held to max-vnet-macs only.
 */
#define VNET_MAX_TABLE_MACS	65536

/*
 * Multicast groups the module's socket of a namespace joins at most: the shared
 * one and those of vnets with a group of their own. The kernel's
 * net.ipv4.igmp_max_memberships (20 by default) may be lower.
 */
#define VNET_MAX_GROUPS		32

/* The smallest MTU a vnet may have (IPv4's minimum). */
#define VNET_MIN_MTU		68

/*
 * The largest MTU a vnet may have: a frame and its encapsulation still fit one
 * IPv4 packet, fragmented on the way.
 */
#define VNET_MAX_MTU		65000

/* How a vnet carries its frames. */
enum vnet_encap {
	VNET_ENCAP_UDP,		/* EtherIP in UDP, port 1798 */
	VNET_ENCAP_ETHERIP,	/* raw EtherIP, IP protocol 97 */
};

/* Whether a port has its interface. */
enum vnet_port_state {
	/*
	 * no interface of that name in the namespace now, or one that cannot be
	 * attached
	 */
	VNET_PORT_STATE_WAITING,
	/* attached to the interface of that name */
	VNET_PORT_STATE_ATTACHED,
};

/* What a socket endpoint speaks, and which side connects (doc/endpoints.md). */
enum vnet_endpoint_kind {
	/*
	 * one frame a datagram; bound to ADDR:PORT, sends to
	 * REMOTE_ADDR:REMOTE_PORT
	 */
	VNET_ENDPOINT_KIND_UDP,
	/* listens on ADDR:PORT; the VM's QEMU connects */
	VNET_ENDPOINT_KIND_TCP_LISTEN,
	/*
	 * connects to REMOTE_ADDR:REMOTE_PORT, again and again; the VM's QEMU
	 * listens
	 */
	VNET_ENDPOINT_KIND_TCP_CONNECT,
};

/* Whether an endpoint carries frames now. */
enum vnet_endpoint_state {
	/* bound (udp), or a connection is up (tcp) */
	VNET_ENDPOINT_STATE_CONNECTED,
	/* tcp-listen with no client now */
	VNET_ENDPOINT_STATE_LISTENING,
	/* tcp-connect between attempts */
	VNET_ENDPOINT_STATE_WAITING,
};

/* What a vnet's sealed messages protect (doc/security.md). */
enum vnet_security {
	VNET_SECURITY_NONE,	/* plain packets, no keys */
	VNET_SECURITY_AUTH,	/* sealed, authenticated */
	VNET_SECURITY_CONF,	/* sealed, authenticated and encrypted */
};

/* What happened to a MAC in a table (VNET_CMD_MAC_EVENT). */
enum vnet_mac_event {
	/* a new entry */
	VNET_MAC_EVENT_LEARNED,
	/* the entry now has another address (OLD_ADDR is the one it had) */
	VNET_MAC_EVENT_MOVED,
	/* swept, not refreshed for the entry lifetime */
	VNET_MAC_EVENT_EXPIRED,
	/* taken out because the MAC lives elsewhere now, or by a command */
	VNET_MAC_EVENT_REMOVED,
};

/* The (vnet, MAC) tables of a namespace. */
enum vnet_mac_tables {
	/* the VARP cache, remote MACs by care-of address */
	VNET_MAC_TABLE_VARP,
	/* the vif table, local MACs by attachment */
	VNET_MAC_TABLE_VIFS,
};

/* Which way an endpoint's frame went (VNET_CMD_ENDPOINT_FRAME). */
enum vnet_capture_direction {
	/* from the endpoint's VM into the vnet */
	VNET_CAPTURE_DIRECTION_IN,
	/* from the vnet out to the endpoint's VM */
	VNET_CAPTURE_DIRECTION_OUT,
};

enum vnet_cmd {
	VNET_CMD_UNSPEC,
	VNET_CMD_VNET_ADD,
	VNET_CMD_VNET_DEL,
	VNET_CMD_VNET_GET,
	VNET_CMD_VIF_ADD,
	VNET_CMD_VIF_DEL,
	VNET_CMD_VIF_GET,
	VNET_CMD_PEER_ADD,
	VNET_CMD_PEER_DEL,
	VNET_CMD_PEER_GET,
	VNET_CMD_VARP_GET,
	VNET_CMD_VARP_FLUSH,
	VNET_CMD_SET,
	VNET_CMD_GET,
	VNET_CMD_KEYS_SET,
	VNET_CMD_PORT_ADD,
	VNET_CMD_PORT_DEL,
	VNET_CMD_PORT_GET,
	VNET_CMD_ENDPOINT_ADD,
	VNET_CMD_ENDPOINT_DEL,
	VNET_CMD_ENDPOINT_GET,
	VNET_CMD_MAC_EVENT,
	VNET_CMD_ENDPOINT_FRAME,
	VNET_CMD_PORT_SET,
	__VNET_CMD_MAX
};

#define VNET_CMD_MAX (__VNET_CMD_MAX - 1)

enum vnet_attr {
	VNET_A_UNSPEC,
	/* binary, 16 bytes, network order */
	VNET_A_ID,
	/* string, the device's name */
	VNET_A_IFNAME,
	/* u32 */
	VNET_A_IFINDEX,
	/* u8, enum vnet_encap */
	VNET_A_ENCAP,
	/* u8, enum vnet_security */
	VNET_A_SECURITY,
	/* u32, encapsulation header bytes */
	VNET_A_HEADER,
	/*
	 * u32, MIN_MTU..MAX_MTU, checked by VNET_ADD itself: the range of a u32
	 * policy does not hold 65000 on every kernel the module builds for
	 */
	VNET_A_MTU,
	/* binary, 6 bytes */
	VNET_A_MAC,
	/* be32, IPv4 address */
	VNET_A_ADDR,
	/* u16, host order */
	VNET_A_PORT,
	/* u64, milliseconds since last refresh */
	VNET_A_AGE_MS,
	/* u64 */
	VNET_A_RX_PACKETS,
	/* u64 */
	VNET_A_TX_PACKETS,
	/* u64 */
	VNET_A_RX_BYTES,
	/* u64 */
	VNET_A_TX_BYTES,
	/* u64 */
	VNET_A_RX_DROPPED,
	/* u64 */
	VNET_A_TX_DROPPED,
	/* be32, multicast group */
	VNET_A_MCADDR,
	/* u32, entry lifetime in seconds */
	VNET_A_TTL,
	/* u64, table sweeps so far */
	VNET_A_SWEEPS,
	/* nest of VNET_A_STAT, names of enum counter */
	VNET_A_COUNTERS,
	/* nest of VNET_A_STAT, names of enum drop */
	VNET_A_DROPS,
	/* nest: VNET_A_STAT_NAME, VNET_A_STAT_VALUE */
	VNET_A_STAT,
	/* string, e.g. "unknown-vnet" */
	VNET_A_STAT_NAME,
	/* u64 */
	VNET_A_STAT_VALUE,
	VNET_A_PAD,
	/* nest of VNET_A_KEY, send key first */
	VNET_A_KEYS,
	/* nest: VNET_A_KEY_ID, VNET_A_KEY_SECRET */
	VNET_A_KEY,
	/* u8 */
	VNET_A_KEY_ID,
	/* binary, 32 bytes, never dumped */
	VNET_A_KEY_SECRET,
	/* u32, entries in the VARP cache (of the namespace, or of one vnet) */
	VNET_A_VARP_ENTRIES,
	/* u32, entries in the vif table (of the namespace, or of one vnet) */
	VNET_A_VIF_ENTRIES,
	/* u32, entries in the VARP cache's longest hash bucket */
	VNET_A_VARP_LONGEST_CHAIN,
	/* u32, entries in the vif table's longest hash bucket */
	VNET_A_VIF_LONGEST_CHAIN,
	/* u8, enum vnet_port_state */
	VNET_A_PORT_STATE,
	/* u32, ports of a vnet, attached or waiting */
	VNET_A_PORTS,
	/* u8, enum vnet_mac_event */
	VNET_A_MAC_EVENT,
	/* u8, enum vnet_mac_tables */
	VNET_A_MAC_TABLE,
	/* be32, IPv4 address a MAC had before it moved */
	VNET_A_OLD_ADDR,
	/* u8, enum vnet_endpoint_kind */
	VNET_A_ENDPOINT_KIND,
	/* u8, enum vnet_endpoint_state */
	VNET_A_ENDPOINT_STATE,
	/* be32, the address an endpoint sends or connects to */
	VNET_A_REMOTE_ADDR,
	/* u16, host order */
	VNET_A_REMOTE_PORT,
	/* u8, enum vnet_capture_direction */
	VNET_A_CAPTURE_DIRECTION,
	/* binary, an Ethernet frame, whole */
	VNET_A_FRAME,
	/*
	 * u64, when the frame was seen, in nanoseconds since the epoch
	 * (CLOCK_REALTIME)
	 */
	VNET_A_TIME_NS,
	/*
	 * be32, a vnet's own multicast group for its floods and VARP messages,
	 * or absent: the namespace's shared group (MCADDR)
	 */
	VNET_A_GROUP,
	/*
	 * u8, 1 if the port is suspended (no frame in or out), 0 or absent if
	 * not
	 */
	VNET_A_LINK_SUSPENDED,
	/*
	 * u32, link control: frames sent out of the port dropped, in millionths
	 * (1000000 is all of them), 0 or absent for none
	 */
	VNET_A_LINK_LOSS,
	/*
	 * u32, link control: frames sent out of the port with one random bit
	 * flipped, in millionths, 0 or absent for none
	 */
	VNET_A_LINK_CORRUPT,
	/*
	 * u32, link control: microseconds each frame sent out of the port
	 * waits, up to 60000000 (a minute)
	 */
	VNET_A_LINK_DELAY,
	/*
	 * u32, link control: microseconds, up to 60000000; each frame waits a
	 * time drawn uniformly from [delay - jitter, delay + jitter], at least
	 * 0
	 */
	VNET_A_LINK_JITTER,
	/*
	 * u64, link control: bits per second the port sends at most, 8000 to
	 * 100000000000, 0 or absent for no limit
	 */
	VNET_A_LINK_RATE,
	__VNET_A_MAX
};

#define VNET_A_MAX (__VNET_A_MAX - 1)

#endif /* _UAPI_VNET_GENL_H */
