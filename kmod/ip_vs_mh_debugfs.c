// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/debug/ip_vs_mh/tables: every mh service's parameters, real
 * servers and lookup table, one record per service, so that a live
 * director can be compared with maglevx.
 * The format is documented in README.md ("The table dump"); bump
 * IP_VS_MH_DUMP_VERSION when it changes incompatibly (new key-value pairs
 * on the params line are not: readers ignore keys they do not know).
 *
 * Root only (0400), and a reader sees only the services of its own network
 * namespace (the one it had when it opened the file). The file is a
 * seq_file iterator over the service list, walked under RCU: one record per
 * ->show(), so a reader never blocks service setup or teardown, and a big
 * table costs memory only for one record at a time.
 */

#define KMSG_COMPONENT "IPVS"
#define pr_fmt(fmt) KMSG_COMPONENT ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/nsproxy.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <net/net_namespace.h>

#include <net/ip_vs.h>

#include "compat.h"
#include "ip_vs_mh.h"

#define IP_VS_MH_DUMP_VERSION 1

static struct dentry *ip_vs_mh_debugfs_dir;

static void ip_vs_mh_show_addr(struct seq_file *m, int af,
			       const union nf_inet_addr *addr, __be16 port)
{
#ifdef CONFIG_IP_VS_IPV6
	if (af == AF_INET6) {
		seq_printf(m, "[%pI6c]:%u", &addr->in6, ntohs(port));
		return;
	}
#endif
	seq_printf(m, "%pI4:%u", &addr->ip, ntohs(port));
}

static void ip_vs_mh_show_service(struct seq_file *m,
				  struct ip_vs_service *svc)
{
	seq_puts(m, "service ");
	if (svc->fwmark) {
		seq_printf(m, "FWM %u", svc->fwmark);
	} else {
		switch (svc->protocol) {
		case IPPROTO_TCP:
			seq_puts(m, "TCP ");
			break;
		case IPPROTO_UDP:
			seq_puts(m, "UDP ");
			break;
		case IPPROTO_SCTP:
			seq_puts(m, "SCTP ");
			break;
		default:
			seq_printf(m, "%u ", svc->protocol);
			break;
		}
		ip_vs_mh_show_addr(m, svc->af, &svc->addr, svc->port);
	}
	seq_printf(m, " af %s", svc->af == AF_INET6 ? "inet6" : "inet");
	/* The reader's namespace: the only one whose services it sees. */
	seq_printf(m, " netns %u", ((struct net *)m->private)->ns.inum);
	seq_putc(m, '\n');
}

/* Called under rcu_read_lock() (from ->start()). */
static void ip_vs_mh_show_table(struct seq_file *m, struct ip_vs_mh_state *s)
{
	const struct mx_params *p = &ip_vs_mh_params;
	struct ip_vs_mh_table *t;
	struct ip_vs_dest *dest;
	u32 i;

	ip_vs_mh_show_service(m, s->svc);
	seq_printf(m, "params table_size %u tab_bits %u word_size %u hash_port %d byte_order %s",
		   p->m, p->tab_bits, p->word_size, ip_vs_mh_hash_port ? 1 : 0,
		   p->byte_order == MX_BIG_ENDIAN ? "big" : "little");
	if (ip_vs_mh_keyed)
		seq_printf(m, " hash_key %08x\n", ip_vs_mh_key_id);
	else
		seq_puts(m, " hash_key kernel\n");

	t = rcu_dereference(s->table);
	seq_printf(m, "dests %u\n", t->num_dests);
	for (i = 0; i < t->num_dests; i++) {
		dest = t->dests[i];
		seq_printf(m, "dest %u ", i);
		ip_vs_mh_show_addr(m, dest->af, &dest->addr, dest->port);
		seq_printf(m, " weight %d overload %d\n",
			   atomic_read(&dest->weight),
			   dest->flags & IP_VS_DEST_F_OVERLOAD ? 1 : 0);
	}
	seq_puts(m, "table");
	for (i = 0; i < p->m; i++) {
		if (t->slots[i] == MX_SLOT_EMPTY)
			seq_puts(m, " -");
		else
			seq_put_decimal_ull(m, " ", t->slots[i]);
	}
	seq_puts(m, "\nend\n");
}

/* The reader's services, from @s on (NULL: from the list head). */
static struct ip_vs_mh_state *ip_vs_mh_next_state(struct seq_file *m,
						  struct ip_vs_mh_state *s)
{
	const struct net *net = m->private;

	if (!s)
		s = list_entry(&ip_vs_mh_services, struct ip_vs_mh_state, list);
	list_for_each_entry_continue_rcu(s, &ip_vs_mh_services, list) {
		if (s->net == net)
			return s;
	}
	return NULL;
}

/* Position 0 is the version line, position i + 1 the reader's i-th service. */
static void *ip_vs_mh_seq_start(struct seq_file *m, loff_t *pos)
	__acquires(RCU)
{
	struct ip_vs_mh_state *s = NULL;
	loff_t i;

	rcu_read_lock();
	if (*pos == 0)
		return SEQ_START_TOKEN;
	for (i = 0; i < *pos; i++) {
		s = ip_vs_mh_next_state(m, s);
		if (!s)
			return NULL;
	}
	return s;
}

static void *ip_vs_mh_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	++*pos;
	return ip_vs_mh_next_state(m, v == SEQ_START_TOKEN ? NULL : v);
}

static void ip_vs_mh_seq_stop(struct seq_file *m, void *v)
	__releases(RCU)
{
	rcu_read_unlock();
}

static int ip_vs_mh_seq_show(struct seq_file *m, void *v)
{
	if (v == SEQ_START_TOKEN)
		seq_printf(m, "version %d\n", IP_VS_MH_DUMP_VERSION);
	else
		ip_vs_mh_show_table(m, v);
	return 0;
}

static const struct seq_operations ip_vs_mh_tables_sops = {
	.start	= ip_vs_mh_seq_start,
	.next	= ip_vs_mh_seq_next,
	.stop	= ip_vs_mh_seq_stop,
	.show	= ip_vs_mh_seq_show,
};

/* The reader's network namespace, held while the file is open. */
static int ip_vs_mh_tables_open(struct inode *inode, struct file *file)
{
	int ret = seq_open(file, &ip_vs_mh_tables_sops);

	if (ret)
		return ret;
	((struct seq_file *)file->private_data)->private =
		get_net(current->nsproxy->net_ns);
	return 0;
}

static int ip_vs_mh_tables_release(struct inode *inode, struct file *file)
{
	put_net(((struct seq_file *)file->private_data)->private);
	return seq_release(inode, file);
}

static const struct file_operations ip_vs_mh_tables_fops = {
	.owner		= THIS_MODULE,
	.open		= ip_vs_mh_tables_open,
	.read		= seq_read,
	.llseek		= seq_lseek,
	.release	= ip_vs_mh_tables_release,
};

/* Like all debugfs users, the scheduler works without it. */
void ip_vs_mh_debugfs_init(void)
{
	ip_vs_mh_debugfs_dir = debugfs_create_dir("ip_vs_mh", NULL);
	debugfs_create_file("tables", 0400, ip_vs_mh_debugfs_dir, NULL,
			    &ip_vs_mh_tables_fops);
}

void ip_vs_mh_debugfs_exit(void)
{
	debugfs_remove_recursive(ip_vs_mh_debugfs_dir);
	ip_vs_mh_debugfs_dir = NULL;
}
