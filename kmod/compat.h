/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The only file of kmod/ that knows kernel versions.
 *
 * Each difference between kernels is a named feature flag here; the
 * scheduler tests the flags, never LINUX_VERSION_CODE. Tested against
 * Debian's 6.1 and 6.12 kernels; older thresholds are best effort.
 */
#ifndef IP_VS_MH_COMPAT_H
#define IP_VS_MH_COMPAT_H

#include <linux/version.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

/*
 * ip_vs_iph_inverse(): ICMP errors are scheduled from the quoted header,
 * whose "client" is its destination (v4.4).
 */
#if KERNEL_VERSION(4, 4, 0) <= LINUX_VERSION_CODE
#define IP_VS_MH_HAVE_IPH_INVERSE 1
#else
#define IP_VS_MH_HAVE_IPH_INVERSE 0
#endif

/* kvmalloc()/kvfree() (v4.12); the tables of large primes need vmalloc. */
#if KERNEL_VERSION(4, 12, 0) > LINUX_VERSION_CODE
static inline void *ip_vs_mh_kvzalloc(size_t size)
{
	return vzalloc(size);
}

static inline void ip_vs_mh_kvfree(const void *p)
{
	vfree(p);
}
#else
static inline void *ip_vs_mh_kvzalloc(size_t size)
{
	return kvzalloc(size, GFP_KERNEL);
}

static inline void ip_vs_mh_kvfree(const void *p)
{
	kvfree(p);
}
#endif

/* struct ip_vs_service::ipvs replaced ::net (v4.3). */
#if KERNEL_VERSION(4, 3, 0) <= LINUX_VERSION_CODE
#define IP_VS_MH_HAVE_SVC_IPVS 1
#else
#define IP_VS_MH_HAVE_SVC_IPVS 0
#endif

#endif /* IP_VS_MH_COMPAT_H */
