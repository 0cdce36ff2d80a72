// SPDX-License-Identifier: GPL-2.0
/*
 * Endpoints: a VM's QEMU socket NIC (-netdev dgram, stream or socket) as a
 * local attachment of a vnet, in QEMU's framing (doc/endpoints.md): one
 * frame a datagram over UDP, a 4-byte big-endian length before each frame
 * over TCP.  The rules are vnetd's (vnet/datapath/vnetd/endpoint.py):
 *
 *  - udp: a kernel UDP socket bound to LOCAL whose encap_rcv takes the
 *    datagrams of REMOTE, and of no one else (counted in rx_foreign): no one
 *    can divert a VM's traffic by sending a datagram.  Each frame for the VM
 *    leaves as one datagram to REMOTE.  Connected once bound.
 *  - tcp-listen: one client at a time, and a new client replaces the current
 *    one, so a restarted VM is back at once.
 *  - tcp-connect: connects again for ever, HZ / 10 after losing a connection
 *    that carried frames, backing off to once a second; an attempt has 5 s.
 *
 * The datapath runs in atomic context and TCP sockets may sleep, so a TCP
 * endpoint's frames are queued (bounded: a full queue drops and counts in
 * tx_busy, as a full socket does in vnetd) and one work item does the rest
 * under the endpoint's lock: it accepts, connects, reads and sends, never
 * waiting (MSG_DONTWAIT), and resumes where it stopped.  The sockets'
 * callbacks only queue it.  An endpoint is numbered with the vnet's ports,
 * and port.c switches to it as to a port.
 */
#include <linux/if_vlan.h>
#include <linux/tcp.h>
#include <net/inet_common.h>
#include <net/ip.h>
#include <net/route.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/udp_tunnel.h>

#include "vnet.h"

/* QEMU's NET_BUFSIZE: a longer stream length ends the connection. */
#define VNET_EP_MAX_FRAME	(4096 + 65536)
#define VNET_EP_TXQ_LEN		512
/* Frames one run of the work item reads before it lets others run. */
#define VNET_EP_BUDGET		64
#define VNET_EP_CONNECT_TIMEOUT	(5 * HZ)
#define VNET_EP_BACKOFF_MIN	(HZ / 10)
#define VNET_EP_BACKOFF_MAX	HZ

const char * const vnet_ep_counter_names[VNET_EP_COUNTERS] = {
	[VNET_EP_RX_PACKETS]	 = "rx_packets",
	[VNET_EP_RX_BYTES]	 = "rx_bytes",
	[VNET_EP_TX_PACKETS]	 = "tx_packets",
	[VNET_EP_TX_BYTES]	 = "tx_bytes",
	[VNET_EP_TX_BUSY]	 = "tx_busy",
	[VNET_EP_TX_DOWN]	 = "tx_down",
	[VNET_EP_TX_ERRORS]	 = "tx_errors",
	[VNET_EP_RX_ERRORS]	 = "rx_errors",
	[VNET_EP_RX_RUNTS]	 = "rx_runts",
	[VNET_EP_RX_FOREIGN]	 = "rx_foreign",
	[VNET_EP_FRAMING_ERRORS] = "framing_errors",
	[VNET_EP_CONNECTS]	 = "connects",
	[VNET_EP_REPLACED]	 = "replaced",
	[VNET_EP_ATTEMPTS]	 = "attempts",
};

static void vnet_ep_count(struct vnet_endpoint *ep, enum vnet_ep_counter c,
			  u64 n)
{
	this_cpu_add(ep->stats->c[c], n);
}

static u64 vnet_ep_read(const struct vnet_endpoint *ep, enum vnet_ep_counter c)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(per_cpu_ptr(ep->stats, cpu)->c[c]);
	return sum;
}

/* The counters of @ep, in enum vnet_ep_counter's order. */
void vnet_endpoint_counters(const struct vnet_endpoint *ep, u64 *values)
{
	unsigned int i;

	for (i = 0; i < VNET_EP_COUNTERS; i++)
		values[i] = vnet_ep_read(ep, i);
}

/*
 * A frame from the VM (skb->data at its Ethernet header) into the vnet, as
 * from a port.  Consumes @skb.  Called under RCU with BHs off.
 */
static void vnet_ep_rcv(struct vnet_endpoint *ep, struct sk_buff *skb)
{
	struct vnet_dev *vd = ep->vd;

	vnet_ep_count(ep, VNET_EP_RX_PACKETS, 1);
	vnet_ep_count(ep, VNET_EP_RX_BYTES, skb->len);
	vnet_capture_frame(ep, skb, VNET_CAPTURE_DIRECTION_IN);
	skb->dev = vd->dev;
	skb->ip_summed = CHECKSUM_NONE;
	skb_reset_mac_header(skb);
	vnet_frame_xmit(vd, skb, ep->id);
}

/* The longest frame the vnet takes from a VM, a VLAN tag included. */
static unsigned int vnet_ep_max_len(const struct vnet_endpoint *ep)
{
	return ep->vd->mtu + ETH_HLEN + VLAN_HLEN;
}

/* The UDP socket's encap_rcv: skb->data at the UDP header. */
static int vnet_ep_udp_rcv(struct sock *sk, struct sk_buff *skb)
{
	struct vnet_endpoint *ep = rcu_dereference_sk_user_data(sk);

	if (unlikely(!ep))
		goto drop;
	if (ip_hdr(skb)->saddr != ep->raddr ||
	    udp_hdr(skb)->source != ep->rport) {
		vnet_ep_count(ep, VNET_EP_RX_FOREIGN, 1);
		goto drop;
	}
	if (unlikely(skb->len < sizeof(struct udphdr) + ETH_HLEN)) {
		vnet_ep_count(ep, VNET_EP_RX_RUNTS, 1);
		goto drop;
	}
	if (unlikely(skb->len > sizeof(struct udphdr) + vnet_ep_max_len(ep))) {
		vnet_drop(ep->vd->vn, VNET_D_OVERSIZE);
		goto drop;
	}
	__skb_pull(skb, sizeof(struct udphdr));
	skb_scrub_packet(skb, false);
	vnet_ep_rcv(ep, skb);
	return 0;
drop:
	kfree_skb(skb);
	return 0;
}

/* Sends a frame to the VM as one datagram.  Consumes @skb.  Under RCU. */
static void vnet_ep_udp_xmit(struct vnet_endpoint *ep, struct sk_buff *skb)
{
	struct socket *sock = rcu_dereference(ep->udp);
	unsigned int len = skb->len;
	struct flowi4 fl4 = {
		.daddr = ep->raddr,
		.saddr = ep->laddr,
		.flowi4_proto = IPPROTO_UDP,
		.fl4_sport = ep->lport,
		.fl4_dport = ep->rport,
	};
	struct rtable *rt;

	if (unlikely(!sock)) {
		vnet_ep_count(ep, VNET_EP_TX_DOWN, 1);
		goto drop;
	}
	rt = ip_route_output_key(sock_net(sock->sk), &fl4);
	if (IS_ERR(rt)) {
		vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
		goto drop;
	}
	if (skb_cow_head(skb, LL_RESERVED_SPACE(rt->dst.dev) +
			 rt->dst.header_len + sizeof(struct iphdr) +
			 sizeof(struct udphdr))) {
		ip_rt_put(rt);
		vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
		goto drop;
	}
	/* Not the vnet device's packet: iptunnel_xmit() counts it on none. */
	skb->dev = NULL;
	udp_tunnel_xmit_skb(rt, sock->sk, skb, fl4.saddr, fl4.daddr, 0,
			    ip4_dst_hoplimit(&rt->dst), 0, ep->lport, ep->rport,
			    false, false, 0);
	vnet_ep_count(ep, VNET_EP_TX_PACKETS, 1);
	vnet_ep_count(ep, VNET_EP_TX_BYTES, len);
	return;
drop:
	kfree_skb(skb);
}

/* Queues a frame for the work item to send on the connection. */
static void vnet_ep_queue(struct vnet_endpoint *ep, struct sk_buff *skb)
{
	if (READ_ONCE(ep->state) != VNET_ENDPOINT_STATE_CONNECTED) {
		vnet_ep_count(ep, VNET_EP_TX_DOWN, 1);
		kfree_skb(skb);
		return;
	}
	if (skb_queue_len_lockless(&ep->txq) >= VNET_EP_TXQ_LEN) {
		vnet_ep_count(ep, VNET_EP_TX_BUSY, 1);
		kfree_skb(skb);
		return;
	}
	skb_orphan(skb);
	skb_dst_drop(skb);
	skb_queue_tail(&ep->txq, skb);
	mod_delayed_work(system_wq, &ep->work, 0);
}

/*
 * A frame for the VM as QEMU hands frames to a guest: its VLAN tag inline, a
 * super-frame cut into segments, checksums complete.  Returns the list of
 * frames, or NULL (counted) if none is left.  Consumes @skb.
 */
static struct sk_buff *vnet_ep_plain(struct vnet_endpoint *ep,
				     struct sk_buff *skb)
{
	struct sk_buff *segs, *seg, *next, *out = NULL, **tail = &out;
	__be16 proto;

	if (skb_vlan_tag_present(skb)) {
		skb = __vlan_hwaccel_push_inside(skb);
		if (!skb)
			goto error;
	}
	if (skb_is_gso(skb)) {
		proto = ((const struct ethhdr *)skb->data)->h_proto;
		skb_reset_mac_header(skb);
		skb_set_network_header(skb, ETH_HLEN +
				       (eth_type_vlan(proto) ? VLAN_HLEN : 0));
		skb->protocol = proto;
		segs = skb_gso_segment(skb, 0);
		if (IS_ERR_OR_NULL(segs)) {
			kfree_skb(skb);
			goto error;
		}
		consume_skb(skb);
	} else {
		segs = skb;
	}
	skb_list_walk_safe(segs, seg, next) {
		skb_mark_not_on_list(seg);
		if (seg->ip_summed == CHECKSUM_PARTIAL &&
		    skb_checksum_help(seg)) {
			vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
			kfree_skb(seg);
			continue;
		}
		*tail = seg;
		tail = &seg->next;
	}
	return out;
error:
	vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
	return NULL;
}

/*
 * Sends a frame (skb->data at its Ethernet header) to the endpoint's VM.
 * Consumes @skb.  Called under RCU with BHs off.
 */
void vnet_endpoint_xmit(struct vnet_endpoint *ep, struct sk_buff *skb)
{
	struct sk_buff *next;

	skb = vnet_ep_plain(ep, skb);
	skb_list_walk_safe(skb, skb, next) {
		skb_mark_not_on_list(skb);
		vnet_capture_frame(ep, skb, VNET_CAPTURE_DIRECTION_OUT);
		if (ep->kind == VNET_ENDPOINT_KIND_UDP)
			vnet_ep_udp_xmit(ep, skb);
		else
			vnet_ep_queue(ep, skb);
	}
}

/* The endpoint of @vd numbered @id.  Under RCU. */
struct vnet_endpoint *vnet_endpoint_by_id(struct vnet_dev *vd, u32 id)
{
	struct vnet_endpoint *ep;

	list_for_each_entry_rcu(ep, &vd->endpoints, list)
		if (ep->id == id)
			return ep;
	return NULL;
}

/* Data, write space or a new state on a TCP socket: the work item looks. */
static void vnet_ep_sk_event(struct sock *sk)
{
	struct vnet_endpoint *ep;

	read_lock_bh(&sk->sk_callback_lock);
	ep = sk->sk_user_data;
	if (ep)
		mod_delayed_work(system_wq, &ep->work, 0);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void vnet_ep_write_space(struct sock *sk)
{
	if (sk->sk_socket && sk_stream_is_writeable(sk))
		clear_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
	vnet_ep_sk_event(sk);
}

/*
 * Has @sock's events queue the work item.  A socket accepted from the
 * listener has its callbacks already, copied with the listener's.
 */
static void vnet_ep_hook(struct vnet_endpoint *ep, struct socket *sock,
			 bool fresh)
{
	struct sock *sk = sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	if (fresh) {
		ep->saved_data_ready = sk->sk_data_ready;
		ep->saved_write_space = sk->sk_write_space;
		ep->saved_state_change = sk->sk_state_change;
	}
	sk->sk_user_data = ep;
	sk->sk_data_ready = vnet_ep_sk_event;
	sk->sk_write_space = vnet_ep_write_space;
	sk->sk_state_change = vnet_ep_sk_event;
	write_unlock_bh(&sk->sk_callback_lock);
}

/*
 * Closes a TCP socket of @ep with a reset: no FIN_WAIT or TIME_WAIT socket
 * outlives the endpoint (nor its namespace), and the VM's QEMU sees the end
 * at once either way.
 */
static void vnet_ep_release(struct vnet_endpoint *ep, struct socket *sock)
{
	struct sock *sk = sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = ep->saved_data_ready;
	sk->sk_write_space = ep->saved_write_space;
	sk->sk_state_change = ep->saved_state_change;
	write_unlock_bh(&sk->sk_callback_lock);
	sock_no_linger(sk);
	sock_release(sock);
}

/* Ends the connection and what was under way on it.  Under ep->lock. */
static void vnet_ep_close_conn(struct vnet_endpoint *ep)
{
	if (!ep->conn)
		return;
	vnet_ep_release(ep, ep->conn);
	ep->conn = NULL;
	kfree_skb(ep->rx_skb);
	ep->rx_skb = NULL;
	ep->rx_hlen = 0;
	ep->rx_want = 0;
	kfree_skb(ep->tx_skb);
	ep->tx_skb = NULL;
	vnet_ep_count(ep, VNET_EP_TX_DOWN, skb_queue_len(&ep->txq));
	skb_queue_purge(&ep->txq);
}

/* tcp-connect: the next attempt after the backoff, which doubles. */
static void vnet_ep_retry(struct vnet_endpoint *ep)
{
	WRITE_ONCE(ep->state, VNET_ENDPOINT_STATE_WAITING);
	ep->deadline = jiffies + ep->backoff;
	ep->backoff = min_t(unsigned long, ep->backoff * 2,
			    VNET_EP_BACKOFF_MAX);
}

/* The connection ended (EOF, error, bad framing).  Under ep->lock. */
static void vnet_ep_lost(struct vnet_endpoint *ep)
{
	bool carried = vnet_ep_read(ep, VNET_EP_RX_PACKETS) > ep->rx_at_connect;

	WRITE_ONCE(ep->state, ep->kind == VNET_ENDPOINT_KIND_TCP_LISTEN ?
		   VNET_ENDPOINT_STATE_LISTENING : VNET_ENDPOINT_STATE_WAITING);
	vnet_ep_close_conn(ep);
	if (ep->kind != VNET_ENDPOINT_KIND_TCP_CONNECT)
		return;
	/*
	 * One that carried frames was good: come back quickly.  One that ended
	 * before any (a QEMU that accepts and closes) keeps the backoff
	 * growing, so the attempts never spin.
	 */
	if (carried)
		ep->backoff = VNET_EP_BACKOFF_MIN;
	vnet_ep_retry(ep);
}

static void vnet_ep_adopt(struct vnet_endpoint *ep, struct socket *sock)
{
	vnet_ep_hook(ep, sock, false);
	tcp_sock_set_nodelay(sock->sk);		/* as QEMU does */
	ep->conn = sock;
	ep->rx_at_connect = vnet_ep_read(ep, VNET_EP_RX_PACKETS);
	vnet_ep_count(ep, VNET_EP_CONNECTS, 1);
	WRITE_ONCE(ep->state, VNET_ENDPOINT_STATE_CONNECTED);
}

/* tcp-listen: takes the newest client, which replaces the current one. */
static void vnet_ep_accept(struct vnet_endpoint *ep)
{
	struct socket *sock;
	int err;

	for (;;) {
		err = kernel_accept(ep->listener, &sock, O_NONBLOCK);
		if (err == -EAGAIN)
			return;
		if (err) {
			/* ECONNABORTED and the like: that client is gone. */
			vnet_ep_count(ep, VNET_EP_RX_ERRORS, 1);
			if (err == -ECONNABORTED)
				continue;
			return;
		}
		if (ep->conn) {
			vnet_ep_count(ep, VNET_EP_REPLACED, 1);
			vnet_ep_close_conn(ep);
		}
		vnet_ep_adopt(ep, sock);
	}
}

/* tcp-connect: sees to the attempt in flight, or makes one when due. */
static void vnet_ep_connect(struct vnet_endpoint *ep)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = ep->raddr,
		.sin_port = ep->rport,
	};
	struct socket *sock = ep->connecting;
	int err;

	if (ep->conn)
		return;
	if (sock) {
		int state = READ_ONCE(sock->sk->sk_state);

		if (state == TCP_ESTABLISHED) {
			ep->connecting = NULL;
			vnet_ep_adopt(ep, sock);
			return;
		}
		if (state != TCP_CLOSE && time_before(jiffies, ep->deadline))
			return;
		ep->connecting = NULL;
		vnet_ep_release(ep, sock);
		vnet_ep_retry(ep);
		return;
	}
	if (time_before(jiffies, ep->deadline))
		return;
	vnet_ep_count(ep, VNET_EP_ATTEMPTS, 1);
	err = sock_create_kern(dev_net(ep->vd->dev), AF_INET, SOCK_STREAM,
			       IPPROTO_TCP, &sock);
	if (err) {
		vnet_ep_retry(ep);
		return;
	}
	vnet_ep_hook(ep, sock, true);
	err = kernel_connect(sock, (struct sockaddr_unsized *)&sin, sizeof(sin),
			     O_NONBLOCK);
	if (!err) {
		vnet_ep_adopt(ep, sock);
	} else if (err == -EINPROGRESS) {
		ep->connecting = sock;
		ep->deadline = jiffies + VNET_EP_CONNECT_TIMEOUT;
	} else {
		vnet_ep_release(ep, sock);
		vnet_ep_retry(ep);
	}
}

/* A frame read whole from the stream: into the vnet. */
static void vnet_ep_deliver(struct vnet_endpoint *ep, struct sk_buff *skb)
{
	local_bh_disable();
	rcu_read_lock();
	vnet_ep_rcv(ep, skb);
	rcu_read_unlock();
	local_bh_enable();
}

/* The 4-byte length is in: what to do with the frame behind it. */
static int vnet_ep_length(struct vnet_endpoint *ep)
{
	u32 len = be32_to_cpu(ep->rx_len);

	if (len > VNET_EP_MAX_FRAME) {
		vnet_ep_count(ep, VNET_EP_FRAMING_ERRORS, 1);
		return -EPROTO;
	}
	ep->rx_want = len;
	ep->rx_skb = NULL;	/* skipped, unless taken below */
	if (len < ETH_HLEN) {
		vnet_ep_count(ep, VNET_EP_RX_RUNTS, 1);
	} else if (len > vnet_ep_max_len(ep)) {
		vnet_drop(ep->vd->vn, VNET_D_OVERSIZE);
	} else {
		ep->rx_skb = alloc_skb(NET_IP_ALIGN + len, GFP_KERNEL);
		if (ep->rx_skb) {
			skb_reserve(ep->rx_skb, NET_IP_ALIGN);
			skb_put(ep->rx_skb, len);
		} else {
			vnet_drop(ep->vd->vn, VNET_D_NO_MEMORY);
		}
	}
	return 0;
}

/*
 * Reads the frames the connection holds, without waiting.  Returns true if
 * it stopped at its budget with more to read.  Under ep->lock.
 */
static bool vnet_ep_recv(struct vnet_endpoint *ep)
{
	unsigned int budget = VNET_EP_BUDGET;
	struct msghdr msg = {};
	struct sk_buff *skb;
	u8 junk[256];
	struct kvec iov;
	int n;

	while (ep->conn) {
		if (ep->rx_hlen < sizeof(ep->rx_len)) {
			iov.iov_base = (u8 *)&ep->rx_len + ep->rx_hlen;
			iov.iov_len = sizeof(ep->rx_len) - ep->rx_hlen;
		} else if (ep->rx_skb) {
			iov.iov_base = ep->rx_skb->data + ep->rx_skb->len -
				       ep->rx_want;
			iov.iov_len = ep->rx_want;
		} else {
			iov.iov_base = junk;
			iov.iov_len = min_t(unsigned int, ep->rx_want,
					    sizeof(junk));
		}
		n = kernel_recvmsg(ep->conn, &msg, &iov, 1, iov.iov_len,
				   MSG_DONTWAIT);
		if (n == -EAGAIN)
			return false;
		if (n <= 0) {
			if (n < 0)
				vnet_ep_count(ep, VNET_EP_RX_ERRORS, 1);
			vnet_ep_lost(ep);
			return false;
		}
		if (ep->rx_hlen < sizeof(ep->rx_len)) {
			ep->rx_hlen += n;
			if (ep->rx_hlen < sizeof(ep->rx_len))
				continue;
			if (vnet_ep_length(ep)) {
				vnet_ep_lost(ep);
				return false;
			}
		} else {
			ep->rx_want -= n;
		}
		if (ep->rx_want)
			continue;
		/* A whole frame (or a skipped one) is in. */
		ep->rx_hlen = 0;
		skb = ep->rx_skb;
		ep->rx_skb = NULL;
		if (skb) {
			vnet_ep_deliver(ep, skb);
			if (!--budget)
				return true;
		}
	}
	return false;
}

/* Sends the queued frames, each behind its length, without waiting. */
static void vnet_ep_send(struct vnet_endpoint *ep)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	unsigned int off, total;
	struct sk_buff *skb;
	struct kvec iov[2];
	int n, ret;

	while (ep->conn) {
		skb = ep->tx_skb;
		if (!skb) {
			skb = skb_dequeue(&ep->txq);
			if (!skb)
				return;
			if (skb_linearize(skb)) {
				vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
				kfree_skb(skb);
				continue;
			}
			ep->tx_skb = skb;
			ep->tx_off = 0;
			ep->tx_len = cpu_to_be32(skb->len);
		}
		total = sizeof(ep->tx_len) + skb->len;
		off = ep->tx_off;
		n = 0;
		if (off < sizeof(ep->tx_len)) {
			iov[n].iov_base = (u8 *)&ep->tx_len + off;
			iov[n++].iov_len = sizeof(ep->tx_len) - off;
			off = sizeof(ep->tx_len);
		}
		iov[n].iov_base = skb->data + off - sizeof(ep->tx_len);
		iov[n++].iov_len = total - off;
		ret = kernel_sendmsg(ep->conn, &msg, iov, n, total - ep->tx_off);
		if (ret == -EAGAIN)
			return;		/* the write space callback resumes */
		if (ret < 0) {
			vnet_ep_count(ep, VNET_EP_TX_ERRORS, 1);
			vnet_ep_lost(ep);
			return;
		}
		if (!ep->tx_off && ret) {
			vnet_ep_count(ep, VNET_EP_TX_PACKETS, 1);
			vnet_ep_count(ep, VNET_EP_TX_BYTES, skb->len);
		}
		ep->tx_off += ret;
		if (ep->tx_off < total)
			continue;	/* the rest, or -EAGAIN */
		ep->tx_skb = NULL;
		consume_skb(skb);
	}
}

/* A TCP endpoint's one work item: everything that may sleep. */
static void vnet_ep_work(struct work_struct *work)
{
	struct vnet_endpoint *ep = container_of(to_delayed_work(work),
						struct vnet_endpoint, work);
	bool more = false;

	mutex_lock(&ep->lock);
	if (ep->closed)
		goto out;
	if (ep->kind == VNET_ENDPOINT_KIND_TCP_LISTEN)
		vnet_ep_accept(ep);
	else
		vnet_ep_connect(ep);
	if (ep->conn)
		more = vnet_ep_recv(ep);
	if (ep->conn)
		vnet_ep_send(ep);
	if (more)
		queue_delayed_work(system_wq, &ep->work, 0);
	else if (ep->kind == VNET_ENDPOINT_KIND_TCP_CONNECT && !ep->conn)
		/* The attempt's deadline, or the next attempt. */
		queue_delayed_work(system_wq, &ep->work,
				   time_after(ep->deadline, jiffies) ?
				   ep->deadline - jiffies : 0);
out:
	mutex_unlock(&ep->lock);
}

static int vnet_ep_udp_open(struct vnet_endpoint *ep,
			    struct netlink_ext_ack *extack)
{
	struct udp_port_cfg port = {
		.family = AF_INET,
		.local_ip.s_addr = ep->laddr,
		.local_udp_port = ep->lport,
	};
	struct udp_tunnel_sock_cfg cfg = {
		.sk_user_data = ep,
		.encap_type = 1,
		.encap_rcv = vnet_ep_udp_rcv,
	};
	struct socket *sock;
	int err;

	/* No SO_REUSEADDR: a second socket on LOCAL must fail, not share. */
	err = udp_sock_create(dev_net(ep->vd->dev), &port, &sock);
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot bind the endpoint's UDP address");
		return err;
	}
	setup_udp_tunnel_sock(dev_net(ep->vd->dev), sock->sk, &cfg);
	rcu_assign_pointer(ep->udp, sock);
	vnet_ep_count(ep, VNET_EP_CONNECTS, 1);
	ep->state = VNET_ENDPOINT_STATE_CONNECTED;
	return 0;
}

static int vnet_ep_listen(struct vnet_endpoint *ep,
			  struct netlink_ext_ack *extack)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = ep->laddr,
		.sin_port = ep->lport,
	};
	struct socket *sock;
	int err;

	err = sock_create_kern(dev_net(ep->vd->dev), AF_INET, SOCK_STREAM,
			       IPPROTO_TCP, &sock);
	if (err)
		return err;
	/*
	 * Binds while connections of an endpoint closed before sit in
	 * TIME_WAIT; a second listener on the address still fails.
	 */
	sock_set_reuseaddr(sock->sk);
	err = kernel_bind(sock, (struct sockaddr_unsized *)&sin, sizeof(sin));
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot bind the endpoint's TCP address");
		sock_release(sock);
		return err;
	}
	vnet_ep_hook(ep, sock, true);
	err = kernel_listen(sock, 4);
	if (err) {
		NL_SET_ERR_MSG(extack, "cannot listen on the endpoint's TCP address");
		vnet_ep_release(ep, sock);
		return err;
	}
	ep->listener = sock;
	ep->state = VNET_ENDPOINT_STATE_LISTENING;
	return 0;
}

static bool vnet_ep_is(const struct vnet_endpoint *ep,
		       const struct vnet_endpoint_spec *spec)
{
	return ep->kind == spec->kind && ep->laddr == spec->laddr &&
	       ep->lport == spec->lport && ep->raddr == spec->raddr &&
	       ep->rport == spec->rport;
}

static void vnet_ep_free(struct vnet_endpoint *ep)
{
	free_percpu(ep->stats);
	kfree(ep);
}

static void vnet_ep_free_rcu(struct rcu_head *head)
{
	vnet_ep_free(container_of(head, struct vnet_endpoint, rcu));
}

/*
 * Opens an endpoint of @vd; on an error nothing is left of it.  Caller holds
 * RTNL.
 */
int vnet_endpoint_add(struct vnet_dev *vd,
		      const struct vnet_endpoint_spec *spec,
		      struct netlink_ext_ack *extack)
{
	struct vnet_endpoint *ep;
	int err = 0;

	ASSERT_RTNL();
	list_for_each_entry(ep, &vd->endpoints, list) {
		if (vnet_ep_is(ep, spec)) {
			NL_SET_ERR_MSG(extack, "the vnet has this endpoint already");
			return -EEXIST;
		}
	}
	if (vd->last_port == VNET_ATT_NETWORK - 1) {
		NL_SET_ERR_MSG(extack, "the vnet has had too many ports and endpoints");
		return -ENOSPC;
	}
	ep = kzalloc(sizeof(*ep), GFP_KERNEL_ACCOUNT);
	if (!ep)
		return -ENOMEM;
	ep->stats = alloc_percpu(struct vnet_ep_stats);
	if (!ep->stats) {
		kfree(ep);
		return -ENOMEM;
	}
	ep->vd = vd;
	ep->kind = spec->kind;
	ep->laddr = spec->laddr;
	ep->lport = spec->lport;
	ep->raddr = spec->raddr;
	ep->rport = spec->rport;
	ep->state = VNET_ENDPOINT_STATE_WAITING;
	ep->backoff = VNET_EP_BACKOFF_MIN;
	ep->deadline = jiffies;
	mutex_init(&ep->lock);
	skb_queue_head_init(&ep->txq);
	INIT_DELAYED_WORK(&ep->work, vnet_ep_work);
	if (ep->kind == VNET_ENDPOINT_KIND_UDP)
		err = vnet_ep_udp_open(ep, extack);
	else if (ep->kind == VNET_ENDPOINT_KIND_TCP_LISTEN)
		err = vnet_ep_listen(ep, extack);
	if (err) {
		vnet_ep_free(ep);
		return err;
	}
	ep->id = ++vd->last_port;
	list_add_tail_rcu(&ep->list, &vd->endpoints);
	if (ep->kind == VNET_ENDPOINT_KIND_TCP_CONNECT)
		queue_delayed_work(system_wq, &ep->work, 0);
	return 0;
}

/* Closes @ep, which no list holds any more.  Caller holds RTNL. */
static void vnet_ep_close(struct vnet_endpoint *ep)
{
	struct socket *udp = rtnl_dereference(ep->udp);

	RCU_INIT_POINTER(ep->udp, NULL);
	WRITE_ONCE(ep->state, VNET_ENDPOINT_STATE_WAITING);
	/* No sender holds @ep or its UDP socket after this. */
	synchronize_net();
	if (udp)
		udp_tunnel_sock_release(udp->sk);
	mutex_lock(&ep->lock);
	ep->closed = true;
	vnet_ep_close_conn(ep);
	if (ep->connecting)
		vnet_ep_release(ep, ep->connecting);
	ep->connecting = NULL;
	if (ep->listener)
		vnet_ep_release(ep, ep->listener);
	ep->listener = NULL;
	mutex_unlock(&ep->lock);
	/* No callback queues it now; a run under way finds it closed. */
	cancel_delayed_work_sync(&ep->work);
	skb_queue_purge(&ep->txq);
	/* A datagram being received may still read it. */
	call_rcu(&ep->rcu, vnet_ep_free_rcu);
}

/* Caller holds RTNL.  Returns 0, or -ENOENT when @vd has no such endpoint. */
int vnet_endpoint_del(struct vnet_dev *vd,
		      const struct vnet_endpoint_spec *spec)
{
	struct vnet_endpoint *ep;

	ASSERT_RTNL();
	list_for_each_entry(ep, &vd->endpoints, list) {
		if (vnet_ep_is(ep, spec)) {
			list_del_rcu(&ep->list);
			vnet_ep_close(ep);
			return 0;
		}
	}
	return -ENOENT;
}

/* Closes every endpoint of @vd (being deleted).  Caller holds RTNL. */
void vnet_endpoint_flush(struct vnet_dev *vd)
{
	struct vnet_endpoint *ep, *tmp;

	list_for_each_entry_safe(ep, tmp, &vd->endpoints, list) {
		list_del_rcu(&ep->list);
		vnet_ep_close(ep);
	}
}
