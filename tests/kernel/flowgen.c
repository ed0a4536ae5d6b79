/*
 * flowgen - push one new connection per flow through the guest's IPVS and
 * report what happened, fast enough for tens of thousands of flows under TCG.
 *
 * Usage: flowgen FLOWS_FILE
 *   FLOWS_FILE: one flow per line, "proto saddr sport daddr dport"
 *   (proto "tcp" or "udp"; IPv4 or bare IPv6 addresses).
 *
 * Each flow binds a fresh socket to saddr:sport (IP_FREEBIND, so any address
 * routed as local works) and sends one packet to daddr:dport: a non-blocking
 * connect() for TCP, a one-byte sendto() for UDP. IPVS schedules the packet in
 * LOCAL_OUT. When it finds no destination it drops the packet: sendto() fails
 * with EPERM for UDP, and for TCP IPVS answers with ICMP port-unreachable, so
 * the socket's SO_ERROR becomes ECONNREFUSED.
 *
 * Output (stdout):
 *   "S <status>"  one character per flow in input order:
 *                 s = sent, h = sent, then EHOSTUNREACH/ENETUNREACH (IPVS
 *                 scheduled it but the real server has no route: expected,
 *                 real servers are deliberately unroutable in the guest),
 *                 r = ECONNREFUSED, p = EPERM, e = other error
 *                 (followed by "E <index> <where> <errno>" lines for 'e')
 *   "C <line>"    every /proc/net/ip_vs_conn line whose client (proto, addr,
 *                 port) is one of this run's flows, read right after sending,
 *                 so entries of earlier runs in the same boot are skipped.
 *   "P <line>"    every line with client port 0: persistence templates (any
 *                 protocol, "IP" for fwmark templates), including those of
 *                 earlier runs in the same network namespace.
 *   "T <flows> <microseconds>" timing of the send loop.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct flow {
	int tcp;
	int af;
	unsigned char saddr[16];
	unsigned char daddr[16];
	uint16_t sport, dport;
	int fd;
	char status;
};

/* Open-addressing set of (tcp, af, saddr, sport) -> flow index. */
static int *slots;
static size_t nslots;

static uint64_t key_hash(int tcp, int af, const unsigned char *a, uint16_t port)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(tcp * 2 + (af == AF_INET6));
	int n = af == AF_INET6 ? 16 : 4;
	for (int i = 0; i < n; i++)
		h = (h ^ a[i]) * 1099511628211ULL;
	h = (h ^ port) * 1099511628211ULL;
	return h;
}

static int same(const struct flow *f, int tcp, int af, const unsigned char *a, uint16_t port)
{
	return f->tcp == tcp && f->af == af && f->sport == port &&
	       memcmp(f->saddr, a, af == AF_INET6 ? 16 : 4) == 0;
}

static int parse_addr(const char *s, int *af, unsigned char *out)
{
	if (inet_pton(AF_INET, s, out) == 1) {
		*af = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out) == 1) {
		*af = AF_INET6;
		return 0;
	}
	return -1;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void fill_sa(struct sockaddr_storage *ss, socklen_t *len, int af,
		    const unsigned char *a, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		memcpy(&s->sin_addr, a, 4);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		memcpy(&s->sin6_addr, a, 16);
		*len = sizeof(*s);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: flowgen FLOWS_FILE\n");
		return 2;
	}
	FILE *in = fopen(argv[1], "r");
	if (!in) {
		perror("flows");
		return 2;
	}
	size_t cap = 1024, n = 0;
	struct flow *flows = malloc(cap * sizeof(*flows));
	char proto[8], sa[64], da[64];
	unsigned sp, dp;
	while (fscanf(in, "%7s %63s %u %63s %u", proto, sa, &sp, da, &dp) == 5) {
		if (n == cap)
			flows = realloc(flows, (cap *= 2) * sizeof(*flows));
		struct flow *f = &flows[n];
		memset(f, 0, sizeof(*f));
		int daf;
		f->tcp = strcmp(proto, "tcp") == 0;
		if (parse_addr(sa, &f->af, f->saddr) || parse_addr(da, &daf, f->daddr) ||
		    daf != f->af) {
			fprintf(stderr, "bad flow line %zu\n", n + 1);
			return 2;
		}
		f->sport = sp;
		f->dport = dp;
		f->fd = -1;
		n++;
	}
	fclose(in);

	struct rlimit rl = { n + 64, n + 64 };
	if (setrlimit(RLIMIT_NOFILE, &rl))
		perror("setrlimit");

	nslots = 1;
	while (nslots < 2 * n + 2)
		nslots <<= 1;
	slots = malloc(nslots * sizeof(*slots));
	memset(slots, 0xff, nslots * sizeof(*slots));
	for (size_t i = 0; i < n; i++) {
		struct flow *f = &flows[i];
		size_t h = key_hash(f->tcp, f->af, f->saddr, f->sport) & (nslots - 1);
		while (slots[h] >= 0)
			h = (h + 1) & (nslots - 1);
		slots[h] = (int)i;
	}

	double t0 = now_us();
	int one = 1;
	for (size_t i = 0; i < n; i++) {
		struct flow *f = &flows[i];
		struct sockaddr_storage src, dst;
		socklen_t slen, dlen;
		fill_sa(&src, &slen, f->af, f->saddr, f->sport);
		fill_sa(&dst, &dlen, f->af, f->daddr, f->dport);
		int fd = socket(f->af, (f->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			printf("E %zu socket %d\n", i, errno);
			f->status = 'e';
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, slen)) {
			printf("E %zu bind %d\n", i, errno);
			f->status = 'e';
			close(fd);
			continue;
		}
		if (f->tcp) {
			int r = connect(fd, (struct sockaddr *)&dst, dlen);
			if (r == 0 || errno == EINPROGRESS) {
				/*
				 * IPVS answers a SYN it cannot schedule with ICMP
				 * port-unreachable, delivered while connect() still
				 * owns the socket: TCP keeps it as a soft error and
				 * retransmits the SYN a second later - which IPVS then
				 * schedules anew (through a persistence template made
				 * meanwhile, say). Read the error now and close such a
				 * socket at once, so each flow is one SYN.
				 */
				int err = 0;
				socklen_t el = sizeof(err);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err == 0) {
					f->status = 's';
					f->fd = fd; /* SO_ERROR is read after the loop */
					continue;
				}
				f->status = err == ECONNREFUSED ? 'r' :
					    err == EHOSTUNREACH || err == ENETUNREACH ? 'h' :
					    err == EPERM ? 'p' : 'e';
				if (f->status == 'e')
					printf("E %zu so_error %d\n", i, err);
				close(fd);
				continue;
			}
			f->status = errno == ECONNREFUSED ? 'r' : errno == EPERM ? 'p' : 'e';
			if (f->status == 'e')
				printf("E %zu connect %d\n", i, errno);
		} else {
			char b = 'x';
			ssize_t r = sendto(fd, &b, 1, 0, (struct sockaddr *)&dst, dlen);
			f->status = r == 1 ? 's' : errno == EPERM ? 'p' : errno == ECONNREFUSED ? 'r' : 'e';
			if (f->status == 'e')
				printf("E %zu sendto %d\n", i, errno);
		}
		close(fd);
	}
	double t1 = now_us();

	/* Let loopback deliver the ICMP port-unreachables IPVS sent for refused SYNs. */
	usleep(50000);
	for (size_t i = 0; i < n; i++) {
		struct flow *f = &flows[i];
		if (f->fd < 0)
			continue;
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err == ECONNREFUSED)
			f->status = 'r';
		else if (err == EHOSTUNREACH || err == ENETUNREACH)
			f->status = 'h';
		else if (err == EPERM)
			f->status = 'p';
		else if (err && err != EINPROGRESS) {
			f->status = 'e';
			printf("E %zu so_error %d\n", i, err);
		}
	}

	fputs("S ", stdout);
	for (size_t i = 0; i < n; i++)
		putchar(flows[i].status);
	putchar('\n');

	/* Read the connection table while the TCP sockets still exist. */
	FILE *ct = fopen("/proc/net/ip_vs_conn", "r");
	char line[512];
	if (ct) {
		while (fgets(line, sizeof(line), ct)) {
			char p[8], ca[64];
			unsigned cport;
			if (sscanf(line, "%7s %63s %x", p, ca, &cport) != 3)
				continue;
			if (cport == 0) {
				fputs("P ", stdout);
				fputs(line, stdout);
				continue;
			}
			int tcp = strcmp(p, "TCP") == 0, af;
			unsigned char a[16];
			if (!tcp && strcmp(p, "UDP") != 0)
				continue;
			if (strchr(ca, ':')) {
				if (inet_pton(AF_INET6, ca, a) != 1)
					continue;
				af = AF_INET6;
			} else {
				uint32_t v = htonl((uint32_t)strtoul(ca, NULL, 16));
				memcpy(a, &v, 4);
				af = AF_INET;
			}
			size_t h = key_hash(tcp, af, a, cport) & (nslots - 1);
			for (; slots[h] >= 0; h = (h + 1) & (nslots - 1)) {
				if (same(&flows[slots[h]], tcp, af, a, cport)) {
					fputs("C ", stdout);
					fputs(line, stdout);
					break;
				}
			}
		}
		fclose(ct);
	}
	printf("T %zu %.0f\n", n, t1 - t0);
	for (size_t i = 0; i < n; i++)
		if (flows[i].fd >= 0)
			close(flows[i].fd);
	return 0;
}
