/*
 * resolve.c - SRV / A / AAAA / TLSA lookups through libunbound; see
 * resolve.h and docs/internals/s2s.md ("Resolver").
 *
 * One libunbound context per shard (shard->resolver), made on the first
 * request on the shard's thread. ub_ctx_async(ctx, 1): libunbound resolves
 * in a thread of its own, started by the first query, rather than a forked
 * process (the default), so the server stays one process. The answers come
 * back through a pipe, ub_fd(), which a uv_poll handle on the shard's loop
 * watches; ub_process() then runs our callbacks on the shard's thread.
 *
 * A request (struct resolve_req) runs its libunbound queries (struct rq)
 * in at most two rounds: the two SRV names, then AAAA and A of every
 * target. Its uv_timer is its deadline; it is also how a request ends:
 * the result is delivered from the timer (never from inside
 * resolve_server), and the request is freed in the timer's close callback.
 *
 * A query that libunbound cannot cancel any more ("already being
 * delivered", ub_cancel's manual page) is kept as an orphan with no
 * request; its late answer, or the context's deletion, frees it. So no
 * answer ever reaches a request that is gone.
 */
#include <arpa/inet.h>
#include <idna.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "dns.h"
#include "resolve.h"

/* SRV records kept from both names, before ordering and the cut to
 * RESOLVE_MAX_TARGETS. */
#define MAX_SRV 32

struct resolver {
	struct shard *shard;
	struct ub_ctx *ctx;
	uv_poll_t poll;
	uint64_t rng;
	struct rq *rqs;           /* every query libunbound holds */
	struct resolve_req *reqs; /* pending requests */
	char *error;              /* set-up failed: requests get EFAIL */
};

enum req_kind { REQ_SERVER, REQ_TLSA };

/* One libunbound query. */
struct rq {
	struct rq *next, **pprev; /* resolver->rqs */
	struct resolver *res;
	struct resolve_req *req;  /* NULL: orphaned (cancel came too late) */
	int async_id;
	int type;
	int target;               /* REQ_SERVER addresses: target index */
	bool direct_tls;          /* REQ_SERVER SRV: the _xmpps- name */
};

struct req_target {
	struct resolve_target pub;
	struct resolve_addr *a6, *a4; /* at most RESOLVE_MAX_ADDRS each */
	size_t n6, n4;
	int same_as; /* -1, or an earlier target of the same host */
	bool insecure; /* an address answer was not validated */
};

struct resolve_req {
	struct resolve_req *next, **pprev; /* resolver->reqs */
	struct resolver *res;
	enum req_kind kind;
	uv_timer_t timer;
	bool done;          /* result known: delivery is due from the timer */
	bool timed_out;
	int status;
	bool secure;
	bool servfail;      /* some answer was SERVFAIL or a resolver error */
	bool srv_secure;    /* both SRV answers were validated */
	unsigned pending;   /* queries not answered yet */
	char *name;         /* the ASCII domain (or TLSA host) */
	union {
		resolve_done_fn *server;
		resolve_tlsa_fn *tlsa;
	} cb;
	void *arg;
	/* REQ_SERVER */
	struct dns_srv srv[MAX_SRV];
	size_t nsrv;
	bool srv_dot;       /* _xmpp-server._tcp said "." */
	struct req_target targets[RESOLVE_MAX_TARGETS];
	size_t ntargets;
	/* REQ_TLSA: the answer, kept for delivery */
	struct ub_result *tlsa;
};

static void poll_cb(uv_poll_t *h, int status, int events);

const char *resolve_strerror(int status)
{
	switch (status) {
	case RESOLVE_OK:
		return "ok";
	case RESOLVE_ENOSERVICE:
		return "the domain offers no XMPP server service (SRV \".\")";
	case RESOLVE_ENOTFOUND:
		return "no address found";
	case RESOLVE_EBOGUS:
		return "DNSSEC validation failed (bogus answer)";
	case RESOLVE_ETIMEDOUT:
		return "DNS lookup timed out";
	case RESOLVE_EFAIL:
		return "DNS resolution failed";
	case RESOLVE_EINVAL:
		return "not a valid DNS name";
	case RESOLVE_ESHUTDOWN:
		return "shutting down";
	default:
		return "unknown resolver error";
	}
}

/* --- the libunbound context --- */

static int ub_check(int rc, const char *what, const char *value,
		    char **error_r)
{
	if (rc == 0)
		return 0;
	size_t n = strlen(what) + strlen(value) + 64;
	*error_r = xmalloc(n);
	snprintf(*error_r, n, "dns: %s '%s': %s", what, value,
		 ub_strerror(rc));
	return -1;
}

/* A context set up from d. Returns it, or NULL with *error_r. */
static struct ub_ctx *ctx_new(const struct dns_conf *d, char **error_r)
{
	struct ub_ctx *ctx = ub_ctx_create();
	if (ctx == NULL) {
		*error_r = xstrdup("dns: cannot create a libunbound context");
		return NULL;
	}
	/* Resolve in a thread, not in a forked process. Forwarders on
	 * loopback (a local resolver; the tests' server) must be allowed:
	 * libunbound refuses to query 127.0.0.1 and ::1 by default. */
	if (ub_check(ub_ctx_async(ctx, 1), "async", "thread", error_r) < 0 ||
	    ub_check(ub_ctx_set_option(ctx, "do-not-query-localhost:", "no"),
		     "option", "do-not-query-localhost", error_r) < 0 ||
	    ub_check(ub_ctx_hosts(ctx, d->hosts_file), "hosts file",
		     d->hosts_file ? d->hosts_file : "/etc/hosts",
		     error_r) < 0)
		goto fail;
	for (size_t i = 0; i < d->nupstreams; i++)
		if (ub_check(ub_ctx_set_fwd(ctx, d->upstreams[i]), "upstream",
			     d->upstreams[i], error_r) < 0)
			goto fail;
	if (d->nupstreams == 0 &&
	    ub_check(ub_ctx_resolvconf(ctx, NULL), "resolv.conf",
		     "/etc/resolv.conf", error_r) < 0)
		goto fail;
	if (d->trust_anchor_file != NULL) {
		/* libunbound reads the file only at the first query; open
		 * it now so a wrong path is reported at start-up. */
		FILE *f = fopen(d->trust_anchor_file, "r");
		if (f == NULL) {
			size_t n = strlen(d->trust_anchor_file) + 64;
			*error_r = xmalloc(n);
			snprintf(*error_r, n, "dns: trust anchor file '%s': "
				 "cannot open", d->trust_anchor_file);
			goto fail;
		}
		fclose(f);
		if (ub_check(ub_ctx_add_ta_file(ctx, d->trust_anchor_file),
			     "trust anchor file", d->trust_anchor_file,
			     error_r) < 0)
			goto fail;
	}
	return ctx;
fail:
	ub_ctx_delete(ctx);
	return NULL;
}

int resolve_check_config(const struct config *conf, char **error_r)
{
	struct ub_ctx *ctx = ctx_new(&conf->dns, error_r);
	if (ctx == NULL)
		return -1;
	ub_ctx_delete(ctx);
	return 0;
}

static struct resolver *resolver_get(struct shard *s)
{
	if (s->resolver != NULL)
		return s->resolver;
	struct resolver *res = xcalloc(1, sizeof(*res));
	res->shard = s;
	res->rng = uv_hrtime() ^ ((uint64_t)(uintptr_t)res << 17) ^ s->id;
	res->ctx = ctx_new(&server.conf->dns, &res->error);
	if (res->ctx != NULL) {
		BUG_ON(uv_poll_init(&s->loop, &res->poll, ub_fd(res->ctx)));
		res->poll.data = res;
		BUG_ON(uv_poll_start(&res->poll, UV_READABLE, poll_cb));
	} else {
		log_errx("%s", res->error);
	}
	s->resolver = res;
	return res;
}

static void rq_unlink(struct rq *q)
{
	*q->pprev = q->next;
	if (q->next != NULL)
		q->next->pprev = q->pprev;
}

static void on_poll_closed(uv_handle_t *h)
{
	struct resolver *res = h->data;
	/* Stops libunbound's thread; no callback runs after this. */
	ub_ctx_delete(res->ctx);
	while (res->rqs != NULL) {
		struct rq *q = res->rqs;
		rq_unlink(q);
		free(q);
	}
	free(res->error);
	free(res);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct resolver *res = h->data;
	int rc = ub_process(res->ctx);
	if (rc != 0)
		log_warnx("dns: %s", ub_strerror(rc));
}

/* --- requests --- */

static void deliver(uv_timer_t *t);
static void on_timeout(uv_timer_t *t);
static void rq_answer(void *arg, int err, struct ub_result *result);

static void cancel_queries(struct resolve_req *r)
{
	struct resolver *res = r->res;
	r->pending = 0;
	if (res == NULL)
		return;
	for (struct rq *q = res->rqs, *next; q != NULL; q = next) {
		next = q->next;
		if (q->req != r)
			continue;
		if (ub_cancel(res->ctx, q->async_id) == 0) {
			rq_unlink(q);
			free(q);
		} else {
			q->req = NULL;
		}
	}
}

/* The result is known: deliver it from the timer, on the next loop
 * iteration at the latest. */
static void finish(struct resolve_req *r, int status)
{
	if (r->done)
		return;
	r->done = true;
	if (r->status == RESOLVE_OK)
		r->status = status;
	cancel_queries(r);
	uv_timer_start(&r->timer, deliver, 0, 0);
}

static void req_free(uv_handle_t *h)
{
	struct resolve_req *r = h->data;
	if (r->tlsa != NULL)
		ub_resolve_free(r->tlsa);
	for (size_t i = 0; i < r->ntargets; i++) {
		free(r->targets[i].pub.host);
		free(r->targets[i].a6);
		free(r->targets[i].a4);
	}
	free(r->name);
	free(r);
}

/* Ends r: off the list, its queries cancelled, freed after its timer has
 * closed. */
static void req_end(struct resolve_req *r)
{
	if (r->pprev != NULL) {
		*r->pprev = r->next;
		if (r->next != NULL)
			r->next->pprev = r->pprev;
		r->pprev = NULL;
	}
	cancel_queries(r);
	uv_close((uv_handle_t *)&r->timer, req_free);
}

void resolve_cancel(struct resolve_req *r)
{
	req_end(r);
}

static struct resolve_req *req_new(struct shard *s, enum req_kind kind,
				   void *arg)
{
	struct resolve_req *r = xcalloc(1, sizeof(*r));
	r->kind = kind;
	r->arg = arg;
	r->secure = true;
	BUG_ON(uv_timer_init(&s->loop, &r->timer));
	r->timer.data = r;
	/* After the shard's stop hook no resolver is made any more. */
	if (s->stopped_hook_ran) {
		finish(r, RESOLVE_ESHUTDOWN);
		return r;
	}
	struct resolver *res = resolver_get(s);
	r->res = res;
	r->next = res->reqs;
	r->pprev = &res->reqs;
	if (res->reqs != NULL)
		res->reqs->pprev = &r->next;
	res->reqs = r;
	if (res->ctx == NULL) {
		finish(r, RESOLVE_EFAIL);
		return r;
	}
	uv_timer_start(&r->timer, on_timeout, server.conf->dns.timeout_ms, 0);
	return r;
}

static void query(struct resolve_req *r, const char *name, int type,
		  int target, bool direct_tls)
{
	struct resolver *res = r->res;
	struct rq *q = xcalloc(1, sizeof(*q));
	q->res = res;
	q->req = r;
	q->type = type;
	q->target = target;
	q->direct_tls = direct_tls;
	int rc = ub_resolve_async(res->ctx, name, type, DNS_CLASS_IN, q,
				  rq_answer, &q->async_id);
	if (rc != 0) {
		log_warnx("dns: %s: %s", name, ub_strerror(rc));
		free(q);
		finish(r, RESOLVE_EFAIL);
		return;
	}
	q->next = res->rqs;
	q->pprev = &res->rqs;
	if (res->rqs != NULL)
		res->rqs->pprev = &q->next;
	res->rqs = q;
	r->pending++;
}

/* --- answers --- */

/* Appends an address (4 or 16 bytes) to t, on t's port. */
static void add_addr(struct req_target *t, const void *bin, size_t len)
{
	struct resolve_addr **v = len == 16 ? &t->a6 : &t->a4;
	size_t *n = len == 16 ? &t->n6 : &t->n4;
	if (*n == RESOLVE_MAX_ADDRS)
		return;
	if (*v == NULL)
		*v = xcalloc(RESOLVE_MAX_ADDRS, sizeof(**v));
	struct resolve_addr *a = &(*v)[(*n)++];
	memset(a, 0, sizeof(*a));
	if (len == 16) {
		struct sockaddr_in6 *sin6 = (void *)&a->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(t->pub.port);
		memcpy(&sin6->sin6_addr, bin, 16);
		a->len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (void *)&a->sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(t->pub.port);
		memcpy(&sin->sin_addr, bin, 4);
		a->len = sizeof(*sin);
	}
}

static void add_addrs(struct req_target *t, const struct ub_result *res)
{
	size_t want = res->qtype == DNS_TYPE_AAAA ? 16 : 4;
	for (size_t i = 0; res->data[i] != NULL; i++)
		if ((size_t)res->len[i] == want)
			add_addr(t, res->data[i], want);
}

static void add_srvs(struct resolve_req *r, const struct ub_result *res,
		     bool direct_tls)
{
	for (size_t i = 0; res->data[i] != NULL; i++) {
		struct dns_srv srv;
		if (dns_srv_parse((const uint8_t *)res->data[i],
				  (size_t)res->len[i], &srv) < 0) {
			log_debug("dns: %s: unusable SRV record skipped",
				  res->qname);
			continue;
		}
		if (strcmp(srv.target, ".") == 0) {
			/* RFC 2782: "decidedly not available", when it is
			 * the only record. */
			if (!direct_tls && res->data[1] == NULL)
				r->srv_dot = true;
			continue;
		}
		if (r->nsrv == MAX_SRV)
			break;
		srv.direct_tls = direct_tls;
		r->srv[r->nsrv++] = srv;
	}
}

static void add_target(struct resolve_req *r, const char *host,
		       uint16_t port, bool direct_tls)
{
	struct req_target *t = &r->targets[r->ntargets];
	t->pub.host = xstrdup(host);
	t->pub.port = port;
	t->pub.direct_tls = direct_tls;
	t->same_as = -1;
	for (size_t i = 0; i < r->ntargets; i++)
		if (strcmp(r->targets[i].pub.host, host) == 0) {
			t->same_as = (int)i;
			break;
		}
	r->ntargets++;
}

/* Both SRV answers are in: pick the targets and ask their addresses. */
static void srv_done(struct resolve_req *r)
{
	/* Only the SRV answers so far: each target adds its own. */
	r->srv_secure = r->secure;
	if (r->nsrv == 0 && r->srv_dot) {
		finish(r, RESOLVE_ENOSERVICE);
		return;
	}
	if (r->nsrv == 0) {
		/* RFC 6120 §3.2.2: the domain itself, on 5269. */
		add_target(r, r->name, RESOLVE_DEFAULT_PORT, false);
	} else {
		dns_srv_order(r->srv, r->nsrv, &r->res->rng);
		for (size_t i = 0; i < r->nsrv && i < RESOLVE_MAX_TARGETS;
		     i++)
			add_target(r, r->srv[i].target, r->srv[i].port,
				   r->srv[i].direct_tls);
	}
	for (size_t i = 0; i < r->ntargets && !r->done; i++) {
		if (r->targets[i].same_as >= 0)
			continue;
		query(r, r->targets[i].pub.host, DNS_TYPE_AAAA, (int)i, false);
		if (!r->done)
			query(r, r->targets[i].pub.host, DNS_TYPE_A, (int)i,
			      false);
	}
}

/* Copies the addresses of targets that share a host, and decides. */
static void addrs_done(struct resolve_req *r)
{
	bool any = false;
	for (size_t i = 0; i < r->ntargets; i++) {
		struct req_target *t = &r->targets[i];
		if (t->same_as >= 0 && t->n6 + t->n4 == 0) {
			const struct req_target *o = &r->targets[t->same_as];
			t->insecure = o->insecure;
			for (size_t k = 0; k < o->n6; k++)
				add_addr(t, &((const struct sockaddr_in6 *)
					      &o->a6[k].sa)->sin6_addr, 16);
			for (size_t k = 0; k < o->n4; k++)
				add_addr(t, &((const struct sockaddr_in *)
					      &o->a4[k].sa)->sin_addr, 4);
		}
		any |= t->n6 + t->n4 > 0;
	}
	finish(r, any ? RESOLVE_OK : r->servfail ? RESOLVE_EFAIL :
			       r->timed_out ? RESOLVE_ETIMEDOUT :
					      RESOLVE_ENOTFOUND);
}

static void server_answer(struct resolve_req *r, struct rq *q,
			  const struct ub_result *res)
{
	if (q->type == DNS_TYPE_SRV) {
		if (res->havedata)
			add_srvs(r, res, q->direct_tls);
		if (r->pending == 0)
			srv_done(r);
	} else {
		if (!res->secure)
			r->targets[q->target].insecure = true;
		if (res->havedata)
			add_addrs(&r->targets[q->target], res);
		if (r->pending == 0)
			addrs_done(r);
	}
}

static void rq_answer(void *arg, int err, struct ub_result *result)
{
	struct rq *q = arg;
	struct resolve_req *r = q->req;
	rq_unlink(q);
	if (r == NULL || r->done) {
		/* Orphaned: its request is gone or decided already. */
		free(q);
		if (result != NULL)
			ub_resolve_free(result);
		return;
	}
	r->pending--;
	if (err != 0 || result == NULL) {
		log_warnx("dns: %s: %s", r->name, ub_strerror(err));
		r->servfail = true;
		r->secure = false;
		if (r->kind == REQ_SERVER && q->type != DNS_TYPE_SRV)
			r->targets[q->target].insecure = true;
	} else if (result->bogus) {
		log_warnx("dns: %s (type %d): DNSSEC: %s", result->qname,
			  result->qtype, result->why_bogus ?
			  result->why_bogus : "bogus");
		free(q);
		ub_resolve_free(result);
		finish(r, RESOLVE_EBOGUS);
		return;
	} else {
		/* RFC 6120 §3.2.1: an SRV lookup that fails is as none;
		 * an address lookup that fails leaves the target out. */
		if (result->rcode == DNS_RCODE_SERVFAIL)
			r->servfail = true;
		r->secure &= result->secure != 0;
	}
	if (r->kind == REQ_TLSA) {
		r->tlsa = result;
		free(q);
		finish(r, err != 0 || result == NULL ||
				  result->rcode == DNS_RCODE_SERVFAIL ?
			  RESOLVE_EFAIL : RESOLVE_OK);
		return;
	}
	if (result != NULL)
		server_answer(r, q, result);
	else if (r->pending == 0)
		(q->type == DNS_TYPE_SRV ? srv_done : addrs_done)(r);
	free(q);
	if (result != NULL)
		ub_resolve_free(result);
}

static void on_timeout(uv_timer_t *t)
{
	struct resolve_req *r = t->data;
	r->timed_out = true;
	/* Addresses that did arrive are used (the targets whose answers
	 * are missing are left out); otherwise the lookup timed out. */
	if (r->kind == REQ_SERVER && r->ntargets > 0)
		addrs_done(r);
	else
		finish(r, RESOLVE_ETIMEDOUT);
}

/* --- delivery --- */

static void deliver_server(struct resolve_req *r)
{
	struct resolve_target targets[RESOLVE_MAX_TARGETS];
	struct resolve_result res = {
		.status = r->status,
		.secure = r->status == RESOLVE_OK && r->secure,
		.targets = targets,
	};
	for (size_t i = 0; r->status == RESOLVE_OK && i < r->ntargets; i++) {
		struct req_target *t = &r->targets[i];
		if (t->n6 + t->n4 == 0)
			continue;
		struct resolve_target *o = &targets[res.ntargets++];
		*o = t->pub;
		o->secure = r->srv_secure && !t->insecure;
		o->naddrs = t->n6 + t->n4;
		o->addrs = xmalloc(o->naddrs * sizeof(*o->addrs));
		if (t->n6 > 0)
			memcpy(o->addrs, t->a6, t->n6 * sizeof(*t->a6));
		if (t->n4 > 0)
			memcpy(o->addrs + t->n6, t->a4,
			       t->n4 * sizeof(*t->a4));
	}
	r->cb.server(r->arg, &res);
	for (size_t i = 0; i < res.ntargets; i++)
		free(targets[i].addrs);
}

static void deliver_tlsa(struct resolve_req *r)
{
	struct resolve_tlsa_record recs[64];
	struct resolve_tlsa_result res = {
		.status = r->status,
		.secure = r->status == RESOLVE_OK && r->secure,
		.records = recs,
	};
	const struct ub_result *u = r->tlsa;
	for (size_t i = 0; r->status == RESOLVE_OK && u != NULL &&
	     u->havedata && u->data[i] != NULL &&
	     res.nrecords < sizeof(recs) / sizeof(recs[0]); i++) {
		struct dns_tlsa t;
		if (dns_tlsa_parse((const uint8_t *)u->data[i],
				   (size_t)u->len[i], &t) < 0)
			continue;
		recs[res.nrecords++] = (struct resolve_tlsa_record){
			t.usage, t.selector, t.mtype, t.data, t.len,
		};
	}
	r->cb.tlsa(r->arg, &res);
}

static void deliver(uv_timer_t *t)
{
	struct resolve_req *r = t->data;
	/* Off the lists first: the callback may start or cancel others. */
	req_end(r);
	if (r->kind == REQ_SERVER)
		deliver_server(r);
	else
		deliver_tlsa(r);
}

/* --- starting --- */

/* The ASCII form of a UTF-8 domain (libidn, IDNA 2003 as the JID
 * nameprep), checked; NULL if unusable. Caller frees. */
static char *ascii_name(const char *domain)
{
	char *out = NULL;
	if (idna_to_ascii_8z(domain, &out, 0) != IDNA_SUCCESS) {
		free(out);
		return NULL;
	}
	size_t len = strlen(out);
	if (len > 0 && out[len - 1] == '.')
		out[len - 1] = '\0';
	if (dns_name_check(out) < 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* domain an IP address (a JID may have one, RFC 7622 §3.2.1)? Then it is
 * the one target, on 5269, with no DNS. */
static bool ip_literal(struct resolve_req *r, const char *domain)
{
	char buf[INET6_ADDRSTRLEN];
	size_t len = strlen(domain);
	const char *p = domain;
	if (len > 2 && domain[0] == '[' && domain[len - 1] == ']') {
		p = buf;
		len -= 2;
		if (len >= sizeof(buf))
			return false;
		memcpy(buf, domain + 1, len);
		buf[len] = '\0';
	}
	unsigned char bin[sizeof(struct in6_addr)];
	size_t alen = inet_pton(AF_INET6, p, bin) == 1 ? 16 :
		      inet_pton(AF_INET, p, bin) == 1 ? 4 : 0;
	if (alen == 0)
		return false;
	add_target(r, domain, RESOLVE_DEFAULT_PORT, false);
	add_addr(&r->targets[0], bin, alen);
	r->secure = false;
	finish(r, RESOLVE_OK);
	return true;
}

struct resolve_req *resolve_server(struct shard *s, const char *domain,
				   resolve_done_fn *cb, void *arg)
{
	struct resolve_req *r = req_new(s, REQ_SERVER, arg);
	r->cb.server = cb;
	if (r->done || ip_literal(r, domain))
		return r;
	r->name = ascii_name(domain);
	if (r->name == NULL) {
		finish(r, RESOLVE_EINVAL);
		return r;
	}
	/* Both SRV names in parallel (XEP-0368 §3); "_xmpps-server._tcp."
	 * adds 19 characters to a name of at most 253. */
	char name[DNS_NAME_TEXT_MAX + 32];
	snprintf(name, sizeof(name), "_xmpps-server._tcp.%s", r->name);
	query(r, name, DNS_TYPE_SRV, -1, true);
	snprintf(name, sizeof(name), "_xmpp-server._tcp.%s", r->name);
	if (!r->done)
		query(r, name, DNS_TYPE_SRV, -1, false);
	return r;
}

struct resolve_req *resolve_tlsa(struct shard *s, const char *host,
				 uint16_t port, resolve_tlsa_fn *cb,
				 void *arg)
{
	struct resolve_req *r = req_new(s, REQ_TLSA, arg);
	r->cb.tlsa = cb;
	if (r->done)
		return r;
	r->name = ascii_name(host);
	if (r->name == NULL) {
		finish(r, RESOLVE_EINVAL);
		return r;
	}
	char name[DNS_NAME_TEXT_MAX + 32];
	snprintf(name, sizeof(name), "_%u._tcp.%s", port, r->name);
	query(r, name, DNS_TYPE_TLSA, -1, false);
	return r;
}

void resolve_shard_stop(struct shard *s)
{
	struct resolver *res = s->resolver;
	if (res == NULL)
		return;
	/* The pending requests are delivered from their timers; from now on
	 * they do not touch the resolver. */
	for (struct resolve_req *r = res->reqs, *next; r != NULL; r = next) {
		next = r->next;
		finish(r, RESOLVE_ESHUTDOWN);
		r->res = NULL;
		r->pprev = NULL;
	}
	res->reqs = NULL;
	s->resolver = NULL;
	if (res->ctx != NULL) {
		uv_close((uv_handle_t *)&res->poll, on_poll_closed);
	} else {
		free(res->error);
		free(res);
	}
}
