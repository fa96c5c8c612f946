/*
 * mod_roster.c - RFC 6121 §2: roster get, set and remove, roster pushes,
 * and XEP-0237 roster versioning.
 *
 * Storage: the map table `roster` (key: the contact's bare JID; value: the
 * item as XML in jabber:iq:roster, with the subscription state of
 * subscription.h and an internal pending-in flag) and the keyval table
 * `roster_version` (a decimal counter bumped by every change). Every change
 * is one transaction on the thread pool, so requests from any shard for
 * the same account serialise in SQLite and no shard caches a roster.
 *
 * Subscription presence (RFC 6121 §3) and presence broadcast (§4) will act
 * on these items through subscription.h; this file gives clients their
 * roster. Versioning: a request whose ver is the current one gets an empty
 * result (§2.6.3); any other gets the whole roster with the current ver.
 * Pushes go to the account's interested resources: those that requested
 * the roster (§2.1.6).
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
	struct str client_ver;   /* get: the ver the client has, or NULL */
	struct xml_elem *item;   /* set: the item asked for */
	bool remove;
	/* Results of the work: */
	bool unchanged;          /* get: the client's ver is current */
	struct xml_elem *query;  /* get: the reply payload */
	struct xml_elem *pushed; /* set: the item to push */
	struct sub_item removed_state; /* remove: the state it had */
	uint64_t ver;
	enum stanza_err err;
};

static const char *const roster_migrations[] = {
	"CREATE TABLE roster (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key))",
	"CREATE TABLE roster_version (host TEXT NOT NULL, user TEXT NOT NULL, "
	"value BLOB NOT NULL, PRIMARY KEY (host, user))",
	NULL,
};

static const struct store_schema roster_schema = {
	.name = "roster",
	.migrations = roster_migrations,
	.user_tables = (const char *const[]){ "roster", "roster_version",
					      NULL },
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

static int get_work(struct store *st, struct iq_ctx *ctx)
{
	struct roster_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	if (roster_version_load(st, r->host, r->user, &r->ver) < 0)
		return -1;
	char ver[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, r->ver);
	if (r->client_ver.p != NULL && str_eq_c(r->client_ver, ver)) {
		r->unchanged = true;
		return 0;
	}
	r->query = xml_elem_new(a, STR_LIT(NS_ROSTER), STR_LIT("query"));
	if (r->client_ver.p != NULL)
		xml_attr_set(a, r->query, "ver", str_c(ver));
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
		struct buf out = { .max = ROSTER_ITEM_MAX };
		bool fits = xml_serialize(&out, it, STR_LIT(NS_ROSTER)) == 0;
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

static void get_done(struct iq_ctx *ctx, int status)
{
	struct roster_req *r = ctx->ud;
	if (status < 0) {
		iq_reply_error(ctx, STANZA_ERR_INTERNAL_SERVER_ERROR);
		return;
	}
	/* From now on this resource gets pushes (§2.1.6): marked before the
	 * result so no change falls between the two. */
	struct stanza *st = ctx->st;
	sessions_set_interested(jid_to_str(st->a, &st->from, true),
				st->from.resource);
	iq_reply_result(ctx, r->unchanged ? NULL : r->query);
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
	return iq_defer_keyed(ctx, account_key(ctx), get_work, get_done);
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
