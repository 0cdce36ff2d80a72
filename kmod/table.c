// SPDX-License-Identifier: GPL-2.0
/*
 * The (vnet, MAC) tables: the VARP cache (where remote MACs live) and the
 * vif table (which MACs are local).  Lookups and refreshes run in softirq
 * under RCU without locks; only inserts and removals take the spinlock.
 *
 * Remote senders choose the MACs and vnet ids this table is fed with, so:
 * the bucket is a keyed hash (SipHash, a random key per table), or anyone
 * who knows a vnet id could put every entry in one chain; each vnet holds
 * at most VNET_MAX_VNET_MACS entries, so a flooded vnet cannot take the
 * room of the others; and the route caches of the VARP cache belong to
 * care-of addresses, shared by their entries, not to each learned MAC.
 */
#include <linux/slab.h>

#include "vnet.h"

#define VNET_BUCKETS		BIT(VNET_TABLE_BITS)
#define VNET_REMOTE_BUCKETS	BIT(VNET_REMOTE_BITS)
#define VNET_GFP_ATOMIC		(GFP_ATOMIC | __GFP_NOWARN)

static struct vnet_net *vnet_table_net(struct vnet_mac_table *t)
{
	if (t->kind == VNET_TABLE_VARP)
		return container_of(t, struct vnet_net, varp);
	return container_of(t, struct vnet_net, vifs);
}

static u32 vnet_table_hash(const struct vnet_mac_table *t, const u8 *vnet,
			   const u8 *mac)
{
	u64 w[3] = {};

	memcpy(w, vnet, VNET_ID_LEN);
	memcpy(&w[2], mac, ETH_ALEN);
	return siphash_3u64(w[0], w[1], w[2], &t->key) & (VNET_BUCKETS - 1);
}

int vnet_table_init(struct vnet_mac_table *t, enum vnet_table_kind kind)
{
	unsigned int i;

	t->buckets = kvcalloc(VNET_BUCKETS, sizeof(*t->buckets),
			      GFP_KERNEL_ACCOUNT);
	if (!t->buckets)
		return -ENOMEM;
	for (i = 0; i < VNET_BUCKETS; i++)
		INIT_HLIST_HEAD(&t->buckets[i]);
	t->remotes = NULL;
	if (kind == VNET_TABLE_VARP) {
		t->remotes = kvcalloc(VNET_REMOTE_BUCKETS, sizeof(*t->remotes),
				      GFP_KERNEL_ACCOUNT);
		if (!t->remotes) {
			kvfree(t->buckets);
			return -ENOMEM;
		}
		for (i = 0; i < VNET_REMOTE_BUCKETS; i++)
			INIT_HLIST_HEAD(&t->remotes[i]);
	}
	get_random_bytes(&t->key, sizeof(t->key));
	spin_lock_init(&t->lock);
	t->count = 0;
	t->nremotes = 0;
	t->sweeps = 0;
	t->kind = kind;
	return 0;
}

void vnet_table_free(struct vnet_mac_table *t)
{
	vnet_table_flush(t, NULL);
	/* Readers may still walk the buckets until a grace period passes. */
	synchronize_rcu();
	kvfree(t->remotes);
	t->remotes = NULL;
	kvfree(t->buckets);
	t->buckets = NULL;
}

struct vnet_mac_entry *vnet_table_lookup(struct vnet_mac_table *t,
					 const u8 *vnet, const u8 *mac)
{
	struct vnet_mac_entry *e;

	hlist_for_each_entry_rcu(e, &t->buckets[vnet_table_hash(t, vnet, mac)],
				 node, lockdep_is_held(&t->lock)) {
		if (ether_addr_equal(e->mac, mac) &&
		    !memcmp(e->vnet, vnet, VNET_ID_LEN))
			return e;
	}
	return NULL;
}

static void vnet_remote_free(struct rcu_head *head)
{
	struct vnet_remote *r = container_of(head, struct vnet_remote, rcu);

	dst_cache_destroy(&r->dst_cache);
	kfree(r);
}

/*
 * The route cache of @addr, shared with the other entries there, or NULL
 * when VNET_REMOTE_MAX addresses have one already (or memory is short): the
 * entry then works without a cache.  Caller holds the table's lock.
 */
static struct vnet_remote *vnet_remote_get(struct vnet_mac_table *t,
					   __be32 addr, gfp_t gfp)
{
	struct hlist_head *head;
	struct vnet_remote *r;

	head = &t->remotes[siphash_1u32((__force u32)addr, &t->key) &
			   (VNET_REMOTE_BUCKETS - 1)];
	hlist_for_each_entry(r, head, node) {
		if (r->addr == addr) {
			r->users++;
			return r;
		}
	}
	if (t->nremotes >= VNET_REMOTE_MAX)
		return NULL;
	r = kzalloc(sizeof(*r), gfp);
	if (!r)
		return NULL;
	if (dst_cache_init(&r->dst_cache, gfp)) {
		kfree(r);
		return NULL;
	}
	r->addr = addr;
	r->users = 1;
	hlist_add_head(&r->node, head);
	t->nremotes++;
	return r;
}

/* Readers holding an entry may use its remote until a grace period ends. */
static void vnet_remote_put(struct vnet_mac_table *t, struct vnet_remote *r)
{
	if (!r || --r->users)
		return;
	hlist_del(&r->node);
	t->nremotes--;
	call_rcu(&r->rcu, vnet_remote_free);
}

static struct vnet_mac_entry *vnet_entry_new(struct vnet_mac_table *t,
					     struct vnet_dev *vd, const u8 *mac,
					     __be32 addr, gfp_t gfp)
{
	struct vnet_mac_entry *e = kzalloc(sizeof(*e), gfp);

	if (!e)
		return NULL;
	if (t->remotes)
		e->remote = vnet_remote_get(t, addr, gfp);
	e->vd = vd;
	memcpy(e->vnet, vd->id, VNET_ID_LEN);
	ether_addr_copy(e->mac, mac);
	e->addr = addr;
	e->updated = jiffies;
	return e;
}

/* Entry @e leaves the table (replaced by @n, if not NULL). */
static void vnet_table_unlink(struct vnet_mac_table *t,
			      struct vnet_mac_entry *e, struct vnet_mac_entry *n)
{
	if (n) {
		hlist_replace_rcu(&e->node, &n->node);
	} else {
		hlist_del_rcu(&e->node);
		t->count--;
		e->vd->macs[t->kind]--;
	}
	vnet_remote_put(t, e->remote);
	kfree_rcu(e, rcu);
}

/*
 * Refreshes or creates the entry of @mac on @vd's vnet.  A MAC that moved to
 * another address gets a new entry, so a cached route is never used for the
 * wrong host.  Returns 1 when the entry is new, 0 when it was refreshed,
 * -ENOSPC when the vnet (or the plain vnets together) has all the entries it
 * may, -ENOMEM, or -ENODEV when @vd is being deleted.  Callers hold
 * rcu_read_lock().
 */
int vnet_table_update(struct vnet_mac_table *t, struct vnet_dev *vd,
		      const u8 *mac, __be32 addr, gfp_t gfp)
{
	u32 h = vnet_table_hash(t, vd->id, mac);
	unsigned long now = jiffies;
	struct vnet_mac_entry *e, *n;
	__be32 old = 0;
	int ret = 1;

	e = vnet_table_lookup(t, vd->id, mac);
	if (likely(e && e->addr == addr)) {
		/* Skip the store when nothing changed: fewer dirty lines. */
		if (READ_ONCE(e->updated) != now)
			WRITE_ONCE(e->updated, now);
		return 0;
	}
	spin_lock_bh(&t->lock);
	/* Another CPU may have changed it since the lookup. */
	e = vnet_table_lookup(t, vd->id, mac);
	if (e && e->addr == addr) {
		WRITE_ONCE(e->updated, now);
		ret = 0;
		goto out;
	}
	/*
	 * ndo_uninit unhashes the vnet, then flushes its entries under this
	 * lock: whoever found it before must not add one after the flush.
	 */
	if (hlist_unhashed_lockless(&vd->node)) {
		ret = -ENODEV;
		goto out;
	}
	if (!e && (vd->macs[t->kind] >= VNET_MAX_VNET_MACS ||
		   (t->count >= VNET_MAX_TABLE_MACS &&
		    vd->security == VNET_SECURITY_NONE))) {
		ret = -ENOSPC;
		goto out;
	}
	n = vnet_entry_new(t, vd, mac, addr, gfp);
	if (!n) {
		/* Better flooded than sent to where the MAC was. */
		if (e)
			vnet_table_unlink(t, e, NULL);
		ret = -ENOMEM;
		goto out;
	}
	if (e) {
		old = e->addr;
		vnet_table_unlink(t, e, n);
		ret = 0;
	} else {
		hlist_add_head_rcu(&n->node, &t->buckets[h]);
		t->count++;
		vd->macs[t->kind]++;
	}
	/* A local MAC is told by varp_local_mac(), which knows where it was. */
	if (t->kind == VNET_TABLE_VARP)
		vnet_notify_mac(vd->vn, e ? VNET_MAC_EVENT_MOVED :
				VNET_MAC_EVENT_LEARNED, t->kind, vd->id, mac,
				addr, old);
out:
	spin_unlock_bh(&t->lock);
	return ret;
}

/*
 * Learning from a packet in softirq or transmit context: a refusal is
 * counted and the packet goes on.  Returns what vnet_table_update() does.
 */
int vnet_learn(struct vnet_mac_table *t, struct vnet_dev *vd, const u8 *mac,
	       __be32 addr)
{
	int ret = vnet_table_update(t, vd, mac, addr, VNET_GFP_ATOMIC);

	if (ret == -ENOSPC)
		vnet_drop(vd->vn, VNET_D_TABLE_FULL);
	else if (ret == -ENOMEM)
		vnet_drop(vd->vn, VNET_D_NO_MEMORY);
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
		vnet_notify_mac(vnet_table_net(t), VNET_MAC_EVENT_REMOVED,
				t->kind, vnet, mac, e->addr, 0);
		vnet_table_unlink(t, e, NULL);
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
	for (i = 0; i < VNET_BUCKETS; i++) {
		hlist_for_each_entry_safe(e, tmp, &t->buckets[i], node) {
			if (expired ? !time_after(jiffies, READ_ONCE(e->updated) +
						  VNET_ENTRY_TTL) :
			    vnet && memcmp(e->vnet, vnet, VNET_ID_LEN))
				continue;
			if (expired)
				vnet_notify_mac(vnet_table_net(t),
						VNET_MAC_EVENT_EXPIRED, t->kind,
						e->vnet, e->mac, e->addr, 0);
			vnet_table_unlink(t, e, NULL);
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
	for (i = 0; i < VNET_BUCKETS; i++) {
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
