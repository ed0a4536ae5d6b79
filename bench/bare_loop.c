// SPDX-License-Identifier: GPL-2.0
/*
 * bare_loop.c - the ceiling for bulk lookups: csrc/ called from a plain C
 * loop, no Python, no numpy.
 *
 * Usage: bare_loop M WORD_SIZE FAMILY PORT N REPS
 *   M          table size (a kernel prime)
 *   WORD_SIZE  64 or 32
 *   FAMILY     4: flows are u32 addresses; 6: four u32 words each, folded
 *              in the timed loop
 *   PORT       1: client ports hashed; 0: not
 *   N          flows per pass, REPS passes; the best pass counts
 *
 * Prints one JSON object: lookups per second for each loop.
 *   kernel_loop   mx_lookup() per flow (`%` for the slot, as the kernel)
 *   lookup_many   mx_lookup_many()
 *   bulk          mx_bulk_lookup() / mx_bulk_lookup6(): what maglevx's
 *                 numpy API runs (fastmod, vectorized hashing)
 * Built and run by tests/bench/bare.py with the extension's own compiler
 * and flags.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mx_maglev.h"
#include "mx_bulk.h"

#define NR_DESTS 100

static u64 rng_state = 0x9e3779b97f4a7c15ULL;

static u32 rnd(void)
{
	/* xorshift64*: uniform enough for random client addresses */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (u32)((rng_state * 2685821657736338717ULL) >> 32);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile u32 sink;

static void consume(const u32 *out, size_t n)
{
	u32 acc = 0;
	size_t i;

	for (i = 0; i < n; i += 997)
		acc += out[i];
	sink = acc;
}

int main(int argc, char **argv)
{
	struct mx_params p;
	struct mx_dest_setup ds[NR_DESTS];
	u32 dfolds[NR_DESTS], dports[NR_DESTS], weights[NR_DESTS];
	u8 avail[NR_DESTS];
	mx_slot_t *table;
	u32 *words, *folds, *out;
	u16 *ports;
	size_t n, i;
	int family, hash_port, reps, r, loop;
	double best[3] = {0, 0, 0};

	if (argc != 7) {
		fprintf(stderr, "usage: %s M WORD_SIZE FAMILY PORT N REPS\n",
			argv[0]);
		return 2;
	}
	if (mx_params_init(&p, strtoul(argv[1], NULL, 0),
			   strtoul(argv[2], NULL, 0))) {
		fprintf(stderr, "bad M or WORD_SIZE\n");
		return 2;
	}
	family = atoi(argv[3]);
	hash_port = atoi(argv[4]);
	n = strtoul(argv[5], NULL, 0);
	reps = atoi(argv[6]);

	for (i = 0; i < NR_DESTS; i++) {
		dfolds[i] = rnd();
		dports[i] = 80;
		weights[i] = 1;
		avail[i] = 1;
	}
	table = malloc(p.m * sizeof(*table));
	words = malloc(n * (family == 6 ? 4 : 1) * sizeof(*words));
	folds = malloc(n * sizeof(*folds));
	ports = malloc(n * sizeof(*ports));
	out = malloc(n * sizeof(*out));
	if (!table || !words || !folds || !ports || !out)
		return 1;
	mx_build_table(&p, NR_DESTS, dfolds, dports, weights, ds, table);
	for (i = 0; i < n * (family == 6 ? 4 : 1); i++)
		words[i] = rnd();
	for (i = 0; i < n; i++)
		ports[i] = hash_port ? (u16)rnd() : 0;

	/* each loop's passes back to back, as the API's rounds are timed */
	for (loop = 0; loop < 3; loop++) {
		for (r = 0; r < reps; r++) {
			double t = now(), rate;

			if (family == 6 && loop == 2) {
				mx_bulk_lookup6(&p, table, avail, 0, n, words, NULL,
						hash_port ? ports : NULL, out);
			} else if (family == 6) {
				for (i = 0; i < n; i++)
					folds[i] = mx_fold6(words[4 * i],
							    words[4 * i + 1],
							    words[4 * i + 2],
							    words[4 * i + 3]);
			} else if (loop == 0 && r == 0) {
				for (i = 0; i < n; i++)
					folds[i] = words[i];
			}
			if (loop == 0) {
				for (i = 0; i < n; i++)
					out[i] = mx_lookup(&p, table, avail,
							   folds[i], ports[i]);
			} else if (loop == 1) {
				mx_lookup_many(&p, table, avail, 0, n, folds,
					       ports, out);
			} else if (family == 4) {
				mx_bulk_lookup(&p, table, avail, 0, n, folds,
					       hash_port ? ports : NULL, out);
			}
			rate = n / (now() - t);
			consume(out, n);
			if (rate > best[loop])
				best[loop] = rate;
		}
	}
	printf("{\"kernel_loop\": %.6g, \"lookup_many\": %.6g, \"bulk\": %.6g}\n",
	       best[0], best[1], best[2]);
	return 0;
}
