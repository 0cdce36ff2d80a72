// SPDX-License-Identifier: GPL-2.0
/*
 * Secure vnets (doc/security.md): per-vnet keys, sealed messages with
 * ChaCha20-Poly1305 (RFC 8439) and the replay windows.
 *
 * A sealed message is a 38-byte header in the clear, the body (the frame or
 * VARP message: plaintext with auth, ciphertext with conf) and a 16-byte tag.
 * The nonce is the header's sender address and sequence number; every host
 * numbers what it seals with one counter per namespace that starts at the
 * clock and never goes back (vnet_seq_reseed), so a nonce is never used twice
 * under one key.
 *
 * Sealing builds a new packet and encrypts into it from the frame's own
 * buffers, so a frame that TCP still holds (a clone) is never written.
 * Opening works in place, after skb_cow_data() where the buffers are shared,
 * as ESP input does.  Only synchronous AEAD implementations are used: both
 * paths run in softirq or transmit context and finish before they return.
 */
#include <crypto/aead.h>
#include <linux/hash.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <net/ip_tunnels.h>

#include "vnet.h"

#define VNET_AEAD		"rfc7539(chacha20,poly1305)"
/* Sealed messages up to this size are built linear, longer ones paged. */
#define VNET_SEAL_LINEAR_MAX	2048

static struct workqueue_struct *vnet_seal_wq;

/* ---- keys ---------------------------------------------------------------- */

/* Freeing a transform wipes its key (crypto_destroy_tfm is kfree_sensitive). */
static void vnet_keyset_destroy(struct vnet_keyset *ks)
{
	unsigned int i;

	for (i = 0; i < ks->n; i++)
		crypto_free_aead(ks->key[i].tfm);
	kfree_sensitive(ks);
}

static void vnet_keyset_free_work(struct work_struct *work)
{
	vnet_keyset_destroy(container_of(to_rcu_work(work), struct vnet_keyset,
					 free_work));
}

/*
 * Frees a key set once no CPU can still be using it: after a grace period,
 * in process context (freeing a transform may sleep).
 */
void vnet_keyset_free(struct vnet_keyset *ks)
{
	if (!ks)
		return;
	INIT_RCU_WORK(&ks->free_work, vnet_keyset_free_work);
	queue_rcu_work(vnet_seal_wq, &ks->free_work);
}

/*
 * A key set of @n keys (the send key first) with a transform each, from
 * @n secrets of VNET_KEY_LEN bytes and @n ids.  The secrets are copied into
 * the transforms; the caller wipes its copies.
 * Process context.
 */
struct vnet_keyset *vnet_keyset_new(const u8 *secrets, const u8 *ids,
				    unsigned int n,
				    struct netlink_ext_ack *extack)
{
	struct vnet_keyset *ks;
	struct crypto_aead *tfm;
	unsigned int i;
	int err;

	if (n < 1 || n > VNET_MAX_KEYS)
		return ERR_PTR(-EINVAL);
	ks = kzalloc(sizeof(*ks), GFP_KERNEL);
	if (!ks)
		return ERR_PTR(-ENOMEM);
	for (i = 0; i < n; i++) {
		tfm = crypto_alloc_aead(VNET_AEAD, 0, CRYPTO_ALG_ASYNC);
		if (IS_ERR(tfm)) {
			NL_SET_ERR_MSG(extack, VNET_AEAD " is not available in this kernel");
			err = PTR_ERR(tfm);
			goto fail;
		}
		ks->key[i].tfm = tfm;
		ks->key[i].id = ids[i];
		ks->n = i + 1;
		if (crypto_aead_ivsize(tfm) != VNET_SEAL_NONCE_LEN) {
			NL_SET_ERR_MSG(extack, "unexpected nonce size of " VNET_AEAD);
			err = -EINVAL;
			goto fail;
		}
		err = crypto_aead_setkey(tfm, secrets + i * VNET_KEY_LEN,
					 VNET_KEY_LEN);
		if (!err)
			err = crypto_aead_setauthsize(tfm, VNET_SEAL_TAGLEN);
		if (err) {
			NL_SET_ERR_MSG(extack, "cannot set the key of " VNET_AEAD);
			goto fail;
		}
	}
	return ks;
fail:
	vnet_keyset_destroy(ks);
	return ERR_PTR(err);
}

static const struct vnet_key *vnet_key_find(const struct vnet_keyset *ks,
					    u8 id)
{
	unsigned int i;

	for (i = 0; ks && i < ks->n; i++)
		if (ks->key[i].id == id)
			return &ks->key[i];
	return NULL;
}

/* ---- the sealing counter ------------------------------------------------ */

/*
 * Moves the counter of a namespace the module starts (again) to send for up
 * to the real-time clock, never down.  Whoever sealed for the namespace
 * before (a vnetd while our socket was closed, this module before it) started
 * at the clock when it started and counted one a packet, so it did not get
 * past the clock now: the peers' replay windows take our numbers, and no
 * nonce repeats.  vnetd starts its counter the same way (doc/security.md).
 */
void vnet_seq_reseed(struct vnet_net *vn)
{
	s64 now = ktime_get_real_ns();
	s64 seq = atomic64_read(&vn->seq);

	do {
		if ((u64)seq >= (u64)now)
			return;
	} while (!atomic64_try_cmpxchg(&vn->seq, &seq, now));
}

/* ---- replay windows ------------------------------------------------------ */

struct vnet_replay_table *vnet_replay_new(void)
{
	struct vnet_replay_table *t = kzalloc(sizeof(*t), GFP_KERNEL);
	unsigned int i;

	if (!t)
		return NULL;
	spin_lock_init(&t->lock);
	for (i = 0; i < ARRAY_SIZE(t->buckets); i++)
		INIT_HLIST_HEAD(&t->buckets[i]);
	return t;
}

static void vnet_replay_free_rcu(struct rcu_head *head)
{
	struct vnet_replay_table *t = container_of(head, struct vnet_replay_table,
						   rcu);
	struct hlist_node *tmp;
	struct vnet_replay *r;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(t->buckets); i++)
		hlist_for_each_entry_safe(r, tmp, &t->buckets[i], node)
			kfree(r);
	kfree(t);
}

/* Frees a vnet's windows after a grace period. */
void vnet_replay_free(struct vnet_replay_table *t)
{
	if (t)
		call_rcu(&t->rcu, vnet_replay_free_rcu);
}

static struct hlist_head *vnet_replay_bucket(struct vnet_replay_table *t,
					     __be32 sender)
{
	return &t->buckets[hash_32((__force u32)sender, VNET_REPLAY_BITS)];
}

static struct vnet_replay *vnet_replay_find(struct vnet_replay_table *t,
					    __be32 sender)
{
	struct vnet_replay *r;

	hlist_for_each_entry_rcu(r, vnet_replay_bucket(t, sender), node,
				 lockdep_is_held(&t->lock)) {
		if (r->sender == sender)
			return r;
	}
	return NULL;
}

/*
 * The window holds the highest number accepted (top) and the ones up to
 * VNET_REPLAY_WINDOW - 1 below it, as bits of a ring indexed by the number.
 * Entering a new word of the ring clears it, so bits above top are clear.
 *
 * Only the holder of r->lock writes top and seen; the check before the tag
 * reads them without it, so writers and that reader mark their accesses.  A
 * lockless answer may be stale (or, where u64 is not one word, torn): "fresh"
 * is confirmed under the lock when the number is recorded, and "seen" is
 * asked again under the lock before a packet is dropped for it.
 */
static bool vnet_replay_fresh(const struct vnet_replay *r, u64 seq)
{
	unsigned int bit = seq & (VNET_REPLAY_RING - 1);
	u64 top = READ_ONCE(r->top);

	if (seq > top)
		return true;
	return top - seq < VNET_REPLAY_WINDOW &&
	       !(READ_ONCE(r->seen[BIT_WORD(bit)]) & BIT_MASK(bit));
}

/* Before the tag is checked: is @seq from @sender neither too old nor seen? */
static bool vnet_replay_check(struct vnet_replay_table *t, __be32 sender,
			      u64 seq)
{
	struct vnet_replay *r = vnet_replay_find(t, sender);
	bool fresh;

	if (!r || vnet_replay_fresh(r, seq))
		return true;
	/* Replays are rare: never drop a packet on a stale read. */
	spin_lock(&r->lock);
	fresh = vnet_replay_fresh(r, seq);
	spin_unlock(&r->lock);
	return fresh;
}

/* Caller holds r->lock, or owns a window not yet published. */
static void vnet_replay_set(struct vnet_replay *r, u64 seq)
{
	const unsigned int longs = VNET_REPLAY_RING / BITS_PER_LONG;
	unsigned int bit = seq & (VNET_REPLAY_RING - 1);
	u64 cur, next, i, n;

	if (seq > r->top) {
		cur = r->top / BITS_PER_LONG;
		next = seq / BITS_PER_LONG;
		n = min_t(u64, next - cur, longs);
		for (i = 1; i <= n; i++)
			WRITE_ONCE(r->seen[(cur + i) & (longs - 1)], 0);
		WRITE_ONCE(r->top, seq);
	}
	WRITE_ONCE(r->seen[BIT_WORD(bit)], r->seen[BIT_WORD(bit)] | BIT_MASK(bit));
}

/*
 * After the tag verified: records @seq, unless another CPU accepted the same
 * number meanwhile (-EEXIST).  -ENOSPC when the vnet has too many senders.
 */
static int vnet_replay_record(struct vnet_replay_table *t, __be32 sender,
			      u64 seq)
{
	struct vnet_replay *r = vnet_replay_find(t, sender);
	int err = 0;

	if (!r) {
		spin_lock(&t->lock);
		r = vnet_replay_find(t, sender);
		if (!r) {
			if (t->count >= VNET_REPLAY_MAX) {
				err = -ENOSPC;
			} else {
				r = kzalloc(sizeof(*r), GFP_ATOMIC);
				if (r) {
					spin_lock_init(&r->lock);
					r->sender = sender;
					r->top = seq;
					vnet_replay_set(r, seq);
					hlist_add_head_rcu(&r->node,
							   vnet_replay_bucket(t, sender));
					t->count++;
					r = NULL;	/* recorded */
				} else {
					err = -ENOMEM;
				}
			}
		}
		spin_unlock(&t->lock);
		if (!r)
			return err;
	}
	spin_lock(&r->lock);
	if (vnet_replay_fresh(r, seq))
		vnet_replay_set(r, seq);
	else
		err = -EEXIST;
	spin_unlock(&r->lock);
	return err;
}

/* ---- crypto -------------------------------------------------------------- */

/* An AEAD request followed by room for @nsg scatterlist entries. */
static struct aead_request *vnet_aead_req(struct crypto_aead *tfm,
					  unsigned int nsg,
					  struct scatterlist **sg)
{
	unsigned int len = ALIGN(sizeof(struct aead_request) +
				 crypto_aead_reqsize(tfm),
				 __alignof__(struct scatterlist));
	struct aead_request *req;

	req = kmalloc(len + nsg * sizeof(**sg), GFP_ATOMIC);
	if (!req)
		return NULL;
	aead_request_set_tfm(req, tfm);
	aead_request_set_callback(req, 0, NULL, NULL);
	*sg = (struct scatterlist *)((u8 *)req + len);
	return req;
}

static void vnet_aead_req_free(struct aead_request *req)
{
	/* It held the key stream's state: leave none of it behind. */
	kfree_sensitive(req);
}

/* Scatterlist entries that skb_to_sgvec() may fill for @skb's data. */
static unsigned int vnet_skb_nsg(const struct sk_buff *skb)
{
	const struct sk_buff *frag;
	unsigned int n = 1 + skb_shinfo(skb)->nr_frags;

	skb_walk_frags(skb, frag)
		n += vnet_skb_nsg(frag);
	return n;
}

/* A packet of @total bytes: linear, or a head and page fragments. */
static struct sk_buff *vnet_seal_alloc(unsigned int total)
{
	struct sk_buff *nskb;
	int err;

	if (total <= VNET_SEAL_LINEAR_MAX) {
		nskb = alloc_skb(VNET_CTRL_HEADROOM + total, GFP_ATOMIC);
		if (!nskb)
			return NULL;
		skb_reserve(nskb, VNET_CTRL_HEADROOM);
		skb_put(nskb, total);
		return nskb;
	}
	/* GFP_ATOMIC has no __GFP_HIGHMEM: the pages have kernel addresses. */
	nskb = alloc_skb_with_frags(VNET_CTRL_HEADROOM + VNET_SEAL_HLEN,
				    total - VNET_SEAL_HLEN,
				    PAGE_ALLOC_COSTLY_ORDER, &err, GFP_ATOMIC);
	if (!nskb)
		return NULL;
	skb_reserve(nskb, VNET_CTRL_HEADROOM);
	skb_put(nskb, VNET_SEAL_HLEN);
	nskb->data_len = total - VNET_SEAL_HLEN;
	nskb->len += nskb->data_len;
	return nskb;
}

/* Copies @skb's @len bytes into @nskb after the sealed header. */
static int vnet_seal_copy(struct sk_buff *nskb, const struct sk_buff *skb,
			  unsigned int len)
{
	unsigned int off, copy, i;
	int err;

	copy = min(len, skb_headlen(nskb) - VNET_SEAL_HLEN);
	err = skb_copy_bits(skb, 0, nskb->data + VNET_SEAL_HLEN, copy);
	for (off = copy, i = 0; !err && off < len; i++) {
		skb_frag_t *frag = &skb_shinfo(nskb)->frags[i];

		copy = min(len - off, skb_frag_size(frag));
		err = skb_copy_bits(skb, off, skb_frag_address(frag), copy);
		off += copy;
	}
	return err;
}

/*
 * Seals @skb's data (a frame or a VARP message, @type) with the vnet's send
 * key into a new packet: header, body and tag, with headroom for the outer
 * headers.  @skb is left as it was.  Returns NULL, counted, on failure.
 * Called under RCU.
 */
struct sk_buff *vnet_seal(struct vnet_dev *vd, struct sk_buff *skb, u8 type)
{
	const struct vnet_keyset *ks = rcu_dereference(vd->keys);
	bool conf = vd->security == VNET_SECURITY_CONF;
	struct vnet_net *vn = vd->vn;
	unsigned int body = skb->len;
	struct scatterlist *sg, *dst;
	struct aead_request *req;
	struct vnet_seal_hdr *h;
	struct sk_buff *nskb;
	unsigned int nsrc;
	int err;

	if (unlikely(!ks)) {
		vnet_drop(vn, VNET_D_SEND_ERROR);
		return NULL;
	}
	if (unlikely(body > VNET_SEAL_MAX_FRAME)) {
		vnet_drop(vn, VNET_D_OVERSIZE);
		return NULL;
	}
	nskb = vnet_seal_alloc(VNET_SEAL_OVERHEAD + body);
	if (!nskb)
		goto nomem;
	h = (struct vnet_seal_hdr *)nskb->data;
	h->id = htons(VNET_MSG_SEALED);
	h->type = type;
	h->level = vd->security;
	memcpy(h->vnet, vd->id, VNET_ID_LEN);
	h->key_id = ks->key[0].id;
	memset(h->reserved, 0, sizeof(h->reserved));
	h->sender = READ_ONCE(vn->addr);
	h->seq = cpu_to_be64(atomic64_inc_return(&vn->seq));

	nsrc = conf ? 1 + vnet_skb_nsg(skb) : 0;
	req = vnet_aead_req(ks->key[0].tfm,
			    nsrc + 1 + skb_shinfo(nskb)->nr_frags, &sg);
	if (!req) {
		kfree_skb(nskb);
		goto nomem;
	}
	dst = sg + nsrc;
	sg_init_table(dst, 1 + skb_shinfo(nskb)->nr_frags);
	err = skb_to_sgvec(nskb, dst, 0, nskb->len);
	if (err < 0)
		goto fail;
	if (conf) {
		/* Out of place, from the frame's buffers into the new packet. */
		sg_init_table(sg, nsrc);
		sg_set_buf(sg, h, VNET_SEAL_HLEN);
		err = skb_to_sgvec(skb, sg + 1, 0, body);
		if (err < 0)
			goto fail;
		aead_request_set_ad(req, VNET_SEAL_HLEN);
		aead_request_set_crypt(req, sg, dst, body,
				       (u8 *)h + VNET_SEAL_NONCE_AT);
	} else {
		/* The body in the clear; the tag covers header and body. */
		err = vnet_seal_copy(nskb, skb, body);
		if (err)
			goto fail;
		aead_request_set_ad(req, VNET_SEAL_HLEN + body);
		aead_request_set_crypt(req, dst, dst, 0,
				       (u8 *)h + VNET_SEAL_NONCE_AT);
	}
	err = crypto_aead_encrypt(req);
	if (err)
		goto fail;
	vnet_aead_req_free(req);
	return nskb;
fail:
	vnet_aead_req_free(req);
	kfree_skb(nskb);
	vnet_drop(vn, VNET_D_SEND_ERROR);
	return NULL;
nomem:
	vnet_drop(vn, VNET_D_NO_MEMORY);
	return NULL;
}

/*
 * Verifies (and with conf decrypts) the sealed message that is all of
 * @skb's data, in place.  Returns 0, -EBADMSG for a bad tag, or another
 * negative errno.
 */
static int vnet_open(const struct vnet_key *key, struct sk_buff *skb,
		     bool conf, const u8 *nonce)
{
	unsigned int body = skb->len - VNET_SEAL_OVERHEAD;
	struct aead_request *req;
	struct sk_buff *trailer;
	struct scatterlist *sg;
	u8 iv[VNET_SEAL_NONCE_LEN];
	int nsg, err;

	/* Writable buffers for conf; auth only reads, so clones may stay. */
	if (!conf || (!skb_cloned(skb) && !skb_has_frag_list(skb) &&
		      !skb_has_shared_frag(skb))) {
		nsg = vnet_skb_nsg(skb);
	} else {
		nsg = skb_cow_data(skb, 0, &trailer);
		if (nsg < 0)
			return nsg;
	}
	/* skb_cow_data() may have moved the header: the nonce is a copy. */
	memcpy(iv, nonce, sizeof(iv));
	req = vnet_aead_req(key->tfm, nsg, &sg);
	if (!req)
		return -ENOMEM;
	sg_init_table(sg, nsg);
	err = skb_to_sgvec(skb, sg, 0, skb->len);
	if (err < 0)
		goto out;
	if (conf) {
		aead_request_set_ad(req, VNET_SEAL_HLEN);
		aead_request_set_crypt(req, sg, sg, body + VNET_SEAL_TAGLEN, iv);
	} else {
		aead_request_set_ad(req, VNET_SEAL_HLEN + body);
		aead_request_set_crypt(req, sg, sg, VNET_SEAL_TAGLEN, iv);
	}
	err = crypto_aead_decrypt(req);
out:
	vnet_aead_req_free(req);
	return err;
}

/*
 * A sealed message (skb->data at its header), from UDP (@udp: unicast, the
 * group or a VFWD) or raw EtherIP.  The checks of doc/security.md, in its
 * order; nothing changes unless all of them pass.  Consumes @skb.  Called
 * under RCU.
 */
void vnet_sealed_rcv(struct vnet_net *vn, struct sk_buff *skb, bool udp)
{
	const struct vnet_key *key;
	struct vnet_replay_table *t;
	struct vnet_seal_hdr h;
	struct vnet_dev *vd;
	unsigned int body;
	u64 seq;
	int err;

	if (skb->len < VNET_SEAL_OVERHEAD ||
	    !pskb_may_pull(skb, VNET_SEAL_HLEN)) {
		vnet_drop(vn, VNET_D_SHORT);
		goto drop;
	}
	memcpy(&h, skb->data, sizeof(h));
	vd = vnet_find(vn, h.vnet);
	if (!vd) {
		vnet_drop(vn, VNET_D_UNKNOWN_VNET);
		goto drop;
	}
	if (vd->security == VNET_SECURITY_NONE || h.level != vd->security) {
		vnet_drop(vn, VNET_D_SECURITY_MISMATCH);
		goto drop;
	}
	key = vnet_key_find(rcu_dereference(vd->keys), h.key_id);
	t = rcu_dereference(vd->replay);
	if (!key || !t) {
		vnet_drop(vn, VNET_D_UNKNOWN_KEY);
		goto drop;
	}
	/* We keep no replay window for ourselves. */
	if (!vnet_sender_ok(vn, h.sender))
		goto drop;
	seq = be64_to_cpu(h.seq);
	if (!vnet_replay_check(t, h.sender, seq)) {
		vnet_drop(vn, VNET_D_REPLAY);
		goto drop;
	}
	err = vnet_open(key, skb, vd->security == VNET_SECURITY_CONF,
			(const u8 *)&h + VNET_SEAL_NONCE_AT);
	if (err) {
		vnet_drop(vn, err == -EBADMSG ? VNET_D_BAD_TAG : VNET_D_NO_MEMORY);
		goto drop;
	}
	/*
	 * Verified: the inner checksums are the sender's, which the tag covers
	 * (as WireGuard does); a TCP super-frame is marked partial again below.
	 */
	skb->ip_summed = CHECKSUM_UNNECESSARY;
	skb->csum_level = ~0;
	body = skb->len - VNET_SEAL_OVERHEAD;
	if (pskb_trim(skb, skb->len - VNET_SEAL_TAGLEN) ||
	    !pskb_may_pull(skb, VNET_SEAL_HLEN +
			   min_t(unsigned int, body, VARP_LEN))) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		goto drop;
	}
	if (!(h.type == VNET_SEAL_FRAME && body >= ETH_HLEN) &&
	    !(h.type == VNET_SEAL_VARP && udp && body >= VARP_LEN &&
	      !memcmp(((struct varp_msg *)(skb->data + VNET_SEAL_HLEN))->vnet,
		      h.vnet, VNET_ID_LEN))) {
		vnet_drop(vn, VNET_D_BAD_SEAL);
		goto drop;
	}
	/* A sender the full table has no room for is refused, as vnetd does:
	 * forgetting another one's window would let its packets be replayed.
	 */
	err = vnet_replay_record(t, h.sender, seq);
	if (err) {
		vnet_drop(vn, err == -ENOMEM ? VNET_D_NO_MEMORY : VNET_D_REPLAY);
		goto drop;
	}
	if (h.type == VNET_SEAL_VARP) {
		__skb_pull(skb, VNET_SEAL_HLEN);
		varp_handle(vd, skb, h.sender);
		return;
	}
	if (__iptunnel_pull_header(skb, VNET_SEAL_HLEN, htons(ETH_P_TEB), false,
				   false)) {
		vnet_drop(vn, VNET_D_NO_MEMORY);
		goto drop;
	}
	vnet_frame_rcv(vd, skb, h.sender);
	return;
drop:
	kfree_skb(skb);
}

int __init vnet_seal_init(void)
{
	vnet_seal_wq = alloc_workqueue("vnet_seal", 0, 0);
	return vnet_seal_wq ? 0 : -ENOMEM;
}

/* After rcu_barrier(): every key set freed so far is queued; wait for it. */
void vnet_seal_exit(void)
{
	destroy_workqueue(vnet_seal_wq);
}
