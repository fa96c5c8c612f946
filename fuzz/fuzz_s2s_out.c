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
 * The harness's resolver (s2s_harness.c) fails at once: a route that
 * would reconnect gives up without the network. Besides memory errors and
 * leaks, the stream must always end once the peer closed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "router/route.h"
#include "stream/s2s.h"
#include "s2s_harness.h"

#define HOST "example.org"
#define REMOTE "remote.example"

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
		harness_init("fuzz_s2s_out", config);
		route_set_remote(s2s_route);
		s2s_set_receiver(receive);
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
	s2s_adopt_out(&harness_shard, sv[0], REMOTE, plain, verified);
	queue_stanza();
	harness_feed("fuzz_s2s_out", sv[1], data, size);
	return 0;
}
