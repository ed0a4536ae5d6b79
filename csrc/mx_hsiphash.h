/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mx_hsiphash.h - the kernel's hsiphash(), for both kernel word sizes.
 *
 * Linux's hsiphash() (lib/siphash.c) is a different function on 64-bit and
 * on 32-bit kernels:
 *   - BITS_PER_LONG == 64: SipHash-1-3 over 64-bit state, keyed with two
 *     64-bit words, output truncated to the low 32 bits of v0^v1^v2^v3;
 *   - BITS_PER_LONG == 32: HalfSipHash-1-3 over 32-bit state, keyed with two
 *     32-bit words, output v1^v3.
 * Both are reproduced here so that userspace can predict either kind of
 * director. Reproduces Linux v6.1 lib/siphash.c (unchanged through v6.12).
 *
 * ip_vs_mh hashes exactly one u32 (`v`, in the director's memory order)
 * and the _u32 helpers are the fast path for it: they hash the 4 bytes of
 * the value as a little-endian CPU stores it (mx_hash() swaps them first
 * for a big-endian director).
 */
#ifndef MX_HSIPHASH_H
#define MX_HSIPHASH_H

#include "mx_port.h"

#define MX_ROL64(x, b) ((u64)(((x) << (b)) | ((x) >> (64 - (b)))))
#define MX_ROL32(x, b) ((u32)(((x) << (b)) | ((x) >> (32 - (b)))))

#define MX_SIPROUND(v0, v1, v2, v3) do {				\
	v0 += v1; v1 = MX_ROL64(v1, 13); v1 ^= v0; v0 = MX_ROL64(v0, 32); \
	v2 += v3; v3 = MX_ROL64(v3, 16); v3 ^= v2;			\
	v0 += v3; v3 = MX_ROL64(v3, 21); v3 ^= v0;			\
	v2 += v1; v1 = MX_ROL64(v1, 17); v1 ^= v2; v2 = MX_ROL64(v2, 32); \
} while (0)

#define MX_HSIPROUND(v0, v1, v2, v3) do {				\
	v0 += v1; v1 = MX_ROL32(v1, 5); v1 ^= v0; v0 = MX_ROL32(v0, 16); \
	v2 += v3; v3 = MX_ROL32(v3, 8); v3 ^= v2;			\
	v0 += v3; v3 = MX_ROL32(v3, 7); v3 ^= v0;			\
	v2 += v1; v1 = MX_ROL32(v1, 13); v1 ^= v2; v2 = MX_ROL32(v2, 16); \
} while (0)

u32 mx_hsiphash64(const u8 *data, size_t len, u64 k0, u64 k1);
u32 mx_hsiphash32(const u8 *data, size_t len, u32 k0, u32 k1);

/**
 * mx_hsiphash64_u32() - 64-bit kernels' hsiphash() of the 4 bytes of @v
 * @v: the value, as a little-endian kernel stores it
 * @k0: first key word
 * @k1: second key word
 *
 * Return: the same as mx_hsiphash64() over the 4 little-endian bytes of @v.
 */
static inline u32 mx_hsiphash64_u32(u32 v, u64 k0, u64 k1)
{
	u64 v0 = 0x736f6d6570736575ULL ^ k0;
	u64 v1 = 0x646f72616e646f6dULL ^ k1;
	u64 v2 = 0x6c7967656e657261ULL ^ k0;
	u64 v3 = 0x7465646279746573ULL ^ k1;
	u64 b = ((u64)4 << 56) | v;

	v3 ^= b;
	MX_SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	MX_SIPROUND(v0, v1, v2, v3);
	MX_SIPROUND(v0, v1, v2, v3);
	MX_SIPROUND(v0, v1, v2, v3);
	return (u32)((v0 ^ v1) ^ (v2 ^ v3));
}

/**
 * mx_hsiphash32_u32() - 32-bit kernels' hsiphash() of the 4 bytes of @v
 * @v: the value, as a little-endian kernel stores it
 * @k0: first key word
 * @k1: second key word
 *
 * Return: the same as mx_hsiphash32() over the 4 little-endian bytes of @v.
 */
static inline u32 mx_hsiphash32_u32(u32 v, u32 k0, u32 k1)
{
	u32 v0 = 0 ^ k0;
	u32 v1 = 0 ^ k1;
	u32 v2 = 0x6c796765U ^ k0;
	u32 v3 = 0x74656462U ^ k1;
	u32 b = (u32)4 << 24;

	v3 ^= v;
	MX_HSIPROUND(v0, v1, v2, v3);
	v0 ^= v;
	v3 ^= b;
	MX_HSIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	MX_HSIPROUND(v0, v1, v2, v3);
	MX_HSIPROUND(v0, v1, v2, v3);
	MX_HSIPROUND(v0, v1, v2, v3);
	return v1 ^ v3;
}

#endif /* MX_HSIPHASH_H */
