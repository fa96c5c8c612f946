/*
 * s2s_harness.c - the shard, resolver and feeding loop of the s2s fuzz
 * targets; see s2s_harness.h.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/server.h"
#include "net/conn.h"
#include "net/resolve.h"
#include "net/tls.h"
#include "stream/s2s.h"
#include "s2s_harness.h"

struct server server;
struct shard harness_shard;
#define sh harness_shard

/* ---- a resolver that fails at once (asynchronously, as the real one):
 * dialback requests end with the error verdict, and a route that would
 * reconnect gives up, without the network ---- */

struct resolve_req {
	uv_timer_t t;
	resolve_done_fn *cb;
	resolve_tlsa_fn *tlsa_cb;
	void *arg;
	bool cancelled;
};

static void req_closed(uv_handle_t *h)
{
	free(h->data);
}

static void req_fire(uv_timer_t *t)
{
	struct resolve_req *r = t->data;
	if (!r->cancelled && r->cb != NULL) {
		struct resolve_result res = { .status = RESOLVE_ENOTFOUND };
		r->cb(r->arg, &res);
	} else if (!r->cancelled) {
		struct resolve_tlsa_result res = { .status = RESOLVE_EFAIL };
		r->tlsa_cb(r->arg, &res);
	}
	uv_close((uv_handle_t *)t, req_closed);
}

static struct resolve_req *req_new(struct shard *s, void *arg)
{
	struct resolve_req *r = calloc(1, sizeof(*r));
	r->arg = arg;
	uv_timer_init(&s->loop, &r->t);
	r->t.data = r;
	uv_timer_start(&r->t, req_fire, 0, 0);
	return r;
}

struct resolve_req *resolve_server(struct shard *s, const char *domain,
				   resolve_done_fn *cb, void *arg)
{
	(void)domain;
	struct resolve_req *r = req_new(s, arg);
	r->cb = cb;
	return r;
}

struct resolve_req *resolve_tlsa(struct shard *s, const char *host,
				 uint16_t port, resolve_tlsa_fn *cb, void *arg)
{
	(void)host, (void)port;
	struct resolve_req *r = req_new(s, arg);
	r->tlsa_cb = cb;
	return r;
}

const char *resolve_strerror(int status)
{
	return status == RESOLVE_OK ? "ok" : "failed";
}

void resolve_cancel(struct resolve_req *r)
{
	r->cancelled = true;
}

/* ---- set-up ---- */

static void on_check(uv_check_t *h)
{
	(void)h;
	conn_flush_dirty(&sh);
}

void harness_init(const char *name, const char *config)
{
	char dir[] = P_tmpdir "/fuzz_s2s.XXXXXX";
	if (mkdtemp(dir) == NULL)
		abort();
	size_t len = strlen(config) + sizeof(dir);
	char *yaml = malloc(len);
	const char *at = strstr(config, "DIR");
	if (yaml == NULL || at == NULL)
		abort();
	snprintf(yaml, len, "%.*s%s%s", (int)(at - config), config, dir,
		 at + 3);
	struct config *conf;
	char *err = NULL;
	if (conf_load_string("fuzz", yaml, strlen(yaml), &conf, &err) < 0 ||
	    tls_init(conf, &err) < 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		abort();
	}
	free(yaml);
	log_set_level(conf->log_level);
	server.conf = conf;
	server.nshards = 1;
	server.shards = &sh;
	uv_loop_init(&sh.loop);
	uv_idle_init(&sh.loop, &sh.idle);
	/* The shard's tick, as in a real shard: output is flushed in the
	 * loop's check phase, before the close callbacks of the same turn
	 * free a connection (flushing after uv_run instead would touch one
	 * freed with output still queued). */
	uv_check_init(&sh.loop, &sh.check);
	uv_check_start(&sh.check, on_check);
	uv_mutex_init(&sh.lock);
	sh.inbox_tail = &sh.inbox_head;
	sh.dead = true; /* no wakeup handle: spin() drains the inbox */
	shard_self = &sh;
	conn_ip_init(); /* and the BIO that TLS after <proceed/> needs */
	const char *why;
	if (s2s_init(&why) < 0) {
		fprintf(stderr, "%s: %s\n", name, why);
		abort();
	}
}

/* ---- the loop ---- */

static void drain_inbox(void)
{
	while (sh.inbox_head != NULL) {
		struct shard_msg *m = sh.inbox_head;
		sh.inbox_head = NULL;
		sh.inbox_tail = &sh.inbox_head;
		while (m != NULL) {
			struct shard_msg *next = m->next;
			m->fn(&sh, m);
			m = next;
		}
	}
}

/* Runs the loop a bounded number of turns, reading what the server
 * wrote (so it never blocks on a full socket). Messages are handled
 * before each turn, so what they write is flushed in it. */
static void spin(int peer, int turns)
{
	char sink[65536];
	for (int i = 0; i < turns; i++) {
		drain_inbox();
		uv_run(&sh.loop, UV_RUN_NOWAIT);
		while (read(peer, sink, sizeof(sink)) > 0)
			;
	}
}

void harness_feed(const char *name, int peer, const uint8_t *data,
		  size_t size)
{
	size_t off = 0;
	while (off < size) {
		ssize_t n = write(peer, data + off, size - off);
		if (n > 0)
			off += (size_t)n;
		spin(peer, 4);
		if (sh.conns.count == 0)
			break;
	}
	shutdown(peer, SHUT_WR);
	for (int i = 0; i < 50 && sh.conns.count > 0; i++)
		spin(peer, 1);
	if (sh.conns.count > 0) {
		fprintf(stderr, "%s: the stream outlived its peer\n", name);
		abort();
	}
	sh.stopped_hook_ran = true;
	s2s_shard_stop(&sh);
	spin(peer, 4);
	sh.stopped_hook_ran = false;
	close(peer);
}
