/*
 * c2s.h - client-to-server streams (RFC 6120 §4-§7).
 */
#ifndef STANZAD_STREAM_C2S_H
#define STANZAD_STREAM_C2S_H

#include <stddef.h>

#include <uv.h>

struct listener_conf;
struct shard;

/* Once at start-up, after the configuration is loaded. */
void c2s_init(void);

/* Takes a new connection fd from peer on a c2s or c2s_tls listener. */
void c2s_accept(struct shard *s, int fd, const struct sockaddr *peer,
		const struct listener_conf *lc);

/* Sizes of the stream layer's private structures, for bench/sizes (the
 * per-connection memory tracked in BENCHMARKS.md). */
struct c2s_sizes {
	size_t c2s;  /* struct c2s: one per client connection */
	size_t conn; /* the struct conn embedded in it */
};
void c2s_sizes(struct c2s_sizes *r);

#endif
