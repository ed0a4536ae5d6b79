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
#include <net/ip_vs.h>

/*
 * ip_vs_iph_inverse(): ICMP errors are scheduled from the quoted header,
 * whose "client" is its destination (v4.4).
 */
#if KERNEL_VERSION(4, 4, 0) <= LINUX_VERSION_CODE
#define IP_VS_MH_HAVE_IPH_INVERSE 1
#else
#define IP_VS_MH_HAVE_IPH_INVERSE 0
#endif

/*
 * Tables are charged to the memory cgroup of whoever configures the
 * service (GFP_KERNEL_ACCOUNT, v4.5), so that a container's IPVS cannot
 * use more kernel memory than its limit allows.
 */
#if KERNEL_VERSION(4, 5, 0) <= LINUX_VERSION_CODE
#define IP_VS_MH_GFP GFP_KERNEL_ACCOUNT
#else
#define IP_VS_MH_GFP GFP_KERNEL
#endif

/* kvmalloc()/kvfree() (v4.12); the tables of large primes need vmalloc. */
#if KERNEL_VERSION(4, 12, 0) > LINUX_VERSION_CODE
static inline void *ip_vs_mh_kvzalloc(size_t size)
{
	return __vmalloc(size, IP_VS_MH_GFP | __GFP_ZERO, PAGE_KERNEL);
}

static inline void ip_vs_mh_kvfree(const void *p)
{
	vfree(p);
}
#else
static inline void *ip_vs_mh_kvzalloc(size_t size)
{
	return kvzalloc(size, IP_VS_MH_GFP);
}

static inline void ip_vs_mh_kvfree(const void *p)
{
	kvfree(p);
}
#endif

/* struct ip_vs_service::ipvs replaced ::net (v4.3). */
#if KERNEL_VERSION(4, 3, 0) <= LINUX_VERSION_CODE
static inline struct net *ip_vs_mh_svc_net(const struct ip_vs_service *svc)
{
	return svc->ipvs->net;
}
#else
static inline struct net *ip_vs_mh_svc_net(const struct ip_vs_service *svc)
{
	return svc->net;
}
#endif

/*
 * A real server is "available" while it is in its service's list:
 * __ip_vs_unlink_dest() clears the flag when it is deleted, before the
 * scheduler's del_dest() runs. Testing it lets schedule() refuse a deleted
 * real server that a table still holds (a rebuild that failed for lack of
 * memory keeps the old table). The flag is IP_VS_DEST_CF_AVAILABLE in
 * dest->cflags on current kernels (6.1, 6.12), IP_VS_DEST_F_AVAILABLE in
 * dest->flags on older ones: feature tests on the macros, not versions.
 */
#if defined(IP_VS_DEST_CF_AVAILABLE)
#define IP_VS_MH_HAVE_DEST_AVAILABLE 1
static inline bool ip_vs_mh_dest_available(const struct ip_vs_dest *dest)
{
	return READ_ONCE(dest->cflags) & IP_VS_DEST_CF_AVAILABLE;
}
#elif defined(IP_VS_DEST_F_AVAILABLE)
#define IP_VS_MH_HAVE_DEST_AVAILABLE 1
static inline bool ip_vs_mh_dest_available(const struct ip_vs_dest *dest)
{
	return READ_ONCE(dest->flags) & IP_VS_DEST_F_AVAILABLE;
}
#else
#define IP_VS_MH_HAVE_DEST_AVAILABLE 0
static inline bool ip_vs_mh_dest_available(const struct ip_vs_dest *dest)
{
	return true;
}
#endif

#endif /* IP_VS_MH_COMPAT_H */
