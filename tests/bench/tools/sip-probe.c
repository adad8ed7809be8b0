/*
 * sip-probe: a tiny, precise SIP latency probe for tests/bench/run.sh (Parley
 * against Kamailio).  Taken from the peer benchmark (shared/bench); run.sh
 * builds it with `cc -O2 -Wall -Wextra`.
 *
 * sipp measures response times on its millisecond clock tick, which cannot
 * resolve sub-millisecond loopback latencies.  This probe sends a bounded
 * number of requests at a low fixed rate (alongside the sipp load, or alone)
 * and measures each transaction with CLOCK_MONOTONIC in microseconds.
 *
 * Modes (-M):
 *   options   OPTIONS sip:<domain>  -> 200   (server answers it itself; also
 *             used as the "is the server up?" check with -n 1; run.sh gives
 *             the listener's host:port as <domain>, which both servers take
 *             as their own)
 *   register  REGISTER for <prefix><i> with Contact = this probe -> 200
 *   message   registers <prefix> (Contact = this probe) once, then sends
 *             MESSAGE sip:<prefix>@<domain>; the server looks the user up and
 *             forwards the MESSAGE back to this probe, which answers 200; the
 *             200 travels back through the server.  The measured time is the
 *             full proxied transaction: client -> proxy -> UAS -> proxy -> client.
 *
 * UDP only, no retransmissions (a request without a final response within
 * the wait time counts as lost).  Bounded: at most -n requests, then at most
 * -w ms of waiting.  Output: one line of key=value pairs.  Exit 0 if every
 * request got a 2xx, 1 otherwise, 2 on usage/socket errors.
 *
 * Build: cc -O2 -Wall -Wextra -o sip-probe sip-probe.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int parse_hostport(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *c = strrchr(s, ':');
	if (!c || (size_t)(c - s) >= sizeof(host))
		return -1;
	memcpy(host, s, c - s);
	host[c - s] = 0;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(c + 1));
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Find header "name:" (case-insensitive, at line start); copy every
 * occurrence as full lines into out.  Returns bytes written. */
static size_t copy_headers(const char *msg, const char *name, char *out, size_t outsz)
{
	size_t n = 0, nl = strlen(name);
	const char *p = msg;
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (p[0] == '\r' && p[1] == '\n')
			break; /* end of headers */
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *e = strstr(p, "\r\n");
			if (!e)
				break;
			size_t l = (size_t)(e - p) + 2;
			if (n + l < outsz) {
				memcpy(out + n, p, l);
				n += l;
			}
		}
	}
	out[n] = 0;
	return n;
}

/* value of the first header "name:", trimmed, into out */
static int header_value(const char *msg, const char *name, char *out, size_t outsz)
{
	char buf[2048];
	if (copy_headers(msg, name, buf, sizeof(buf)) == 0)
		return -1;
	const char *v = buf + strlen(name) + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	const char *e = strstr(v, "\r\n");
	size_t l = e ? (size_t)(e - v) : strlen(v);
	if (l >= outsz)
		l = outsz - 1;
	memcpy(out, v, l);
	out[l] = 0;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: sip-probe -t HOST:PORT -b HOST:PORT [-d domain] [-M options|register|message]\n"
		"                 [-r per_second] [-n count] [-w wait_ms] [-u user_prefix]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *target = NULL, *bind_s = NULL, *domain = NULL, *mode = "options";
	const char *prefix = "probe";
	double rate = 100;
	long count = 100, wait_ms = 2000;
	int opt;
	while ((opt = getopt(argc, argv, "t:b:d:M:r:n:w:u:")) != -1) {
		switch (opt) {
		case 't': target = optarg; break;
		case 'b': bind_s = optarg; break;
		case 'd': domain = optarg; break;
		case 'M': mode = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 'n': count = atol(optarg); break;
		case 'w': wait_ms = atol(optarg); break;
		case 'u': prefix = optarg; break;
		default: usage();
		}
	}
	if (!target || !bind_s || rate <= 0 || count <= 0 || count > 10000000)
		usage();
	int m_opt = !strcmp(mode, "options"), m_reg = !strcmp(mode, "register"),
	    m_msg = !strcmp(mode, "message");
	if (!m_opt && !m_reg && !m_msg)
		usage();
	if (!domain)
		domain = target;

	struct sockaddr_in dst, me;
	if (parse_hostport(target, &dst) || parse_hostport(bind_s, &me))
		usage();
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0) {
		perror("bind");
		return 2;
	}
	int rcv = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));

	int64_t *sent_at = calloc(count, sizeof(int64_t));
	int64_t *rtt = calloc(count, sizeof(int64_t));
	unsigned char *done = calloc(count, 1);
	if (!sent_at || !rtt || !done)
		return 2;
	long n_ok = 0, n_err = 0, n_answered = 0;
	char buf[65536], out[65536];
	const char *lip = bind_s; /* host:port as written */
	int pid = (int)getpid();

	/* message mode: register <prefix> with our own address as Contact */
	if (m_msg) {
		int ok = 0;
		for (int attempt = 0; attempt < 3 && !ok; attempt++) {
			int l = snprintf(out, sizeof(out),
				"REGISTER sip:%s SIP/2.0\r\n"
				"Via: SIP/2.0/UDP %s;branch=z9hG4bK-pr%d-r%d;rport\r\n"
				"Max-Forwards: 70\r\n"
				"From: <sip:%s@%s>;tag=pr%d\r\n"
				"To: <sip:%s@%s>\r\n"
				"Call-ID: probe-reg-%d@%s\r\n"
				"CSeq: %d REGISTER\r\n"
				"Contact: <sip:%s@%s>\r\n"
				"Expires: 600\r\n"
				"Content-Length: 0\r\n\r\n",
				domain, lip, pid, attempt, prefix, domain, pid, prefix, domain,
				pid, lip, attempt + 1, prefix, lip);
			sendto(fd, out, l, 0, (struct sockaddr *)&dst, sizeof(dst));
			int64_t deadline = now_ns() + 1000000000LL;
			while (!ok && now_ns() < deadline) {
				struct pollfd p = {fd, POLLIN, 0};
				if (poll(&p, 1, 100) <= 0)
					continue;
				ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);
				if (r <= 0)
					continue;
				buf[r] = 0;
				if (!strncmp(buf, "SIP/2.0 2", 9))
					ok = 1;
			}
		}
		if (!ok) {
			printf("mode=message error=register_failed\n");
			return 1;
		}
	}

	int64_t interval = (int64_t)(1e9 / rate);
	int64_t t0 = now_ns();
	long next = 0;
	int64_t end_wait = 0;
	for (;;) {
		int64_t t = now_ns();
		if (next < count && t >= t0 + next * interval) {
			long i = next++;
			int l;
			if (m_opt) {
				l = snprintf(out, sizeof(out),
					"OPTIONS sip:%s SIP/2.0\r\n"
					"Via: SIP/2.0/UDP %s;branch=z9hG4bK-pr%d-%ld;rport\r\n"
					"Max-Forwards: 70\r\n"
					"From: <sip:probe@%s>;tag=pr%d-%ld\r\n"
					"To: <sip:%s>\r\n"
					"Call-ID: probe-%d-%ld@%s\r\n"
					"CSeq: 1 OPTIONS\r\n"
					"Content-Length: 0\r\n\r\n",
					domain, lip, pid, i, domain, pid, i, domain, pid, i, lip);
			} else if (m_reg) {
				l = snprintf(out, sizeof(out),
					"REGISTER sip:%s SIP/2.0\r\n"
					"Via: SIP/2.0/UDP %s;branch=z9hG4bK-pr%d-%ld;rport\r\n"
					"Max-Forwards: 70\r\n"
					"From: <sip:%s%ld@%s>;tag=pr%d-%ld\r\n"
					"To: <sip:%s%ld@%s>\r\n"
					"Call-ID: probe-%d-%ld@%s\r\n"
					"CSeq: 1 REGISTER\r\n"
					"Contact: <sip:%s%ld@%s>\r\n"
					"Expires: 600\r\n"
					"Content-Length: 0\r\n\r\n",
					domain, lip, pid, i, prefix, i, domain, pid, i, prefix, i,
					domain, pid, i, lip, prefix, i, lip);
			} else {
				static const char body[] = "latency probe";
				l = snprintf(out, sizeof(out),
					"MESSAGE sip:%s@%s SIP/2.0\r\n"
					"Via: SIP/2.0/UDP %s;branch=z9hG4bK-pr%d-%ld;rport\r\n"
					"Max-Forwards: 70\r\n"
					"From: <sip:probe-sender@%s>;tag=pr%d-%ld\r\n"
					"To: <sip:%s@%s>\r\n"
					"Call-ID: probe-%d-%ld@%s\r\n"
					"CSeq: 1 MESSAGE\r\n"
					"Content-Type: text/plain\r\n"
					"Content-Length: %zu\r\n\r\n%s",
					prefix, domain, lip, pid, i, domain, pid, i, prefix, domain,
					pid, i, lip, sizeof(body) - 1, body);
			}
			sent_at[i] = now_ns();
			sendto(fd, out, l, 0, (struct sockaddr *)&dst, sizeof(dst));
			if (next == count)
				end_wait = now_ns() + wait_ms * 1000000LL;
			continue;
		}
		if (next >= count && (n_answered >= count || t >= end_wait))
			break;
		int64_t until = next < count ? t0 + next * interval : end_wait;
		int to_ms = (int)((until - t) / 1000000LL);
		if (to_ms < 0)
			to_ms = 0;
		struct pollfd p = {fd, POLLIN, 0};
		int pr = poll(&p, 1, to_ms);
		if (pr <= 0)
			continue;
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &fl);
		if (r <= 0)
			continue;
		int64_t tr = now_ns();
		buf[r] = 0;
		if (!strncmp(buf, "SIP/2.0 ", 8)) {
			int code = atoi(buf + 8);
			if (code < 200)
				continue;
			char cid[256];
			if (header_value(buf, "Call-ID", cid, sizeof(cid)) &&
			    header_value(buf, "i", cid, sizeof(cid)))
				continue;
			char *dash = strrchr(cid, '@');
			if (!dash)
				continue;
			*dash = 0;
			dash = strrchr(cid, '-');
			if (!dash || strncmp(cid, "probe-", 6) || !strncmp(cid, "probe-reg", 9))
				continue;
			long i = atol(dash + 1);
			if (i < 0 || i >= count || done[i])
				continue;
			done[i] = 1;
			n_answered++;
			if (code < 300) {
				rtt[n_ok++] = tr - sent_at[i];
			} else {
				n_err++;
			}
		} else if (m_msg && !strncmp(buf, "MESSAGE ", 8)) {
			/* the forwarded MESSAGE: answer 200 back to where it came from */
			char via[8192], fromh[1024], toh[1024], cidh[1024], cseq[256];
			copy_headers(buf, "Via", via, sizeof(via));
			copy_headers(buf, "From", fromh, sizeof(fromh));
			copy_headers(buf, "To", toh, sizeof(toh));
			copy_headers(buf, "Call-ID", cidh, sizeof(cidh));
			copy_headers(buf, "CSeq", cseq, sizeof(cseq));
			char *e = strstr(toh, "\r\n");
			if (e)
				*e = 0;
			int l = snprintf(out, sizeof(out),
				"SIP/2.0 200 OK\r\n%s%s%s;tag=uas%d\r\n%s%sContent-Length: 0\r\n\r\n",
				via, fromh, toh, pid, cidh, cseq);
			sendto(fd, out, l, 0, (struct sockaddr *)&from, fl);
		}
	}

	qsort(rtt, n_ok, sizeof(int64_t), cmp_i64);
	double sum = 0;
	for (long i = 0; i < n_ok; i++)
		sum += rtt[i];
#define PCT(q) (n_ok ? rtt[(long)((q) * (n_ok - 1) + 0.5)] / 1000.0 : -1.0)
	printf("mode=%s sent=%ld ok=%ld err=%ld lost=%ld p50_us=%.0f p90_us=%.0f p99_us=%.0f "
	       "max_us=%.0f mean_us=%.0f\n",
	       mode, next, n_ok, n_err, next - n_answered, PCT(0.50), PCT(0.90), PCT(0.99),
	       PCT(1.0), n_ok ? sum / n_ok / 1000.0 : -1.0);
	return (n_ok == count) ? 0 : 1;
}
