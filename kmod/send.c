// SPDX-License-Identifier: GPL-2.0
/*
 * Transmit: a frame written to a vnet device goes by unicast to the host
 * that holds its destination MAC, or is flooded to the group and to every
 * peer (reference 4.5, 4.6 and 5).
 *
 * On the wire a frame of at most 1514 bytes carries complete checksums: a
 * vnetd receiver reads it as bytes, and a veth underlay would otherwise hand
 * it over with the checksum still partial.  A TCP super-frame keeps its
 * partial checksum and goes out as one UDP tunnel GSO packet; segmentation
 * (or the receiver, for vnetd's super-frames) completes it.
 *
 * On a secure vnet each frame is sealed once (seal.c) and the sealed bytes
 * go everywhere the frame would have gone; a sealed super-frame leaves as
 * one UDP datagram, fragmented by IP.
 */
#include <net/ip.h>
#include <net/ip_tunnels.h>

#include "vnet.h"

/*
 * Sends one VFWD copy of @skb's data to each peer but @skip: the packet as
 * @group would see it, in an inner IPv4 (+ UDP) header whose source is
 * @origin, or 0.0.0.0 for our own packets (the peer fills in our address).
 * A copy goes in one UDP datagram: one too long for it (a multicast near
 * 64 KiB) would wrap its 16-bit lengths, and goes to no peer.
 * Called under RCU.
 */
void vnet_to_peers(struct vnet_net *vn, const struct sk_buff *skb,
		   __be32 origin, __be32 group, u8 proto, u8 ttl, __be32 skip)
{
	unsigned int ulen = proto == IPPROTO_UDP ? sizeof(struct udphdr) : 0;
	unsigned int hlen = VNET_MSG_HLEN + sizeof(struct iphdr) + ulen;
	struct vnet_peer *p;

	if (hlen + skb->len > VNET_VFWD_MAX) {
		vnet_drop(vn, VNET_D_OVERSIZE);
		return;
	}
	list_for_each_entry_rcu(p, &vn->peers, list) {
		struct sk_buff *nskb;
		struct iphdr *iph;
		__be16 *msg;

		if (p->addr == skip)
			continue;
		nskb = alloc_skb(VNET_CTRL_HEADROOM + hlen + skb->len,
				 GFP_ATOMIC);
		if (!nskb) {
			vnet_drop(vn, VNET_D_NO_MEMORY);
			return;
		}
		skb_reserve(nskb, VNET_CTRL_HEADROOM);
		msg = skb_put(nskb, VNET_MSG_HLEN);
		msg[0] = htons(VNET_MSG_VFWD);
		msg[1] = 0;
		iph = skb_put_zero(nskb, sizeof(*iph));
		iph->version = 4;
		iph->ihl = 5;
		iph->tot_len = htons(sizeof(*iph) + ulen + skb->len);
		iph->frag_off = proto == IPPROTO_UDP ? 0 : htons(IP_DF);
		iph->ttl = ttl;
		iph->protocol = proto;
		iph->saddr = origin;
		iph->daddr = group;
		if (ulen) {
			struct udphdr *uh = skb_put(nskb, ulen);

			uh->source = htons(VNET_PORT);
			uh->dest = htons(VNET_PORT);
			uh->len = htons(ulen + skb->len);
			uh->check = 0;
		}
		if (skb_copy_bits(skb, 0, skb_put(nskb, skb->len), skb->len)) {
			kfree_skb(nskb);
			vnet_drop(vn, VNET_D_SEND_ERROR);
			continue;
		}
		atomic64_inc(&p->tx_packets);
		vnet_udp_xmit(vn, nskb, p->addr, htons(READ_ONCE(p->port)),
			      NULL, 0, NULL, false);
	}
}

/*
 * Seals @skb (a frame, VARP message, challenge or answer: @type) for @vd's
 * secure vnet and sends the sealed message to @daddr: a host, or the group,
 * in which case the peers get VFWD copies of the same sealed bytes.  Frames
 * of raw EtherIP vnets go as IP protocol 97 with DF set, everything else by
 * UDP with DF clear (a sealed super-frame is one datagram, fragmented by IP).
 * Consumes @skb.  Returns false, counted, when nothing could be sealed.
 * Called under RCU.
 */
bool vnet_send_sealed(struct vnet_dev *vd, struct sk_buff *skb, u8 type,
		      __be32 daddr, struct dst_cache *cache)
{
	bool udp = type != VNET_SEAL_FRAME || vd->encap == VNET_ENCAP_UDP;
	struct vnet_net *vn = vd->vn;
	struct sk_buff *msg;

	msg = vnet_seal(vd, skb, type);
	consume_skb(skb);
	if (!msg)
		return false;
	if (ipv4_is_multicast(daddr) && !list_empty(&vn->peers))
		vnet_to_peers(vn, msg, 0, daddr,
			      udp ? IPPROTO_UDP : VNET_IPPROTO_ETHERIP,
			      VNET_TTL, 0);
	if (udp)
		vnet_udp_xmit(vn, msg, daddr, htons(VNET_PORT), NULL, 0, cache,
			      false);
	else
		vnet_ip_xmit(vn, msg, 0, daddr, VNET_IPPROTO_ETHERIP, VNET_TTL,
			     vd->df, NULL, 0, cache);
	return true;
}

/*
 * One plain (not GSO) frame to the vnet's group and the peers.  Consumes
 * @skb.
 */
static void vnet_flood_one(struct vnet_dev *vd, struct sk_buff *skb)
{
	struct vnet_net *vn = vd->vn;
	bool udp = vd->encap == VNET_ENCAP_UDP;
	__be32 group = vnet_dev_group(vd);

	if (vd->security != VNET_SECURITY_NONE) {
		vnet_send_sealed(vd, skb, VNET_SEAL_FRAME, group, NULL);
		return;
	}
	if (!list_empty(&vn->peers)) {
		if (skb_cow_head(skb, vd->prefix_len)) {
			vnet_drop(vn, VNET_D_NO_MEMORY);
			kfree_skb(skb);
			return;
		}
		/* The peers get the payload the group gets, prefix included. */
		memcpy(__skb_push(skb, vd->prefix_len), vd->prefix,
		       vd->prefix_len);
		vnet_to_peers(vn, skb, 0, group,
			      udp ? IPPROTO_UDP : VNET_IPPROTO_ETHERIP,
			      VNET_TTL, 0);
		__skb_pull(skb, vd->prefix_len);
	}
	if (udp)
		vnet_udp_xmit(vn, skb, group, htons(VNET_PORT),
			      vd->prefix, vd->prefix_len, NULL, false);
	else
		vnet_ip_xmit(vn, skb, 0, group,
			     VNET_IPPROTO_ETHERIP, VNET_TTL, vd->df, vd->prefix,
			     vd->prefix_len, NULL);
}

/*
 * Software segmentation of a super-frame, each segment (with complete
 * checksums) handed to @one.  Consumes @skb.
 */
static void vnet_segment(struct vnet_dev *vd, struct sk_buff *skb,
			 struct vnet_mac_entry *e,
			 void (*one)(struct vnet_dev *vd, struct sk_buff *skb,
				     struct vnet_mac_entry *e))
{
	struct sk_buff *segs, *next;

	segs = skb_gso_segment(skb, 0);
	if (IS_ERR_OR_NULL(segs)) {
		vnet_drop(vd->vn, VNET_D_SEND_ERROR);
		kfree_skb(skb);
		return;
	}
	consume_skb(skb);
	skb_list_walk_safe(segs, skb, next) {
		skb_mark_not_on_list(skb);
		one(vd, skb, e);
	}
}

static void vnet_flood_seg(struct vnet_dev *vd, struct sk_buff *skb,
			   struct vnet_mac_entry *e)
{
	vnet_flood_one(vd, skb);
}

static void vnet_flood(struct vnet_dev *vd, struct sk_buff *skb)
{
	vnet_count(vd->vn, VNET_C_FLOODS);
	if (!skb_is_gso(skb))
		vnet_flood_one(vd, skb);
	else
		/* A super-frame to an unknown MAC: flood it as plain frames,
		 * whose checksums software segmentation completes.
		 */
		vnet_segment(vd, skb, NULL, vnet_flood_seg);
}

/*
 * A frame to the host that holds its destination MAC.  On a secure vnet a
 * TCP super-frame is sealed whole, partial checksum and all, as vnetd sends
 * one; other GSO packets, and any too long to seal, are segmented first.
 * Consumes @skb.
 */
static void vnet_unicast(struct vnet_dev *vd, struct sk_buff *skb,
			 struct vnet_mac_entry *e)
{
	struct vnet_net *vn = vd->vn;

	if (vd->security != VNET_SECURITY_NONE) {
		if (skb_is_gso(skb) &&
		    (skb->len > VNET_SEAL_MAX_FRAME ||
		     !(skb_shinfo(skb)->gso_type &
		       (SKB_GSO_TCPV4 | SKB_GSO_TCPV6))))
			vnet_segment(vd, skb, e, vnet_unicast);
		else
			vnet_send_sealed(vd, skb, VNET_SEAL_FRAME, e->addr,
					 vnet_entry_cache(e));
	} else if (vd->encap == VNET_ENCAP_UDP) {
		/* A super-frame only to a host known to take one. */
		if (skb_is_gso(skb) && !vnet_takes_super(&vn->supers, e->addr))
			vnet_segment(vd, skb, e, vnet_unicast);
		else
			vnet_udp_xmit(vn, skb, e->addr, htons(VNET_PORT),
				      vd->prefix, vd->prefix_len,
				      vnet_entry_cache(e), true);
	} else {
		vnet_ip_xmit(vn, skb, 0, e->addr, VNET_IPPROTO_ETHERIP,
			     VNET_TTL, vd->df, vd->prefix, vd->prefix_len,
			     vnet_entry_cache(e));
	}
}

/*
 * A frame into the vnet from one of its local attachments, @from (the vnet
 * device or a port), skb->data at its Ethernet header: to the attachment of
 * its destination if that is a MAC of this host on another one, else to the
 * host that holds it, else flooded to the network and the other local
 * attachments.  Consumes @skb.  Called under RCU with BHs off.
 */
void vnet_frame_xmit(struct vnet_dev *vd, struct sk_buff *skb, u32 from)
{
	struct vnet_net *vn = vd->vn;
	const struct ethhdr *eth;
	struct vnet_mac_entry *e;
	bool ports;

	if (unlikely(!pskb_may_pull(skb, ETH_HLEN) ||
		     (!skb_is_gso(skb) && skb->ip_summed == CHECKSUM_PARTIAL &&
		      skb_checksum_help(skb)))) {
		dev_core_stats_tx_dropped_inc(vd->dev);
		kfree_skb(skb);
		return;
	}
	if (vd->security != VNET_SECURITY_NONE)
		/* Sealed packets are new ones, not this frame: count it here,
		 * as vnetd does, once whatever becomes of it.
		 */
		dev_sw_netstats_tx_add(vd->dev, 1, skb->len);
	else
		/* iptunnel_xmit() counts tx_bytes from here: the frame, not
		 * our headers.
		 */
		skb_set_inner_network_header(skb, ETH_HLEN);
	eth = (const struct ethhdr *)skb->data;
	if (likely(!is_multicast_ether_addr(eth->h_source)) &&
	    vnet_learn(&vn->vifs, vd, eth->h_source, vnet_att_addr(from)) == 1)
		varp_local_mac(vd, eth->h_source);
	/* With no ports the vnet device is the one local attachment. */
	ports = vnet_has_ports(vd);
	if (is_multicast_ether_addr(eth->h_dest)) {
		if (ports)
			vnet_local_flood(vd, skb, from, true);
		vnet_flood(vd, skb);
		return;
	}
	if (ports && vnet_local_unicast(vd, skb, from))
		return;
	e = vnet_table_lookup(&vn->varp, vd->id, eth->h_dest);
	if (!e) {
		vnet_count(vn, VNET_C_UNKNOWN_UNICAST_FLOODS);
		if (ports)
			vnet_local_flood(vd, skb, from, true);
		vnet_flood(vd, skb);
		return;
	}
	vnet_unicast(vd, skb, e);
}

netdev_tx_t vnet_xmit(struct sk_buff *skb, struct net_device *dev)
{
	rcu_read_lock();
	vnet_frame_xmit(netdev_priv(dev), skb, VNET_ATT_VNIF);
	rcu_read_unlock();
	return NETDEV_TX_OK;
}
