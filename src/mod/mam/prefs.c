/*
 * prefs.c - XEP-0441 archiving preferences (urn:xmpp:mam:2 <prefs/>):
 * get and set on the account's bare JID, stored in mam_prefs (the keyval
 * shape), and cached for routing.
 *
 * Routing decides on any shard without a storage job, so every account
 * that has preferences (only those: `always` with empty lists is the
 * server's default and kept as no entry) is in one map behind a
 * read-write lock, loaded at start-up and replaced after a set is
 * stored. A JID in `never` wins over `always`; a listed bare JID covers
 * its resources, a full JID only itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../../core/brlock.h"
#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/hmap.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/xmalloc.h"
#include "../../store/mam.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "../../xmpp/ns.h"
#include "mam-private.h"
#include "request.h"

#define PREFS_JIDS_MAX 1000 /* JIDs in the always and never lists */

enum mam_default { DEF_ALWAYS, DEF_NEVER, DEF_ROSTER };
static const char *const default_names[] = { "always", "never", "roster" };

struct prefs {
	enum mam_default def;
	struct hmap always, never; /* normalised JID -> (void *)1 */
};

static struct brlock prefs_lock;
static struct hmap prefs_cache; /* account bare JID -> struct prefs */
static void *const present = (void *)1;

static void prefs_free(struct prefs *p)
{
	if (p == NULL)
		return;
	hmap_clear(&p->always);
	hmap_clear(&p->never);
	free(p);
}

static void prefs_free_entry(struct str key, void *value, void *ud)
{
	(void)key;
	(void)ud;
	prefs_free(value);
}

/* Whether set lists j, as a full JID or by its bare JID. */
static bool listed(const struct hmap *set, struct arena *a,
		   const struct jid *j)
{
	if (set->count == 0)
		return false;
	return hmap_get(set, jid_to_str(a, j, true)) != NULL ||
	       (j->resource.len > 0 &&
		hmap_get(set, jid_to_str(a, j, false)) != NULL);
}

/* What account's preferences say about contact (a is scratch space). */
enum mam_decision mam_decide(struct arena *a, struct str account,
			    const struct jid *contact)
{
	enum mam_decision d = MAM_ARCHIVE;
	brlock_rdlock(&prefs_lock);
	const struct prefs *p = hmap_get(&prefs_cache, account);
	if (p == NULL)
		d = MAM_ARCHIVE;
	else if (listed(&p->never, a, contact))
		d = MAM_SKIP; /* never wins over always: the safer reading */
	else if (listed(&p->always, a, contact))
		d = MAM_ARCHIVE;
	else
		d = p->def == DEF_ALWAYS ? MAM_ARCHIVE
		    : p->def == DEF_NEVER ? MAM_SKIP
					  : MAM_ASK_ROSTER;
	brlock_rdunlock(&prefs_lock);
	return d;
}

/* Reads <prefs/> into a new struct prefs (NULL: malformed, or the
 * a is full). */
static struct prefs *prefs_read(struct arena *a, const struct xml_elem *x)
{
	struct str def = xml_attr_get(x, "default");
	size_t i;
	for (i = 0; i < ARRAY_SIZE(default_names); i++)
		if (str_eq_c(def, default_names[i]))
			break;
	if (i == ARRAY_SIZE(default_names))
		return NULL;
	struct prefs *p = xcalloc(1, sizeof(*p));
	p->def = (enum mam_default)i;
	size_t n = 0;
	xml_foreach_child(list, x) {
		if (!str_eq_c(list->ns, NS_MAM))
			continue;
		struct hmap *set = str_eq_c(list->name, "always") ? &p->always
				   : str_eq_c(list->name, "never") ? &p->never
								   : NULL;
		if (set == NULL)
			continue;
		xml_foreach_child(j, list) {
			if (!str_eq_c(j->name, "jid") ||
			    !str_eq_c(j->ns, NS_MAM))
				continue;
			struct jid jid;
			const char *why;
			if (++n > PREFS_JIDS_MAX ||
			    jid_parse(a, xml_text(a, j), &jid, &why) < 0) {
				prefs_free(p);
				return NULL;
			}
			hmap_put(set, jid_to_str(a, &jid, false), present);
		}
	}
	return p;
}

struct prefs_xml_ctx {
	struct arena *a;
	struct xml_elem *list;
};

static void add_jid(struct str key, void *value, void *ud)
{
	(void)value;
	struct prefs_xml_ctx *c = ud;
	struct xml_elem *j = xml_add_child(c->a, c->list, STR_LIT(NS_MAM),
					   STR_LIT("jid"));
	if (j != NULL)
		xml_add_text(c->a, j, key);
}

/* <prefs/> for p (NULL: the server's default, always). */
static struct xml_elem *prefs_xml(struct arena *a, const struct prefs *p)
{
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_MAM), STR_LIT("prefs"));
	if (x == NULL)
		return NULL;
	xml_attr_set(a, x, "default",
		     str_c(default_names[p ? p->def : DEF_ALWAYS]));
	struct prefs_xml_ctx c = { .a = a };
	c.list = xml_add_child(a, x, STR_LIT(NS_MAM), STR_LIT("always"));
	if (p != NULL && c.list != NULL)
		hmap_foreach(&p->always, add_jid, &c);
	c.list = xml_add_child(a, x, STR_LIT(NS_MAM), STR_LIT("never"));
	if (p != NULL && c.list != NULL)
		hmap_foreach(&p->never, add_jid, &c);
	return x;
}

static bool prefs_is_default(const struct prefs *p)
{
	return p->def == DEF_ALWAYS && p->always.count == 0 &&
	       p->never.count == 0;
}

/* Puts p (owned from now on; NULL or default: none) in the cache. */
static void prefs_cache_set(struct str account, struct prefs *p)
{
	if (p != NULL && prefs_is_default(p)) {
		prefs_free(p);
		p = NULL;
	}
	brlock_wrlock(&prefs_lock);
	struct prefs *old = p != NULL ? hmap_put(&prefs_cache, account, p)
				      : hmap_del(&prefs_cache, account);
	brlock_wrunlock(&prefs_lock);
	prefs_free(old);
}


enum hook_ret mam_prefs_get(struct iq_ctx *ctx)
{
	if (!mam_own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct str account = jid_to_str(ctx->st->a, &ctx->st->to, true);
	brlock_rdlock(&prefs_lock);
	struct xml_elem *x =
		prefs_xml(ctx->st->a, hmap_get(&prefs_cache, account));
	brlock_rdunlock(&prefs_lock);
	if (x == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_reply_result(ctx, x);
}

struct prefs_job {
	struct prefs *p; /* the new preferences (owned) */
	struct buf value;
};

static int prefs_set_work(struct store *store, struct iq_ctx *ctx)
{
	struct prefs_job *j = ctx->ud;
	const char *host = arena_strdup(ctx->st->a, ctx->st->to.domain).p;
	const char *user = arena_strdup(ctx->st->a, ctx->st->to.node).p;
	if (prefs_is_default(j->p))
		return store_kv_set(store, MAM_PREFS_TABLE, host, user, NULL,
				    0);
	return store_kv_set(store, MAM_PREFS_TABLE, host, user, j->value.data,
			    j->value.len);
}

static void prefs_set_done(struct iq_ctx *ctx, int status)
{
	struct prefs_job *j = ctx->ud; /* in the request's arena */
	buf_reset(&j->value);
	if (status < 0) {
		prefs_free(j->p); /* before the reply frees j */
		iq_done_error(ctx, status, STANZA_ERR_NONE);
		return;
	}
	struct xml_elem *x = prefs_xml(ctx->st->a, j->p);
	prefs_cache_set(jid_to_str(ctx->st->a, &ctx->st->to, true), j->p);
	iq_reply_result(ctx, x);
}

enum hook_ret mam_prefs_set(struct iq_ctx *ctx)
{
	if (!mam_own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct arena *a = ctx->st->a;
	struct prefs_job *j = arena_zalloc(a, sizeof(*j));
	if (j == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	j->p = prefs_read(a, ctx->payload);
	if (j->p == NULL)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	/* Stored as we would answer it: normalised, nothing else kept. */
	struct xml_elem *x = prefs_xml(a, j->p);
	if (x == NULL || xml_serialize(&j->value, x, STR_LIT(NS_CLIENT)) < 0) {
		prefs_free(j->p);
		buf_reset(&j->value);
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	}
	ctx->ud = j;
	struct str key = jid_to_str(a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, prefs_set_work, prefs_set_done);
}

/* ---- start and stop ---- */

static int load_prefs(const char *host, const char *user, const void *value,
		      size_t len, void *ud)
{
	(void)ud;
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_parse_elem(a, STR(value, len),
					    STR_LIT(NS_CLIENT));
	struct prefs *p = x != NULL ? prefs_read(a, x) : NULL;
	char key[JID_TEXT_MAX];
	int n = snprintf(key, sizeof(key), "%s@%s", user, host);
	if (p == NULL || n < 0 || (size_t)n >= sizeof(key))
		log_warnx("mam: unreadable preferences of %s@%s ignored", user,
			  host);
	else
		prefs_cache_set(STR(key, (size_t)n), p);
	arena_destroy(&a);
	return 0;
}

int mam_prefs_start(struct store *st)
{
	brlock_init(&prefs_lock, server.nshards);
	return mam_store_prefs_all(st, load_prefs, NULL);
}

void mam_prefs_stop(void)
{
	brlock_wrlock(&prefs_lock);
	hmap_foreach(&prefs_cache, prefs_free_entry, NULL);
	hmap_clear(&prefs_cache);
	brlock_wrunlock(&prefs_lock);
	brlock_destroy(&prefs_lock);
}
