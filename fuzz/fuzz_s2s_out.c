/*
 * fuzz_s2s_out.c - libFuzzer target for outgoing server-to-server streams
 * (src/stream/s2s.c): what the remote server sends us on the stream we
 * opened. Its stream header, features (STARTTLS, SASL mechanisms,
 * dialback, XEP-0288 bidi), SASL success or failure and the restart after
 * it, answers to our db:result and db:verify, dialback requests and
 * stanzas on a bidirectional stream, stream errors.
 *
 * The first byte of the input chooses the start: bit 0 set, the stream
 * begins before STARTTLS (what follows <proceed/> is fed to the TLS
 * handshake, so it fails); clear, in plaintext as past STARTTLS. Bit 1
 * takes the peer's certificate as verified (so SASL EXTERNAL is tried).
 * The rest is the peer's bytes, delivered through a socketpair to a real
 * outgoing stream (s2s_adopt_out) on an in-process shard loop, whose route
 * holds one queued stanza. Stanzas the stream accepts come to receive()
 * below, which checks the addressing the stream promised and answers iq
 * requests with an error, so replies travel back over the same stream.
 * The resolver fails at once (as in fuzz_s2s.c): a route that would
 * reconnect gives up without the network. Besides memory errors and
 * leaks, the stream must always end once the peer closed.
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
#include "router/route.h"
#include "stream/s2s.h"

#define HOST "example.org"
#define REMOTE "remote.example"

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

/* ---- what the stream hands on ---- */

static void receive(struct stanza *st)
{
	/* in_stanza's promise: from the peer's domain, to our host */
	if (!str_eq_c(st->from.domain, REMOTE) ||
	    !str_eq_c(st->to.domain, HOST)) {
		fprintf(stderr, "fuzz_s2s_out: stanza from %.*s to %.*s\n",
			(int)st->from.domain.len, st->from.domain.p,
			(int)st->to.domain.len, st->to.domain.p);
		abort();
	}
	if (st->kind == STANZA_IQ &&
	    (str_eq_c(st->type, "get") || str_eq_c(st->type, "set")))
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	else
		stanza_free(&st);
}

/* ---- set-up ---- */

static const char config[] =
	"hosts: [" HOST ", other.example]\n"
	"data_dir: DIR\n"
	"listeners: [{ type: s2s, address: 127.0.0.1, port: 5269 }]\n"
	"limits: { max_stanza_size: 4KiB, max_depth: 8, max_attrs: 8 }\n"
	"log_level: error\n"
	"s2s: { dialback: true, bidi: true }\n";

static void on_check(uv_check_t *h)
{
	(void)h;
	conn_flush_dirty(&sh);
}

static void init(void)
{
	char dir[] = P_tmpdir "/fuzz_s2s_out.XXXXXX";
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
		fprintf(stderr, "fuzz_s2s_out: %s\n", err);
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
	conn_ip_init(); /* and the BIO that TLS after <proceed/> needs */
	const char *why;
	if (s2s_init(&why) < 0) {
		fprintf(stderr, "fuzz_s2s_out: %s\n", why);
		abort();
	}
	route_set_remote(s2s_route);
	s2s_set_receiver(receive);
}

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

/* A message for the remote domain, from the host itself (so that its
 * bounce, when the stream fails, is dropped rather than stored). */
static void queue_stanza(void)
{
	struct arena *a = arena_new(0);
	struct jid from, to;
	const char *why;
	if (jid_parse(a, STR_LIT(HOST), &from, &why) < 0 ||
	    jid_parse(a, STR_LIT("user@" REMOTE), &to, &why) < 0)
		abort();
	struct stanza *st = stanza_new(STANZA_MESSAGE, &from, &to, "chat");
	arena_destroy(&a);
	s2s_route(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		init();
		ready = true;
	}
	if (size == 0)
		return 0;
	bool plain = data[0] & 1, verified = data[0] & 2;
	data++;
	size--;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	s2s_adopt_out(&sh, sv[0], REMOTE, plain, verified);
	queue_stanza();
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
		fprintf(stderr, "fuzz_s2s_out: the stream outlived its peer\n");
		abort();
	}
	sh.stopped_hook_ran = true;
	s2s_shard_stop(&sh);
	spin(sv[1], 4);
	sh.stopped_hook_ran = false;
	close(sv[1]);
	return 0;
}
