// SPDX-License-Identifier: GPL-2.0
/*
 * vnetd's fast path: two tc programs that move unicast frames of plain UDP vnets
 * between a vnet's tap and the underlay without a trip through user space.
 *
 * vnet_encap runs on the egress of a vnet's tap (what the bridge hands vnetd):
 * a frame from a local MAC to a MAC whose host is known is wrapped in exactly the
 * VUDP packet vnetd would send (doc/wire-format.md) and sent out of the underlay.
 * vnet_decap runs on the ingress of the underlay device: a VUDP packet for one
 * of our vnets, from the host its source MAC is known at, is unwrapped and handed
 * to the vnet's tap as if vnetd had written it.
 *
 * Everything else is left alone (TC_ACT_UNSPEC: on to the device's next tc
 * filter, if any, then on its way as without us), so it reaches vnetd as before:
 * floods, unknown MACs, VARP, VFWD, sealed and raw EtherIP packets, fragments,
 * frames too long for the underlay.  vnetd owns the maps (fastpath.h) and keeps
 * them equal to its own tables; the programs only read them, refresh the times
 * entries were last used, and count.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Outer IPv4 + UDP + VUDP header (4) + EtherIP header (2) + vnet id (16). */
#define VUDP_LEN	(4 + 2 + VNET_ID_LEN)
#define OUTER_LEN	(sizeof(struct iphdr) + sizeof(struct udphdr) + VUDP_LEN)
/* What bpf_skb_change_proto takes out of a frame made IPv4 from IPv6. */
#define IP6_SHRINK	(sizeof(struct ipv6hdr) - sizeof(struct iphdr))
/* Refresh an entry's time at most this often (ns): one write a second, not one a frame. */
#define REFRESH_NS	1000000000ULL
/* The longest L4 part whose checksum is completed here (a 9000-byte MTU). */
#define CSUM_MAX	9216
#define CSUM_CHUNK	64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_config);
} fp_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_VNETS);
	__type(key, __u32);
	__type(value, struct fp_tap);
} fp_taps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_VNETS);
	__type(key, __u8[VNET_ID_LEN]);
	__type(value, struct fp_vnet);
} fp_vnets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_MACS);
	__type(key, struct fp_mac_key);
	__type(value, struct fp_remote);
} fp_remote SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_MACS);
	__type(key, struct fp_mac_key);
	__type(value, struct fp_local);
} fp_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_MAX_VNETS);
	__type(key, __u32);
	__type(value, struct fp_stats);
} fp_stats SEC(".maps");

/* The headers vnet_encap writes in front of a frame, and vnet_decap reads. */
struct vudp_hdr {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	__u8 msg[4];		/* 00 02 00 00 */
	__u8 etherip[2];	/* 00 40 */
	__u8 vid[VNET_ID_LEN];
	struct ethhdr inner;
} __packed;

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline void refresh(__u64 *seen)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - *seen > REFRESH_NS)
		*seen = now;
}

static __always_inline void count(__u32 slot, bool rx, __u32 len)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_stats, &slot);

	if (!s)
		return;
	if (rx) {
		s->rx_packets++;
		s->rx_bytes += len;
	} else {
		s->tx_packets++;
		s->tx_bytes += len;
	}
}

/* Add `n` bytes at `off` (n a constant once inlined) to the sum `s`. */
static __always_inline int sum_piece(struct __sk_buff *skb, __u32 off, __u8 *buf, __u32 n,
				     __s64 *s, __u32 *done)
{
	if (bpf_skb_load_bytes(skb, off, buf, n))
		return -1;
	*s = bpf_csum_diff(NULL, 0, (__be32 *)buf, n, (__u32)*s);
	*done += n;
	return 0;
}

/*
 * The ones' complement sum of `len` bytes at `off` (len <= CSUM_MAX), as
 * bpf_csum_diff leaves it, added to `sum`; negative on a failed load.
 */
static __always_inline __s64 sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len, __u32 sum)
{
	__u8 buf[CSUM_CHUNK];
	__u32 done = 0;
	__s64 s = sum;
	int i;

	for (i = 0; i < CSUM_MAX / CSUM_CHUNK; i++) {
		if (done + CSUM_CHUNK > len)
			break;
		if (bpf_skb_load_bytes(skb, off + done, buf, CSUM_CHUNK))
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)buf, CSUM_CHUNK, (__u32)s);
		done += CSUM_CHUNK;
	}
	/* The tail, in pieces of 32, 16, 8 and 4 bytes, then 1-3 bytes zero-padded. */
	if (len - done >= 32 && sum_piece(skb, off + done, buf, 32, &s, &done))
		return -1;
	if (len - done >= 16 && sum_piece(skb, off + done, buf, 16, &s, &done))
		return -1;
	if (len - done >= 8 && sum_piece(skb, off + done, buf, 8, &s, &done))
		return -1;
	if (len - done >= 4 && sum_piece(skb, off + done, buf, 4, &s, &done))
		return -1;
	if (len - done) {
		__u32 rest = len - done;

		*(__u32 *)buf = 0;
		if (rest == 1 && bpf_skb_load_bytes(skb, off + done, buf, 1))
			return -1;
		if (rest == 2 && bpf_skb_load_bytes(skb, off + done, buf, 2))
			return -1;
		if (rest == 3 && bpf_skb_load_bytes(skb, off + done, buf, 3))
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)buf, 4, (__u32)s);
	}
	return s;
}

/* Where a frame's TCP or UDP checksum is, and what it covers. */
struct l4_csum {
	__u32 l4;		/* offset of the TCP or UDP header */
	__u32 len;		/* its length, payload included */
	__u32 where;		/* offset of the checksum field */
	bool udp;
};

/*
 * Whether a frame's TCP or UDP checksum is left partial (CHECKSUM_PARTIAL, which
 * a tc program cannot read): the field then holds the sum of the pseudo-header
 * only.  A complete checksum that happens to equal that sum is completed to
 * itself (see complete_csum), so the test is safe.  1 if partial (with `c`
 * filled in), 0 if not, -1 for a frame not understood.
 */
static __always_inline int partial_csum(struct __sk_buff *skb, __u16 proto, struct l4_csum *c)
{
	struct {
		__u8 addrs[32];
		__be32 len;
		__u8 zero[3];
		__u8 nexthdr;
	} pseudo = {};
	__u32 l4, l4len, alen;
	__u8 l4proto;
	__be16 field;
	__s64 s;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return -1;
		if (ip.ihl < 5 || ip.frag_off & bpf_htons(0x3fff))
			return 0;
		if (bpf_ntohs(ip.tot_len) < ip.ihl * 4)
			return -1;
		l4 = ETH_HLEN + ip.ihl * 4;
		l4len = bpf_ntohs(ip.tot_len) - ip.ihl * 4;
		l4proto = ip.protocol;
		__builtin_memcpy(pseudo.addrs, &ip.saddr, 8);
		alen = 8;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return -1;
		l4 = ETH_HLEN + sizeof(ip6);
		l4len = bpf_ntohs(ip6.payload_len);
		l4proto = ip6.nexthdr;
		__builtin_memcpy(pseudo.addrs, &ip6.saddr, 32);
		alen = 32;
	} else {
		return 0;
	}
	if (l4proto == IPPROTO_TCP)
		c->where = l4 + 16;
	else if (l4proto == IPPROTO_UDP)
		c->where = l4 + 6;
	else
		return 0;
	if (l4len > CSUM_MAX || l4 + l4len > skb->len || c->where + 2 > l4 + l4len)
		return -1;
	if (bpf_skb_load_bytes(skb, c->where, &field, 2))
		return -1;
	/* The pseudo-header: addresses, then the L4 length and protocol. */
	if (alen == 8) {
		__u8 *p = pseudo.addrs;

		p[8] = 0;
		p[9] = l4proto;
		*(__be16 *)&p[10] = bpf_htons(l4len);
		s = bpf_csum_diff(NULL, 0, (__be32 *)p, 12, 0);
	} else {
		pseudo.len = bpf_htonl(l4len);
		pseudo.nexthdr = l4proto;
		s = bpf_csum_diff(NULL, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	}
	if (s < 0 || (__u16)~csum_fold((__u32)s) != field)
		return 0;
	c->l4 = l4;
	c->len = l4len;
	c->udp = l4proto == IPPROTO_UDP;
	return 1;
}

/*
 * Complete a partial checksum found by partial_csum, `shift` bytes further into
 * the packet now: the ones' complement sum of the covered bytes (the field's
 * pseudo-header sum included), as the device would have.  Of a complete
 * checksum the same sum gives the checksum itself.
 */
static __always_inline int complete_csum(struct __sk_buff *skb, struct l4_csum *c, __u32 shift)
{
	__s64 s = sum_bytes(skb, c->l4 + shift, c->len, 0);
	__u16 sum;

	if (s < 0)
		return -1;
	sum = csum_fold((__u32)s);
	if (!sum && c->udp)
		sum = 0xffff;
	return bpf_skb_store_bytes(skb, c->where + shift, &sum, 2, 0);
}

SEC("tc")
int vnet_encap(struct __sk_buff *skb)
{
	struct fp_mac_key key = {};
	struct fp_config *cfg;
	struct fp_remote *rem;
	struct fp_local *loc;
	struct fp_tap *tap;
	struct ipv6hdr ip6;
	struct vudp_hdr h;
	struct iphdr ip;
	__u32 zero = 0, ifindex = skb->ifindex, len = skb->len, mtu = 0;
	bool gso = skb->gso_size != 0;
	struct l4_csum csum = {};
	int partial = 0;
	__u16 proto;

	cfg = bpf_map_lookup_elem(&fp_config, &zero);
	if (!cfg || !cfg->addr)
		return TC_ACT_UNSPEC;
	tap = bpf_map_lookup_elem(&fp_taps, &ifindex);
	if (!tap || skb->vlan_present)	/* an offloaded 802.1Q tag: vnetd's */
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, 0, &h.inner, sizeof(h.inner)))
		return TC_ACT_UNSPEC;
	if ((h.inner.h_dest[0] | h.inner.h_source[0]) & 1)	/* a flood */
		return TC_ACT_UNSPEC;
	__builtin_memcpy(key.vid, tap->vid, VNET_ID_LEN);
	__builtin_memcpy(key.mac, h.inner.h_source, ETH_ALEN);
	loc = bpf_map_lookup_elem(&fp_local, &key);
	if (!loc)		/* new here: vnetd learns and announces it */
		return TC_ACT_UNSPEC;
	__builtin_memcpy(key.mac, h.inner.h_dest, ETH_ALEN);
	rem = bpf_map_lookup_elem(&fp_remote, &key);
	if (!rem)		/* unknown: vnetd floods it */
		return TC_ACT_UNSPEC;
	proto = h.inner.h_proto;
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_UNSPEC;	/* no room is made for others */
	if (gso) {
		/* Whole only to a host known to take super-frames, and only as long
		 * as one datagram carries.
		 */
		if (!(rem->flags & FP_REMOTE_SUPER) || len > cfg->super_max)
			return TC_ACT_UNSPEC;
	} else {
		if (proto == bpf_htons(ETH_P_IPV6) &&
		    bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return TC_ACT_UNSPEC;
		if (cfg->csum != FP_CSUM_LEAVE) {
			partial = partial_csum(skb, proto, &csum);
			if (partial < 0 || (partial > 0 && cfg->csum == FP_CSUM_SLOW))
				return TC_ACT_UNSPEC;
		}
	}

	/* A redirected packet is never fragmented: one too long for the underlay
	 * goes to vnetd, which lets the host fragment it.  A GSO packet's segments
	 * are checked, and its gso_size made room for below.
	 */
	if (len + OUTER_LEN > 0xffff)
		return TC_ACT_UNSPEC;
	mtu = 0;
	if (bpf_check_mtu(skb, cfg->ifindex, &mtu, OUTER_LEN + ETH_HLEN, 0))
		return TC_ACT_UNSPEC;

	/* The neighbour code fills in the MACs (bpf_redirect_neigh). */
	__builtin_memset(&h.eth, 0, 2 * ETH_ALEN);
	h.eth.h_proto = bpf_htons(ETH_P_IP);
	ip.version = 4;
	ip.ihl = 5;
	ip.tos = 0;
	ip.tot_len = bpf_htons(len + OUTER_LEN);
	ip.id = (__u16)bpf_get_prandom_u32();
	ip.frag_off = 0;	/* DF clear, as every vnet host sends */
	ip.ttl = cfg->ttl;
	ip.protocol = IPPROTO_UDP;
	ip.check = 0;
	ip.saddr = cfg->addr;
	ip.daddr = rem->addr;
	ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));
	__builtin_memcpy(&h.ip, &ip, sizeof(ip));
	h.udp.source = cfg->port;
	h.udp.dest = cfg->port;
	h.udp.len = bpf_htons(len + OUTER_LEN - sizeof(struct iphdr));
	h.udp.check = 0;
	h.msg[0] = 0;
	h.msg[1] = 2;
	h.msg[2] = 0;
	h.msg[3] = 0;
	h.etherip[0] = 0;
	h.etherip[1] = 0x40;
	__builtin_memcpy(h.vid, tap->vid, VNET_ID_LEN);

	if (!gso && proto == bpf_htons(ETH_P_IP)) {
		/* Room in front of a frame that is no GSO packet, whatever the
		 * tap's MTU (only the underlay's counts, checked above): its
		 * protocol stays IPv4, which bpf_redirect_neigh routes by.
		 */
		if (bpf_skb_change_head(skb, OUTER_LEN + ETH_HLEN, 0))
			return TC_ACT_UNSPEC;
		if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h) - ETH_HLEN, 0))
			return TC_ACT_SHOT;
	} else if (!gso) {
		/* An IPv6 frame that is no GSO packet: bpf_skb_adjust_room would
		 * make room only up to the tap's MTU, so the protocol is made IPv4
		 * (which takes 20 bytes out of the frame's first 54) and room made
		 * in front as for IPv4; the first 118 bytes are then written whole:
		 * our header, the frame's Ethernet header, its IPv6 header.  Past
		 * bpf_skb_change_proto the frame is changed: it cannot go to vnetd.
		 */
		if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IP), 0))
			return TC_ACT_UNSPEC;
		if (bpf_skb_change_head(skb, OUTER_LEN + ETH_HLEN + IP6_SHRINK, 0) ||
		    bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0) ||
		    bpf_skb_store_bytes(skb, sizeof(h), &ip6, sizeof(ip6), 0))
			return TC_ACT_SHOT;
	} else {
		/* Room after the frame's own Ethernet header, which becomes the
		 * outer one (the inner one is written again after the VUDP
		 * header).  The kernel marks the packet UDP-tunnelled, so a GSO
		 * packet is segmented right: each segment with all 64 header
		 * bytes, gso_size made smaller by as much.
		 */
		if (bpf_skb_adjust_room(skb, OUTER_LEN + ETH_HLEN, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
					BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
					BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
					BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)))
			return TC_ACT_UNSPEC;
		if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
			return TC_ACT_SHOT;
	}
	/* Only now, on its way out for sure: vnetd completes a frame it gets. */
	if (partial > 0 && complete_csum(skb, &csum, OUTER_LEN + ETH_HLEN))
		return TC_ACT_SHOT;
	refresh(&loc->seen);
	count(tap->slot, false, len);
	/* Routed and given MACs by the kernel, out of the underlay device; a
	 * neighbour not yet resolved holds the packet until it is.
	 */
	return bpf_redirect_neigh(cfg->ifindex, NULL, 0, 0);
}

/* Not an address another host can send from: 0/8, loopback, multicast and up. */
static __always_inline bool no_host(__be32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;

	return first == 0 || first == 127 || first >= 224;
}

SEC("tc")
int vnet_decap(struct __sk_buff *skb)
{
	struct fp_mac_key key = {};
	struct fp_config *cfg;
	struct fp_remote *rem;
	struct fp_vnet *vn;
	struct vudp_hdr h;
	__u32 zero = 0, len = skb->len;

	cfg = bpf_map_lookup_elem(&fp_config, &zero);
	if (!cfg || !cfg->addr || skb->ifindex != cfg->ifindex ||
	    bpf_ktime_get_ns() > cfg->alive_until)
		return TC_ACT_UNSPEC;
	if (len < sizeof(h) || bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
		return TC_ACT_UNSPEC;
	if (h.eth.h_proto != bpf_htons(ETH_P_IP) || h.ip.version != 4 || h.ip.ihl != 5 ||
	    h.ip.protocol != IPPROTO_UDP || h.ip.daddr != cfg->addr ||
	    h.ip.frag_off & bpf_htons(0x3fff) || h.udp.dest != cfg->port)
		return TC_ACT_UNSPEC;
	/* Whole (no trailer), from another host, a VUDP frame of EtherIP version 4. */
	if (bpf_ntohs(h.ip.tot_len) != len - ETH_HLEN || h.ip.saddr == cfg->addr ||
	    no_host(h.ip.saddr) || h.ip.saddr == 0xffffffff)
		return TC_ACT_UNSPEC;
	/* Every vnet host sends UDP checksum 0.  A packet that carries one goes
	 * to vnetd, whose socket has the kernel verify it: taken here it would
	 * not be.
	 */
	if (h.udp.check)
		return TC_ACT_UNSPEC;
	if (h.msg[0] || h.msg[1] != 2 || h.msg[2] || h.msg[3])
		return TC_ACT_UNSPEC;
	if (!(h.etherip[1] >> 4 == 4 || (h.etherip[0] >> 4 == 4 && !h.etherip[1])))
		return TC_ACT_UNSPEC;
	if ((h.inner.h_dest[0] | h.inner.h_source[0]) & 1)
		return TC_ACT_UNSPEC;
	vn = bpf_map_lookup_elem(&fp_vnets, h.vid);
	if (!vn)
		return TC_ACT_UNSPEC;
	/* Only from the host vnetd has learned the source at: a MAC new or moved is
	 * learned by vnetd, which then puts it here.
	 */
	__builtin_memcpy(key.vid, h.vid, VNET_ID_LEN);
	__builtin_memcpy(key.mac, h.inner.h_source, ETH_ALEN);
	rem = bpf_map_lookup_elem(&fp_remote, &key);
	if (!rem || rem->addr != h.ip.saddr)
		return TC_ACT_UNSPEC;
	if (skb->gso_size) {
		/* A GSO packet keeps its tunnel marking after this (kernels before
		 * BPF_F_ADJ_ROOM_DECAP_L4_UDP): only to a MAC on this host, never
		 * forwarded off it.
		 */
		__builtin_memcpy(key.mac, h.inner.h_dest, ETH_ALEN);
		if (!bpf_map_lookup_elem(&fp_local, &key))
			return TC_ACT_UNSPEC;
	}
	if (bpf_skb_adjust_room(skb, -(__s32)(OUTER_LEN + ETH_HLEN), BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_UNSPEC;
	if (bpf_skb_store_bytes(skb, 0, &h.inner, sizeof(h.inner), 0))
		return TC_ACT_SHOT;
	refresh(&rem->seen);
	count(vn->slot, true, len - ETH_HLEN - OUTER_LEN);
	return bpf_redirect(vn->tap_ifindex, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
