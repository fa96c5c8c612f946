/*
 * query.c - XEP-0313 queries (§4), the query form (§4.1.5) and archive
 * metadata (§5) on the account's own bare JID.
 *
 * A query is a keyed job of the account: it writes what the writer still
 * has queued, checks that every id it names exists, and reads one page
 * of the id range request.c made of the form and the RSM set. The
 * results go to the querying resource, in chronological order (reversed
 * with <flip-page/>), then the <fin/> result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/log.h"
#include "../../core/xmalloc.h"
#include "../../router/sessions.h"
#include "../../store/mam.h"
#include "../../xml/dataform.h"
#include "../../xml/parser.h"
#include "../../xmpp/datetime.h"
#include "../../xmpp/ns.h"
#include "mam-private.h"
#include "mam.h"
#include "request.h"

static int collect(const struct mam_store_item *it, void *ud)
{
	struct mam_page *q = ud;
	if (q->nres == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->res = xrealloc(q->res, q->cap * sizeof(*q->res));
	}
	q->res[q->nres++] = (struct mam_result){ .id = it->id,
						 .off = q->values.len,
						 .len = it->len };
	return buf_append(&q->values, it->value, it->len) < 0;
}

void mam_page_free(struct mam_page *q)
{
	buf_reset(&q->values);
	free(q->res);
	q->res = NULL;
}

int mam_page_read(struct store *store, struct mam_page *q)
{
	struct mam_request *r = &q->req;
	mam_flush(store);
	int rc = mam_store_user(store, q->host, q->user, false, &q->uid);
	if (rc != 0) {
		/* no archive yet: every named id is unknown */
		q->missing = r->ncheck > 0 || r->nids > 0;
		return rc < 0 ? -1 : 0;
	}
	for (size_t i = 0; i < r->ncheck; i++) {
		rc = mam_store_exists(store, q->uid, r->check[i]);
		if (rc != 0) {
			q->missing = rc == 1;
			return rc < 0 ? -1 : 0;
		}
	}
	struct mam_store_query sq = {
		.uid = q->uid,
		.lo = r->lo,
		.hi = r->hi,
		.ids = r->ids,
		.nids = r->nids,
		.max = r->max,
		.backward = r->backward,
	};
	int64_t floor = mam_retention_floor();
	if (floor > 0 && sq.lo < floor - 1)
		sq.lo = floor - 1;
	char with[JID_TEXT_MAX], with_res[JID_TEXT_MAX];
	if (r->has_with) {
		struct arena *a = arena_new(0);
		snprintf(with, sizeof(with), "%s",
			 jid_to_str(a, &r->with, true).p);
		arena_destroy(&a);
		sq.with = with;
		if (r->with.resource.len > 0) {
			snprintf(with_res, sizeof(with_res), "%.*s",
				 (int)r->with.resource.len, r->with.resource.p);
			sq.with_res = with_res;
		}
	}
	if (r->count_only)
		return mam_store_count(store, &sq, &q->count);
	rc = mam_store_query(store, &sq, collect, q, &q->more);
	if (rc == 1)
		q->missing = true;
	return rc < 0 ? -1 : 0;
}

static void add_text_child(struct arena *a, struct xml_elem *parent,
			   const char *ns, const char *name, struct str text)
{
	struct xml_elem *e = xml_add_child(a, parent, str_c(ns), str_c(name));
	if (e != NULL)
		xml_add_text(a, e, text);
}

/* <message from to><result queryid id><forwarded><delay stamp/>MESSAGE
 * </forwarded></result></message> */
static void send_result(const struct mam_page *q, const struct mam_result *r,
			const struct jid *from, const struct jid *to,
			mam_send_fn *send, void *ud)
{
	struct stanza *m = stanza_new(STANZA_MESSAGE, from, to, NULL);
	struct arena *a = m->a;
	char id[MAM_ID_LEN], stamp[XEP82_DATETIME_LEN];
	mam_id_format(r->id, id);
	xep82_format_us(r->id, stamp);
	struct xml_elem *res = xml_add_child(a, m->x, STR_LIT(NS_MAM),
					     STR_LIT("result"));
	struct xml_elem *fwd = res ? xml_add_child(a, res, STR_LIT(NS_FORWARD),
						   STR_LIT("forwarded"))
				   : NULL;
	struct xml_elem *delay = fwd ? xml_add_child(a, fwd, STR_LIT(NS_DELAY),
						     STR_LIT("delay"))
				     : NULL;
	struct xml_elem *orig = xml_parse_elem(
		a, STR(q->values.data + r->off, r->len), STR_LIT(NS_CLIENT));
	if (delay == NULL || orig == NULL) {
		log_warnx("mam: archived message %s unreadable", id);
		stanza_free(&m);
		return;
	}
	if (!str_is_null(q->req.queryid))
		xml_attr_set(a, res, "queryid", q->req.queryid);
	xml_attr_set(a, res, "id", str_c(id));
	xml_attr_set(a, delay, "stamp", str_c(stamp));
	xml_append_elem(fwd, orig);
	send(m, orig, ud);
}

void mam_page_send(const struct mam_page *q, const struct jid *from,
		   const struct jid *to, mam_send_fn *send, void *ud)
{
	/* Chronological order, unless the client asked for the page
	 * flipped; a backward read came newest first. */
	bool reverse = q->req.backward != q->req.flip;
	for (size_t k = 0; k < q->nres; k++) {
		size_t i = reverse ? q->nres - 1 - k : k;
		send_result(q, &q->res[i], from, to, send, ud);
	}
}

struct xml_elem *mam_page_fin(struct arena *a, const struct mam_page *q)
{
	struct xml_elem *fin = xml_elem_new(a, STR_LIT(NS_MAM), STR_LIT("fin"));
	struct xml_elem *set =
		fin ? xml_add_child(a, fin, STR_LIT(NS_RSM), STR_LIT("set"))
		    : NULL;
	if (set == NULL)
		return fin;
	if (!q->more && !q->req.count_only)
		xml_attr_set(a, fin, "complete", STR_LIT("true"));
	if (q->nres > 0) {
		/* RSM first/last: the page's oldest and newest. */
		size_t oldest = q->req.backward ? q->nres - 1 : 0;
		size_t newest = q->req.backward ? 0 : q->nres - 1;
		char id[MAM_ID_LEN];
		mam_id_format(q->res[oldest].id, id);
		add_text_child(a, set, NS_RSM, "first",
			       arena_strdup(a, str_c(id)));
		mam_id_format(q->res[newest].id, id);
		add_text_child(a, set, NS_RSM, "last",
			       arena_strdup(a, str_c(id)));
	}
	if (q->req.count_only) {
		char n[32];
		snprintf(n, sizeof(n), "%zu", q->count);
		add_text_child(a, set, NS_RSM, "count",
			       arena_strdup(a, str_c(n)));
	}
	return fin;
}

static int query_work(struct store *store, struct iq_ctx *ctx)
{
	return mam_page_read(store, ctx->ud);
}

static void deliver_result(struct stanza *m, struct xml_elem *orig, void *ud)
{
	(void)orig;
	route_deliver(ud, m);
}

static void query_done(struct iq_ctx *ctx, int status)
{
	struct mam_page *q = ctx->ud; /* in the request's arena */
	enum stanza_err err = q->missing ? STANZA_ERR_ITEM_NOT_FOUND
					 : STANZA_ERR_NONE;
	if (status < 0 || err != STANZA_ERR_NONE) {
		mam_page_free(q); /* before the reply frees q */
		iq_done_error(ctx, status, err);
		return;
	}
	struct sess_ref to;
	struct arena *a = ctx->st->a;
	struct str bare = jid_to_str(a, &ctx->st->from, true);
	if (q->nres > 0 && sessions_find(bare, ctx->st->from.resource, &to)) {
		struct jid account = ctx->st->from;
		account.resource = STR_NULL;
		mam_page_send(q, &account, &ctx->st->from, deliver_result,
			      &to);
	}
	struct xml_elem *fin = mam_page_fin(a, q);
	mam_page_free(q);
	iq_reply_result(ctx, fin);
}

/* Only the account itself reads its archive (XEP-0313 §8.1). */
bool mam_own_archive(const struct iq_ctx *ctx)
{
	return jid_bare_eq(&ctx->st->from, &ctx->st->to);
}

static struct mam_page *job_new(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct mam_page *q = arena_zalloc(st->a, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->host = arena_strdup(st->a, st->to.domain).p;
	q->user = arena_strdup(st->a, st->to.node).p;
	ctx->ud = q;
	return q;
}

enum hook_ret mam_query_set(struct iq_ctx *ctx)
{
	if (!mam_own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct mam_page *q = job_new(ctx);
	if (q == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	enum stanza_err err;
	if (mam_request_parse(ctx->st->a, ctx->payload, &q->req, &err) < 0)
		return iq_reply_error(ctx, err);
	if (q->req.unknown_id)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct str key = jid_to_str(ctx->st->a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, query_work, query_done);
}

/* §4.1.5: the fields a query may use. */
struct xml_elem *mam_form_new(struct arena *a)
{
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_MAM), STR_LIT("query"));
	struct xml_elem *x = dataform_new(a, "form", NS_MAM);
	if (q == NULL || x == NULL)
		return NULL;
	xml_append_elem(q, x);
	static const char *const fields[][2] = {
		{ "with", "jid-single" },     { "start", "text-single" },
		{ "end", "text-single" },     { "before-id", "text-single" },
		{ "after-id", "text-single" }, { "ids", "list-multi" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		struct xml_elem *f = dataform_add_field(
			a, x, fields[i][0], fields[i][1], NULL, NULL, 0);
		if (f != NULL && strcmp(fields[i][0], "ids") == 0) {
			/* XEP-0122: the list is open, not enumerated. */
			struct xml_elem *v = xml_add_child(
				a, f, STR_LIT("http://jabber.org/protocol/"
					      "xdata-validate"),
				STR_LIT("validate"));
			if (v != NULL) {
				xml_attr_set(a, v, "datatype",
					     STR_LIT("xs:string"));
				xml_add_child(a, v, v->ns, STR_LIT("open"));
			}
		}
	}
	return q;
}

enum hook_ret mam_query_form(struct iq_ctx *ctx)
{
	if (!mam_own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct xml_elem *q = mam_form_new(ctx->st->a);
	if (q == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_reply_result(ctx, q);
}

/* §5: the first and last message of the archive. */
int mam_page_bounds(struct store *store, struct mam_page *q)
{
	mam_flush(store);
	int64_t floor = mam_retention_floor();
	int rc = mam_store_user(store, q->host, q->user, false, &q->uid);
	if (rc == 0)
		rc = mam_store_bounds(store, q->uid, floor > 0 ? floor - 1 : 0,
				      &q->first, &q->last);
	q->empty = rc == 1;
	return rc < 0 ? -1 : 0;
}

static void add_bound(struct arena *a, struct xml_elem *md, const char *name,
		      int64_t id)
{
	char ids[MAM_ID_LEN], stamp[XEP82_DATETIME_LEN];
	mam_id_format(id, ids);
	xep82_format_us(id, stamp);
	struct xml_elem *e =
		xml_add_child(a, md, STR_LIT(NS_MAM), str_c(name));
	if (e == NULL)
		return;
	xml_attr_set(a, e, "id", arena_strdup(a, str_c(ids)));
	xml_attr_set(a, e, "timestamp", arena_strdup(a, str_c(stamp)));
}

struct xml_elem *mam_page_metadata(struct arena *a, const struct mam_page *q)
{
	struct xml_elem *md = xml_elem_new(a, STR_LIT(NS_MAM),
					   STR_LIT("metadata"));
	if (md != NULL && !q->empty) {
		add_bound(a, md, "start", q->first);
		add_bound(a, md, "end", q->last);
	}
	return md;
}

static int metadata_work(struct store *store, struct iq_ctx *ctx)
{
	return mam_page_bounds(store, ctx->ud);
}

static void metadata_done(struct iq_ctx *ctx, int status)
{
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	iq_reply_result(ctx, mam_page_metadata(ctx->st->a, ctx->ud));
}

enum hook_ret mam_metadata_get(struct iq_ctx *ctx)
{
	if (!mam_own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	if (job_new(ctx) == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	struct str key = jid_to_str(ctx->st->a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, metadata_work, metadata_done);
}
