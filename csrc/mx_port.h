/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mx_port.h - the only file of the maglevx core that knows whether it is
 * built inside the Linux kernel or in userspace.
 *
 * Provides:
 *   - fixed-width types u8/u16/u32/u64 (the kernel's names),
 *   - size_t,
 *   - MX_INLINE for small hot helpers,
 *   - mx_le32()/mx_le64(): little-endian loads from a byte buffer.
 *
 * Everything else in csrc/ includes only this header. The core never
 * allocates: callers pass every buffer.
 */
#ifndef MX_PORT_H
#define MX_PORT_H

#ifdef __KERNEL__

#include <linux/types.h>
#include <linux/kernel.h>

#else /* userspace: freestanding headers only */

#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#endif /* __KERNEL__ */

#define MX_INLINE static inline

/* Byte-wise loads: correct on any host and any alignment. */
MX_INLINE u32 mx_le32(const u8 *p)
{
	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

MX_INLINE u64 mx_le64(const u8 *p)
{
	return (u64)mx_le32(p) | (u64)mx_le32(p + 4) << 32;
}

#endif /* MX_PORT_H */
