// SPDX-License-Identifier: GPL-2.0
/*
 * The namespace's UDP tunnel socket on port 1798 (unicast and the group),
 * and the two ways out: EtherIP in UDP through the UDP tunnel API, and raw
 * IP (raw EtherIP, and the spoofed-source re-sends of forwarded multicast).
 */
#include <linux/igmp.h>
#include <linux/inetdevice.h>
#include <net/ip.h>
#include <net/ip_tunnels.h>
#include <net/route.h>
#include <net/udp_tunnel.h>

#include "vnet.h"

bool vnet_is_local(struct vnet_net *vn, __be32 addr)
{
	return addr == READ_ONCE(vn->addr) ||
	       inet_addr_type(vn->net, addr) == RTN_LOCAL;
}

static int vnet_sockopt(struct socket *sock, int opt, int val)
{
	return sock->ops->setsockopt(sock, SOL_IP, opt, KERNEL_SOCKPTR(&val),
				     sizeof(val));
}

static int vnet_group_op(struct vnet_net *vn, struct sock *sk, __be32 group,
			 bool join)
{
	struct ip_mreqn mreq = {
		.imr_multiaddr.s_addr = group,
		.imr_address.s_addr = vn->addr,
		.imr_ifindex = vn->ifindex,
	};

	ASSERT_RTNL();
	return join ? ip_mc_join_group(sk, &mreq) : ip_mc_leave_group(sk, &mreq);
}

/*
 * Opens the socket when the namespace gets its first vnet or peer; until
 * then port 1798 stays free for a vnetd.  Caller holds vn->lock.
 */
int vnet_socket_open(struct vnet_net *vn, struct netlink_ext_ack *extack)
{
	struct udp_port_cfg port = {
		.family = AF_INET,
		.local_ip.s_addr = htonl(INADDR_ANY),
		.local_udp_port = htons(VNET_PORT),
		.use_udp_checksums = false,
	};
	struct udp_tunnel_sock_cfg cfg = {
		.sk_user_data = vn,
		.encap_type = 1,
		.encap_rcv = vnet_udp_rcv,
	};
	struct socket *sock;
	int err;

	if (rcu_access_pointer(vn->sock))
		return 0;
	if (!vn->addr) {
		NL_SET_ERR_MSG(extack, "no underlay address set in this namespace");
		return -EDESTADDRREQ;
	}
	/*
	 * A vnetd may have sealed for this namespace while the port was free,
	 * and the peers' windows may hold our old session: start a new one.
	 */
	err = vnet_session_new(vn, GFP_KERNEL);
	if (err) {
		NL_SET_ERR_MSG(extack, "no memory for a new sealing session");
		return err;
	}
	err = udp_sock_create(vn->net, &port, &sock);
	if (err) {
		NL_SET_ERR_MSG(extack,
			       "cannot bind UDP port 1798 (is vnetd running in this namespace?)");
		return err;
	}
	/* Our own floods must not come back to us, and only our group counts. */
	err = vnet_sockopt(sock, IP_MULTICAST_LOOP, 0);
	if (!err)
		err = vnet_sockopt(sock, IP_MULTICAST_ALL, 0);
	if (err)
		goto fail;
	rtnl_lock();
	err = vnet_group_op(vn, sock->sk, vn->group, true);
	if (!err) {
		WRITE_ONCE(vn->joined[0], vn->group);
		WRITE_ONCE(vn->njoined, 1);
	}
	rtnl_unlock();
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot join the multicast group on the underlay device");
		goto fail;
	}
	setup_udp_tunnel_sock(vn->net, sock->sk, &cfg);
	rcu_assign_pointer(vn->sock, sock);
	queue_delayed_work(system_power_efficient_wq, &vn->sweep,
			   VNET_SWEEP_INTERVAL);
	return 0;
fail:
	sock_release(sock);
	return err;
}

/* Caller holds vn->lock, not RTNL: closing the socket leaves its groups. */
void vnet_socket_close(struct vnet_net *vn)
{
	struct socket *sock = rcu_dereference_protected(vn->sock,
							lockdep_is_held(&vn->lock));

	if (!sock)
		return;
	RCU_INIT_POINTER(vn->sock, NULL);
	WRITE_ONCE(vn->njoined, 0);
	/* Waits for a grace period, so no receive path still uses the tables. */
	udp_tunnel_sock_release(sock->sk);
	cancel_delayed_work_sync(&vn->sweep);
	vnet_table_flush(&vn->varp, NULL);
	vnet_table_flush(&vn->vifs, NULL);
	vnet_super_flush(&vn->supers);
}

/*
 * Frees port 1798 once nothing needs it, else leaves the groups of vnets
 * that are gone.  Caller holds vn->lock.
 */
void vnet_maybe_close(struct vnet_net *vn)
{
	bool idle;

	rtnl_lock();
	idle = !vnet_any(vn) && list_empty(&vn->peers);
	if (!idle)
		vnet_sync_groups(vn, 0, NULL);
	rtnl_unlock();
	if (idle)
		vnet_socket_close(vn);
}

/*
 * Queued by every vnet device's ndo_uninit: one deleted behind the module's
 * back (`ip link del vnif97`, or a batch of rtnl deletions) may have been the
 * last user of the socket, and closing it takes vn->lock and a grace period,
 * which the RTNL holder that deleted the device cannot wait for.
 */
void vnet_idle_work(struct work_struct *work)
{
	struct vnet_net *vn = container_of(work, struct vnet_net, idle);

	mutex_lock(&vn->lock);
	vnet_maybe_close(vn);
	mutex_unlock(&vn->lock);
}

static bool vnet_group_in(const __be32 *groups, unsigned int n, __be32 group)
{
	while (n--)
		if (groups[n] == group)
			return true;
	return false;
}

/*
 * Makes the socket's memberships the groups the namespace needs: the shared
 * one, each vnet's own and @extra (0: none; the group of a vnet about to be
 * made).  Leaves first, as the kernel's limit counts memberships.  A failed
 * join leaves the others joined; the caller syncs again after undoing what
 * needed it.  Caller holds vn->lock and RTNL.
 */
int vnet_sync_groups(struct vnet_net *vn, __be32 extra,
		     struct netlink_ext_ack *extack)
{
	struct socket *sock = rcu_dereference_protected(vn->sock,
							lockdep_is_held(&vn->lock));
	__be32 want[VNET_MAX_GROUPS];
	unsigned int nwant = 0, i, n;
	struct vnet_dev *vd;
	int err;

	ASSERT_RTNL();
	if (!sock)
		return 0;
	want[nwant++] = vn->group;
	if (extra && extra != vn->group)
		want[nwant++] = extra;
	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++) {
		hlist_for_each_entry_rcu(vd, &vn->vnets[i], node,
					 lockdep_rtnl_is_held()) {
			if (!vd->group || vnet_group_in(want, nwant, vd->group))
				continue;
			if (nwant == VNET_MAX_GROUPS) {
				NL_SET_ERR_MSG(extack,
					       "too many multicast groups in this namespace (at most "
					       __stringify(VNET_MAX_GROUPS) ")");
				return -ENOSPC;
			}
			want[nwant++] = vd->group;
		}
	}
	for (i = 0, n = 0; i < vn->njoined; i++) {
		if (vnet_group_in(want, nwant, vn->joined[i]))
			WRITE_ONCE(vn->joined[n++], vn->joined[i]);
		else
			vnet_group_op(vn, sock->sk, vn->joined[i], false);
	}
	WRITE_ONCE(vn->njoined, n);
	for (i = 0; i < nwant; i++) {
		if (vnet_group_in(vn->joined, vn->njoined, want[i]))
			continue;
		err = vnet_group_op(vn, sock->sk, want[i], true);
		if (err) {
			NL_SET_ERR_MSG(extack,
				       "cannot join the multicast group (more than net.ipv4.igmp_max_memberships?)");
			return err;
		}
		WRITE_ONCE(vn->joined[vn->njoined], want[i]);
		WRITE_ONCE(vn->njoined, vn->njoined + 1);
	}
	return 0;
}

/* Leaves every group, before the underlay device changes. */
static void vnet_leave_groups(struct vnet_net *vn, struct socket *sock)
{
	unsigned int i;

	for (i = 0; i < vn->njoined; i++)
		vnet_group_op(vn, sock->sk, vn->joined[i], false);
	WRITE_ONCE(vn->njoined, 0);
}

/* Caller holds vn->lock. */
int vnet_set_group(struct vnet_net *vn, __be32 group,
		   struct netlink_ext_ack *extack)
{
	__be32 old = vn->group;
	int err;

	if (!ipv4_is_multicast(group)) {
		NL_SET_ERR_MSG(extack, "not a multicast address (224.0.0.0/4)");
		return -EINVAL;
	}
	if (group == old)
		return 0;
	rtnl_lock();
	WRITE_ONCE(vn->group, group);
	err = vnet_sync_groups(vn, 0, extack);
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot join the new multicast group");
		WRITE_ONCE(vn->group, old);
		vnet_sync_groups(vn, 0, NULL);
	}
	rtnl_unlock();
	return err;
}

/* Caller holds vn->lock.  The address must be one of this namespace's. */
int vnet_set_underlay(struct vnet_net *vn, __be32 addr,
		      struct netlink_ext_ack *extack)
{
	struct socket *sock = rcu_dereference_protected(vn->sock,
							lockdep_is_held(&vn->lock));
	const struct in_ifaddr *ifa;
	struct in_device *in_dev;
	struct net_device *dev;
	__be32 mask = 0;
	int err = 0;

	rtnl_lock();
	dev = __ip_dev_find(vn->net, addr, false);
	in_dev = dev ? __in_dev_get_rtnl(dev) : NULL;
	if (!in_dev) {
		NL_SET_ERR_MSG(extack, "not an address of this namespace");
		err = -EADDRNOTAVAIL;
		goto out;
	}
	in_dev_for_each_ifa_rtnl(ifa, in_dev) {
		if (ifa->ifa_local == addr)
			mask = ifa->ifa_mask;
	}
	if (sock && dev->ifindex != vn->ifindex) {
		__be32 old_addr = vn->addr;
		int old_ifindex = vn->ifindex;

		vnet_leave_groups(vn, sock);
		WRITE_ONCE(vn->ifindex, dev->ifindex);
		WRITE_ONCE(vn->addr, addr);
		err = vnet_sync_groups(vn, 0, NULL);
		if (err) {
			/* Keep receiving the groups where we did. */
			vnet_leave_groups(vn, sock);
			WRITE_ONCE(vn->ifindex, old_ifindex);
			WRITE_ONCE(vn->addr, old_addr);
			vnet_sync_groups(vn, 0, NULL);
			NL_SET_ERR_MSG(extack, "cannot join the multicast groups on that device");
			goto out;
		}
	}
	WRITE_ONCE(vn->ifindex, dev->ifindex);
	WRITE_ONCE(vn->addr, addr);
	WRITE_ONCE(vn->mask, mask);
out:
	rtnl_unlock();
	return err;
}

/* The route to @daddr, from @cache when it holds one. */
static struct rtable *vnet_route(struct vnet_net *vn, __be32 daddr, u8 proto,
				 struct dst_cache *cache, __be32 *saddr)
{
	struct flowi4 fl4 = {
		.daddr = daddr,
		.flowi4_proto = proto,
	};
	struct rtable *rt;

	if (cache) {
		rt = dst_cache_get_ip4(cache, saddr);
		if (rt)
			return rt;
	}
	if (ipv4_is_multicast(daddr)) {
		fl4.flowi4_oif = READ_ONCE(vn->ifindex);
		fl4.saddr = READ_ONCE(vn->addr);
	}
	rt = ip_route_output_key(vn->net, &fl4);
	if (IS_ERR(rt))
		return rt;
	*saddr = fl4.saddr;
	if (cache)
		dst_cache_set_ip4(cache, &rt->dst, fl4.saddr);
	return rt;
}

static struct rtable *vnet_xmit_prepare(struct vnet_net *vn,
					struct sk_buff *skb, __be32 daddr,
					u8 proto, unsigned int hlen,
					struct dst_cache *cache, __be32 *saddr)
{
	struct rtable *rt = vnet_route(vn, daddr, proto, cache, saddr);

	if (IS_ERR(rt)) {
		vnet_drop(vn, VNET_D_NO_ROUTE);
		return NULL;
	}
	if (skb_cow_head(skb, LL_RESERVED_SPACE(rt->dst.dev) +
			 rt->dst.header_len + sizeof(struct iphdr) + hlen)) {
		ip_rt_put(rt);
		vnet_drop(vn, VNET_D_NO_MEMORY);
		return NULL;
	}
	return rt;
}

/*
 * A TCP super-frame whose segments, encapsulated, would exceed the underlay
 * MTU gets a smaller segment size instead: every segment then leaves whole,
 * where the reference's full-size frames were fragmented in two.  The VM
 * keeps MTU 1500; its TCP never learns of it.  @room is what the underlay
 * leaves for an inner frame.  The header is private after
 * iptunnel_handle_offloads(), so the shared info may change.
 */
static void vnet_fit_segments(struct sk_buff *skb, unsigned int room)
{
	struct skb_shared_info *shinfo = skb_shinfo(skb);
	unsigned int hdrs;

	if (!skb_is_gso(skb) ||
	    !(shinfo->gso_type & (SKB_GSO_TCPV4 | SKB_GSO_TCPV6)))
		return;
	hdrs = skb_inner_tcp_all_headers(skb);
	if (hdrs + shinfo->gso_size <= room || room <= hdrs + 536)
		return;
	shinfo->gso_size = room - hdrs;
	/* Recount the segments where it matters, as after any resize. */
	shinfo->gso_type |= SKB_GSO_DODGY;
	shinfo->gso_segs = 0;
}

/*
 * Sends @prefix + skb->data as a UDP datagram from port 1798, routed through
 * @cache when it is not NULL (a VARP entry's).  For @data
 * frames the inner Ethernet frame keeps its offloads: a TCP super-frame
 * leaves as one UDP tunnel GSO packet, segmented as late as possible.
 * Consumes @skb.  Called under rcu_read_lock().
 */
void vnet_udp_xmit(struct vnet_net *vn, struct sk_buff *skb, __be32 daddr,
		   __be16 dport, const u8 *prefix, unsigned int plen,
		   struct dst_cache *cache, bool data)
{
	struct socket *sock = rcu_dereference(vn->sock);
	struct rtable *rt;
	__be32 saddr;

	if (unlikely(!sock))
		goto drop;
	rt = vnet_xmit_prepare(vn, skb, daddr, IPPROTO_UDP,
			       sizeof(struct udphdr) + plen, cache, &saddr);
	if (!rt)
		goto drop;
	if (data) {
		if (iptunnel_handle_offloads(skb, SKB_GSO_UDP_TUNNEL)) {
			ip_rt_put(rt);
			vnet_drop(vn, VNET_D_SEND_ERROR);
			goto drop;
		}
		skb_set_inner_protocol(skb, htons(ETH_P_TEB));
		vnet_fit_segments(skb, dst_mtu(&rt->dst) - sizeof(struct iphdr) -
				  sizeof(struct udphdr) - plen);
	}
	if (plen)
		memcpy(__skb_push(skb, plen), prefix, plen);
	udp_tunnel_xmit_skb(rt, sock->sk, skb, saddr, daddr, 0, VNET_TTL, 0,
			    htons(VNET_PORT), dport, false, true, 0);
	return;
drop:
	kfree_skb(skb);
}

/*
 * Sends @prefix + skb->data as an IPv4 packet of protocol @proto.  A non-zero
 * @saddr replaces the route's source: forwarded multicast is re-sent on the
 * local network as if its origin had sent it (reference section 5).
 * Consumes @skb.  Called under rcu_read_lock().
 */
void vnet_ip_xmit(struct vnet_net *vn, struct sk_buff *skb, __be32 saddr,
		  __be32 daddr, u8 proto, u8 ttl, bool df, const u8 *prefix,
		  unsigned int plen, struct dst_cache *cache)
{
	struct socket *sock = rcu_dereference(vn->sock);
	struct rtable *rt;
	__be32 rsaddr;

	if (unlikely(!sock))
		goto drop;
	rt = vnet_xmit_prepare(vn, skb, daddr, proto, plen, cache, &rsaddr);
	if (!rt)
		goto drop;
	if (plen)
		memcpy(__skb_push(skb, plen), prefix, plen);
	iptunnel_xmit(sock->sk, rt, skb, saddr ?: rsaddr, daddr, proto, 0, ttl,
		      df ? htons(IP_DF) : 0, false, 0);
	return;
drop:
	kfree_skb(skb);
}
