/*
 * s2s.h - server-to-server streams (RFC 6120), XEP-0220 Server Dialback
 * with XEP-0185 keys, SASL EXTERNAL (XEP-0178), XEP-0368 direct TLS.
 *
 * Outgoing: one stream per (our host, remote domain), owned by one shard
 * (a hash of the pair), found through DNS (net/resolve.h). Stanzas queue
 * while it is set up and bounce if that fails. Incoming: streams on the
 * s2s listeners, on any shard; their stanzas enter route() once the peer
 * has authenticated its domain. docs/internals/s2s.md has the design.
 */
#ifndef STANZAD_STREAM_S2S_H
#define STANZAD_STREAM_S2S_H

#include <stdbool.h>

#include <uv.h>

struct listener_conf;
struct shard;
struct stanza;

/* Once at start-up, after the configuration, TLS and shards' count are
 * known; s2s_fini after the shards stopped. */
int s2s_init(const char **error_r);
void s2s_fini(void);

/* On a shard: a new connection on an s2s or s2s_tls listener. */
void s2s_accept(struct shard *s, int fd, const struct sockaddr *peer,
		const struct listener_conf *lc);

/* For the fuzz target: an incoming stream on a connected socket, in
 * plaintext but past STARTTLS (what follows TLS is what it exercises). */
void s2s_adopt(struct shard *s, int fd);

/* For the fuzz target: an outgoing stream for the route (first host ->
 * remote) on a connected socket, in plaintext; as past STARTTLS (and with
 * the peer's certificate taken as verified when verified) or, with
 * plain, offering STARTTLS first. The route is made, not resolved. */
void s2s_adopt_out(struct shard *s, int fd, const char *remote, bool plain,
		   bool verified);

/* Where stanzas received from other servers go: route() unless a test
 * (the fuzz targets) says otherwise. */
void s2s_set_receiver(void (*fn)(struct stanza *st));

/* Sends st (consumed), whose 'to' is a domain we do not serve, to its
 * server; bounces it when that cannot be done. */
void s2s_route(struct stanza *st);

/* On each shard as it stops: drops its outgoing routes. */
void s2s_shard_stop(struct shard *s);

#endif
