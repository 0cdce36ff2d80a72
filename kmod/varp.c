// SPDX-License-Identifier: GPL-2.0
/*
 * VARP, the virtual ARP of the original (reference 4.4): 43-byte requests and
 * announces on UDP port 1798.  As in vnetd, a MAC that appears on this host
 * is announced at once, so the other hosts find a moved VM without waiting
 * for their cache entries to expire.  On a secure vnet every announce, and
 * every reply, is sealed like a frame.
 */
#include "vnet.h"

static struct sk_buff *varp_build(u16 op, const u8 *vnet, const u8 *mac,
				  __be32 addr)
{
	struct sk_buff *skb = alloc_skb(VNET_CTRL_HEADROOM + VARP_LEN +
					VARP_EXT_LEN, GFP_ATOMIC);
	struct varp_msg *m;

	if (!skb)
		return NULL;
	skb_reserve(skb, VNET_CTRL_HEADROOM);
	m = skb_put_zero(skb, VARP_LEN);
	m->id = htons(VNET_MSG_VARP);
	m->opcode = htons(op);
	memcpy(m->vnet, vnet, VNET_ID_LEN);
	ether_addr_copy(m->vmac, mac);
	m->family = VARP_AF_INET;
	memcpy(m->addr, &addr, sizeof(addr));
	/* This host takes super-frames. */
	skb_put_data(skb, VARP_EXT_SUPER, VARP_EXT_LEN);
	return skb;
}

/*
 * A MAC seen on this host for the first time: forget where we thought it
 * was and claim it on the vnet's group and towards the peers.  Called under
 * RCU.
 */
void varp_local_mac(struct vnet_dev *vd, const u8 *mac)
{
	struct vnet_net *vn = vd->vn;
	struct sk_buff *skb;

	vnet_table_remove(&vn->varp, vd->id, mac);
	vnet_notify_mac(vn, VNET_MAC_EVENT_LEARNED, VNET_TABLE_VIFS, vd->id, mac,
			0, 0);
	skb = varp_build(VARP_OP_ANNOUNCE, vd->id, mac, READ_ONCE(vn->addr));
	if (!skb) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		return;
	}
	vnet_count(vn, VNET_C_ANNOUNCES_SENT);
	if (vd->security != VNET_SECURITY_NONE) {
		vnet_send_sealed(vd, skb, VNET_SEAL_VARP, vnet_dev_group(vd),
				 NULL);
		return;
	}
	if (!list_empty(&vn->peers))
		vnet_to_peers(vn, skb, 0, vnet_dev_group(vd), IPPROTO_UDP,
			      VNET_TTL, 0);
	vnet_udp_xmit(vn, skb, vnet_dev_group(vd), htons(VNET_PORT), NULL,
		      0, NULL, false);
}

/*
 * A VARP message for @vd, plain or out of a sealed message, from @sender
 * (the IP source, the VFWD origin, or the sealed header's sender).
 * skb->data is at the message, VARP_LEN bytes of it linear.  Consumes @skb.
 * Called under RCU.
 */
void varp_handle(struct vnet_dev *vd, struct sk_buff *skb, __be32 sender)
{
	struct vnet_net *vn = vd->vn;
	const struct varp_msg *m;
	struct sk_buff *reply;
	bool super;
	__be32 addr;

	super = skb->len >= VARP_LEN + VARP_EXT_LEN &&
		pskb_may_pull(skb, VARP_LEN + VARP_EXT_LEN) &&
		!memcmp(skb->data + VARP_LEN, VARP_EXT_SUPER, VARP_EXT_LEN);
	m = (const struct varp_msg *)skb->data;
	switch (ntohs(m->opcode)) {
	case VARP_OP_REQUEST:
		vnet_count(vn, VNET_C_VARP_REQUESTS);
		if (!vnet_table_lookup(&vn->vifs, m->vnet, m->vmac))
			break;
		reply = varp_build(VARP_OP_ANNOUNCE, m->vnet, m->vmac,
				   READ_ONCE(vn->addr));
		if (!reply) {
			vnet_drop(vn, VNET_D_NO_MEMORY);
			break;
		}
		vnet_count(vn, VNET_C_ANNOUNCES_SENT);
		if (vd->security != VNET_SECURITY_NONE)
			vnet_send_sealed(vd, reply, VNET_SEAL_VARP, sender,
					 NULL);
		else
			vnet_udp_xmit(vn, reply, sender, htons(VNET_PORT), NULL,
				      0, NULL, false);
		break;
	case VARP_OP_ANNOUNCE:
		if (m->family != VARP_AF_INET) {
			vnet_drop(vn, VNET_D_BAD_FAMILY);
			break;
		}
		memcpy(&addr, m->addr, sizeof(addr));
		if (!vnet_sender_ok(vn, addr))
			break;
		vnet_count(vn, VNET_C_ANNOUNCES_RECEIVED);
		vnet_set_super(&vn->supers, addr, super);
		/* The MAC lives elsewhere now. */
		vnet_table_remove(&vn->vifs, m->vnet, m->vmac);
		vnet_learn(&vn->varp, vd, m->vmac, addr);
		break;
	default:
		vnet_drop(vn, VNET_D_BAD_OPCODE);
	}
	consume_skb(skb);
}

/*
 * A plain VARP message, skb->data at it.  Consumes @skb.  Called under
 * RCU.
 */
void varp_rcv(struct vnet_net *vn, struct sk_buff *skb, __be32 src)
{
	struct vnet_dev *vd;

	if (!pskb_may_pull(skb, VARP_LEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		goto drop;
	}
	vd = vnet_find_plain(vn, ((const struct varp_msg *)skb->data)->vnet);
	if (!vd)
		goto drop;
	varp_handle(vd, skb, src);
	return;
drop:
	consume_skb(skb);
}
