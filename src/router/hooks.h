/*
 * hooks.h - ordered hooks on stanza and session events, registered by
 * modules (struct module.hooks) and run by the core at fixed points.
 *
 * A hook returns HOOK_PASS (the next hook, then the core's default, goes
 * on) or HOOK_STOP (it took the stanza: consumed or handed on). Hooks run
 * on the shard that holds the stanza, in ascending priority.
 */
#ifndef STANZAD_ROUTER_HOOKS_H
#define STANZAD_ROUTER_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iq.h"

struct sess_ref;

enum hook_event {
	/* A stanza sent by a local client, 'from' stamped, before route(). */
	EV_PRESENCE_OUT,
	EV_MESSAGE_OUT,
	EV_IQ_OUT,
	/* route() found a stanza for a local account (bare or full JID). An
	 * iq with no 'to' (for the sender's own account) does not run these. */
	EV_PRESENCE_IN,
	EV_MESSAGE_IN,
	EV_IQ_IN,
	/* A chat or normal message for a local account that has no
	 * available resource (RFC 6121 §8.5.2.2): offline storage may take
	 * it; if no hook does, the sender gets <service-unavailable/>. */
	EV_MESSAGE_OFFLINE,
	/* route() chose the resources a message for a local account goes to
	 * (refs, nrefs; none when it is about to be stored or dropped). st
	 * is only lent: hooks may add to it (the archive's stanza-id, which
	 * what runs later and the recipients then see) but must not keep it,
	 * and must return HOOK_PASS. */
	EV_MESSAGE_DELIVER,
	/* A session was bound; st is NULL. */
	EV_SESSION_BOUND,
	/* A bound session ended (stream closed or connection lost); st is
	 * NULL. Hooks must not try to send to it. */
	EV_SESSION_END,
	EV_COUNT
};

const char *hook_event_name(enum hook_event ev);
/* EV_<KIND>_OUT or EV_<KIND>_IN for a stanza of this kind. */
enum hook_event hook_event_of(enum stanza_kind kind, bool out);

struct hook_ctx {
	enum hook_event ev;
	struct stanza *st;      /* consumed by a hook that returns HOOK_STOP */
	const struct jid *user; /* the local session concerned (full JID), or
				   NULL when the event has none */
	uint64_t conn_id;       /* its connection, 0 if none */
	unsigned shard;
	size_t host_idx;
	bool initial;           /* EV_PRESENCE_OUT: the session's first
				   available presence (RFC 6121 §4.2) */
	const struct sess_ref *refs; /* EV_MESSAGE_DELIVER: the recipients */
	size_t nrefs;
};

typedef enum hook_ret hook_fn(struct hook_ctx *ctx);

struct hook {
	enum hook_event ev;
	int priority; /* lower runs first */
	hook_fn *fn;
};

/* Runs the hooks of ctx->ev; returns HOOK_STOP as soon as one does. */
enum hook_ret hooks_run(struct hook_ctx *ctx);

#endif
