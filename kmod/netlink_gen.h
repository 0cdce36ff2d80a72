/* SPDX-License-Identifier: GPL-2.0 */
/* Generated from kmod/vnet.yaml by python -m tools.genl; do not edit. */
#ifndef _VNET_NETLINK_GEN_H
#define _VNET_NETLINK_GEN_H

#include <net/genetlink.h>
#include <net/netlink.h>

#include "uapi/vnet_genl.h"

/* Counters of normal work, per namespace. */
enum vnet_counter {
	/* frames sent to the group (broadcast, multicast, unknown unicast) */
	VNET_C_FLOODS,
	/* unicast frames flooded because the destination MAC was not cached */
	VNET_C_UNKNOWN_UNICAST_FLOODS,
	/* VARP announces sent (replies and gratuitous) */
	VNET_C_ANNOUNCES_SENT,
	/* VARP announces applied to the cache */
	VNET_C_ANNOUNCES_RECEIVED,
	/* VARP requests received */
	VNET_C_VARP_REQUESTS,
	/* VFWD packets that passed every check */
	VNET_C_FORWARDS_RECEIVED,
	/* UDP packets accepted from another host */
	VNET_C_UDP_RECEIVED,
	/* raw protocol-97 packets accepted from another host */
	VNET_C_ETHERIP_RECEIVED,
	/*
	 * module only: endpoint frames a capture missed (no memory for their
	 * message)
	 */
	VNET_C_CAPTURE_LOST,
	/*
	 * challenges sent to a host whose session this host has not confirmed
	 */
	VNET_C_CHALLENGES_SENT,
	/* answers sent to a host that challenged this one */
	VNET_C_ANSWERS_SENT,
	/* answers that confirmed another host's session */
	VNET_C_SESSIONS_CONFIRMED,
	VNET_C_COUNT,
	VNET_C_MAX = (VNET_C_COUNT - 1)
};

/*
 * Why a packet was dropped, per namespace (doc/wire-format.md and
 * doc/security.md give the checks in order). A reason only one datapath can
 * meet is listed once all the same.
 */
enum vnet_drop {
	/* shorter than its headers */
	VNET_D_SHORT,
	/* an unknown vnet message id, or VFWD where it is not accepted */
	VNET_D_BAD_MESSAGE_ID,
	/* an EtherIP version word that is not accepted */
	VNET_D_BAD_VERSION,
	/* names a vnet this host does not have */
	VNET_D_UNKNOWN_VNET,
	/* a frame with a multicast source MAC */
	VNET_D_BAD_SOURCE_MAC,
	/* VFWD from a host that is not a peer */
	VNET_D_NOT_A_PEER,
	/* a malformed VFWD */
	VNET_D_BAD_FORWARD,
	/*
	 * a packet of ours come back, or a message naming this host as its
	 * sender
	 */
	VNET_D_OWN_PACKET,
	/* a message naming as its sender an address no host can have */
	VNET_D_BAD_SENDER,
	/* a multicast packet seen again (loop protection) */
	VNET_D_DUPLICATE,
	/* a VFWD delivered here but not re-sent (inner TTL 1 or less) */
	VNET_D_HOP_LIMIT,
	/* a VFWD re-sent to a group other than ours */
	VNET_D_OTHER_GROUP,
	/* sending failed */
	VNET_D_SEND_ERROR,
	/* no route to the destination */
	VNET_D_NO_ROUTE,
	/* a VARP announce of an address family other than IPv4 */
	VNET_D_BAD_FAMILY,
	/* a VARP message that is neither request nor announce */
	VNET_D_BAD_OPCODE,
	/* an allocation failed */
	VNET_D_NO_MEMORY,
	/* larger than the vnet's MTU allows, or too long to relay to a peer */
	VNET_D_OVERSIZE,
	/* a plain packet for a secure vnet */
	VNET_D_UNPROTECTED,
	/* a sealed message whose level is not its vnet's */
	VNET_D_SECURITY_MISMATCH,
	/* a sealed message under a key id the vnet does not hold */
	VNET_D_UNKNOWN_KEY,
	/* a sealed message too old or seen before */
	VNET_D_REPLAY,
	/* a sealed message whose tag does not verify */
	VNET_D_BAD_TAG,
	/* a sealed message whose body is malformed */
	VNET_D_BAD_SEAL,
	/*
	 * a sealed message of the old format (message id 4), from a host not
	 * upgraded
	 */
	VNET_D_OLD_SEAL,
	/* a sealed message from a session this host has not confirmed (yet) */
	VNET_D_UNCONFIRMED,
	/* an answer to no challenge of this host's */
	VNET_D_BAD_ANSWER,
	/*
	 * a MAC not learned: its vnet's share of the VARP cache or vif table is
	 * full
	 */
	VNET_D_TABLE_FULL,
	/* vnetd only: a socket read failed */
	VNET_D_RECV_ERROR,
	/* vnetd only: a tap read failed */
	VNET_D_TAP_READ_ERROR,
	/*
	 * a write to a port failed (vnetd: its tap), or a frame waiting in a
	 * port's link control queue was lost because the port or its interface
	 * went away
	 */
	VNET_D_TAP_WRITE_ERROR,
	/* vnetd only: a tap gave less than a header */
	VNET_D_TAP_RUNT,
	/* an 802.3x pause frame from a port (a switch does not forward them) */
	VNET_D_PAUSE_FRAME,
	/* a frame from or for a suspended port (vn port-set --suspend) */
	VNET_D_LINK_SUSPENDED,
	/* a frame for a port dropped by its link control's loss */
	VNET_D_LINK_LOSS,
	/*
	 * a frame for a port beyond its rate limit (it would wait more than 100
	 * ms behind the frames before it) or, on the module, beyond the 1000
	 * frames a port's link control queue holds
	 */
	VNET_D_LINK_RATE,
	VNET_D_COUNT,
	VNET_D_MAX = (VNET_D_COUNT - 1)
};

extern const char * const vnet_counter_names[VNET_C_COUNT];
extern const char * const vnet_drop_names[VNET_D_COUNT];

extern const struct nla_policy vnet_key_nl_policy[VNET_A_KEY_SECRET + 1];
extern const struct nla_policy vnet_keys_nl_policy[VNET_A_KEY + 1];
extern const struct nla_policy vnet_nl_policy[VNET_A_MAX + 1];

extern const struct genl_small_ops vnet_nl_ops[21];

enum vnet_nlgrps {
	VNET_NLGRP_MONITOR,
	VNET_NLGRP_CAPTURE,
};

extern const struct genl_multicast_group vnet_nl_mcgrps[2];

int vnet_nl_vnet_add_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_vnet_del_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_vnet_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_vif_add_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_vif_del_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_vif_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_peer_add_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_peer_del_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_peer_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_varp_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_varp_flush_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_set_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_get_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_keys_set_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_port_add_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_port_del_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_port_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_endpoint_add_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_endpoint_del_doit(struct sk_buff *skb, struct genl_info *info);
int vnet_nl_endpoint_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vnet_nl_port_set_doit(struct sk_buff *skb, struct genl_info *info);

#endif /* _VNET_NETLINK_GEN_H */
