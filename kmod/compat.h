/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel interfaces the module uses that changed between the kernels it
 * builds for (Debian's 6.1, 6.12 and the newest of unstable; doc/kmod.md), in
 * one place.  The code is written against the newest kernel; for an older
 * one this header maps each call onto what that kernel has, as WireGuard's
 * compat layer does.  Most changes are told apart by LINUX_VERSION_CODE; two
 * that stable kernels backported under older version numbers are told apart
 * by probing the kernel's headers in Kbuild (VNET_HAVE_*).
 */
#ifndef _VNET_COMPAT_H
#define _VNET_COMPAT_H

#include <crypto/chacha.h>
#include <linux/netdevice.h>
#include <linux/version.h>
#include <net/ip_tunnels.h>
#include <net/udp_tunnel.h>

/* 6.5 moved skb_gso_segment() out of <linux/netdevice.h>. */
/* 6.12 moved <asm/unaligned.h> to <linux/unaligned.h>, and crypto_memneq() to
 * <crypto/utils.h> (since 6.4).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <crypto/utils.h>
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#include <crypto/algapi.h>
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#include <net/gso.h>
#endif

/* 6.12 turned NETIF_F_LLTX into dev->lltx. */
static inline void vnet_set_lltx(struct net_device *dev)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
	dev->lltx = true;
#else
	dev->features |= NETIF_F_LLTX;
#endif
}

/*
 * A device that may not move to another namespace: NETIF_F_NETNS_LOCAL until
 * 6.12, dev->netns_local in 6.12, dev->netns_immutable from 6.15 and in later
 * 6.12 stable kernels (Debian 13's 6.12.117 has it, 6.12.95 does not).
 */
static inline void vnet_set_netns_immutable(struct net_device *dev)
{
#if defined(VNET_HAVE_NETNS_IMMUTABLE)
	dev->netns_immutable = true;
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
	dev->netns_local = true;
#else
	dev->features |= NETIF_F_NETNS_LOCAL;
#endif
}

/* 6.17 gave the tunnel transmit functions the IPCB flags to set. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 17, 0)
#define udp_tunnel_xmit_skb(rt, sk, skb, src, dst, tos, ttl, df, sport,	\
			    dport, xnet, nocheck, ipcb_flags)		\
	udp_tunnel_xmit_skb(rt, sk, skb, src, dst, tos, ttl, df, sport,	\
			    dport, xnet, nocheck)
#define iptunnel_xmit(sk, rt, skb, src, dst, proto, tos, ttl, df, xnet,	\
		      ipcb_flags)					\
	iptunnel_xmit(sk, rt, skb, src, dst, proto, tos, ttl, df, xnet)
#endif

/*
 * 6.19 gave kernel_bind() and kernel_connect() a struct sockaddr_unsized
 * (a struct sockaddr before); the endpoints pass a struct sockaddr_in.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 19, 0)
#define kernel_bind(sock, addr, addrlen)				\
	kernel_bind(sock, (struct sockaddr *)(addr), addrlen)
#define kernel_connect(sock, addr, addrlen, flags)			\
	kernel_connect(sock, (struct sockaddr *)(addr), addrlen, flags)
#endif

/*
 * 7.2 (and 7.1.5 in the stable series) set up and release a UDP tunnel
 * socket by its struct sock; before, by its struct socket.
 */
#if !defined(VNET_HAVE_UDP_TUNNEL_SK)
#define setup_udp_tunnel_sock(net, sk, cfg)				\
	setup_udp_tunnel_sock(net, (sk)->sk_socket, cfg)
#define udp_tunnel_sock_release(sk)					\
	udp_tunnel_sock_release((sk)->sk_socket)
#endif

/*
 * 6.16 typed the ChaCha state (struct chacha_state, a struct around the 16
 * words that were passed as a u32 array before); seal.c uses the struct.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 16, 0)
struct chacha_state {
	u32 x[CHACHA_STATE_WORDS];
};

#define chacha_init(state, key, iv)	chacha_init((state)->x, key, iv)
#define hchacha_block(state, out, nrounds)				\
	hchacha_block((state)->x, out, nrounds)
#define chacha20_crypt(state, dst, src, bytes)				\
	chacha20_crypt((state)->x, dst, src, bytes)
#endif

/* 6.13 set up an hrtimer and its function in one call, hrtimer_setup(). */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 13, 0)
#include <linux/hrtimer.h>

static inline void vnet_hrtimer_setup(struct hrtimer *timer,
				      enum hrtimer_restart (*fn)(struct hrtimer *),
				      clockid_t clock, enum hrtimer_mode mode)
{
	hrtimer_init(timer, clock, mode);
	timer->function = fn;
}

#define hrtimer_setup vnet_hrtimer_setup
#endif

#endif /* _VNET_COMPAT_H */
