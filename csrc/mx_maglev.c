// SPDX-License-Identifier: GPL-2.0
/*
 * mx_maglev.c - table fill and lookups of the IPVS Maglev scheduler.
 *
 * See mx_maglev.h for the algorithm and the kernel version reproduced.
 */
#include "mx_maglev.h"

/* ip_vs_mh.c primes[]: CONFIG_IP_VS_MH_TAB_INDEX 8..17 picks one. */
const u32 mx_primes[MX_NR_PRIMES] = {
	251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071
};

/**
 * mx_params_init() - check and fill table parameters
 * @p: parameters to fill
 * @table_size: one of mx_primes[]
 * @word_size: 64 or 32
 *
 * The keys are the kernel's fixed ones and the byte order little-endian,
 * as on every x86 or arm64 director with the in-tree module.
 *
 * Return: 0, or -1 when @table_size or @word_size is not one the kernel has.
 */
int mx_params_init(struct mx_params *p, u32 table_size, u32 word_size)
{
	u32 i;

	if (word_size != 64 && word_size != 32)
		return -1;
	for (i = 0; i < MX_NR_PRIMES; i++) {
		if (mx_primes[i] == table_size) {
			p->m = table_size;
			/* CONFIG_IP_VS_MH_TAB_INDEX = i + 8 */
			p->tab_bits = (i + 8) / 2;
			p->word_size = word_size;
			p->byte_order = MX_LITTLE_ENDIAN;
			/* hsiphash_key_t: two unsigned longs, both the constant */
			p->key64[MX_H1][0] = MX_HASH1_KEY;
			p->key64[MX_H1][1] = MX_HASH1_KEY;
			p->key64[MX_H2][0] = MX_HASH2_KEY;
			p->key64[MX_H2][1] = MX_HASH2_KEY;
			p->key32[MX_H1][0] = MX_HASH1_KEY;
			p->key32[MX_H1][1] = MX_HASH1_KEY;
			p->key32[MX_H2][0] = MX_HASH2_KEY;
			p->key32[MX_H2][1] = MX_HASH2_KEY;
			return 0;
		}
	}
	return -1;
}

/**
 * mx_params_set_key() - replace the kernel's fixed keys by a secret key
 * @p: parameters from mx_params_init()
 * @key: MX_KEY_SIZE (16) bytes K[0..15]
 *
 * One 128-bit key keys both hashes for both word sizes. Bytes become
 * words little-endian, whatever the host (the key is the same bytes on
 * every director of a fleet, big-endian ones included):
 *   - 64-bit kernels (SipHash-1-3, 128-bit keys): H1 is keyed with K
 *     itself, {le64(K[0..7]), le64(K[8..15])}; H2 with its complement ~K,
 *     so that H1 and H2 always differ;
 *   - 32-bit kernels (HalfSipHash-1-3, 64-bit keys): H1 with K[0..7],
 *     {le32(K[0..3]), le32(K[4..7])}; H2 with K[8..15], likewise.
 * With K = 00 01 02 .. 0f, H1 is keyed exactly as the known-answer
 * vectors of the kernel's lib/test_siphash.c, for both word sizes.
 */
void mx_params_set_key(struct mx_params *p, const u8 key[MX_KEY_SIZE])
{
	p->key64[MX_H1][0] = mx_le64(key);
	p->key64[MX_H1][1] = mx_le64(key + 8);
	p->key64[MX_H2][0] = ~p->key64[MX_H1][0];
	p->key64[MX_H2][1] = ~p->key64[MX_H1][1];
	p->key32[MX_H1][0] = mx_le32(key);
	p->key32[MX_H1][1] = mx_le32(key + 4);
	p->key32[MX_H2][0] = mx_le32(key + 8);
	p->key32[MX_H2][1] = mx_le32(key + 12);
}

static u32 mx_gcd(u32 a, u32 b)
{
	while (b) {
		u32 r = a % b;

		a = b;
		b = r;
	}
	return a;
}

static u32 mx_fls(u32 x)
{
	u32 r = 0;

	while (x) {
		r++;
		x >>= 1;
	}
	return r;
}

/**
 * mx_gcd_weight() - ip_vs_mh_gcd_weight()
 * @weights: weight of each real server (last_weight in-tree)
 * @n: number of real servers
 *
 * Return: the gcd of the positive weights, 0 when there is none.
 */
u32 mx_gcd_weight(const u32 *weights, u32 n)
{
	u32 g = 0;
	u32 i;

	for (i = 0; i < n; i++) {
		if (weights[i] > 0)
			g = g ? mx_gcd(weights[i], g) : weights[i];
	}
	return g;
}

/**
 * mx_shift_weight() - ip_vs_mh_shift_weight()
 * @p: table parameters (for tab_bits)
 * @weights: weight of each real server
 * @n: number of real servers
 * @gcd: result of mx_gcd_weight()
 *
 * Keeps max(weight) / gcd within tab_bits bits, so that a round cannot
 * claim more than 2^tab_bits - 1 slots for one server.
 *
 * Return: the right shift applied to weight / gcd.
 */
u32 mx_shift_weight(const struct mx_params *p, const u32 *weights, u32 n,
		    u32 gcd)
{
	u32 mw = 0;
	u32 bits;
	u32 i;

	if (gcd < 1)
		return 0;
	for (i = 0; i < n; i++) {
		if (weights[i] > mw)
			mw = weights[i];
	}
	bits = mx_fls(mw / gcd);
	return bits > p->tab_bits ? bits - p->tab_bits : 0;
}

/**
 * mx_permutate() - ip_vs_mh_permutate() for one real server
 * @p: table parameters
 * @ds: the server's setup to fill
 * @fold: folded real server address (service family decides the fold)
 * @port: real server port, numeric (always hashed here, whatever flags)
 * @weight: the weight the table is built from
 * @gcd: result of mx_gcd_weight()
 * @rshift: result of mx_shift_weight()
 */
void mx_permutate(const struct mx_params *p, struct mx_dest_setup *ds,
		  u32 fold, u32 port, u32 weight, u32 gcd, u32 rshift)
{
	u32 turns = gcd ? (weight / gcd) >> rshift : 0;

	ds->offset = mx_hash(p, MX_H1, fold, port, 0) % p->m;
	ds->skip = mx_hash(p, MX_H2, fold, port, 0) % (p->m - 1) + 1;
	ds->perm = ds->offset;
	ds->turns = turns ? turns : (weight != 0);
}

/*
 * Slots probed at once by mx_populate(). A claim's next free slot is the
 * first of perm + skip, perm + 2 * skip, ... (mod m) that is empty; those
 * positions do not depend on the table, so MX_PROBES of them are read
 * together (independent loads, one well-predicted branch) instead of one
 * load and one hard-to-predict branch per step. A server with several
 * turns in a round takes every empty slot of a batch in order, as the
 * kernel's claims one after the other would (nobody else claims in
 * between). The slots found are the same, so the table is the kernel's.
 */
#define MX_PROBES	4

/* The lowest set bit of a 4-bit mask of empty slots (mask != 0). */
static const u8 mx_first_empty[1 << MX_PROBES] = {
	0, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0
};

/*
 * Slots at s + step[0], s + step[1], ... (mod m) into @at; returns the mask
 * of the empty ones.
 */
static u32 mx_probe(u32 m, const mx_slot_t *table, u32 s, const u32 *step,
		    u32 *at)
{
	u32 k, mask = 0;

	for (k = 0; k < MX_PROBES; k++) {
		at[k] = s + step[k];
		if (at[k] >= m)
			at[k] -= m;
		mask |= (u32)(table[at[k]] == MX_SLOT_EMPTY) << k;
	}
	return mask;
}

/*
 * The first empty slot after @c on a permutation, MX_PROBES steps at a
 * time; @work counts the steps, for mx_cond_resched().
 */
static u32 mx_next_empty(u32 m, const mx_slot_t *table, u32 c,
			 const u32 *step, u32 *work)
{
	u32 at[MX_PROBES];
	u32 mask;

	for (;;) {
		mask = mx_probe(m, table, c, step, at);
		if (mask) {
			*work += mx_first_empty[mask] + 1;
			return at[mx_first_empty[mask]];
		}
		c = at[MX_PROBES - 1];
		*work += MX_PROBES;
		if (*work >= MX_RESCHED_INTERVAL) {
			*work = 0;
			mx_cond_resched();
		}
	}
}

/**
 * mx_populate() - ip_vs_mh_populate()
 * @p: table parameters
 * @ds: setups of the @n real servers, list head first (perm is consumed)
 * @n: number of real servers
 * @table: m slots to fill
 *
 * When no server has a turn, every slot is left MX_SLOT_EMPTY. Otherwise
 * every slot is filled. Like the kernel, a claim does not advance perm: the
 * server's next claim finds that slot taken and steps on from there.
 *
 * Cost: m claims, each stepping past the taken slots on its server's
 * permutation. With random permutations that is O(m log m) steps. Real
 * servers whose fold + port are equal (10.0.0.k:(60000 - k), or IPv6
 * addresses folding alike) share one permutation: each claim then steps
 * past all the slots the others took, about m * n steps for n of them
 * (kmod/README.md, "How long a rebuild takes", has the measured bound).
 * Steps are taken MX_PROBES at a time (see there); mx_cond_resched() is
 * offered after about every MX_RESCHED_INTERVAL steps.
 */
void mx_populate(const struct mx_params *p, struct mx_dest_setup *ds, u32 n,
		 mx_slot_t *table)
{
	u32 m = p->m;
	u32 filled = 0;
	u32 work = 0;
	u32 step[MX_PROBES], at[MX_PROBES];
	u32 i, c, t, k, pos, mask;
	int any = 0;

	for (c = 0; c < m; c++)
		table[c] = MX_SLOT_EMPTY;
	for (i = 0; i < n; i++)
		any |= ds[i].turns > 0;
	if (!any)
		return;

	for (;;) {
		for (i = 0; i < n; i++) {
			if (!ds[i].turns)
				continue;
			/* step[k] = (k + 1) * skip mod m */
			step[0] = ds[i].skip;
			for (k = 1; k < MX_PROBES; k++) {
				step[k] = step[k - 1] + ds[i].skip;
				if (step[k] >= m)
					step[k] -= m;
			}
			c = ds[i].perm;
			t = 0;
			if (table[c] == MX_SLOT_EMPTY) {
				/* only a server's first claim: perm = offset */
				table[c] = (mx_slot_t)i;
				if (++filled == m)
					return;
				t++;
			}
			if (ds[i].turns == 1) {
				/* one claim a round: the first empty slot */
				if (!t) {
					c = mx_next_empty(m, table, c, step,
							  &work);
					table[c] = (mx_slot_t)i;
					if (++filled == m) {
						ds[i].perm = c;
						return;
					}
				}
				ds[i].perm = c;
				continue;
			}
			pos = c;
			while (t < ds[i].turns) {
				/*
				 * Each empty slot of this batch is the server's
				 * next claim in turn: nobody else claims before
				 * its turns are done.
				 */
				mask = mx_probe(m, table, pos, step, at);
				pos = at[MX_PROBES - 1];
				work += MX_PROBES;
				while (mask && t < ds[i].turns) {
					c = at[mx_first_empty[mask]];
					mask &= mask - 1;
					table[c] = (mx_slot_t)i;
					if (++filled == m) {
						ds[i].perm = c;
						return;
					}
					t++;
				}
				if (work >= MX_RESCHED_INTERVAL) {
					work = 0;
					mx_cond_resched();
				}
			}
			ds[i].perm = c;
		}
	}
}

/**
 * mx_build_table() - gcd, shift, permutation and population in one call
 * @p: table parameters
 * @n: number of real servers, list head first
 * @folds: folded real server addresses
 * @ports: real server ports
 * @weights: the weights the table is built from
 * @ds: scratch for @n setups
 * @table: m slots to fill
 *
 * Return: 0, or -1 (table untouched) when there are more real servers than
 * slots (the kernel's ip_vs_mh_reassign() -EINVAL) or than an mx_slot_t
 * can index.
 */
int mx_build_table(const struct mx_params *p, u32 n, const u32 *folds,
		   const u32 *ports, const u32 *weights,
		   struct mx_dest_setup *ds, mx_slot_t *table)
{
	u32 gcd, rshift, i;

	if (n > p->m || n > MX_MAX_DESTS)
		return -1;
	gcd = mx_gcd_weight(weights, n);
	rshift = mx_shift_weight(p, weights, n, gcd);
	for (i = 0; i < n; i++)
		mx_permutate(p, &ds[i], folds[i], ports[i], weights[i], gcd,
			     rshift);
	mx_populate(p, ds, gcd ? n : 0, table);
	return 0;
}

/**
 * mx_lookup_fallback() - ip_vs_mh_get_fallback()
 * @p: table parameters
 * @table: the table
 * @avail: per real server index, non-zero when it is available
 * @fold: folded client address
 * @port: client port when hashed, else 0
 *
 * An empty slot ends the search; an unavailable server makes it re-hash
 * with offsets ihash, ihash + 1, ... (mod m), at most m probes.
 *
 * Return: the real server index, or MX_NONE.
 */
u32 mx_lookup_fallback(const struct mx_params *p, const mx_slot_t *table,
		       const u8 *avail, u32 fold, u32 port)
{
	u32 ihash = mx_slot(p, fold, port);
	u32 off, roff, d;

	d = table[ihash];
	if (d == MX_SLOT_EMPTY)
		return MX_NONE;
	if (avail[d])
		return d;
	for (off = 0; off < p->m; off++) {
		roff = (off + ihash) % p->m;
		d = table[mx_hash(p, MX_H1, fold, port, roff) % p->m];
		if (d == MX_SLOT_EMPTY)
			break;
		if (avail[d])
			return d;
	}
	return MX_NONE;
}

/**
 * mx_lookup_many() - schedule @n flows
 * @p: table parameters
 * @table: the table
 * @avail: per real server index, non-zero when it is available
 * @fallback: non-zero for the mh-fallback flag
 * @n: number of flows
 * @folds: folded client addresses
 * @ports: hashed client ports (all 0 without mh-port)
 * @out: real server index or MX_NONE per flow
 */
void mx_lookup_many(const struct mx_params *p, const mx_slot_t *table,
		    const u8 *avail, int fallback, size_t n, const u32 *folds,
		    const u16 *ports, u32 *out)
{
	/* A copy: stores to @out cannot alias it, so it stays in registers. */
	const struct mx_params q = *p;
	size_t i;

	if (fallback) {
		for (i = 0; i < n; i++)
			out[i] = mx_lookup_fallback(&q, table, avail, folds[i],
						    ports[i]);
		return;
	}
	for (i = 0; i < n; i++)
		out[i] = mx_lookup(&q, table, avail, folds[i], ports[i]);
}
