// SPDX-License-Identifier: GPL-2.0
/*
 * Module load and unload, and the per-namespace state: each network
 * namespace is a vnet host of its own, with its vnets, peers, tables and
 * socket, so several simulated hosts share one kernel.
 */
#include <linux/inet.h>
#include <linux/module.h>
#include <net/genetlink.h>
#include <net/protocol.h>
#include <net/rtnetlink.h>

#include "vnet.h"

unsigned int vnet_net_id __read_mostly;
char *varp_mcaddr = "224.10.0.1";
module_param(varp_mcaddr, charp, 0444);
MODULE_PARM_DESC(varp_mcaddr, "multicast group for floods and VARP (default 224.10.0.1)");

static __be32 vnet_default_group;

static const struct net_protocol vnet_etherip_protocol = {
	.handler	= vnet_etherip_proto_rcv,
	.no_policy	= 1,
};

static int __net_init vnet_net_init(struct net *net)
{
	struct vnet_net *vn = vnet_pernet(net);
	unsigned int i;
	int err;

	/* Before vn->net, which tells the port notifier that it may use it. */
	INIT_WORK(&vn->adopt, vnet_adopt_work);
	vn->net = net;
	mutex_init(&vn->lock);
	INIT_LIST_HEAD(&vn->peers);
	for (i = 0; i < ARRAY_SIZE(vn->vnets); i++)
		INIT_HLIST_HEAD(&vn->vnets[i]);
	INIT_DELAYED_WORK(&vn->sweep, vnet_sweep_work);
	INIT_WORK(&vn->idle, vnet_idle_work);
	vn->group = vnet_default_group;
	err = vnet_session_new(vn, GFP_KERNEL);
	if (err)
		return err;
	vn->stats = alloc_percpu_gfp(struct vnet_stats, GFP_KERNEL_ACCOUNT);
	if (!vn->stats) {
		err = -ENOMEM;
		goto free_session;
	}
	err = vnet_table_init(&vn->varp, VNET_TABLE_VARP);
	if (err)
		goto free_stats;
	err = vnet_table_init(&vn->vifs, VNET_TABLE_VIFS);
	if (err)
		goto free_varp;
	vnet_super_init(&vn->supers);
	err = vnet_flood_init(&vn->flood);
	if (err)
		goto free_vifs;
	return 0;
free_vifs:
	vnet_table_free(&vn->vifs);
free_varp:
	vnet_table_free(&vn->varp);
free_stats:
	free_percpu(vn->stats);
free_session:
	vnet_session_free(vn);
	return err;
}

/*
 * Runs before the core removes the namespace's devices, so ours go first,
 * while the socket they send through still exists.
 */
static void __net_exit vnet_net_exit(struct net *net)
{
	struct vnet_net *vn = vnet_pernet(net);

	rtnl_lock();
	vnet_dev_delete_all(vn);
	rtnl_unlock();
	/* Finds no port now, if it was queued. */
	cancel_work_sync(&vn->adopt);
	/* Queued by the devices' ndo_uninit; the socket is closed below. */
	cancel_work_sync(&vn->idle);
	mutex_lock(&vn->lock);
	vnet_socket_close(vn);
	vnet_peer_flush(vn);
	mutex_unlock(&vn->lock);
	vnet_flood_free(&vn->flood);
	vnet_super_flush(&vn->supers);
	vnet_table_free(&vn->vifs);
	vnet_table_free(&vn->varp);
	free_percpu(vn->stats);
	vnet_session_free(vn);
}

static struct pernet_operations vnet_net_ops = {
	.init = vnet_net_init,
	.exit = vnet_net_exit,
	.id = &vnet_net_id,
	.size = sizeof(struct vnet_net),
};

static int __init vnet_init(void)
{
	int err;

	if (!in4_pton(varp_mcaddr, -1, (u8 *)&vnet_default_group, -1, NULL) ||
	    !ipv4_is_multicast(vnet_default_group)) {
		pr_err("vnet: varp_mcaddr=%s is not a multicast IPv4 address\n",
		       varp_mcaddr);
		return -EINVAL;
	}
	err = vnet_link_init();
	if (err)
		return err;
	err = register_pernet_device(&vnet_net_ops);
	if (err)
		goto unlink;
	err = vnet_port_init();
	if (err)
		goto unpernet;
	err = inet_add_protocol(&vnet_etherip_protocol, VNET_IPPROTO_ETHERIP);
	if (err) {
		pr_err("vnet: IP protocol 97 is taken by another module\n");
		goto unport;
	}
	err = vnet_genl_init();
	if (err)
		goto unproto;
	pr_info("vnet: loaded, group %pI4\n", &vnet_default_group);
	return 0;
unproto:
	inet_del_protocol(&vnet_etherip_protocol, VNET_IPPROTO_ETHERIP);
unport:
	vnet_port_exit();
unpernet:
	unregister_pernet_device(&vnet_net_ops);
unlink:
	vnet_link_exit();
	return err;
}

static void __exit vnet_exit(void)
{
	vnet_genl_exit();
	/* Waits until no CPU is in the handler any more. */
	inet_del_protocol(&vnet_etherip_protocol, VNET_IPPROTO_ETHERIP);
	/* Deletes the vnets, which detach their ports first... */
	unregister_pernet_device(&vnet_net_ops);
	/* ...so no interface is a port when the notifier goes. */
	vnet_port_exit();
	vnet_link_exit();
	/* Then the keys, windows, sessions and ports of the deleted vnets,
	 * freed after grace periods by our callbacks.
	 */
	rcu_barrier();
	pr_info("vnet: unloaded\n");
}

module_init(vnet_init);
module_exit(vnet_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vnet: private virtual Ethernet LANs across hosts (EtherIP in UDP)");
MODULE_AUTHOR("The vnet authors");
MODULE_VERSION(VNET_VERSION);
MODULE_ALIAS_GENL_FAMILY(VNET_GENL_NAME);
MODULE_ALIAS_RTNL_LINK("vnet");
