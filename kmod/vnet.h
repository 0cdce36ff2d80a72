/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vnet: private virtual Ethernet LANs across hosts, EtherIP in UDP port 1798
 * or raw EtherIP, wire-compatible with the Xen vnet suite and with vnetd.
 */
#ifndef _VNET_H
#define _VNET_H

#include <linux/etherdevice.h>
#include <linux/hrtimer.h>
#include <linux/ip.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/percpu.h>
#include <linux/rculist.h>
#include <linux/siphash.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/udp.h>
#include <linux/workqueue.h>
#include <net/dst_cache.h>
#include <net/gro_cells.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "compat.h"
#include "netlink_gen.h"

#define VNET_IPPROTO_ETHERIP	97

#define VNET_MSG_VARP		1
#define VNET_MSG_VUDP		2
#define VNET_MSG_VFWD		3
#define VNET_MSG_SEALED		5
#define VNET_MSG_OLD_SEALED	4	/* before sessions: dropped, counted */
#define VARP_OP_REQUEST		1
#define VARP_OP_ANNOUNCE	2
#define VARP_AF_INET		2
#define ETHERIP_VERSION		4

#define VNET_MSG_HLEN		4
#define ETHERIP_HLEN		18
#define VUDP_HLEN		(VNET_MSG_HLEN + ETHERIP_HLEN)
/* The longest VFWD message: what one UDP datagram can carry. */
#define VNET_VFWD_MAX		(U16_MAX - sizeof(struct iphdr) - \
				 sizeof(struct udphdr))
#define VARP_LEN		43
/*
 * After the 43 bytes of every announce we send: "vf", then a 16-bit feature
 * word whose bit 0 says "this host accepts super-frames" (doc/wire-format.md).
 * The original reads 43 bytes and ignores the rest.
 */
#define VARP_EXT_LEN		4
#define VARP_EXT_SUPER		"vf\0\1"
/*
 * The original reads a datagram into 1700 bytes: a frame in a longer VUDP
 * packet can only come from a host that takes super-frames.
 */
#define VNET_ORIGINAL_FRAME_MAX	(1700 - VUDP_HLEN)
#define VNET_TTL		64
/*
 * The hop budget of a VFWD relay from the original forwarder, whose inner
 * header has no TTL: one re-send on our LAN with TTL 1.
 */
#define VNET_BARE_RELAY_TTL	2

/* Reference 1.2: header_n, shown by listings and reserved as headroom. */
#define VNET_HEADER_UDP		64
#define VNET_HEADER_ETHERIP	52
#define VNET_MTU_UDP		1500
#define VNET_MTU_ETHERIP	1448

/*
 * Secure vnets (doc/security.md): a 50-byte header and a 16-byte tag around
 * each frame or VARP message, in place of the 22-byte VUDP or 18-byte EtherIP
 * prefix.  The nonce is the header's session and counter (XChaCha20).
 */
#define VNET_SEAL_HLEN		50
#define VNET_SEAL_TAGLEN	16
#define VNET_SEAL_OVERHEAD	(VNET_SEAL_HLEN + VNET_SEAL_TAGLEN)
#define VNET_SEAL_VARP		1
#define VNET_SEAL_FRAME		2
#define VNET_SEAL_CHALLENGE	3
#define VNET_SEAL_ANSWER	4
#define VNET_SESSION_LEN	16
#define VNET_CHALLENGE_LEN	16
#define VNET_HEADER_UDP_SEALED	108
#define VNET_HEADER_ETHERIP_SEALED 100
#define VNET_MTU_ETHERIP_SEALED	1400
/* The largest UDP payload (65507) less the overhead: a sealed super-frame. */
#define VNET_SEAL_MAX_FRAME	(65507 - VNET_SEAL_OVERHEAD)
/*
 * Receiver entries: per (vnet, sender), at most VNET_REPLAY_MAX senders a
 * vnet; a sender beyond it is refused.  A pending challenge is sent again
 * after VNET_CHALLENGE_RETRY.
 */
#define VNET_REPLAY_WINDOW	2048
#define VNET_REPLAY_RING	4096	/* bits; a power of two above the window */
#define VNET_REPLAY_BITS	6
#define VNET_REPLAY_MAX		1024
#define VNET_CHALLENGE_RETRY	HZ

/* Entries live 60 s after their last refresh; tables are swept every 10 s. */
#define VNET_ENTRY_TTL		(60 * HZ)
#define VNET_SWEEP_INTERVAL	(10 * HZ)
#define VNET_TABLE_BITS		10
/*
 * Each vnet holds at most VNET_MAX_VNET_MACS entries of a table, the plain
 * vnets together VNET_MAX_TABLE_MACS (uapi/vnet_genl.h); VARP entries share
 * the route caches of at most VNET_REMOTE_MAX care-of addresses.
 */
#define VNET_REMOTE_BITS	8
#define VNET_REMOTE_MAX		1024
/* A relayed multicast seen again within this window is a duplicate. */
#define VNET_FLOOD_WINDOW	(HZ / 2)
#define VNET_FLOOD_BITS		10

/* Room for an outer IPv4 + UDP + VFWD + inner IPv4 + UDP header stack. */
#define VNET_CTRL_HEADROOM	(LL_MAX_HEADER + 2 * (sizeof(struct iphdr) + \
				 sizeof(struct udphdr)) + VNET_MSG_HLEN)

struct etherip_hdr {
	u8 word[2];
	u8 vnet[VNET_ID_LEN];
} __packed;

struct vnet_seal_hdr {
	__be16 id;
	u8 type;
	u8 level;
	u8 vnet[VNET_ID_LEN];
	u8 key_id;
	u8 reserved;
	__be32 sender;
	u8 session[VNET_SESSION_LEN];
	__be64 counter;
} __packed;

struct varp_msg {
	__be16 id;
	__be16 opcode;
	u8 vnet[VNET_ID_LEN];
	u8 vmac[ETH_ALEN];
	u8 family;
	u8 addr[16];
} __packed;

struct vnet_stats {
	u64 counter[VNET_C_COUNT];
	u64 drop[VNET_D_COUNT];
};

enum vnet_table_kind {
	VNET_TABLE_VARP,
	VNET_TABLE_VIFS,
	VNET_TABLE_KINDS
};

/* A care-of address and the route to it, shared by the VARP entries there. */
struct vnet_remote {
	struct hlist_node node;
	struct rcu_head rcu;
	__be32 addr;
	unsigned int users;		/* entries; under the table's lock */
	struct dst_cache dst_cache;
};

/* (vnet, MAC) -> care-of address and last refresh: the VARP cache and vifs. */
struct vnet_mac_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	struct vnet_dev *vd;		/* whose count it is in; under the lock */
	struct vnet_remote *remote;	/* VARP entries; NULL: no route cache */
	u8 vnet[VNET_ID_LEN];
	u8 mac[ETH_ALEN];
	/*
	 * VARP: the care-of address; vifs: the local attachment (vnet_att_addr()).
	 * Never changes: a move replaces the entry.
	 */
	__be32 addr;
	unsigned long updated;
};

struct vnet_mac_table {
	struct hlist_head *buckets;
	struct hlist_head *remotes;	/* VARP cache only */
	siphash_key_t key;		/* of both hashes: chains stay short */
	spinlock_t lock;		/* writers; readers use RCU */
	unsigned int count;
	unsigned int nremotes;
	u64 sweeps;
	u8 kind;			/* enum vnet_table_kind */
};

struct vnet_flood_slot {
	u64 key;
	unsigned long when;
};

struct vnet_flood_filter {
	spinlock_t lock;		/* slots */
	siphash_key_t secret;
	struct vnet_flood_slot *slots;
};

/* The hosts that take super-frames, keyed by address (super.c). */
#define VNET_SUPER_BITS		8
#define VNET_SUPER_MAX		4096
struct vnet_super_set {
	spinlock_t lock;		/* inserts and removals */
	siphash_key_t key;
	unsigned int count;		/* under lock */
	struct hlist_head buckets[BIT(VNET_SUPER_BITS)];
};

struct vnet_peer {
	struct list_head list;
	struct rcu_head rcu;
	__be32 addr;
	u16 port;
	atomic64_t tx_packets;
	atomic64_t rx_packets;
};

/*
 * A vnet's keys; key[0] is the send key.  Replaced whole, under RCU, and
 * wiped when freed.
 */
struct vnet_key {
	u8 secret[VNET_KEY_LEN];
	u8 id;
};

struct vnet_keyset {
	struct rcu_head rcu;
	unsigned int n;
	struct vnet_key key[VNET_MAX_KEYS];
};

/*
 * What a namespace seals with: a random session drawn whenever the module
 * starts sending for it, and the last counter used in it.  Replaced whole,
 * under RCU, so a counter is never taken from one session for another.
 */
struct vnet_session {
	struct rcu_head rcu;
	atomic64_t counter;
	u8 id[VNET_SESSION_LEN];
};

/*
 * Per (vnet, sender): the sender's confirmed session, the highest counter
 * accepted in it and the ones below it, and the challenge we sent last.
 */
struct vnet_replay {
	struct hlist_node node;
	spinlock_t lock;		/* everything below */
	__be32 sender;
	bool confirmed;
	bool pending;			/* a challenge was sent at challenged */
	u8 session[VNET_SESSION_LEN];
	u64 top;
	unsigned long seen[BITS_TO_LONGS(VNET_REPLAY_RING)];
	u8 challenge[VNET_CHALLENGE_LEN];
	unsigned long challenged;	/* jiffies */
};

struct vnet_replay_table {
	struct rcu_head rcu;
	spinlock_t lock;		/* inserts */
	unsigned int count;
	struct hlist_head buckets[1U << VNET_REPLAY_BITS];
};

/* Per network namespace: everything a simulated or real host owns. */
struct vnet_net {
	struct net *net;
	struct mutex lock;		/* control operations */
	struct socket __rcu *sock;	/* set while vnets or peers exist */
	struct hlist_head vnets[16];	/* vnet_dev by id; writers hold RTNL */
	struct list_head peers;		/* writers hold lock */
	unsigned int npeers;		/* under lock */
	struct vnet_mac_table varp;
	struct vnet_mac_table vifs;
	struct vnet_super_set supers;	/* hosts that take super-frames */
	struct vnet_flood_filter flood;
	struct vnet_stats __percpu *stats;
	struct delayed_work sweep;
	struct work_struct idle;	/* closes the socket once unused */
	struct work_struct adopt;	/* attaches waiting ports (port.c) */
	struct vnet_session __rcu *session;	/* of sealed packets; xchg() */
	__be32 group;			/* the shared one */
	/*
	 * The groups the socket has joined: the shared one and the vnets' own.
	 * Writers hold lock and RTNL; the receive path reads them locklessly.
	 */
	__be32 joined[VNET_MAX_GROUPS];
	unsigned int njoined;
	__be32 addr;			/* underlay address, 0 until set */
	__be32 mask;
	int ifindex;
};

/*
 * The local attachments of a vnet, which the vif table records for each local
 * MAC: the vnet device (on its bridge, or alone), or a port by its number.
 * VNET_ATT_NETWORK is where frames from other hosts come from.
 */
#define VNET_ATT_VNIF		0
#define VNET_ATT_NETWORK	U32_MAX

/* Link control limits (PORT_SET): millionths, microseconds, bits/s. */
#define VNET_LINK_PPM_MAX	1000000U
#define VNET_LINK_DELAY_MAX	60000000U
#define VNET_LINK_RATE_MIN	8000ULL
#define VNET_LINK_RATE_MAX	100000000000ULL
/* The frames a port's link control queue holds (netem's default limit). */
#define VNET_LINK_QUEUE_MAX	1000

/* A port's link control as PORT_SET gives it and PORT_GET reports it. */
struct vnet_linkctl_conf {
	u64 rate;			/* bits/s, 0: no limit */
	u32 loss_ppm;
	u32 corrupt_ppm;
	u32 delay_us;
	u32 jitter_us;
	bool suspended;
};

/* The link control of a port (linkctl.c). */
struct vnet_linkctl {
	spinlock_t lock;		/* everything below */
	struct vnet_linkctl_conf conf;
	bool suspended;			/* also read locklessly on receive */
	bool active;			/* any setting */
	u64 loss;			/* probabilities out of 2^32 */
	u64 corrupt;
	u64 delay;			/* ns */
	u64 jitter;
	u64 rate;			/* bits/s */
	u64 free_at;			/* when the rate lets the next frame go */
	u64 last_due;			/* when the last frame queued leaves */
	bool sending;			/* the timer sends frames it took off */
	struct sk_buff_head queue;	/* frames waiting, in order to leave */
	struct hrtimer timer;		/* armed for the head of queue */
};

/*
 * An interface of the namespace that is a port of a vnet (port.c): bound by
 * name, attached by its receive handler while an interface of that name exists.
 */
struct vnet_port {
	struct list_head list;		/* in vnet_dev.ports; writers hold RTNL */
	struct rcu_head rcu;
	struct vnet_dev *vd;
	struct net_device __rcu *dev;	/* NULL while waiting; holds a reference */
	struct pcpu_sw_netstats __percpu *stats;
	u32 id;				/* its attachment, never VNET_ATT_VNIF */
	char name[IFNAMSIZ];
	/*
	 * Link control is on, or its last frames still queued: the one test
	 * the paths pay without it.  READ_ONCE; written under link.lock.
	 */
	bool link_on;
	struct vnet_linkctl link;
};

/* An endpoint's counters, vnetd's (Endpoint.COUNTERS), in its order. */
enum vnet_ep_counter {
	VNET_EP_RX_PACKETS,
	VNET_EP_RX_BYTES,
	VNET_EP_TX_PACKETS,
	VNET_EP_TX_BYTES,
	VNET_EP_TX_BUSY,		/* the queue to the VM was full */
	VNET_EP_TX_DOWN,		/* no connection */
	VNET_EP_TX_ERRORS,
	VNET_EP_RX_ERRORS,
	VNET_EP_RX_RUNTS,		/* shorter than an Ethernet header */
	VNET_EP_RX_FOREIGN,		/* udp: a datagram from anyone but REMOTE */
	VNET_EP_FRAMING_ERRORS,		/* a stream length QEMU never sends */
	VNET_EP_CONNECTS,
	VNET_EP_REPLACED,		/* tcp-listen: a client replaced by a new one */
	VNET_EP_ATTEMPTS,		/* tcp-connect */
	VNET_EP_COUNTERS
};

extern const char * const vnet_ep_counter_names[VNET_EP_COUNTERS];

struct vnet_ep_stats {
	u64 c[VNET_EP_COUNTERS];
};

/*
 * A socket endpoint of a vnet (endpoint.c): one VM's QEMU socket NIC, a local
 * attachment numbered with the ports.  The datapath sees it under RCU and
 * only hands it frames (vnet_endpoint_xmit()); everything that may sleep is
 * done by its work item, under its lock.
 */
struct vnet_endpoint {
	struct list_head list;		/* in vnet_dev.endpoints; writers hold RTNL */
	struct rcu_head rcu;
	struct vnet_dev *vd;
	u32 id;				/* its attachment, never VNET_ATT_VNIF */
	u8 kind;			/* enum vnet_endpoint_kind */
	u8 state;			/* enum vnet_endpoint_state; READ_ONCE */
	__be16 lport;
	__be16 rport;
	__be32 laddr;
	__be32 raddr;
	struct socket __rcu *udp;	/* udp: bound to LOCAL */
	struct vnet_ep_stats __percpu *stats;
	struct delayed_work work;	/* tcp: accept, connect, receive, send */
	struct sk_buff_head txq;	/* tcp: frames for the VM, bounded */
	struct mutex lock;		/* what follows */
	bool closed;
	struct socket *listener;	/* tcp-listen */
	struct socket *connecting;	/* tcp-connect: an attempt in flight */
	struct socket *conn;		/* tcp: the connection to the VM */
	unsigned long deadline;		/* of the attempt, or when to try again */
	unsigned long backoff;
	u64 rx_at_connect;		/* rx_packets when conn was made */
	struct sk_buff *tx_skb;		/* partly sent */
	unsigned int tx_off;		/* of the 4-byte length and the frame */
	__be32 tx_len;
	void (*saved_data_ready)(struct sock *sk);
	void (*saved_write_space)(struct sock *sk);
	void (*saved_state_change)(struct sock *sk);
	struct sk_buff *rx_skb;		/* the frame being read, NULL: discard */
	unsigned int rx_want;		/* bytes of it still to read */
	unsigned int rx_hlen;		/* bytes of the length read */
	__be32 rx_len;
};

/* The private part of a vnet device (vnifNN). */
struct vnet_dev {
	struct hlist_node node;
	struct net_device *dev;
	struct vnet_net *vn;
	struct gro_cells gro_cells;
	struct vnet_keyset __rcu *keys;	/* secure vnets; writers hold RTNL */
	struct vnet_replay_table __rcu *replay;
	u8 id[VNET_ID_LEN];
	u8 encap;
	u8 security;			/* enum vnet_security */
	u8 prefix[VUDP_HLEN];		/* what goes before each frame */
	u8 prefix_len;
	bool df;			/* raw EtherIP: its MTU fits, so DF is set */
	u32 mtu;			/* the vnet's, whatever the device's */
	__be32 group;			/* its own, or 0: the shared one */
	struct list_head ports;		/* vnet_port; writers hold RTNL */
	unsigned int nports;		/* under RTNL */
	struct list_head endpoints;	/* vnet_endpoint; writers hold RTNL */
	u32 last_port;			/* the newest port or endpoint number */
	/* Entries in each table (enum vnet_table_kind), under its lock. */
	unsigned int macs[VNET_TABLE_KINDS];
};

extern unsigned int vnet_net_id;
extern char *varp_mcaddr;

static inline struct vnet_net *vnet_pernet(struct net *net)
{
	return net_generic(net, vnet_net_id);
}

static inline void vnet_count(struct vnet_net *vn, enum vnet_counter c)
{
	this_cpu_inc(vn->stats->counter[c]);
}

static inline void vnet_drop(struct vnet_net *vn, enum vnet_drop d)
{
	this_cpu_inc(vn->stats->drop[d]);
}

static inline __be32 vnet_att_addr(u32 att)
{
	return (__force __be32)att;
}

static inline u32 vnet_entry_att(const struct vnet_mac_entry *e)
{
	return (__force u32)e->addr;
}

/*
 * Whether a vnet has local attachments besides its device: ports (attached
 * or waiting) or endpoints.  Called under RCU.
 */
static inline bool vnet_has_ports(const struct vnet_dev *vd)
{
	return !list_empty(&vd->ports) || !list_empty(&vd->endpoints);
}

/* The route cache of a VARP entry's host, if it has one. */
static inline struct dst_cache *vnet_entry_cache(struct vnet_mac_entry *e)
{
	return e->remote ? &e->remote->dst_cache : NULL;
}

/* Where @vd floods: its own group, else the namespace's shared one. */
static inline __be32 vnet_dev_group(const struct vnet_dev *vd)
{
	return vd->group ?: READ_ONCE(vd->vn->group);
}

/* A group the socket has joined (the receive path's lockless read). */
static inline bool vnet_our_group(struct vnet_net *vn, __be32 group)
{
	unsigned int i, n = min_t(unsigned int, READ_ONCE(vn->njoined),
				  VNET_MAX_GROUPS);

	for (i = 0; i < n; i++)
		if (READ_ONCE(vn->joined[i]) == group)
			return true;
	return false;
}

static inline bool vnet_onlink(struct vnet_net *vn, __be32 addr)
{
	return !((addr ^ READ_ONCE(vn->addr)) & READ_ONCE(vn->mask));
}

bool vnet_is_local(struct vnet_net *vn, __be32 addr);

/* Our underlay address, loopback or 0.0.0.0: never a frame from another host. */
static inline bool vnet_own_source(struct vnet_net *vn, __be32 src)
{
	return src == READ_ONCE(vn->addr) || ipv4_is_loopback(src) ||
	       ipv4_is_zeronet(src);
}

/* An address a host can have: what announces and forwards may name. */
static inline bool vnet_unicast_addr(__be32 addr)
{
	return !ipv4_is_zeronet(addr) && !ipv4_is_loopback(addr) &&
	       !ipv4_is_multicast(addr) && !ipv4_is_lbcast(addr);
}

/* device.c */
struct vnet_dev *vnet_find(struct vnet_net *vn, const u8 *id);
struct vnet_dev *vnet_find_plain(struct vnet_net *vn, const u8 *id);
int vnet_dev_create(struct vnet_net *vn, const u8 *id, const char *name,
		    u8 encap, u8 security, u32 mtu, __be32 group,
		    struct vnet_keyset *keys, struct netlink_ext_ack *extack);
bool vnet_is_vnif(const struct net_device *dev);
void vnet_dev_delete_all(struct vnet_net *vn);
bool vnet_any(struct vnet_net *vn);
int vnet_link_init(void);
void vnet_link_exit(void);

/* socket.c */
int vnet_socket_open(struct vnet_net *vn, struct netlink_ext_ack *extack);
void vnet_socket_close(struct vnet_net *vn);
void vnet_maybe_close(struct vnet_net *vn);
void vnet_idle_work(struct work_struct *work);
int vnet_set_group(struct vnet_net *vn, __be32 group,
		   struct netlink_ext_ack *extack);
int vnet_sync_groups(struct vnet_net *vn, __be32 extra,
		     struct netlink_ext_ack *extack);
int vnet_set_underlay(struct vnet_net *vn, __be32 addr,
		      struct netlink_ext_ack *extack);
void vnet_udp_xmit(struct vnet_net *vn, struct sk_buff *skb, __be32 daddr,
		   __be16 dport, const u8 *prefix, unsigned int plen,
		   struct dst_cache *cache, bool data);
void vnet_ip_xmit(struct vnet_net *vn, struct sk_buff *skb, __be32 saddr,
		  __be32 daddr, u8 proto, u8 ttl, bool df, const u8 *prefix,
		  unsigned int plen, struct dst_cache *cache);

/* send.c */
netdev_tx_t vnet_xmit(struct sk_buff *skb, struct net_device *dev);
void vnet_frame_xmit(struct vnet_dev *vd, struct sk_buff *skb, u32 from);
bool vnet_send_sealed(struct vnet_dev *vd, struct sk_buff *skb, u8 type,
		      __be32 daddr, struct dst_cache *cache);
void vnet_to_peers(struct vnet_net *vn, const struct sk_buff *skb,
		   __be32 origin, __be32 group, u8 proto, u8 ttl, __be32 skip);

/* receive.c */
bool vnet_sender_ok(struct vnet_net *vn, __be32 addr);
int vnet_udp_rcv(struct sock *sk, struct sk_buff *skb);
int vnet_etherip_proto_rcv(struct sk_buff *skb);
void vnet_frame_rcv(struct vnet_dev *vd, struct sk_buff *skb, __be32 src);
void vnet_deliver(struct vnet_dev *vd, struct sk_buff *skb, bool gro);

/* port.c */
int vnet_port_add(struct vnet_dev *vd, const char *name,
		  struct netlink_ext_ack *extack);
int vnet_port_del(struct vnet_dev *vd, const char *name);
void vnet_port_flush(struct vnet_dev *vd);
void vnet_adopt_work(struct work_struct *work);
bool vnet_local_unicast(struct vnet_dev *vd, struct sk_buff *skb, u32 from);
void vnet_local_flood(struct vnet_dev *vd, struct sk_buff *skb, u32 from,
		      bool keep);
void vnet_local_rcv(struct vnet_dev *vd, struct sk_buff *skb);
void vnet_port_stats(const struct vnet_port *port,
		     struct rtnl_link_stats64 *st);
void vnet_port_send(struct vnet_port *port, struct net_device *dev,
		    struct sk_buff *skb);
struct vnet_port *vnet_port_find(struct vnet_dev *vd, const char *name);
int vnet_port_init(void);
void vnet_port_exit(void);

/* linkctl.c */
void vnet_linkctl_init(struct vnet_port *port);
void vnet_linkctl_xmit(struct vnet_port *port, struct net_device *dev,
		       struct sk_buff *skb);
void vnet_linkctl_flush(struct vnet_port *port);
void vnet_linkctl_set(struct vnet_port *port, const struct vnet_linkctl_conf *conf);
void vnet_linkctl_get(struct vnet_port *port, struct vnet_linkctl_conf *conf);

/* endpoint.c */
struct vnet_endpoint_spec {
	u8 kind;
	__be32 laddr;
	__be32 raddr;
	__be16 lport;
	__be16 rport;
};

int vnet_endpoint_add(struct vnet_dev *vd,
		      const struct vnet_endpoint_spec *spec,
		      struct netlink_ext_ack *extack);
int vnet_endpoint_del(struct vnet_dev *vd,
		      const struct vnet_endpoint_spec *spec);
void vnet_endpoint_flush(struct vnet_dev *vd);
struct vnet_endpoint *vnet_endpoint_by_id(struct vnet_dev *vd, u32 id);
void vnet_endpoint_xmit(struct vnet_endpoint *ep, struct sk_buff *skb);
void vnet_endpoint_counters(const struct vnet_endpoint *ep, u64 *values);

/* varp.c */
void varp_rcv(struct vnet_net *vn, struct sk_buff *skb, __be32 src);
void varp_handle(struct vnet_dev *vd, struct sk_buff *skb, __be32 sender);
void varp_local_mac(struct vnet_dev *vd, const u8 *mac);

/* seal.c */
struct vnet_keyset *vnet_keyset_new(const u8 *secrets, const u8 *ids,
				    unsigned int n,
				    struct netlink_ext_ack *extack);
void vnet_keyset_free(struct vnet_keyset *ks);
struct vnet_replay_table *vnet_replay_new(void);
void vnet_replay_free(struct vnet_replay_table *t);
int vnet_session_new(struct vnet_net *vn, gfp_t gfp);
void vnet_session_free(struct vnet_net *vn);
struct sk_buff *vnet_seal(struct vnet_dev *vd, struct sk_buff *skb, u8 type);
void vnet_sealed_rcv(struct vnet_net *vn, struct sk_buff *skb, bool udp);

/* table.c */
int vnet_table_init(struct vnet_mac_table *t, enum vnet_table_kind kind);
void vnet_table_free(struct vnet_mac_table *t);
struct vnet_mac_entry *vnet_table_lookup(struct vnet_mac_table *t,
					 const u8 *vnet, const u8 *mac);
int vnet_table_update(struct vnet_mac_table *t, struct vnet_dev *vd,
		      const u8 *mac, __be32 addr, gfp_t gfp);
int vnet_learn(struct vnet_mac_table *t, struct vnet_dev *vd, const u8 *mac,
	       __be32 addr);
bool vnet_table_remove(struct vnet_mac_table *t, const u8 *vnet,
		       const u8 *mac);
void vnet_table_flush(struct vnet_mac_table *t, const u8 *vnet);
void vnet_table_stats(struct vnet_mac_table *t, u32 *entries, u32 *longest);
void vnet_table_sweep(struct vnet_mac_table *t);
void vnet_sweep_work(struct work_struct *work);

/* peer.c */
int vnet_peer_check(struct net *net, __be32 addr,
		    struct netlink_ext_ack *extack);
struct vnet_peer *vnet_peer_find(struct vnet_net *vn, __be32 addr);
int vnet_peer_add(struct vnet_net *vn, __be32 addr, u16 port,
		  struct netlink_ext_ack *extack);
int vnet_peer_del(struct vnet_net *vn, __be32 addr);
void vnet_peer_flush(struct vnet_net *vn);

/* flood.c */
int vnet_flood_init(struct vnet_flood_filter *f);
void vnet_flood_free(struct vnet_flood_filter *f);
bool vnet_flood_seen(struct vnet_flood_filter *f, __be32 origin,
		     const void *data, unsigned int len, bool relayed);

/* super.c */
void vnet_super_init(struct vnet_super_set *s);
void vnet_super_flush(struct vnet_super_set *s);
bool vnet_takes_super(struct vnet_super_set *s, __be32 addr);
void vnet_set_super(struct vnet_super_set *s, __be32 addr, bool on);

/* netlink.c */
extern struct genl_family vnet_family;
int vnet_genl_init(void);
void vnet_genl_exit(void);

/* notify.c */
void vnet_notify_mac(struct vnet_net *vn, enum vnet_mac_event event,
		     enum vnet_table_kind table, const u8 *vnet, const u8 *mac,
		     __be32 addr, __be32 old);
void __vnet_capture_frame(struct vnet_endpoint *ep, const struct sk_buff *skb,
			  enum vnet_capture_direction dir);

/*
 * Shows a frame of @ep (skb->data at its Ethernet header) to `vn capture`:
 * with no one capturing in the namespace this is the whole cost.
 */
static inline void vnet_capture_frame(struct vnet_endpoint *ep,
				      const struct sk_buff *skb,
				      enum vnet_capture_direction dir)
{
	if (genl_has_listeners(&vnet_family, ep->vd->vn->net,
			       VNET_NLGRP_CAPTURE))
		__vnet_capture_frame(ep, skb, dir);
}

#endif /* _VNET_H */
