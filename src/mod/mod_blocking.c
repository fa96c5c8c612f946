/*
 * mod_blocking.c - XEP-0191: Blocking Command. The list (get, block,
 * unblock, unblock-all, pushes to every bound resource) and its
 * enforcement on messages, presence and iq (§3.3-§3.5, matching per §3.4
 * and XEP-0016 §2.1: full JID, bare JID, domain/resource, domain).
 *
 * Storage: the map table `blocklist`, key the normalised JID as given
 * (bare, full or domain), value empty. Hooks need the list synchronously,
 * so accounts with a bound session have it cached in memory (a global map
 * bare JID -> set, behind a rwlock): loaded by a keyed job at the first
 * bind, dropped when the last session ends (a count of binds minus ends,
 * both under the write lock, so a bind racing an end cannot lose it),
 * changed by block/unblock after they are stored.
 *
 * While the load runs the account is "loading": a stanza to or from it is
 * held in a keyed job (work NULL) queued behind the load, then routed
 * again once the list is known, so nothing passes unchecked and nothing is
 * dropped on a guess. If the load fails the list is taken as empty (logged).
 *
 * An account with no bound session has no cache. A stanza for it that
 * matters (needs_check()) pins the list: it is loaded as at bind, the
 * stanza held behind the load and checked, then the list is dropped again.
 *
 * Most lists are empty. An account whose load found its list empty, with
 * no block queued since, is known empty (a set in memory, empty at start,
 * one entry per such account): a bind needs no load when nothing of the
 * account is queued (see pin()). A block forgets that before its job is
 * queued; a load queued before any block since it was queued can prove it
 * (bl_blocks counts blocks). Stanzas for an account with no session load
 * the list as before.
 * A user's own resources are never blocked from each other, nor is the
 * user's own server.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../core/brlock.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "../router/sessions.h"
#include "../store/shapes.h"
#include "../xmpp/ns.h"
#include "module.h"
#include "roster/roster-private.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define BLOCK_TABLE "blocklist"
#define BLOCK_MAX 1000       /* JIDs in one account's list */
#define BLOCK_MAX_ITEMS 256  /* items in one block/unblock request */

/* ---- the cache ---- */

struct bl_entry {
	unsigned pins;     /* bound sessions, plus stanzas held for a check */
	bool loaded;       /* false: the load job has not finished */
	uint64_t gen;      /* which load job fills it */
	struct hmap items; /* normalised JID -> (void *)1 */
};

enum bl_state { BL_PASS, BL_LOADING, BL_BLOCKED, BL_UNKNOWN };

static struct brlock bl_lock;
static uv_once_t bl_once = UV_ONCE_INIT;
static struct hmap bl_cache; /* bare JID -> struct bl_entry */
static uint64_t bl_gen;      /* under the write lock */
static struct hmap bl_empty; /* bare JID -> present: known empty */
/*
 * Stanzas held for an owner and not yet released, by owner (bare JID ->
 * count as a pointer). While any wait, later stanzas of that owner wait
 * behind them even when the list is loaded: the held ones may still sit
 * in the account's queue behind other jobs (a bind queues some) after the
 * load finished, and a later stanza passing at once would overtake them.
 */
static struct hmap bl_held;
/* The stanza being released (held_done) and the owner it waited for: it
 * is the one the others wait behind. */
static _Thread_local const struct stanza *releasing;
static _Thread_local const char *releasing_owner;
static uint64_t bl_blocks;   /* blocks queued; under the write lock */

static void bl_init(void)
{
	brlock_init(&bl_lock, server.nshards);
}

static void *const present = (void *)1;

static void entry_free(struct bl_entry *e)
{
	hmap_clear(&e->items);
	free(e);
}

/* Appends n bytes of p at *w (room checked by the caller). */
static char *put(char *w, const char *p, size_t n)
{
	memcpy(w, p, n);
	return w + n;
}

/* True if set holds one of j's XEP-0016 §2.1 forms. Most lists are
 * empty, and this runs twice for every stanza: no formatting for those. */
static bool set_matches(const struct hmap *set, const struct jid *j)
{
	if (set->count == 0)
		return false;
	char s[JID_TEXT_MAX];
	const struct str node = j->node, dom = j->domain, res = j->resource;
	if (node.len + dom.len + res.len + 2 > sizeof(s))
		return false; /* not a JID of ours; none in the set is longer */
	char *w;
	if (node.len > 0 && res.len > 0) {
		w = put(put(put(put(put(s, node.p, node.len), "@", 1), dom.p,
				dom.len), "/", 1), res.p, res.len);
		if (hmap_get(set, STR(s, (size_t)(w - s))) != NULL)
			return true;
	}
	if (node.len > 0) {
		w = put(put(put(s, node.p, node.len), "@", 1), dom.p, dom.len);
		if (hmap_get(set, STR(s, (size_t)(w - s))) != NULL)
			return true;
	}
	if (res.len > 0) {
		w = put(put(put(s, dom.p, dom.len), "/", 1), res.p, res.len);
		if (hmap_get(set, STR(s, (size_t)(w - s))) != NULL)
			return true;
	}
	return hmap_get(set, dom) != NULL;
}

/* Whether the cached list of owner (a bare JID string) blocks other;
 * BL_UNKNOWN when owner's list is not cached. With st, BL_LOADING also
 * while stanzas held for owner wait (bl_held), unless st is the one
 * being released for owner. */
static enum bl_state bl_check(struct str owner, const struct jid *other,
			      const struct stanza *st)
{
	uv_once(&bl_once, bl_init);
	enum bl_state r = BL_PASS;
	brlock_rdlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, owner);
	if (e == NULL)
		r = BL_UNKNOWN;
	else if (!e->loaded)
		r = BL_LOADING;
	else if (e != NULL && set_matches(&e->items, other))
		r = BL_BLOCKED;
	if (st != NULL && r != BL_LOADING && bl_held.count > 0 &&
	    hmap_get(&bl_held, owner) != NULL &&
	    !(st == releasing && str_eq_c(owner, releasing_owner)))
		r = BL_LOADING;
	brlock_rdunlock(&bl_lock);
	return r;
}

/* Counts a stanza held for owner (delta 1) or released (-1). */
static void held_count(struct str owner, int delta)
{
	brlock_wrlock(&bl_lock);
	uintptr_t n = (uintptr_t)hmap_get(&bl_held, owner);
	if (delta > 0)
		hmap_put(&bl_held, owner, (void *)(n + 1));
	else if (ALWAYS(n > 0) && n > 1)
		hmap_put(&bl_held, owner, (void *)(n - 1));
	else
		hmap_del(&bl_held, owner);
	if (bl_held.count == 0)
		hmap_clear(&bl_held); /* nothing left at shutdown */
	brlock_wrunlock(&bl_lock);
}

/* Adds (or removes) keys in the cached list of owner, if it is loaded. */
static void cache_update(struct str owner, const struct str *keys, size_t n,
			 bool add)
{
	brlock_wrlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, owner);
	if (e != NULL && e->loaded)
		for (size_t i = 0; i < n; i++) {
			if (add)
				hmap_put(&e->items, keys[i], present);
			else
				hmap_del(&e->items, keys[i]);
		}
	brlock_wrunlock(&bl_lock);
}

static void cache_clear(struct str owner)
{
	brlock_wrlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, owner);
	if (e != NULL && e->loaded)
		hmap_clear(&e->items);
	brlock_wrunlock(&bl_lock);
}

/* ---- storage (thread pool) ---- */

static const char *const blocking_migrations[] = {
	"CREATE TABLE blocklist (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key)) WITHOUT ROWID",
	NULL,
};

static const struct store_schema blocking_schema = {
	.name = "blocking",
	.migrations = blocking_migrations,
	.user_tables = (const char *const[]){ BLOCK_TABLE, NULL },
};

/* A list of JID strings in an arena. */
struct jidvec {
	struct arena *a;
	struct str *v;
	size_t n, cap;
	bool failed; /* an add ran out of memory: the list is partial */
};

static int vec_add(struct jidvec *v, struct str s)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		struct str *nv = arena_alloc(v->a, cap * sizeof(*nv));
		if (nv == NULL) {
			v->failed = true;
			return -1;
		}
		if (v->n)
			memcpy(nv, v->v, v->n * sizeof(*nv));
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n] = arena_strdup(v->a, s);
	if (v->v[v->n].p == NULL) {
		v->failed = true;
		return -1;
	}
	v->n++;
	return 0;
}

static int collect_key(const char *key, const void *value, size_t len,
		       void *ud)
{
	(void)value, (void)len;
	return vec_add(ud, str_c(key)) < 0 ? -1 : 0;
}

/* ---- loading at bind ---- */

struct load_job {
	struct arena *a;
	char *bare; /* NUL-terminated */
	const char *host, *user;
	uint64_t gen;
	uint64_t blocks; /* bl_blocks when it was queued */
	struct jidvec keys;
};

static int load_work(struct store *st, void *ud)
{
	struct load_job *j = ud;
	int rc = store_map_all(st, BLOCK_TABLE, j->host, j->user,
			       collect_key, &j->keys);
	return rc < 0 || j->keys.failed ? -1 : 0;
}

static void load_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct load_job *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_errx("blocking: list of %s unreadable; taken as empty",
			 j->bare);
	brlock_wrlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, str_c(j->bare));
	if (e != NULL && e->gen == j->gen && !e->loaded) {
		for (size_t i = 0; status >= 0 && i < j->keys.n; i++)
			hmap_put(&e->items, j->keys.v[i], present);
		e->loaded = true;
	}
	/* No block was queued since this load: none can have been stored
	 * after it read the list. */
	if (status >= 0 && j->keys.n == 0 && j->blocks == bl_blocks)
		hmap_put(&bl_empty, str_c(j->bare), present);
	brlock_wrunlock(&bl_lock);
	struct arena *a = j->a; /* j lives in it */
	arena_destroy(&a);
}

static void load_start(struct str bare, const struct jid *user, uint64_t gen,
		       uint64_t blocks)
{
	struct arena *a = arena_new(0);
	struct load_job *j = arena_zalloc(a, sizeof(*j));
	j->a = a;
	j->bare = (char *)arena_strdup(a, bare).p;
	j->host = arena_strdup(a, user->domain).p;
	j->user = arena_strdup(a, user->node).p;
	j->gen = gen;
	j->blocks = blocks;
	j->keys.a = a;
	store_queue_keyed_read(server.store, bare, load_work, load_done, j);
}

/* The cache key of user: its bare JID, formatted into buf. */
static struct str cache_key(const struct jid *user, char buf[JID_TEXT_MAX])
{
	return jid_to_text(user, true, buf);
}

/* Keeps owner's list cached (loading it first if needed) until unpin().
 * With at_bind, a list known empty is taken as loaded when nothing of the
 * account is queued: a stanza held behind an earlier load (they wait in
 * the account's queue, some unpinned) must not be overtaken by a later one
 * that would pass at once. */
static void pin(struct str owner, const struct jid *user, bool at_bind)
{
	uv_once(&bl_once, bl_init);
	brlock_wrlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, owner);
	bool fresh = e == NULL;
	if (fresh) {
		e = xcalloc(1, sizeof(*e));
		e->gen = ++bl_gen;
		hmap_put(&bl_cache, owner, e);
		if (at_bind && hmap_get(&bl_empty, owner) != NULL &&
		    !store_keyed_busy(owner)) {
			e->loaded = true; /* known empty: nothing to load */
			fresh = false;
		}
	}
	e->pins++;
	uint64_t gen = e->gen, blocks = bl_blocks;
	brlock_wrunlock(&bl_lock);
	/* Queued after the lock: a keyed job may run (and lock) at once. */
	if (fresh)
		load_start(owner, user, gen, blocks);
}

static void unpin(struct str owner)
{
	uv_once(&bl_once, bl_init);
	brlock_wrlock(&bl_lock);
	struct bl_entry *e = hmap_get(&bl_cache, owner);
	if (e != NULL && --e->pins == 0) {
		hmap_del(&bl_cache, owner);
		entry_free(e);
		if (bl_cache.count == 0)
			hmap_clear(&bl_cache); /* nothing left at shutdown */
	}
	brlock_wrunlock(&bl_lock);
}

static enum hook_ret session_bound(struct hook_ctx *ctx)
{
	char bare[JID_TEXT_MAX];
	pin(cache_key(ctx->user, bare), ctx->user, true);
	return HOOK_PASS;
}

static enum hook_ret session_end(struct hook_ctx *ctx)
{
	char bare[JID_TEXT_MAX];
	unpin(cache_key(ctx->user, bare));
	return HOOK_PASS;
}

/* ---- holding stanzas while a list loads ---- */

struct held {
	struct stanza *st;
	enum hook_event ev;
	uint64_t conn_id;
	unsigned shard;
	size_t host_idx;
	bool initial;
	char *pinned; /* the owner pinned for this stanza, or NULL */
	const char *owner; /* whose list it waits for (in st's arena) */
};

static void held_route(struct held *h, int status)
{
	struct stanza *st = h->st;
	if (status == UV_ECANCELED) {
		stanza_free(&st);
		return;
	}
	if (h->ev == EV_MESSAGE_OUT || h->ev == EV_PRESENCE_OUT ||
	    h->ev == EV_IQ_OUT) {
		/* The sender's full JID, stamped before the hooks ran. */
		struct hook_ctx c = {
			.ev = h->ev, .st = st, .user = &st->from,
			.conn_id = h->conn_id, .shard = h->shard,
			.host_idx = h->host_idx, .initial = h->initial,
		};
		if (hooks_run(&c) == HOOK_STOP)
			return;
	}
	route(st); /* inbound: the hooks run again, the list now known */
}

static void held_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct held *h = ud;
	char *pinned = h->pinned; /* h lives in the stanza's arena */
	char *owner = xstrdup(h->owner);
	held_count(str_c(owner), -1);
	/* (a release may release another, nested: restore, not clear) */
	const struct stanza *outer = releasing;
	const char *outer_owner = releasing_owner;
	releasing = h->st;
	releasing_owner = owner;
	held_route(h, status);
	releasing = outer;
	releasing_owner = outer_owner;
	free(owner);
	if (pinned != NULL) {
		unpin(str_c(pinned));
		free(pinned);
	}
}

/* Queues st behind the load of owner's list (same key, so after it).
 * With pin_user (owner as a JID), the list is first pinned: loaded if it
 * is not cached, and kept until st has been routed again. */
static enum hook_ret hold(struct hook_ctx *ctx, struct str owner,
			  const struct jid *pin_user)
{
	struct stanza *st = ctx->st;
	struct held *h = arena_zalloc(st->a, sizeof(*h));
	if (h == NULL) {
		stanza_free(&st);
		return HOOK_STOP;
	}
	*h = (struct held){ .st = st, .ev = ctx->ev, .conn_id = ctx->conn_id,
			    .shard = ctx->shard, .host_idx = ctx->host_idx,
			    .initial = ctx->initial,
			    .pinned = pin_user ? str_xdup(owner) : NULL,
			    .owner = arena_strdup(st->a, owner).p };
	if (h->owner == NULL) {
		free(h->pinned);
		stanza_free(&st);
		return HOOK_STOP;
	}
	if (pin_user != NULL)
		pin(owner, pin_user, false);
	held_count(owner, 1);
	store_queue_keyed(server.store, owner, NULL, held_done, h);
	return HOOK_STOP;
}

/* ---- enforcement (§3.5) ---- */

static struct str bare_str(struct arena *a, const struct jid *j)
{
	return jid_to_str(a, j, true);
}

/* One's own server is never blocked (its replies, pushes and the
 * answers it gives for accounts come from it). */
static bool is_local_host(const struct jid *j)
{
	return j->node.len == 0 &&
	       conf_find_host(server.conf, j->domain.p, j->domain.len) >= 0;
}

/* A stanza for an account whose list is not cached (no bound session)
 * that has an effect even so: a message (offline storage), an iq request
 * (answered on the account's behalf), a subscription state change or a
 * probe. Other presence to such an account is dropped anyway, so it costs
 * no list load. */
static bool needs_check(const struct stanza *st)
{
	switch (st->kind) {
	case STANZA_MESSAGE:
		return !str_eq_c(st->type, "error");
	case STANZA_IQ:
		return str_eq_c(st->type, "get") || str_eq_c(st->type, "set");
	case STANZA_PRESENCE:
		break;
	}
	return st->type.len > 0 && !str_eq_c(st->type, "unavailable") &&
	       !str_eq_c(st->type, "error");
}

/* §3.5: what a blocked sender gets; the recipient seems offline. */
static void refuse_in(struct stanza *st)
{
	bool request = st->kind == STANZA_MESSAGE ||
		       (st->kind == STANZA_IQ && needs_check(st));
	if (request)
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	else
		stanza_free(&st); /* presence, iq result/error: no answer */
}

/* Inbound: from a JID the recipient blocked. Also presence from a local
 * user to a JID that user blocked (broadcasts and probe answers come this
 * way, not through the sender's outbound hook); unavailable presence may
 * pass, it is what a blocked contact is meant to see (§3.3). */
static enum hook_ret stanza_in(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->from.domain.len == 0 || jid_bare_eq(&st->from, &st->to) ||
	    is_local_host(&st->from))
		return HOOK_PASS;
	struct str owner = bare_str(st->a, &st->to);
	enum bl_state s = bl_check(owner, &st->from, st);
	if (s == BL_UNKNOWN && needs_check(st))
		return hold(ctx, owner, &st->to);
	if (s == BL_LOADING)
		return hold(ctx, owner, NULL);
	if (s == BL_BLOCKED) {
		refuse_in(st);
		return HOOK_STOP;
	}
	if (st->kind == STANZA_PRESENCE && st->from.node.len > 0 &&
	    !str_eq_c(st->type, "unavailable") &&
	    bl_check(bare_str(st->a, &st->from), &st->to, NULL) ==
		    BL_BLOCKED) {
		stanza_free(&st);
		return HOOK_STOP;
	}
	return HOOK_PASS;
}

/* §3.5: <not-acceptable/> with <blocked/>, straight to the sending
 * session (routing it would meet the inbound check of the user's list). */
static void refuse_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct arena *a = st->a;
	struct str to = xml_attr_get(st->x, "to");
	xml_attr_set(a, st->x, "from", to);
	xml_attr_set(a, st->x, "to", jid_to_str(a, ctx->user, false));
	stanza_set_error(a, st->x, STANZA_ERR_NOT_ACCEPTABLE, NULL);
	struct xml_elem *err = NULL;
	xml_foreach_child(c, st->x)
		if (str_eq_c(c->name, "error") && str_eq_c(c->ns, NS_CLIENT))
			err = c;
	if (err != NULL)
		xml_add_child(a, err, STR_LIT(NS_BLOCKING_ERRORS),
			      STR_LIT("blocked"));
	struct sess_ref ref = { .shard = ctx->shard, .conn_id = ctx->conn_id };
	route_deliver(&ref, st);
}

static enum hook_ret stanza_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->to.domain.len == 0 || jid_bare_eq(&st->to, ctx->user))
		return HOOK_PASS;
	if (is_local_host(&st->to))
		return HOOK_PASS;
	struct str owner = bare_str(st->a, ctx->user);
	enum bl_state s = bl_check(owner, &st->to, st);
	if (s == BL_LOADING)
		return hold(ctx, owner, NULL);
	if (s == BL_PASS || s == BL_UNKNOWN)
		return HOOK_PASS;
	if (str_eq_c(st->type, "error"))
		stanza_free(&st); /* never an error for an error */
	else
		refuse_out(ctx);
	return HOOK_STOP;
}

/* ---- the protocol (§3.1-§3.4) ---- */

struct block_req {
	const char *host, *user;  /* NUL-terminated in the arena */
	bool block, all;          /* <block/>; <unblock/> without items */
	struct jidvec keys;       /* normalised JIDs asked for (or, unblock
				     all, every one that was listed) */
	struct jidvec subscribed; /* of those, contacts with a From
				     subscription: presence goes to them */
	struct xml_elem *list;    /* get: the reply payload */
	enum stanza_err err;
};

static int get_work(struct store *st, struct iq_ctx *ctx)
{
	struct block_req *r = ctx->ud;
	if (store_map_all(st, BLOCK_TABLE, r->host, r->user, collect_key,
			  &r->keys) < 0 || r->keys.failed)
		return -1;
	r->list = iq_payload_new(ctx, NS_BLOCKING, "blocklist");
	for (size_t i = 0; i < r->keys.n; i++) {
		struct xml_elem *it = xml_add_child(ctx->st->a, r->list,
						    STR_LIT(NS_BLOCKING),
						    STR_LIT("item"));
		if (it == NULL)
			return -1;
		xml_attr_set(ctx->st->a, it, "jid", r->keys.v[i]);
	}
	return 0;
}

/* Notes key as subscribed if its bare JID has a From subscription in the
 * user's roster (§3.3: only those were seeing the user's presence). */
static int note_subscribed(struct store *st, struct block_req *r,
			   struct str key)
{
	struct arena *a = r->keys.a;
	struct jid j;
	const char *why;
	if (jid_parse(a, key, &j, &why) < 0 || j.node.len == 0)
		return 0;
	struct xml_elem *it;
	int rc = roster_item_load(st, r->host, r->user,
				  bare_str(a, &j).p, a, &it);
	if (rc < 0)
		return -1;
	if (rc == 0 && sub_state_has_from(roster_item_state(it).state))
		return vec_add(&r->subscribed, key);
	return 0;
}

static int count_key(const char *key, const void *value, size_t len,
		     void *ud)
{
	(void)key, (void)value, (void)len;
	size_t *n = ud;
	return ++*n > BLOCK_MAX;
}

static int block_locked(struct store *st, struct block_req *r)
{
	for (size_t i = 0; i < r->keys.n; i++)
		if (store_map_set(st, BLOCK_TABLE, r->host, r->user,
				  r->keys.v[i].p, "", 0) < 0)
			return -1;
	size_t n = 0;
	if (store_map_all(st, BLOCK_TABLE, r->host, r->user, count_key,
			  &n) < 0)
		return -1;
	if (n > BLOCK_MAX)
		r->err = STANZA_ERR_NOT_ACCEPTABLE;
	return 0;
}

static int unblock_locked(struct store *st, struct block_req *r)
{
	if (r->all) {
		if (store_map_all(st, BLOCK_TABLE, r->host, r->user,
				  collect_key, &r->keys) < 0 || r->keys.failed)
			return -1;
		return store_map_clear(st, BLOCK_TABLE, r->host, r->user);
	}
	for (size_t i = 0; i < r->keys.n; i++)
		if (store_map_set(st, BLOCK_TABLE, r->host, r->user,
				  r->keys.v[i].p, NULL, 0) < 0)
			return -1;
	return 0;
}

static int set_work(struct store *st, struct iq_ctx *ctx)
{
	struct block_req *r = ctx->ud;
	if (store_begin(st) < 0)
		return -1;
	int rc = r->block ? block_locked(st, r) : unblock_locked(st, r);
	if (rc < 0 || r->err != STANZA_ERR_NONE) {
		store_rollback(st);
		return rc;
	}
	rc = store_commit(st);
	if (rc < 0)
		return rc;
	/* Roster reads for presence, after the commit: they change nothing,
	 * and the list is stored, so a failed read must not turn the reply
	 * into an error. At worst a contact misses the unavailable presence
	 * of §3.3 (logged). */
	for (size_t i = 0; i < r->keys.n; i++)
		if (note_subscribed(st, r, r->keys.v[i]) < 0) {
			log_errx("blocking: roster unreadable: presence for "
				 "%.*s not updated", (int)r->keys.v[i].len,
				 r->keys.v[i].p);
			break;
		}
	return 0;
}

/* ---- on the shard ---- */

static void get_done(struct iq_ctx *ctx, int status)
{
	struct block_req *r = ctx->ud;
	if (!iq_done_error(ctx, status, STANZA_ERR_NONE))
		iq_reply_result(ctx, r->list);
}

/* §3.3, §3.4: pushes the request's element to every bound resource. */
static void push(const struct jid *user, const struct xml_elem *payload)
{
	struct arena *a = arena_new(0);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare_str(a, user), refs,
				     ARRAY_SIZE(refs));
	static uint64_t seq; /* ids only need to differ; races are harmless */
	uint64_t id = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	for (size_t i = 0; i < n; i++) {
		struct stanza *st = stanza_new(STANZA_IQ, user, NULL, "set");
		st->to_session = true;
		xml_attr_set(st->a, st->x, "id",
			     str_c(arena_printf(st->a, "block%" PRIu64 "-%zu",
						id, i)));
		xml_append_elem(st->x, xml_copy(st->a, payload));
		route_deliver(&refs[i], st);
	}
	arena_destroy(&a);
}

/* Asks each available resource of user to send its presence (or
 * unavailable) to each JID of v (as mod_presence does). */
static void presence_to(const struct jid *user, const struct jidvec *v,
			enum stanza_op op)
{
	struct arena *a = arena_new(0);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare_str(a, user), refs,
				     ARRAY_SIZE(refs));
	for (size_t k = 0; k < v->n; k++) {
		struct jid to;
		const char *why;
		if (jid_parse(a, v->v[k], &to, &why) < 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (!refs[i].available)
				continue;
			struct stanza *st = stanza_new(STANZA_PRESENCE, &to,
						       user, "probe");
			st->op = op;
			route_deliver(&refs[i], st);
		}
	}
	arena_destroy(&a);
}

static void set_done(struct iq_ctx *ctx, int status)
{
	struct block_req *r = ctx->ud;
	if (iq_done_error(ctx, status, r->err))
		return;
	/* The cache first, so nothing slips past once the result is out;
	 * then pushes, the result, and presence (copied: the reply frees
	 * the request's arena). */
	struct arena *a = arena_new(0);
	struct jid user = { .node = arena_strdup(a, ctx->st->to.node),
			    .domain = arena_strdup(a, ctx->st->to.domain) };
	struct str owner = bare_str(a, &user);
	if (r->all)
		cache_clear(owner);
	else
		cache_update(owner, r->keys.v, r->keys.n, r->block);
	struct xml_elem *payload = xml_copy(a, ctx->payload);
	struct jidvec subs = { .a = a };
	for (size_t i = 0; i < r->subscribed.n; i++)
		vec_add(&subs, r->subscribed.v[i]);
	bool block = r->block;
	push(&user, payload);
	iq_reply_result(ctx, NULL);
	presence_to(&user, &subs, block ? STANZA_OP_UNAVAILABLE_TO
				       : STANZA_OP_PRESENCE_TO);
	arena_destroy(&a);
}

/* Only the account itself may see or change its list. */
static struct block_req *request(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (ctx->target != TO_BARE || !jid_bare_eq(&st->from, &st->to))
		return NULL;
	struct block_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->host = arena_strdup(st->a, st->to.domain).p;
	r->user = arena_strdup(st->a, st->to.node).p;
	r->keys.a = r->subscribed.a = st->a;
	ctx->ud = r;
	return r;
}

static struct str account_key(struct iq_ctx *ctx)
{
	return bare_str(ctx->st->a, &ctx->st->to);
}

static enum hook_ret blocklist_get(struct iq_ctx *ctx)
{
	if (request(ctx) == NULL)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	return iq_defer_keyed(ctx, account_key(ctx), get_work, get_done);
}

/* Reads the <item jid=.../> children into r->keys, normalising each JID
 * (and rewriting the attribute, so pushes carry the stored form). */
static enum stanza_err parse_items(struct iq_ctx *ctx, struct block_req *r)
{
	struct arena *a = ctx->st->a;
	xml_foreach_child(it, ctx->payload) {
		if (!str_eq_c(it->ns, NS_BLOCKING) ||
		    !str_eq_c(it->name, "item"))
			return STANZA_ERR_BAD_REQUEST;
		struct str s = xml_attr_get(it, "jid");
		struct jid j;
		const char *why;
		if (s.p == NULL || jid_parse(a, s, &j, &why) < 0)
			return STANZA_ERR_JID_MALFORMED;
		struct str key = jid_to_str(a, &j, false);
		if (key.p == NULL || vec_add(&r->keys, key) < 0 ||
		    xml_attr_set(a, it, "jid", key) < 0)
			return STANZA_ERR_RESOURCE_CONSTRAINT;
		if (r->keys.n > BLOCK_MAX_ITEMS)
			return STANZA_ERR_NOT_ACCEPTABLE;
	}
	return STANZA_ERR_NONE;
}

static enum hook_ret blocklist_set(struct iq_ctx *ctx)
{
	struct block_req *r = request(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	r->block = str_eq_c(ctx->payload->name, "block");
	enum stanza_err err = parse_items(ctx, r);
	if (err == STANZA_ERR_NONE && r->keys.n == 0) {
		if (r->block)
			err = STANZA_ERR_BAD_REQUEST; /* §3.3 */
		else
			r->all = true;                /* §3.4.2 */
	}
	if (err != STANZA_ERR_NONE)
		return iq_reply_error(ctx, err);
	struct str key = account_key(ctx);
	if (r->block) {
		/* Before the job is queued: a pin after this loads the list
		 * (behind the block), a load before it cannot mark it empty. */
		uv_once(&bl_once, bl_init);
		brlock_wrlock(&bl_lock);
		hmap_del(&bl_empty, key);
		bl_blocks++;
		brlock_wrunlock(&bl_lock);
	}
	return iq_defer_keyed(ctx, key, set_work, set_done);
}

static const struct iq_route blocking_iq[] = {
	{ IQ_GET, TO_HOST | TO_BARE, NS_BLOCKING, "blocklist", blocklist_get },
	{ IQ_SET, TO_HOST | TO_BARE, NS_BLOCKING, "block", blocklist_set },
	{ IQ_SET, TO_HOST | TO_BARE, NS_BLOCKING, "unblock", blocklist_set },
	{ 0 },
};

/* Before mod_presence (50): a blocked stanza never reaches the roster. */
static const struct hook blocking_hooks[] = {
	{ EV_SESSION_BOUND, 5, session_bound },
	{ EV_SESSION_END, 5, session_end },
	{ EV_MESSAGE_IN, 5, stanza_in },
	{ EV_PRESENCE_IN, 5, stanza_in },
	{ EV_IQ_IN, 5, stanza_in },
	{ EV_MESSAGE_OUT, 5, stanza_out },
	{ EV_PRESENCE_OUT, 5, stanza_out },
	{ EV_IQ_OUT, 5, stanza_out },
	{ 0 },
};

const struct module mod_blocking = {
	.name = "blocking",
	.spec = "XEP-0191",
	.iq = blocking_iq,
	.features = (const char *const[]){ NS_BLOCKING, NULL },
	.store = &blocking_schema,
	.hooks = blocking_hooks,
};
