// SPDX-License-Identifier: GPL-2.0
/* Generated from kmod/vnet.yaml by python -m tools.genl; do not edit. */
#include <linux/if.h>
#include <linux/if_ether.h>

#include "netlink_gen.h"

const char * const vnet_counter_names[VNET_C_COUNT] = {
	[VNET_C_FLOODS]			= "floods",
	[VNET_C_UNKNOWN_UNICAST_FLOODS]	= "unknown-unicast-floods",
	[VNET_C_ANNOUNCES_SENT]		= "announces-sent",
	[VNET_C_ANNOUNCES_RECEIVED]	= "announces-received",
	[VNET_C_VARP_REQUESTS]		= "varp-requests",
	[VNET_C_FORWARDS_RECEIVED]	= "forwards-received",
	[VNET_C_UDP_RECEIVED]		= "udp-received",
	[VNET_C_ETHERIP_RECEIVED]	= "etherip-received",
	[VNET_C_CAPTURE_LOST]		= "capture-lost",
	[VNET_C_CHALLENGES_SENT]	= "challenges-sent",
	[VNET_C_ANSWERS_SENT]		= "answers-sent",
	[VNET_C_SESSIONS_CONFIRMED]	= "sessions-confirmed",
};

const char * const vnet_drop_names[VNET_D_COUNT] = {
	[VNET_D_SHORT]			= "short",
	[VNET_D_BAD_MESSAGE_ID]		= "bad-message-id",
	[VNET_D_BAD_VERSION]		= "bad-version",
	[VNET_D_UNKNOWN_VNET]		= "unknown-vnet",
	[VNET_D_BAD_SOURCE_MAC]		= "bad-source-mac",
	[VNET_D_NOT_A_PEER]		= "not-a-peer",
	[VNET_D_BAD_FORWARD]		= "bad-forward",
	[VNET_D_OWN_PACKET]		= "own-packet",
	[VNET_D_BAD_SENDER]		= "bad-sender",
	[VNET_D_DUPLICATE]		= "duplicate",
	[VNET_D_HOP_LIMIT]		= "hop-limit",
	[VNET_D_OTHER_GROUP]		= "other-group",
	[VNET_D_SEND_ERROR]		= "send-error",
	[VNET_D_NO_ROUTE]		= "no-route",
	[VNET_D_BAD_FAMILY]		= "bad-family",
	[VNET_D_BAD_OPCODE]		= "bad-opcode",
	[VNET_D_NO_MEMORY]		= "no-memory",
	[VNET_D_OVERSIZE]		= "oversize",
	[VNET_D_UNPROTECTED]		= "unprotected",
	[VNET_D_SECURITY_MISMATCH]	= "security-mismatch",
	[VNET_D_UNKNOWN_KEY]		= "unknown-key",
	[VNET_D_REPLAY]			= "replay",
	[VNET_D_BAD_TAG]		= "bad-tag",
	[VNET_D_BAD_SEAL]		= "bad-seal",
	[VNET_D_OLD_SEAL]		= "old-seal",
	[VNET_D_UNCONFIRMED]		= "unconfirmed",
	[VNET_D_BAD_ANSWER]		= "bad-answer",
	[VNET_D_TABLE_FULL]		= "table-full",
	[VNET_D_RECV_ERROR]		= "recv-error",
	[VNET_D_TAP_READ_ERROR]		= "tap-read-error",
	[VNET_D_TAP_WRITE_ERROR]	= "tap-write-error",
	[VNET_D_TAP_RUNT]		= "tap-runt",
	[VNET_D_PAUSE_FRAME]		= "pause-frame",
	[VNET_D_LINK_SUSPENDED]		= "link-suspended",
	[VNET_D_LINK_LOSS]		= "link-loss",
	[VNET_D_LINK_RATE]		= "link-rate",
};

const struct nla_policy vnet_key_nl_policy[VNET_A_KEY_SECRET + 1] = {
	[VNET_A_KEY_ID]		= { .type = NLA_U8 },
	[VNET_A_KEY_SECRET]	= NLA_POLICY_EXACT_LEN(VNET_KEY_LEN),
};

const struct nla_policy vnet_keys_nl_policy[VNET_A_KEY + 1] = {
	[VNET_A_KEY]	= NLA_POLICY_NESTED(vnet_key_nl_policy),
};

const struct nla_policy vnet_nl_policy[VNET_A_MAX + 1] = {
	[VNET_A_ID]		= NLA_POLICY_EXACT_LEN(VNET_ID_LEN),
	[VNET_A_IFNAME]		= { .type = NLA_NUL_STRING, .len = IFNAMSIZ - 1 },
	[VNET_A_ENCAP]		= NLA_POLICY_MAX(NLA_U8, VNET_ENCAP_ETHERIP),
	[VNET_A_SECURITY]	= NLA_POLICY_MAX(NLA_U8, VNET_SECURITY_CONF),
	[VNET_A_MTU]		= { .type = NLA_U32 },
	[VNET_A_MAC]		= NLA_POLICY_EXACT_LEN(ETH_ALEN),
	[VNET_A_ADDR]		= { .type = NLA_BE32 },
	[VNET_A_PORT]		= NLA_POLICY_MIN(NLA_U16, 1),
	[VNET_A_MCADDR]		= { .type = NLA_BE32 },
	[VNET_A_KEYS]		= NLA_POLICY_NESTED(vnet_keys_nl_policy),
	[VNET_A_ENDPOINT_KIND]	= NLA_POLICY_MAX(NLA_U8, VNET_ENDPOINT_KIND_TCP_CONNECT),
	[VNET_A_REMOTE_ADDR]	= { .type = NLA_BE32 },
	[VNET_A_REMOTE_PORT]	= NLA_POLICY_MIN(NLA_U16, 1),
	[VNET_A_GROUP]		= { .type = NLA_BE32 },
	[VNET_A_LINK_SUSPENDED]	= NLA_POLICY_MAX(NLA_U8, 1),
	[VNET_A_LINK_LOSS]	= { .type = NLA_U32 },
	[VNET_A_LINK_CORRUPT]	= { .type = NLA_U32 },
	[VNET_A_LINK_DELAY]	= { .type = NLA_U32 },
	[VNET_A_LINK_JITTER]	= { .type = NLA_U32 },
	[VNET_A_LINK_RATE]	= { .type = NLA_U64 },
};

const struct genl_small_ops vnet_nl_ops[21] = {
	{
		.cmd	= VNET_CMD_VNET_ADD,
		.doit	= vnet_nl_vnet_add_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VNET_DEL,
		.doit	= vnet_nl_vnet_del_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VNET_GET,
		.dumpit	= vnet_nl_vnet_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VIF_ADD,
		.doit	= vnet_nl_vif_add_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VIF_DEL,
		.doit	= vnet_nl_vif_del_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VIF_GET,
		.dumpit	= vnet_nl_vif_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PEER_ADD,
		.doit	= vnet_nl_peer_add_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PEER_DEL,
		.doit	= vnet_nl_peer_del_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PEER_GET,
		.dumpit	= vnet_nl_peer_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VARP_GET,
		.dumpit	= vnet_nl_varp_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_VARP_FLUSH,
		.doit	= vnet_nl_varp_flush_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_SET,
		.doit	= vnet_nl_set_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_GET,
		.doit	= vnet_nl_get_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_KEYS_SET,
		.doit	= vnet_nl_keys_set_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PORT_ADD,
		.doit	= vnet_nl_port_add_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PORT_DEL,
		.doit	= vnet_nl_port_del_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PORT_GET,
		.dumpit	= vnet_nl_port_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_ENDPOINT_ADD,
		.doit	= vnet_nl_endpoint_add_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_ENDPOINT_DEL,
		.doit	= vnet_nl_endpoint_del_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_ENDPOINT_GET,
		.dumpit	= vnet_nl_endpoint_get_dumpit,
		.flags	= GENL_UNS_ADMIN_PERM,
	}, {
		.cmd	= VNET_CMD_PORT_SET,
		.doit	= vnet_nl_port_set_doit,
		.flags	= GENL_UNS_ADMIN_PERM,
	},
};

const struct genl_multicast_group vnet_nl_mcgrps[2] = {
	[VNET_NLGRP_MONITOR]	= {
		.name	= VNET_MCGRP_MONITOR,
		.flags	= GENL_MCAST_CAP_NET_ADMIN,
	},
	[VNET_NLGRP_CAPTURE]	= {
		.name	= VNET_MCGRP_CAPTURE,
		.flags	= GENL_MCAST_CAP_NET_ADMIN,
	},
};
