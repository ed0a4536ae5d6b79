// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_core.c - libFuzzer harness for the csrc/ core, under ASan + UBSan.
 *
 * Each input is decoded into a table size, a word size, a list of real
 * servers (folded address, port, table weight, available or not) and a few
 * flows. The core under test (mx_build_table(), mx_lookup(),
 * mx_lookup_fallback(), mx_lookup_many(), the _u32 hsiphash fast paths and,
 * when present, mx_bulk.h) must agree with the trivial reference below,
 * which is written from kernel-semantics.md in the plainest way: SipHash
 * from the paper over a byte string with a byte key, `%` instead of
 * conditional subtraction, a recursive gcd, and its own buffers. Every
 * buffer handed to the core is malloc()ed to its exact size so that ASan
 * sees any access past it.
 *
 * The reference is embedded (rather than calling the Python twin per input)
 * so that libFuzzer runs at native speed; the twin is tied in afterwards by
 * tests/test_fuzz_core.py, which replays the corpus through this same
 * decoder built with -DMX_FUZZ_REPLAY and compares with maglevx._twin.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx_maglev.h"
#include "mx_hsiphash.h"
#if __has_include("mx_bulk.h") && !defined(MX_FUZZ_NO_BULK)
#include "mx_bulk.h"
#define HAVE_MX_BULK 1
#endif

#define MAX_FLOWS 64

/* ---- input decoding ------------------------------------------------- */

struct reader {
	const uint8_t *p;
	size_t left;
};

static uint32_t take(struct reader *r, unsigned bytes)
{
	uint32_t v = 0;
	unsigned i;

	for (i = 0; i < bytes; i++) {
		v <<= 8;
		if (r->left) {
			v |= *r->p++;
			r->left--;
		}
	}
	return v;
}

struct server {
	uint32_t fold, port, weight;
	uint8_t avail;
};

struct flow {
	uint32_t fold;
	uint16_t port;
};

struct scenario {
	uint32_t m, word_size;
	int fallback;
	uint32_t byte_order;	/* MX_LITTLE_ENDIAN or MX_BIG_ENDIAN */
	int keyed;		/* mx_params_set_key(key) */
	uint8_t key[MX_KEY_SIZE];
	uint32_t n;
	struct server *rs;
	uint32_t nflows;
	struct flow flows[MAX_FLOWS];
};

static uint32_t pick_weight(uint32_t raw)
{
	/* Mostly small weights (quantization, gcd), sometimes the extremes. */
	switch (raw >> 14) {
	case 0:
		return raw & 7;
	case 1:
		return raw & 0xff;
	case 2:
		return raw & 0x3fff;
	default:
		return (raw & 1) ? 0xffffffffu - (raw & 0xff) : 65535 - (raw & 3);
	}
}

static void decode(const uint8_t *data, size_t size, struct scenario *s)
{
	struct reader r = { data, size };
	uint32_t b0 = take(&r, 1), b1 = take(&r, 2), i;
	uint32_t idx = b0 & 15;
	uint32_t max_n, max_flows, dups = 0;

	/*
	 * The big tables are slow to fill (and to compare): a low nibble of
	 * 15 (1 input in 16) picks one of the five largest with an extra byte,
	 * else one of the five smallest.
	 */
	idx = idx == 15 ? 5 + take(&r, 1) % 5 : idx % 5;
	s->m = mx_primes[idx];
	s->word_size = (b0 & 16) ? 32 : 64;
	s->fallback = !!(b0 & 32);
	s->byte_order = MX_LITTLE_ENDIAN;
	s->keyed = 0;
#ifndef MX_FUZZ_REPLAY
	/*
	 * A big-endian director and a secret key (the replay against the
	 * Python twin keeps the kernel's defaults).
	 */
	if (b0 & 128) {
		uint32_t opt = take(&r, 1);

		s->byte_order = opt & 1 ? MX_BIG_ENDIAN : MX_LITTLE_ENDIAN;
		s->keyed = !!(opt & 2);
		for (i = 0; s->keyed && i < MX_KEY_SIZE; i++)
			s->key[i] = (uint8_t)take(&r, 1);
	}
#endif
	/* Now and then more servers than slots (the kernel's -EINVAL). */
	max_n = (b0 & 64) && s->m <= 1021 ? s->m + 3 : 48;
	s->n = b1 % (max_n + 1);
	s->rs = calloc(s->n ? s->n : 1, sizeof(*s->rs));
	if (!s->rs)
		abort();
	for (i = 0; i < s->n; i++) {
		uint32_t f = take(&r, 1);

		s->rs[i].fold = (f & 0x80) ? take(&r, 4) : 0x0a000000u + i;
		s->rs[i].port = (f & 0x40) ? take(&r, 2) : 80;
		/*
		 * Twins: distinct real servers whose fold + port is the same
		 * (10.0.0.k:(60000 - k), or IPv6 addresses folding alike) share
		 * one permutation. Any operator can configure thousands; each
		 * makes the fill step past the others' slots, about m steps
		 * per twin. Here at most 4 per input, only to keep an input
		 * within libFuzzer's time limit at m = 131071: the cost of
		 * many is measured in tests/kernel/test_kmod_hardening.py.
		 */
		if ((f & 0x18) == 0x18 && i > 0 && dups < 4) {
			uint32_t d = take(&r, 2);

			s->rs[i].port = (s->rs[i - 1].port + d) & 0xffff;
			s->rs[i].fold = s->rs[i - 1].fold + s->rs[i - 1].port -
					s->rs[i].port;
			dups++;
		}
		s->rs[i].weight = pick_weight(take(&r, 2));
		s->rs[i].avail = !(f & 0x20);
	}
	/*
	 * A fallback lookup may probe all m slots (every server unavailable):
	 * keep the probes per input near 2^15 so that big tables stay cheap.
	 */
	max_flows = s->fallback ? 1 + (1u << 15) / s->m : MAX_FLOWS;
	if (max_flows > MAX_FLOWS)
		max_flows = MAX_FLOWS;
	s->nflows = 0;
	while (r.left && s->nflows < max_flows) {
		s->flows[s->nflows].fold = take(&r, 4);
		s->flows[s->nflows].port = (uint16_t)take(&r, 2);
		s->nflows++;
	}
	if (!s->nflows) { /* always look something up */
		s->flows[0].fold = 0xc0000201u;
		s->flows[0].port = 0;
		s->nflows = 1;
	}
}

/* ---- the reference --------------------------------------------------- */

static uint64_t ref_rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static uint32_t ref_rotl32(uint32_t x, int b)
{
	return (x << b) | (x >> (32 - b));
}

static uint64_t ref_load64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t ref_load32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* SipHash-c-d as in Aumasson & Bernstein, with c = 1, d = 3. */
static uint64_t ref_siphash13(const uint8_t *msg, size_t len,
			      const uint8_t key[16])
{
	uint64_t k0 = ref_load64(key), k1 = ref_load64(key + 8);
	uint64_t v[4] = { k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
			  k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL };
	uint8_t last[8] = { 0 };
	size_t i, blocks = len / 8;
	int round;

#define REF_SIPROUND() do {						\
		v[0] += v[1]; v[1] = ref_rotl64(v[1], 13); v[1] ^= v[0];	\
		v[0] = ref_rotl64(v[0], 32);					\
		v[2] += v[3]; v[3] = ref_rotl64(v[3], 16); v[3] ^= v[2];	\
		v[0] += v[3]; v[3] = ref_rotl64(v[3], 21); v[3] ^= v[0];	\
		v[2] += v[1]; v[1] = ref_rotl64(v[1], 17); v[1] ^= v[2];	\
		v[2] = ref_rotl64(v[2], 32);					\
	} while (0)

	for (i = 0; i <= blocks; i++) {
		uint64_t m;

		if (i < blocks) {
			m = ref_load64(msg + 8 * i);
		} else {
			memcpy(last, msg + 8 * i, len % 8);
			last[7] = (uint8_t)len;
			m = ref_load64(last);
		}
		v[3] ^= m;
		REF_SIPROUND();
		v[0] ^= m;
	}
	v[2] ^= 0xff;
	for (round = 0; round < 3; round++)
		REF_SIPROUND();
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* HalfSipHash-1-3 with a 64-bit key, 32-bit output. */
static uint32_t ref_halfsiphash13(const uint8_t *msg, size_t len,
				  const uint8_t key[8])
{
	uint32_t k0 = ref_load32(key), k1 = ref_load32(key + 4);
	uint32_t v[4] = { k0, k1, k0 ^ 0x6c796765U, k1 ^ 0x74656462U };
	uint8_t last[4] = { 0 };
	size_t i, blocks = len / 4;
	int round;

#define REF_HSIPROUND() do {						\
		v[0] += v[1]; v[1] = ref_rotl32(v[1], 5); v[1] ^= v[0];		\
		v[0] = ref_rotl32(v[0], 16);					\
		v[2] += v[3]; v[3] = ref_rotl32(v[3], 8); v[3] ^= v[2];		\
		v[0] += v[3]; v[3] = ref_rotl32(v[3], 7); v[3] ^= v[0];		\
		v[2] += v[1]; v[1] = ref_rotl32(v[1], 13); v[1] ^= v[2];	\
		v[2] = ref_rotl32(v[2], 16);					\
	} while (0)

	for (i = 0; i <= blocks; i++) {
		uint32_t m;

		if (i < blocks) {
			m = ref_load32(msg + 4 * i);
		} else {
			memcpy(last, msg + 4 * i, len % 4);
			last[3] = (uint8_t)len;
			m = ref_load32(last);
		}
		v[3] ^= m;
		REF_HSIPROUND();
		v[0] ^= m;
	}
	v[2] ^= 0xff;
	for (round = 0; round < 3; round++)
		REF_HSIPROUND();
	return v[1] ^ v[3];
}

/*
 * ip_vs_mh_hashkey(): the bytes of v as the director's CPU stores them;
 * key words {k, k} as the kernel's unsigned longs, or the secret key's
 * bytes as kmod/README.md lays them out (H2 on 64-bit: the complement).
 */
static uint32_t ref_hash(const struct scenario *s, int h2, uint32_t fold,
			 uint32_t port, uint32_t offset)
{
	uint32_t v = offset + port + fold;
	uint32_t k = h2 ? MX_HASH2_KEY : MX_HASH1_KEY;
	uint8_t msg[4];
	uint8_t key[16] = { 0 };
	int i;

	for (i = 0; i < 4; i++)
		msg[s->byte_order == MX_BIG_ENDIAN ? 3 - i : i] =
			(uint8_t)(v >> (8 * i));
	if (s->word_size == 32) {
		for (i = 0; i < 8; i++)
			key[i] = s->keyed ? s->key[8 * h2 + i] :
					    (uint8_t)(k >> (8 * (i % 4)));
		return ref_halfsiphash13(msg, 4, key);
	}
	for (i = 0; i < 16; i++)
		key[i] = !s->keyed ? (i % 8 < 4 ? (uint8_t)(k >> (8 * (i % 8))) : 0) :
			 h2 ? (uint8_t)~s->key[i] : s->key[i];
	return (uint32_t)ref_siphash13(msg, 4, key);
}

static uint32_t ref_gcd(uint32_t a, uint32_t b)
{
	return b ? ref_gcd(b, a % b) : a;
}

static uint32_t ref_tab_bits(uint32_t m)
{
	uint32_t i;

	for (i = 0; i < MX_NR_PRIMES; i++)
		if (mx_primes[i] == m)
			return (i + 8) / 2;
	abort();
}

/* Returns -1 when the kernel would refuse (more servers than slots). */
static int ref_build(const struct scenario *s, uint16_t *table)
{
	uint32_t g = 0, maxw = 0, bits = 0, rshift, i, filled = 0, q;
	uint32_t *perm, *skip, *turns;

	if (s->n > s->m)
		return -1;
	for (i = 0; i < s->m; i++)
		table[i] = 0xffff;
	for (i = 0; i < s->n; i++) {
		if (s->rs[i].weight > 0)
			g = g ? ref_gcd(s->rs[i].weight, g) : s->rs[i].weight;
		if (s->rs[i].weight > maxw)
			maxw = s->rs[i].weight;
	}
	if (g == 0)
		return 0;
	for (q = maxw / g; q; q >>= 1)
		bits++;
	rshift = bits > ref_tab_bits(s->m) ? bits - ref_tab_bits(s->m) : 0;
	perm = calloc(s->n, sizeof(*perm));
	skip = calloc(s->n, sizeof(*skip));
	turns = calloc(s->n, sizeof(*turns));
	if (!perm || !skip || !turns)
		abort();
	for (i = 0; i < s->n; i++) {
		const struct server *rs = &s->rs[i];

		perm[i] = ref_hash(s, 0, rs->fold, rs->port, 0) % s->m;
		skip[i] = ref_hash(s, 1, rs->fold, rs->port, 0) % (s->m - 1) + 1;
		turns[i] = (rs->weight / g) >> rshift;
		if (turns[i] == 0 && rs->weight != 0)
			turns[i] = 1;
	}
	while (filled < s->m) {
		for (i = 0; i < s->n && filled < s->m; i++) {
			uint32_t t;

			for (t = 0; t < turns[i] && filled < s->m; t++) {
				while (table[perm[i]] != 0xffff)
					perm[i] = (perm[i] + skip[i]) % s->m;
				table[perm[i]] = (uint16_t)i;
				filled++;
			}
		}
	}
	free(perm);
	free(skip);
	free(turns);
	return 0;
}

static uint32_t ref_lookup(const struct scenario *s, const uint16_t *table,
			   const uint8_t *avail, uint32_t fold, uint32_t port)
{
	uint32_t ihash = ref_hash(s, 0, fold, port, 0) % s->m;
	uint32_t off;
	uint16_t d = table[ihash];

	if (d == 0xffff)
		return MX_NONE;
	if (avail[d])
		return d;
	if (!s->fallback)
		return MX_NONE;
	for (off = 0; off < s->m; off++) {
		uint32_t roff = (off + ihash) % s->m;

		d = table[ref_hash(s, 0, fold, port, roff) % s->m];
		if (d == 0xffff)
			return MX_NONE;
		if (avail[d])
			return d;
	}
	return MX_NONE;
}

/* ---- the checks ------------------------------------------------------ */

#define CHECK(cond, ...) do {						\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_core: " __VA_ARGS__);	\
			fprintf(stderr, "\n");				\
			abort();					\
		}							\
	} while (0)

/* The _u32 fast paths and the byte-string hsiphash against the reference. */
static void check_hash(const struct scenario *s, const struct mx_params *p,
		       int h2, uint32_t v)
{
	uint8_t msg[4] = { v, v >> 8, v >> 16, v >> 24 };
	uint32_t ref = ref_hash(s, h2, v, 0, 0);
	uint32_t core = mx_hash(p, h2 ? MX_H2 : MX_H1, v, 0, 0);
	uint32_t fast, generic;

	CHECK(core == ref, "mx_hash(H%d, %08x): %08x, reference %08x", h2 + 1,
	      v, core, ref);
	if (s->byte_order != MX_LITTLE_ENDIAN)
		return;
	if (s->word_size == 32) {
		fast = mx_hsiphash32_u32(v, p->key32[h2][0], p->key32[h2][1]);
		generic = mx_hsiphash32(msg, 4, p->key32[h2][0],
					p->key32[h2][1]);
	} else {
		fast = mx_hsiphash64_u32(v, p->key64[h2][0], p->key64[h2][1]);
		generic = mx_hsiphash64(msg, 4, p->key64[h2][0],
					p->key64[h2][1]);
	}
	CHECK(fast == ref && generic == ref,
	      "hsiphash%u(%08x, H%d): fast %08x generic %08x ref %08x",
	      s->word_size, v, h2 + 1, fast, generic, ref);
}

static void run(const uint8_t *data, size_t size)
{
	struct scenario s;
	struct mx_params p;
	uint32_t *folds, *ports, *weights, *out, i;
	uint16_t *ports16;
	uint32_t *ffolds;
	uint8_t *avail;
	struct mx_dest_setup *ds;
	mx_slot_t *table;
	uint16_t *ref_table;
	int rc, ref_rc, any_weight = 0;

	decode(data, size, &s);
	CHECK(mx_params_init(&p, s.m, s.word_size) == 0, "params %u", s.m);
	CHECK(p.tab_bits == ref_tab_bits(s.m), "tab_bits");
	p.byte_order = s.byte_order;
	if (s.keyed)
		mx_params_set_key(&p, s.key);

	/* exact-size buffers so ASan sees any overrun */
	folds = malloc(s.n * sizeof(*folds) + 1);
	ports = malloc(s.n * sizeof(*ports) + 1);
	weights = malloc(s.n * sizeof(*weights) + 1);
	avail = malloc(s.n + 1);
	ds = malloc(s.n * sizeof(*ds) + 1);
	table = malloc(s.m * sizeof(*table));
	ref_table = malloc(s.m * sizeof(*ref_table));
	ffolds = malloc(s.nflows * sizeof(*ffolds));
	ports16 = malloc(s.nflows * sizeof(*ports16));
	out = malloc(s.nflows * sizeof(*out));
	if (!folds || !ports || !weights || !avail || !ds || !table ||
	    !ref_table || !ffolds || !ports16 || !out)
		abort();
	for (i = 0; i < s.n; i++) {
		folds[i] = s.rs[i].fold;
		ports[i] = s.rs[i].port;
		weights[i] = s.rs[i].weight;
		avail[i] = s.rs[i].avail;
		any_weight |= weights[i] > 0;
	}
	for (i = 0; i < s.nflows; i++) {
		ffolds[i] = s.flows[i].fold;
		ports16[i] = s.flows[i].port;
		check_hash(&s, &p, 0, ffolds[i] + ports16[i]);
		check_hash(&s, &p, 1, ffolds[i]);
	}

	memset(table, 0xab, s.m * sizeof(*table));
	rc = mx_build_table(&p, s.n, folds, ports, weights, ds, table);
	ref_rc = ref_build(&s, ref_table);
	CHECK(rc == ref_rc, "build rc %d, reference %d (n %u m %u)", rc, ref_rc,
	      s.n, s.m);
	if (rc != 0) {
		for (i = 0; i < s.m; i++) /* "table untouched" */
			CHECK(table[i] == 0xabab, "refused build wrote slot %u", i);
		goto out;
	}
	for (i = 0; i < s.m; i++) {
		CHECK(table[i] == ref_table[i], "slot %u: %u, reference %u (m %u)",
		      i, table[i], ref_table[i], s.m);
		/* every slot filled iff some weight > 0, never a zero weight */
		if (any_weight)
			CHECK(table[i] < s.n && weights[table[i]] > 0,
			      "slot %u holds %u", i, table[i]);
		else
			CHECK(table[i] == MX_SLOT_EMPTY, "slot %u not empty", i);
	}

	mx_lookup_many(&p, table, avail, s.fallback, s.nflows, ffolds, ports16,
		       out);
	for (i = 0; i < s.nflows; i++) {
		uint32_t one = s.fallback ?
			mx_lookup_fallback(&p, table, avail, ffolds[i], ports16[i]) :
			mx_lookup(&p, table, avail, ffolds[i], ports16[i]);
		uint32_t ref = ref_lookup(&s, ref_table, avail, ffolds[i],
					  ports16[i]);

		CHECK(out[i] == one && one == ref,
		      "flow %u: many %u one %u reference %u", i, out[i], one, ref);
		CHECK(one == MX_NONE || (one < s.n && avail[one]),
		      "flow %u: unavailable %u", i, one);
	}
#ifdef HAVE_MX_BULK
	{
		uint32_t *bulk = malloc(s.nflows * sizeof(*bulk));
		struct mx_fastmod fm;

		if (!bulk)
			abort();
		mx_bulk_lookup(&p, table, avail, s.fallback, s.nflows, ffolds,
			       ports16, bulk);
		CHECK(!memcmp(bulk, out, s.nflows * sizeof(*out)), "mx_bulk_lookup");
		free(bulk);
		mx_fastmod_init(&fm, s.m);
		for (i = 0; i < s.nflows; i++)
			CHECK(mx_fastmod(&fm, ffolds[i]) == ffolds[i] % s.m,
			      "mx_fastmod(%u) %% %u", ffolds[i], s.m);
	}
#endif
out:
	free(folds);
	free(ports);
	free(weights);
	free(avail);
	free(ds);
	free(table);
	free(ref_table);
	free(ffolds);
	free(ports16);
	free(out);
	free(s.rs);
}

#ifndef MX_FUZZ_REPLAY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	return 0;
}

#else /* MX_FUZZ_REPLAY */

/*
 * Replay: for each file named on the command line, print one JSON line with
 * the decoded scenario and what the core computed, for the Python twin to
 * check (tests/test_fuzz_core.py). The checks above run too.
 */
static void replay(const char *path)
{
	static uint8_t buf[1 << 16];
	struct scenario s;
	struct mx_params p;
	FILE *f = fopen(path, "rb");
	size_t size;
	uint32_t *folds, *ports, *weights, i;
	uint8_t *avail;
	struct mx_dest_setup *ds;
	mx_slot_t *table;
	int rc;

	if (!f) {
		perror(path);
		exit(2);
	}
	size = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	run(buf, size);
	decode(buf, size, &s);
	mx_params_init(&p, s.m, s.word_size);
	folds = calloc(s.n + 1, sizeof(*folds));
	ports = calloc(s.n + 1, sizeof(*ports));
	weights = calloc(s.n + 1, sizeof(*weights));
	avail = calloc(s.n + 1, 1);
	ds = calloc(s.n + 1, sizeof(*ds));
	table = calloc(s.m, sizeof(*table));
	if (!folds || !ports || !weights || !avail || !ds || !table)
		abort();
	for (i = 0; i < s.n; i++) {
		folds[i] = s.rs[i].fold;
		ports[i] = s.rs[i].port;
		weights[i] = s.rs[i].weight;
		avail[i] = s.rs[i].avail;
	}
	rc = mx_build_table(&p, s.n, folds, ports, weights, ds, table);
	printf("{\"m\": %u, \"word_size\": %u, \"fallback\": %d, \"rc\": %d",
	       s.m, s.word_size, s.fallback, rc);
#define LIST(name, count, expr) do {					\
		printf(", \"" name "\": [");				\
		for (i = 0; i < (count); i++)				\
			printf(i ? ", %u" : "%u", (unsigned)(expr));	\
		printf("]");						\
	} while (0)
	LIST("folds", s.n, folds[i]);
	LIST("ports", s.n, ports[i]);
	LIST("weights", s.n, weights[i]);
	LIST("avail", s.n, avail[i]);
	LIST("flow_folds", s.nflows, s.flows[i].fold);
	LIST("flow_ports", s.nflows, s.flows[i].port);
	if (rc == 0) {
		LIST("table", s.m, table[i]);
		LIST("result", s.nflows,
		     s.fallback ? mx_lookup_fallback(&p, table, avail,
						     s.flows[i].fold,
						     s.flows[i].port) :
				  mx_lookup(&p, table, avail, s.flows[i].fold,
					    s.flows[i].port));
	}
	printf("}\n");
	free(folds);
	free(ports);
	free(weights);
	free(avail);
	free(ds);
	free(table);
	free(s.rs);
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		replay(argv[i]);
	return 0;
}

#endif /* MX_FUZZ_REPLAY */
