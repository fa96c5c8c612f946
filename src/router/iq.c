/*
 * iq.c - iq dispatch to modules and replies; see iq.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <uv.h>

#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/xmalloc.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../store/store.h"
#include "../mod/module.h"
#include "../xmpp/ns.h"
#include "iq.h"
#include "route.h"

static const struct iq_route *find_route(const struct iq_route *routes,
					 enum iq_type type,
					 enum iq_target target,
					 const struct xml_elem *payload)
{
	if (routes == NULL)
		return module_find_iq(type, target, payload->ns,
				      payload->name);
	for (const struct iq_route *r = routes; r->fn; r++)
		if ((r->types & type) && (r->targets & target) &&
		    str_eq_c(payload->ns, r->ns) &&
		    str_eq_c(payload->name, r->name))
			return r;
	return NULL;
}

static void dispatch(struct stanza *st, size_t host_idx,
		     enum iq_target target, const struct iq_route *routes)
{
	enum iq_type type;
	if (str_eq_c(st->type, "get")) {
		type = IQ_GET;
	} else if (str_eq_c(st->type, "set")) {
		type = IQ_SET;
	} else {
		/* A result or error for the server: an iq_request's reply,
		 * or nothing waits for it. */
		if (!iq_response(st))
			stanza_free(&st);
		return;
	}
	struct iq_ctx ctx = {
		.st = st,
		.payload = xml_first_child_elem(st->x),
		.type = type,
		.target = target,
		.host_idx = host_idx,
	};
	if (ctx.payload == NULL) {
		route_bounce(st, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	const struct iq_route *r = find_route(routes, type, target,
					      ctx.payload);
	if (r != NULL && r->fn(&ctx) == HOOK_STOP)
		return;
	route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
}

void iq_dispatch(struct stanza *st, size_t host_idx, enum iq_target target)
{
	dispatch(st, host_idx, target, NULL);
}

void iq_dispatch_routes(struct stanza *st, size_t host_idx,
			enum iq_target target, const struct iq_route *routes)
{
	dispatch(st, host_idx, target, routes);
}

/* ---- requests the server sends (iq_request) ---- */

struct pending {
	iq_response_fn *fn;
	void *ud;
	char *peer;        /* the full JID asked: only it may answer */
	uint64_t deadline; /* uv_hrtime() in ns */
};

/* Replies arrive on whichever shard routes them: one table for all,
 * behind a mutex. */
static uv_mutex_t pending_lock;
static uv_once_t pending_once = UV_ONCE_INIT;
static struct hmap pending;
static size_t npending;

static void pending_init(void)
{
	BUG_ON(uv_mutex_init(&pending_lock) != 0);
}

struct expired {
	struct pending **v;
	size_t n;
	uint64_t now;
	bool all;
};

static void collect_expired(struct str key, void *value, void *ud)
{
	(void)key;
	struct pending *p = value;
	struct expired *e = ud;
	if (e->all || p->deadline <= e->now)
		e->v[e->n++] = p;
}

/* Takes the expired (all: every) requests out of the table, then tells
 * their owners, outside the lock. */
static void expire(bool all)
{
	static uint64_t last_sweep; /* under pending_lock */
	uv_mutex_lock(&pending_lock);
	uint64_t now = uv_hrtime();
	if (!all && now - last_sweep < 1000000000) {
		uv_mutex_unlock(&pending_lock);
		return; /* swept less than a second ago */
	}
	last_sweep = now;
	struct expired e = {
		.v = xcalloc(npending + 1, sizeof(*e.v)),
		.now = now,
		.all = all,
	};
	hmap_foreach(&pending, collect_expired, &e);
	for (size_t i = 0; i < e.n; i++)
		hmap_del(&pending, str_c(e.v[i]->peer + strlen(e.v[i]->peer)
					 + 1));
	npending -= e.n;
	if (all)
		hmap_clear(&pending);
	uv_mutex_unlock(&pending_lock);
	for (size_t i = 0; i < e.n; i++) {
		e.v[i]->fn(NULL, e.v[i]->ud);
		free(e.v[i]->peer);
		free(e.v[i]);
	}
	free(e.v);
}

int iq_request(struct stanza *st, iq_response_fn *fn, void *ud)
{
	uv_once(&pending_once, pending_init);
	expire(false);
	unsigned char rnd[12];
	char id[2 * sizeof(rnd) + 4];
	BUG_ON(RAND_bytes(rnd, sizeof(rnd)) != 1);
	memcpy(id, "sd-", 3);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(id + 3 + 2 * i, 3, "%02x", rnd[i]);
	struct str peer = jid_to_str(st->a, &st->to, false);
	struct pending *p = xcalloc(1, sizeof(*p));
	p->fn = fn;
	p->ud = ud;
	/* "peer\0id": the id is the table's key, kept with the peer. */
	p->peer = xmalloc(peer.len + 1 + strlen(id) + 1);
	memcpy(p->peer, peer.p, peer.len);
	p->peer[peer.len] = '\0';
	strcpy(p->peer + peer.len + 1, id);
	p->deadline = uv_hrtime() + (uint64_t)IQ_REQUEST_TIMEOUT_MS * 1000000;
	uv_mutex_lock(&pending_lock);
	bool full = npending >= IQ_REQUEST_MAX;
	if (!full) {
		hmap_put(&pending, str_c(p->peer + peer.len + 1), p);
		npending++;
	}
	uv_mutex_unlock(&pending_lock);
	if (full) {
		log_warnx("iq: %zu requests wait for replies; not asking %s",
			  (size_t)IQ_REQUEST_MAX, p->peer);
		free(p->peer);
		free(p);
		stanza_free(&st);
		return -1;
	}
	xml_attr_set(st->a, st->x, "id", str_c(id));
	route(st);
	return 0;
}

bool iq_response(struct stanza *st)
{
	uv_once(&pending_once, pending_init);
	struct str id = xml_attr_get(st->x, "id");
	if (id.p == NULL)
		return false;
	struct str from = jid_to_str(st->a, &st->from, false);
	uv_mutex_lock(&pending_lock);
	struct pending *p = hmap_get(&pending, id);
	if (p != NULL && str_eq_c(from, p->peer)) {
		hmap_del(&pending, id);
		npending--;
	} else {
		p = NULL; /* not ours, or not from whom we asked */
	}
	uv_mutex_unlock(&pending_lock);
	if (p == NULL)
		return false;
	p->fn(st, p->ud);
	free(p->peer);
	free(p);
	stanza_free(&st);
	return true;
}

void iq_requests_fini(void)
{
	uv_once(&pending_once, pending_init);
	expire(true);
}

static void make_reply(struct iq_ctx *ctx, const char *type)
{
	struct stanza *st = ctx->st;
	struct jid from = st->from;
	st->from = st->to;
	st->to = from;
	xml_attr_set(st->a, st->x, "from",
		     jid_to_str(st->a, &st->from, false));
	xml_attr_set(st->a, st->x, "to", jid_to_str(st->a, &st->to, false));
	st->type = str_c(type);
	xml_attr_set(st->a, st->x, "type", st->type);
	/* An iq result carries at most the reply's payload: drop the
	 * request's children. */
	st->x->children = st->x->last_child = NULL;
}

enum hook_ret iq_reply_result(struct iq_ctx *ctx, struct xml_elem *payload)
{
	make_reply(ctx, "result");
	if (payload != NULL)
		xml_append_elem(ctx->st->x, payload);
	route(ctx->st);
	ctx->st = NULL;
	return HOOK_STOP;
}

enum hook_ret iq_reply_error(struct iq_ctx *ctx, enum stanza_err err)
{
	route_bounce(ctx->st, err, NULL);
	ctx->st = NULL;
	return HOOK_STOP;
}

enum stanza_err iq_job_error(int status, const char **text_r)
{
	BUG_ON(status >= 0);
	switch (status) {
	case STORE_EFULL:
		*text_r = "the server's storage is full";
		return STANZA_ERR_RESOURCE_CONSTRAINT;
	case STORE_EBUSY:
		*text_r = "the server's storage is busy; try again later";
		return STANZA_ERR_RESOURCE_CONSTRAINT;
	default:
		*text_r = NULL;
		return STANZA_ERR_INTERNAL_SERVER_ERROR;
	}
}

bool iq_done_error(struct iq_ctx *ctx, int status, enum stanza_err err)
{
	if (status < 0) {
		const char *text;
		enum stanza_err e = iq_job_error(status, &text);
		route_bounce(ctx->st, e, text);
		ctx->st = NULL;
	} else if (err != STANZA_ERR_NONE)
		iq_reply_error(ctx, err);
	else
		return false;
	return true;
}

struct xml_elem *iq_payload_new(struct iq_ctx *ctx, const char *ns,
				const char *name)
{
	return xml_elem_new(ctx->st->a, str_c(ns), str_c(name));
}

/* The job of iq_defer, in the request's arena. */
struct iq_job {
	struct iq_ctx ctx;
	iq_work_fn *work;
	iq_done_fn *done;
};

static int iq_job_work(struct store *store, void *ud)
{
	struct iq_job *job = ud;
	return job->work(store, &job->ctx);
}

static void iq_job_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct iq_job *job = ud;
	struct iq_ctx ctx = job->ctx; /* the arena may go with the reply */
	if (shard_self == NULL) {
		/* Cancelled after its shard ended (shutdown): nobody to
		 * answer. */
		stanza_free(&ctx.st);
		return;
	}
	job->done(&ctx, status);
	BUG_ON(ctx.st != NULL); /* done must answer */
}

static enum hook_ret defer(struct iq_ctx *ctx, const struct str *key,
			   iq_work_fn *work, iq_done_fn *done, bool read)
{
	struct iq_job *job = arena_alloc(ctx->st->a, sizeof(*job));
	if (job == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	job->ctx = *ctx;
	job->work = work;
	job->done = done;
	if (key != NULL) {
		(read ? store_queue_keyed_read : store_queue_keyed)(
			server.store, *key, iq_job_work, iq_job_done, job);
	} else if (store_queue_work(&shard_self->loop, server.store,
				    iq_job_work, iq_job_done, job) < 0) {
		return iq_reply_error(ctx, STANZA_ERR_INTERNAL_SERVER_ERROR);
	}
	ctx->st = NULL;
	return HOOK_STOP;
}

enum hook_ret iq_defer(struct iq_ctx *ctx, iq_work_fn *work, iq_done_fn *done)
{
	return defer(ctx, NULL, work, done, false);
}

enum hook_ret iq_defer_keyed(struct iq_ctx *ctx, struct str key,
			     iq_work_fn *work, iq_done_fn *done)
{
	return defer(ctx, &key, work, done, false);
}

enum hook_ret iq_defer_keyed_read(struct iq_ctx *ctx, struct str key,
				  iq_work_fn *work, iq_done_fn *done)
{
	return defer(ctx, &key, work, done, true);
}
