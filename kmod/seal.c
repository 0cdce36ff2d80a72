// SPDX-License-Identifier: GPL-2.0
/*
 * Secure vnets (doc/security.md): per-vnet keys, sealed messages, sessions
 * and the receiver entries with their replay windows.
 *
 * A sealed message is a 50-byte header in the clear, the body (the frame,
 * VARP message, challenge or answer: plaintext with auth, ciphertext with
 * conf) and a 16-byte tag.  The crypto is XChaCha20-Poly1305 under the vnet
 * key with the header's session and counter as the 24-byte nonce, computed as
 * vnetd does: HChaCha20 of the key and the session gives a session key, and
 * ChaCha20-Poly1305 (RFC 8439) under it takes the counter as its nonce.  A
 * namespace draws a random session whenever the module starts sending for it
 * and counts from 1 in it, so no (key, nonce) pair is used twice, whoever
 * shares our address or whatever the clock says.
 *
 * A receiver accepts frames and VARP messages only in the sender's confirmed
 * session: the first message of another session is answered with a sealed
 * challenge, and the sender's answer (in its current session) confirms that
 * session with every counter up to the answer's counting as seen.  So a
 * packet recorded before either host restarted is never accepted again.
 *
 * The kernel's ChaCha20-Poly1305 library does the work, as in WireGuard, in
 * softirq or transmit context with nothing to sleep on: conf encrypts and
 * decrypts in place over the packet's buffers; auth, whose associated data
 * is the header and the whole body, feeds Poly1305 from the buffers as they
 * are (no linearising of super-frames).  Sealing builds a new packet, so a
 * frame that TCP still holds (a clone) is never written; opening works in
 * place, after skb_cow_data() where conf's buffers are shared, as ESP does.
 */
#include <crypto/chacha.h>
#include <crypto/chacha20poly1305.h>
#include <crypto/poly1305.h>
#include <linux/hash.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <net/ip_tunnels.h>

#include "vnet.h"

/* Sealed messages up to this size are built linear, longer ones paged. */
#define VNET_SEAL_LINEAR_MAX	2048
/* Scatterlist entries on the stack: a linear packet, or a few pages. */
#define VNET_SG_STACK		4
#define VNET_COUNTER_AT		offsetof(struct vnet_seal_hdr, counter)

static_assert(sizeof(struct vnet_seal_hdr) == VNET_SEAL_HLEN);
static_assert(VNET_COUNTER_AT == 42);
static_assert(VNET_KEY_LEN == CHACHA20POLY1305_KEY_SIZE);
static_assert(VNET_SEAL_TAGLEN == POLY1305_DIGEST_SIZE);

/* ---- keys ---------------------------------------------------------------- */

static void vnet_keyset_free_rcu(struct rcu_head *head)
{
	/* Wipes the secrets. */
	kfree_sensitive(container_of(head, struct vnet_keyset, rcu));
}

/* Frees (and wipes) a key set once no CPU can still be using it. */
void vnet_keyset_free(struct vnet_keyset *ks)
{
	if (ks)
		call_rcu(&ks->rcu, vnet_keyset_free_rcu);
}

/*
 * A key set of @n keys (the send key first) from @n secrets of VNET_KEY_LEN
 * bytes and @n ids.  The secrets are copied; the caller wipes its copies.
 */
struct vnet_keyset *vnet_keyset_new(const u8 *secrets, const u8 *ids,
				    unsigned int n,
				    struct netlink_ext_ack *extack)
{
	struct vnet_keyset *ks;
	unsigned int i;

	if (n < 1 || n > VNET_MAX_KEYS)
		return ERR_PTR(-EINVAL);
	ks = kzalloc(sizeof(*ks), GFP_KERNEL);
	if (!ks)
		return ERR_PTR(-ENOMEM);
	for (i = 0; i < n; i++) {
		memcpy(ks->key[i].secret, secrets + i * VNET_KEY_LEN,
		       VNET_KEY_LEN);
		ks->key[i].id = ids[i];
	}
	ks->n = n;
	return ks;
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

/* ---- our session --------------------------------------------------------- */

/*
 * Starts a new session for @vn: 16 random bytes and a counter at 0.  A CPU
 * sealing meanwhile takes its counter from the session it found, so no
 * counter is used twice in a session.
 */
int vnet_session_new(struct vnet_net *vn, gfp_t gfp)
{
	struct vnet_session *s = kmalloc(sizeof(*s), gfp), *old;

	if (!s)
		return -ENOMEM;
	get_random_bytes(s->id, sizeof(s->id));
	atomic64_set(&s->counter, 0);
	old = unrcu_pointer(xchg(&vn->session, RCU_INITIALIZER(s)));
	if (old)
		kfree_rcu(old, rcu);
	return 0;
}

void vnet_session_free(struct vnet_net *vn)
{
	struct vnet_session *s = unrcu_pointer(xchg(&vn->session, NULL));

	if (s)
		kfree_rcu(s, rcu);
}

/*
 * The session and next counter for a message to seal.  A session whose
 * counter reached 2^64 - 1 is replaced.  Called under RCU.
 */
static bool vnet_session_next(struct vnet_net *vn, u8 *id, u64 *counter)
{
	struct vnet_session *s;
	s64 last;

	for (;;) {
		s = rcu_dereference(vn->session);
		if (unlikely(!s))
			return false;
		last = atomic64_fetch_add_unless(&s->counter, 1, -1);
		if (likely(last != -1))
			break;
		if (vnet_session_new(vn, GFP_ATOMIC))
			return false;
	}
	memcpy(id, s->id, VNET_SESSION_LEN);
	*counter = (u64)last + 1;
	return true;
}

/* ---- receiver entries ---------------------------------------------------- */

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

/* Frees a vnet's entries after a grace period. */
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
 * @sender's entry, made (unconfirmed, nothing pending) if there is none:
 * NULL with -ENOSPC when the vnet has VNET_REPLAY_MAX of them, or -ENOMEM.
 */
static struct vnet_replay *vnet_replay_get(struct vnet_replay_table *t,
					   __be32 sender, int *err)
{
	struct vnet_replay *r = vnet_replay_find(t, sender);

	if (r)
		return r;
	spin_lock(&t->lock);
	r = vnet_replay_find(t, sender);
	if (r)
		goto out;
	if (t->count >= VNET_REPLAY_MAX) {
		*err = -ENOSPC;
		goto out;
	}
	r = kzalloc(sizeof(*r), GFP_ATOMIC);
	if (!r) {
		*err = -ENOMEM;
		goto out;
	}
	spin_lock_init(&r->lock);
	r->sender = sender;
	hlist_add_head_rcu(&r->node, vnet_replay_bucket(t, sender));
	t->count++;
out:
	spin_unlock(&t->lock);
	return r;
}

/*
 * The window holds the highest counter accepted (top) and the ones up to
 * VNET_REPLAY_WINDOW - 1 below it, as bits of a ring indexed by the counter.
 * Entering a new word of the ring clears it, so bits above top are clear.
 *
 * Only the holder of r->lock writes an entry; the check before the tag
 * reads it without, so writers and that reader mark their accesses.  A
 * lockless answer may be stale or torn: what is accepted is decided under
 * the lock when the counter is recorded, and "seen" is asked again under the
 * lock before a packet is dropped for it.
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

/* Whether @h's session is @r's confirmed one.  Exact under r->lock. */
static bool vnet_replay_ours(const struct vnet_replay *r,
			     const struct vnet_seal_hdr *h)
{
	if (!READ_ONCE(r->confirmed))
		return false;
	/* Lockless callers check again under r->lock before they decide. */
	return !data_race(memcmp(r->session, h->session, VNET_SESSION_LEN));
}

/*
 * Before the tag is checked, for frames and VARP messages: is the counter
 * neither too old nor seen, if the message is in the confirmed session?
 */
static bool vnet_replay_check(struct vnet_replay_table *t,
			      const struct vnet_seal_hdr *h, u64 seq)
{
	struct vnet_replay *r = vnet_replay_find(t, h->sender);
	bool fresh;

	if (!r || !vnet_replay_ours(r, h) || vnet_replay_fresh(r, seq))
		return true;
	/* Replays are rare: never drop a packet on a stale read. */
	spin_lock(&r->lock);
	fresh = !vnet_replay_ours(r, h) || vnet_replay_fresh(r, seq);
	spin_unlock(&r->lock);
	return fresh;
}

/* Caller holds r->lock. */
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
 * A new confirmed session whose every counter up to @top counts as seen:
 * all of the ring but the bits above top in its word, which later counters
 * reach without clearing the word.  Caller holds r->lock.
 */
static void vnet_replay_floor(struct vnet_replay *r, u64 top)
{
	unsigned int bit = top & (VNET_REPLAY_RING - 1);
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(r->seen); i++)
		WRITE_ONCE(r->seen[i], ~0UL);
	WRITE_ONCE(r->seen[BIT_WORD(bit)],
		   GENMASK(bit % BITS_PER_LONG, 0));
	WRITE_ONCE(r->top, top);
}

/* ---- crypto -------------------------------------------------------------- */

/* HChaCha20(@secret, @session): the key of one sender's session. */
static void vnet_session_key(u8 out[CHACHA20POLY1305_KEY_SIZE],
			     const u8 *secret, const u8 *session)
{
	struct chacha_state state;
	u32 k[CHACHA_KEY_SIZE / sizeof(u32)];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(k); i++)
		k[i] = get_unaligned_le32(secret + 4 * i);
	chacha_init(&state, k, session);
	hchacha_block(&state, k, 20);
	for (i = 0; i < ARRAY_SIZE(k); i++)
		put_unaligned_le32(k[i], out + 4 * i);
	memzero_explicit(&state, sizeof(state));
	memzero_explicit(k, sizeof(k));
}

/*
 * The RFC 8439 tag of an empty plaintext whose associated data is the
 * header @h and @len bytes of @skb from @off, under @key with the header's
 * counter as the nonce: auth's tag.  The data is read where it lies.
 */
static void vnet_auth_tag(const u8 *key, const struct vnet_seal_hdr *h,
			  struct sk_buff *skb, unsigned int off,
			  unsigned int len, u8 tag[POLY1305_DIGEST_SIZE])
{
	static const u8 zero[POLY1305_KEY_SIZE];
	unsigned int total = VNET_SEAL_HLEN + len, consumed = 0, n;
	struct poly1305_desc_ctx desc;
	struct chacha_state state;
	u32 k[CHACHA_KEY_SIZE / sizeof(u32)];
	struct skb_seq_state st;
	u8 iv[CHACHA_IV_SIZE];
	const u8 *data;
	union {
		u8 block0[POLY1305_KEY_SIZE];
		__le64 lens[2];
	} b;

	for (n = 0; n < ARRAY_SIZE(k); n++)
		k[n] = get_unaligned_le32(key + 4 * n);
	/* Block counter 0, then 00 00 00 00 and the counter as sent. */
	memset(iv, 0, 8);
	memcpy(iv + 8, (const u8 *)h + VNET_COUNTER_AT, 8);
	chacha_init(&state, k, iv);
	chacha20_crypt(&state, b.block0, zero, sizeof(b.block0));
	poly1305_init(&desc, b.block0);
	poly1305_update(&desc, (const u8 *)h, VNET_SEAL_HLEN);
	/* A block may run past off + len (the tag): skb_seq_read() does not
	 * stop there, so each is cut to what is left.
	 */
	skb_prepare_seq_read(skb, off, off + len, &st);
	while (consumed < len &&
	       (n = skb_seq_read(consumed, &data, &st)) != 0) {
		n = min(n, len - consumed);
		poly1305_update(&desc, data, n);
		consumed += n;
	}
	skb_abort_seq_read(&st);
	if (total & 0xf)
		poly1305_update(&desc, zero, 0x10 - (total & 0xf));
	b.lens[0] = cpu_to_le64(total);
	b.lens[1] = 0;
	poly1305_update(&desc, (const u8 *)b.lens, sizeof(b.lens));
	poly1305_final(&desc, tag);
	memzero_explicit(&state, sizeof(state));
	memzero_explicit(k, sizeof(k));
	memzero_explicit(&b, sizeof(b));
	memzero_explicit(&desc, sizeof(desc));
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

/*
 * ChaCha20-Poly1305 in place over @len bytes of @skb from @off (with conf's
 * tag after them: written when sealing, checked when opening), the header
 * @h as associated data.  @nsg: entries skb_to_sgvec() may need.
 */
static int vnet_conf_crypt(const u8 *key, const struct vnet_seal_hdr *h,
			   struct sk_buff *skb, unsigned int off,
			   unsigned int len, int nsg, bool seal)
{
	struct scatterlist stack_sg[VNET_SG_STACK], *sg = stack_sg;
	/* The counter's wire bytes are the nonce's last 8 (the spec's rule). */
	u64 nonce = get_unaligned_le64((const u8 *)h + VNET_COUNTER_AT);
	const u8 *ad = (const u8 *)h;
	int err;

	if (nsg > VNET_SG_STACK) {
		sg = kmalloc_array(nsg, sizeof(*sg), GFP_ATOMIC);
		if (!sg)
			return -ENOMEM;
	}
	sg_init_table(sg, nsg);
	err = skb_to_sgvec(skb, sg, off, len + VNET_SEAL_TAGLEN);
	if (err >= 0 && seal)
		err = chacha20poly1305_encrypt_sg_inplace(sg, len, ad,
							  VNET_SEAL_HLEN, nonce,
							  key) ? 0 : -EINVAL;
	else if (err >= 0)
		err = chacha20poly1305_decrypt_sg_inplace(sg, len + VNET_SEAL_TAGLEN,
							  ad, VNET_SEAL_HLEN,
							  nonce, key) ?
		      0 : -EBADMSG;
	if (sg != stack_sg)
		kfree(sg);
	return err;
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
 * Seals @skb's data (a frame, VARP message, challenge or answer: @type) with
 * the vnet's send key, our session and its next counter into a new packet:
 * header, body and tag, with headroom for the outer headers.  @skb is left
 * as it was.  Returns NULL, counted, on failure.  Called under RCU.
 */
struct sk_buff *vnet_seal(struct vnet_dev *vd, struct sk_buff *skb, u8 type)
{
	const struct vnet_keyset *ks = rcu_dereference(vd->keys);
	struct vnet_net *vn = vd->vn;
	unsigned int body = skb->len;
	u8 key[CHACHA20POLY1305_KEY_SIZE];
	u8 tag[VNET_SEAL_TAGLEN];
	struct vnet_seal_hdr *h;
	struct sk_buff *nskb;
	u64 counter;
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
	h->reserved = 0;
	h->sender = READ_ONCE(vn->addr);
	if (!vnet_session_next(vn, h->session, &counter)) {
		kfree_skb(nskb);
		goto nomem;
	}
	h->counter = cpu_to_be64(counter);
	err = vnet_seal_copy(nskb, skb, body);
	if (err)
		goto fail;
	vnet_session_key(key, ks->key[0].secret, h->session);
	if (vd->security == VNET_SECURITY_CONF) {
		err = vnet_conf_crypt(key, h, nskb, VNET_SEAL_HLEN, body,
				      1 + skb_shinfo(nskb)->nr_frags, true);
	} else {
		/* The body in the clear; the tag covers header and body. */
		vnet_auth_tag(key, h, nskb, VNET_SEAL_HLEN, body, tag);
		err = skb_store_bits(nskb, VNET_SEAL_HLEN + body, tag,
				     VNET_SEAL_TAGLEN);
	}
	memzero_explicit(key, sizeof(key));
	if (err)
		goto fail;
	return nskb;
fail:
	kfree_skb(nskb);
	vnet_drop(vn, VNET_D_SEND_ERROR);
	return NULL;
nomem:
	vnet_drop(vn, VNET_D_NO_MEMORY);
	return NULL;
}

/*
 * Verifies (and with conf decrypts) the sealed message that is all of
 * @skb's data, in place; @h is a copy of its header.  Returns 0, -EBADMSG
 * for a bad tag, or another negative errno.
 */
static int vnet_open(const struct vnet_key *k, struct sk_buff *skb,
		     bool conf, const struct vnet_seal_hdr *h)
{
	unsigned int body = skb->len - VNET_SEAL_OVERHEAD;
	u8 key[CHACHA20POLY1305_KEY_SIZE];
	u8 tag[VNET_SEAL_TAGLEN], want[VNET_SEAL_TAGLEN];
	struct sk_buff *trailer;
	int nsg, err;

	if (conf) {
		/* Writable buffers: clones and shared pages are copied. */
		if (!skb_cloned(skb) && !skb_has_frag_list(skb) &&
		    !skb_has_shared_frag(skb))
			nsg = vnet_skb_nsg(skb);
		else
			nsg = skb_cow_data(skb, 0, &trailer);
		if (nsg < 0)
			return nsg;
	}
	vnet_session_key(key, k->secret, h->session);
	if (conf) {
		err = vnet_conf_crypt(key, h, skb, VNET_SEAL_HLEN, body, nsg,
				      false);
	} else {
		/* Auth only reads: clones may stay. */
		vnet_auth_tag(key, h, skb, VNET_SEAL_HLEN, body, tag);
		err = skb_copy_bits(skb, VNET_SEAL_HLEN + body, want,
				    VNET_SEAL_TAGLEN);
		if (!err && crypto_memneq(tag, want, VNET_SEAL_TAGLEN))
			err = -EBADMSG;
	}
	memzero_explicit(key, sizeof(key));
	return err;
}

/*
 * Sends @value as a sealed challenge or answer (@type) to @daddr by UDP,
 * port 1798, whatever the vnet's encapsulation.  Returns false, counted,
 * when it could not be sent.  Called under RCU.
 */
static bool vnet_send_value(struct vnet_dev *vd, u8 type, __be32 daddr,
			    const u8 *value)
{
	struct sk_buff *skb = alloc_skb(VNET_CTRL_HEADROOM + VNET_CHALLENGE_LEN,
					GFP_ATOMIC);

	if (!skb) {
		vnet_drop(vd->vn, VNET_D_NO_MEMORY);
		return false;
	}
	skb_reserve(skb, VNET_CTRL_HEADROOM);
	skb_put_data(skb, value, VNET_CHALLENGE_LEN);
	return vnet_send_sealed(vd, skb, type, daddr, NULL);
}

/*
 * An answer from @h->sender: if it carries the challenge pending for that
 * sender, confirm its session (a new one with every counter up to the
 * answer's seen; the confirmed one as it is).
 */
static bool vnet_answer_rcv(struct vnet_replay_table *t,
			    const struct vnet_seal_hdr *h, u64 seq,
			    const u8 *value)
{
	struct vnet_replay *r = vnet_replay_find(t, h->sender);
	bool ok;

	if (!r)
		return false;
	spin_lock(&r->lock);
	ok = r->pending &&
	     !crypto_memneq(r->challenge, value, VNET_CHALLENGE_LEN);
	if (ok) {
		if (!vnet_replay_ours(r, h)) {
			memcpy(r->session, h->session, VNET_SESSION_LEN);
			vnet_replay_floor(r, seq);
			WRITE_ONCE(r->confirmed, true);
		}
		r->pending = false;
	}
	spin_unlock(&r->lock);
	return ok;
}

/*
 * After the tag, a frame or VARP message: records its counter if it is in
 * the sender's confirmed session (0, or -EEXIST: seen meanwhile).
 * Otherwise -EAGAIN, and the sender is challenged unless a challenge went
 * out less than VNET_CHALLENGE_RETRY ago; -ENOSPC (nothing sent) when the
 * vnet has no room for another sender, -ENOMEM.
 */
static int vnet_replay_accept(struct vnet_dev *vd,
			      struct vnet_replay_table *t,
			      const struct vnet_seal_hdr *h, u64 seq)
{
	u8 value[VNET_CHALLENGE_LEN];
	struct vnet_replay *r;
	bool challenge = false;
	int err = 0;

	r = vnet_replay_get(t, h->sender, &err);
	if (!r)
		return err;
	spin_lock(&r->lock);
	if (vnet_replay_ours(r, h)) {
		if (vnet_replay_fresh(r, seq))
			vnet_replay_set(r, seq);
		else
			err = -EEXIST;
	} else {
		err = -EAGAIN;
		if (!r->pending ||
		    time_after_eq(jiffies, r->challenged + VNET_CHALLENGE_RETRY)) {
			get_random_bytes(r->challenge, VNET_CHALLENGE_LEN);
			memcpy(value, r->challenge, VNET_CHALLENGE_LEN);
			r->pending = true;
			r->challenged = jiffies;
			challenge = true;
		}
	}
	spin_unlock(&r->lock);
	if (challenge &&
	    vnet_send_value(vd, VNET_SEAL_CHALLENGE, h->sender, value))
		vnet_count(vd->vn, VNET_C_CHALLENGES_SENT);
	return err;
}

/* Whether a verified message's body suits its type (@udp: came by UDP). */
static bool vnet_body_ok(const struct vnet_seal_hdr *h,
			 const struct sk_buff *skb, unsigned int body,
			 bool udp)
{
	switch (h->type) {
	case VNET_SEAL_FRAME:
		return body >= ETH_HLEN;
	case VNET_SEAL_VARP:
		return udp && body >= VARP_LEN &&
		       !memcmp(((struct varp_msg *)(skb->data +
						    VNET_SEAL_HLEN))->vnet,
			       h->vnet, VNET_ID_LEN);
	case VNET_SEAL_CHALLENGE:
	case VNET_SEAL_ANSWER:
		return udp && body == VNET_CHALLENGE_LEN;
	}
	return false;
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
	bool data;
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
	/* We keep no entry for ourselves. */
	if (!vnet_sender_ok(vn, h.sender))
		goto drop;
	seq = be64_to_cpu(h.counter);
	data = h.type == VNET_SEAL_FRAME || h.type == VNET_SEAL_VARP;
	if (data && !vnet_replay_check(t, &h, seq)) {
		vnet_drop(vn, VNET_D_REPLAY);
		goto drop;
	}
	err = vnet_open(key, skb, vd->security == VNET_SECURITY_CONF, &h);
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
	if (!vnet_body_ok(&h, skb, body, udp)) {
		vnet_drop(vn, VNET_D_BAD_SEAL);
		goto drop;
	}
	if (h.type == VNET_SEAL_CHALLENGE) {
		/* No entry needed: answering twice is harmless. */
		if (vnet_send_value(vd, VNET_SEAL_ANSWER, h.sender,
				    skb->data + VNET_SEAL_HLEN))
			vnet_count(vn, VNET_C_ANSWERS_SENT);
		consume_skb(skb);
		return;
	}
	if (h.type == VNET_SEAL_ANSWER) {
		if (vnet_answer_rcv(t, &h, seq, skb->data + VNET_SEAL_HLEN)) {
			vnet_count(vn, VNET_C_SESSIONS_CONFIRMED);
			consume_skb(skb);
			return;
		}
		vnet_drop(vn, VNET_D_BAD_ANSWER);
		goto drop;
	}
	/*
	 * A sender the full table has no room for is refused, as vnetd does:
	 * forgetting another one's window would let its packets be replayed.
	 */
	err = vnet_replay_accept(vd, t, &h, seq);
	if (err) {
		vnet_drop(vn, err == -EAGAIN ? VNET_D_UNCONFIRMED :
			      err == -ENOMEM ? VNET_D_NO_MEMORY : VNET_D_REPLAY);
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
