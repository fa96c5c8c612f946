/*
 * c2s.h - client-to-server streams (RFC 6120 §4-§7).
 */
#ifndef STANZAD_STREAM_C2S_H
#define STANZAD_STREAM_C2S_H

#include <uv.h>

struct listener_conf;
struct shard;

/* Once at start-up, after the configuration is loaded. */
void c2s_init(void);

/* Accepts a pending connection on a c2s or c2s_tls listener. */
void c2s_accept(struct shard *s, uv_stream_t *server,
		const struct listener_conf *lc);

#endif
