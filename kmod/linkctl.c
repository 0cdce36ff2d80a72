// SPDX-License-Identifier: GPL-2.0
/*
 * Link control of a port (doc/ports.md, "Link control"): suspension and the
 * impairments of the frames the vnet sends out of it, with vnetd's semantics
 * (vnet/datapath/vnetd/linkctl.py).  The settings live in struct vnet_port,
 * which stays while the port waits for its interface, so an interface made
 * again (a container restarted, a VM recreated) has them with no command.
 *
 * A port without link control costs one test on its paths (port->link_on).
 * With one, each frame for the port goes through vnet_linkctl_xmit(), in order:
 * suspended: dropped; loss: dropped with its probability; corrupt: one
 * random bit of one random byte flipped, in a private copy of the data;
 * rate: a token bucket of one frame (a virtual clock), a frame that would
 * wait more than VNET_LINK_QUEUE_TIME behind the ones before it dropped;
 * delay and jitter: a wait drawn uniformly from [delay - jitter,
 * delay + jitter], at least 0.  A frame never leaves before the one before
 * it (netem reorders under jitter; vnetd does not, nor do we).
 *
 * Frames that wait are kept in the port's queue, their times in skb->cb, and
 * one soft hrtimer is armed for the head, never one per frame.  The queue
 * holds at most VNET_LINK_QUEUE_MAX frames (netem's default limit).  When
 * the port's interface goes, or the port, the vnet, the namespace or the
 * module, the timer is cancelled and each queued frame is counted as
 * tap-write-error, as vnetd counts them.
 *
 * Locking: the datapath (softirq) and the timer (soft hrtimer, softirq) take
 * link->lock; control (RTNL) takes it with BHs off.  Frames are sent after
 * the lock is released.
 */
#include <linux/hrtimer.h>
#include <linux/math64.h>
#include <linux/random.h>

#include "vnet.h"

/* The longest a frame waits behind others for the rate (tbf's latency). */
#define VNET_LINK_QUEUE_TIME	(100 * NSEC_PER_MSEC)
/* Times one run of the timer takes the frames due off the queue. */
#define VNET_LINK_ROUNDS	4

struct vnet_linkctl_cb {
	u64 due;			/* ktime_get_ns() when it may leave */
};

static struct vnet_linkctl_cb *vnet_linkctl_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct vnet_linkctl_cb) > sizeof(skb->cb));
	return (struct vnet_linkctl_cb *)skb->cb;
}

/* A random draw below @range (up to 2^64 - 1). */
static u64 vnet_linkctl_random(u64 range)
{
	return mul_u64_u32_shr(range, get_random_u32(), 32);
}

/* True with probability @p / 2^32; @p is at most 2^32 (always). */
static bool vnet_linkctl_chance(u64 p)
{
	return p && (u64)get_random_u32() < p;
}

/* A probability in millionths as a fraction of 2^32. */
static u64 vnet_linkctl_prob(u32 ppm)
{
	return div_u64((u64)ppm << 32, VNET_LINK_PPM_MAX);
}

/*
 * Flips one random bit of one random byte of the Ethernet frame at
 * skb->data, in data of its own (a clone's shared data is copied first).
 * Returns false if that needs memory there is not.
 */
static bool vnet_linkctl_corrupt(struct sk_buff *skb)
{
	unsigned int at;

	if (!skb->len)
		return true;
	/* A checksum computed later would cover the flipped bit. */
	if (skb->ip_summed == CHECKSUM_PARTIAL && !skb_is_gso(skb) &&
	    skb_checksum_help(skb))
		return false;
	at = vnet_linkctl_random(skb->len);
	if (skb_ensure_writable(skb, at + 1))
		return false;
	skb->data[at] ^= 1 << vnet_linkctl_random(8);
	return true;
}

/*
 * A frame for @port, whose link control is on, to send out of its interface
 * @dev: dropped, sent now or queued.  Consumes @skb.  Called under RCU with
 * BHs off.
 */
void vnet_linkctl_xmit(struct vnet_port *port, struct net_device *dev,
		       struct sk_buff *skb)
{
	struct vnet_linkctl *link = &port->link;
	struct vnet_net *vn = port->vd->vn;
	enum vnet_drop why;
	u64 now, due, start;
	bool first;
	s64 wait;

	spin_lock(&link->lock);
	if (link->suspended) {
		why = VNET_D_LINK_SUSPENDED;
		goto drop;
	}
	if (vnet_linkctl_chance(link->loss)) {
		why = VNET_D_LINK_LOSS;
		goto drop;
	}
	if (vnet_linkctl_chance(link->corrupt) && !vnet_linkctl_corrupt(skb)) {
		why = VNET_D_NO_MEMORY;
		goto drop;
	}
	/* A frame behind others waits for them: no room, no frame. */
	if (skb_queue_len(&link->queue) >= VNET_LINK_QUEUE_MAX) {
		why = VNET_D_LINK_RATE;
		goto drop;
	}
	now = ktime_get_ns();
	due = now;
	if (link->rate) {
		start = max(link->free_at, now);
		if (start - now > VNET_LINK_QUEUE_TIME) {
			why = VNET_D_LINK_RATE;
			goto drop;
		}
		link->free_at = start + div64_u64((u64)skb->len * 8 *
						  NSEC_PER_SEC, link->rate);
		due = start;
	}
	if (link->delay || link->jitter) {
		wait = (s64)link->delay - (s64)link->jitter +
		       (s64)vnet_linkctl_random(2 * link->jitter + 1);
		if (wait > 0)
			due += wait;
	}
	/*
	 * Sent now only if nothing is before it: neither queued, nor taken
	 * off the queue by the timer and still on its way out.
	 */
	first = skb_queue_empty(&link->queue) && !link->sending;
	if (due <= now && first) {
		spin_unlock(&link->lock);
		vnet_port_send(port, dev, skb);
		return;
	}
	due = max(due, link->last_due);	/* keep the order */
	link->last_due = due;
	vnet_linkctl_cb(skb)->due = due;
	/*
	 * While it waits, nothing of another device's: no route (which would
	 * hold the underlay device), and the port's interface as its device
	 * (detaching it drops the queue first).
	 */
	skb_dst_drop(skb);
	skb->dev = dev;
	__skb_queue_tail(&link->queue, skb);
	if (first)
		hrtimer_start(&link->timer, ns_to_ktime(due),
			      HRTIMER_MODE_ABS_SOFT);
	spin_unlock(&link->lock);
	return;
drop:
	spin_unlock(&link->lock);
	vnet_drop(vn, why);
	kfree_skb(skb);
}

/*
 * The timer: sends the frames whose time has come, then waits for the next.
 * While it sends them (unlocked), link->sending makes a new frame queue behind
 * them; it looks again until nothing is due, so such a frame is not left.
 */
static enum hrtimer_restart vnet_linkctl_timer(struct hrtimer *timer)
{
	struct vnet_linkctl *link = container_of(timer, struct vnet_linkctl, timer);
	struct vnet_port *port = container_of(link, struct vnet_port, link);
	enum hrtimer_restart ret = HRTIMER_NORESTART;
	struct sk_buff_head due;
	struct net_device *dev;
	struct sk_buff *skb;
	unsigned int rounds;
	u64 now;

	__skb_queue_head_init(&due);
	for (rounds = 0;; rounds++) {
		now = ktime_get_ns();
		spin_lock(&link->lock);
		while (rounds < VNET_LINK_ROUNDS &&
		       (skb = skb_peek(&link->queue)) &&
		       vnet_linkctl_cb(skb)->due <= now) {
			__skb_unlink(skb, &link->queue);
			__skb_queue_tail(&due, skb);
		}
		skb = skb_peek(&link->queue);
		link->sending = !skb_queue_empty(&due);
		if (!link->sending)
			break;
		spin_unlock(&link->lock);

		rcu_read_lock();
		dev = rcu_dereference(port->dev);
		while ((skb = __skb_dequeue(&due))) {
			if (likely(dev)) {
				vnet_port_send(port, dev, skb);
			} else {
				vnet_drop(port->vd->vn, VNET_D_TAP_WRITE_ERROR);
				kfree_skb(skb);
			}
		}
		rcu_read_unlock();
	}
	if (skb) {
		/* Not before now: frames still due after the last round wait
		 * for the next run of the timers, other work goes first.
		 */
		hrtimer_set_expires(timer,
				    ns_to_ktime(max(vnet_linkctl_cb(skb)->due, now)));
		ret = HRTIMER_RESTART;
	} else if (!link->active) {
		/* Removed, its last frames gone: the plain path again. */
		WRITE_ONCE(port->link_on, false);
	}
	spin_unlock(&link->lock);
	return ret;
}

void vnet_linkctl_init(struct vnet_port *port)
{
	struct vnet_linkctl *link = &port->link;

	spin_lock_init(&link->lock);
	__skb_queue_head_init(&link->queue);
	hrtimer_setup(&link->timer, vnet_linkctl_timer, CLOCK_MONOTONIC,
		      HRTIMER_MODE_ABS_SOFT);
}

/*
 * Drops the frames waiting for @port, each counted as tap-write-error, and
 * stops its timer.  The caller has made sure no new frame comes (its
 * interface detached, readers gone).  Process context.
 */
void vnet_linkctl_flush(struct vnet_port *port)
{
	struct vnet_linkctl *link = &port->link;
	struct sk_buff *skb;

	hrtimer_cancel(&link->timer);
	spin_lock_bh(&link->lock);
	while ((skb = __skb_dequeue(&link->queue))) {
		vnet_drop(port->vd->vn, VNET_D_TAP_WRITE_ERROR);
		kfree_skb(skb);
	}
	link->free_at = 0;
	link->last_due = 0;
	if (!link->active)
		WRITE_ONCE(port->link_on, false);
	spin_unlock_bh(&link->lock);
}

/*
 * New settings, live: frames already queued leave as they were scheduled.
 * Caller holds RTNL.
 */
void vnet_linkctl_set(struct vnet_port *port, const struct vnet_linkctl_conf *conf)
{
	struct vnet_linkctl *link = &port->link;

	ASSERT_RTNL();
	spin_lock_bh(&link->lock);
	link->conf = *conf;
	WRITE_ONCE(link->suspended, conf->suspended);
	link->loss = vnet_linkctl_prob(conf->loss_ppm);
	link->corrupt = vnet_linkctl_prob(conf->corrupt_ppm);
	link->delay = (u64)conf->delay_us * NSEC_PER_USEC;
	link->jitter = (u64)conf->jitter_us * NSEC_PER_USEC;
	link->rate = conf->rate;
	link->active = conf->suspended || conf->loss_ppm ||
		       conf->corrupt_ppm || conf->delay_us ||
		       conf->jitter_us || conf->rate;
	if (link->active)
		WRITE_ONCE(port->link_on, true);
	else if (skb_queue_empty(&link->queue))
		WRITE_ONCE(port->link_on, false);
	spin_unlock_bh(&link->lock);
}

/* The settings of @port, as PORT_SET gave them.  Caller holds RTNL or RCU. */
void vnet_linkctl_get(struct vnet_port *port, struct vnet_linkctl_conf *conf)
{
	spin_lock_bh(&port->link.lock);
	*conf = port->link.conf;
	spin_unlock_bh(&port->link.lock);
}
