// SPDX-License-Identifier: GPL-2.0
/*
 * IPVS: Maglev hashing scheduler "mh", the backport variant.
 *
 * The algorithm and the hash are those of the in-tree ip_vs_mh (Inju Song,
 * Linux 4.18+), taken from maglevx's shared core in ../csrc (mx_maglev.c,
 * mx_hsiphash.h), so that this module does not need the kernel's siphash
 * and so that userspace (python -m maglevx predict --variant backport)
 * computes exactly the same tables. Maglev is detailed in [3.4 Consistent
 * Hashing] of
 * https://www.usenix.org/system/files/conference/nsdi16/nsdi16-paper-eisenbud.pdf
 *
 * Differences from the in-tree ip_vs_mh, kept from the original backport:
 *   1. the client's port is hashed for TCP, UDP and SCTP whatever the
 *      service flags (module parameter hash_port=0 opts out: port 0);
 *   2. tables are built from the live weight, not last_weight: a real
 *      server of weight 0 gets no slot but keeps its place in the list,
 *      so restoring its weight restores the previous table exactly;
 *   3. no fallback: a slot that is empty or whose real server has weight
 *      <= 0 or is overloaded gives no destination, whatever the flags.
 * Beyond the backport: the table size is a module parameter (one of the
 * kernel's primes), an optional secret hash key (hash_key) keeps clients
 * from choosing ports that all land on one real server, debugfs shows
 * every table of the reader's network namespace (ip_vs_mh_debugfs.c), a
 * real server that IPVS has deleted is never chosen, and a rebuild yields
 * the CPU while it fills (mx_cond_resched()). On a big-endian CPU the hash
 * reads the bytes of its input as the CPU stores them, as the in-tree
 * module's hsiphash() call does there (mx_params.byte_order).
 *
 * Tables are immutable once published: every rebuild makes a new table
 * with its own references on the real servers, publishes it with
 * rcu_assign_pointer() and frees the old one after a grace period.
 */

#define KMSG_COMPONENT "IPVS"
#define pr_fmt(fmt) KMSG_COMPONENT ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/string.h>

#include <net/ip_vs.h>

#include "compat.h"
#include "ip_vs_mh.h"

#ifndef IP_VS_MH_VERSION
#define IP_VS_MH_VERSION "unknown"
#endif

struct mx_params ip_vs_mh_params;
LIST_HEAD(ip_vs_mh_services);
/* Protects ip_vs_mh_services (not the tables: __ip_vs_mutex does). */
DEFINE_MUTEX(ip_vs_mh_services_lock);

static unsigned int table_size = MX_DEFAULT_TABLE_SIZE;
bool ip_vs_mh_hash_port = true;
bool ip_vs_mh_keyed;
u32 ip_vs_mh_key_id;
/* The hash_key parameter until module init copies it into the params. */
static u8 ip_vs_mh_key[MX_KEY_SIZE];

/* Refuse anything but the kernel's primes, so insmod fails cleanly. */
static int ip_vs_mh_set_table_size(const char *val,
				   const struct kernel_param *kp)
{
	struct mx_params p;
	unsigned int m;

	if (kstrtouint(val, 0, &m) || mx_params_init(&p, m, BITS_PER_LONG)) {
		pr_err("mh: invalid table_size=%s: must be one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071\n",
		       val);
		return -EINVAL;
	}
	*(unsigned int *)kp->arg = m;
	return 0;
}

static const struct kernel_param_ops ip_vs_mh_table_size_ops = {
	.set = ip_vs_mh_set_table_size,
	.get = param_get_uint,
};

module_param_cb(table_size, &ip_vs_mh_table_size_ops, &table_size, 0444);
MODULE_PARM_DESC(table_size,
		 "slots per service table, a prime of 251..131071 (default 4093)");
module_param_named(hash_port, ip_vs_mh_hash_port, bool, 0444);
MODULE_PARM_DESC(hash_port,
		 "hash the client's TCP/UDP/SCTP port (default Y; N: port 0)");

/*
 * 32 hex digits, the same on every director of a fleet. Never shown: the
 * parameter has no sysfs file, and a bad value is not echoed to the log
 * (the kernel's parameter parser prints values it refuses, so a bad key is
 * accepted here and refused by ip_vs_mh_init()).
 */
static bool ip_vs_mh_key_bad;

static int ip_vs_mh_set_hash_key(const char *val,
				 const struct kernel_param *kp)
{
	ip_vs_mh_key_bad = strlen(val) != 2 * MX_KEY_SIZE ||
			   hex2bin(ip_vs_mh_key, val, MX_KEY_SIZE);
	ip_vs_mh_keyed = !ip_vs_mh_key_bad;
	return 0;
}

static const struct kernel_param_ops ip_vs_mh_hash_key_ops = {
	.set = ip_vs_mh_set_hash_key,
};

module_param_cb(hash_key, &ip_vs_mh_hash_key_ops, NULL, 0);
MODULE_PARM_DESC(hash_key,
		 "secret 128-bit hash key, 32 hex digits (default: the kernel's fixed keys)");

#ifdef DEBUG
/*
 * Fault injection for the tests (DEBUG builds only; Debian's kernels have
 * no CONFIG_FAULT_INJECTION): the next fail_alloc table allocations fail.
 */
static atomic_t ip_vs_mh_fail_alloc = ATOMIC_INIT(0);

static int ip_vs_mh_set_fail_alloc(const char *val,
				   const struct kernel_param *kp)
{
	int n;

	if (kstrtoint(val, 0, &n) || n < 0)
		return -EINVAL;
	atomic_set(&ip_vs_mh_fail_alloc, n);
	return 0;
}

static int ip_vs_mh_get_fail_alloc(char *buf, const struct kernel_param *kp)
{
	return sprintf(buf, "%d\n", atomic_read(&ip_vs_mh_fail_alloc));
}

static const struct kernel_param_ops ip_vs_mh_fail_alloc_ops = {
	.set = ip_vs_mh_set_fail_alloc,
	.get = ip_vs_mh_get_fail_alloc,
};

module_param_cb(fail_alloc, &ip_vs_mh_fail_alloc_ops, NULL, 0600);
MODULE_PARM_DESC(fail_alloc, "DEBUG: fail the next N table allocations");

static void *ip_vs_mh_alloc(size_t size)
{
	if (atomic_add_unless(&ip_vs_mh_fail_alloc, -1, 0))
		return NULL;
	return ip_vs_mh_kvzalloc(size);
}
#else
static void *ip_vs_mh_alloc(size_t size)
{
	return ip_vs_mh_kvzalloc(size);
}
#endif

/**
 * ip_vs_mh_fold() - an address as the hash sees it
 * @af: the service's family (decides for real servers too, as in-tree)
 * @addr: the address
 *
 * Return: the IPv4 address, or the XOR of the IPv6 address's words,
 * as a number (host order).
 */
static u32 ip_vs_mh_fold(int af, const union nf_inet_addr *addr)
{
#ifdef CONFIG_IP_VS_IPV6
	if (af == AF_INET6)
		return mx_fold6(ntohl(addr->ip6[0]), ntohl(addr->ip6[1]),
				ntohl(addr->ip6[2]), ntohl(addr->ip6[3]));
#endif
	return ntohl(addr->ip);
}

/**
 * ip_vs_mh_table_free_rcu() - RCU callback freeing a retired table
 * @head: the table's rcu_head
 */
static void ip_vs_mh_table_free_rcu(struct rcu_head *head)
{
	ip_vs_mh_kvfree(container_of(head, struct ip_vs_mh_table, rcu_head));
}

/**
 * ip_vs_mh_table_retire() - drop an unpublished table
 * @t: the table, no longer reachable from the state (may be NULL)
 *
 * The references are dropped at once, as ip_vs_mh and ip_vs_sh do: a real
 * server's memory is freed only from the IPVS trash, which keeps it for
 * IP_VS_DEST_TRASH_PERIOD after its last reference went away (long past
 * any RCU reader of this table), or at netns cleanup, which expects
 * schedulers to have dropped their references synchronously in
 * done_service. Dropping them from the RCU callback instead would break
 * that expectation. The slots and the pointer array are still read by
 * RCU readers, so the memory waits for a grace period.
 */
static void ip_vs_mh_table_retire(struct ip_vs_mh_table *t)
{
	u32 i;

	if (!t)
		return;
	for (i = 0; i < t->num_dests; i++)
		ip_vs_dest_put(t->dests[i]);
	call_rcu(&t->rcu_head, ip_vs_mh_table_free_rcu);
}

/**
 * ip_vs_mh_rebuild() - build a new table from the real servers and publish it
 * @s: the service's state
 * @svc: the service; its list and weights are stable (__ip_vs_mutex)
 *
 * On failure the published table is left as it was: flows keep their
 * real servers, except that one IPVS has since deleted is refused by
 * ip_vs_mh_is_unavailable() (IPVS ignores del_dest's error).
 *
 * Return: 0, -EINVAL when there are more real servers than slots (as
 * in-tree), or -ENOMEM.
 */
static int ip_vs_mh_rebuild(struct ip_vs_mh_state *s,
			    struct ip_vs_service *svc)
{
	const struct mx_params *p = &ip_vs_mh_params;
	struct ip_vs_mh_table *t, *old;
	struct mx_dest_setup *ds = NULL;
	u32 *folds = NULL, *ports = NULL, *weights = NULL;
	struct ip_vs_dest *dest;
	size_t slots_size;
	u32 n = 0, i;
	int weight;

	list_for_each_entry(dest, &svc->destinations, n_list)
		n++;
	if (n > p->m || n > MX_MAX_DESTS)
		return -EINVAL;

	slots_size = ALIGN(p->m * sizeof(mx_slot_t), sizeof(void *));
	t = ip_vs_mh_alloc(sizeof(*t) + slots_size +
			   n * sizeof(struct ip_vs_dest *));
	if (!t)
		return -ENOMEM;
	t->num_dests = n;
	t->dests = (struct ip_vs_dest **)((u8 *)t->slots + slots_size);

	if (n) {
		ds = ip_vs_mh_alloc(n * (sizeof(*ds) + 3 * sizeof(u32)));
		if (!ds) {
			ip_vs_mh_kvfree(t);
			return -ENOMEM;
		}
		folds = (u32 *)(ds + n);
		ports = folds + n;
		weights = ports + n;
	}

	i = 0;
	list_for_each_entry(dest, &svc->destinations, n_list) {
		t->dests[i] = dest;
		/* The real server's own port is always hashed. */
		folds[i] = ip_vs_mh_fold(svc->af, &dest->addr);
		ports[i] = ntohs(dest->port);
		/* Backport: the live weight; 0 keeps the list position only. */
		weight = atomic_read(&dest->weight);
		weights[i] = weight > 0 ? weight : 0;
		i++;
	}

	if (mx_build_table(p, n, folds, ports, weights, ds, t->slots)) {
		ip_vs_mh_kvfree(ds);
		ip_vs_mh_kvfree(t);
		return -EINVAL;
	}
	ip_vs_mh_kvfree(ds);

	for (i = 0; i < n; i++)
		ip_vs_dest_hold(t->dests[i]);

	/* Updates are serialized by __ip_vs_mutex, held by every caller. */
	old = rcu_dereference_protected(s->table, 1);
	rcu_assign_pointer(s->table, t);
	ip_vs_mh_table_retire(old);

	IP_VS_DBG_BUF(6, "MH: rebuilt lookup table of %s:%u (%u dests)\n",
		      IP_VS_DBG_ADDR(svc->af, &svc->addr), ntohs(svc->port), n);
	return 0;
}

static int ip_vs_mh_init_svc(struct ip_vs_service *svc)
{
	struct ip_vs_mh_state *s;
	int ret;

	s = kzalloc(sizeof(*s), IP_VS_MH_GFP);
	if (!s)
		return -ENOMEM;
	s->svc = svc;
	s->net = ip_vs_mh_svc_net(svc);

	ret = ip_vs_mh_rebuild(s, svc);
	if (ret) {
		kfree(s);
		return ret;
	}

	svc->sched_data = s;
	mutex_lock(&ip_vs_mh_services_lock);
	list_add_tail_rcu(&s->list, &ip_vs_mh_services);
	mutex_unlock(&ip_vs_mh_services_lock);
	return 0;
}

static void ip_vs_mh_done_svc(struct ip_vs_service *svc)
{
	struct ip_vs_mh_state *s = svc->sched_data;

	mutex_lock(&ip_vs_mh_services_lock);
	list_del_rcu(&s->list);
	mutex_unlock(&ip_vs_mh_services_lock);

	/* Readers may still hold s and its table until a grace period. */
	ip_vs_mh_table_retire(rcu_dereference_protected(s->table, 1));
	kfree_rcu(s, rcu_head);
}

static int ip_vs_mh_dest_changed(struct ip_vs_service *svc,
				 struct ip_vs_dest *dest)
{
	return ip_vs_mh_rebuild(svc->sched_data, svc);
}

/* The client's port, or 0 for protocols without ports. */
static __be16 ip_vs_mh_get_port(const struct sk_buff *skb,
				struct ip_vs_iphdr *iph)
{
	__be16 _ports[2], *ports;

	/* ICMP errors quote at least 8 bytes: the ports of all three. */
	switch (iph->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		ports = skb_header_pointer(skb, iph->len, sizeof(_ports),
					   &_ports);
		if (unlikely(!ports))
			return 0;
#if IP_VS_MH_HAVE_IPH_INVERSE
		if (unlikely(ip_vs_iph_inverse(iph)))
			return ports[1];
#endif
		return ports[0];
	default:
		return 0;
	}
}

static const union nf_inet_addr *ip_vs_mh_client(struct ip_vs_iphdr *iph)
{
#if IP_VS_MH_HAVE_IPH_INVERSE
	if (ip_vs_iph_inverse(iph))
		return &iph->daddr;
#endif
	return &iph->saddr;
}

/*
 * Weight <= 0 or overloaded, as the seed; and deleted (no longer available,
 * see compat.h), for a table kept by a failed rebuild.
 */
static bool ip_vs_mh_is_unavailable(struct ip_vs_dest *dest)
{
	return !ip_vs_mh_dest_available(dest) ||
	       atomic_read(&dest->weight) <= 0 ||
	       READ_ONCE(dest->flags) & IP_VS_DEST_F_OVERLOAD;
}

/* Called under rcu_read_lock() by the IPVS core. */
static struct ip_vs_dest *
ip_vs_mh_schedule(struct ip_vs_service *svc, const struct sk_buff *skb,
		  struct ip_vs_iphdr *iph)
{
	const union nf_inet_addr *addr = ip_vs_mh_client(iph);
	struct ip_vs_mh_state *s = svc->sched_data;
	struct ip_vs_dest *dest = NULL;
	struct ip_vs_mh_table *t;
	u32 port = 0;
	u32 d;

	if (ip_vs_mh_hash_port)
		port = ntohs(ip_vs_mh_get_port(skb, iph));

	t = rcu_dereference(s->table);
	d = t->slots[mx_slot(&ip_vs_mh_params, ip_vs_mh_fold(svc->af, addr),
			     port)];
	if (d != MX_SLOT_EMPTY)
		dest = t->dests[d];

	/* No fallback: an unavailable real server means no destination. */
	if (!dest || ip_vs_mh_is_unavailable(dest)) {
		ip_vs_scheduler_err(svc, "no destination available");
		return NULL;
	}

	IP_VS_DBG_BUF(6, "MH: source IP address %s:%u --> server %s:%u\n",
		      IP_VS_DBG_ADDR(svc->af, addr), port,
		      IP_VS_DBG_ADDR(dest->af, &dest->addr),
		      ntohs(dest->port));
	return dest;
}

static struct ip_vs_scheduler ip_vs_mh_scheduler = {
	.name =			"mh",
	.refcnt =		ATOMIC_INIT(0),
	.module =		THIS_MODULE,
	.n_list =		LIST_HEAD_INIT(ip_vs_mh_scheduler.n_list),
	.init_service =		ip_vs_mh_init_svc,
	.done_service =		ip_vs_mh_done_svc,
	.add_dest =		ip_vs_mh_dest_changed,
	.del_dest =		ip_vs_mh_dest_changed,
	.upd_dest =		ip_vs_mh_dest_changed,
	.schedule =		ip_vs_mh_schedule,
};

static int __init ip_vs_mh_init(void)
{
	int ret;

	/* The parameter's set() already refused bad values; be sure. */
	if (mx_params_init(&ip_vs_mh_params, table_size, BITS_PER_LONG)) {
		pr_err("mh: invalid table_size=%u\n", table_size);
		return -EINVAL;
	}
	if (ip_vs_mh_key_bad) {
		memzero_explicit(ip_vs_mh_key, sizeof(ip_vs_mh_key));
		pr_err("mh: invalid hash_key: must be %d hex digits\n",
		       2 * MX_KEY_SIZE);
		return -EINVAL;
	}
	if (!ip_vs_mh_selftest())
		return -ENOTRECOVERABLE;
	/* The in-tree module hashes the CPU-order bytes of its input. */
	ip_vs_mh_params.byte_order = MX_HOST_BIG_ENDIAN ? MX_BIG_ENDIAN :
							 MX_LITTLE_ENDIAN;
	if (ip_vs_mh_keyed) {
		mx_params_set_key(&ip_vs_mh_params, ip_vs_mh_key);
		memzero_explicit(ip_vs_mh_key, sizeof(ip_vs_mh_key));
		/* For the dump: tells keys apart without showing them. */
		ip_vs_mh_key_id =
			mx_hsiphash64_u32(0, ip_vs_mh_params.key64[MX_H1][0],
					  ip_vs_mh_params.key64[MX_H1][1]);
	}

	ip_vs_mh_debugfs_init();
	ret = register_ip_vs_scheduler(&ip_vs_mh_scheduler);
	if (ret)
		ip_vs_mh_debugfs_exit();
	return ret;
}

static void __exit ip_vs_mh_cleanup(void)
{
	unregister_ip_vs_scheduler(&ip_vs_mh_scheduler);
	ip_vs_mh_debugfs_exit();
	/* Wait for ip_vs_mh_table_free_rcu() callbacks before unloading. */
	rcu_barrier();
}

module_init(ip_vs_mh_init);
module_exit(ip_vs_mh_cleanup);
MODULE_DESCRIPTION("Maglev hashing IPVS scheduler (backport semantics, maglevx core)");
MODULE_LICENSE("GPL v2");
MODULE_VERSION(IP_VS_MH_VERSION);
MODULE_AUTHOR("Inju Song <inju.song@navercorp.com>");
