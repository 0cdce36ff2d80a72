// SPDX-License-Identifier: GPL-2.0
/*
 * Ports: interfaces of the namespace attached to a vnet without a bridge, so
 * that every frame crosses, the link-local groups a bridge keeps to itself
 * (LACP, 802.1X, ...) included.  A port takes its interface's frames with a
 * receive handler, as macvlan and team do, and sends them into the vnet as if
 * the vnet device had sent them; the vnet sends out of it with
 * dev_queue_xmit().
 *
 * A port is bound by name.  A netdevice notifier detaches it when its
 * interface goes (unregistered, moved away or renamed) and attaches it when
 * an interface of that name appears, so a container's veth or a VM's tap
 * made again is back on the vnet with no command.
 *
 * Local switching: the vif table records the attachment each local MAC was
 * last seen on (the vnet device, a port, or an endpoint: endpoint.c); a frame
 * for a local MAC goes to that attachment only, anything else to every local
 * attachment, never back to the one it came from.
 */
#include <linux/if_vlan.h>
#include <linux/inetdevice.h>
#include <linux/u64_stats_sync.h>
#include <net/rtnetlink.h>

#include "vnet.h"

/* 802.3x pause frames: to 01:80:c2:00:00:01, ethertype 0x8808. */
static const u8 vnet_pause_addr[ETH_ALEN] __aligned(2) = {
	0x01, 0x80, 0xc2, 0x00, 0x00, 0x01
};

static void vnet_port_count(struct vnet_port *port, bool rx, unsigned int len)
{
	struct pcpu_sw_netstats *s = this_cpu_ptr(port->stats);

	u64_stats_update_begin(&s->syncp);
	if (rx) {
		u64_stats_inc(&s->rx_packets);
		u64_stats_add(&s->rx_bytes, len);
	} else {
		u64_stats_inc(&s->tx_packets);
		u64_stats_add(&s->tx_bytes, len);
	}
	u64_stats_update_end(&s->syncp);
}

/* The port's packets and bytes, in the rx and tx fields of @st. */
void vnet_port_stats(const struct vnet_port *port,
		     struct rtnl_link_stats64 *st)
{
	unsigned int start;
	int cpu;

	memset(st, 0, sizeof(*st));
	for_each_possible_cpu(cpu) {
		const struct pcpu_sw_netstats *s = per_cpu_ptr(port->stats, cpu);
		u64 rxp, rxb, txp, txb;

		do {
			start = u64_stats_fetch_begin(&s->syncp);
			rxp = u64_stats_read(&s->rx_packets);
			rxb = u64_stats_read(&s->rx_bytes);
			txp = u64_stats_read(&s->tx_packets);
			txb = u64_stats_read(&s->tx_bytes);
		} while (u64_stats_fetch_retry(&s->syncp, start));
		st->rx_packets += rxp;
		st->rx_bytes += rxb;
		st->tx_packets += txp;
		st->tx_bytes += txb;
	}
}

/*
 * Sends a frame (skb->data at its Ethernet header) out of @port's interface
 * @dev now, past its link control.  Consumes @skb.  Called under RCU with
 * BHs off.
 */
void vnet_port_send(struct vnet_port *port, struct net_device *dev,
		    struct sk_buff *skb)
{
	__be16 proto = ((const struct ethhdr *)skb->data)->h_proto;
	unsigned int len = skb->len;
	int ret;

	/* A receive checksum means nothing on the way out. */
	if (skb->ip_summed == CHECKSUM_COMPLETE)
		skb->ip_summed = CHECKSUM_NONE;
	skb->dev = dev;
	skb_reset_mac_header(skb);
	skb_set_network_header(skb, ETH_HLEN);
	skb->protocol = eth_proto_is_802_3(proto) ? proto : htons(ETH_P_802_2);
	skb_clear_tstamp(skb);
	/* net_xmit_eval() takes its argument twice. */
	ret = dev_queue_xmit(skb);
	if (!net_xmit_eval(ret))
		vnet_port_count(port, false, len);
}

/*
 * Sends a frame out of @port's interface @dev, through its link control if
 * it has one.  Consumes @skb.  Called under RCU with BHs off.
 */
static void vnet_port_xmit(struct vnet_port *port, struct net_device *dev,
			   struct sk_buff *skb)
{
	if (unlikely(READ_ONCE(port->link_on)))
		vnet_linkctl_xmit(port, dev, skb);
	else
		vnet_port_send(port, dev, skb);
}

/* The attached port of @vd numbered @id, and its interface.  Under RCU. */
static struct vnet_port *vnet_port_by_id(struct vnet_dev *vd, u32 id,
					 struct net_device **dev)
{
	struct vnet_port *port;

	list_for_each_entry_rcu(port, &vd->ports, list) {
		if (port->id == id) {
			*dev = rcu_dereference(port->dev);
			return *dev ? port : NULL;
		}
	}
	return NULL;
}

/* A local attachment a frame goes to: a port, an endpoint or the device. */
struct vnet_att {
	struct vnet_port *port;
	struct net_device *dev;		/* the port's interface */
	struct vnet_endpoint *ep;
};

/* Hands @skb (or, when NULL, counts its copy that failed) to @att or @vd. */
static void vnet_att_send(struct vnet_dev *vd, const struct vnet_att *att,
			  struct sk_buff *skb, bool copy)
{
	if (unlikely(!skb)) {
		vnet_drop(vd->vn, VNET_D_NO_MEMORY);
		return;
	}
	if (att->port)
		vnet_port_xmit(att->port, att->dev, skb);
	else if (att->ep)
		vnet_endpoint_xmit(att->ep, skb);
	else
		vnet_deliver(vd, skb, !copy);
}

/*
 * A frame from attachment @from to a MAC of this host: to the attachment it
 * was last seen on, or nowhere if that is @from.  Returns false, leaving
 * @skb to the caller, when the MAC is not local or its port is detached.
 * Called under RCU with BHs off.
 */
bool vnet_local_unicast(struct vnet_dev *vd, struct sk_buff *skb, u32 from)
{
	const struct ethhdr *eth = (const struct ethhdr *)skb->data;
	struct vnet_endpoint *ep;
	struct vnet_mac_entry *e;
	struct vnet_port *port;
	struct net_device *dev;
	u32 att;

	e = vnet_table_lookup(&vd->vn->vifs, vd->id, eth->h_dest);
	if (!e)
		return false;
	att = vnet_entry_att(e);
	if (att == from) {
		consume_skb(skb);
		return true;
	}
	if (att == VNET_ATT_VNIF) {
		vnet_deliver(vd, skb, true);
		return true;
	}
	port = vnet_port_by_id(vd, att, &dev);
	if (port) {
		vnet_port_xmit(port, dev, skb);
		return true;
	}
	ep = vnet_endpoint_by_id(vd, att);
	if (!ep)
		return false;
	vnet_endpoint_xmit(ep, skb);
	return true;
}

/*
 * Sends @skb to every local attachment of @vd but @from: the vnet device, the
 * attached ports and the endpoints.  With @keep the caller keeps @skb and
 * each attachment gets a copy; else @skb is consumed.  Called under RCU with
 * BHs off.
 */
void vnet_local_flood(struct vnet_dev *vd, struct sk_buff *skb, u32 from,
		      bool keep)
{
	struct vnet_att last = {};
	struct vnet_endpoint *ep;
	struct vnet_port *port;
	struct net_device *dev;
	bool pending = from != VNET_ATT_VNIF;

	/* Each target is served when the next is found: the last gets @skb. */
	list_for_each_entry_rcu(port, &vd->ports, list) {
		dev = rcu_dereference(port->dev);
		if (!dev || port->id == from)
			continue;
		if (pending)
			vnet_att_send(vd, &last, skb_clone(skb, GFP_ATOMIC),
				      true);
		last = (struct vnet_att){ .port = port, .dev = dev };
		pending = true;
	}
	list_for_each_entry_rcu(ep, &vd->endpoints, list) {
		if (ep->id == from)
			continue;
		if (pending)
			vnet_att_send(vd, &last, skb_clone(skb, GFP_ATOMIC),
				      true);
		last = (struct vnet_att){ .ep = ep };
		pending = true;
	}
	if (!pending) {
		if (!keep)
			consume_skb(skb);
		return;
	}
	if (keep)
		vnet_att_send(vd, &last, skb_clone(skb, GFP_ATOMIC), true);
	else
		vnet_att_send(vd, &last, skb, false);
}

/*
 * A frame from the network for @vd, skb->data at its Ethernet header: to the
 * vnet device alone while the vnet has no ports nor endpoints.  Consumes @skb.  Called
 * under RCU in softirq.
 */
void vnet_local_rcv(struct vnet_dev *vd, struct sk_buff *skb)
{
	if (!vnet_has_ports(vd)) {
		vnet_deliver(vd, skb, true);
		return;
	}
	if (!is_multicast_ether_addr(skb->data) &&
	    vnet_local_unicast(vd, skb, VNET_ATT_NETWORK))
		return;
	vnet_local_flood(vd, skb, VNET_ATT_NETWORK, false);
}

/*
 * The receive handler of a port's interface: every frame goes into the vnet
 * (pause frames excepted), none to the interface's own stack.
 */
static rx_handler_result_t vnet_port_rx(struct sk_buff **pskb)
{
	struct sk_buff *skb = *pskb, *next;
	struct vnet_port *port = rcu_dereference(skb->dev->rx_handler_data);
	struct vnet_dev *vd = port->vd;
	const struct ethhdr *eth;
	unsigned int max;
	bool again;

	if (unlikely(skb->pkt_type == PACKET_LOOPBACK))
		return RX_HANDLER_PASS;
	/* Suspended (linkctl.c): nothing from the port enters the vnet. */
	if (unlikely(READ_ONCE(port->link_on)) &&
	    READ_ONCE(port->link.suspended)) {
		vnet_drop(vd->vn, VNET_D_LINK_SUSPENDED);
		kfree_skb(skb);
		return RX_HANDLER_CONSUMED;
	}
	skb = skb_share_check(skb, GFP_ATOMIC);
	if (unlikely(!skb)) {
		vnet_drop(vd->vn, VNET_D_NO_MEMORY);
		return RX_HANDLER_CONSUMED;
	}
	/* The frame as it arrived: its Ethernet header, and its VLAN tag
	 * back in place (validate_xmit_skb_list() below).
	 */
	skb_push(skb, ETH_HLEN);
	if (skb->ip_summed == CHECKSUM_COMPLETE)
		skb->ip_summed = CHECKSUM_NONE;
	eth = (const struct ethhdr *)skb->data;
	if (unlikely(eth->h_proto == htons(ETH_P_PAUSE) &&
		     ether_addr_equal(eth->h_dest, vnet_pause_addr))) {
		vnet_drop(vd->vn, VNET_D_PAUSE_FRAME);
		goto drop;
	}
	max = vd->mtu + ETH_HLEN +
	      (skb_vlan_tag_present(skb) || eth_type_vlan(eth->h_proto) ?
	       VLAN_HLEN : 0);
	if (unlikely(!skb_is_gso(skb) && skb->len > max)) {
		vnet_drop(vd->vn, VNET_D_OVERSIZE);
		goto drop;
	}
	vnet_port_count(port, true, skb->len +
			(skb_vlan_tag_present(skb) ? VLAN_HLEN : 0));
	/* What the stack does to a frame sent on the vnet device: its
	 * offloads, checksums and VLAN tag as the device takes them.
	 */
	skb->dev = vd->dev;
	skb = validate_xmit_skb_list(skb, vd->dev, &again);
	skb_list_walk_safe(skb, skb, next) {
		skb_mark_not_on_list(skb);
		vnet_frame_xmit(vd, skb, port->id);
	}
	return RX_HANDLER_CONSUMED;
drop:
	kfree_skb(skb);
	return RX_HANDLER_CONSUMED;
}

/* The port @dev is attached to, if any.  Caller holds RTNL. */
static struct vnet_port *vnet_port_of(struct net_device *dev)
{
	if (rcu_access_pointer(dev->rx_handler) != vnet_port_rx)
		return NULL;
	return rtnl_dereference(dev->rx_handler_data);
}

/* Whether @dev may be a port; says why not in @extack. */
static int vnet_port_check(struct net_device *dev,
			   struct netlink_ext_ack *extack)
{
	struct in_device *in_dev = __in_dev_get_rtnl(dev);

	if (dev->type != ARPHRD_ETHER || dev->flags & IFF_LOOPBACK) {
		NL_SET_ERR_MSG(extack, "not an Ethernet interface");
		return -EINVAL;
	}
	if (vnet_is_vnif(dev)) {
		NL_SET_ERR_MSG(extack, "the interface is a vnet device");
		return -EINVAL;
	}
	if (netif_is_bridge_master(dev)) {
		NL_SET_ERR_MSG(extack, "the interface is a bridge");
		return -EBUSY;
	}
	if (netdev_master_upper_dev_get(dev)) {
		NL_SET_ERR_MSG(extack,
			       "the interface has a master (a bridge, a bond, ...)");
		return -EBUSY;
	}
	if (in_dev && rtnl_dereference(in_dev->ifa_list)) {
		NL_SET_ERR_MSG(extack, "the interface has IPv4 addresses");
		return -EBUSY;
	}
	return 0;
}

/*
 * Attaches @port to @dev: brought up with the vnet's MTU, promiscuous, its
 * frames taken by vnet_port_rx().  Caller holds RTNL.
 */
static int vnet_port_attach(struct vnet_port *port, struct net_device *dev,
			    struct netlink_ext_ack *extack)
{
	int err;

	err = vnet_port_check(dev, extack);
	if (err)
		return err;
	err = netdev_rx_handler_register(dev, vnet_port_rx, port);
	if (err) {
		NL_SET_ERR_MSG(extack,
			       "the interface has a receive handler already (a bridge, bond, macvlan, ...)");
		return err;
	}
	err = dev_set_promiscuity(dev, 1);
	if (err)
		goto unregister;
	if (dev->mtu != port->vd->mtu) {
		err = dev_set_mtu(dev, port->vd->mtu);
		if (err) {
			NL_SET_ERR_MSG(extack,
				       "the interface cannot take the vnet's MTU");
			goto unpromisc;
		}
	}
	/*
	 * As for a bond's slaves, IPv6 gives the interface no address of its
	 * own when it comes up: the host sends nothing into the vnet through a
	 * port, even one attached here without `vn` turning its IPv6 off.
	 */
	dev->flags |= IFF_SLAVE;
	if (!(dev->flags & IFF_UP)) {
		err = dev_open(dev, extack);
		if (err)
			goto unslave;
	}
	dev_hold(dev);
	rcu_assign_pointer(port->dev, dev);
	return 0;
unslave:
	dev->flags &= ~IFF_SLAVE;
unpromisc:
	dev_set_promiscuity(dev, -1);
unregister:
	netdev_rx_handler_unregister(dev);
	return err;
}

/* The interface stays, up, as the port leaves it.  Caller holds RTNL. */
static void vnet_port_detach(struct vnet_port *port)
{
	struct net_device *dev = rtnl_dereference(port->dev);

	if (!dev)
		return;
	RCU_INIT_POINTER(port->dev, NULL);
	/* Waits for the readers of both pointers. */
	netdev_rx_handler_unregister(dev);
	/* No frame comes for it now: those waiting to leave are lost. */
	vnet_linkctl_flush(port);
	dev->flags &= ~IFF_SLAVE;
	dev_set_promiscuity(dev, -1);
	dev_put(dev);
}

static void vnet_port_free_rcu(struct rcu_head *head)
{
	struct vnet_port *port = container_of(head, struct vnet_port, rcu);

	free_percpu(port->stats);
	kfree(port);
}

static void vnet_port_remove(struct vnet_port *port)
{
	vnet_port_detach(port);
	/* Its timer stopped before it is freed (a waiting port's too). */
	vnet_linkctl_flush(port);
	list_del_rcu(&port->list);
	port->vd->nports--;
	call_rcu(&port->rcu, vnet_port_free_rcu);
}

/* The port named @name of any vnet of @vn.  Caller holds RTNL. */
static struct vnet_port *vnet_port_named(struct vnet_net *vn,
					 const char *name)
{
	struct vnet_port *port;
	struct vnet_dev *vd;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++)
		hlist_for_each_entry(vd, &vn->vnets[i], node)
			list_for_each_entry(port, &vd->ports, list)
				if (!strcmp(port->name, name))
					return port;
	return NULL;
}

/* Caller holds RTNL. */
int vnet_port_add(struct vnet_dev *vd, const char *name,
		  struct netlink_ext_ack *extack)
{
	struct net_device *dev;
	struct vnet_port *port;
	int err;

	ASSERT_RTNL();
	if (!dev_valid_name(name)) {
		NL_SET_ERR_MSG(extack, "invalid interface name");
		return -EINVAL;
	}
	if (vnet_port_named(vd->vn, name)) {
		NL_SET_ERR_MSG(extack, "the interface is a port of a vnet already");
		return -EEXIST;
	}
	if (vd->last_port == VNET_ATT_NETWORK - 1) {
		NL_SET_ERR_MSG(extack, "the vnet has had too many ports");
		return -ENOSPC;
	}
	port = kzalloc(sizeof(*port), GFP_KERNEL_ACCOUNT);
	if (!port)
		return -ENOMEM;
	port->stats = netdev_alloc_pcpu_stats(struct pcpu_sw_netstats);
	if (!port->stats) {
		kfree(port);
		return -ENOMEM;
	}
	port->vd = vd;
	port->id = vd->last_port + 1;
	vnet_linkctl_init(port);
	strscpy(port->name, name, sizeof(port->name));
	dev = __dev_get_by_name(vd->vn->net, name);
	if (dev) {
		err = vnet_port_attach(port, dev, extack);
		if (err) {
			free_percpu(port->stats);
			kfree(port);
			return err;
		}
	}
	vd->last_port = port->id;
	list_add_tail_rcu(&port->list, &vd->ports);
	vd->nports++;
	return 0;
}

/* The port of @vd named @name, or NULL.  Caller holds RTNL. */
struct vnet_port *vnet_port_find(struct vnet_dev *vd, const char *name)
{
	struct vnet_port *port;

	ASSERT_RTNL();
	list_for_each_entry(port, &vd->ports, list)
		if (!strcmp(port->name, name))
			return port;
	return NULL;
}

/* Caller holds RTNL.  Returns 0, or -ENOENT when @vd has no such port. */
int vnet_port_del(struct vnet_dev *vd, const char *name)
{
	struct vnet_port *port = vnet_port_find(vd, name);

	if (!port)
		return -ENOENT;
	vnet_port_remove(port);
	return 0;
}

/* Removes every port of @vd (being deleted).  Caller holds RTNL. */
void vnet_port_flush(struct vnet_dev *vd)
{
	struct vnet_port *port, *tmp;

	list_for_each_entry_safe(port, tmp, &vd->ports, list)
		vnet_port_remove(port);
}

/*
 * Attaches each waiting port of the namespace whose interface exists.  A work
 * item, not the notifier itself: a device is announced before its creator
 * has finished it (a veth has no peer yet, so it cannot be brought up).
 */
void vnet_adopt_work(struct work_struct *work)
{
	struct vnet_net *vn = container_of(work, struct vnet_net, adopt);
	struct net_device *dev;
	struct vnet_port *port;
	struct vnet_dev *vd;
	unsigned int i;

	rtnl_lock();
	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++) {
		hlist_for_each_entry(vd, &vn->vnets[i], node) {
			list_for_each_entry(port, &vd->ports, list) {
				if (rtnl_dereference(port->dev))
					continue;
				dev = __dev_get_by_name(vn->net, port->name);
				if (dev && !vnet_port_of(dev))
					vnet_port_attach(port, dev, NULL);
			}
		}
	}
	rtnl_unlock();
}

/* An interface named @dev->name appeared: a waiting port of it attaches. */
static void vnet_port_adopt(struct net_device *dev)
{
	struct vnet_net *vn = vnet_pernet(dev_net(dev));
	struct vnet_port *port;

	/* A namespace being made registers its loopback before our init. */
	if (!vn || !vn->net)
		return;
	port = vnet_port_named(vn, dev->name);
	if (port && !rtnl_dereference(port->dev))
		schedule_work(&vn->adopt);
}

static int vnet_port_event(struct notifier_block *nb, unsigned long event,
			   void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);
	struct vnet_port *port = vnet_port_of(dev);

	switch (event) {
	case NETDEV_UNREGISTER:
		/* Deleted, or moving to another namespace. */
		if (port)
			vnet_port_detach(port);
		break;
	case NETDEV_CHANGENAME:
		if (port) {
			if (!strcmp(port->name, dev->name))
				break;
			vnet_port_detach(port);
		}
		vnet_port_adopt(dev);
		break;
	case NETDEV_REGISTER:
		vnet_port_adopt(dev);
		break;
	}
	return NOTIFY_DONE;
}

static struct notifier_block vnet_port_notifier = {
	.notifier_call = vnet_port_event,
};

int vnet_port_init(void)
{
	return register_netdevice_notifier(&vnet_port_notifier);
}

void vnet_port_exit(void)
{
	unregister_netdevice_notifier(&vnet_port_notifier);
}
