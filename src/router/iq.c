/*
 * iq.c - iq dispatch to modules and replies; see iq.h.
 */
#include "../core/bug.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../store/store.h"
#include "../mod/module.h"
#include "../xmpp/ns.h"
#include "iq.h"
#include "route.h"

void iq_dispatch(struct stanza *st, size_t host_idx, enum iq_target target)
{
	enum iq_type type;
	if (str_eq_c(st->type, "get")) {
		type = IQ_GET;
	} else if (str_eq_c(st->type, "set")) {
		type = IQ_SET;
	} else {
		/* A result or error for the server: nothing waits for it. */
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
	const struct iq_route *r = module_find_iq(type, target,
						  ctx.payload->ns,
						  ctx.payload->name);
	if (r != NULL && r->fn(&ctx) == HOOK_STOP)
		return;
	route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
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
			   iq_work_fn *work, iq_done_fn *done)
{
	struct iq_job *job = arena_alloc(ctx->st->a, sizeof(*job));
	if (job == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	job->ctx = *ctx;
	job->work = work;
	job->done = done;
	if (key != NULL) {
		store_queue_keyed(server.store, *key, iq_job_work, iq_job_done,
				  job);
	} else if (store_queue_work(&shard_self->loop, server.store,
				    iq_job_work, iq_job_done, job) < 0) {
		return iq_reply_error(ctx, STANZA_ERR_INTERNAL_SERVER_ERROR);
	}
	ctx->st = NULL;
	return HOOK_STOP;
}

enum hook_ret iq_defer(struct iq_ctx *ctx, iq_work_fn *work, iq_done_fn *done)
{
	return defer(ctx, NULL, work, done);
}

enum hook_ret iq_defer_keyed(struct iq_ctx *ctx, struct str key,
			     iq_work_fn *work, iq_done_fn *done)
{
	return defer(ctx, &key, work, done);
}
