// SPDX-License-Identifier: GPL-2.0
/*
 * Vnet devices (vnifNN): Ethernet devices whose transmit encapsulates and
 * whose receive side is fed by the tunnel.  They are created through the
 * generic netlink family, so each is bound to its vnet id from birth; the
 * rtnl_link_ops exist so `ip -d link` names the kind and `ip link add`
 * gets a clear refusal.
 */
#include <linux/jhash.h>
#include <net/rtnetlink.h>

#include "vnet.h"

#define VNET_FEATURES (NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_RXCSUM | \
		       NETIF_F_HIGHDMA | NETIF_F_GSO_SOFTWARE)

static struct rtnl_link_ops vnet_link_ops;

static struct hlist_head *vnet_bucket(struct vnet_net *vn, const u8 *id)
{
	return &vn->vnets[jhash(id, VNET_ID_LEN, 0) % ARRAY_SIZE(vn->vnets)];
}

/* Called under RCU or RTNL. */
struct vnet_dev *vnet_find(struct vnet_net *vn, const u8 *id)
{
	struct vnet_dev *vd;

	hlist_for_each_entry_rcu(vd, vnet_bucket(vn, id), node,
				 lockdep_rtnl_is_held()) {
		if (!memcmp(vd->id, id, VNET_ID_LEN))
			return vd;
	}
	return NULL;
}

/*
 * The vnet an unsealed frame or VARP message names, or NULL with the drop
 * counted: unknown, or secure and so taking sealed messages only.
 * Called under RCU.
 */
struct vnet_dev *vnet_find_plain(struct vnet_net *vn, const u8 *id)
{
	struct vnet_dev *vd = vnet_find(vn, id);

	if (!vd) {
		vnet_drop(vn, VNET_D_UNKNOWN_VNET);
		return NULL;
	}
	if (vd->security != VNET_SECURITY_NONE) {
		vnet_drop(vn, VNET_D_UNPROTECTED);
		return NULL;
	}
	return vd;
}

bool vnet_any(struct vnet_net *vn)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++)
		if (!hlist_empty(&vn->vnets[i]))
			return true;
	return false;
}

static int vnet_dev_init(struct net_device *dev)
{
	struct vnet_dev *vd = netdev_priv(dev);
	int err;

	/* Charged, like the device itself, to whoever created it. */
	dev->tstats = __netdev_alloc_pcpu_stats(struct pcpu_sw_netstats,
						GFP_KERNEL_ACCOUNT);
	if (!dev->tstats)
		return -ENOMEM;
	err = gro_cells_init(&vd->gro_cells, dev);
	if (err) {
		free_percpu(dev->tstats);
		dev->tstats = NULL;
	}
	return err;
}

static void vnet_dev_uninit(struct net_device *dev)
{
	struct vnet_dev *vd = netdev_priv(dev);

	if (!hlist_unhashed(&vd->node))
		hlist_del_init_rcu(&vd->node);
	/* Its ports' interfaces stay, detached; its endpoints close. */
	vnet_port_flush(vd);
	vnet_endpoint_flush(vd);
	/* Both are freed after a grace period: readers may still hold them. */
	vnet_keyset_free(rcu_replace_pointer(vd->keys, NULL, true));
	vnet_replay_free(rcu_replace_pointer(vd->replay, NULL, true));
	vnet_table_flush(&vd->vn->varp, vd->id);
	vnet_table_flush(&vd->vn->vifs, vd->id);
	gro_cells_destroy(&vd->gro_cells);
	/* Whoever deleted it, port 1798 is freed if it was the last vnet. */
	schedule_work(&vd->vn->idle);
}

/* After the last reference: receive paths may use the stats until then. */
static void vnet_dev_free(struct net_device *dev)
{
	free_percpu(dev->tstats);
}

static const struct net_device_ops vnet_netdev_ops = {
	.ndo_init		= vnet_dev_init,
	.ndo_uninit		= vnet_dev_uninit,
	.ndo_start_xmit		= vnet_xmit,
	.ndo_get_stats64	= dev_get_tstats64,
	.ndo_set_mac_address	= eth_mac_addr,
	.ndo_validate_addr	= eth_validate_addr,
};

bool vnet_is_vnif(const struct net_device *dev)
{
	return dev->netdev_ops == &vnet_netdev_ops;
}

static void vnet_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &vnet_netdev_ops;
	dev->rtnl_link_ops = &vnet_link_ops;
	dev->needs_free_netdev = true;
	dev->priv_destructor = vnet_dev_free;
	dev->priv_flags |= IFF_NO_QUEUE;
	dev->priv_flags &= ~IFF_TX_SKB_SHARING;
	dev->features |= VNET_FEATURES;
	dev->hw_features |= VNET_FEATURES;
	vnet_set_lltx(dev);
	/* Its tables and sockets belong to this namespace. */
	vnet_set_netns_immutable(dev);
	dev->needed_headroom = VNET_HEADER_UDP;
	dev->min_mtu = ETH_MIN_MTU;
	netif_keep_dst(dev);
	eth_hw_addr_random(dev);
}

/*
 * Caller holds RTNL.  A secure vnet (@security auth or conf) takes @keys,
 * which are the device's from here on, or freed on failure.  @mtu is the
 * vnet's, or 0 for the encapsulation's default; the device may not exceed it.
 * @group is the vnet's own multicast group (joined already), or 0.
 */
int vnet_dev_create(struct vnet_net *vn, const u8 *id, const char *name,
		    u8 encap, u8 security, u32 mtu, __be32 group,
		    struct vnet_keyset *keys, struct netlink_ext_ack *extack)
{
	static const u8 vudp[VNET_MSG_HLEN] = { 0, VNET_MSG_VUDP, 0, 0 };
	static const u8 word[2] = { 0x00, ETHERIP_VERSION << 4 };
	struct net_device *dev;
	struct vnet_dev *vd;
	u8 *p;
	int err;

	if (vnet_find(vn, id)) {
		NL_SET_ERR_MSG(extack, "vnet already exists");
		err = -EEXIST;
		goto free_keys;
	}
	if (!dev_valid_name(name)) {
		NL_SET_ERR_MSG(extack, "invalid interface name");
		err = -EINVAL;
		goto free_keys;
	}
	if (__dev_get_by_name(vn->net, name)) {
		NL_SET_ERR_MSG(extack, "a device with that name already exists");
		err = -EEXIST;
		goto free_keys;
	}
	dev = alloc_netdev(sizeof(*vd), name, NET_NAME_USER, vnet_setup);
	if (!dev) {
		err = -ENOMEM;
		goto free_keys;
	}
	dev_net_set(dev, vn->net);
	vd = netdev_priv(dev);
	INIT_HLIST_NODE(&vd->node);
	INIT_LIST_HEAD(&vd->ports);
	INIT_LIST_HEAD(&vd->endpoints);
	vd->dev = dev;
	vd->vn = vn;
	vd->encap = encap;
	vd->security = security;
	vd->group = group;
	memcpy(vd->id, id, VNET_ID_LEN);
	if (security != VNET_SECURITY_NONE) {
		struct vnet_replay_table *replay = vnet_replay_new();

		if (!replay) {
			free_netdev(dev);
			err = -ENOMEM;
			goto free_keys;
		}
		RCU_INIT_POINTER(vd->replay, replay);
		RCU_INIT_POINTER(vd->keys, keys);
		keys = NULL;
	}
	p = vd->prefix;
	if (encap == VNET_ENCAP_UDP) {
		memcpy(p, vudp, sizeof(vudp));
		p += sizeof(vudp);
		dev->mtu = VNET_MTU_UDP;
		if (security != VNET_SECURITY_NONE) {
			/* A super-frame is sealed whole, so it must fit one
			 * datagram; only TCP's can be taken apart again.
			 */
			dev->features &= ~NETIF_F_GSO_SOFTWARE;
			dev->hw_features &= ~NETIF_F_GSO_SOFTWARE;
			dev->features |= NETIF_F_ALL_TSO;
			dev->hw_features |= NETIF_F_ALL_TSO;
			netif_set_tso_max_size(dev, VNET_SEAL_MAX_FRAME);
		}
	} else {
		/* No GSO for protocol 97: the stack segments before us. */
		dev->features &= ~NETIF_F_GSO_SOFTWARE;
		dev->hw_features &= ~NETIF_F_GSO_SOFTWARE;
		dev->mtu = security != VNET_SECURITY_NONE ?
			   VNET_MTU_ETHERIP_SEALED : VNET_MTU_ETHERIP;
	}
	memcpy(p, word, sizeof(word));
	memcpy(p + sizeof(word), id, VNET_ID_LEN);
	vd->prefix_len = p + sizeof(word) + VNET_ID_LEN - vd->prefix;
	/*
	 * Above the default, raw EtherIP goes without DF and IP fragments it,
	 * as UDP always does.
	 */
	vd->df = !mtu || mtu <= dev->mtu;
	if (mtu)
		dev->mtu = mtu;
	vd->mtu = dev->mtu;
	dev->max_mtu = dev->mtu;

	err = register_netdevice(dev);
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot register the vnet device");
		/* Still here unless ndo_uninit already freed them. */
		vnet_keyset_free(rcu_dereference_protected(vd->keys, true));
		vnet_replay_free(rcu_dereference_protected(vd->replay, true));
		free_netdev(dev);
		return err;
	}
	/*
	 * Left down, as new devices are: whoever enslaves it turns IPv6 off
	 * on it first and then brings it up, so it never sends a link-local
	 * address's DAD or MLD into the vnet.
	 */
	hlist_add_head_rcu(&vd->node, vnet_bucket(vn, id));
	return 0;
free_keys:
	vnet_keyset_free(keys);
	return err;
}

/* Removes every vnet device of the namespace; caller holds RTNL. */
void vnet_dev_delete_all(struct vnet_net *vn)
{
	struct hlist_node *tmp;
	struct vnet_dev *vd;
	LIST_HEAD(list);
	unsigned int i;

	ASSERT_RTNL();
	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++)
		hlist_for_each_entry_safe(vd, tmp, &vn->vnets[i], node)
			unregister_netdevice_queue(vd->dev, &list);
	unregister_netdevice_many(&list);
}

static int vnet_link_validate(struct nlattr *tb[], struct nlattr *data[],
			      struct netlink_ext_ack *extack)
{
	NL_SET_ERR_MSG(extack, "vnet devices are created with 'vn vnet-create'");
	return -EOPNOTSUPP;
}

static struct rtnl_link_ops vnet_link_ops __read_mostly = {
	.kind		= "vnet",
	.priv_size	= sizeof(struct vnet_dev),
	.setup		= vnet_setup,
	.validate	= vnet_link_validate,
};

int vnet_link_init(void)
{
	return rtnl_link_register(&vnet_link_ops);
}

void vnet_link_exit(void)
{
	rtnl_link_unregister(&vnet_link_ops);
}
