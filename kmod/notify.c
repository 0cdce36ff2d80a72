// SPDX-License-Identifier: GPL-2.0
/*
 * MAC change notifications for `vn monitor` (doc/monitor.md): a
 * VNET_CMD_MAC_EVENT message on the family's multicast group "monitor" of the
 * namespace when a table entry is learned, moves, expires or is removed.
 *
 * They are sent from the packet paths and the sweep, often under a table's
 * spinlock, so nothing here sleeps; and nothing is built while the group has
 * no listener, so a host nobody monitors pays one test per change (never one
 * per packet: refreshes are not changes).  A message that cannot be allocated
 * is not sent: the monitor misses that change, the datapath loses nothing.
 */
#include <net/genetlink.h>

#include "vnet.h"

static size_t vnet_notify_size(void)
{
	return nla_total_size(VNET_ID_LEN) + nla_total_size(ETH_ALEN) +
	       2 * nla_total_size(sizeof(u8)) +
	       2 * nla_total_size(sizeof(u32));
}

void vnet_notify_mac(struct vnet_net *vn, enum vnet_mac_event event,
		     enum vnet_table_kind table, const u8 *vnet, const u8 *mac,
		     __be32 addr, __be32 old)
{
	struct sk_buff *skb;
	void *hdr;

	BUILD_BUG_ON((int)VNET_TABLE_VARP != (int)VNET_MAC_TABLE_VARP ||
		     (int)VNET_TABLE_VIFS != (int)VNET_MAC_TABLE_VIFS);
	if (!genl_has_listeners(&vnet_family, vn->net, VNET_NLGRP_MONITOR))
		return;
	skb = genlmsg_new(vnet_notify_size(), GFP_ATOMIC | __GFP_NOWARN);
	if (!skb)
		return;
	hdr = genlmsg_put(skb, 0, 0, &vnet_family, 0, VNET_CMD_MAC_EVENT);
	if (!hdr ||
	    nla_put(skb, VNET_A_ID, VNET_ID_LEN, vnet) ||
	    nla_put(skb, VNET_A_MAC, ETH_ALEN, mac) ||
	    nla_put_u8(skb, VNET_A_MAC_EVENT, event) ||
	    nla_put_u8(skb, VNET_A_MAC_TABLE, table) ||
	    nla_put_in_addr(skb, VNET_A_ADDR, addr) ||
	    (event == VNET_MAC_EVENT_MOVED &&
	     nla_put_in_addr(skb, VNET_A_OLD_ADDR, old))) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, hdr);
	genlmsg_multicast_netns(&vnet_family, vn->net, skb, 0,
				VNET_NLGRP_MONITOR, GFP_ATOMIC);
}
