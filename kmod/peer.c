// SPDX-License-Identifier: GPL-2.0
/*
 * Peers: hosts that multicast is forwarded to and accepted from, so a vnet
 * spans subnets whose routers do not route multicast (reference section 5).
 * The list is short and read under RCU on the multicast paths only.
 */
#include <linux/slab.h>

#include "vnet.h"

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

/* Adds a peer, or changes the port of a known one.  Caller holds vn->lock. */
int vnet_peer_add(struct vnet_net *vn, __be32 addr, u16 port)
{
	struct vnet_peer *p = vnet_peer_find(vn, addr);

	if (p) {
		WRITE_ONCE(p->port, port);
		return 0;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	p->addr = addr;
	p->port = port;
	list_add_tail_rcu(&p->list, &vn->peers);
	return 0;
}

int vnet_peer_del(struct vnet_net *vn, __be32 addr)
{
	struct vnet_peer *p = vnet_peer_find(vn, addr);

	if (!p)
		return -ENOENT;
	list_del_rcu(&p->list);
	kfree_rcu(p, rcu);
	return 0;
}

void vnet_peer_flush(struct vnet_net *vn)
{
	struct vnet_peer *p, *tmp;

	list_for_each_entry_safe(p, tmp, &vn->peers, list) {
		list_del_rcu(&p->list);
		kfree_rcu(p, rcu);
	}
}
