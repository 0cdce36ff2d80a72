// SPDX-License-Identifier: GPL-2.0
/*
 * Control: the "vnet" generic netlink family, specified in vnet.yaml (the
 * policies, the ops table and the uAPI header are generated from it by
 * `python -m tools.genl`).  Each command acts on the namespace of the
 * calling socket.  Errors carry an extended-ack message so `vn` can say what
 * went wrong.
 *
 * The family runs its handlers in parallel (no genl_mutex: a user namespace
 * root in one namespace cannot hold up every other's control), so each
 * handler takes what it needs itself: vn->lock for the socket, the peers and
 * the settings, RTNL for devices and keys, the tables' spinlocks for the
 * tables; dumps walk RCU lists and resume by position.
 */
#include <linux/stringify.h>
#include <net/genetlink.h>
#include <net/rtnetlink.h>

#include "vnet.h"

static struct vnet_net *vnet_info_net(struct genl_info *info)
{
	return vnet_pernet(genl_info_net(info));
}

/* A required attribute; the message names it when it is missing. */
#define vnet_need(info, attr, msg) ({				\
	struct genl_info *__info = (info);			\
	bool __ok = !!__info->attrs[attr];			\
								\
	if (!__ok)						\
		NL_SET_ERR_MSG(__info->extack, msg);		\
	__ok;							\
})

/*
 * Wipes every key secret of the request, whatever became of it: the request
 * is freed as it is, and an error ack may carry a copy of it.  Called by the
 * commands that take keys on all their paths.
 */
static void vnet_wipe_secrets(struct genl_info *info)
{
	struct nlattr *key, *attr;
	int rem, krem;

	if (!info->attrs[VNET_A_KEYS])
		return;
	nla_for_each_nested(key, info->attrs[VNET_A_KEYS], rem) {
		nla_for_each_nested(attr, key, krem) {
			if (nla_type(attr) == VNET_A_KEY_SECRET)
				memzero_explicit(nla_data(attr), nla_len(attr));
		}
	}
}

/*
 * The key set of a KEYS attribute: one or two KEY nests with distinct ids,
 * the send key first (the policy admits nothing but KEY nests in KEYS).  Our
 * copies of the secrets are wiped here, the request's by the caller.  Returns
 * the key set or an ERR_PTR.
 */
static struct vnet_keyset *vnet_parse_keys(struct genl_info *info)
{
	u8 secrets[VNET_MAX_KEYS][VNET_KEY_LEN];
	struct nlattr *tb[ARRAY_SIZE(vnet_key_nl_policy)];
	struct vnet_keyset *ks = NULL;
	u8 ids[VNET_MAX_KEYS];
	unsigned int n = 0, i;
	struct nlattr *key;
	int rem, err = 0;

	nla_for_each_nested(key, info->attrs[VNET_A_KEYS], rem) {
		if (n == VNET_MAX_KEYS) {
			NL_SET_ERR_MSG(info->extack, "a vnet holds one or two keys");
			err = -EINVAL;
			break;
		}
		err = nla_parse_nested(tb, ARRAY_SIZE(tb) - 1, key,
				       vnet_key_nl_policy, info->extack);
		if (err)
			break;
		if (!tb[VNET_A_KEY_ID] || !tb[VNET_A_KEY_SECRET]) {
			NL_SET_ERR_MSG_ATTR(info->extack, key,
					    "a key needs a key id and a secret");
			err = -EINVAL;
			break;
		}
		ids[n] = nla_get_u8(tb[VNET_A_KEY_ID]);
		memcpy(secrets[n], nla_data(tb[VNET_A_KEY_SECRET]), VNET_KEY_LEN);
		for (i = 0; i < n; i++)
			if (ids[i] == ids[n])
				err = -EINVAL;
		n++;
		if (err) {
			NL_SET_ERR_MSG(info->extack,
				       "the keys of a vnet need different key ids");
			break;
		}
	}
	if (!err && !n) {
		NL_SET_ERR_MSG(info->extack, "a secure vnet needs one or two keys");
		err = -EINVAL;
	}
	if (!err)
		ks = vnet_keyset_new(&secrets[0][0], ids, n, info->extack);
	memzero_explicit(secrets, sizeof(secrets));
	return err ? ERR_PTR(err) : ks;
}

static int vnet_vnet_add(struct genl_info *info)
{
	static const u8 reserved[VNET_ID_LEN - 1];
	struct vnet_net *vn = vnet_info_net(info);
	struct nlattr **a = info->attrs;
	struct vnet_keyset *keys = NULL;
	u8 encap, security;
	__be32 group;
	const u8 *id;
	u32 mtu;
	int err;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id") ||
	    !vnet_need(info, VNET_A_IFNAME, "missing interface name"))
		return -EINVAL;
	id = nla_data(a[VNET_A_ID]);
	if (!memcmp(id, reserved, sizeof(reserved)) && id[VNET_ID_LEN - 1] < 2) {
		NL_SET_ERR_MSG(info->extack, "vnet ids 0 and 1 are reserved");
		return -EINVAL;
	}
	security = a[VNET_A_SECURITY] ? nla_get_u8(a[VNET_A_SECURITY]) :
					VNET_SECURITY_NONE;
	if (security == VNET_SECURITY_NONE && a[VNET_A_KEYS]) {
		NL_SET_ERR_MSG(info->extack,
			       "keys are for vnets with security auth or conf");
		return -EINVAL;
	}
	if (security != VNET_SECURITY_NONE &&
	    !vnet_need(info, VNET_A_KEYS,
		       "security auth and conf need the vnet's keys"))
		return -EINVAL;
	encap = a[VNET_A_ENCAP] ? nla_get_u8(a[VNET_A_ENCAP]) : VNET_ENCAP_UDP;
	mtu = a[VNET_A_MTU] ? nla_get_u32(a[VNET_A_MTU]) : 0;
	if (a[VNET_A_MTU] && (mtu < VNET_MIN_MTU || mtu > VNET_MAX_MTU)) {
		NL_SET_ERR_MSG_ATTR(info->extack, a[VNET_A_MTU],
				    "the MTU of a vnet is " __stringify(VNET_MIN_MTU)
				    ".." __stringify(VNET_MAX_MTU));
		return -EINVAL;
	}
	group = a[VNET_A_GROUP] ? nla_get_in_addr(a[VNET_A_GROUP]) : 0;
	if (a[VNET_A_GROUP] && (!ipv4_is_multicast(group) ||
				ipv4_is_local_multicast(group))) {
		NL_SET_ERR_MSG_ATTR(info->extack, a[VNET_A_GROUP],
				    "a vnet's group is multicast (224.0.0.0/4), outside 224.0.0.0/24");
		return -EINVAL;
	}
	if (a[VNET_A_KEYS]) {
		/* Transforms are made here, where we may sleep and load. */
		keys = vnet_parse_keys(info);
		if (IS_ERR(keys))
			return PTR_ERR(keys);
	}

	mutex_lock(&vn->lock);
	err = vnet_socket_open(vn, info->extack);
	if (!err) {
		rtnl_lock();
		/* Joined before the vnet can flood to it. */
		err = group ? vnet_sync_groups(vn, group, info->extack) : 0;
		if (!err)
			err = vnet_dev_create(vn, id, nla_data(a[VNET_A_IFNAME]),
					      encap, security, mtu, group, keys,
					      info->extack);
		else
			vnet_keyset_free(keys);
		rtnl_unlock();
		if (err)
			vnet_maybe_close(vn);
	} else {
		vnet_keyset_free(keys);
	}
	mutex_unlock(&vn->lock);
	return err;
}

int vnet_nl_vnet_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	int err = vnet_vnet_add(info);

	vnet_wipe_secrets(info);
	return err;
}

/* Replaces the keys of a secure vnet; packets in flight finish first. */
static int vnet_keys_set(struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_keyset *keys;
	struct vnet_dev *vd;
	int err = 0;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id") ||
	    !vnet_need(info, VNET_A_KEYS, "missing keys"))
		return -EINVAL;
	keys = vnet_parse_keys(info);
	if (IS_ERR(keys))
		return PTR_ERR(keys);
	rtnl_lock();
	vd = vnet_find(vn, nla_data(info->attrs[VNET_A_ID]));
	if (!vd) {
		NL_SET_ERR_MSG(info->extack, "vnet does not exist");
		err = -ENOENT;
	} else if (vd->security == VNET_SECURITY_NONE) {
		NL_SET_ERR_MSG(info->extack,
			       "the vnet has security none: it takes no keys");
		err = -EINVAL;
	} else {
		keys = rcu_replace_pointer(vd->keys, keys, lockdep_rtnl_is_held());
	}
	rtnl_unlock();
	vnet_keyset_free(keys);
	return err;
}

int vnet_nl_keys_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	int err = vnet_keys_set(info);

	vnet_wipe_secrets(info);
	return err;
}

int vnet_nl_vnet_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_dev *vd;
	int err = 0;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id"))
		return -EINVAL;
	mutex_lock(&vn->lock);
	rtnl_lock();
	vd = vnet_find(vn, nla_data(info->attrs[VNET_A_ID]));
	if (vd) {
		unregister_netdevice(vd->dev);
	} else {
		NL_SET_ERR_MSG(info->extack, "vnet does not exist");
		err = -ENOENT;
	}
	rtnl_unlock();
	vnet_maybe_close(vn);
	mutex_unlock(&vn->lock);
	return err;
}

/* A u32 link control attribute, 0 if absent. */
static u32 vnet_linkctl_attr(struct genl_info *info, int type)
{
	return info->attrs[type] ? nla_get_u32(info->attrs[type]) : 0;
}

/* Says which link control value of PORT_SET is out of range, if one is. */
static int vnet_linkctl_check(struct genl_info *info,
			      const struct vnet_linkctl_conf *conf)
{
	struct nlattr **attrs = info->attrs;

	if (conf->loss_ppm > VNET_LINK_PPM_MAX) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[VNET_A_LINK_LOSS],
				    "loss is out of range: 0 to 1000000 millionths");
		return -EINVAL;
	}
	if (conf->corrupt_ppm > VNET_LINK_PPM_MAX) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[VNET_A_LINK_CORRUPT],
				    "corrupt is out of range: 0 to 1000000 millionths");
		return -EINVAL;
	}
	if (conf->delay_us > VNET_LINK_DELAY_MAX) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[VNET_A_LINK_DELAY],
				    "delay is out of range: 0 to 60000000 us");
		return -EINVAL;
	}
	if (conf->jitter_us > VNET_LINK_DELAY_MAX) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[VNET_A_LINK_JITTER],
				    "jitter is out of range: 0 to 60000000 us");
		return -EINVAL;
	}
	if (conf->rate && (conf->rate < VNET_LINK_RATE_MIN ||
			   conf->rate > VNET_LINK_RATE_MAX)) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[VNET_A_LINK_RATE],
				    "rate is out of range: 8000 to 100000000000 bit/s");
		return -EINVAL;
	}
	return 0;
}

/* PORT_SET's settings, checked; absent attributes are 0 (none). */
static int vnet_linkctl_conf_from(struct genl_info *info,
				  struct vnet_linkctl_conf *conf)
{
	struct nlattr **attrs = info->attrs;

	conf->loss_ppm = vnet_linkctl_attr(info, VNET_A_LINK_LOSS);
	conf->corrupt_ppm = vnet_linkctl_attr(info, VNET_A_LINK_CORRUPT);
	conf->delay_us = vnet_linkctl_attr(info, VNET_A_LINK_DELAY);
	conf->jitter_us = vnet_linkctl_attr(info, VNET_A_LINK_JITTER);
	if (attrs[VNET_A_LINK_RATE])
		conf->rate = nla_get_u64(attrs[VNET_A_LINK_RATE]);
	conf->suspended = attrs[VNET_A_LINK_SUSPENDED] &&
			  nla_get_u8(attrs[VNET_A_LINK_SUSPENDED]);
	return vnet_linkctl_check(info, conf);
}

enum vnet_port_op {
	VNET_PORT_ADD,
	VNET_PORT_DEL,
	VNET_PORT_SET,
};

/* PORT_ADD, PORT_DEL and PORT_SET: one port of one vnet, named. */
static int vnet_nl_port(struct genl_info *info, enum vnet_port_op op)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_linkctl_conf conf = {};
	struct vnet_port *port;
	struct vnet_dev *vd;
	const char *name;
	int err = 0;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id") ||
	    !vnet_need(info, VNET_A_IFNAME, "missing interface name"))
		return -EINVAL;
	if (op == VNET_PORT_SET) {
		err = vnet_linkctl_conf_from(info, &conf);
		if (err)
			return err;
	}
	name = nla_data(info->attrs[VNET_A_IFNAME]);
	rtnl_lock();
	vd = vnet_find(vn, nla_data(info->attrs[VNET_A_ID]));
	if (!vd) {
		NL_SET_ERR_MSG(info->extack, "vnet does not exist");
		err = -ENOENT;
	} else if (op == VNET_PORT_ADD) {
		err = vnet_port_add(vd, name, info->extack);
	} else if (op == VNET_PORT_DEL) {
		err = vnet_port_del(vd, name);
		if (err)
			NL_SET_ERR_MSG(info->extack, "no such port on this vnet");
	} else {
		port = vnet_port_find(vd, name);
		if (port) {
			vnet_linkctl_set(port, &conf);
		} else {
			NL_SET_ERR_MSG(info->extack, "no such port on this vnet");
			err = -ENOENT;
		}
	}
	rtnl_unlock();
	return err;
}

int vnet_nl_port_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_port(info, VNET_PORT_ADD);
}

int vnet_nl_port_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_port(info, VNET_PORT_DEL);
}

int vnet_nl_port_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_port(info, VNET_PORT_SET);
}

/* An endpoint as ENDPOINT_ADD and ENDPOINT_DEL name it, checked. */
static int vnet_nl_endpoint_spec(struct genl_info *info,
				 struct vnet_endpoint_spec *spec)
{
	struct nlattr **attrs = info->attrs;
	bool local, remote;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id") ||
	    !vnet_need(info, VNET_A_ENDPOINT_KIND, "missing endpoint kind"))
		return -EINVAL;
	spec->kind = nla_get_u8(attrs[VNET_A_ENDPOINT_KIND]);
	local = spec->kind != VNET_ENDPOINT_KIND_TCP_CONNECT;
	remote = spec->kind != VNET_ENDPOINT_KIND_TCP_LISTEN;
	spec->laddr = attrs[VNET_A_ADDR] ?
		      nla_get_in_addr(attrs[VNET_A_ADDR]) : 0;
	spec->lport = attrs[VNET_A_PORT] ?
		      htons(nla_get_u16(attrs[VNET_A_PORT])) : 0;
	spec->raddr = attrs[VNET_A_REMOTE_ADDR] ?
		      nla_get_in_addr(attrs[VNET_A_REMOTE_ADDR]) : 0;
	spec->rport = attrs[VNET_A_REMOTE_PORT] ?
		      htons(nla_get_u16(attrs[VNET_A_REMOTE_PORT])) : 0;
	if (local != !!spec->lport || (!local && spec->laddr)) {
		NL_SET_ERR_MSG(info->extack,
			       "udp and tcp-listen endpoints, and they only, have a local port");
		return -EINVAL;
	}
	if (remote != !!spec->rport || remote != !!spec->raddr) {
		NL_SET_ERR_MSG(info->extack,
			       "udp and tcp-connect endpoints, and they only, have a remote address and port");
		return -EINVAL;
	}
	if (ipv4_is_multicast(spec->laddr) || ipv4_is_multicast(spec->raddr) ||
	    (remote && ipv4_is_zeronet(spec->raddr))) {
		NL_SET_ERR_MSG(info->extack,
			       "an endpoint's addresses are one host's (no multicast, no 0.0.0.0 to send to)");
		return -EINVAL;
	}
	return 0;
}

static int vnet_nl_endpoint(struct genl_info *info, bool add)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_endpoint_spec spec;
	struct vnet_dev *vd;
	int err;

	err = vnet_nl_endpoint_spec(info, &spec);
	if (err)
		return err;
	rtnl_lock();
	vd = vnet_find(vn, nla_data(info->attrs[VNET_A_ID]));
	if (!vd) {
		NL_SET_ERR_MSG(info->extack, "vnet does not exist");
		err = -ENOENT;
	} else if (add) {
		err = vnet_endpoint_add(vd, &spec, info->extack);
	} else {
		err = vnet_endpoint_del(vd, &spec);
		if (err)
			NL_SET_ERR_MSG(info->extack, "no such endpoint on this vnet");
	}
	rtnl_unlock();
	return err;
}

int vnet_nl_endpoint_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_endpoint(info, true);
}

int vnet_nl_endpoint_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_endpoint(info, false);
}

#define VNET_VIFS_FULL "the vif table is full: at most " \
	__stringify(VNET_MAX_VNET_MACS) " MACs a vnet, " \
	__stringify(VNET_MAX_TABLE_MACS) " of the plain vnets together"

static int vnet_nl_vif(struct genl_info *info, bool add)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_dev *vd;
	const u8 *id, *mac;
	int err = 0;

	if (!vnet_need(info, VNET_A_ID, "missing vnet id") ||
	    !vnet_need(info, VNET_A_MAC, "missing MAC address"))
		return -EINVAL;
	id = nla_data(info->attrs[VNET_A_ID]);
	mac = nla_data(info->attrs[VNET_A_MAC]);
	rcu_read_lock();
	vd = vnet_find(vn, id);
	if (!vd) {
		NL_SET_ERR_MSG(info->extack, "vnet does not exist");
		err = -ENOENT;
	} else if (add) {
		err = vnet_table_update(&vn->vifs, vd, mac, 0,
					GFP_ATOMIC | __GFP_ACCOUNT);
		if (err > 0)
			err = 0;
		else if (err == -ENOSPC)
			NL_SET_ERR_MSG(info->extack, VNET_VIFS_FULL);
		else if (err == -ENODEV)	/* being deleted */
			err = -ENOENT;
	} else if (!vnet_table_remove(&vn->vifs, id, mac)) {
		NL_SET_ERR_MSG(info->extack, "no such vif on this vnet");
		err = -ENOENT;
	}
	rcu_read_unlock();
	return err;
}

int vnet_nl_vif_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_vif(info, true);
}

int vnet_nl_vif_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	return vnet_nl_vif(info, false);
}

int vnet_nl_peer_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	u16 port = VNET_PORT;
	__be32 addr;
	int err;

	if (!vnet_need(info, VNET_A_ADDR, "missing peer address"))
		return -EINVAL;
	addr = nla_get_in_addr(info->attrs[VNET_A_ADDR]);
	err = vnet_peer_check(genl_info_net(info), addr, info->extack);
	if (err)
		return err;
	if (info->attrs[VNET_A_PORT])
		port = nla_get_u16(info->attrs[VNET_A_PORT]);
	mutex_lock(&vn->lock);
	err = vnet_socket_open(vn, info->extack);
	if (!err) {
		err = vnet_peer_add(vn, addr, port, info->extack);
		if (err)
			vnet_maybe_close(vn);
	}
	mutex_unlock(&vn->lock);
	return err;
}

int vnet_nl_peer_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	int err;

	if (!vnet_need(info, VNET_A_ADDR, "missing peer address"))
		return -EINVAL;
	mutex_lock(&vn->lock);
	err = vnet_peer_del(vn, nla_get_in_addr(info->attrs[VNET_A_ADDR]));
	if (err)
		NL_SET_ERR_MSG(info->extack, "not a peer");
	else
		vnet_maybe_close(vn);
	mutex_unlock(&vn->lock);
	return err;
}

int vnet_nl_varp_flush_doit(struct sk_buff *skb, struct genl_info *info)
{
	vnet_table_flush(&vnet_info_net(info)->varp, NULL);
	return 0;
}

int vnet_nl_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	int err = 0;

	mutex_lock(&vn->lock);
	if (info->attrs[VNET_A_ADDR])
		err = vnet_set_underlay(vn, nla_get_in_addr(info->attrs[VNET_A_ADDR]),
					info->extack);
	if (!err && info->attrs[VNET_A_MCADDR])
		err = vnet_set_group(vn, nla_get_in_addr(info->attrs[VNET_A_MCADDR]),
				     info->extack);
	mutex_unlock(&vn->lock);
	return err;
}

static int vnet_put_stats(struct sk_buff *msg, int attr,
			  const char * const *names, unsigned int n,
			  const u64 *values)
{
	struct nlattr *nest = nla_nest_start(msg, attr);
	struct nlattr *stat;
	unsigned int i;

	if (!nest)
		return -EMSGSIZE;
	for (i = 0; i < n; i++) {
		if (!values[i])
			continue;
		stat = nla_nest_start(msg, VNET_A_STAT);
		if (!stat || nla_put_string(msg, VNET_A_STAT_NAME, names[i]) ||
		    nla_put_u64_64bit(msg, VNET_A_STAT_VALUE, values[i],
				      VNET_A_PAD))
			return -EMSGSIZE;
		nla_nest_end(msg, stat);
	}
	nla_nest_end(msg, nest);
	return 0;
}

/* The sizes and longest chains of the namespace's two tables. */
static int vnet_put_tables(struct sk_buff *msg, struct vnet_net *vn)
{
	u32 varp, varp_chain, vifs, vifs_chain;

	rcu_read_lock();
	vnet_table_stats(&vn->varp, &varp, &varp_chain);
	vnet_table_stats(&vn->vifs, &vifs, &vifs_chain);
	rcu_read_unlock();
	if (nla_put_u32(msg, VNET_A_VARP_ENTRIES, varp) ||
	    nla_put_u32(msg, VNET_A_VIF_ENTRIES, vifs) ||
	    nla_put_u32(msg, VNET_A_VARP_LONGEST_CHAIN, varp_chain) ||
	    nla_put_u32(msg, VNET_A_VIF_LONGEST_CHAIN, vifs_chain))
		return -EMSGSIZE;
	return 0;
}

int vnet_nl_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vnet_net *vn = vnet_info_net(info);
	struct vnet_stats sum = {};
	struct net_device *dev;
	struct sk_buff *msg;
	__be32 addr;
	void *hdr;
	int cpu, i;

	for_each_possible_cpu(cpu) {
		const struct vnet_stats *s = per_cpu_ptr(vn->stats, cpu);

		for (i = 0; i < VNET_C_COUNT; i++)
			sum.counter[i] += READ_ONCE(s->counter[i]);
		for (i = 0; i < VNET_D_COUNT; i++)
			sum.drop[i] += READ_ONCE(s->drop[i]);
	}
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put_reply(msg, info, &vnet_family, 0, VNET_CMD_GET);
	if (!hdr)
		goto nospace;
	addr = READ_ONCE(vn->addr);
	if (nla_put_in_addr(msg, VNET_A_MCADDR, READ_ONCE(vn->group)) ||
	    nla_put_u16(msg, VNET_A_PORT, VNET_PORT) ||
	    nla_put_u32(msg, VNET_A_TTL, VNET_ENTRY_TTL / HZ) ||
	    nla_put_u64_64bit(msg, VNET_A_SWEEPS, READ_ONCE(vn->vifs.sweeps),
			      VNET_A_PAD))
		goto nospace;
	if (addr) {
		rcu_read_lock();
		dev = dev_get_by_index_rcu(vn->net, READ_ONCE(vn->ifindex));
		if (nla_put_in_addr(msg, VNET_A_ADDR, addr) ||
		    nla_put_u32(msg, VNET_A_IFINDEX, READ_ONCE(vn->ifindex)) ||
		    (dev && nla_put_string(msg, VNET_A_IFNAME, dev->name))) {
			rcu_read_unlock();
			goto nospace;
		}
		rcu_read_unlock();
	}
	if (vnet_put_stats(msg, VNET_A_COUNTERS, vnet_counter_names,
			   VNET_C_COUNT, sum.counter) ||
	    vnet_put_stats(msg, VNET_A_DROPS, vnet_drop_names, VNET_D_COUNT,
			   sum.drop) ||
	    vnet_put_tables(msg, vn))
		goto nospace;
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
nospace:
	nlmsg_free(msg);
	return -EMSGSIZE;
}

static void *vnet_dump_put(struct sk_buff *skb, struct netlink_callback *cb,
			   u8 cmd)
{
	return genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			   &vnet_family, NLM_F_MULTI, cmd);
}

/* The key ids of a secure vnet, send key first; never the secrets. */
static int vnet_put_keys(struct sk_buff *skb, struct vnet_dev *vd)
{
	const struct vnet_keyset *ks = rcu_dereference(vd->keys);
	struct nlattr *nest, *key;
	unsigned int i;

	if (!ks)
		return 0;
	nest = nla_nest_start(skb, VNET_A_KEYS);
	if (!nest)
		return -EMSGSIZE;
	for (i = 0; i < ks->n; i++) {
		key = nla_nest_start(skb, VNET_A_KEY);
		if (!key || nla_put_u8(skb, VNET_A_KEY_ID, ks->key[i].id))
			return -EMSGSIZE;
		nla_nest_end(skb, key);
	}
	nla_nest_end(skb, nest);
	return 0;
}

static u32 vnet_header_size(const struct vnet_dev *vd)
{
	bool udp = vd->encap == VNET_ENCAP_UDP;

	if (vd->security == VNET_SECURITY_NONE)
		return udp ? VNET_HEADER_UDP : VNET_HEADER_ETHERIP;
	return udp ? VNET_HEADER_UDP_SEALED : VNET_HEADER_ETHERIP_SEALED;
}

/* Called under RCU. */
static int vnet_fill_vnet(struct sk_buff *skb, struct netlink_callback *cb,
			  struct vnet_dev *vd)
{
	struct rtnl_link_stats64 st;
	void *hdr = vnet_dump_put(skb, cb, VNET_CMD_VNET_GET);

	if (!hdr)
		return -EMSGSIZE;
	dev_get_stats(vd->dev, &st);
	if (nla_put(skb, VNET_A_ID, VNET_ID_LEN, vd->id) ||
	    nla_put_string(skb, VNET_A_IFNAME, vd->dev->name) ||
	    nla_put_u32(skb, VNET_A_IFINDEX, vd->dev->ifindex) ||
	    nla_put_u8(skb, VNET_A_ENCAP, vd->encap) ||
	    nla_put_u8(skb, VNET_A_SECURITY, vd->security) ||
	    nla_put_u32(skb, VNET_A_HEADER, vnet_header_size(vd)) ||
	    vnet_put_keys(skb, vd) ||
	    nla_put_u32(skb, VNET_A_MTU, vd->mtu) ||
	    (vd->group && nla_put_in_addr(skb, VNET_A_GROUP, vd->group)) ||
	    nla_put_u64_64bit(skb, VNET_A_RX_PACKETS, st.rx_packets, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_TX_PACKETS, st.tx_packets, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_RX_BYTES, st.rx_bytes, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_TX_BYTES, st.tx_bytes, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_RX_DROPPED, st.rx_dropped, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_TX_DROPPED, st.tx_dropped, VNET_A_PAD) ||
	    nla_put_u32(skb, VNET_A_VARP_ENTRIES,
			READ_ONCE(vd->macs[VNET_TABLE_VARP])) ||
	    nla_put_u32(skb, VNET_A_VIF_ENTRIES,
			READ_ONCE(vd->macs[VNET_TABLE_VIFS])) ||
	    nla_put_u32(skb, VNET_A_PORTS, READ_ONCE(vd->nports))) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/* Dumps resume at (bucket, index within bucket) kept in cb->args. */
int vnet_nl_vnet_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct vnet_net *vn = vnet_pernet(sock_net(skb->sk));
	unsigned int b, i;
	struct vnet_dev *vd;

	rcu_read_lock();
	for (b = cb->args[0]; b < ARRAY_SIZE(vn->vnets); b++, cb->args[1] = 0) {
		i = 0;
		hlist_for_each_entry_rcu(vd, &vn->vnets[b], node) {
			if (i++ < cb->args[1])
				continue;
			if (vnet_fill_vnet(skb, cb, vd))
				goto out;
			cb->args[1] = i;
		}
	}
out:
	cb->args[0] = b;
	rcu_read_unlock();
	return skb->len;
}

static int vnet_fill_entry(struct sk_buff *skb, struct netlink_callback *cb,
			   u8 cmd, const struct vnet_mac_entry *e)
{
	void *hdr = vnet_dump_put(skb, cb, cmd);

	if (!hdr)
		return -EMSGSIZE;
	if (nla_put(skb, VNET_A_ID, VNET_ID_LEN, e->vnet) ||
	    nla_put(skb, VNET_A_MAC, ETH_ALEN, e->mac) ||
	    (cmd == VNET_CMD_VARP_GET &&
	     nla_put_in_addr(skb, VNET_A_ADDR, READ_ONCE(e->addr))) ||
	    nla_put_u64_64bit(skb, VNET_A_AGE_MS,
			      jiffies_to_msecs(jiffies - READ_ONCE(e->updated)),
			      VNET_A_PAD)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

static int vnet_dump_table(struct sk_buff *skb, struct netlink_callback *cb,
			   struct vnet_mac_table *t, u8 cmd)
{
	struct vnet_mac_entry *e;
	unsigned int b, i;

	rcu_read_lock();
	for (b = cb->args[0]; b < 1U << VNET_TABLE_BITS; b++, cb->args[1] = 0) {
		i = 0;
		hlist_for_each_entry_rcu(e, &t->buckets[b], node) {
			if (i++ < cb->args[1])
				continue;
			if (vnet_fill_entry(skb, cb, cmd, e))
				goto out;
			cb->args[1] = i;
		}
	}
out:
	cb->args[0] = b;
	rcu_read_unlock();
	return skb->len;
}

int vnet_nl_vif_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	return vnet_dump_table(skb, cb, &vnet_pernet(sock_net(skb->sk))->vifs,
			       VNET_CMD_VIF_GET);
}

int vnet_nl_varp_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	return vnet_dump_table(skb, cb, &vnet_pernet(sock_net(skb->sk))->varp,
			       VNET_CMD_VARP_GET);
}

int vnet_nl_peer_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct vnet_net *vn = vnet_pernet(sock_net(skb->sk));
	struct vnet_peer *p;
	unsigned int i = 0;
	void *hdr;

	rcu_read_lock();
	list_for_each_entry_rcu(p, &vn->peers, list) {
		if (i++ < cb->args[0])
			continue;
		hdr = vnet_dump_put(skb, cb, VNET_CMD_PEER_GET);
		if (!hdr)
			break;
		if (nla_put_in_addr(skb, VNET_A_ADDR, p->addr) ||
		    nla_put_u16(skb, VNET_A_PORT, READ_ONCE(p->port)) ||
		    nla_put_u64_64bit(skb, VNET_A_TX_PACKETS,
				      atomic64_read(&p->tx_packets), VNET_A_PAD) ||
		    nla_put_u64_64bit(skb, VNET_A_RX_PACKETS,
				      atomic64_read(&p->rx_packets), VNET_A_PAD)) {
			genlmsg_cancel(skb, hdr);
			break;
		}
		genlmsg_end(skb, hdr);
		cb->args[0] = i;
	}
	rcu_read_unlock();
	return skb->len;
}

/* Called under RCU. */
static int vnet_fill_port(struct sk_buff *skb, struct netlink_callback *cb,
			  struct vnet_dev *vd, struct vnet_port *port)
{
	struct net_device *dev = rcu_dereference(port->dev);
	void *hdr = vnet_dump_put(skb, cb, VNET_CMD_PORT_GET);
	struct rtnl_link_stats64 st;
	struct vnet_linkctl_conf link;

	if (!hdr)
		return -EMSGSIZE;
	vnet_port_stats(port, &st);
	vnet_linkctl_get(port, &link);
	if (nla_put(skb, VNET_A_ID, VNET_ID_LEN, vd->id) ||
	    nla_put_string(skb, VNET_A_IFNAME, port->name) ||
	    nla_put_u8(skb, VNET_A_PORT_STATE, dev ? VNET_PORT_STATE_ATTACHED :
			VNET_PORT_STATE_WAITING) ||
	    nla_put_u32(skb, VNET_A_IFINDEX, dev ? dev->ifindex : 0) ||
	    nla_put_u64_64bit(skb, VNET_A_RX_PACKETS, st.rx_packets, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_TX_PACKETS, st.tx_packets, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_RX_BYTES, st.rx_bytes, VNET_A_PAD) ||
	    nla_put_u64_64bit(skb, VNET_A_TX_BYTES, st.tx_bytes, VNET_A_PAD) ||
	    (link.suspended &&
	     nla_put_u8(skb, VNET_A_LINK_SUSPENDED, 1)) ||
	    (link.loss_ppm &&
	     nla_put_u32(skb, VNET_A_LINK_LOSS, link.loss_ppm)) ||
	    (link.corrupt_ppm &&
	     nla_put_u32(skb, VNET_A_LINK_CORRUPT, link.corrupt_ppm)) ||
	    (link.delay_us &&
	     nla_put_u32(skb, VNET_A_LINK_DELAY, link.delay_us)) ||
	    (link.jitter_us &&
	     nla_put_u32(skb, VNET_A_LINK_JITTER, link.jitter_us)) ||
	    (link.rate &&
	     nla_put_u64_64bit(skb, VNET_A_LINK_RATE, link.rate, VNET_A_PAD))) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/* Dumps resume at the index of the port among all the namespace's ports. */
int vnet_nl_port_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct vnet_net *vn = vnet_pernet(sock_net(skb->sk));
	struct vnet_port *port;
	struct vnet_dev *vd;
	unsigned int b, i = 0;

	rcu_read_lock();
	for (b = 0; b < ARRAY_SIZE(vn->vnets); b++) {
		hlist_for_each_entry_rcu(vd, &vn->vnets[b], node) {
			list_for_each_entry_rcu(port, &vd->ports, list) {
				if (i++ < cb->args[0])
					continue;
				if (vnet_fill_port(skb, cb, vd, port))
					goto out;
				cb->args[0] = i;
			}
		}
	}
out:
	rcu_read_unlock();
	return skb->len;
}

/* Called under RCU. */
static int vnet_fill_endpoint(struct sk_buff *skb, struct netlink_callback *cb,
			      struct vnet_dev *vd, struct vnet_endpoint *ep)
{
	void *hdr = vnet_dump_put(skb, cb, VNET_CMD_ENDPOINT_GET);
	u64 counters[VNET_EP_COUNTERS];

	if (!hdr)
		return -EMSGSIZE;
	vnet_endpoint_counters(ep, counters);
	if (nla_put(skb, VNET_A_ID, VNET_ID_LEN, vd->id) ||
	    nla_put_u8(skb, VNET_A_ENDPOINT_KIND, ep->kind) ||
	    nla_put_u8(skb, VNET_A_ENDPOINT_STATE, READ_ONCE(ep->state)) ||
	    (ep->lport &&
	     (nla_put_in_addr(skb, VNET_A_ADDR, ep->laddr) ||
	      nla_put_u16(skb, VNET_A_PORT, ntohs(ep->lport)))) ||
	    (ep->rport &&
	     (nla_put_in_addr(skb, VNET_A_REMOTE_ADDR, ep->raddr) ||
	      nla_put_u16(skb, VNET_A_REMOTE_PORT, ntohs(ep->rport)))) ||
	    vnet_put_stats(skb, VNET_A_COUNTERS, vnet_ep_counter_names,
			   VNET_EP_COUNTERS, counters)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/* Dumps resume at the index of the endpoint among the namespace's. */
int vnet_nl_endpoint_get_dumpit(struct sk_buff *skb,
				struct netlink_callback *cb)
{
	struct vnet_net *vn = vnet_pernet(sock_net(skb->sk));
	struct vnet_endpoint *ep;
	struct vnet_dev *vd;
	unsigned int b, i = 0;

	rcu_read_lock();
	for (b = 0; b < ARRAY_SIZE(vn->vnets); b++) {
		hlist_for_each_entry_rcu(vd, &vn->vnets[b], node) {
			list_for_each_entry_rcu(ep, &vd->endpoints, list) {
				if (i++ < cb->args[0])
					continue;
				if (vnet_fill_endpoint(skb, cb, vd, ep))
					goto out;
				cb->args[0] = i;
			}
		}
	}
out:
	rcu_read_unlock();
	return skb->len;
}

struct genl_family vnet_family __ro_after_init = {
	.name		= VNET_GENL_NAME,
	.version	= VNET_GENL_VERSION,
	.maxattr	= VNET_A_MAX,
	.policy		= vnet_nl_policy,
	.netnsok	= true,
	.parallel_ops	= true,
	.module		= THIS_MODULE,
	.small_ops	= vnet_nl_ops,
	.n_small_ops	= ARRAY_SIZE(vnet_nl_ops),
	.mcgrps		= vnet_nl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(vnet_nl_mcgrps),
};

int __init vnet_genl_init(void)
{
	return genl_register_family(&vnet_family);
}

void vnet_genl_exit(void)
{
	genl_unregister_family(&vnet_family);
}
