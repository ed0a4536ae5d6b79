// SPDX-License-Identifier: GPL-2.0
/*
 * mx_hsiphash.c - the kernel's hsiphash() over arbitrary byte strings.
 *
 * Only needed to check the implementation against the kernel's own
 * known-answer vectors (lib/test_siphash.c, which hash 0..63 bytes);
 * ip_vs_mh itself only ever hashes one u32 (see mx_hsiphash.h).
 */
#include "mx_hsiphash.h"

/**
 * mx_hsiphash64() - hsiphash() as built on 64-bit kernels (SipHash-1-3)
 * @data: bytes to hash
 * @len: number of bytes
 * @k0: hsiphash_key_t key[0]
 * @k1: hsiphash_key_t key[1]
 *
 * Return: the 32-bit hash, equal to Linux's hsiphash() when BITS_PER_LONG
 * is 64.
 */
u32 mx_hsiphash64(const u8 *data, size_t len, u64 k0, u64 k1)
{
	u64 v0 = 0x736f6d6570736575ULL ^ k0;
	u64 v1 = 0x646f72616e646f6dULL ^ k1;
	u64 v2 = 0x6c7967656e657261ULL ^ k0;
	u64 v3 = 0x7465646279746573ULL ^ k1;
	u64 b = ((u64)len) << 56;
	size_t left = len & 7;
	const u8 *end = data + len - left;
	u64 m;
	size_t i;

	for (; data != end; data += 8) {
		m = mx_le64(data);
		v3 ^= m;
		MX_SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (i = 0; i < left; i++)
		b |= (u64)end[i] << (8 * i);

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
 * mx_hsiphash32() - hsiphash() as built on 32-bit kernels (HalfSipHash-1-3)
 * @data: bytes to hash
 * @len: number of bytes
 * @k0: hsiphash_key_t key[0]
 * @k1: hsiphash_key_t key[1]
 *
 * Return: the 32-bit hash, equal to Linux's hsiphash() when BITS_PER_LONG
 * is 32.
 */
u32 mx_hsiphash32(const u8 *data, size_t len, u32 k0, u32 k1)
{
	u32 v0 = 0 ^ k0;
	u32 v1 = 0 ^ k1;
	u32 v2 = 0x6c796765U ^ k0;
	u32 v3 = 0x74656462U ^ k1;
	u32 b = ((u32)len) << 24;
	size_t left = len & 3;
	const u8 *end = data + len - left;
	u32 m;
	size_t i;

	for (; data != end; data += 4) {
		m = mx_le32(data);
		v3 ^= m;
		MX_HSIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (i = 0; i < left; i++)
		b |= (u32)end[i] << (8 * i);

	v3 ^= b;
	MX_HSIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	MX_HSIPROUND(v0, v1, v2, v3);
	MX_HSIPROUND(v0, v1, v2, v3);
	MX_HSIPROUND(v0, v1, v2, v3);
	return v1 ^ v3;
}
