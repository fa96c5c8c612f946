/*
 * listener.h - listening sockets, one per listener per shard.
 *
 * The main thread binds every socket at start-up (so a busy port stops the
 * server with a clear message before any thread runs), with SO_REUSEPORT so
 * the kernel spreads new connections over the shards. Each shard then
 * polls its own sockets and accepts what arrives on them.
 *
 * The kernel's spread is a hash of the addresses, so it is even only on
 * average: a few percent more connections on one shard leave the other
 * idle at the end of a burst. So each accepted connection goes to the
 * shard with the fewest (open plus on their way), before any byte of it is
 * read: the socket is posted to that shard, which takes it into its loop.
 */
#ifndef STANZAD_NET_LISTENER_H
#define STANZAD_NET_LISTENER_H

#include <sys/socket.h>

struct config;
struct listener_conf;
struct shard;

/* Called on shard s's thread for each new connection: fd (now owned by the
 * callee) from the peer address peer, accepted on a listener of lc. */
typedef void listener_accept_fn(struct shard *s, int fd,
				const struct sockaddr *peer,
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
