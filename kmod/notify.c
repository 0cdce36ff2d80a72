// SPDX-License-Identifier: GPL-2.0
/*
 * MAC change notifications for `vn monitor` (doc/monitor.md): a
 * VNET_CMD_MAC_EVENT message on the family's multicast group "monitor" of the
 * namespace when a table entry is learned, moves, expires or is removed.
 * And the frames of socket endpoints for `vn capture` (doc/capture.md), which
 * have no interface a packet socket could open: a VNET_CMD_ENDPOINT_FRAME
 * message on the group "capture" for each frame, both ways.
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

static size_t vnet_capture_size(unsigned int len)
{
	return nla_total_size(VNET_ID_LEN) + 2 * nla_total_size(sizeof(u8)) +
	       2 * nla_total_size(sizeof(u32)) +
	       2 * nla_total_size(sizeof(u16)) +
	       nla_total_size_64bit(sizeof(u64)) + nla_total_size(len);
}

/*
 * Called from the endpoint's receive path (softirq, or its work item with BHs
 * off) and from the datapath's transmit, under RCU: nothing sleeps.  The
 * capture filters in user space (the module has no BPF of its own for it);
 * a message that cannot be allocated is counted in capture-lost.
 */
void __vnet_capture_frame(struct vnet_endpoint *ep, const struct sk_buff *skb,
			  enum vnet_capture_direction dir)
{
	struct vnet_net *vn = ep->vd->vn;
	struct sk_buff *msg;
	struct nlattr *frame;
	void *hdr;

	msg = genlmsg_new(vnet_capture_size(skb->len),
			  GFP_ATOMIC | __GFP_NOWARN);
	if (!msg)
		goto lost;
	hdr = genlmsg_put(msg, 0, 0, &vnet_family, 0, VNET_CMD_ENDPOINT_FRAME);
	if (!hdr ||
	    nla_put(msg, VNET_A_ID, VNET_ID_LEN, ep->vd->id) ||
	    nla_put_u8(msg, VNET_A_ENDPOINT_KIND, ep->kind) ||
	    (ep->lport &&
	     (nla_put_in_addr(msg, VNET_A_ADDR, ep->laddr) ||
	      nla_put_u16(msg, VNET_A_PORT, ntohs(ep->lport)))) ||
	    (ep->rport &&
	     (nla_put_in_addr(msg, VNET_A_REMOTE_ADDR, ep->raddr) ||
	      nla_put_u16(msg, VNET_A_REMOTE_PORT, ntohs(ep->rport)))) ||
	    nla_put_u8(msg, VNET_A_CAPTURE_DIRECTION, dir) ||
	    nla_put_u64_64bit(msg, VNET_A_TIME_NS, ktime_get_real_ns(),
			      VNET_A_PAD))
		goto cancel;
	frame = nla_reserve(msg, VNET_A_FRAME, skb->len);
	if (!frame || skb_copy_bits(skb, 0, nla_data(frame), skb->len))
		goto cancel;
	genlmsg_end(msg, hdr);
	genlmsg_multicast_netns(&vnet_family, vn->net, msg, 0,
				VNET_NLGRP_CAPTURE, GFP_ATOMIC);
	return;
cancel:
	nlmsg_free(msg);
lost:
	vnet_count(vn, VNET_C_CAPTURE_LOST);
}
