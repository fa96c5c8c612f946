/*
 * mod_pep.c - XEP-0163: Personal Eventing Protocol, a pubsub service
 * (XEP-0060, pubsub.c) on every account's bare JID.
 *
 * Nodes and items are stored (pubsub_store.c); every request is a keyed
 * job of the account, so it cannot overtake an earlier one of the same
 * account, from any shard. Nothing of the nodes is cached in memory (see
 * docs/internals/pubsub.md for why).
 *
 * Who hears of a publication (XEP-0163 §4.3): the full JIDs whose
 * available presence reached the account (its contacts' resources, and
 * its own resources' broadcasts) with XEP-0115 caps whose features
 * include NODE+notify, as far as the node's access model lets them read.
 * The server keeps, per account with a session, the full JIDs it heard
 * from and their caps ver (the "interest table", in memory, shared by
 * the shards behind a mutex); the features behind a ver come from
 * caps.h. When a contact's resource becomes available (or its caps
 * change), it gets the last item of every node it is interested in
 * (pubsub#send_last_published_item on_sub_and_presence). The table of an
 * account is dropped when its last session ends: its next login probes
 * its contacts, and their answers fill it again.
 */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/hmap.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/shard.h"
#include "../../core/xmalloc.h"
#include "../../router/route.h"
#include "../../router/sessions.h"
#include "../../store/shapes.h"
#include "../../xmpp/ns.h"
#include "../caps.h"
#include "../module.h"
#include "pep_sync.h"
#include "pubsub-private.h"

#define PEP_MAX_INTERESTED 4096 /* full JIDs remembered per account */

/* ---- the interest table ---- */

struct pep_res {
	char *jid; /* full */
	char *ver; /* NULL: no (usable) caps */
};

struct pep_user {
	struct pep_res *v;
	size_t n;
};

static uv_mutex_t ilock;
static uv_once_t ionce = UV_ONCE_INIT;
static struct hmap interest; /* bare JID -> struct pep_user */

static void interest_init(void)
{
	BUG_ON(uv_mutex_init(&ilock) != 0);
}

static struct pep_res *res_find(struct pep_user *u, struct str jid)
{
	for (size_t i = 0; u != NULL && i < u->n; i++)
		if (str_eq_c(jid, u->v[i].jid))
			return &u->v[i];
	return NULL;
}

/* Records that full (ver: its caps, STR_NULL for none) is available to
 * owner. Returns true when it is new or its ver changed. */
static bool interest_set(struct str owner, struct str full, struct str ver)
{
	uv_once(&ionce, interest_init);
	uv_mutex_lock(&ilock);
	struct pep_user *u = hmap_get(&interest, owner);
	if (u == NULL) {
		u = xcalloc(1, sizeof(*u));
		hmap_put(&interest, owner, u);
	}
	struct pep_res *r = res_find(u, full);
	bool changed = true;
	if (r != NULL) {
		changed = (r->ver == NULL) != str_is_null(ver) ||
			  (r->ver != NULL && !str_eq_c(ver, r->ver));
		if (changed) {
			free(r->ver);
			r->ver = str_is_null(ver) ? NULL : str_xdup(ver);
		}
	} else if (u->n < PEP_MAX_INTERESTED) {
		u->v = xreallocarray(u->v, u->n + 1, sizeof(*u->v));
		u->v[u->n++] = (struct pep_res){
			.jid = str_xdup(full),
			.ver = str_is_null(ver) ? NULL : str_xdup(ver),
		};
	} else {
		changed = false;
	}
	uv_mutex_unlock(&ilock);
	return changed;
}

static void user_free(struct pep_user *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].jid);
		free(u->v[i].ver);
	}
	free(u->v);
	free(u);
}

static void interest_remove(struct str owner, struct str full)
{
	uv_once(&ionce, interest_init);
	uv_mutex_lock(&ilock);
	struct pep_user *u = hmap_get(&interest, owner);
	struct pep_res *r = res_find(u, full);
	if (r != NULL) {
		free(r->jid);
		free(r->ver);
		*r = u->v[--u->n];
	}
	uv_mutex_unlock(&ilock);
}

static void interest_drop(struct str owner)
{
	uv_once(&ionce, interest_init);
	uv_mutex_lock(&ilock);
	struct pep_user *u = hmap_del(&interest, owner);
	uv_mutex_unlock(&ilock);
	if (u != NULL)
		user_free(u);
}

size_t pep_interested(struct arena *a, struct str owner, struct str node,
		      struct str **v_r)
{
	uv_once(&ionce, interest_init);
	char *feature = arena_printf(a, "%.*s+notify", STR_FMT(node));
	*v_r = NULL;
	if (feature == NULL)
		return 0;
	uv_mutex_lock(&ilock);
	struct pep_user *u = hmap_get(&interest, owner);
	size_t n = 0;
	struct str *v = u ? arena_zalloc(a, (u->n + 1) * sizeof(*v)) : NULL;
	for (size_t i = 0; v != NULL && i < u->n; i++)
		if (u->v[i].ver != NULL &&
		    caps_has_feature(str_c(u->v[i].ver), str_c(feature)))
			v[n++] = arena_strdup(a, str_c(u->v[i].jid));
	uv_mutex_unlock(&ilock);
	*v_r = v;
	return n;
}

static void free_user(struct str key, void *value, void *ud)
{
	(void)key, (void)ud;
	user_free(value);
}

static void pep_fini(void)
{
	uv_once(&ionce, interest_init);
	hmap_foreach(&interest, free_user, NULL);
	hmap_clear(&interest);
}

/* ---- last items when a resource becomes available ---- */

struct last_job {
	struct arena *a;
	struct ps_owner owner;
	struct jid to;   /* the full JID that became available */
	char *ver;
	struct xml_elem **events;
	size_t nevents;
};

static int last_work(struct store *st, void *ud)
{
	struct last_job *j = ud;
	struct ps_node **v;
	size_t n;
	if (ps_store_nodes(st, &j->owner, j->a, &v, &n) < 0)
		return -1;
	j->events = arena_zalloc(j->a, (n + 1) * sizeof(*j->events));
	if (j->events == NULL)
		return -1;
	struct str bare = jid_to_str(j->a, &j->to, true);
	for (size_t i = 0; i < n; i++) {
		if (v[i]->cfg.send_last != PS_SEND_LAST_ON_SUB_AND_PRESENCE)
			continue;
		char *f = arena_printf(j->a, "%.*s+notify",
				       STR_FMT(v[i]->name));
		if (f == NULL || !caps_has_feature(str_c(j->ver), str_c(f)))
			continue;
		int rc;
		struct ps_error e = ps_may_read(st, j->a, &j->owner, v[i],
						bare, &rc);
		if (rc < 0)
			return -1;
		if (e.err != STANZA_ERR_NONE)
			continue;
		struct ps_item *items;
		size_t ni;
		if (ps_store_items(st, &j->owner, v[i]->name, j->a, &items,
				   &ni) < 0)
			return -1;
		if (ni == 0)
			continue;
		struct ps_item *last = &items[0];
		j->events[j->nevents] = ps_event_items(j->a, v[i]->name,
						       &last, 1);
		if (j->events[j->nevents] != NULL)
			j->nevents++;
	}
	return 0;
}

static void last_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct last_job *j = ud;
	log_debug("pep: last items of %s@%s for %.*s: %zu (status %d)",
		  j->owner.user, j->owner.host,
		  STR_FMT(jid_to_str(j->a, &j->to, false)), j->nevents, status);
	if (status >= 0 && shard_self != NULL) {
		struct str to = jid_to_str(j->a, &j->to, false);
		for (size_t i = 0; i < j->nevents; i++)
			ps_send_event(&j->owner.jid, j->events[i], &to, 1);
	}
	free(j->ver);
	struct arena *a = j->a; /* j is in it */
	arena_destroy(&a);
}

static void owner_of(struct arena *a, const struct jid *bare,
		     struct ps_owner *o)
{
	o->host = arena_strdup(a, bare->domain).p;
	o->user = arena_strdup(a, bare->node).p;
	o->jid.node = arena_strdup(a, bare->node);
	o->jid.domain = arena_strdup(a, bare->domain);
	o->jid.resource = STR_NULL;
	o->service = false;
}

/* What caps_learn tells when the features of ver are known. */
struct seen {
	char *owner; /* bare */
	char *full;
	char *ver;
};

static void send_last_items(const struct seen *s)
{
	struct arena *a = arena_new(0);
	struct last_job *j = arena_zalloc(a, sizeof(*j));
	struct jid owner;
	const char *why;
	if (jid_parse(a, str_c(s->owner), &owner, &why) < 0 ||
	    jid_parse(a, str_c(s->full), &j->to, &why) < 0) {
		arena_destroy(&a);
		return;
	}
	j->a = a;
	owner_of(a, &owner, &j->owner);
	j->ver = xstrdup(s->ver);
	store_queue_keyed(server.store, str_c(s->owner), last_work, last_done,
			  j);
}

static void learned(bool ok, void *ud)
{
	struct seen *s = ud;
	/* shard_self is NULL at shutdown (iq_requests_fini). */
	if (ok && shard_self != NULL)
		send_last_items(s);
	free(s->owner);
	free(s->full);
	free(s->ver);
	free(s);
}

/* full's available presence (carrying caps c or none) reached owner. */
static void presence_seen(const struct jid *owner, const struct jid *full,
			  struct arena *a, struct caps_ref c)
{
	struct str os = jid_to_str(a, owner, true);
	struct str fs = jid_to_str(a, full, false);
	bool changed = interest_set(os, fs, c.ver);
	log_debug("pep: %.*s sees %.*s (caps %.*s%s)", STR_FMT(os),
		  STR_FMT(fs), STR_FMT(c.ver), changed ? ", new" : "");
	if (!changed || str_is_null(c.ver))
		return;
	struct seen *s = xcalloc(1, sizeof(*s));
	s->owner = str_xdup(os);
	s->full = str_xdup(fs);
	s->ver = str_xdup(c.ver);
	/* The question comes from the owner's host. */
	struct jid host = { .domain = owner->domain };
	caps_learn(&host, full, c, learned, s);
}

/* ---- hooks ---- */

static bool presence_kind(const struct stanza *st, bool *available_r)
{
	*available_r = st->type.len == 0;
	return *available_r || str_eq_c(st->type, "unavailable");
}

static enum hook_ret pep_presence_in(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	bool avail;
	if (!presence_kind(st, &avail) || st->from.resource.len == 0 ||
	    st->from.node.len == 0 || jid_bare_eq(&st->from, &st->to))
		return HOOK_PASS;
	struct str owner = jid_to_str(st->a, &st->to, true);
	if (!avail) {
		interest_remove(owner, jid_to_str(st->a, &st->from, false));
		return HOOK_PASS;
	}
	struct sess_ref ref;
	if (sessions_find_all(owner, &ref, 1) == 0)
		return HOOK_PASS; /* dropped anyway; see the top */
	presence_seen(&st->to, &st->from, st->a, caps_of(st->x));
	return HOOK_PASS;
}

static enum hook_ret pep_presence_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	bool avail;
	if (!presence_kind(st, &avail) ||
	    xml_attr_get(st->x, "to").p != NULL)
		return HOOK_PASS; /* directed presence: not a broadcast */
	if (avail)
		presence_seen(ctx->user, ctx->user, st->a, caps_of(st->x));
	else
		interest_remove(jid_to_str(st->a, ctx->user, true),
				jid_to_str(st->a, ctx->user, false));
	return HOOK_PASS;
}

static enum hook_ret pep_session_end(struct hook_ctx *ctx)
{
	struct arena *a = arena_new(0);
	struct str owner = jid_to_str(a, ctx->user, true);
	/* A new connection may have taken the resource over already. */
	if (!sessions_has(owner, ctx->user->resource))
		interest_remove(owner, jid_to_str(a, ctx->user, false));
	struct sess_ref ref;
	if (sessions_find_all(owner, &ref, 1) == 0)
		interest_drop(owner);
	arena_destroy(&a);
	return HOOK_PASS;
}

/* ---- iq ---- */

static int pep_work(struct store *st, struct iq_ctx *ctx)
{
	struct ps_req *r = ctx->ud;
	if (r->sync == NULL)
		return ps_run(st, ctx->st->a, r);
	/* A change and its conversions (pep_sync.h) in one transaction. */
	if (store_begin(st) < 0)
		return -1;
	if (ps_run(st, ctx->st->a, r) < 0) {
		store_rollback(st);
		return -1;
	}
	return store_commit(st);
}

static void pep_done(struct iq_ctx *ctx, int status)
{
	ps_answer(ctx, ctx->ud, status);
}

static struct ps_req *req_new(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct ps_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return NULL;
	owner_of(st->a, &st->to, &r->owner);
	r->from = st->from;
	r->from_bare = jid_to_str(st->a, &st->from, true);
	r->from_local = conf_find_host(server.conf, st->from.domain.p,
				       st->from.domain.len) >= 0;
	return r;
}

static enum hook_ret pep_handle(struct iq_ctx *ctx)
{
	struct ps_req *r = req_new(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	struct ps_error e = ps_parse(ctx, r);
	if (e.err != STANZA_ERR_NONE) {
		ps_reply_error(ctx, e);
		return HOOK_STOP;
	}
	struct str owner = jid_to_str(ctx->st->a, &ctx->st->to, true);
	if (r->node.p != NULL && r->op != PS_ITEMS)
		r->ncand = pep_interested(ctx->st->a, owner, r->node,
					  &r->cand);
	/* The account's own changes to converted nodes (pep_sync.h). */
	if (r->node.p != NULL && r->op != PS_ITEMS &&
	    pep_sync_node(r->node) && jid_bare_eq(&ctx->st->from,
						  &ctx->st->to)) {
		r->sync = pep_sync_new(ctx->st->a, &ctx->st->to);
		if (r->sync == NULL)
			return iq_reply_error(ctx,
					      STANZA_ERR_RESOURCE_CONSTRAINT);
	}
	ctx->ud = r;
	return iq_defer_keyed(ctx, owner, pep_work, pep_done);
}

/* disco#items on an account (XEP-0060 §5.2): the nodes the
 * requester may read. */
static int items_work(struct store *st, struct iq_ctx *ctx)
{
	struct ps_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	struct ps_node **v;
	size_t n;
	if (ps_store_nodes(st, &r->owner, a, &v, &n) < 0)
		return -1;
	r->reply = iq_payload_new(ctx, NS_DISCO_ITEMS, "query");
	if (r->reply == NULL)
		return -1;
	struct str owner = jid_to_str(a, &r->owner.jid, true);
	for (size_t i = 0; i < n; i++) {
		int rc;
		struct ps_error e = ps_may_read(st, a, &r->owner, v[i],
						r->from_bare, &rc);
		if (rc < 0)
			return -1;
		if (e.err != STANZA_ERR_NONE)
			continue;
		struct xml_elem *it = xml_add_child(a, r->reply,
						    STR_LIT(NS_DISCO_ITEMS),
						    STR_LIT("item"));
		if (it == NULL)
			return -1;
		xml_attr_set(a, it, "jid", owner);
		xml_attr_set(a, it, "node", v[i]->name);
		if (v[i]->cfg.title.len > 0)
			xml_attr_set(a, it, "name", v[i]->cfg.title);
	}
	return 0;
}

static enum hook_ret pep_disco_items(struct iq_ctx *ctx)
{
	if (xml_attr_get(ctx->payload, "node").p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct ps_req *r = req_new(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	ctx->ud = r;
	return iq_defer_keyed(ctx, jid_to_str(ctx->st->a, &ctx->st->to, true),
			      items_work, pep_done);
}

static const struct iq_route pep_iq[] = {
	{ IQ_GET | IQ_SET, TO_BARE, NS_PUBSUB, "pubsub", pep_handle },
	{ IQ_GET | IQ_SET, TO_BARE, NS_PUBSUB_OWNER, "pubsub", pep_handle },
	{ IQ_GET, TO_BARE, NS_DISCO_ITEMS, "query", pep_disco_items },
	{ 0 },
};

static const struct hook pep_hooks[] = {
	{ EV_PRESENCE_IN, 40, pep_presence_in },
	{ EV_PRESENCE_OUT, 40, pep_presence_out },
	{ EV_SESSION_END, 40, pep_session_end },
	{ 0 },
};

/* XEP-0163 §1 and XEP-0060 §10: what the account's pubsub service does. */
static const char *const pep_account_features[] = {
	NS_PUBSUB,
	NS_PUBSUB "#access-open",
	NS_PUBSUB "#access-presence",
	NS_PUBSUB "#access-roster",
	NS_PUBSUB "#access-whitelist",
	NS_PUBSUB "#auto-create",
	NS_PUBSUB "#config-node",
	NS_PUBSUB "#create-and-configure",
	NS_PUBSUB "#create-nodes",
	NS_PUBSUB "#delete-items",
	NS_PUBSUB "#delete-nodes",
	NS_PUBSUB "#filtered-notifications",
	NS_PUBSUB "#last-published",
	NS_PUBSUB "#manage-affiliations",
	NS_PUBSUB "#modify-affiliations",
	NS_PUBSUB "#multi-items",
	NS_PUBSUB "#persistent-items",
	NS_PUBSUB "#presence-notifications",
	NS_PUBSUB "#publish",
	NS_PUBSUB "#publish-options",
	NS_PUBSUB "#purge-nodes",
	NS_PUBSUB "#retract-items",
	NS_PUBSUB "#retrieve-affiliations",
	NS_PUBSUB "#retrieve-default",
	NS_PUBSUB "#retrieve-items",
	NULL,
};

const struct module mod_pep = {
	.name = "pep",
	.spec = "XEP-0163",
	.iq = pep_iq,
	.hooks = pep_hooks,
	.store = &pubsub_schema,
	/* The server advertises PEP (XEP-0163 §1); the account lists the
	 * pubsub features. */
	.features = (const char *const[]){ NS_PUBSUB "#publish-options",
					   NULL },
	.account_identities = (const struct disco_identity[]){
		{ "pubsub", "pep", NULL },
		{ 0 },
	},
	.account_features = pep_account_features,
	.fini = pep_fini,
};
