// SPDX-License-Identifier: GPL-2.0
/*
 * Load-time self-test of the shared core, built only with DEBUG (make
 * debug), as WireGuard's selftests: the hash and the table fill must give
 * the kernel's own answers (ip_vs_mh_selftest_kat.h) on this CPU and with
 * this compiler, or the module refuses to load.
 */

#define KMSG_COMPONENT "IPVS"
#define pr_fmt(fmt) KMSG_COMPONENT ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>

#include "compat.h"
#include "ip_vs_mh.h"

struct ip_vs_mh_kat_server {
	u32 fold;
	u32 port;
	u32 weight;
};

struct ip_vs_mh_kat_flow {
	u32 fold;
	u32 port;
	u32 dest;
};

struct ip_vs_mh_kat_case {
	u32 word_size;
	u32 n;
	const struct ip_vs_mh_kat_server *servers;
	u32 nflows;
	const struct ip_vs_mh_kat_flow *flows;
};

#include "ip_vs_mh_selftest_kat.h"

/* lib/test_siphash.c: input 00 01 .. len-1, keys 00 01 .. 0f as words. */
static bool ip_vs_mh_selftest_hsiphash(void)
{
	u8 in[64], key[MX_KEY_SIZE];
	struct mx_params p;
	bool ok = true;
	u32 i;

	for (i = 0; i < 64; i++)
		in[i] = i;
	for (i = 0; i < 64; i++) {
		if (mx_hsiphash64(in, i, 0x0706050403020100ULL,
				  0x0f0e0d0c0b0a0908ULL) !=
		    ip_vs_mh_kat_hsiphash64[i]) {
			pr_err("mh: self-test: hsiphash64 vector %u\n", i);
			ok = false;
		}
		if (mx_hsiphash32(in, i, 0x03020100U, 0x07060504U) !=
		    ip_vs_mh_kat_hsiphash32[i]) {
			pr_err("mh: self-test: hsiphash32 vector %u\n", i);
			ok = false;
		}
	}

	/*
	 * The u32 fast path, the hash_key layout (key 00 01 .. 0f keys H1 as
	 * the vectors) and the big-endian reading: vector 4 is v = 0x03020100
	 * on a little-endian director, 0x00010203 on a big-endian one.
	 */
	for (i = 0; i < MX_KEY_SIZE; i++)
		key[i] = i;
	mx_params_init(&p, MX_DEFAULT_TABLE_SIZE, 64);
	mx_params_set_key(&p, key);
	if (mx_hash(&p, MX_H1, 0x03020100U, 0, 0) != ip_vs_mh_kat_hsiphash64[4] ||
	    mx_hash(&p, MX_H1, 0x03020000U, 0x100, 0) != ip_vs_mh_kat_hsiphash64[4]) {
		pr_err("mh: self-test: keyed hash, 64-bit\n");
		ok = false;
	}
	p.byte_order = MX_BIG_ENDIAN;
	if (mx_hash(&p, MX_H1, 0x00010203U, 0, 0) != ip_vs_mh_kat_hsiphash64[4]) {
		pr_err("mh: self-test: keyed hash, 64-bit big-endian\n");
		ok = false;
	}
	mx_params_init(&p, MX_DEFAULT_TABLE_SIZE, 32);
	mx_params_set_key(&p, key);
	if (mx_hash(&p, MX_H1, 0x03020100U, 0, 0) != ip_vs_mh_kat_hsiphash32[4]) {
		pr_err("mh: self-test: keyed hash, 32-bit\n");
		ok = false;
	}
	return ok;
}

/* Build each case's table, then every flow must go where the kernel sent it. */
static bool ip_vs_mh_selftest_table(const struct ip_vs_mh_kat_case *c)
{
	struct mx_dest_setup *ds;
	struct mx_params p;
	mx_slot_t *table;
	u32 *folds, *ports, *weights;
	u8 *avail;
	bool ok = true;
	u32 i, d;

	if (mx_params_init(&p, MX_DEFAULT_TABLE_SIZE, c->word_size))
		return false;
	table = kcalloc(p.m, sizeof(*table), GFP_KERNEL);
	ds = kcalloc(c->n, sizeof(*ds) + 3 * sizeof(u32) + 1, GFP_KERNEL);
	if (!table || !ds) {
		kfree(table);
		kfree(ds);
		pr_err("mh: self-test: out of memory\n");
		return false;
	}
	folds = (u32 *)(ds + c->n);
	ports = folds + c->n;
	weights = ports + c->n;
	avail = (u8 *)(weights + c->n);
	for (i = 0; i < c->n; i++) {
		folds[i] = c->servers[i].fold;
		ports[i] = c->servers[i].port;
		weights[i] = c->servers[i].weight;
		avail[i] = 1;
	}
	if (mx_build_table(&p, c->n, folds, ports, weights, ds, table)) {
		pr_err("mh: self-test: table of %u servers refused\n", c->n);
		ok = false;
	}
	for (i = 0; ok && i < c->nflows; i++) {
		d = mx_lookup(&p, table, avail, c->flows[i].fold,
			      c->flows[i].port);
		if (d != c->flows[i].dest) {
			pr_err("mh: self-test: %u-bit flow %u: server %u, the kernel chose %u\n",
			       c->word_size, i, d, c->flows[i].dest);
			ok = false;
		}
	}
	kfree(table);
	kfree(ds);
	return ok;
}

/**
 * ip_vs_mh_selftest() - check csrc/ against the kernel's known answers
 *
 * Return: true when every answer is right.
 */
bool ip_vs_mh_selftest(void)
{
	bool ok = ip_vs_mh_selftest_hsiphash();
	u32 i;

	for (i = 0; i < ARRAY_SIZE(ip_vs_mh_kat_cases); i++)
		ok &= ip_vs_mh_selftest_table(&ip_vs_mh_kat_cases[i]);
	if (ok)
		pr_info("mh: self-test: %zu tables and 128 hsiphash vectors pass\n",
			ARRAY_SIZE(ip_vs_mh_kat_cases));
	else
		pr_err("mh: self-test failed\n");
	return ok;
}
