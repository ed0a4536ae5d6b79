/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mx_port.h - the only file of the maglevx core that knows whether it is
 * built inside the Linux kernel or in userspace.
 *
 * Provides:
 *   - fixed-width types u8/u16/u32/u64 (the kernel's names),
 *   - size_t,
 *   - MX_VECTOR_CLONES: build a hot array loop a second time for AVX-512,
 *     picked when the library loads (userspace x86-64 with glibc only),
 *   - MX_HOST_BIG_ENDIAN: 1 when built for a big-endian kernel, else 0
 *     (userspace models either byte order at run time, see mx_params),
 *   - mx_cond_resched(): a voluntary rescheduling point for long loops;
 *     cond_resched() in the kernel, nothing in userspace,
 *   - mx_le32()/mx_le64(): little-endian loads from a byte buffer,
 *   - mx_be32(): big-endian (network order) load from a byte buffer,
 *   - mx_swab32(): the four bytes of a u32 in reverse order.
 *
 * Everything else in csrc/ includes only this header. The core never
 * allocates: callers pass every buffer.
 */
#ifndef MX_PORT_H
#define MX_PORT_H

#ifdef __KERNEL__

#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/sched.h>
#include <asm/byteorder.h>

/* No vector registers in kernel code. */
#define MX_VECTOR_CLONES

#if defined(__BIG_ENDIAN)
#define MX_HOST_BIG_ENDIAN 1
#else
#define MX_HOST_BIG_ENDIAN 0
#endif

/*
 * A table fill runs under IPVS's configuration mutex and can take seconds
 * (see mx_populate()); give the CPU away now and then. -DMX_NO_RESCHED
 * removes the rescheduling points: only for showing that the soft-lockup
 * watchdog does fire without them (tests/kernel/test_kmod_hardening.py).
 */
#ifdef MX_NO_RESCHED
static inline void mx_cond_resched(void)
{
}
#else
static inline void mx_cond_resched(void)
{
	cond_resched();
}
#endif

#else /* userspace: freestanding headers only */

#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/*
 * target_clones needs the loader's ifunc support (glibc; <stdint.h> has
 * brought in <features.h>) and a compiler that knows the x86-64-v4 level.
 * -DMX_NO_VECTOR_CLONES turns it off.
 */
#if defined(__x86_64__) && defined(__GLIBC__) && \
	!defined(MX_NO_VECTOR_CLONES) && \
	((defined(__clang__) && __clang_major__ >= 14) || \
	 (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12))
#define MX_VECTOR_CLONES \
	__attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define MX_VECTOR_CLONES
#endif

/* Userspace has no byte order of its own to model; nothing to yield to. */
#define MX_HOST_BIG_ENDIAN 0

static inline void mx_cond_resched(void)
{
}

#endif /* __KERNEL__ */

/* Byte-wise loads: correct on any host and any alignment. */
static inline u32 mx_le32(const u8 *p)
{
	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

static inline u64 mx_le64(const u8 *p)
{
	return (u64)mx_le32(p) | (u64)mx_le32(p + 4) << 32;
}

static inline u32 mx_be32(const u8 *p)
{
	return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | (u32)p[3];
}

static inline u32 mx_swab32(u32 x)
{
	return x << 24 | (x & 0xff00) << 8 | (x >> 8 & 0xff00) | x >> 24;
}

#endif /* MX_PORT_H */
