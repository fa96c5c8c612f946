/*
 * iq.h - dispatch of iq requests to module handlers, and their replies.
 *
 * Modules register iq handlers by (type, target, payload namespace, payload
 * element) in their struct module (mod/module.h). A request that no handler
 * takes gets <service-unavailable/> (RFC 6120 §8.4).
 */
#ifndef STANZAD_ROUTER_IQ_H
#define STANZAD_ROUTER_IQ_H

#include <stdbool.h>
#include <stddef.h>

#include "route.h"

enum hook_ret {
	HOOK_PASS, /* not mine: try the next handler */
	HOOK_STOP, /* handled; the stanza was consumed */
};

enum iq_type {
	IQ_GET = 1,
	IQ_SET = 2,
};

/* What an iq is addressed to. */
enum iq_target {
	TO_HOST = 1, /* the server's domain */
	TO_BARE = 2, /* an account's bare JID (or no 'to': the sender's) */
	TO_SERVICE = 4, /* a subdomain service's domain (services.h) */
};

struct iq_ctx {
	struct stanza *st;        /* the request; a reply consumes it */
	void *ud;                 /* free for the handler (e.g. across iq_defer) */
	struct xml_elem *payload; /* its single child element */
	enum iq_type type;
	enum iq_target target;
	size_t host_idx;          /* index of the local host addressed */
};

typedef enum hook_ret iq_handler_fn(struct iq_ctx *ctx);

/* Dispatches an iq get/set addressed to a local host or account (st is
 * consumed either way). */
void iq_dispatch(struct stanza *st, size_t host_idx, enum iq_target target);

/* Replies with type='result' and payload (NULL for an empty result; built
 * in ctx->st->a). Returns HOOK_STOP. */
enum hook_ret iq_reply_result(struct iq_ctx *ctx, struct xml_elem *payload);
/* Replies with an error. Returns HOOK_STOP. */
enum hook_ret iq_reply_error(struct iq_ctx *ctx, enum stanza_err err);
/*
 * Runs blocking work for a request on the thread pool: work(store, ctx)
 * there (it owns ctx->st exclusively meanwhile and may allocate in its
 * arena), then done(ctx, status) back on the shard, with work's return
 * value or a negative libuv error. done must answer (iq_reply_*). Returns
 * HOOK_STOP: the request belongs to the job from now on.
 */
struct store;
typedef int iq_work_fn(struct store *store, struct iq_ctx *ctx);
typedef void iq_done_fn(struct iq_ctx *ctx, int status);
enum hook_ret iq_defer(struct iq_ctx *ctx, iq_work_fn *work, iq_done_fn *done);
/* As iq_defer, ordered with every other job of the same key (an account's
 * bare JID; see store_queue_keyed). */
enum hook_ret iq_defer_keyed(struct iq_ctx *ctx, struct str key,
			     iq_work_fn *work, iq_done_fn *done);
/* As iq_defer_keyed, for work that only reads a little of the account
 * (store_queue_keyed_read): it runs on the shard, in its turn. */
enum hook_ret iq_defer_keyed_read(struct iq_ctx *ctx, struct str key,
				  iq_work_fn *work, iq_done_fn *done);

/* For the done callback of a deferred request: answers the error of a
 * failed job (status < 0, see iq_job_error), or err when the job refused
 * the request (err != STANZA_ERR_NONE), and returns true; returns false
 * when the caller has to answer. */
bool iq_done_error(struct iq_ctx *ctx, int status, enum stanza_err err);

/* The stanza error, and a text for it (NULL: none), for a storage job
 * that failed with status < 0 (store.h): <resource-constraint/> (type
 * wait: try again later) for a full disk or a locked database,
 * <internal-server-error/> for anything else. Also for jobs that answer
 * other stanzas than iqs (an offline message bounced to its sender). */
enum stanza_err iq_job_error(int status, const char **text_r);

/*
 * Requests the server sends itself (XEP-0115: asking a client its
 * disco#info). iq_request() gives st (an iq get or set, consumed) a fresh
 * random id, remembers fn and ud under it, and routes it. The reply (a
 * result or an error from st's 'to', addressed to st's 'from') calls
 * fn(reply, ud) on whichever shard routes it; reply is lent. A request
 * that gets no reply within IQ_REQUEST_TIMEOUT_MS is forgotten with
 * fn(NULL, ud) from a later call (so ud is always freed by fn). Returns
 * 0, or -1 when too many requests wait (fn is not called; st is freed).
 * fn runs with no lock held and may call iq_request.
 */
#define IQ_REQUEST_TIMEOUT_MS 60000
#define IQ_REQUEST_MAX 4096
typedef void iq_response_fn(const struct stanza *reply, void *ud);
int iq_request(struct stanza *st, iq_response_fn *fn, void *ud);
/* For the routes that receive replies: true if st (an iq result or
 * error, consumed then) answered an iq_request. */
bool iq_response(struct stanza *st);
/* Frees what waits at shutdown (fn(NULL, ud) for each). */
void iq_requests_fini(void);

struct iq_route;
/* As iq_dispatch, with the handlers of routes (a { 0 }-terminated table
 * of mod/module.h) for target (a subdomain service's own). */
void iq_dispatch_routes(struct stanza *st, size_t host_idx,
			enum iq_target target, const struct iq_route *routes);

/* A new payload element for a reply, allocated in the request's arena. */
struct xml_elem *iq_payload_new(struct iq_ctx *ctx, const char *ns,
				const char *name);

#endif
