/*
 * listener.h - listening sockets, one per listener per shard.
 *
 * The main thread binds every socket at start-up (so a busy port stops the
 * server with a clear message before any thread runs), with SO_REUSEPORT so
 * the kernel spreads new connections over the shards. Each shard then
 * adopts its own sockets into its loop.
 */
#ifndef STANZAD_NET_LISTENER_H
#define STANZAD_NET_LISTENER_H

#include <uv.h>

struct config;
struct listener_conf;
struct shard;

/* Called on the shard's thread for each pending connection of server. */
typedef void listener_accept_fn(struct shard *s, uv_stream_t *server,
				const struct listener_conf *lc);

/* Binds conf->nlisteners sockets for each of nshards shards. Returns 0 or
 * -1 with *error_r (malloc'ed). */
int listeners_bind(const struct config *conf, unsigned nshards,
		   char **error_r);
/* On shard s's thread: starts accepting on its sockets. */
void listeners_start(struct shard *s, const struct config *conf,
		     listener_accept_fn *fn);
/* On shard s's thread: stops accepting and closes its sockets. */
void listeners_stop(struct shard *s);
/* Frees what listeners_bind allocated (after all shards stopped). */
void listeners_free(void);

#endif
