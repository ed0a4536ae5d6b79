/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mx_maglev.h - the IPVS Maglev hashing scheduler's table and lookup.
 *
 * Reproduces net/netfilter/ipvs/ip_vs_mh.c of Linux v6.1 (the same code
 * since v4.18, unchanged through v6.12): Maglev hashing as in Eisenbud et
 * al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI
 * 2016), with the kernel's own choices:
 *   - hash = hsiphash(offset + port + fold(addr)) with fixed keys (the
 *     kernel's) or a secret one (mx_params_set_key(), our module only),
 *     over the 4 bytes of that u32 as the director's CPU stores them,
 *   - per real server: offset = H1 % M, skip = H2 % (M - 1) + 1,
 *     turns = (weight / gcd) >> rshift, or 1 for a small non-zero weight,
 *   - populate: rounds over the real servers in list order (head first);
 *     each claims `turns` slots in a row; stop once all M slots are taken.
 *
 * A table slot holds the index of a real server in the list the table was
 * built from (0 = list head), or MX_SLOT_EMPTY. Whether a real server is
 * "available" (weight > 0 and not overloaded) is the caller's business:
 * lookups take an array of flags indexed the same way.
 *
 * No function here allocates; callers pass every buffer.
 */
#ifndef MX_MAGLEV_H
#define MX_MAGLEV_H

#include "mx_port.h"
#include "mx_hsiphash.h"

/* Linux version whose ip_vs_mh.c this file reproduces. */
#define MX_KERNEL_REFERENCE "v6.1 net/netfilter/ipvs/ip_vs_mh.c"

#define MX_NR_PRIMES		10
#define MX_DEFAULT_TABLE_SIZE	4093	/* CONFIG_IP_VS_MH_TAB_INDEX=12 */
#define MX_SLOT_EMPTY		0xffffU
#define MX_MAX_DESTS		0xfffeU	/* indices must fit an mx_slot_t */
#define MX_NONE			0xffffffffU

/* generate_hash_secret(): both words of each key are equal. */
#define MX_HASH1_KEY		2654435761U
#define MX_HASH2_KEY		2654446892U

/* The two hashes of ip_vs_mh: H1 (slots, offsets), H2 (skips). */
#define MX_H1			0
#define MX_H2			1

#define MX_KEY_SIZE		16	/* bytes of a secret key */

/* Byte orders of a director's CPU (struct mx_params.byte_order). */
#define MX_LITTLE_ENDIAN	0
#define MX_BIG_ENDIAN		1

/*
 * mx_populate() offers to reschedule (mx_cond_resched()) after this many
 * probes or claims: at most a few hundred microseconds of work in between,
 * even under emulation.
 */
#define MX_RESCHED_INTERVAL	(1U << 16)

typedef u16 mx_slot_t;

/**
 * struct mx_params - what a table depends on besides the real servers
 * @m: table size, one of mx_primes[] (IP_VS_MH_TAB_SIZE)
 * @tab_bits: CONFIG_IP_VS_MH_TAB_INDEX / 2 (IP_VS_MH_TAB_BITS)
 * @word_size: 64 or 32, the director kernel's BITS_PER_LONG
 * @byte_order: MX_LITTLE_ENDIAN or MX_BIG_ENDIAN, the director's CPU. The
 *	kernel hashes the bytes of the u32 v as the CPU stores them, and
 *	hsiphash() reads them as little-endian: a big-endian director hashes
 *	the byte-swapped v.
 * @key64: [MX_H1 or MX_H2][word] hsiphash keys of 64-bit kernels
 * @key32: [MX_H1 or MX_H2][word] hsiphash keys of 32-bit kernels
 *
 * mx_params_init() sets the kernel's fixed keys and little-endian;
 * mx_params_set_key() replaces the keys, and the caller may set
 * @byte_order.
 */
struct mx_params {
	u32 m;
	u32 tab_bits;
	u32 word_size;
	u32 byte_order;
	u64 key64[2][2];
	u32 key32[2][2];
};

/**
 * struct mx_dest_setup - one real server's permutation state
 * @offset: first preferred slot
 * @skip: step between preferred slots
 * @perm: current preferred slot
 * @turns: slots claimed per round
 */
struct mx_dest_setup {
	u32 offset;
	u32 skip;
	u32 perm;
	u32 turns;
};

extern const u32 mx_primes[MX_NR_PRIMES];

int mx_params_init(struct mx_params *p, u32 table_size, u32 word_size);
void mx_params_set_key(struct mx_params *p, const u8 key[MX_KEY_SIZE]);

/**
 * mx_fold6() - fold an IPv6 address into 32 bits as ip_vs_mh_hashkey() does
 * @w0: first 32-bit word of the address, numeric (host order)
 * @w1: second word
 * @w2: third word
 * @w3: fourth word
 *
 * An IPv4 address folds to its own numeric value.
 * Return: the XOR of the four words.
 */
static inline u32 mx_fold6(u32 w0, u32 w1, u32 w2, u32 w3)
{
	return w0 ^ w1 ^ w2 ^ w3;
}

/**
 * mx_hash() - ip_vs_mh_hashkey()
 * @p: table parameters (word size, byte order and keys)
 * @h: MX_H1 or MX_H2
 * @fold: folded address (mx_fold6(), or the IPv4 address)
 * @port: port, numeric
 * @offset: fallback probe offset, 0 otherwise
 *
 * Return: hsiphash(&v, 4, key) with v = offset + port + fold as the
 * director stores it, and the key of hash @h for its word size.
 */
static inline u32 mx_hash(const struct mx_params *p, u32 h, u32 fold,
			  u32 port, u32 offset)
{
	u32 v = offset + port + fold;

	if (p->byte_order == MX_BIG_ENDIAN)
		v = mx_swab32(v);
	if (p->word_size == 32)
		return mx_hsiphash32_u32(v, p->key32[h][0], p->key32[h][1]);
	return mx_hsiphash64_u32(v, p->key64[h][0], p->key64[h][1]);
}

/**
 * mx_hashkey() - mx_hash() named by the kernel's key constant
 * @p: table parameters
 * @key: MX_HASH2_KEY for H2; anything else (MX_HASH1_KEY) for H1
 * @fold: folded address
 * @port: port, numeric
 * @offset: fallback probe offset, 0 otherwise
 *
 * Kept for callers written before the keys moved into struct mx_params:
 * @key only says which hash; the key itself comes from @p.
 *
 * Return: mx_hash() of hash H1 or H2.
 */
static inline u32 mx_hashkey(const struct mx_params *p, u32 key, u32 fold,
			     u32 port, u32 offset)
{
	return mx_hash(p, key == MX_HASH2_KEY ? MX_H2 : MX_H1, fold, port,
		       offset);
}

/**
 * mx_slot() - the table slot a flow hashes to
 * @p: table parameters
 * @fold: folded client address
 * @port: client port when hashed, else 0
 *
 * Return: the slot index in 0..m-1.
 */
static inline u32 mx_slot(const struct mx_params *p, u32 fold, u32 port)
{
	return mx_hash(p, MX_H1, fold, port, 0) % p->m;
}

u32 mx_gcd_weight(const u32 *weights, u32 n);
u32 mx_shift_weight(const struct mx_params *p, const u32 *weights, u32 n,
		    u32 gcd);
void mx_permutate(const struct mx_params *p, struct mx_dest_setup *ds,
		  u32 fold, u32 port, u32 weight, u32 gcd, u32 rshift);
void mx_populate(const struct mx_params *p, struct mx_dest_setup *ds, u32 n,
		 mx_slot_t *table);
int mx_build_table(const struct mx_params *p, u32 n, const u32 *folds,
		   const u32 *ports, const u32 *weights,
		   struct mx_dest_setup *ds, mx_slot_t *table);

/**
 * mx_lookup() - ip_vs_mh_get(): schedule without fallback
 * @p: table parameters
 * @table: the table
 * @avail: per real server index, non-zero when it is available
 * @fold: folded client address
 * @port: client port when hashed, else 0
 *
 * Return: the real server index, or MX_NONE for "no destination".
 */
static inline u32 mx_lookup(const struct mx_params *p, const mx_slot_t *table,
			    const u8 *avail, u32 fold, u32 port)
{
	u32 d = table[mx_slot(p, fold, port)];

	return (d == MX_SLOT_EMPTY || !avail[d]) ? MX_NONE : d;
}

u32 mx_lookup_fallback(const struct mx_params *p, const mx_slot_t *table,
		       const u8 *avail, u32 fold, u32 port);
void mx_lookup_many(const struct mx_params *p, const mx_slot_t *table,
		    const u8 *avail, int fallback, size_t n, const u32 *folds,
		    const u16 *ports, u32 *out);

#endif /* MX_MAGLEV_H */
