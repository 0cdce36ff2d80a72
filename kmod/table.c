// SPDX-License-Identifier: GPL-2.0
/*
 * The (vnet, MAC) tables: the VARP cache (where remote MACs live) and the
 * vif table (which MACs are local).  Lookups and refreshes run in softirq
 * under RCU without locks; only inserts and removals take the spinlock.
 */
#include <linux/jhash.h>
#include <linux/slab.h>

#include "vnet.h"

static u32 vnet_table_hash(const u8 *vnet, const u8 *mac)
{
	return jhash(mac, ETH_ALEN, jhash(vnet, VNET_ID_LEN, 0)) &
	       ((1U << VNET_TABLE_BITS) - 1);
}

int vnet_table_init(struct vnet_mac_table *t, bool routes)
{
	unsigned int i;

	t->buckets = kvcalloc(1U << VNET_TABLE_BITS, sizeof(*t->buckets),
			      GFP_KERNEL);
	if (!t->buckets)
		return -ENOMEM;
	for (i = 0; i < 1U << VNET_TABLE_BITS; i++)
		INIT_HLIST_HEAD(&t->buckets[i]);
	spin_lock_init(&t->lock);
	t->count = 0;
	t->sweeps = 0;
	t->routes = routes;
	return 0;
}

void vnet_table_free(struct vnet_mac_table *t)
{
	vnet_table_flush(t, NULL);
	/* Readers may still walk the buckets until a grace period passes. */
	synchronize_rcu();
	kvfree(t->buckets);
	t->buckets = NULL;
}

struct vnet_mac_entry *vnet_table_lookup(struct vnet_mac_table *t,
					 const u8 *vnet, const u8 *mac)
{
	struct vnet_mac_entry *e;

	hlist_for_each_entry_rcu(e, &t->buckets[vnet_table_hash(vnet, mac)],
				 node, lockdep_is_held(&t->lock)) {
		if (ether_addr_equal(e->mac, mac) &&
		    !memcmp(e->vnet, vnet, VNET_ID_LEN))
			return e;
	}
	return NULL;
}

static void vnet_entry_free(struct rcu_head *head)
{
	struct vnet_mac_entry *e = container_of(head, struct vnet_mac_entry, rcu);

	dst_cache_destroy(&e->dst_cache);
	kfree(e);
}

static struct vnet_mac_entry *vnet_entry_new(struct vnet_mac_table *t,
					     const u8 *vnet, const u8 *mac,
					     __be32 addr)
{
	struct vnet_mac_entry *e = kzalloc(sizeof(*e), GFP_ATOMIC);

	if (!e)
		return NULL;
	if (t->routes && dst_cache_init(&e->dst_cache, GFP_ATOMIC)) {
		kfree(e);
		return NULL;
	}
	memcpy(e->vnet, vnet, VNET_ID_LEN);
	ether_addr_copy(e->mac, mac);
	e->addr = addr;
	e->updated = jiffies;
	return e;
}

static void vnet_table_unlink(struct vnet_mac_table *t,
			      struct vnet_mac_entry *e)
{
	hlist_del_rcu(&e->node);
	t->count--;
	call_rcu(&e->rcu, vnet_entry_free);
}

/*
 * Refreshes or creates an entry.  A MAC that moved to another address gets a
 * new entry, so a cached route is never used for the wrong host.  Returns 1
 * when the entry is new, 0 when it was refreshed, or a negative errno.
 * Callers hold rcu_read_lock().
 */
int vnet_table_update(struct vnet_mac_table *t, const u8 *vnet,
		      const u8 *mac, __be32 addr)
{
	u32 h = vnet_table_hash(vnet, mac);
	unsigned long now = jiffies;
	struct vnet_mac_entry *e, *n;
	int ret = 1;

	e = vnet_table_lookup(t, vnet, mac);
	if (likely(e && e->addr == addr)) {
		/* Skip the store when nothing changed: fewer dirty lines. */
		if (READ_ONCE(e->updated) != now)
			WRITE_ONCE(e->updated, now);
		return 0;
	}
	spin_lock_bh(&t->lock);
	/* Another CPU may have changed it since the lookup. */
	e = vnet_table_lookup(t, vnet, mac);
	if (e && e->addr == addr) {
		WRITE_ONCE(e->updated, now);
		ret = 0;
		goto out;
	}
	if (!e && t->count >= VNET_TABLE_MAX) {
		ret = -ENOSPC;
		goto out;
	}
	n = vnet_entry_new(t, vnet, mac, addr);
	if (!n) {
		/* Better flooded than sent to where the MAC was. */
		if (e)
			vnet_table_unlink(t, e);
		ret = -ENOMEM;
		goto out;
	}
	if (e) {
		hlist_replace_rcu(&e->node, &n->node);
		call_rcu(&e->rcu, vnet_entry_free);
		ret = 0;
	} else {
		hlist_add_head_rcu(&n->node, &t->buckets[h]);
		t->count++;
	}
out:
	spin_unlock_bh(&t->lock);
	return ret;
}

bool vnet_table_remove(struct vnet_mac_table *t, const u8 *vnet,
		       const u8 *mac)
{
	struct vnet_mac_entry *e;
	bool found = false;

	spin_lock_bh(&t->lock);
	e = vnet_table_lookup(t, vnet, mac);
	if (e) {
		vnet_table_unlink(t, e);
		found = true;
	}
	spin_unlock_bh(&t->lock);
	return found;
}

/*
 * Removes the entries that have expired (@expired), or every entry of one
 * vnet, or of all vnets when @vnet is NULL.
 */
static void vnet_table_prune(struct vnet_mac_table *t, const u8 *vnet,
			     bool expired)
{
	struct vnet_mac_entry *e;
	struct hlist_node *tmp;
	unsigned int i;

	spin_lock_bh(&t->lock);
	for (i = 0; i < 1U << VNET_TABLE_BITS; i++) {
		hlist_for_each_entry_safe(e, tmp, &t->buckets[i], node) {
			if (expired ? time_after(jiffies, READ_ONCE(e->updated) +
						 VNET_ENTRY_TTL) :
			    !vnet || !memcmp(e->vnet, vnet, VNET_ID_LEN))
				vnet_table_unlink(t, e);
		}
	}
	if (expired)
		t->sweeps++;
	spin_unlock_bh(&t->lock);
}

/*
 * How full the table is, and its longest chain: what each lookup may have
 * to walk.  Called under RCU.
 */
void vnet_table_stats(struct vnet_mac_table *t, u32 *entries, u32 *longest)
{
	struct vnet_mac_entry *e;
	unsigned int i;
	u32 n;

	*entries = READ_ONCE(t->count);
	*longest = 0;
	for (i = 0; i < 1U << VNET_TABLE_BITS; i++) {
		n = 0;
		hlist_for_each_entry_rcu(e, &t->buckets[i], node)
			n++;
		*longest = max(*longest, n);
	}
}

void vnet_table_flush(struct vnet_mac_table *t, const u8 *vnet)
{
	vnet_table_prune(t, vnet, false);
}

void vnet_table_sweep(struct vnet_mac_table *t)
{
	vnet_table_prune(t, NULL, true);
}

void vnet_sweep_work(struct work_struct *work)
{
	struct vnet_net *vn = container_of(to_delayed_work(work),
					   struct vnet_net, sweep);

	vnet_table_sweep(&vn->varp);
	vnet_table_sweep(&vn->vifs);
	queue_delayed_work(system_power_efficient_wq, &vn->sweep,
			   VNET_SWEEP_INTERVAL);
}
