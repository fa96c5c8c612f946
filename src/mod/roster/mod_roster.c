/*
 * mod_roster.c - RFC 6121 §2: roster get, set and remove, roster pushes,
 * and roster versioning (RFC 6121 §2.6, XEP-0237).
 *
 * Storage (roster_store.c): the map table `roster` (key: the contact's
 * bare JID; value: the item as XML in jabber:iq:roster, with the
 * subscription state of subscription.h, an internal pending-in flag and
 * the version of its last change) plus the version counter, removal
 * tombstones and history floor of roster versioning. Every change is one
 * transaction on the thread pool, so requests from any shard for the same
 * account serialise in SQLite and no shard caches a roster.
 *
 * Roster get (§2.6.3): no ver attribute gets the full roster without ver
 * (a client that does not version, RFC 3921 behaviour); the current ver
 * gets an empty result; an older ver the history still covers gets an
 * empty result and then one push per item changed or removed since, in
 * version order, the last one carrying the current version; anything else
 * (ver='', garbage, a version we never gave or no longer cover) gets the
 * full roster with the current ver. Pushes go to the account's interested
 * resources: those that requested the roster (§2.1.6).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/conf.h"
#include "../../router/sessions.h"
#include "../../xmpp/ns.h"
#include "../module.h"
#include "../../store/shapes.h"
#include "roster-private.h"

#define NS_ROSTERVER "urn:xmpp:features:rosterver"

/* The per-request state across iq_defer, in the request's arena. */
struct roster_req {
	const char *host, *user; /* NUL-terminated in the arena */
	struct arena *arena;     /* the request's */
	struct str client_ver;   /* get: the ver the client has, or NULL */
	struct xml_elem *item;   /* set: the item asked for */
	bool remove;
	/* Results of the work: */
	bool unchanged;          /* get: empty result (then the changes) */
	struct xml_elem *query;  /* get: the reply payload */
	struct roster_change *changes; /* get: the interim pushes */
	size_t n_changes;
	struct xml_elem *pushed; /* set: the item to push */
	struct sub_item removed_state; /* remove: the state it had */
	uint64_t ver;
	enum stanza_err err;
};

/* ---- storage (thread pool) ---- */

struct collect {
	struct arena *a;
	struct xml_elem *query;
};

static int collect_item(struct xml_elem *it, void *ud)
{
	struct collect *c = ud;
	/* Contacts known only by a pending request are not roster items
	 * (RFC 6121 §3.1.3: no item until the user acts). */
	if (roster_item_state(it).in_roster)
		xml_append_elem(c->query, roster_item_client(c->a, it));
	return 0;
}

/* The client's ver is one we can answer with pushes: the current one or
 * an older one the history covers. */
static int get_incremental(struct store *st, struct roster_req *r)
{
	uint64_t since;
	if (roster_ver_parse(r->client_ver, &since) < 0 || since > r->ver)
		return 1;
	if (since == r->ver) {
		r->unchanged = true;
		return 0;
	}
	int rc = roster_changes_since(st, r->host, r->user, since,
				      r->arena, &r->changes, &r->n_changes);
	if (rc != 0)
		return rc;
	/* Once it has them all the client is at the current version, even
	 * if the newest change was a bump no item kept (a roster set that
	 * changed nothing clients see). */
	if (r->n_changes > 0)
		r->changes[r->n_changes - 1].ver = r->ver;
	r->unchanged = true;
	return 0;
}

static int get_work(struct store *st, struct iq_ctx *ctx)
{
	struct roster_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	r->arena = a;
	if (roster_version_load(st, r->host, r->user, &r->ver) < 0)
		return -1;
	if (r->client_ver.p != NULL) {
		int rc = get_incremental(st, r);
		if (rc <= 0)
			return rc;
	}
	r->query = xml_elem_new(a, STR_LIT(NS_ROSTER), STR_LIT("query"));
	if (r->client_ver.p != NULL)
		xml_attr_set(a, r->query, "ver",
			     str_c(arena_printf(a, "%" PRIu64, r->ver)));
	struct collect c = { a, r->query };
	return roster_each(st, r->host, r->user, a, collect_item, &c);
}

/* Keeps the stored subscription state, takes name and groups from the
 * client (RFC 6121 §2.1.2.5: clients cannot set subscription states). */
static struct xml_elem *merge(struct arena *a, struct xml_elem *stored,
			      struct xml_elem *asked)
{
	struct xml_elem *it = xml_copy(a, asked);
	struct sub_item s = roster_item_state(stored);
	s.in_roster = true;
	roster_item_set_state(a, it, s);
	return it;
}

static int set_locked(struct store *st, struct iq_ctx *ctx)
{
	struct roster_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	const char *key = xml_attr_get(r->item, "jid").p;
	struct xml_elem *stored;
	int rc = roster_item_load(st, r->host, r->user, key, a, &stored);
	if (rc < 0)
		return -1;
	if (r->remove) {
		if (stored == NULL || !roster_item_state(stored).in_roster) {
			r->err = STANZA_ERR_ITEM_NOT_FOUND;
			return 0;
		}
		r->removed_state = roster_item_state(stored);
		r->pushed = xml_elem_new(a, STR_LIT(NS_ROSTER), STR_LIT("item"));
		xml_attr_set(a, r->pushed, "jid", str_c(key));
		xml_attr_set(a, r->pushed, "subscription", STR_LIT("remove"));
		if (roster_item_save(st, r->host, r->user, key, NULL) < 0)
			return -1;
	} else {
		struct xml_elem *it = merge(a, stored, r->item);
		/* The store adds internal attributes and may keep a request:
		 * ROSTER_ITEM_MAX leaves room for both. */
		struct buf out = { .max = ROSTER_CLIENT_MAX };
		bool fits = xml_serialize(&out, roster_item_client(a, it),
					  STR_LIT(NS_ROSTER)) == 0;
		buf_reset(&out);
		if (!fits) {
			r->err = STANZA_ERR_NOT_ACCEPTABLE;
			return 0;
		}
		if (roster_item_save(st, r->host, r->user, key, it) < 0)
			return -1;
		r->pushed = roster_item_client(a, it);
	}
	return roster_version_bump(st, r->host, r->user, &r->ver);
}

static int set_work(struct store *st, struct iq_ctx *ctx)
{
	if (store_begin(st) < 0)
		return -1;
	int rc = set_locked(st, ctx);
	struct roster_req *r = ctx->ud;
	if (rc < 0 || r->err != STANZA_ERR_NONE) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

/* ---- on the shard ---- */

/* The interim pushes (§2.6.3) go to the requesting resource only, after
 * the empty result; copied out of the request's arena, which the reply
 * takes. */
static void get_done_pushes(struct iq_ctx *ctx, struct roster_req *r)
{
	struct arena *a = arena_new(0);
	struct jid user = ctx->st->from;
	user.node = arena_strdup(a, user.node);
	user.domain = arena_strdup(a, user.domain);
	user.resource = arena_strdup(a, user.resource);
	size_t n = r->n_changes;
	struct roster_change *ch = arena_alloc(a, (n ? n : 1) * sizeof(*ch));
	BUG_ON(ch == NULL);
	for (size_t i = 0; i < n; i++)
		ch[i] = (struct roster_change){ r->changes[i].ver,
			xml_copy(a, r->changes[i].item) };
	iq_reply_result(ctx, NULL);
	for (size_t i = 0; i < n; i++)
		roster_push_to(&user, ch[i].item, ch[i].ver);
	arena_destroy(&a);
}

static void get_done(struct iq_ctx *ctx, int status)
{
	struct roster_req *r = ctx->ud;
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	/* From now on this resource gets pushes (§2.1.6): marked before the
	 * result so no change falls between the two. Jobs of the account
	 * run in order, so no live push can overtake the interim ones. */
	struct stanza *st = ctx->st;
	sessions_set_interested(jid_to_str(st->a, &st->from, true),
				st->from.resource);
	if (r->unchanged)
		get_done_pushes(ctx, r);
	else
		iq_reply_result(ctx, r->query);
}

static void set_done(struct iq_ctx *ctx, int status)
{
	struct roster_req *r = ctx->ud;
	if (iq_done_error(ctx, status, r->err))
		return;
	/* The pushes go out before the result (RFC 6121 §2.3.2 example);
	 * copy what they need out of the request's arena first. */
	struct jid user = ctx->st->from;
	struct arena *a = arena_new(0);
	user.node = arena_strdup(a, user.node);
	user.domain = arena_strdup(a, user.domain);
	user.resource = STR_NULL;
	struct xml_elem *item = xml_copy(a, r->pushed);
	uint64_t ver = r->ver;
	struct sub_item gone = r->removed_state;
	bool removed = r->remove; /* r goes with the reply's arena */
	roster_push(&user, item, ver);
	iq_reply_result(ctx, NULL);
	if (removed)
		roster_removed(&user, xml_attr_get(item, "jid"), gone);
	arena_destroy(&a);
}

/* Only the account itself may see and change its roster (§2.1.5). */
static struct roster_req *request(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (!jid_bare_eq(&st->from, &st->to))
		return NULL;
	struct roster_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->host = arena_strdup(st->a, st->to.domain).p;
	r->user = arena_strdup(st->a, st->to.node).p;
	ctx->ud = r;
	return r;
}

/* Roster jobs of one account run in order with its presence jobs
 * (mod_presence.c), so pushes leave in version order. */
static struct str account_key(struct iq_ctx *ctx)
{
	return jid_to_str(ctx->st->a, &ctx->st->to, true);
}

static enum hook_ret roster_get(struct iq_ctx *ctx)
{
	struct roster_req *r = request(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	r->client_ver = xml_attr_get(ctx->payload, "ver");
	return iq_defer_keyed_read(ctx, account_key(ctx), get_work, get_done);
}

/* RFC 6121 §2.3.3: one item, a valid JID, no repeated group, sane sizes. */
static enum stanza_err check_item(struct iq_ctx *ctx, struct xml_elem **it_r)
{
	if (xml_child_count(ctx->payload) != 1)
		return STANZA_ERR_BAD_REQUEST;
	struct xml_elem *it = xml_child(ctx->payload, NS_ROSTER, "item");
	if (it == NULL)
		return STANZA_ERR_BAD_REQUEST;
	struct jid j;
	const char *why;
	struct str jid = xml_attr_get(it, "jid");
	if (jid.p == NULL || jid_parse(ctx->st->a, jid, &j, &why) < 0 ||
	    j.resource.len > 0)
		return STANZA_ERR_BAD_REQUEST;
	/* Store by the normalised bare JID. */
	xml_attr_set(ctx->st->a, it, "jid", jid_to_str(ctx->st->a, &j, true));
	if (xml_attr_get(it, "name").len > 1023)
		return STANZA_ERR_NOT_ACCEPTABLE;
	size_t n = 0;
	xml_foreach_child(g, it)
	{
		if (!str_eq_c(g->name, "group"))
			continue;
		struct str t = xml_text(ctx->st->a, g);
		if (t.len == 0 || t.len > 1023)
			return STANZA_ERR_NOT_ACCEPTABLE;
		xml_foreach_child(h, it)
		{
			if (h == g)
				break;
			if (str_eq_c(h->name, "group") &&
			    str_eq(xml_text(ctx->st->a, h), t))
				return STANZA_ERR_BAD_REQUEST;
		}
		if (++n > 64)
			return STANZA_ERR_NOT_ACCEPTABLE;
	}
	*it_r = it;
	return STANZA_ERR_NONE;
}

static enum hook_ret roster_set(struct iq_ctx *ctx)
{
	struct roster_req *r = request(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	enum stanza_err err = check_item(ctx, &r->item);
	if (err != STANZA_ERR_NONE)
		return iq_reply_error(ctx, err);
	r->remove = str_eq_c(xml_attr_get(r->item, "subscription"), "remove");
	return iq_defer_keyed(ctx, account_key(ctx), set_work, set_done);
}

static const struct iq_route roster_iq[] = {
	{ IQ_GET, TO_BARE, NS_ROSTER, "query", roster_get },
	{ IQ_SET, TO_BARE, NS_ROSTER, "query", roster_set },
	{ 0 },
};

static void roster_features(struct buf *b, enum feature_phase phase,
			    size_t host_idx)
{
	(void)host_idx;
	if (phase == FEATURES_BOUND)
		buf_append_c(b, "<ver xmlns='" NS_ROSTERVER "'/>");
}

const struct module mod_roster = {
	.name = "roster",
	.spec = "RFC 6121 §2, XEP-0237",
	.iq = roster_iq,
	.store = &roster_schema,
	.stream_features = roster_features,
};
