// SPDX-License-Identifier: GPL-2.0
/*
 * Loop protection for multicast relayed between subnets.  The original had
 * none beyond a source check, so two forwarders on one subnet bounced floods
 * forever.  A packet is identified by its origin and payload; a relayed copy
 * seen again within VNET_FLOOD_WINDOW is a duplicate.  The same rule as
 * vnetd's FloodFilter, so mixed hosts behave alike.
 *
 * The filter is a direct-mapped array of recent keys: a collision evicts the
 * older key, which can only let a duplicate through, never drop a new packet.
 */
#include <linux/slab.h>

#include "vnet.h"

int vnet_flood_init(struct vnet_flood_filter *f)
{
	f->slots = kvcalloc(1U << VNET_FLOOD_BITS, sizeof(*f->slots),
			    GFP_KERNEL_ACCOUNT);
	if (!f->slots)
		return -ENOMEM;
	spin_lock_init(&f->lock);
	get_random_bytes(&f->secret, sizeof(f->secret));
	return 0;
}

void vnet_flood_free(struct vnet_flood_filter *f)
{
	kvfree(f->slots);
	f->slots = NULL;
}

/*
 * Records a multicast payload from @origin.  For a @relayed copy (one that
 * came through a peer), returns true when it was seen within the window.  A
 * copy straight from its origin is never a duplicate itself, so a sender's
 * quick repeats pass, but a relayed copy of it arriving later is.
 */
bool vnet_flood_seen(struct vnet_flood_filter *f, __be32 origin,
		     const void *data, unsigned int len, bool relayed)
{
	u64 key = siphash(data, len, &f->secret) ^
		  ((u64)(__force u32)origin << 21);
	struct vnet_flood_slot *slot;
	bool seen = false;

	slot = &f->slots[key & ((1U << VNET_FLOOD_BITS) - 1)];
	spin_lock(&f->lock);
	if (relayed && slot->key == key &&
	    time_before_eq(jiffies, slot->when + VNET_FLOOD_WINDOW))
		seen = true;
	else
		*slot = (struct vnet_flood_slot){ .key = key, .when = jiffies };
	spin_unlock(&f->lock);
	return seen;
}
