// SPDX-License-Identifier: GPL-2.0
/*
 * The hosts known to take super-frames (doc/wire-format.md, "Super-frames").
 * The original reads a datagram into 1700 bytes, so a GSO frame goes whole
 * only to a host that has shown it takes one: it sent us a super-frame, or
 * announced the super-frame extension.  An announce without the extension
 * takes the host out again.  The set is never swept (a host that takes them
 * keeps taking them) and holds at most VNET_SUPER_MAX hosts; past that, new
 * hosts get plain frames, which every host reads.
 */
#include <linux/slab.h>

#include "vnet.h"

struct vnet_super {
	struct hlist_node node;
	struct rcu_head rcu;
	__be32 addr;
};

static struct hlist_head *vnet_super_head(struct vnet_super_set *s,
					  __be32 addr)
{
	return &s->buckets[siphash_1u32((__force u32)addr, &s->key) &
			   (BIT(VNET_SUPER_BITS) - 1)];
}

void vnet_super_init(struct vnet_super_set *s)
{
	unsigned int i;

	for (i = 0; i < BIT(VNET_SUPER_BITS); i++)
		INIT_HLIST_HEAD(&s->buckets[i]);
	get_random_bytes(&s->key, sizeof(s->key));
	spin_lock_init(&s->lock);
	s->count = 0;
}

void vnet_super_flush(struct vnet_super_set *s)
{
	struct vnet_super *h;
	struct hlist_node *tmp;
	unsigned int i;

	spin_lock_bh(&s->lock);
	for (i = 0; i < BIT(VNET_SUPER_BITS); i++) {
		hlist_for_each_entry_safe(h, tmp, &s->buckets[i], node) {
			hlist_del_rcu(&h->node);
			kfree_rcu(h, rcu);
		}
	}
	s->count = 0;
	spin_unlock_bh(&s->lock);
}

static struct vnet_super *vnet_super_find(struct vnet_super_set *s,
					  __be32 addr)
{
	struct vnet_super *h;

	hlist_for_each_entry_rcu(h, vnet_super_head(s, addr), node,
				 lockdep_is_held(&s->lock)) {
		if (h->addr == addr)
			return h;
	}
	return NULL;
}

/* Called under rcu_read_lock(). */
bool vnet_takes_super(struct vnet_super_set *s, __be32 addr)
{
	return vnet_super_find(s, addr);
}

/* From softirq: takes @addr in (@on) or out of the set. */
void vnet_set_super(struct vnet_super_set *s, __be32 addr, bool on)
{
	struct vnet_super *h;

	/* The common case, a host already known, takes no lock. */
	rcu_read_lock();
	h = vnet_super_find(s, addr);
	rcu_read_unlock();
	if (!!h == on)
		return;
	spin_lock_bh(&s->lock);
	h = vnet_super_find(s, addr);
	if (on && !h && s->count < VNET_SUPER_MAX) {
		h = kzalloc(sizeof(*h), GFP_ATOMIC | __GFP_NOWARN |
			    __GFP_ACCOUNT);
		if (h) {
			h->addr = addr;
			hlist_add_head_rcu(&h->node, vnet_super_head(s, addr));
			s->count++;
		}
	} else if (!on && h) {
		hlist_del_rcu(&h->node);
		kfree_rcu(h, rcu);
		s->count--;
	}
	spin_unlock_bh(&s->lock);
}
