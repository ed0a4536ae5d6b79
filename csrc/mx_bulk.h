/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mx_bulk.h - scheduling many flows at once, for userspace only.
 *
 * The kernel schedules one flow per packet and takes the slot with `%`
 * (ip_vs_mh_get()); kmod/Kbuild does not build this file. Here the table
 * size is fixed for a whole array of flows, so:
 *   - the remainder by it is a precomputed multiply (Lemire, Kaser and
 *     Kurz, "Faster Remainder by Direct Computation", Software: Practice
 *     and Experience 49(6), 2019), exact for every 32-bit dividend and
 *     every divisor >= 2;
 *   - slots are hashed a block of flows at a time in a loop of plain
 *     arithmetic, which compilers vectorize (see MX_VECTOR_CLONES), and
 *     the table is read in a second loop.
 * Results are those of mx_lookup_many(), flow for flow.
 */
#ifndef MX_BULK_H
#define MX_BULK_H

#include "mx_port.h"
#include "mx_maglev.h"

/**
 * struct mx_fastmod - a divisor with its precomputed multiplier
 * @c: 2^64 / @d rounded up, i.e. floor((2^64 - 1) / @d) + 1
 * @d: the divisor, >= 2
 */
struct mx_fastmod {
	u64 c;
	u32 d;
};

void mx_fastmod_init(struct mx_fastmod *f, u32 d);

/**
 * mx_fastmod() - @a % @f->d without a division
 * @f: from mx_fastmod_init()
 * @a: the dividend
 *
 * c * a mod 2^64 is the fractional part of @a / d in 64 fixed-point bits;
 * times d, its top 64 bits are the remainder. That 64 x 32 -> 96-bit
 * product is taken as two 32 x 32 -> 64-bit halves, so no 128-bit type
 * is needed (and it vectorizes).
 *
 * Return: @a % @f->d.
 */
static inline u32 mx_fastmod(const struct mx_fastmod *f, u32 a)
{
	u64 frac = f->c * a;
	u64 lo = (u64)(u32)frac * f->d;
	u64 hi = (frac >> 32) * f->d + (lo >> 32);

	return (u32)(hi >> 32);
}

void mx_bulk_lookup(const struct mx_params *p, const mx_slot_t *table,
		    const u8 *avail, int fallback, size_t n, const u32 *folds,
		    const u16 *ports, u32 *out);
void mx_bulk_lookup6(const struct mx_params *p, const mx_slot_t *table,
		     const u8 *avail, int fallback, size_t n, const u32 *words,
		     const u8 *bytes, const u16 *ports, u32 *out);

#endif /* MX_BULK_H */
