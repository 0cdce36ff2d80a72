/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * Generic netlink interface of the vnet module: family "vnet", version 1.
 *
 * Every command acts on the network namespace of the netlink socket that
 * sends it.  Add/delete/set commands need CAP_NET_ADMIN in that namespace.
 *
 * VNET_CMD_VNET_ADD    ID, IFNAME, ENCAP, SECURITY (optional, 0 = none),
 *                      KEYS (required with SECURITY auth or conf, refused
 *                      without)
 * VNET_CMD_VNET_DEL    ID
 * VNET_CMD_VNET_GET    dump; each reply: ID, IFNAME, IFINDEX, ENCAP,
 *                      SECURITY, HEADER, MTU, RX_PACKETS, TX_PACKETS,
 *                      RX_BYTES, TX_BYTES, RX_DROPPED, TX_DROPPED, and
 *                      for a secure vnet KEYS (key ids only, send key first)
 * VNET_CMD_VIF_ADD     ID, MAC
 * VNET_CMD_VIF_DEL     ID, MAC
 * VNET_CMD_VIF_GET     dump; each reply: ID, MAC, AGE_MS
 * VNET_CMD_PEER_ADD    ADDR, PORT (optional, default 1798)
 * VNET_CMD_PEER_DEL    ADDR
 * VNET_CMD_PEER_GET    dump; each reply: ADDR, PORT, TX_PACKETS, RX_PACKETS
 * VNET_CMD_VARP_GET    dump; each reply: ID, MAC, ADDR, AGE_MS
 * VNET_CMD_VARP_FLUSH  no attributes
 * VNET_CMD_SET         MCADDR and/or ADDR (the underlay address, which
 *                      must be an address of this namespace)
 * VNET_CMD_GET         reply: MCADDR, PORT, TTL, SWEEPS, and when an underlay
 *                      address is set ADDR, IFNAME, IFINDEX; COUNTERS and
 *                      DROPS, each a nest of STAT nests (STAT_NAME, STAT_VALUE)
 * VNET_CMD_KEYS_SET    ID, KEYS: replaces the keys of a secure vnet at once
 *
 * KEYS is a nest of one or two KEY nests, each with KEY_ID and KEY_SECRET
 * (32 bytes, ChaCha20-Poly1305), with distinct ids.  The first is the send
 * key; every key is accepted on receive.  Secrets are never sent back.
 *
 * Errors are negative errnos with an extended-ack message.
 */
#ifndef _UAPI_VNET_GENL_H
#define _UAPI_VNET_GENL_H

#define VNET_GENL_NAME		"vnet"
#define VNET_GENL_VERSION	1

#define VNET_ID_LEN		16
#define VNET_PORT		1798
#define VNET_KEY_LEN		32
#define VNET_MAX_KEYS		2

enum vnet_encap {
	VNET_ENCAP_UDP,		/* EtherIP in UDP, port 1798 */
	VNET_ENCAP_ETHERIP,	/* raw EtherIP, IP protocol 97 */
};

enum vnet_security {
	VNET_SECURITY_NONE,
	VNET_SECURITY_AUTH,
	VNET_SECURITY_CONF,
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
	__VNET_CMD_MAX
};

#define VNET_CMD_MAX (__VNET_CMD_MAX - 1)

enum vnet_attr {
	VNET_A_UNSPEC,
	VNET_A_ID,		/* binary, 16 bytes, network order */
	VNET_A_IFNAME,		/* NUL-terminated string */
	VNET_A_IFINDEX,		/* u32 */
	VNET_A_ENCAP,		/* u8, enum vnet_encap */
	VNET_A_SECURITY,	/* u8, enum vnet_security */
	VNET_A_HEADER,		/* u32, encapsulation header bytes */
	VNET_A_MTU,		/* u32 */
	VNET_A_MAC,		/* binary, 6 bytes */
	VNET_A_ADDR,		/* be32, IPv4 address */
	VNET_A_PORT,		/* u16, host order */
	VNET_A_AGE_MS,		/* u64, milliseconds since last refresh */
	VNET_A_RX_PACKETS,	/* u64 */
	VNET_A_TX_PACKETS,	/* u64 */
	VNET_A_RX_BYTES,	/* u64 */
	VNET_A_TX_BYTES,	/* u64 */
	VNET_A_RX_DROPPED,	/* u64 */
	VNET_A_TX_DROPPED,	/* u64 */
	VNET_A_MCADDR,		/* be32, multicast group */
	VNET_A_TTL,		/* u32, entry lifetime in seconds */
	VNET_A_SWEEPS,		/* u64, table sweeps so far */
	VNET_A_COUNTERS,	/* nest of VNET_A_STAT */
	VNET_A_DROPS,		/* nest of VNET_A_STAT */
	VNET_A_STAT,		/* nest: VNET_A_STAT_NAME, VNET_A_STAT_VALUE */
	VNET_A_STAT_NAME,	/* string, e.g. "unknown-vnet" */
	VNET_A_STAT_VALUE,	/* u64 */
	VNET_A_PAD,
	VNET_A_KEYS,		/* nest of VNET_A_KEY, send key first */
	VNET_A_KEY,		/* nest: VNET_A_KEY_ID, VNET_A_KEY_SECRET */
	VNET_A_KEY_ID,		/* u8 */
	VNET_A_KEY_SECRET,	/* binary, VNET_KEY_LEN bytes; never dumped */
	__VNET_A_MAX
};

#define VNET_A_MAX (__VNET_A_MAX - 1)

#endif /* _UAPI_VNET_GENL_H */
