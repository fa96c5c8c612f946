/*
 * roster_store.c - roster items in storage, with the per-item versions and
 * removal tombstones of roster versioning (RFC 6121 §2.6, XEP-0237); see
 * roster-private.h and docs/internals/roster.md.
 *
 * Tables: roster (map: contact -> item XML), roster_version (keyval: the
 * account's version counter), roster_tomb (map: removed contact -> version
 * of the removal) and roster_history (keyval: the version from which the
 * kept history is complete; older client versions get the full roster).
 * Invariants: a visible item's ver and every tombstone are <= the stored
 * version once the transaction commits; at most ROSTER_TOMB_MAX
 * tombstones per account; a contact has a tombstone only while it has no
 * visible item.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../router/route.h"
#include "../../router/sessions.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "roster-private.h"

/* Migrations never change once shipped (docs/internals/store.md). The
 * third one starts versioning: items stored before it carry no ver, so
 * the history of every existing account is complete only from its
 * version at that moment, which roster_history records. */
static const char *const roster_migrations[] = {
	"CREATE TABLE roster (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key))",
	"CREATE TABLE roster_version (host TEXT NOT NULL, user TEXT NOT NULL, "
	"value BLOB NOT NULL, PRIMARY KEY (host, user))",
	"CREATE TABLE roster_tomb (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key)) WITHOUT ROWID;"
	"CREATE TABLE roster_history (host TEXT NOT NULL, "
	"user TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user)) WITHOUT ROWID;"
	"INSERT INTO roster_history (host, user, value) "
	"SELECT host, user, value FROM roster_version",
	NULL,
};

const struct store_schema roster_schema = {
	.name = "roster",
	.migrations = roster_migrations,
	.user_tables = (const char *const[]){ "roster", "roster_version",
					      "roster_tomb", "roster_history",
					      NULL },
};

/* ---- items ---- */

struct xml_elem *roster_item_new(struct arena *a, struct str contact)
{
	struct xml_elem *it = xml_elem_new(a, STR_LIT(NS_ROSTER),
					   STR_LIT("item"));
	xml_attr_set(a, it, "jid", contact);
	xml_attr_set(a, it, "subscription", STR_LIT("none"));
	return it;
}

struct sub_item roster_item_state(const struct xml_elem *it)
{
	struct sub_item s = { .state = SUB_NONE };
	if (it == NULL)
		return s;
	const char *why;
	bool pending = str_eq_c(xml_attr_get(it, "pending-in"), "true");
	bool in = !str_eq_c(xml_attr_get(it, "in-roster"), "false");
	if (sub_item_parse(xml_attr_get(it, "subscription"),
			   xml_attr_get(it, "ask"), xml_attr_get(it, "approved"),
			   pending, in, &s, &why) < 0)
		s = (struct sub_item){ .state = SUB_NONE, .in_roster = in };
	return s;
}

const struct xml_elem *roster_item_request(const struct xml_elem *it)
{
	return it ? xml_child(it, NS_ROSTER_INTERNAL, "request") : NULL;
}

static void drop_request(struct xml_elem *it)
{
	struct xml_elem *r = (struct xml_elem *)roster_item_request(it);
	if (r != NULL)
		xml_remove_child(r);
}

void roster_item_keep_request(struct arena *a, struct xml_elem *it,
			      const struct xml_elem *subscribe)
{
	drop_request(it);
	struct xml_elem *r = xml_add_child(a, it, STR_LIT(NS_ROSTER_INTERNAL),
					   STR_LIT("request"));
	size_t room = ROSTER_REQUEST_MAX;
	xml_foreach_child(c, subscribe) {
		struct buf b = { .max = room };
		bool fits = xml_serialize(&b, c,
					  STR_LIT(NS_ROSTER_INTERNAL)) == 0;
		size_t len = b.len;
		buf_reset(&b);
		if (!fits)
			continue; /* the rest may still fit */
		xml_append_elem(r, xml_copy(a, c));
		room -= len;
	}
}

void roster_item_set_state(struct arena *a, struct xml_elem *it,
			   struct sub_item s)
{
	struct sub_attrs at = sub_item_attrs(s);
	xml_attr_set(a, it, "subscription", str_c(at.subscription));
	xml_attr_set(a, it, "ask", at.ask ? str_c(at.ask) : STR_NULL);
	xml_attr_set(a, it, "approved",
		     at.approved ? str_c(at.approved) : STR_NULL);
	xml_attr_set(a, it, "pending-in",
		     sub_state_pending_in(s.state) ? STR_LIT("true") : STR_NULL);
	xml_attr_set(a, it, "in-roster",
		     s.in_roster ? STR_NULL : STR_LIT("false"));
	/* A request is kept only while it waits for an answer. */
	if (!sub_state_pending_in(s.state))
		drop_request(it);
}

struct xml_elem *roster_item_client(struct arena *a,
				    const struct xml_elem *it)
{
	struct xml_elem *c = xml_copy(a, it);
	xml_attr_set(a, c, "pending-in", STR_NULL);
	xml_attr_set(a, c, "in-roster", STR_NULL);
	xml_attr_set(a, c, "ver", STR_NULL);
	drop_request(c);
	return c;
}

bool roster_item_visible(const struct xml_elem *it)
{
	return it != NULL && roster_item_state(it).in_roster;
}

uint64_t roster_item_ver(const struct xml_elem *it)
{
	uint64_t v;
	if (it == NULL || roster_ver_parse(xml_attr_get(it, "ver"), &v) < 0)
		return 0;
	return v;
}

int roster_ver_parse(struct str s, uint64_t *ver_r)
{
	/* Only our own spelling: "007" or "+7" never came from us, and
	 * taking them would give two strings for one version. */
	if (s.p == NULL || s.len == 0 || s.len > 20 ||
	    (s.len > 1 && s.p[0] == '0'))
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		unsigned d = (unsigned)(s.p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*ver_r = v;
	return 0;
}

int roster_item_load(struct store *st, const char *host, const char *user,
		     const char *contact, struct arena *a,
		     struct xml_elem **it_r)
{
	struct buf b = { .max = ROSTER_ITEM_MAX };
	int rc = store_map_get(st, "roster", host, user, contact, &b);
	*it_r = NULL;
	if (rc == 0) {
		*it_r = xml_parse_elem(a, buf_str(&b), STR_LIT(NS_ROSTER));
		if (*it_r == NULL)
			rc = -1;
	}
	buf_reset(&b);
	return rc;
}

/* ---- counters: the version and the history floor ---- */

static int counter_load(struct store *st, const char *table, const char *host,
			const char *user, uint64_t *v_r)
{
	struct buf b = { .max = 32 };
	int rc = store_kv_get(st, table, host, user, &b);
	*v_r = 0;
	if (rc == 0 && roster_ver_parse(buf_str(&b), v_r) < 0)
		rc = -1; /* a damaged counter: refuse rather than go back */
	buf_reset(&b);
	return rc < 0 ? -1 : 0;
}

static int counter_store(struct store *st, const char *table,
			 const char *host, const char *user, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	return store_kv_set(st, table, host, user, tmp, (size_t)n);
}

int roster_version_load(struct store *st, const char *host, const char *user,
			uint64_t *ver_r)
{
	return counter_load(st, "roster_version", host, user, ver_r);
}

int roster_version_bump(struct store *st, const char *host, const char *user,
			uint64_t *ver_r)
{
	if (roster_version_load(st, host, user, ver_r) < 0)
		return -1;
	++*ver_r;
	return counter_store(st, "roster_version", host, user, *ver_r);
}

/* ---- tombstones ---- */

struct tomb_scan {
	size_t count;
	uint64_t oldest;
	struct buf oldest_key; /* NUL-terminated */
};

static int tomb_scan_one(const char *key, const void *value, size_t len,
			 void *ud)
{
	struct tomb_scan *s = ud;
	uint64_t v = 0;
	roster_ver_parse(STR(value, len), &v); /* damaged: oldest, goes first */
	if (s->count++ == 0 || v < s->oldest) {
		s->oldest = v;
		buf_reset(&s->oldest_key);
		if (buf_append(&s->oldest_key, key, strlen(key) + 1) < 0)
			return 1;
	}
	return 0;
}

/* Forgets the oldest tombstone while there are too many, and records
 * that the history now starts at its version. */
static int tomb_prune(struct store *st, const char *host, const char *user)
{
	for (;;) {
		struct tomb_scan s = { .oldest_key.max = ROSTER_ITEM_MAX };
		int rc = store_map_all(st, "roster_tomb", host, user,
				       tomb_scan_one, &s);
		if (rc == 0 && s.count > ROSTER_TOMB_MAX) {
			uint64_t floor;
			rc = counter_load(st, "roster_history", host, user,
					  &floor);
			if (rc == 0 && s.oldest > floor)
				rc = counter_store(st, "roster_history", host,
						   user, s.oldest);
			if (rc == 0)
				rc = store_map_set(st, "roster_tomb", host,
						   user, s.oldest_key.data,
						   NULL, 0);
		}
		bool again = rc == 0 && s.count > ROSTER_TOMB_MAX + 1;
		buf_reset(&s.oldest_key);
		if (!again)
			return rc;
	}
}

/* ver 0 deletes the contact's tombstone. */
static int tomb_set(struct store *st, const char *host, const char *user,
		    const char *contact, uint64_t ver)
{
	if (ver == 0)
		return store_map_set(st, "roster_tomb", host, user, contact,
				     NULL, 0);
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, ver);
	if (store_map_set(st, "roster_tomb", host, user, contact, tmp,
			  (size_t)n) < 0)
		return -1;
	return tomb_prune(st, host, user);
}

/* ---- saving ---- */

/* The stored item, or NULL when there is none or it is unreadable (then
 * the save replaces it, as before versioning). */
static int load_old(struct store *st, const char *host, const char *user,
		    const char *contact, struct arena *a,
		    struct xml_elem **old_r)
{
	struct buf b = { .max = ROSTER_ITEM_MAX };
	int rc = store_map_get(st, "roster", host, user, contact, &b);
	*old_r = rc == 0 ? xml_parse_elem(a, buf_str(&b), STR_LIT(NS_ROSTER))
			 : NULL;
	buf_reset(&b);
	return rc < 0 ? -1 : 0;
}

/* Would a client see a difference between x and y? */
static bool same_for_clients(struct arena *a, const struct xml_elem *x,
			     const struct xml_elem *y)
{
	struct buf bx = { .max = ROSTER_ITEM_MAX }, by = bx;
	bool same =
		xml_serialize(&bx, roster_item_client(a, x), STR_NULL) == 0 &&
		xml_serialize(&by, roster_item_client(a, y), STR_NULL) == 0 &&
		str_eq(buf_str(&bx), buf_str(&by));
	buf_reset(&bx);
	buf_reset(&by);
	return same;
}

/* Writes it with ver (0: none, for items clients do not see). */
static int item_write(struct store *st, const char *host, const char *user,
		      const char *contact, const struct xml_elem *it,
		      uint64_t ver, struct arena *a)
{
	struct xml_elem *c = xml_copy(a, it);
	xml_attr_set(a, c, "ver",
		     ver ? str_c(arena_printf(a, "%" PRIu64, ver)) : STR_NULL);
	struct buf b = { .max = ROSTER_ITEM_MAX };
	int rc = xml_serialize(&b, c, STR_LIT(NS_ROSTER));
	if (rc == 0)
		rc = store_map_set(st, "roster", host, user, contact, b.data,
				   b.len);
	buf_reset(&b);
	return rc;
}

static int save_in(struct store *st, const char *host, const char *user,
		   const char *contact, const struct xml_elem *it,
		   struct arena *a)
{
	struct xml_elem *old;
	uint64_t cur;
	if (load_old(st, host, user, contact, a, &old) < 0 ||
	    roster_version_load(st, host, user, &cur) < 0)
		return -1;
	bool blank = it == NULL || sub_item_blank(roster_item_state(it));
	if (!blank && roster_item_visible(it)) {
		/* Only what clients see counts (XEP-0237 §2.4): a change of
		 * pending-in alone is no roster modification. */
		uint64_t ver = cur + 1;
		if (roster_item_visible(old) && same_for_clients(a, old, it))
			ver = roster_item_ver(old);
		if (tomb_set(st, host, user, contact, 0) < 0)
			return -1;
		return item_write(st, host, user, contact, it, ver, a);
	}
	if (roster_item_visible(old) &&
	    tomb_set(st, host, user, contact, cur + 1) < 0)
		return -1;
	if (blank)
		return store_map_set(st, "roster", host, user, contact, NULL,
				     0);
	return item_write(st, host, user, contact, it, 0, a);
}

int roster_item_save(struct store *st, const char *host, const char *user,
		     const char *contact, const struct xml_elem *it)
{
	struct arena *a = arena_new(0);
	int rc = save_in(st, host, user, contact, it, a);
	arena_destroy(&a);
	return rc;
}

/* ---- reading ---- */

struct each {
	struct arena *a;
	roster_each_fn *fn;
	void *ud;
};

static int each_item(const char *key, const void *value, size_t len,
		     void *ud)
{
	(void)key;
	struct each *e = ud;
	struct xml_elem *it = xml_parse_elem(e->a, STR(value, len),
					     STR_LIT(NS_ROSTER));
	return it != NULL ? e->fn(it, e->ud) : 0;
}

int roster_each(struct store *st, const char *host, const char *user,
		struct arena *a, roster_each_fn *fn, void *ud)
{
	struct each e = { a, fn, ud };
	return store_map_all(st, "roster", host, user, each_item, &e);
}

struct changes {
	struct arena *a;
	uint64_t since;
	struct roster_change *v;
	size_t n, cap;
};

static void change_add(struct changes *c, uint64_t ver, struct xml_elem *it)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct roster_change *v = arena_alloc(c->a, cap * sizeof(*v));
		BUG_ON(v == NULL); /* uncapped arena */
		if (c->n > 0)
			memcpy(v, c->v, c->n * sizeof(*v));
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (struct roster_change){ ver, it };
}

static int changed_item(struct xml_elem *it, void *ud)
{
	struct changes *c = ud;
	uint64_t ver = roster_item_ver(it);
	if (roster_item_visible(it) && ver > c->since)
		change_add(c, ver, roster_item_client(c->a, it));
	return 0;
}

static int changed_tomb(const char *key, const void *value, size_t len,
			void *ud)
{
	struct changes *c = ud;
	uint64_t ver;
	if (roster_ver_parse(STR(value, len), &ver) < 0)
		ver = UINT64_MAX; /* damaged: forces the full roster */
	if (ver <= c->since)
		return 0;
	struct xml_elem *it = xml_elem_new(c->a, STR_LIT(NS_ROSTER),
					   STR_LIT("item"));
	xml_attr_set(c->a, it, "jid", str_c(key));
	xml_attr_set(c->a, it, "subscription", STR_LIT("remove"));
	change_add(c, ver, it);
	return 0;
}

static int change_cmp(const void *x, const void *y)
{
	const struct roster_change *p = x, *q = y;
	if (p->ver != q->ver)
		return p->ver < q->ver ? -1 : 1;
	struct str a = xml_attr_get(p->item, "jid");
	struct str b = xml_attr_get(q->item, "jid");
	int d = memcmp(a.p, b.p, a.len < b.len ? a.len : b.len);
	return d != 0 ? d : (a.len > b.len) - (a.len < b.len);
}

int roster_changes_since(struct store *st, const char *host, const char *user,
			 uint64_t since, struct arena *a,
			 struct roster_change **ch_r, size_t *n_r)
{
	uint64_t cur, floor;
	*ch_r = NULL;
	*n_r = 0;
	if (roster_version_load(st, host, user, &cur) < 0 ||
	    counter_load(st, "roster_history", host, user, &floor) < 0)
		return -1;
	if (since < floor || since > cur)
		return 1;
	struct changes c = { .a = a, .since = since };
	if (roster_each(st, host, user, a, changed_item, &c) < 0 ||
	    store_map_all(st, "roster_tomb", host, user, changed_tomb, &c) < 0)
		return -1;
	if (c.n > 0)
		qsort(c.v, c.n, sizeof(*c.v), change_cmp);
	if (c.n > 0 && c.v[c.n - 1].ver > cur)
		return 1; /* stamped ahead of the counter: trust neither */
	*ch_r = c.v;
	*n_r = c.n;
	return 0;
}

/* ---- pushes (on a shard) ---- */

static struct stanza *push_new(const struct jid *bare,
			       const struct xml_elem *item, uint64_t ver,
			       size_t i)
{
	struct stanza *st = stanza_new(STANZA_IQ, bare, NULL, "set");
	st->to_session = true;
	xml_attr_set(st->a, st->x, "id",
		     str_c(arena_printf(st->a, "push%" PRIu64 "-%zu", ver,
					i)));
	struct xml_elem *q = xml_add_child(st->a, st->x, STR_LIT(NS_ROSTER),
					   STR_LIT("query"));
	xml_attr_set(st->a, q, "ver",
		     str_c(arena_printf(st->a, "%" PRIu64, ver)));
	xml_append_elem(q, xml_copy(st->a, item));
	return st;
}

void roster_push(const struct jid *user, const struct xml_elem *item,
		 uint64_t ver)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, user, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	struct jid bare_jid = *user;
	bare_jid.resource = STR_NULL;
	for (size_t i = 0; i < n; i++) {
		if (!refs[i].interested)
			continue; /* §2.1.6: only resources that asked */
		route_deliver(&refs[i], push_new(&bare_jid, item, ver, i));
	}
	arena_destroy(&a);
}

void roster_push_to(const struct jid *user, const struct xml_elem *item,
		    uint64_t ver)
{
	struct arena *a = arena_new(0);
	struct sess_ref ref;
	struct jid bare_jid = *user;
	bare_jid.resource = STR_NULL;
	if (sessions_find(jid_to_str(a, user, true), user->resource, &ref))
		route_deliver(&ref, push_new(&bare_jid, item, ver, 0));
	arena_destroy(&a);
}
