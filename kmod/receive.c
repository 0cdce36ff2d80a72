// SPDX-License-Identifier: GPL-2.0
/*
 * Receive: UDP port 1798 (VUDP frames, VARP, VFWD from peers) and raw
 * EtherIP (IP protocol 97), both in softirq.  The checks and the drop
 * reasons are vnetd's, so both datapaths count the same events alike.
 * Sealed messages (secure vnets) are checked in seal.c, then come back here
 * as frames; plain frames and VARP naming a secure vnet are dropped.
 */
#include <linux/if_ether.h>
#include <linux/if_vlan.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <net/ip_tunnels.h>
#include <net/xfrm.h>

#include "vnet.h"

static void vnet_dispatch_msg(struct vnet_net *vn, struct sk_buff *skb,
			      __be32 src, bool vfwd_ok);

static bool etherip_version_ok(const u8 *w)
{
	/* The original's little-endian bitfield (00 40), or a big-endian
	 * Xen host's 40 00.
	 */
	return (w[1] >> 4) == ETHERIP_VERSION ||
	       ((w[0] >> 4) == ETHERIP_VERSION && w[1] == 0);
}

/*
 * The longest plain frame: the MTU and an Ethernet header, and an 802.1Q tag
 * if it has one, as the bridge forwards them (is_skb_forwardable()) and so
 * our sender sends them.
 */
static unsigned int vnet_frame_max(const struct sk_buff *skb, unsigned int mtu)
{
	const struct ethhdr *eth = (const struct ethhdr *)skb->data;

	return mtu + ETH_HLEN + (eth_type_vlan(eth->h_proto) ? VLAN_HLEN : 0);
}

/*
 * vnetd sends a TCP super-frame (longer than the MTU, with a partial
 * checksum) as one datagram: mark it for segmentation again, with segments
 * sized for our MTU.  skb->data is at the Ethernet header.  Returns 0, or
 * -EINVAL when it is no TCP super-frame, -ENOMEM when it cannot be marked.
 */
static int vnet_superframe(struct sk_buff *skb, unsigned int mtu)
{
	const struct ethhdr *eth = (const struct ethhdr *)skb->data;
	unsigned int l4, thl;
	const struct tcphdr *th;
	int gso_type;

	if (eth->h_proto == htons(ETH_P_IP)) {
		const struct iphdr *iph;

		if (!pskb_may_pull(skb, ETH_HLEN + sizeof(*iph)))
			return -EINVAL;
		iph = (const struct iphdr *)(skb->data + ETH_HLEN);
		if (iph->protocol != IPPROTO_TCP || iph->ihl < 5)
			return -EINVAL;
		l4 = ETH_HLEN + iph->ihl * 4;
		gso_type = SKB_GSO_TCPV4;
	} else if (eth->h_proto == htons(ETH_P_IPV6)) {
		const struct ipv6hdr *ip6;

		if (!pskb_may_pull(skb, ETH_HLEN + sizeof(*ip6)))
			return -EINVAL;
		ip6 = (const struct ipv6hdr *)(skb->data + ETH_HLEN);
		if (ip6->nexthdr != IPPROTO_TCP)
			return -EINVAL;
		l4 = ETH_HLEN + sizeof(*ip6);
		gso_type = SKB_GSO_TCPV6;
	} else {
		return -EINVAL;
	}
	if (!pskb_may_pull(skb, l4 + sizeof(*th)))
		return -EINVAL;
	th = (const struct tcphdr *)(skb->data + l4);
	thl = th->doff * 4;
	if (thl < sizeof(*th) || mtu <= l4 - ETH_HLEN + thl ||
	    !skb_partial_csum_set(skb, l4, offsetof(struct tcphdr, check)))
		return -EINVAL;
	/* The shared info is the clones' too (a packet socket on the
	 * underlay holds one): make it ours before writing to it.
	 */
	if (skb_unclone(skb, GFP_ATOMIC))
		return -ENOMEM;
	skb_shinfo(skb)->gso_size = mtu - (l4 - ETH_HLEN) - thl;
	skb_shinfo(skb)->gso_type = gso_type | SKB_GSO_DODGY;
	skb_shinfo(skb)->gso_segs = 0;
	return 0;
}

/*
 * Hands a frame (skb->data at its Ethernet header) to @vd's stack, through
 * GRO if @gro.  A copy whose data other copies share goes without: GRO may
 * write to the headers of the packets it merges.
 */
void vnet_deliver(struct vnet_dev *vd, struct sk_buff *skb, bool gro)
{
	unsigned int len;
	int ret;

	skb->protocol = eth_type_trans(skb, vd->dev);
	skb_postpull_rcsum(skb, eth_hdr(skb), ETH_HLEN);
	skb_reset_network_header(skb);
	len = skb->len;
	/* A drop is counted by gro_cells (or netif_rx) itself. */
	ret = gro ? gro_cells_receive(&vd->gro_cells, skb) : netif_rx(skb);
	if (ret == NET_RX_SUCCESS)
		dev_sw_netstats_rx_add(vd->dev, len);
}

/*
 * A super-frame reassembled from IP fragments holds them on its frag_list,
 * cut where the sender chose, not at gso_size boundaries as GRO leaves
 * them; skb_segment() relies on GRO's layout when it shares such heads, and
 * may meet its BUG_ON when the frame is segmented later (bridged to a port
 * without NETIF_F_FRAGLIST, or forwarded).  So segment it here, by copying
 * (no NETIF_F_SG: any layout will do).  Any later segmentation of such a
 * frame would copy as much; linearising instead would need a 64 KiB
 * allocation in softirq.  The checksums stay partial (NETIF_F_HW_CSUM), which
 * the stack trusts, and GRO merges the segments again on the way up.
 * Consumes @skb.
 */
static void vnet_deliver_segments(struct vnet_dev *vd, struct sk_buff *skb)
{
	struct sk_buff *segs, *next;

	/* The inner Ethernet header, at skb->data: the mac header may still be
	 * the underlay's.
	 */
	skb->protocol = ((const struct ethhdr *)skb->data)->h_proto;
	skb_set_network_header(skb, ETH_HLEN);
	segs = skb_gso_segment(skb, NETIF_F_HW_CSUM);
	if (IS_ERR_OR_NULL(segs)) {
		vnet_drop(vd->vn, PTR_ERR(segs) == -ENOMEM ? VNET_D_NO_MEMORY :
				  VNET_D_OVERSIZE);
		kfree_skb(skb);
		return;
	}
	consume_skb(skb);
	skb_list_walk_safe(segs, skb, next) {
		skb_mark_not_on_list(skb);
		vnet_local_rcv(vd, skb);
	}
}

/*
 * The sender rule (doc/security.md): a message that names as its sender (a
 * sealed header's sender, a VFWD's origin, an announced address) this host or
 * an address no host can have is refused, and counted.  Our own sealed flood
 * sent back to us would verify, and put our own VMs at our own address.
 */
bool vnet_sender_ok(struct vnet_net *vn, __be32 addr)
{
	if (!vnet_unicast_addr(addr)) {
		vnet_drop(vn, VNET_D_BAD_SENDER);
		return false;
	}
	if (vnet_is_local(vn, addr)) {
		vnet_drop(vn, VNET_D_OWN_PACKET);
		return false;
	}
	return true;
}

/*
 * A frame for @vd, skb->data at its Ethernet header (the encapsulation is
 * pulled); @src is the host it came from, learned as the care-of address of
 * its source MAC.  Consumes @skb.
 */
void vnet_frame_rcv(struct vnet_dev *vd, struct sk_buff *skb, __be32 src)
{
	struct vnet_net *vn = vd->vn;
	const u8 *smac;
	int err;

	if (!pskb_may_pull(skb, ETH_HLEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		goto drop;
	}
	smac = skb->data + ETH_ALEN;
	if (is_multicast_ether_addr(smac)) {
		vnet_drop(vn, VNET_D_BAD_SOURCE_MAC);
		goto drop;
	}
	vnet_learn(&vn->varp, vd, smac, src);
	/* Only a host that takes super-frames sends one. */
	if (skb->len > VNET_ORIGINAL_FRAME_MAX)
		vnet_set_super(&vn->supers, src, true);
	if (!skb_is_gso(skb) && skb->len > vnet_frame_max(skb, vd->mtu)) {
		err = vnet_superframe(skb, vd->mtu);
		if (err) {
			vnet_drop(vn, err == -ENOMEM ? VNET_D_NO_MEMORY :
				  VNET_D_OVERSIZE);
			goto drop;
		}
		if (skb_has_frag_list(skb)) {
			vnet_deliver_segments(vd, skb);
			return;
		}
	}
	vnet_local_rcv(vd, skb);
	return;
drop:
	kfree_skb(skb);
}

/*
 * skb->data is at the EtherIP header, after a VUDP header or, for @raw, an
 * IP header (protocol 97, direct or forwarded), where a sealed message may
 * stand instead.  @src is the host the frame came from.  Consumes @skb.
 */
static void vnet_etherip_rcv(struct vnet_net *vn, struct sk_buff *skb,
			     __be32 src, bool raw)
{
	const struct etherip_hdr *eh;
	struct vnet_dev *vd;

	if (raw && pskb_may_pull(skb, VNET_MSG_HLEN) && skb->data[0] == 0 &&
	    skb->data[1] == VNET_MSG_SEALED) {
		vnet_sealed_rcv(vn, skb, false);
		return;
	}
	if (raw && skb->len >= VNET_MSG_HLEN && skb->data[0] == 0 &&
	    skb->data[1] == VNET_MSG_OLD_SEALED) {
		vnet_drop(vn, VNET_D_OLD_SEAL);
		goto drop;
	}
	if (!pskb_may_pull(skb, ETHERIP_HLEN + ETH_HLEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		goto drop;
	}
	eh = (const struct etherip_hdr *)skb->data;
	if (!etherip_version_ok(eh->word)) {
		vnet_drop(vn, VNET_D_BAD_VERSION);
		goto drop;
	}
	vd = vnet_find_plain(vn, eh->vnet);
	if (!vd)
		goto drop;
	if (__iptunnel_pull_header(skb, ETHERIP_HLEN, htons(ETH_P_TEB), false,
				   false)) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		goto drop;
	}
	vnet_frame_rcv(vd, skb, src);
	return;
drop:
	kfree_skb(skb);
}

/*
 * A multicast packet a peer relayed to us (reference section 5): deliver it
 * here, then re-send it on our network as if its origin had sent it, one hop
 * less.  skb->data is at the VFWD header.  Consumes @skb.
 */
static void vnet_vfwd_rcv(struct vnet_net *vn, struct sk_buff *skb,
			  __be32 src)
{
	struct sk_buff *resend = NULL;
	const struct iphdr *iph;
	struct vnet_peer *peer;
	unsigned int ihl, tot, plen;
	__be32 origin, group;
	u8 proto, ttl;
	bool bare;

	peer = vnet_peer_find(vn, src);
	if (!peer) {
		vnet_drop(vn, VNET_D_NOT_A_PEER);
		goto drop;
	}
	atomic64_inc(&peer->rx_packets);
	skb_pull_rcsum(skb, VNET_MSG_HLEN);
	if (skb_linearize(skb)) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		goto drop;
	}
	iph = (const struct iphdr *)skb->data;
	if (skb->len < sizeof(*iph)) {
		vnet_drop(vn, VNET_D_BAD_FORWARD);
		goto drop;
	}
	bare = !skb->data[0] && !iph->tot_len;
	if (bare) {
		/*
		 * The original forwarder's relay: only protocol, source and
		 * destination are filled in.  The lengths come from the
		 * datagram, as the original receiver takes them; it has no
		 * hop budget, so it is re-sent here with TTL 1.
		 */
		ihl = sizeof(*iph);
		tot = skb->len;
		ttl = VNET_BARE_RELAY_TTL;
	} else if (iph->version != 4) {
		vnet_drop(vn, VNET_D_BAD_FORWARD);
		goto drop;
	} else {
		ihl = iph->ihl * 4;
		tot = ntohs(iph->tot_len);
		ttl = iph->ttl;
	}
	if (ihl < sizeof(*iph) || tot < ihl || tot > skb->len ||
	    !ipv4_is_multicast(iph->daddr)) {
		vnet_drop(vn, VNET_D_BAD_FORWARD);
		goto drop;
	}
	origin = iph->saddr ?: src;
	if (!vnet_sender_ok(vn, origin))
		goto drop;
	/* Re-sent to the vnet's own group if it is one of ours. */
	group = vnet_our_group(vn, iph->daddr) ? iph->daddr :
						  READ_ONCE(vn->group);
	proto = iph->protocol;
	if (pskb_trim_rcsum(skb, tot)) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		goto drop;
	}
	skb_pull_rcsum(skb, ihl);
	if (proto == IPPROTO_UDP) {
		if (skb->len < sizeof(struct udphdr) + VNET_MSG_HLEN) {
			vnet_drop(vn, VNET_D_BAD_FORWARD);
			goto drop;
		}
		plen = sizeof(struct udphdr);
	} else if (proto == VNET_IPPROTO_ETHERIP) {
		plen = 0;
	} else {
		vnet_drop(vn, VNET_D_BAD_FORWARD);
		goto drop;
	}
	if (vnet_flood_seen(&vn->flood, origin, skb->data + plen,
			    skb->len - plen, true)) {
		vnet_drop(vn, VNET_D_DUPLICATE);
		goto drop;
	}
	vnet_count(vn, VNET_C_FORWARDS_RECEIVED);
	if (ttl > 1) {
		resend = skb_copy_expand(skb, VNET_CTRL_HEADROOM, 0, GFP_ATOMIC);
		if (!resend)
			vnet_drop(vn, VNET_D_NO_MEMORY);
	} else {
		/* Delivered here, but its hop budget is spent. */
		vnet_drop(vn, VNET_D_HOP_LIMIT);
	}
	skb_pull_rcsum(skb, plen);
	if (proto == IPPROTO_UDP)
		vnet_dispatch_msg(vn, skb, origin, false);
	else
		vnet_etherip_rcv(vn, skb, origin, true);
	if (resend && bare && proto == IPPROTO_UDP) {
		/* Its UDP length is 0: give the real one. */
		struct udphdr *uh = (struct udphdr *)resend->data;

		uh->len = htons(resend->len);
		uh->check = 0;
	}
	if (resend) {
		/* A new packet of ours, not the received one. */
		resend->dev = NULL;
		resend->ip_summed = CHECKSUM_NONE;
		resend->mark = 0;
		skb_clear_tstamp(resend);
		vnet_ip_xmit(vn, resend, origin, group, proto, ttl - 1,
			     proto == VNET_IPPROTO_ETHERIP, NULL, 0, NULL);
	}
	return;
drop:
	kfree_skb(skb);
}

/* skb->data is at the 4-byte vnet message header.  Consumes @skb. */
static void vnet_dispatch_msg(struct vnet_net *vn, struct sk_buff *skb,
			      __be32 src, bool vfwd_ok)
{
	u16 id;

	if (!pskb_may_pull(skb, VNET_MSG_HLEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		kfree_skb(skb);
		return;
	}
	id = ntohs(*(__be16 *)skb->data);
	if (id == VNET_MSG_VUDP) {
		skb_pull_rcsum(skb, VNET_MSG_HLEN);
		vnet_etherip_rcv(vn, skb, src, false);
	} else if (id == VNET_MSG_VARP) {
		varp_rcv(vn, skb, src);
	} else if (id == VNET_MSG_SEALED) {
		vnet_sealed_rcv(vn, skb, true);
	} else if (id == VNET_MSG_OLD_SEALED) {
		/* The format before sessions (doc/security.md): upgrade. */
		vnet_drop(vn, VNET_D_OLD_SEAL);
		kfree_skb(skb);
	} else if (id == VNET_MSG_VFWD && vfwd_ok) {
		vnet_vfwd_rcv(vn, skb, src);
	} else {
		vnet_drop(vn, VNET_D_BAD_MESSAGE_ID);
		kfree_skb(skb);
	}
}

/*
 * A multicast to one of our groups, UDP or raw EtherIP.  Relay it to the peers
 * (keeping its hop budget) unless it is a relayed copy we have seen, then
 * handle it.  skb->data is at the payload.  Returns false when dropped.
 */
static bool vnet_group_rcv(struct vnet_net *vn, struct sk_buff *skb,
			   u8 proto)
{
	const struct iphdr *iph = ip_hdr(skb);
	__be32 src = iph->saddr, group = iph->daddr;
	bool relayed;
	u8 ttl = iph->ttl;

	if (!vnet_our_group(vn, group)) {
		vnet_drop(vn, VNET_D_OTHER_GROUP);
		return false;
	}
	if (vnet_is_local(vn, src))
		return false;
	if (skb_linearize(skb)) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		return false;
	}
	/* A multicast from an off-link source can only be a peer's re-send. */
	relayed = !vnet_onlink(vn, src);
	if (vnet_flood_seen(&vn->flood, src, skb->data, skb->len, relayed)) {
		vnet_drop(vn, VNET_D_DUPLICATE);
		return false;
	}
	if (!list_empty(&vn->peers) &&
	    !(proto == IPPROTO_UDP && skb->data[0] == 0 &&
	      skb->data[1] == VNET_MSG_VFWD))
		vnet_to_peers(vn, skb, src, group, proto, ttl, src);
	return true;
}

/* encap_rcv of the UDP tunnel socket: always consumes the packet. */
int vnet_udp_rcv(struct sock *sk, struct sk_buff *skb)
{
	struct vnet_net *vn = rcu_dereference_sk_user_data(sk);
	__be32 src = ip_hdr(skb)->saddr;
	bool multicast = ipv4_is_multicast(ip_hdr(skb)->daddr);

	if (unlikely(!vn || skb->pkt_type == PACKET_LOOPBACK ||
		     vnet_own_source(vn, src)))
		goto drop;
	vnet_count(vn, VNET_C_UDP_RECEIVED);
	if (!pskb_may_pull(skb, sizeof(struct udphdr) + VNET_MSG_HLEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		goto drop;
	}
	skb_pull_rcsum(skb, sizeof(struct udphdr));
	if (multicast && !vnet_group_rcv(vn, skb, IPPROTO_UDP))
		goto drop;
	vnet_dispatch_msg(vn, skb, src, !multicast);
	return 0;
drop:
	kfree_skb(skb);
	return 0;
}

/* The IP protocol 97 handler, for every namespace. */
int vnet_etherip_proto_rcv(struct sk_buff *skb)
{
	struct vnet_net *vn = vnet_pernet(dev_net(skb->dev));
	__be32 src = ip_hdr(skb)->saddr;

	/* No vnets here (or a vnetd owns this namespace): not ours. */
	if (!rcu_access_pointer(vn->sock) ||
	    skb->pkt_type == PACKET_LOOPBACK || vnet_own_source(vn, src) ||
	    !xfrm4_policy_check(NULL, XFRM_POLICY_IN, skb))
		goto drop;
	vnet_count(vn, VNET_C_ETHERIP_RECEIVED);
	if (ipv4_is_multicast(ip_hdr(skb)->daddr) &&
	    !vnet_group_rcv(vn, skb, VNET_IPPROTO_ETHERIP))
		goto drop;
	vnet_etherip_rcv(vn, skb, src, true);
	return 0;
drop:
	kfree_skb(skb);
	return 0;
}
