// SPDX-License-Identifier: GPL-2.0
/*
 * Peers: hosts that multicast is forwarded to and accepted from, so a vnet
 * spans subnets whose routers do not route multicast (reference section 5).
 * The list is read under RCU on the multicast paths only, and kept short:
 * every broadcast frame is copied to each peer, and root in a user namespace
 * may add them, so a namespace has at most VNET_MAX_PEERS, charged to the
 * memory cgroup of whoever added them.
 */
#include <linux/slab.h>
#include <linux/stringify.h>
#include <net/route.h>

#include "vnet.h"

/*
 * The peer rule, shared with vnetd and vn (vnet/model/peer.py, whose texts
 * these are): a unicast IPv4 address that is neither loopback nor one of
 * this namespace's own, as its local routing table says.
 */
int vnet_peer_check(struct net *net, __be32 addr,
		    struct netlink_ext_ack *extack)
{
	if (ipv4_is_loopback(addr)) {
		NL_SET_ERR_MSG(extack, "a peer must not be a loopback address");
		return -EINVAL;
	}
	if (ipv4_is_multicast(addr) || ipv4_is_zeronet(addr) ||
	    (addr & htonl(0xf0000000)) == htonl(0xf0000000)) {
		NL_SET_ERR_MSG(extack, "a peer must be a unicast address");
		return -EINVAL;
	}
	switch (inet_addr_type(net, addr)) {
	case RTN_LOCAL:
		NL_SET_ERR_MSG(extack,
			       "a peer must not be an address of this host");
		return -EINVAL;
	case RTN_BROADCAST:
		NL_SET_ERR_MSG(extack, "a peer must be a unicast address");
		return -EINVAL;
	}
	return 0;
}

struct vnet_peer *vnet_peer_find(struct vnet_net *vn, __be32 addr)
{
	struct vnet_peer *p;

	list_for_each_entry_rcu(p, &vn->peers, list,
				lockdep_is_held(&vn->lock)) {
		if (p->addr == addr)
			return p;
	}
	return NULL;
}

/*
 * Adds a peer, or changes the port of a known one.  Returns -ENOSPC when the
 * namespace has VNET_MAX_PEERS already.  Caller holds vn->lock.
 */
int vnet_peer_add(struct vnet_net *vn, __be32 addr, u16 port,
		  struct netlink_ext_ack *extack)
{
	struct vnet_peer *p = vnet_peer_find(vn, addr);

	if (p) {
		WRITE_ONCE(p->port, port);
		return 0;
	}
	if (vn->npeers >= VNET_MAX_PEERS) {
		/* vnet/model/peer.py's TOO_MANY, as vnetd says it */
		NL_SET_ERR_MSG(extack, "a host has at most " __stringify(VNET_MAX_PEERS) " peers");
		return -ENOSPC;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL_ACCOUNT);
	if (!p)
		return -ENOMEM;
	p->addr = addr;
	p->port = port;
	list_add_tail_rcu(&p->list, &vn->peers);
	vn->npeers++;
	return 0;
}

int vnet_peer_del(struct vnet_net *vn, __be32 addr)
{
	struct vnet_peer *p = vnet_peer_find(vn, addr);

	if (!p)
		return -ENOENT;
	list_del_rcu(&p->list);
	kfree_rcu(p, rcu);
	vn->npeers--;
	return 0;
}

void vnet_peer_flush(struct vnet_net *vn)
{
	struct vnet_peer *p, *tmp;

	list_for_each_entry_safe(p, tmp, &vn->peers, list) {
		list_del_rcu(&p->list);
		kfree_rcu(p, rcu);
	}
	vn->npeers = 0;
}
