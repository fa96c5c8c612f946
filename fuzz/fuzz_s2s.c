/*
 * fuzz_s2s.c - libFuzzer target for incoming server-to-server streams
 * (src/stream/s2s.c): the stream header, features, SASL EXTERNAL, dialback
 * requests (db:result) and verifications (db:verify), stream errors.
 *
 * The input is what a remote server sends, delivered through a socketpair
 * to a real s2s stream on an in-process shard loop (s2s_harness.c), in
 * plaintext but in the state after STARTTLS (TLS itself is OpenSSL's). The
 * harness's resolver fails at once, so dialback requests end with the
 * error verdict without touching the network. Besides memory errors and
 * leaks, the stream must always end: the run fails if the loop still
 * holds the connection after the input ended and the peer closed.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "stream/s2s.h"
#include "s2s_harness.h"

static const char config[] =
	"hosts: [example.org, other.example]\n"
	"data_dir: DIR\n"
	"listeners: [{ type: s2s, address: 127.0.0.1, port: 5269 }]\n"
	"limits: { max_stanza_size: 4KiB, max_depth: 8, max_attrs: 8 }\n"
	"log_level: error\n"
	"s2s: { dialback: true }\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		harness_init("fuzz_s2s", config);
		ready = true;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	s2s_adopt(&harness_shard, sv[0]);
	harness_feed("fuzz_s2s", sv[1], data, size);
	return 0;
}
