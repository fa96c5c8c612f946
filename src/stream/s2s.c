/*
 * s2s.c - server-to-server streams in both directions; see s2s.h.
 *
 * One struct s2s per TCP connection, `out` telling who opened it. An
 * incoming stream authenticates the peer's domain (its certificate through
 * SASL EXTERNAL, else dialback), then its stanzas enter route(). An
 * outgoing stream authenticates our domain to the peer the same way, then
 * carries the stanzas of its route: the (our host, remote domain) pair,
 * kept on the shard the pair hashes to, with the queue of stanzas waiting
 * for the stream and the db:verify requests (XEP-0220 §2.3) that incoming
 * streams on any shard asked it to send.
 *
 * TLS is required in both directions, and dialback only runs over TLS.
 * Stanzas travel in jabber:server on the wire and in jabber:client inside
 * the server (RFC 6120 §4.8.3), so every tree is renamed at the border.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "../auth/sasl_external.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../net/resolve.h"
#include "../net/tls.h"
#include "../router/route.h"
#include "../xml/parser.h"
#include "../xmpp/jid.h"
#include "../xmpp/ns.h"
#include "s2s.h"
#include "stream.h"

#define NS_DIALBACK "jabber:server:dialback"
#define NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"
#define NS_BIDI "urn:xmpp:bidi"
#define NS_BIDI_FEATURE "urn:xmpp:features:bidi"
#define DB_KEY_LEN 64 /* hex of HMAC-SHA256 */
#define MAX_ADDRS 32
/* The peer's stream id keys dialback, so it is kept whole. RFC 6120 §4.7.3
 * sets no length (Prosody's are UUIDs, 36 characters; others are longer);
 * this bounds what a peer can make us store and echo. */
#define PEER_ID_MAX 256

enum s2s_phase {
	S2S_CONNECTING, /* out: TCP (and direct TLS) */
	S2S_TLS,        /* no TLS yet: STARTTLS is all that is allowed */
	S2S_AUTH,       /* TLS up: EXTERNAL or dialback */
	S2S_READY,      /* authenticated: stanzas flow */
};

struct s2s_route;

struct s2s {
	struct conn conn; /* first: the conn callbacks cast back */
	struct xml_stream *xs;
	bool out;
	enum s2s_phase phase;
	size_t host_idx;  /* our domain: conf_find_domain (host or component) */
	char *remote;     /* the peer's domain; NULL until known (in) */
	char id[STREAM_ID_LEN + 1]; /* in: ours */
	char *peer_id;    /* out: the peer's (of its latest header) */
	bool header_sent, reset_pending, discard_rest;
	bool verified;    /* the peer's certificate holds for remote */
	bool sasl_done;   /* out: EXTERNAL succeeded, features follow */
	bool db_offered;  /* out: the peer offered dialback */
	bool features_seen; /* out: post-TLS features arrived */
	bool db_pending;  /* in: a db:result is being verified */
	bool host_known;  /* in: host_idx is the host the peer asked for */
	bool direct_tls;
	bool dane;        /* out: TLS checks the peer against TLSA records */
	unsigned target;  /* out: index in route->targets */
	/* XEP-0288: out: we asked for it, so the peer may send stanzas on
	 * this stream too; in: the peer asked, so once it authenticated the
	 * stream carries our stanzas for its domain as well (attached). */
	bool bidi, bidi_attached;
	struct s2s_route *route; /* out: the route this stream carries */
};

/* A db:verify that an incoming stream asked its route to send. */
struct verify_req {
	struct verify_req *next;
	unsigned shard;   /* of the incoming stream */
	uint64_t conn_id;
	char *id, *key;
};

struct route_addr {
	struct sockaddr_storage sa;
	bool direct_tls;
	unsigned target;  /* index in route->targets */
};

/* What DANE says about a server (an SRV target) of a route. */
enum target_dane {
	DANE_NONE,      /* does not apply: PKIX, then dialback */
	DANE_LOOKUP,    /* secure so far: its TLSA records are to be asked */
	DANE_ON,        /* usable answer: TLS must match its records */
	DANE_FAILED,    /* bogus or failed TLSA lookup: not to be used */
};

struct route_target {
	char *host;
	uint16_t port;
	enum target_dane dane;
	struct resolve_tlsa_record *recs; /* DANE_ON: copies (data too) */
	size_t nrecs;
};

struct s2s_route {
	char *key;        /* "host remote" */
	size_t host_idx;
	char *remote;
	struct shard *shard;
	struct s2s *s;    /* the outgoing stream, or NULL */
	struct resolve_req *rr;
	struct route_addr addrs[MAX_ADDRS];
	size_t naddrs, next_addr;
	struct route_target targets[RESOLVE_MAX_TARGETS];
	size_t ntargets;
	unsigned tlsa_target;        /* whose TLSA records r->rr asks */
	struct stanza **queue;
	size_t nqueue, queue_cap;
	struct verify_req *verifies; /* to send once the stream can */
	struct verify_req *sent;     /* sent, awaiting the answer */
	uv_timer_t timer;            /* set-up deadline */
	const char *why;             /* the last failure, for bounces */
	bool timed_out;
	/* XEP-0288: an incoming bidi stream of the peer that can carry the
	 * stanzas when there is no ready outgoing stream (s). */
	bool bidi;
	unsigned bidi_shard;
	uint64_t bidi_conn;
};

static const struct conn_ops s2s_ops;
static const struct xml_stream_cbs s2s_xml_cbs;
static struct xml_limits xml_limits;
static struct hmap *routes; /* per shard: key -> struct s2s_route */
static void (*receive)(struct stanza *st) = route; /* s2s_set_receiver */
static unsigned char db_hkey[32]; /* XEP-0185: SHA256 of a per-start secret */

static const char *host_of(const struct s2s *s)
{
	return conf_domain_name(server.conf, s->host_idx);
}

/* Log lines name a stream "out HOST -> REMOTE" or "in REMOTE -> HOST",
 * the way its stanzas flow: with several hosts, "to example.org" alone
 * does not say which of ours it was for. */
#define S2S_FMT "s2s %s %s -> %s"
#define S2S_ARGS(s) (s)->out ? "out" : "in", \
		    (s)->out ? local_name(s) : peer_name(s), \
		    (s)->out ? peer_name(s) : local_name(s)

static const char *local_name(const struct s2s *s)
{
	return s->out || s->host_known ? host_of(s) : "?";
}

static const char *peer_name(const struct s2s *s)
{
	return s->remote != NULL ? s->remote : "?";
}

/* ---- dialback keys (XEP-0185) ---- */

/* HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' id), in hex. */
static void db_key(const char *recv, const char *orig, const char *id,
		   char out[DB_KEY_LEN + 1])
{
	unsigned char mac[32];
	unsigned len = 0;
	struct buf b = { 0 };
	buf_printf(&b, "%s %s %s", recv, orig, id);
	HMAC(EVP_sha256(), db_hkey, sizeof(db_hkey), (unsigned char *)b.data,
	     b.len, mac, &len);
	buf_reset(&b);
	for (size_t i = 0; i < sizeof(mac); i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static bool db_key_ok(const char *recv, const char *orig, const char *id,
		      struct str key)
{
	char want[DB_KEY_LEN + 1];
	db_key(recv, orig, id, want);
	return key.len == DB_KEY_LEN &&
	       CRYPTO_memcmp(want, key.p, DB_KEY_LEN) == 0;
}

/* ---- output ---- */

static void write_buf(struct s2s *s, const struct buf *b)
{
	if (conn_write(&s->conn, b->data, b->len) < 0)
		conn_abort(&s->conn);
}

static void write_str(struct s2s *s, const char *str)
{
	if (conn_write_str(&s->conn, str) < 0)
		conn_abort(&s->conn);
}

static void send_header(struct s2s *s)
{
	struct buf b = { 0 };
	buf_append_c(&b, "<?xml version='1.0'?><stream:stream xmlns='" NS_SERVER
			 "' xmlns:stream='" NS_STREAMS
			 "' xmlns:db='" NS_DIALBACK "' from='");
	buf_append_xml_escaped(&b, str_c(host_of(s)), true);
	if (s->remote != NULL) {
		buf_append_c(&b, "' to='");
		buf_append_xml_escaped(&b, str_c(s->remote), true);
	}
	if (!s->out) {
		stream_new_id(s->id);
		buf_printf(&b, "' id='%s", s->id);
	}
	buf_append_c(&b, "' version='1.0' xml:lang='en'>");
	write_buf(s, &b);
	buf_reset(&b);
	s->header_sent = true;
}

static void stream_fail(struct s2s *s, enum stream_err err, const char *text)
{
	if (conn_closing(&s->conn))
		return;
	conn_log(LOG_LEVEL_INFO, &s->conn, S2S_FMT ": stream error %s: %s",
		 S2S_ARGS(s), stream_err_name(err), text ? text : "");
	if (s->route != NULL && text != NULL)
		s->route->why = text;
	if (!s->header_sent && !s->out)
		send_header(s);
	struct buf b = { 0 };
	stream_error_append(&b, err, text);
	if (s->header_sent)
		write_buf(s, &b);
	buf_reset(&b);
	conn_close(&s->conn);
}

/* Renames the elements of namespace from (the stanza and its jabber:client
 * or jabber:server children) to namespace to. */
static void rename_ns(struct xml_elem *x, const char *from, const char *to)
{
	if (str_eq_c(x->ns, from))
		x->ns = str_c(to);
	xml_foreach_child(c, x)
		rename_ns(c, from, to);
}

static void send_stanza(struct s2s *s, struct stanza *st)
{
	rename_ns(st->x, NS_CLIENT, NS_SERVER);
	struct buf *scratch = &s->conn.shard->scratch;
	scratch->len = 0;
	if (xml_serialize(scratch, st->x, STR_LIT(NS_SERVER)) < 0 ||
	    conn_write(&s->conn, scratch->data, scratch->len) < 0)
		stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
			    "output limit reached");
	if (scratch->cap > 64 * 1024)
		buf_reset(scratch);
	stanza_free(&st);
	conn_set_timer(&s->conn, server.conf->s2s.idle_timeout_ms);
}

/* <db:result/> or <db:verify/> with from, to, optional id, type, key. */
static void send_db(struct s2s *s, const char *name, const char *from,
		    const char *to, const char *id, const char *type,
		    const char *key)
{
	struct buf b = { 0 };
	buf_printf(&b, "<db:%s from='", name);
	buf_append_xml_escaped(&b, str_c(from), true);
	buf_append_c(&b, "' to='");
	buf_append_xml_escaped(&b, str_c(to), true);
	if (id != NULL) {
		buf_append_c(&b, "' id='");
		buf_append_xml_escaped(&b, str_c(id), true);
	}
	if (type != NULL)
		buf_printf(&b, "' type='%s", type);
	if (key != NULL) {
		buf_append_c(&b, "'>");
		buf_append_xml_escaped(&b, str_c(key), false);
		buf_printf(&b, "</db:%s>", name);
	} else {
		buf_append_c(&b, "'/>");
	}
	write_buf(s, &b);
	buf_reset(&b);
}

/* ---- routes: the outgoing side ---- */

static void route_try_next(struct s2s_route *r);
static void route_drop(struct s2s_route *r);

static unsigned owner_of(const char *key)
{
	return (unsigned)(hash_bytes(key, strlen(key)) % server.nshards);
}

static char *route_key(const char *host, const char *remote)
{
	size_t n = strlen(host) + strlen(remote) + 2;
	char *k = xmalloc(n);
	snprintf(k, n, "%s %s", host, remote);
	return k;
}

/* Tells the incoming stream of v the verdict (on its shard). */
struct verdict_msg {
	struct shard_msg m;
	uint64_t conn_id;
	const char *type; /* "valid", "invalid", "error" */
};

static void on_verdict(struct shard *sh, struct shard_msg *m);

static void verdict(struct verify_req *v, const char *type)
{
	struct verdict_msg *vm = xcalloc(1, sizeof(*vm));
	vm->m.fn = on_verdict;
	vm->conn_id = v->conn_id;
	vm->type = type;
	shard_post(&server.shards[v->shard], &vm->m);
	free(v->id);
	free(v->key);
	free(v);
}

static void verifies_fail(struct verify_req **list)
{
	while (*list != NULL) {
		struct verify_req *v = *list;
		*list = v->next;
		verdict(v, "error");
	}
}

static void targets_free(struct s2s_route *r)
{
	for (size_t i = 0; i < r->ntargets; i++) {
		struct route_target *t = &r->targets[i];
		for (size_t j = 0; j < t->nrecs; j++)
			free((void *)t->recs[j].data);
		free(t->recs);
		free(t->host);
	}
	r->ntargets = r->naddrs = r->next_addr = 0;
}

static void route_on_timer_closed(uv_handle_t *h)
{
	struct s2s_route *r = h->data;
	targets_free(r);
	free(r->key);
	free(r->remote);
	free(r->queue);
	free(r);
}

/* Removes r from its shard's table and frees it; what it still holds is
 * bounced (stanzas) or answered (verifies) with its failure. */
static void route_drop(struct s2s_route *r)
{
	if (r->rr != NULL)
		resolve_cancel(r->rr);
	r->rr = NULL;
	if (r->s != NULL)
		r->s->route = NULL;
	r->s = NULL;
	enum stanza_err err = r->timed_out ? STANZA_ERR_REMOTE_SERVER_TIMEOUT
					   : STANZA_ERR_REMOTE_SERVER_NOT_FOUND;
	if (r->nqueue > 0)
		log_info("s2s out %s -> %s: %zu stanzas bounced: %s",
			 conf_domain_name(server.conf, r->host_idx), r->remote, r->nqueue,
			 r->why ? r->why : "connection failed");
	for (size_t i = 0; i < r->nqueue; i++)
		if (r->shard->stopped_hook_ran)
			stanza_free(&r->queue[i]);
		else
			route_bounce(r->queue[i], err, r->why);
	r->nqueue = 0;
	verifies_fail(&r->verifies);
	verifies_fail(&r->sent);
	if (r->bidi && !r->shard->stopped_hook_ran) {
		/* XEP-0288: the peer's incoming stream still carries the
		 * route; only our own stream (wanted for db:verify) failed. */
		uv_timer_stop(&r->timer);
		r->naddrs = r->next_addr = 0;
		return;
	}
	hmap_del(&routes[r->shard->id], str_c(r->key));
	uv_close((uv_handle_t *)&r->timer, route_on_timer_closed);
}

static void on_route_timeout(uv_timer_t *t)
{
	struct s2s_route *r = t->data;
	r->timed_out = true;
	r->why = "timed out";
	if (r->s != NULL) {
		struct s2s *s = r->s;
		r->s = NULL;
		s->route = NULL;
		stream_fail(s, STREAM_ERR_CONNECTION_TIMEOUT,
			    "set-up took too long");
	}
	route_drop(r);
}

static void on_resolved(void *arg, const struct resolve_result *res)
{
	struct s2s_route *r = arg;
	r->rr = NULL;
	if (res->status != 0 || res->ntargets == 0) {
		r->why = "the domain has no XMPP server";
		route_drop(r);
		return;
	}
	targets_free(r);
	for (size_t i = 0; i < res->ntargets; i++) {
		const struct resolve_target *t = &res->targets[i];
		struct route_target *rt = &r->targets[r->ntargets++];
		rt->host = xstrdup(t->host);
		rt->port = t->port;
		/* RFC 7673 §3: DANE applies to a target whose SRV record (or
		 * the proof that there is none, then the domain is the
		 * target: RFC 6698 for its own name) and addresses were all
		 * validated. Without a trust anchor nothing is. */
		rt->dane = t->secure ? DANE_LOOKUP : DANE_NONE;
		if (!t->secure)
			log_debug("s2s out %s -> %s: %s:%u is not "
				  "DNSSEC-secure, no DANE", conf_domain_name(server.conf, r->host_idx),
				  r->remote, t->host, t->port);
		for (size_t j = 0; j < t->naddrs && r->naddrs < MAX_ADDRS; j++) {
			struct route_addr *a = &r->addrs[r->naddrs++];
			memcpy(&a->sa, &t->addrs[j].sa, t->addrs[j].len);
			if (a->sa.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&a->sa)->sin6_port =
					htons(t->port);
			else
				((struct sockaddr_in *)&a->sa)->sin_port =
					htons(t->port);
			a->direct_tls = t->direct_tls;
			a->target = (unsigned)(r->ntargets - 1);
		}
	}
	if (r->naddrs == 0)
		r->why = "the domain's servers have no address";
	route_try_next(r);
}

static void route_start(struct s2s_route *r)
{
	r->why = NULL;
	r->timed_out = false;
	uv_timer_start(&r->timer, on_route_timeout,
		       server.conf->s2s.connect_timeout_ms, 0);
	r->rr = resolve_server(r->shard, r->remote, on_resolved, r);
	if (r->rr == NULL) {
		r->why = "cannot resolve the domain";
		route_drop(r);
	}
}

/* A route in sh's table with no stream yet and nothing started. */
static struct s2s_route *route_new(struct shard *sh, size_t host_idx,
				   const char *remote)
{
	struct s2s_route *r = xcalloc(1, sizeof(*r));
	r->key = route_key(conf_domain_name(server.conf, host_idx), remote);
	r->host_idx = host_idx;
	r->remote = xstrdup(remote);
	r->shard = sh;
	BUG_ON(uv_timer_init(&sh->loop, &r->timer) != 0);
	r->timer.data = r;
	hmap_put(&routes[sh->id], str_c(r->key), r);
	return r;
}

/* The route host -> remote in sh's table; with create, a missing one is
 * made and starts connecting. */
static struct s2s_route *route_find(struct shard *sh, size_t host_idx,
				    const char *remote, bool create)
{
	char *key = route_key(conf_domain_name(server.conf, host_idx), remote);
	struct s2s_route *r = hmap_get(&routes[sh->id], str_c(key));
	free(key);
	if (r != NULL || !create)
		return r;
	r = route_new(sh, host_idx, remote);
	route_start(r);
	return r;
}

/* Neither connecting nor connected. */
static bool route_idle(const struct s2s_route *r)
{
	return r->s == NULL && r->rr == NULL;
}

/* The stream can carry db:verify (TLS up, the peer's features seen). */
static void route_send_verifies(struct s2s_route *r)
{
	struct s2s *s = r->s;
	while (r->verifies != NULL && s != NULL && s->features_seen &&
	       !conn_closing(&s->conn)) {
		struct verify_req *v = r->verifies;
		r->verifies = v->next;
		send_db(s, "verify", host_of(s), r->remote, v->id, NULL,
			v->key);
		v->next = r->sent;
		r->sent = v;
	}
}

static void route_ready(struct s2s_route *r)
{
	struct s2s *s = r->s;
	uv_timer_stop(&r->timer);
	conn_log(LOG_LEVEL_INFO, &s->conn, S2S_FMT " authenticated by %s%s%s",
		 S2S_ARGS(s), s->sasl_done ? "SASL EXTERNAL" : "dialback",
		 s->dane ? ", peer verified by DANE" : "",
		 s->bidi ? ", bidirectional" : "");
	for (size_t i = 0; i < r->nqueue; i++)
		send_stanza(s, r->queue[i]);
	r->nqueue = 0;
	free(r->queue);
	r->queue = NULL;
	r->queue_cap = 0;
	conn_set_timer(&s->conn, server.conf->s2s.idle_timeout_ms);
}

static void bidi_send(struct s2s_route *r, struct stanza *st);

/* Our own stream when it is ready, else the peer's bidi stream (so a
 * stream of ours that became ready after the peer's was attached takes
 * over, and the peer's is used again when ours closed). */
static void route_enqueue(struct s2s_route *r, struct stanza *st)
{
	if (r->s != NULL && r->s->phase == S2S_READY &&
	    !conn_closing(&r->s->conn)) {
		send_stanza(r->s, st);
		return;
	}
	if (r->bidi) {
		bidi_send(r, st);
		return;
	}
	if (r->nqueue >= server.conf->s2s.max_queue) {
		route_bounce(st, STANZA_ERR_RESOURCE_CONSTRAINT,
			     "too many stanzas waiting for this server");
		return;
	}
	if (r->nqueue == r->queue_cap) {
		r->queue_cap = r->queue_cap ? 2 * r->queue_cap : 8;
		r->queue = xreallocarray(r->queue, r->queue_cap,
					 sizeof(*r->queue));
	}
	r->queue[r->nqueue++] = st;
	/* A route whose stream closed while idle connects again. */
	if (r->s == NULL && r->rr == NULL && r->next_addr >= r->naddrs)
		route_start(r);
}

struct route_msg {
	struct shard_msg m;
	size_t host_idx;
	struct stanza *st;
	struct verify_req *v; /* or a verify request */
	char *remote;
};

static void route_local(size_t host_idx, const char *remote,
			struct stanza *st, struct verify_req *v)
{
	struct s2s_route *r = route_find(shard_self, host_idx, remote, true);
	if (st != NULL)
		route_enqueue(r, st);
	if (v != NULL) {
		v->next = r->verifies;
		r->verifies = v;
		route_send_verifies(r);
		/* A route carried by the peer's bidi stream has no stream of
		 * ours: db:verify goes over one (XEP-0288 §2 forbids the
		 * stream the request came on; and a peer need not answer
		 * db:verify on its own outgoing stream). */
		if (route_idle(r))
			route_start(r);
	}
}

static void on_route_msg(struct shard *sh, struct shard_msg *m)
{
	struct route_msg *rm = (struct route_msg *)m;
	if (sh->stopped_hook_ran) {
		stanza_free(&rm->st);
		if (rm->v != NULL) {
			free(rm->v->id);
			free(rm->v->key);
			free(rm->v);
		}
	} else {
		route_local(rm->host_idx, rm->remote, rm->st, rm->v);
	}
	free(rm->remote);
	free(rm);
}

/* Hands st or v to the shard that owns the route host -> remote. */
static void route_post(size_t host_idx, const char *remote,
		       struct stanza *st, struct verify_req *v)
{
	char *key = route_key(conf_domain_name(server.conf, host_idx), remote);
	unsigned owner = owner_of(key);
	free(key);
	if (owner == shard_self->id) {
		route_local(host_idx, remote, st, v);
		return;
	}
	struct route_msg *rm = xcalloc(1, sizeof(*rm));
	rm->m.fn = on_route_msg;
	rm->host_idx = host_idx;
	rm->remote = xstrdup(remote);
	rm->st = st;
	rm->v = v;
	shard_post(&server.shards[owner], &rm->m);
}

void s2s_route(struct stanza *st)
{
	/* A component's stanzas leave through s2s like a host's: the
	 * stream is from its domain (XEP-0220 §1.3, §2.7.1: what a stream
	 * authenticates is a domain pair; a service is a sender domain of
	 * its own). */
	int h = conf_find_domain(server.conf, st->from.domain.p,
				 st->from.domain.len);
	if (h < 0) {
		/* Only our own domains' traffic leaves through s2s. */
		route_bounce(st, STANZA_ERR_REMOTE_SERVER_NOT_FOUND, NULL);
		return;
	}
	char remote[1024];
	if (st->to.domain.len >= sizeof(remote)) {
		route_bounce(st, STANZA_ERR_REMOTE_SERVER_NOT_FOUND, NULL);
		return;
	}
	memcpy(remote, st->to.domain.p, st->to.domain.len);
	remote[st->to.domain.len] = '\0';
	route_post((size_t)h, remote, st, NULL);
}

/* ---- XEP-0288: the peer's incoming stream carries a route ---- */

/*
 * An incoming stream on which the peer asked for bidi is, once the peer
 * authenticated, attached to the route (our host, the peer's domain) on
 * the route's shard: a message with its (shard, connection id). Stanzas
 * the route sends over it go to the stream's shard; one that finds the
 * stream gone or closing comes back with a detach, so the route forgets
 * the stream and sends the stanza the ordinary way (connecting). The
 * stream's end detaches it too, keyed by connection id, so a stale detach
 * never removes a newer stream.
 */
struct bidi_msg {
	struct shard_msg m;
	size_t host_idx;
	char *remote;
	unsigned shard;
	uint64_t conn_id;
	bool attach;       /* else the stream no longer carries the route */
	struct stanza *st; /* detach: a stanza it could not send */
};

struct bidi_stanza_msg {
	struct shard_msg m;
	uint64_t conn_id;
	size_t host_idx;
	struct stanza *st;
};

static void on_bidi_msg(struct shard *sh, struct shard_msg *m);

static void bidi_post(size_t host_idx, const char *remote, unsigned shard,
		      uint64_t conn_id, bool attach, struct stanza *st)
{
	char *key = route_key(conf_domain_name(server.conf, host_idx), remote);
	unsigned owner = owner_of(key);
	free(key);
	struct bidi_msg *bm = xcalloc(1, sizeof(*bm));
	bm->m.fn = on_bidi_msg;
	bm->host_idx = host_idx;
	bm->remote = xstrdup(remote);
	bm->shard = shard;
	bm->conn_id = conn_id;
	bm->attach = attach;
	bm->st = st;
	shard_post(&server.shards[owner], &bm->m);
}

static void bidi_attach(struct shard *sh, struct bidi_msg *bm)
{
	struct s2s_route *r = route_find(sh, bm->host_idx, bm->remote, false);
	if (r == NULL)
		r = route_new(sh, bm->host_idx, bm->remote);
	r->bidi = true;
	r->bidi_shard = bm->shard;
	r->bidi_conn = bm->conn_id;
	if (r->s != NULL && r->s->phase == S2S_READY)
		return; /* our own stream carries it meanwhile */
	/* What waited for our stream leaves now, in order; our stream's
	 * set-up goes on (it may carry db:verify) and takes over when
	 * ready. */
	for (size_t i = 0; i < r->nqueue; i++)
		bidi_send(r, r->queue[i]);
	r->nqueue = 0;
}

static void bidi_detach(struct shard *sh, struct bidi_msg *bm)
{
	struct s2s_route *r = route_find(sh, bm->host_idx, bm->remote, false);
	if (r != NULL && r->bidi && r->bidi_shard == bm->shard &&
	    r->bidi_conn == bm->conn_id)
		r->bidi = false;
	if (bm->st != NULL)
		route_local(bm->host_idx, bm->remote, bm->st, NULL);
	else if (r != NULL && !r->bidi && route_idle(r) && r->nqueue == 0 &&
		 r->verifies == NULL)
		route_drop(r);
}

static void on_bidi_msg(struct shard *sh, struct shard_msg *m)
{
	struct bidi_msg *bm = (struct bidi_msg *)m;
	if (sh->stopped_hook_ran)
		stanza_free(&bm->st);
	else if (bm->attach)
		bidi_attach(sh, bm);
	else
		bidi_detach(sh, bm);
	free(bm->remote);
	free(bm);
}

/* On the stream's shard: writes st, or hands it back to the route. */
static void bidi_deliver(unsigned shard_id, uint64_t conn_id,
			 size_t host_idx, struct stanza *st)
{
	struct conn *c = hmap_get(&shard_self->conns, hmap_u64(&conn_id));
	struct s2s *s = (struct s2s *)c;
	if (c != NULL && c->ops == &s2s_ops && !conn_closing(c) && !s->out &&
	    s->bidi_attached && s->phase == S2S_READY && s->header_sent) {
		send_stanza(s, st);
		return;
	}
	char remote[1024];
	snprintf(remote, sizeof(remote), "%.*s", (int)st->to.domain.len,
		 st->to.domain.p);
	bidi_post(host_idx, remote, shard_id, conn_id, false, st);
}

static void on_bidi_stanza(struct shard *sh, struct shard_msg *m)
{
	struct bidi_stanza_msg *bs = (struct bidi_stanza_msg *)m;
	if (sh->stopped_hook_ran)
		stanza_free(&bs->st);
	else
		bidi_deliver(sh->id, bs->conn_id, bs->host_idx, bs->st);
	free(bs);
}

static void bidi_send(struct s2s_route *r, struct stanza *st)
{
	if (r->bidi_shard == r->shard->id) {
		bidi_deliver(r->bidi_shard, r->bidi_conn, r->host_idx, st);
		return;
	}
	struct bidi_stanza_msg *bs = xcalloc(1, sizeof(*bs));
	bs->m.fn = on_bidi_stanza;
	bs->conn_id = r->bidi_conn;
	bs->host_idx = r->host_idx;
	bs->st = st;
	shard_post(&server.shards[r->bidi_shard], &bs->m);
}

/* ---- outgoing streams ---- */

/* XEP-0220 §2.1.1: ask the peer to verify us by dialback. */
static void out_send_db_result(struct s2s *s)
{
	char key[DB_KEY_LEN + 1];
	db_key(s->remote, host_of(s), s->peer_id, key);
	send_db(s, "result", host_of(s), s->remote, NULL, NULL, key);
}

static void out_on_connected(struct conn *c, int status);

/* The TLSA answer for r->targets[r->tlsa_target] (RFC 7673 §3.3). */
static void on_tlsa(void *arg, const struct resolve_tlsa_result *res)
{
	struct s2s_route *r = arg;
	struct route_target *t = &r->targets[r->tlsa_target];
	r->rr = NULL;
	if (res->status == RESOLVE_ESHUTDOWN) {
		r->why = resolve_strerror(res->status);
		route_drop(r);
		return;
	}
	if (res->status != RESOLVE_OK) {
		/* Bogus, or no answer at all (SERVFAIL, timeout): an
		 * attacker may be hiding the records, so this server is not
		 * to be used; others may be. */
		log_info("s2s out %s -> %s: TLSA of _%u._tcp.%s: %s; not "
			 "connecting there", conf_domain_name(server.conf, r->host_idx),
			 r->remote, t->port, t->host,
			 resolve_strerror(res->status));
		t->dane = DANE_FAILED;
		r->why = res->status == RESOLVE_EBOGUS
				 ? "DANE: the TLSA records failed DNSSEC "
				   "validation"
				 : "DANE: the TLSA lookup failed";
	} else if (!res->secure || res->nrecords == 0) {
		log_debug("s2s out %s -> %s: %s TLSA records at _%u._tcp.%s, "
			  "no DANE", conf_domain_name(server.conf, r->host_idx), r->remote,
			  res->secure ? "no" : "insecure", t->port,
			  t->host);
		t->dane = DANE_NONE;
	} else {
		t->recs = xcalloc(res->nrecords, sizeof(*t->recs));
		for (size_t i = 0; i < res->nrecords; i++) {
			t->recs[i] = res->records[i];
			uint8_t *d = xmalloc(res->records[i].len);
			memcpy(d, res->records[i].data, res->records[i].len);
			t->recs[i].data = d;
		}
		t->nrecs = res->nrecords;
		t->dane = DANE_ON;
		log_debug("s2s out %s -> %s: %zu TLSA records at _%u._tcp.%s, "
			  "DANE", conf_domain_name(server.conf, r->host_idx), r->remote,
			  t->nrecs, t->port, t->host);
	}
	route_try_next(r);
}

/* The outgoing stream of r, before its connection exists. */
static struct s2s *out_new(struct s2s_route *r)
{
	struct s2s *s = xcalloc(1, sizeof(*s));
	s->out = true;
	s->phase = S2S_CONNECTING;
	s->host_idx = r->host_idx;
	s->remote = xstrdup(r->remote);
	s->xs = xml_stream_new(&xml_limits, &s2s_xml_cbs, s);
	s->route = r;
	r->s = s;
	return s;
}

static void route_try_next(struct s2s_route *r)
{
	/* Skip the servers DANE forbids; ask TLSA before the first
	 * connection to a server where DANE applies. */
	while (r->next_addr < r->naddrs) {
		struct route_addr *a = &r->addrs[r->next_addr];
		struct route_target *t = &r->targets[a->target];
		if (t->dane == DANE_LOOKUP) {
			r->tlsa_target = a->target;
			r->rr = resolve_tlsa(r->shard, t->host, t->port, on_tlsa,
					     r);
			return;
		}
		if (t->dane != DANE_FAILED)
			break;
		r->next_addr++;
	}
	if (r->next_addr >= r->naddrs) {
		if (r->why == NULL)
			r->why = "cannot connect to the domain's servers";
		route_drop(r);
		return;
	}
	struct route_addr *a = &r->addrs[r->next_addr++];
	struct s2s *s = out_new(r);
	s->direct_tls = a->direct_tls;
	s->target = a->target;
	int rc = conn_connect(&s->conn, r->shard, (struct sockaddr *)&a->sa,
			      &s2s_ops, server.conf->limits.max_output,
			      out_on_connected);
	if (rc != 0)
		conn_debug(&s->conn, "s2s connect to %s: %s", r->remote,
			   uv_strerror(rc));
	/* on failure the conn closes and out_gone tries the next address */
}

/* The TLS client of s, with DANE when its server has usable records. */
static SSL *out_new_ssl(struct s2s *s)
{
	const struct route_target *t =
		s->route != NULL ? &s->route->targets[s->target] : NULL;
	struct tls_dane d;
	if (t != NULL && t->dane == DANE_ON)
		d = (struct tls_dane){ t->host, t->recs, t->nrecs };
	SSL *ssl = tls_new_client(s->host_idx, s->remote, s->direct_tls,
				  t != NULL && t->dane == DANE_ON ? &d : NULL,
				  &s->dane);
	if (t != NULL && t->dane == DANE_ON && !s->dane)
		conn_log(LOG_LEVEL_INFO, &s->conn,
			 S2S_FMT ": no usable TLSA record at _%u._tcp.%s, "
			 "no DANE", S2S_ARGS(s), t->port, t->host);
	return ssl;
}

static void out_on_connected(struct conn *c, int status)
{
	struct s2s *s = (struct s2s *)c;
	if (status != 0) {
		conn_debug(c, "s2s connect to %s (%s): %s", s->remote, c->ip,
			   uv_strerror(status));
		conn_abort(c);
		return;
	}
	conn_debug(c, "s2s connected to %s at %s%s", s->remote, c->ip,
		   s->direct_tls ? " (direct TLS)" : "");
	if (s->direct_tls) {
		s->phase = S2S_AUTH;
		conn_start_tls_with(c, out_new_ssl(s));
		return; /* the header follows the handshake: tls_ready */
	}
	s->phase = S2S_TLS;
	send_header(s);
}

/* The stream of route r ended (s is being destroyed). */
static void out_gone(struct s2s *s)
{
	struct s2s_route *r = s->route;
	if (r == NULL)
		return;
	r->s = NULL;
	s->route = NULL;
	verifies_fail(&r->sent);
	if (s->phase == S2S_READY) {
		/* An established stream closed (idle, or the peer went):
		 * drop the route unless stanzas wait, which reconnect. */
		if (r->nqueue == 0 && r->verifies == NULL)
			route_drop(r);
		else
			route_start(r);
		return;
	}
	route_try_next(r);
}

static void out_features(struct s2s *s, struct xml_elem *x)
{
	struct s2s_route *r = s->route;
	if (s->phase == S2S_TLS) {
		if (xml_child(x, NS_TLS, "starttls") == NULL) {
			stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
				    "the server does not offer TLS");
			return;
		}
		write_str(s, "<starttls xmlns='" NS_TLS "'/>");
		return;
	}
	if (s->phase != S2S_AUTH)
		return;
	s->features_seen = true;
	if (r != NULL)
		route_send_verifies(r);
	if (s->sasl_done) {
		s->phase = S2S_READY;
		if (r != NULL)
			route_ready(r);
		return;
	}
	if (!s->verified && !server.conf->s2s.dialback) {
		stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
			    "the server's certificate does not verify");
		return;
	}
	/* XEP-0288 §2: after TLS, before authenticating. */
	if (server.conf->s2s.bidi && !s->bidi &&
	    xml_child(x, NS_BIDI_FEATURE, "bidi") != NULL) {
		write_str(s, "<bidi xmlns='" NS_BIDI "'/>");
		s->bidi = true;
	}
	bool external = false;
	struct xml_elem *mechs = xml_child(x, NS_SASL, "mechanisms");
	if (mechs != NULL) {
		xml_foreach_child(m, mechs) {
			struct arena *a = arena_new(0);
			if (str_eq_c(m->name, "mechanism") &&
			    str_eq_c(xml_text(a, m), "EXTERNAL"))
				external = true;
			arena_destroy(&a);
		}
	}
	s->db_offered = xml_child(x, NS_DIALBACK_FEATURE, "dialback") != NULL;
	if (external) {
		char *ir = sasl_external_client(host_of(s));
		if (ir != NULL) {
			struct buf b = { 0 };
			buf_printf(&b, "<auth xmlns='" NS_SASL
				       "' mechanism='EXTERNAL'>%s</auth>",
				   ir);
			write_buf(s, &b);
			buf_reset(&b);
			free(ir);
			return;
		}
	}
	if (s->db_offered && server.conf->s2s.dialback) {
		out_send_db_result(s);
		return;
	}
	stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
		    server.conf->s2s.dialback
			    ? "no authentication method in common"
			    : "the server does not accept our certificate "
			      "and dialback is off");
}

static void out_tls_ready(struct s2s *s)
{
	const char *why = NULL;
	if (s->dane) {
		int usage = -1;
		s->verified = tls_dane_verified(s->conn.ssl, &why, &usage);
		if (!s->verified) {
			/* RFC 6698 §4.1, RFC 7673 §4: usable TLSA records
			 * that do not match mean this is not the server the
			 * domain named; dialback (which only checks DNS
			 * again) must not override that. */
			conn_log(LOG_LEVEL_INFO, &s->conn,
				 S2S_FMT ": DANE: the certificate does not "
				 "match the TLSA records: %s", S2S_ARGS(s),
				 why);
			stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
				    "DANE: the server's certificate does not "
				    "match its TLSA records");
			return;
		}
		conn_log(LOG_LEVEL_INFO, &s->conn,
			 S2S_FMT ": certificate verified by DANE (%s TLSA "
			 "record)", S2S_ARGS(s),
			 usage == 3 ? "DANE-EE" : usage == 2 ? "DANE-TA" :
			 usage == 1 ? "PKIX-EE" : "PKIX-TA");
		s->phase = S2S_AUTH;
		send_header(s);
		return;
	}
	s->verified = tls_peer_verified(s->conn.ssl, s->remote, &why);
	conn_debug(&s->conn, S2S_FMT ": TLS up, certificate %s%s%s",
		   S2S_ARGS(s), s->verified ? "verified" : "not verified",
		   why ? ": " : "", why ? why : "");
	if (!s->verified && s->route != NULL)
		s->route->why = why;
	s->phase = S2S_AUTH;
	send_header(s);
}

/* XEP-0220 §2.4: a dialback error answering a request from -> to, with
 * the <error/> child the XEP requires. */
static void send_db_error(struct s2s *s, struct str from, struct str to,
			  const char *condition)
{
	struct buf b = { 0 };
	buf_append_c(&b, "<db:result from='");
	buf_append_xml_escaped(&b, to, true);
	buf_append_c(&b, "' to='");
	buf_append_xml_escaped(&b, from, true);
	buf_printf(&b, "' type='error'><error type='cancel'><%s xmlns='"
		       NS_STANZA_ERRORS "'/></error></db:result>",
		   condition);
	write_buf(s, &b);
	buf_reset(&b);
}

static void out_db_result(struct s2s *s, struct xml_elem *x)
{
	struct str type = xml_attr_get(x, "type");
	if (s->bidi && s->phase == S2S_READY && type.p == NULL) {
		/* XEP-0288 §2: on a bidi stream the receiving server may
		 * ask to send for more of its domains by dialback. This
		 * stream carries one domain pair only: a dialback error, so
		 * the peer uses a connection of its own for that domain. */
		send_db_error(s, xml_attr_get(x, "from"),
			      xml_attr_get(x, "to"), "policy-violation");
		return;
	}
	if (s->phase != S2S_AUTH || s->sasl_done) {
		stream_fail(s, STREAM_ERR_NOT_AUTHORIZED, "unexpected db:result");
		return;
	}
	if (str_eq_c(type, "valid")) {
		s->phase = S2S_READY;
		if (s->route != NULL)
			route_ready(s->route);
		return;
	}
	stream_fail(s, STREAM_ERR_NOT_AUTHORIZED, "dialback refused");
}

/* The authoritative server's answer to one of our db:verify. */
static void out_db_verify(struct s2s *s, struct xml_elem *x)
{
	struct s2s_route *r = s->route;
	struct str id = xml_attr_get(x, "id");
	struct str type = xml_attr_get(x, "type");
	if (r == NULL || id.p == NULL)
		return;
	for (struct verify_req **p = &r->sent; *p != NULL; p = &(*p)->next) {
		if (!str_eq_c(id, (*p)->id))
			continue;
		struct verify_req *v = *p;
		*p = v->next;
		verdict(v, str_eq_c(type, "valid") ? "valid" : "invalid");
		return;
	}
}

/* ---- incoming streams ---- */

static void in_send_features(struct s2s *s)
{
	struct buf b = { 0 };
	buf_append_c(&b, "<stream:features>");
	/* XEP-0288 §2: offered before and after TLS; taken after it. */
	if (server.conf->s2s.bidi && s->phase != S2S_READY)
		buf_append_c(&b, "<bidi xmlns='" NS_BIDI_FEATURE "'/>");
	if (s->phase == S2S_TLS) {
		buf_append_c(&b, "<starttls xmlns='" NS_TLS
				 "'><required/></starttls>");
	} else if (s->phase == S2S_AUTH) {
		if (s->verified)
			buf_append_c(&b, "<mechanisms xmlns='" NS_SASL
					 "'><mechanism>EXTERNAL</mechanism>"
					 "</mechanisms>");
		if (server.conf->s2s.dialback)
			buf_append_c(&b, "<dialback xmlns='" NS_DIALBACK_FEATURE
					 "'><errors/></dialback>");
	}
	buf_append_c(&b, "</stream:features>");
	write_buf(s, &b);
	buf_reset(&b);
}

static void in_check_cert(struct s2s *s)
{
	if (s->conn.ssl == NULL || s->remote == NULL)
		return;
	const char *why = NULL;
	s->verified = tls_peer_verified(s->conn.ssl, s->remote, &why);
	conn_debug(&s->conn, S2S_FMT ": certificate %s%s%s", S2S_ARGS(s),
		   s->verified ? "verified" : "not verified", why ? ": " : "",
		   why ? why : "");
}

/* The peer authenticated (and, after SASL, restarted the stream): with
 * bidi, the stream now carries our stanzas for its domain too (XEP-0288
 * §2: from the host it connected to, to the domain it proved). */
static void in_ready(struct s2s *s)
{
	conn_set_timer(&s->conn, server.conf->s2s.idle_timeout_ms);
	if (!s->bidi || s->bidi_attached || !server.conf->s2s.bidi)
		return;
	s->bidi_attached = true;
	conn_log(LOG_LEVEL_INFO, &s->conn,
		 S2S_FMT ": bidirectional, carries %s -> %s", S2S_ARGS(s),
		 host_of(s), s->remote);
	bidi_post(s->host_idx, s->remote, s->conn.shard->id, s->conn.id, true,
		  NULL);
}

static void in_stream_open(struct s2s *s, const struct xml_elem *hdr)
{
	struct str to = xml_attr_get(hdr, "to");
	struct str from = xml_attr_get(hdr, "from");
	int h = -1;
	struct arena *a = arena_new(0);
	struct str prepped;
	const char *why;
	/* RFC 6120 §4.7.2: 'to' is any domain we serve, a component's
	 * included (the remote server reaches it like one of our hosts;
	 * XEP-0220 §2.7: services at subdomains are domain pairs too). */
	if (to.p != NULL && jid_nameprep(a, to, &prepped, &why) == 0)
		h = conf_find_domain(server.conf, prepped.p, prepped.len);
	if (h >= 0) {
		s->host_idx = (size_t)h;
		s->host_known = true;
	}
	if (from.p != NULL && s->remote == NULL &&
	    jid_nameprep(a, from, &prepped, &why) == 0)
		s->remote = str_xdup(prepped);
	arena_destroy(&a);
	if (h < 0) {
		stream_fail(s, STREAM_ERR_HOST_UNKNOWN, "unknown host");
		return;
	}
	send_header(s);
	if (s->phase == S2S_AUTH && !s->verified)
		in_check_cert(s);
	if (s->phase == S2S_AUTH && !s->verified &&
	    !server.conf->s2s.dialback) {
		stream_fail(s, STREAM_ERR_NOT_AUTHORIZED,
			    "certificate not trusted and dialback is off");
		return;
	}
	in_send_features(s);
	if (s->phase == S2S_READY)
		in_ready(s); /* the stream restarted after SASL */
}

static void in_starttls(struct s2s *s)
{
	write_str(s, "<proceed xmlns='" NS_TLS "'/>");
	conn_start_tls(&s->conn, s->host_idx);
	tls_want_peer_cert(s->conn.ssl);
	s->phase = S2S_AUTH;
	s->reset_pending = true;
	s->discard_rest = true;
	s->header_sent = false;
}

static void in_auth(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	struct str mech = xml_attr_get(x, "mechanism");
	struct str text = xml_text(a, x);
	const char *cond = "not-authorized";
	if (!str_eq_c(mech, "EXTERNAL")) {
		cond = "invalid-mechanism";
	} else if (s->verified && s->remote != NULL) {
		char *in = str_xdup(text.len ? text : STR_LIT("="));
		bool ok = sasl_external_server(in, s->remote, &cond);
		free(in);
		if (ok) {
			write_str(s, "<success xmlns='" NS_SASL "'/>");
			conn_log(LOG_LEVEL_INFO, &s->conn,
				 S2S_FMT " authenticated by SASL EXTERNAL",
				 S2S_ARGS(s));
			s->phase = S2S_READY;
			s->reset_pending = true;
			s->header_sent = false;
			conn_set_timer(&s->conn,
				       server.conf->s2s.idle_timeout_ms);
			return;
		}
	}
	struct buf b = { 0 };
	buf_printf(&b, "<failure xmlns='" NS_SASL "'><%s/></failure>", cond);
	write_buf(s, &b);
	buf_reset(&b);
	stream_fail(s, STREAM_ERR_NOT_AUTHORIZED, "SASL EXTERNAL failed");
}

/* db:result from the originating server (XEP-0220 §2.1.2). */
static void in_db_result(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	struct str from = xml_attr_get(x, "from");
	struct str to = xml_attr_get(x, "to");
	struct str key = xml_text(a, x);
	struct str prepped;
	const char *why;
	int h = -1;
	if (to.p != NULL && jid_nameprep(a, to, &prepped, &why) == 0)
		h = conf_find_domain(server.conf, prepped.p, prepped.len);
	if (!server.conf->s2s.dialback || s->db_pending || h < 0 ||
	    from.p == NULL || jid_nameprep(a, from, &prepped, &why) < 0 ||
	    (s->remote != NULL && !str_eq_c(prepped, s->remote)) ||
	    key.len == 0) {
		stream_fail(s, STREAM_ERR_NOT_AUTHORIZED,
			    "dialback request refused");
		return;
	}
	if (s->remote == NULL)
		s->remote = str_xdup(prepped);
	s->host_idx = (size_t)h;
	s->host_known = true;
	if (s->verified) {
		/* XEP-0344 §2.4: the certificate already proves the domain;
		 * no need to ask its authoritative server. */
		send_db(s, "result", host_of(s), s->remote, NULL, "valid", NULL);
		conn_log(LOG_LEVEL_INFO, &s->conn,
			 S2S_FMT " authenticated by dialback (with a verified "
			 "certificate)", S2S_ARGS(s));
		s->phase = S2S_READY;
		in_ready(s);
		return;
	}
	s->db_pending = true;
	/* Ask the authoritative server of the peer's domain, over our own
	 * outgoing stream there (XEP-0220 §2.3). */
	struct verify_req *v = xcalloc(1, sizeof(*v));
	v->shard = s->conn.shard->id;
	v->conn_id = s->conn.id;
	v->id = xstrdup(s->id);
	v->key = str_xdup(key);
	conn_debug(&s->conn, S2S_FMT ": verifying its dialback key",
		   S2S_ARGS(s));
	route_post(s->host_idx, s->remote, NULL, v);
}

static void on_verdict(struct shard *sh, struct shard_msg *m)
{
	struct verdict_msg *vm = (struct verdict_msg *)m;
	struct conn *c = sh->stopped_hook_ran
				 ? NULL
				 : hmap_get(&sh->conns, hmap_u64(&vm->conn_id));
	const char *type = vm->type;
	free(vm);
	if (c == NULL || c->ops != &s2s_ops || conn_closing(c))
		return;
	struct s2s *s = (struct s2s *)c;
	if (s->out || !s->db_pending)
		return;
	s->db_pending = false;
	if (strcmp(type, "error") == 0)
		/* XEP-0220 §2.4: the peer's authoritative server could
		 * not be asked */
		send_db_error(s, str_c(s->remote), str_c(host_of(s)),
			      "remote-server-not-found");
	else
		send_db(s, "result", host_of(s), s->remote, NULL, type, NULL);
	if (strcmp(type, "valid") != 0) {
		stream_fail(s, STREAM_ERR_NOT_AUTHORIZED,
			    "dialback verification failed");
		return;
	}
	conn_log(LOG_LEVEL_INFO, c, S2S_FMT " authenticated by dialback",
		 S2S_ARGS(s));
	s->phase = S2S_READY;
	in_ready(s);
}

/* db:verify: we are the authoritative server (XEP-0220 §2.4). */
static void in_db_verify(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	struct str from = xml_attr_get(x, "from");
	struct str to = xml_attr_get(x, "to");
	struct str id = xml_attr_get(x, "id");
	struct str key = xml_text(a, x);
	if (from.p == NULL || to.p == NULL || id.p == NULL) {
		stream_fail(s, STREAM_ERR_INVALID_XML, "incomplete db:verify");
		return;
	}
	char *f = str_xdup(from), *t = str_xdup(to), *i = str_xdup(id);
	/* A component's domain is authoritative here too: the keys of its
	 * outgoing streams are ours. */
	bool ok = conf_find_domain(server.conf, to.p, to.len) >= 0 &&
		  db_key_ok(f, t, i, key);
	send_db(s, "verify", t, f, i, ok ? "valid" : "invalid", NULL);
	conn_debug(&s->conn, S2S_FMT ": our key for %s -> %s is %s",
		   S2S_ARGS(s), t, f, ok ? "valid" : "invalid");
	free(f);
	free(t);
	free(i);
}

/*
 * RFC 6120 §8.1.1.1, §13.9.3: a stanza from a server must carry to and
 * from (else <improper-addressing/>, §4.9.3.7), from in the domain the
 * peer authenticated (else <invalid-from/>, §4.9.3.9: "does not match ...
 * [a] validated domain as negotiated between two servers using SASL or
 * Server Dialback"), to a domain we serve (else <host-unknown/>, §4.9.3.6:
 * not "an FQDN that is serviced by the receiving entity"; Prosody closes
 * with the same condition). The 'to' may be any of our domains, not only
 * the one the stream was opened to: the sender is what authentication
 * proves, and every domain here accepts stanzas from it (XEP-0220 §2.7.2
 * target multiplexing, which we accept without asking). On our own
 * outgoing stream with bidi (XEP-0288) the peer may send only to the
 * domain that stream is from.
 */
static void in_stanza(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	struct str from = xml_attr_get(x, "from");
	struct str to = xml_attr_get(x, "to");
	struct jid jf, jt;
	const char *why;
	if (from.p == NULL || to.p == NULL ||
	    jid_parse(a, from, &jf, &why) < 0 ||
	    jid_parse(a, to, &jt, &why) < 0) {
		arena_destroy(&a);
		stream_fail(s, STREAM_ERR_IMPROPER_ADDRESSING,
			    "stanzas need valid to and from");
		return;
	}
	if (!str_eq_c(jf.domain, s->remote)) {
		arena_destroy(&a);
		stream_fail(s, STREAM_ERR_INVALID_FROM,
			    "not the domain you authenticated as");
		return;
	}
	bool ours = s->out ? str_eq_c(jt.domain, host_of(s))
			   : conf_find_domain(server.conf, jt.domain.p,
					      jt.domain.len) >= 0;
	if (!ours) {
		arena_destroy(&a);
		stream_fail(s, STREAM_ERR_HOST_UNKNOWN, "not a domain of ours");
		return;
	}
	rename_ns(x, NS_SERVER, NS_CLIENT);
	enum stanza_err err;
	struct stanza *st = stanza_wrap(a, x, &jf, &err);
	if (st == NULL) {
		/* Answer it with the error, from where it was sent to. */
		if (!str_eq_c(xml_attr_get(x, "type"), "error")) {
			xml_attr_set(a, x, "to", from);
			xml_attr_set(a, x, "from", to);
			stanza_set_error(a, x, err, NULL);
			st = stanza_wrap(a, x, &jt, &err);
		}
		if (st == NULL)
			arena_destroy(&a);
		else
			route(st);
		return;
	}
	conn_set_timer(&s->conn, server.conf->s2s.idle_timeout_ms);
	receive(st);
}

/* ---- the XML stream, both directions ---- */

static enum xml_cb_ret on_stream_open(void *ud, const struct xml_elem *hdr,
				      struct str default_ns, struct str prefix)
{
	(void)prefix;
	struct s2s *s = ud;
	if (!str_eq_c(hdr->ns, NS_STREAMS) || !str_eq_c(hdr->name, "stream")) {
		stream_fail(s, STREAM_ERR_INVALID_NAMESPACE,
			    "not an XMPP stream");
	} else if (!str_eq_c(default_ns, NS_SERVER)) {
		stream_fail(s, STREAM_ERR_INVALID_NAMESPACE,
			    "default namespace must be jabber:server");
	} else if (s->out) {
		struct str id = xml_attr_get(hdr, "id");
		if (id.p == NULL || id.len == 0) {
			stream_fail(s, STREAM_ERR_INVALID_XML,
				    "the stream has no id");
		} else if (id.len > PEER_ID_MAX) {
			stream_fail(s, STREAM_ERR_INVALID_XML,
				    "stream id too long");
		} else {
			free(s->peer_id);
			s->peer_id = str_xdup(id);
		}
	} else {
		in_stream_open(s, hdr);
	}
	return conn_closing(&s->conn) ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret on_stream_close(void *ud)
{
	struct s2s *s = ud;
	conn_debug(&s->conn, "s2s stream closed by peer");
	write_str(s, "</stream:stream>");
	conn_close(&s->conn);
	return XML_PAUSE;
}

static bool is(const struct xml_elem *x, const char *ns, const char *name)
{
	return str_eq_c(x->ns, ns) && str_eq_c(x->name, name);
}

/* The peer's <stream:error>: its condition and text say why a federation
 * failed, which only the peer knows. */
static void log_peer_error(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	struct xml_elem *c = xml_first_child_elem(x);
	struct xml_elem *t = xml_child(x, NS_STREAM_ERRORS, "text");
	struct str text = t != NULL ? xml_text(a, t) : STR_LIT("");
	conn_log(LOG_LEVEL_INFO, &s->conn,
		 S2S_FMT ": the peer sent stream error %.*s%s%.*s",
		 S2S_ARGS(s), c ? (int)c->name.len : 1, c ? c->name.p : "?",
		 text.len ? ": " : "", (int)text.len, text.len ? text.p : "");
}

static bool is_stanza(const struct xml_elem *x)
{
	return is(x, NS_SERVER, "message") || is(x, NS_SERVER, "presence") ||
	       is(x, NS_SERVER, "iq");
}

static void on_element_out(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	if (is(x, NS_STREAMS, "features")) {
		out_features(s, x);
	} else if (is(x, NS_TLS, "proceed") && s->phase == S2S_TLS &&
		   s->conn.ssl == NULL) {
		conn_start_tls_with(&s->conn, out_new_ssl(s));
		s->reset_pending = true;
		s->discard_rest = true;
		s->header_sent = false;
	} else if (is(x, NS_SASL, "success") && s->phase == S2S_AUTH) {
		s->sasl_done = true;
		s->features_seen = false;
		s->reset_pending = true;
		s->header_sent = false;
	} else if (is(x, NS_SASL, "failure") && s->phase == S2S_AUTH) {
		if (s->db_offered && server.conf->s2s.dialback)
			out_send_db_result(s);
		else
			stream_fail(s, STREAM_ERR_NOT_AUTHORIZED,
				    "SASL EXTERNAL refused");
	} else if (is(x, NS_DIALBACK, "result")) {
		out_db_result(s, x);
	} else if (is(x, NS_DIALBACK, "verify")) {
		out_db_verify(s, x);
	} else if (is(x, NS_STREAMS, "error")) {
		log_peer_error(s, x, a);
		if (s->route != NULL)
			s->route->why = "the remote server refused the stream";
		conn_close(&s->conn);
	} else if (s->phase == S2S_READY && s->bidi && is_stanza(x)) {
		in_stanza(s, x, a); /* XEP-0288 */
		return; /* a is the stanza's now */
	} else if (s->phase != S2S_READY) {
		stream_fail(s, STREAM_ERR_UNSUPPORTED_STANZA_TYPE,
			    "unexpected element");
	}
	/* Stanzas on our outgoing stream without XEP-0288: dropped. */
	arena_destroy(&a);
}

static void on_element_in(struct s2s *s, struct xml_elem *x, struct arena *a)
{
	if (is(x, NS_TLS, "starttls") && s->phase == S2S_TLS) {
		in_starttls(s);
	} else if (s->phase == S2S_TLS) {
		stream_fail(s, STREAM_ERR_POLICY_VIOLATION, "STARTTLS first");
	} else if (is(x, NS_DIALBACK, "verify")) {
		in_db_verify(s, x, a);
	} else if (is(x, NS_DIALBACK, "result") && s->phase == S2S_AUTH) {
		in_db_result(s, x, a);
	} else if (is(x, NS_SASL, "auth") && s->phase == S2S_AUTH) {
		in_auth(s, x, a);
	} else if (is(x, NS_BIDI, "bidi") && s->phase == S2S_AUTH &&
		   server.conf->s2s.bidi) {
		s->bidi = true; /* XEP-0288: takes effect once authenticated */
	} else if (s->phase == S2S_READY && is_stanza(x)) {
		in_stanza(s, x, a);
		return; /* a is the stanza's now */
	} else if (is(x, NS_STREAMS, "error")) {
		log_peer_error(s, x, a);
		conn_close(&s->conn);
	} else if (s->phase != S2S_READY) {
		stream_fail(s, STREAM_ERR_NOT_AUTHORIZED, "authenticate first");
	} else {
		stream_fail(s, STREAM_ERR_UNSUPPORTED_STANZA_TYPE,
			    "unknown first-level element");
	}
	arena_destroy(&a);
}

static enum xml_cb_ret on_xml_stanza(void *ud, struct xml_elem *x,
				     struct arena *a)
{
	struct s2s *s = ud;
	if (conn_closing(&s->conn)) {
		arena_destroy(&a);
		return XML_PAUSE;
	}
	if (s->out)
		on_element_out(s, x, a);
	else
		on_element_in(s, x, a);
	if (conn_closing(&s->conn) || s->reset_pending)
		return XML_PAUSE;
	return XML_CONTINUE;
}

static const struct xml_stream_cbs s2s_xml_cbs = {
	.stream_open = on_stream_open,
	.stanza = on_xml_stanza,
	.stream_close = on_stream_close,
};

/* ---- connection callbacks ---- */

static void feed(struct s2s *s, const char *p, size_t len)
{
	while (len > 0 && !conn_closing(&s->conn)) {
		size_t used = 0;
		enum stream_err err;
		const char *why;
		int r = xml_stream_feed(s->xs, p, len, &used, &err, &why);
		if (r < 0) {
			stream_fail(s, err, why);
			return;
		}
		if (r == 0)
			return;
		p += used;
		len -= used;
		if (s->discard_rest) {
			s->discard_rest = false;
			len = 0;
		}
		if (s->reset_pending) {
			xml_stream_reset(s->xs);
			s->reset_pending = false;
			/* after SASL success the initiator speaks first */
			if (s->out && s->sasl_done && !conn_closing(&s->conn))
				send_header(s);
		}
	}
}

static void s2s_data(struct conn *c, const char *p, size_t len)
{
	feed((struct s2s *)c, p, len);
}

static void s2s_tls_ready(struct conn *c)
{
	struct s2s *s = (struct s2s *)c;
	if (s->out) {
		out_tls_ready(s);
	} else {
		in_check_cert(s);
	}
}

static void s2s_timeout(struct conn *c)
{
	struct s2s *s = (struct s2s *)c;
	if (s->phase == S2S_READY) {
		conn_debug(c, S2S_FMT ": idle, closing", S2S_ARGS(s));
		write_str(s, "</stream:stream>");
		conn_close(c);
	} else {
		stream_fail(s, STREAM_ERR_CONNECTION_TIMEOUT,
			    "authentication took too long");
	}
}

static void s2s_deliver(struct conn *c, struct stanza *st)
{
	(void)c; /* server streams hold no session */
	stanza_free(&st);
}

static void s2s_kick(struct conn *c, enum stream_err err, const char *text)
{
	stream_fail((struct s2s *)c, err, text);
}

static void s2s_destroy(struct conn *c)
{
	struct s2s *s = (struct s2s *)c;
	conn_debug(c, S2S_FMT " closed", S2S_ARGS(s));
	if (s->out)
		out_gone(s);
	else if (s->bidi_attached)
		bidi_post(s->host_idx, s->remote, c->shard->id, c->id, false,
			  NULL);
	xml_stream_free(s->xs);
	free(s->remote);
	free(s->peer_id);
	free(s);
}

/* How the stream was authenticated: out, our domain to the peer (SASL
 * EXTERNAL or dialback); in, the peer's domain (its certificate verified,
 * for EXTERNAL or dialback without a callback, else dialback). */
static void s2s_describe(const struct conn *c, struct conn_info *ci)
{
	const struct s2s *s = (const struct s2s *)c;
	ci->kind = CONN_KIND_S2S;
	ci->out = s->out;
	ci->ready = s->phase == S2S_READY;
	ci->host_idx = s->host_idx;
	if (s->remote != NULL)
		snprintf(ci->peer, sizeof(ci->peer), "%s", s->remote);
	if (!ci->ready)
		return;
	if (s->out)
		ci->auth = s->sasl_done ? "sasl-external" : "dialback";
	else
		ci->auth = s->verified ? "certificate" : "dialback";
}

static const struct conn_ops s2s_ops = {
	.data = s2s_data,
	.timeout = s2s_timeout,
	.destroy = s2s_destroy,
	.tls_ready = s2s_tls_ready,
	.deliver = s2s_deliver,
	.kick = s2s_kick,
	.describe = s2s_describe,
};

/* A new incoming stream: conn set up by accept or adopt (0), or not. */
static void in_start(struct s2s *s, int accepted, bool direct_tls)
{
	const struct limits_conf *lim = &server.conf->limits;
	if (accepted < 0)
		return;
	if (conn_count() > lim->max_connections) {
		stream_fail(s, STREAM_ERR_POLICY_VIOLATION,
			    "too many connections");
		return;
	}
	conn_set_timer(&s->conn, server.conf->s2s.connect_timeout_ms);
	if (direct_tls) {
		conn_start_tls(&s->conn, 0);
		tls_want_peer_cert(s->conn.ssl);
	}
}

static struct s2s *in_new(bool direct_tls)
{
	struct s2s *s = xcalloc(1, sizeof(*s));
	s->xs = xml_stream_new(&xml_limits, &s2s_xml_cbs, s);
	s->phase = direct_tls ? S2S_AUTH : S2S_TLS;
	return s;
}

void s2s_accept(struct shard *sh, int fd, const struct sockaddr *peer,
		const struct listener_conf *lc)
{
	bool direct = lc->type == LISTENER_S2S_TLS;
	struct s2s *s = in_new(direct);
	int rc = conn_accept(&s->conn, sh, fd, peer, &s2s_ops,
			     server.conf->limits.max_output);
	if (rc == 0)
		conn_debug(&s->conn, "accepted from %s on %s port %u",
			   s->conn.ip, listener_type_name(lc->type), lc->port);
	in_start(s, rc, direct);
}

void s2s_adopt(struct shard *sh, int fd)
{
	struct s2s *s = in_new(true);
	in_start(s, conn_accept(&s->conn, sh, fd, NULL, &s2s_ops,
				server.conf->limits.max_output),
		 false);
}

void s2s_adopt_out(struct shard *sh, int fd, const char *remote, bool plain,
		   bool verified)
{
	struct s2s_route *r = route_find(sh, 0, remote, false);
	if (r == NULL)
		r = route_new(sh, 0, remote);
	BUG_ON(r->s != NULL || r->rr != NULL);
	uv_timer_start(&r->timer, on_route_timeout,
		       server.conf->s2s.connect_timeout_ms, 0);
	struct s2s *s = out_new(r);
	s->verified = verified;
	if (conn_accept(&s->conn, sh, fd, NULL, &s2s_ops,
			server.conf->limits.max_output) < 0)
		return;
	s->phase = plain ? S2S_TLS : S2S_AUTH;
	send_header(s);
}

void s2s_set_receiver(void (*fn)(struct stanza *st))
{
	receive = fn;
}

static void collect_route(struct str key, void *value, void *ud)
{
	(void)key;
	struct s2s_route ***p = ud;
	*(*p)++ = value;
}

void s2s_shard_stop(struct shard *sh)
{
	/* Each route's stream is kicked with the shard's other conns. */
	struct hmap *m = &routes[sh->id];
	if (m->count == 0)
		return;
	struct s2s_route **all = xcalloc(m->count, sizeof(*all)), **p = all;
	size_t n = m->count;
	hmap_foreach(m, collect_route, &p);
	for (size_t i = 0; i < n; i++)
		route_drop(all[i]);
	free(all);
}

int s2s_init(const char **error_r)
{
	if (sasl_external_init(error_r) < 0)
		return -1;
	unsigned char secret[32];
	RAND_bytes(secret, sizeof(secret));
	EVP_Digest(secret, sizeof(secret), db_hkey, NULL, EVP_sha256(), NULL);
	OPENSSL_cleanse(secret, sizeof(secret));
	stream_xml_limits(&xml_limits);
	routes = xcalloc(server.nshards ? server.nshards : 1, sizeof(*routes));
	return 0;
}

void s2s_fini(void)
{
	if (routes != NULL)
		for (unsigned i = 0; i < (server.nshards ? server.nshards : 1);
		     i++)
			hmap_clear(&routes[i]);
	free(routes);
	routes = NULL;
	sasl_external_fini();
}
