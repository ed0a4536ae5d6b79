// SPDX-License-Identifier: GPL-2.0
/*
 * fastmod_check.c - mx_fastmod(a) == a % d, and mx_bulk_lookup() ==
 * mx_lookup_many(); run by tests/test_bulk.py (built with and without
 * -DMX_NO_VECTOR_CLONES, so that both the AVX-512 clone, where the CPU
 * has it, and the plain build are checked).
 *
 * For each divisor given on the command line (or every divisor 2..2^17
 * with "all", on boundary values only): the lowest and highest 2^22
 * dividends, 2^22 pseudo-random ones, and q*d - 1, q*d, q*d + 1 for
 * 2^20 quotients q spread over the whole 32-bit range. For each table
 * size given: bulk and per-flow lookups of 100000 random flows, both word
 * sizes, with and without ports and fallback.
 * Prints the first mismatch and exits 1, or exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx_bulk.h"

static int check(const struct mx_fastmod *f, u32 a)
{
	if (mx_fastmod(f, a) == a % f->d)
		return 0;
	printf("mx_fastmod(%u) by %u: %u, expected %u\n", a, f->d,
	       mx_fastmod(f, a), a % f->d);
	return 1;
}

static int boundaries(const struct mx_fastmod *f, u32 nq)
{
	u64 qmax = 0xffffffffULL / f->d;
	u64 q;
	u32 j;

	for (j = 0; j <= nq; j++) {
		q = qmax * j / nq;
		if (check(f, (u32)(q * f->d)) ||
		    check(f, (u32)(q * f->d - 1)) ||
		    (q * f->d + 1 <= 0xffffffffULL &&
		     check(f, (u32)(q * f->d + 1))))
			return 1;
	}
	return check(f, 0xffffffffU);
}

static int dense(const struct mx_fastmod *f)
{
	u64 x = 0x9e3779b97f4a7c15ULL;
	u32 a;

	for (a = 0; a < (1U << 22); a++) {
		if (check(f, a) || check(f, ~a))
			return 1;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (check(f, (u32)x))
			return 1;
	}
	return boundaries(f, 1U << 20);
}

#define NR_FLOWS 100000
#define NR_DESTS 64

static u32 folds[NR_FLOWS], want[NR_FLOWS], got[NR_FLOWS];
static u16 ports[NR_FLOWS], noports[NR_FLOWS];
static mx_slot_t table[131071];

static int bulk(u32 m)
{
	struct mx_dest_setup ds[NR_DESTS];
	u32 dfolds[NR_DESTS], dports[NR_DESTS], weights[NR_DESTS];
	u8 avail[NR_DESTS];
	struct mx_params p;
	u32 ws, i;
	int fb;

	srand(m);
	for (i = 0; i < NR_DESTS; i++) {
		dfolds[i] = (u32)rand() << 16 ^ (u32)rand();
		dports[i] = 80;
		weights[i] = rand() % 4;
		avail[i] = rand() % 3 != 0;
	}
	for (i = 0; i < NR_FLOWS; i++) {
		folds[i] = (u32)rand() << 16 ^ (u32)rand();
		ports[i] = (u16)rand();
	}
	for (ws = 32; ws <= 64; ws += 32) {
		if (mx_params_init(&p, m, ws))
			return 1;
		mx_build_table(&p, NR_DESTS, dfolds, dports, weights, ds, table);
		for (fb = 0; fb <= 1; fb++) {
			mx_lookup_many(&p, table, avail, fb, NR_FLOWS, folds,
				       ports, want);
			mx_bulk_lookup(&p, table, avail, fb, NR_FLOWS, folds,
				       ports, got);
			if (memcmp(want, got, sizeof(want)))
				goto differ;
			mx_lookup_many(&p, table, avail, fb, NR_FLOWS, folds,
				       noports, want);
			mx_bulk_lookup(&p, table, avail, fb, NR_FLOWS, folds,
				       NULL, got);
			if (memcmp(want, got, sizeof(want)))
				goto differ;
		}
	}
	return 0;
differ:
	printf("mx_bulk_lookup() differs for m %u, word size %u\n", m, ws);
	return 1;
}

int main(int argc, char **argv)
{
	struct mx_fastmod f;
	u32 d;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "all") == 0) {
			for (d = 2; d <= (1U << 17); d++) {
				mx_fastmod_init(&f, d);
				if (boundaries(&f, 64))
					return 1;
			}
			continue;
		}
		d = strtoul(argv[i], NULL, 0);
		mx_fastmod_init(&f, d);
		if (dense(&f) || bulk(d))
			return 1;
	}
	return 0;
}
