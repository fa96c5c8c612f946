/*
 * ctl_dns.c - `stanzactl dns DOMAIN` and `stanzactl dns tlsa HOST PORT`.
 *
 * The lookup is src/net/resolve.c itself, on a loop of our own that stands
 * in for a shard: same configuration (the dns section), same order, same
 * DNSSEC verdict as the server.
 *
 * Output, one target per line then its addresses indented:
 *
 *   example.org: 2 targets, DNSSEC insecure
 *   1 xmpps.example.org port 5270 direct TLS, DNSSEC secure
 *       2001:db8::1
 *       192.0.2.1
 *   2 xmpp.example.org port 5269 STARTTLS
 *       192.0.2.2
 *
 * "DNSSEC secure" on a target: its SRV record and addresses were all
 * validated, so DANE applies to it (RFC 7673 §3), even when the answer as
 * a whole is not.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>

#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../net/resolve.h"
#include "ctl_dns.h"

struct ctl_dns {
	FILE *out;
	uv_loop_t *loop;
	const char *name;
	int rc;
};

static void print_addr(FILE *out, const struct resolve_addr *a)
{
	char text[INET6_ADDRSTRLEN] = "?";
	if (a->sa.ss_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)&a->sa)->sin6_addr,
			  text, sizeof(text));
	else
		inet_ntop(AF_INET,
			  &((const struct sockaddr_in *)&a->sa)->sin_addr,
			  text, sizeof(text));
	fprintf(out, "    %s\n", text);
}

/* Ends the loop; false (reported) when the lookup failed. */
static bool answered(struct ctl_dns *d, int status)
{
	uv_stop(d->loop);
	if (status != RESOLVE_OK) {
		fprintf(stderr, "stanzactl: %s: %s\n", d->name,
			resolve_strerror(status));
		d->rc = -1;
		return false;
	}
	return true;
}

static void server_done(void *arg, const struct resolve_result *r)
{
	struct ctl_dns *d = arg;
	if (!answered(d, r->status))
		return;
	fprintf(d->out, "%s: %zu target%s, DNSSEC %s\n", d->name,
		r->ntargets, r->ntargets == 1 ? "" : "s",
		r->secure ? "secure" : "insecure");
	for (size_t i = 0; i < r->ntargets; i++) {
		const struct resolve_target *t = &r->targets[i];
		fprintf(d->out, "%zu %s port %u %s%s\n", i + 1, t->host,
			t->port, t->direct_tls ? "direct TLS" : "STARTTLS",
			t->secure ? ", DNSSEC secure" : "");
		for (size_t k = 0; k < t->naddrs; k++)
			print_addr(d->out, &t->addrs[k]);
	}
	d->rc = 0;
}

static void tlsa_done(void *arg, const struct resolve_tlsa_result *r)
{
	struct ctl_dns *d = arg;
	if (!answered(d, r->status))
		return;
	fprintf(d->out, "%s: %zu TLSA record%s, DNSSEC %s\n", d->name,
		r->nrecords, r->nrecords == 1 ? "" : "s",
		r->secure ? "secure" : "insecure");
	for (size_t i = 0; i < r->nrecords; i++) {
		const struct resolve_tlsa_record *t = &r->records[i];
		fprintf(d->out, "%u %u %u ", t->usage, t->selector, t->mtype);
		for (size_t k = 0; k < t->len; k++)
			fprintf(d->out, "%02x", t->data[k]);
		fputc('\n', d->out);
	}
	d->rc = 0;
}

/* A loop that stands in for a shard, for as long as start's request. */
static int run(const struct config *conf, struct ctl_dns *d,
	       void (*start)(struct shard *s, struct ctl_dns *d, void *arg),
	       void *arg)
{
	struct shard *s = xcalloc(1, sizeof(*s));
	uv_loop_init(&s->loop);
	s->loop.data = s;
	snprintf(s->name, sizeof(s->name), "ctl");
	const struct config *saved = server.conf;
	server.conf = conf;
	shard_self = s;
	d->rc = -1;
	d->loop = &s->loop;
	start(s, d, arg);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	resolve_shard_stop(s);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	uv_loop_close(&s->loop);
	shard_self = NULL;
	server.conf = saved;
	free(s);
	return d->rc;
}

static void start_server(struct shard *s, struct ctl_dns *d, void *arg)
{
	resolve_server(s, d->name, server_done, d);
}

int ctl_dns_server(const struct config *conf, const char *domain, FILE *out)
{
	struct ctl_dns d = { .out = out, .name = domain };
	return run(conf, &d, start_server, NULL);
}

static void start_tlsa(struct shard *s, struct ctl_dns *d, void *arg)
{
	resolve_tlsa(s, d->name, *(uint16_t *)arg, tlsa_done, d);
}

int ctl_dns_tlsa(const struct config *conf, const char *host, uint16_t port,
		 FILE *out)
{
	struct ctl_dns d = { .out = out, .name = host };
	return run(conf, &d, start_tlsa, &port);
}
