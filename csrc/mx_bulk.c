// SPDX-License-Identifier: GPL-2.0
/*
 * mx_bulk.c - mx_lookup_many() at the speed of the hardware.
 *
 * Userspace only (see mx_bulk.h); the kernel module does not build it.
 */
#include "mx_bulk.h"

/* Flows per block: a block's slots are hashed, then looked up. */
#define MX_BULK_BLOCK 256

/**
 * mx_fastmod_init() - precompute the multiplier for divisor @d
 * @f: to fill
 * @d: the divisor, >= 2 (a table size here)
 */
void mx_fastmod_init(struct mx_fastmod *f, u32 d)
{
	f->c = ~(u64)0 / d + 1;
	f->d = d;
}

/*
 * The slot of each of @n flows. Only arithmetic over arrays, so that it
 * vectorizes: 8 flows per AVX-512 instruction (x86-64 has a 64-bit
 * rotate only from AVX-512 on, so an AVX2 clone gains nothing). @swap
 * (a big-endian director) is loop-invariant: the select vectorizes too.
 */
MX_VECTOR_CLONES
static void mx_bulk_slots64(struct mx_fastmod fm, size_t n, const u32 *folds,
			    const u16 *ports, u64 k0, u64 k1, int swap,
			    u32 *slots)
{
	size_t i;
	u32 v;

	if (ports) {
		for (i = 0; i < n; i++) {
			v = folds[i] + ports[i];
			v = swap ? mx_swab32(v) : v;
			slots[i] = mx_fastmod(&fm, mx_hsiphash64_u32(v, k0, k1));
		}
	} else {
		for (i = 0; i < n; i++) {
			v = swap ? mx_swab32(folds[i]) : folds[i];
			slots[i] = mx_fastmod(&fm, mx_hsiphash64_u32(v, k0, k1));
		}
	}
}

MX_VECTOR_CLONES
static void mx_bulk_slots32(struct mx_fastmod fm, size_t n, const u32 *folds,
			    const u16 *ports, u32 k0, u32 k1, int swap,
			    u32 *slots)
{
	size_t i;
	u32 v;

	if (ports) {
		for (i = 0; i < n; i++) {
			v = folds[i] + ports[i];
			v = swap ? mx_swab32(v) : v;
			slots[i] = mx_fastmod(&fm, mx_hsiphash32_u32(v, k0, k1));
		}
	} else {
		for (i = 0; i < n; i++) {
			v = swap ? mx_swab32(folds[i]) : folds[i];
			slots[i] = mx_fastmod(&fm, mx_hsiphash32_u32(v, k0, k1));
		}
	}
}

/* Hash one block of @k flows into @slots, then look each one up. */
static void mx_bulk_block(const struct mx_params *p, struct mx_fastmod fm,
			  const mx_slot_t *table, const u8 *avail,
			  int fallback, size_t k, const u32 *folds,
			  const u16 *ports, u32 *slots, u32 *out)
{
	int swap = p->byte_order == MX_BIG_ENDIAN;
	size_t i;

	if (p->word_size == 32)
		mx_bulk_slots32(fm, k, folds, ports, p->key32[MX_H1][0],
				p->key32[MX_H1][1], swap, slots);
	else
		mx_bulk_slots64(fm, k, folds, ports, p->key64[MX_H1][0],
				p->key64[MX_H1][1], swap, slots);
	for (i = 0; i < k; i++) {
		u32 d = table[slots[i]];

		if (d != MX_SLOT_EMPTY && avail[d])
			out[i] = d;
		else if (d != MX_SLOT_EMPTY && fallback)
			/* rare: re-probes with `%` exactly as the kernel */
			out[i] = mx_lookup_fallback(p, table, avail, folds[i],
						    ports ? ports[i] : 0);
		else
			out[i] = MX_NONE;
	}
}

/**
 * mx_bulk_lookup() - mx_lookup_many(), faster
 * @p: table parameters
 * @table: the table
 * @avail: per real server index, non-zero when it is available
 * @fallback: non-zero for the mh-fallback flag
 * @n: number of flows
 * @folds: folded client addresses
 * @ports: hashed client ports, or NULL when no port is hashed
 * @out: real server index or MX_NONE per flow
 */
void mx_bulk_lookup(const struct mx_params *p, const mx_slot_t *table,
		    const u8 *avail, int fallback, size_t n, const u32 *folds,
		    const u16 *ports, u32 *out)
{
	u32 slots[MX_BULK_BLOCK];
	struct mx_fastmod fm;
	size_t b, k;

	mx_fastmod_init(&fm, p->m);
	for (b = 0; b < n; b += k) {
		k = n - b < MX_BULK_BLOCK ? n - b : MX_BULK_BLOCK;
		mx_bulk_block(p, fm, table, avail, fallback, k, folds + b,
			      ports ? ports + b : NULL, slots, out + b);
	}
}

/**
 * mx_bulk_lookup6() - mx_bulk_lookup() for IPv6 client addresses
 * @p: table parameters
 * @table: the table
 * @avail: per real server index, non-zero when it is available
 * @fallback: non-zero for the mh-fallback flag
 * @n: number of flows
 * @words: 4 numeric 32-bit words per address, most significant first;
 *	or NULL when @bytes is given
 * @bytes: 16 bytes per address in network order (struct in6_addr)
 * @ports: hashed client ports, or NULL when no port is hashed
 * @out: real server index or MX_NONE per flow
 *
 * Folds each block of addresses with mx_fold6() before hashing it.
 */
void mx_bulk_lookup6(const struct mx_params *p, const mx_slot_t *table,
		     const u8 *avail, int fallback, size_t n, const u32 *words,
		     const u8 *bytes, const u16 *ports, u32 *out)
{
	u32 slots[MX_BULK_BLOCK];
	u32 folds[MX_BULK_BLOCK];
	struct mx_fastmod fm;
	size_t b, i, k;

	mx_fastmod_init(&fm, p->m);
	for (b = 0; b < n; b += k) {
		k = n - b < MX_BULK_BLOCK ? n - b : MX_BULK_BLOCK;
		if (words) {
			const u32 *w = words + 4 * b;

			for (i = 0; i < k; i++, w += 4)
				folds[i] = mx_fold6(w[0], w[1], w[2], w[3]);
		} else {
			const u8 *a = bytes + 16 * b;

			for (i = 0; i < k; i++, a += 16)
				folds[i] = mx_fold6(mx_be32(a), mx_be32(a + 4),
						    mx_be32(a + 8),
						    mx_be32(a + 12));
		}
		mx_bulk_block(p, fm, table, avail, fallback, k, folds,
			      ports ? ports + b : NULL, slots, out + b);
	}
}
