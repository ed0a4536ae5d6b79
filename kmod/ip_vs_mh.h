/* SPDX-License-Identifier: GPL-2.0 */
/*
 * State shared by the scheduler and its debugfs dump.
 */
#ifndef IP_VS_MH_H
#define IP_VS_MH_H

#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/types.h>
#include <net/ip_vs.h>

#include "mx_maglev.h"

/**
 * struct ip_vs_mh_table - one published lookup table of a service
 * @rcu_head: frees the table one grace period after it was replaced
 * @num_dests: number of real servers the table was built from
 * @dests: those real servers in list order (head first), each held with
 *	ip_vs_dest_hold() while the table is published; lives in the same
 *	allocation, after @slots
 * @slots: ip_vs_mh_params.m slots, each an index into @dests or
 *	MX_SLOT_EMPTY
 *
 * A table is never changed once published: a rebuild makes a new one.
 */
struct ip_vs_mh_table {
	struct rcu_head		rcu_head;
	u32			num_dests;
	struct ip_vs_dest	**dests;
	mx_slot_t		slots[];
};

/**
 * struct ip_vs_mh_state - svc->sched_data of an mh service
 * @table: the current table, read by ip_vs_mh_schedule() under RCU
 * @svc: the service, for the dump (valid to an RCU reader that found
 *	the state on ip_vs_mh_services: IPVS frees services after a grace
 *	period, and done_service unlinks the state first)
 * @net: the service's network namespace, only compared, never followed
 * @list: entry in ip_vs_mh_services (RCU list)
 * @rcu_head: frees the state after done_service
 */
struct ip_vs_mh_state {
	struct ip_vs_mh_table __rcu	*table;
	struct ip_vs_service		*svc;
	const struct net		*net;
	struct list_head		list;
	struct rcu_head			rcu_head;
};

/* Fixed at module load by the module parameters. */
extern struct mx_params ip_vs_mh_params;
extern bool ip_vs_mh_hash_port;
extern bool ip_vs_mh_keyed;
extern u32 ip_vs_mh_key_id;

/*
 * All mh services of all network namespaces: readers (the dump) walk it
 * under RCU, writers (init and done_service) hold the mutex.
 */
extern struct list_head ip_vs_mh_services;
extern struct mutex ip_vs_mh_services_lock;

void ip_vs_mh_debugfs_init(void);
void ip_vs_mh_debugfs_exit(void);

#ifdef DEBUG
/* ip_vs_mh_selftest.c: known answers of csrc/, run at load. */
bool ip_vs_mh_selftest(void);
#else
static inline bool ip_vs_mh_selftest(void)
{
	return true;
}
#endif

#endif /* IP_VS_MH_H */
