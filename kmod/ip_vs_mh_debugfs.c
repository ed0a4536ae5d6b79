// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/debug/ip_vs_mh/tables: every mh service's parameters, real
 * servers and lookup table, one record per service, so that a live
 * director can be compared with maglevx.
 * The format is documented in README.md ("The table dump"); bump
 * IP_VS_MH_DUMP_VERSION when it changes.
 */

#define KMSG_COMPONENT "IPVS"
#define pr_fmt(fmt) KMSG_COMPONENT ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/seq_file.h>

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
#if IP_VS_MH_HAVE_SVC_IPVS
	seq_printf(m, " netns %u", svc->ipvs->net->ns.inum);
#endif
	seq_putc(m, '\n');
}

static void ip_vs_mh_show_table(struct seq_file *m, struct ip_vs_mh_state *s)
{
	const struct mx_params *p = &ip_vs_mh_params;
	struct ip_vs_mh_table *t;
	struct ip_vs_dest *dest;
	u32 i;

	ip_vs_mh_show_service(m, s->svc);
	seq_printf(m, "params table_size %u tab_bits %u word_size %u hash_port %d\n",
		   p->m, p->tab_bits, p->word_size, ip_vs_mh_hash_port ? 1 : 0);

	rcu_read_lock();
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
	rcu_read_unlock();
	seq_puts(m, "\nend\n");
}

static int ip_vs_mh_tables_show(struct seq_file *m, void *v)
{
	struct ip_vs_mh_state *s;

	seq_printf(m, "version %d\n", IP_VS_MH_DUMP_VERSION);
	mutex_lock(&ip_vs_mh_services_lock);
	list_for_each_entry(s, &ip_vs_mh_services, list)
		ip_vs_mh_show_table(m, s);
	mutex_unlock(&ip_vs_mh_services_lock);
	return 0;
}

static int ip_vs_mh_tables_open(struct inode *inode, struct file *file)
{
	return single_open(file, ip_vs_mh_tables_show, inode->i_private);
}

static const struct file_operations ip_vs_mh_tables_fops = {
	.owner		= THIS_MODULE,
	.open		= ip_vs_mh_tables_open,
	.read		= seq_read,
	.llseek		= seq_lseek,
	.release	= single_release,
};

/* Like all debugfs users, the scheduler works without it. */
void ip_vs_mh_debugfs_init(void)
{
	ip_vs_mh_debugfs_dir = debugfs_create_dir("ip_vs_mh", NULL);
	debugfs_create_file("tables", 0444, ip_vs_mh_debugfs_dir, NULL,
			    &ip_vs_mh_tables_fops);
}

void ip_vs_mh_debugfs_exit(void)
{
	debugfs_remove_recursive(ip_vs_mh_debugfs_dir);
	ip_vs_mh_debugfs_dir = NULL;
}
