/*
 * fuzz_s2s.c - libFuzzer target for incoming server-to-server streams
 * (src/stream/s2s.c): the stream header, features, SASL EXTERNAL, dialback
 * requests (db:result) and verifications (db:verify), stream errors.
 *
 * The input is what a remote server sends, delivered through a socketpair
 * to a real s2s stream on an in-process shard loop, in plaintext but in the
 * state after STARTTLS (TLS itself is OpenSSL's). The resolver is replaced
 * here by one that fails at once, so dialback requests end with the error
 * verdict without touching the network. Besides memory errors and leaks,
 * the stream must always end: the run fails if the loop still holds the
 * connection after the input ended and the peer closed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/server.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/resolve.h"
#include "net/tls.h"
#include "stream/s2s.h"

struct server server;
static struct shard sh;

/* ---- a resolver that fails at once (asynchronously, as the real one) */

struct resolve_req {
	uv_timer_t t;
	resolve_done_fn *cb;
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
	if (!r->cancelled) {
		struct resolve_result res = { .status = RESOLVE_ENOTFOUND };
		r->cb(r->arg, &res);
	}
	uv_close((uv_handle_t *)t, req_closed);
}

struct resolve_req *resolve_server(struct shard *s, const char *domain,
				   resolve_done_fn *cb, void *arg)
{
	(void)domain;
	struct resolve_req *r = calloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	uv_timer_init(&s->loop, &r->t);
	r->t.data = r;
	uv_timer_start(&r->t, req_fire, 0, 0);
	return r;
}

void resolve_cancel(struct resolve_req *r)
{
	r->cancelled = true;
}

/* ---- set-up ---- */

static const char config[] =
	"hosts: [example.org, other.example]\n"
	"data_dir: DIR\n"
	"listeners: [{ type: s2s, address: 127.0.0.1, port: 5269 }]\n"
	"limits: { max_stanza_size: 4KiB, max_depth: 8, max_attrs: 8 }\n"
	"log_level: error\n"
	"s2s: { dialback: true }\n";

static void on_check(uv_check_t *h)
{
	(void)h;
	conn_flush_dirty(&sh);
}

static void init(void)
{
	char dir[] = P_tmpdir "/fuzz_s2s.XXXXXX";
	if (mkdtemp(dir) == NULL)
		abort();
	char yaml[sizeof(config) + sizeof(dir)];
	const char *at = strstr(config, "DIR");
	snprintf(yaml, sizeof(yaml), "%.*s%s%s", (int)(at - config), config,
		 dir, at + 3);
	struct config *conf;
	char *err = NULL;
	if (conf_load_string("fuzz", yaml, strlen(yaml), &conf, &err) < 0 ||
	    tls_init(conf, &err) < 0) {
		fprintf(stderr, "fuzz_s2s: %s\n", err);
		abort();
	}
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
	const char *why;
	if (s2s_init(&why) < 0) {
		fprintf(stderr, "fuzz_s2s: %s\n", why);
		abort();
	}
}

static void drain_inbox(void)
{
	struct shard_msg *m = sh.inbox_head;
	sh.inbox_head = NULL;
	sh.inbox_tail = &sh.inbox_head;
	while (m != NULL) {
		struct shard_msg *next = m->next;
		m->fn(&sh, m);
		m = next;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		init();
		ready = true;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	s2s_adopt(&sh, sv[0]);
	size_t off = 0;
	while (off < size) {
		ssize_t n = write(sv[1], data + off, size - off);
		if (n > 0)
			off += (size_t)n;
		spin(sv[1], 4);
		if (sh.conns.count == 0)
			break;
	}
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 50 && sh.conns.count > 0; i++)
		spin(sv[1], 1);
	if (sh.conns.count > 0) {
		fprintf(stderr, "fuzz_s2s: the stream outlived its peer\n");
		abort();
	}
	sh.stopped_hook_ran = true;
	s2s_shard_stop(&sh);
	sh.stopped_hook_ran = false;
	spin(sv[1], 4);
	close(sv[1]);
	return 0;
}
