/*
 * route.h - the one entry point of every stanza: route().
 *
 * A struct stanza is a parsed message, presence or iq whose tree, JIDs and
 * the struct itself all live in one arena: freeing the arena frees it all,
 * and handing the pointer to another shard hands over all of it. Functions
 * that take a struct stanza * without "const" consume it: the caller must
 * not touch it afterwards.
 *
 * route() applies the delivery rules: to the server (host services in
 * modules), to a local account (bare or full JID), to a subdomain service
 * of the server (services.h), or elsewhere (through
 * route_set_remote's function: server-to-server). Errors go back to the sender as stanza errors,
 * never in reply to an error.
 */
#ifndef STANZAD_ROUTER_ROUTE_H
#define STANZAD_ROUTER_ROUTE_H

#include <stdbool.h>

#include "../core/arena.h"
#include "../xml/stanza.h"
#include "../xmpp/errors.h"
#include "../xmpp/jid.h"

enum stanza_kind {
	STANZA_MESSAGE,
	STANZA_PRESENCE,
	STANZA_IQ,
};

/* What a session does with a stanza delivered to it. */
enum stanza_op {
	STANZA_OP_DELIVER,     /* write it to the client */
	STANZA_OP_PRESENCE_TO, /* send its current presence to st->from */
	STANZA_OP_UNAVAILABLE_TO, /* send unavailable presence to st->from */
};

struct stanza {
	struct arena *a;
	struct xml_elem *x;
	enum stanza_kind kind;
	struct str type;     /* the type attribute; empty when absent */
	struct jid from, to; /* to.domain is empty when there was no 'to' */
	bool to_session;     /* deliver with 'to' set to the receiving
				session's full JID (roster pushes) */
	enum stanza_op op;   /* what the receiving session does with it */
};

/* Wraps a parsed element (owned by arena a) as a stanza. Returns NULL, with
 * *err_r set, for an invalid 'to' (JID_MALFORMED) or type, or an iq of the
 * wrong shape (BAD_REQUEST);
 * the caller still owns a then. from is copied into the arena. */
struct stanza *stanza_wrap(struct arena *a, struct xml_elem *x,
			   const struct jid *from, enum stanza_err *err_r);
/* RFC 6120 §8.2.3: an iq has an id; a get or set exactly one payload, a
 * result at most one. */
bool stanza_iq_well_formed(const struct xml_elem *x, struct str type);

/* Builds a new empty stanza (own arena) of kind with the given addresses
 * (to may be NULL) and type (may be NULL). */
struct stanza *stanza_new(enum stanza_kind kind, const struct jid *from,
			  const struct jid *to, const char *type);
void stanza_free(struct stanza **stp);
/* Deep copy in a fresh arena. */
struct stanza *stanza_copy(const struct stanza *st);
const char *stanza_kind_name(enum stanza_kind k);

/* Makes x an error reply in place: type='error' plus the <error/> child
 * (RFC 6120 §8.3.2) with err's default type and an optional text. The
 * caller sets to/from. Allocates in a. */
void stanza_set_error(struct arena *a, struct xml_elem *x,
		      enum stanza_err err, const char *text);

/* Routes st (consumed). Call on a shard thread. */
void route(struct stanza *st);

/* Where stanzas for domains we do not serve go (server-to-server, set at
 * start-up); without one they bounce with <remote-server-not-found/>. */
typedef void route_remote_fn(struct stanza *st);
void route_set_remote(route_remote_fn *fn);

/* Answers st (consumed) with error err: swaps to/from, sets type='error'
 * and adds the <error/> element (RFC 6120 §8.3). Stanzas of type error are
 * dropped instead. */
void route_bounce(struct stanza *st, enum stanza_err err, const char *text);

/* What a caller may ask of a bounce beyond route_bounce's. */
struct bounce_opts {
	const char *text;
	const char *type; /* the <error/> type instead of the condition's
			     default (RFC 6120 §8.3.2), or NULL */
	bool presence;    /* answer a presence too: presence errors are
			     dropped by default (RFC 6121 §3, §4), sent
			     only where a protocol defines them (a refused
			     XEP-0045 room join) */
};
void route_bounce_ex(struct stanza *st, enum stanza_err err,
		     const struct bounce_opts *o);

/* Delivers st (consumed) to a bound resource, on whichever shard it is. */
struct sess_ref;
void route_deliver(const struct sess_ref *ref, struct stanza *st);
/* Ends a bound resource's stream with error err and text (a static
 * string), on whichever shard it is; always posted, so what was queued
 * for it before (a reply) leaves first. */
void route_kick(const struct sess_ref *ref, enum stream_err err,
		const char *text);

#endif
