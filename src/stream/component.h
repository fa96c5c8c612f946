/*
 * component.h - external components (XEP-0114, jabber:component:accept).
 *
 * A component connects to a `component` listener, names the domain it
 * serves in its stream header, proves the shared secret of that domain
 * with <handshake/> (hex SHA-1 of our stream id and the secret) and then
 * exchanges stanzas: everything addressed to its domain is routed to it,
 * and what it sends must come from its domain.
 *
 * The protocol (struct component_stream) is kept apart from the socket:
 * it writes, closes, registers and hands stanzas on through struct
 * component_stream_ops, so the fuzz target drives it without a
 * connection. component_accept() binds it to a conn.
 */
#ifndef STANZAD_STREAM_COMPONENT_H
#define STANZAD_STREAM_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "../core/buf.h"
#include "../core/str.h"
#include "../xml/parser.h"

struct config;
struct listener_conf;
struct shard;
struct stanza;

#define NS_COMPONENT_ACCEPT "jabber:component:accept"

/* Hex SHA-1 digest length. */
#define COMPONENT_DIGEST_LEN 40

/* The expected handshake: lower-case hex SHA1(id + secret), NUL ended. */
void component_digest(const char *id, const char *secret,
		      char out[COMPONENT_DIGEST_LEN + 1]);
/* Whether given is the handshake of id and secret (hex digits of either
 * case), compared in constant time. */
bool component_handshake_ok(const char *id, const char *secret,
			    struct str given);

struct component_stream_ops {
	/* Queue bytes for the peer; -1: the output limit was reached. */
	int (*write)(void *ud, const char *p, size_t len);
	/* Close after the queued output: the stream has ended, with err
	 * (STREAM_ERR_NONE: the peer closed it) and text. */
	void (*close)(void *ud, enum stream_err err, const char *text);
	/* The handshake succeeded for component idx (an index in the
	 * configuration's components): register the stream. -1: another
	 * stream is that component already. */
	int (*attach)(void *ud, size_t idx);
	/* A checked stanza from the component (consumed): 'from' is in its
	 * domain, 'to' is set, the tree is in jabber:client. */
	void (*stanza)(void *ud, struct stanza *st);
};

struct component_stream;

/* A stream for conf (which must outlive it). id is the stream id to send,
 * NULL for a random one (a fixed one is for the fuzz target). scratch is
 * a serialization buffer the caller lends (the shard's). */
struct component_stream *component_stream_new(
	const struct config *conf, const struct xml_limits *lim,
	const struct component_stream_ops *ops, void *ud, const char *id,
	struct buf *scratch);
void component_stream_free(struct component_stream *cs);
/* Bytes from the peer. */
void component_stream_feed(struct component_stream *cs, const char *p,
			   size_t len);
/* Ends the stream with a stream error (our header first if not sent). */
void component_stream_fail(struct component_stream *cs, enum stream_err err,
			   const char *text);
/* Writes a stanza routed to the component (not consumed). */
void component_stream_send(struct component_stream *cs,
			   const struct xml_elem *x);
/* Whether the handshake succeeded (and attach accepted it). */
bool component_stream_authed(const struct component_stream *cs);
/* The component's index in the configuration, or -1 before the header. */
int component_stream_index(const struct component_stream *cs);

/* Once at start-up, after the configuration is loaded (and
 * component_fini() after the shards stopped). */
void component_init(void);
void component_fini(void);

/* Takes a new connection fd from peer on a component listener. */
void component_accept(struct shard *s, int fd, const struct sockaddr *peer,
		      const struct listener_conf *lc);

#endif
