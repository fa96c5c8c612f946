/*
 * mod_bookmarks.c - XEP-0402 §6: the account's bookmarks kept the same
 * in three places, whichever a client changes:
 *
 * - the PEP node urn:xmpp:bookmarks:1 (XEP-0402), one item per room, id
 *   the room's JID;
 * - private storage (XEP-0049) <storage xmlns='storage:bookmarks'/>
 *   (XEP-0048 v1.0), announced as #compat;
 * - the PEP node storage:bookmarks (XEP-0048 v1.1 over XEP-0223), one
 *   item 'current' holding the same <storage/>, announced as #compat-pep.
 *
 * A change to the XEP-0402 node rewrites the <storage/> of the other two
 * from all its items (§6.1), keeping the <url/> bookmarks, which XEP-0402
 * dropped. A new <storage/> in either older place publishes the rooms
 * that are new or changed and retracts those that are gone (§6.2: no
 * notification for an unchanged room), and copies the <storage/> to the
 * other older place. Everything runs in the transaction of the change
 * (pep_sync.h), and what a conversion changes converts nothing further.
 *
 * Bookmarks kept in the older storage before the XEP-0402 node existed
 * are taken into it by its first publish, so a client that moves to
 * XEP-0402 does not wipe them.
 *
 * Rooms: legacy <conference jid name autojoin><nick/><password/>
 * ...</conference> is XEP-0402 <conference name autojoin><nick/>
 * <password/><extensions>...</extensions></conference>: children of
 * other namespaces travel as extensions, autojoin is "true" or absent.
 */
#include <string.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../module.h"
#include "../private.h"
#include "pep_sync.h"
#include "pubsub-private.h"

#define LEGACY_ITEM "current" /* XEP-0223 §3: one item */
#define COMPARE_MAX (256 * 1024)

static bool autojoin_true(struct str v)
{
	return str_eq_c(v, "true") || str_eq_c(v, "1");
}

struct xml_elem *bookmark_to_pep2(struct arena *a, const struct xml_elem *c)
{
	struct xml_elem *n = xml_elem_new(a, STR_LIT(NS_BOOKMARKS2),
					  STR_LIT("conference"));
	if (n == NULL)
		return NULL;
	struct str name = xml_attr_get(c, "name");
	if (name.len > 0 && xml_attr_set(a, n, "name", name) < 0)
		return NULL;
	if (autojoin_true(xml_attr_get(c, "autojoin")) &&
	    xml_attr_set(a, n, "autojoin", STR_LIT("true")) < 0)
		return NULL;
	static const char *const texts[] = { "nick", "password" };
	for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
		struct xml_elem *t = xml_child(c, NS_BOOKMARKS_LEGACY,
					       texts[i]);
		if (t == NULL)
			continue;
		struct xml_elem *e = xml_add_child(a, n, STR_LIT(NS_BOOKMARKS2),
						   str_c(texts[i]));
		if (e == NULL || xml_add_text(a, e, xml_text(a, t)) < 0)
			return NULL;
	}
	struct xml_elem *ext = NULL;
	xml_foreach_child(x, c) {
		if (str_eq_c(x->ns, NS_BOOKMARKS_LEGACY))
			continue;
		if (ext == NULL)
			ext = xml_add_child(a, n, STR_LIT(NS_BOOKMARKS2),
					    STR_LIT("extensions"));
		struct xml_elem *cp = ext ? xml_copy(a, x) : NULL;
		if (cp == NULL)
			return NULL;
		xml_append_elem(ext, cp);
	}
	return n;
}

struct xml_elem *bookmark_to_legacy(struct arena *a, struct str jid,
				  const struct xml_elem *c)
{
	struct xml_elem *n = xml_elem_new(a, STR_LIT(NS_BOOKMARKS_LEGACY),
					  STR_LIT("conference"));
	if (n == NULL || xml_attr_set(a, n, "jid", jid) < 0)
		return NULL;
	struct str name = xml_attr_get(c, "name");
	if (name.len > 0 && xml_attr_set(a, n, "name", name) < 0)
		return NULL;
	if (autojoin_true(xml_attr_get(c, "autojoin")) &&
	    xml_attr_set(a, n, "autojoin", STR_LIT("true")) < 0)
		return NULL;
	xml_foreach_child(x, c) {
		if (!str_eq_c(x->ns, NS_BOOKMARKS2))
			continue;
		if (str_eq_c(x->name, "nick") ||
		    str_eq_c(x->name, "password")) {
			struct xml_elem *e = xml_add_child(a, n,
				STR_LIT(NS_BOOKMARKS_LEGACY), x->name);
			if (e == NULL || xml_add_text(a, e, xml_text(a, x)) < 0)
				return NULL;
		} else if (str_eq_c(x->name, "extensions")) {
			xml_foreach_child(e, x) {
				struct xml_elem *cp = xml_copy(a, e);
				if (cp == NULL)
					return NULL;
				xml_append_elem(n, cp);
			}
		}
	}
	return n;
}

/* Whether x and y serialize the same (NULL only equals NULL). */
static bool same(const struct xml_elem *x, const struct xml_elem *y)
{
	if (x == NULL || y == NULL)
		return x == y;
	struct buf bx = { .max = COMPARE_MAX }, by = { .max = COMPARE_MAX };
	bool eq = xml_serialize(&bx, x, STR_LIT("")) == 0 &&
		  xml_serialize(&by, y, STR_LIT("")) == 0 &&
		  bx.len == by.len && memcmp(bx.data, by.data, bx.len) == 0;
	buf_reset(&bx);
	buf_reset(&by);
	return eq;
}

static void config_pep2(struct ps_config *c)
{
	/* XEP-0402 §3.3's publish-options, so that clients' preconditions
	 * hold on a node this module created. */
	ps_config_default(c, false);
	c->access = PS_ACCESS_WHITELIST;
	c->max_items = server.conf->pubsub.max_items;
	c->persist = true;
	c->send_last = PS_SEND_LAST_NEVER;
}

static void config_legacy(struct ps_config *c)
{
	/* XEP-0048 §3.3 (XEP-0223's private node). */
	ps_config_default(c, false);
	c->access = PS_ACCESS_WHITELIST;
	c->persist = true;
}

static struct xml_elem *item_with(struct arena *a, struct str id,
				  const struct xml_elem *payload)
{
	struct xml_elem *it = xml_elem_new(a, STR_LIT(NS_PUBSUB),
					   STR_LIT("item"));
	struct xml_elem *cp = it ? xml_copy(a, payload) : NULL;
	if (cp == NULL || xml_attr_set(a, it, "id", id) < 0)
		return NULL;
	xml_append_elem(it, cp);
	return it;
}

/* The XEP-0402 items now, newest first. */
static int pep2_items(struct store *st, struct arena *a, struct pep_sync *s,
		      struct ps_item **v_r, size_t *n_r)
{
	return ps_store_items(st, pep_sync_owner(s), STR_LIT(NS_BOOKMARKS2),
			      a, v_r, n_r);
}

static const struct xml_elem *payload_of(const struct ps_item *it)
{
	return xml_first_child_elem(it->x);
}

/* Whether c is the first legacy room of storage with its jid. */
static bool room_first(const struct xml_elem *storage,
		       const struct xml_elem *c, struct str jid)
{
	if (!str_eq_c(c->ns, NS_BOOKMARKS_LEGACY) ||
	    !str_eq_c(c->name, "conference") || jid.len == 0 ||
	    jid.len > PS_ID_MAX_LEN)
		return false;
	xml_foreach_child(p, storage) {
		if (p == c)
			return true;
		if (str_eq_c(p->name, "conference") &&
		    str_eq(xml_attr_get(p, "jid"), jid))
			return false;
	}
	return false;
}

/* Publishes the legacy room c as its XEP-0402 item unless the item v[]
 * has for it is the same. */
static int room_put(struct store *st, struct arena *a, struct pep_sync *s,
		    const struct xml_elem *c, struct str jid,
		    const struct ps_item *v, size_t nv)
{
	struct xml_elem *want = bookmark_to_pep2(a, c);
	if (want == NULL)
		return -1;
	const struct xml_elem *have = NULL;
	for (size_t i = 0; i < nv && have == NULL; i++)
		if (str_eq(v[i].id, jid))
			have = payload_of(&v[i]);
	/* Compared in canonical form both. */
	if (have != NULL) {
		struct xml_elem *l = bookmark_to_legacy(a, jid, have);
		struct xml_elem *canon = l ? bookmark_to_pep2(a, l) : NULL;
		if (canon == NULL)
			return -1;
		if (same(canon, want))
			return 0;
	}
	struct ps_config cfg;
	config_pep2(&cfg);
	struct xml_elem *it = item_with(a, jid, want);
	return it ? pep_sync_publish(st, a, s, NS_BOOKMARKS2, it, &cfg) : -1;
}

/* §6.2: a legacy <storage/> (NULL: none) to the XEP-0402 node, item by
 * item: the rooms new or changed published, those gone retracted. */
static int legacy_to_pep2(struct store *st, struct arena *a,
			  struct pep_sync *s, const struct xml_elem *storage)
{
	struct ps_item *v;
	size_t nv;
	if (pep2_items(st, a, s, &v, &nv) < 0)
		return -1;
	if (storage != NULL)
		xml_foreach_child(c, storage) {
			struct str jid = xml_attr_get(c, "jid");
			if (room_first(storage, c, jid) &&
			    room_put(st, a, s, c, jid, v, nv) < 0)
				return -1;
		}
	for (size_t i = 0; i < nv; i++) {
		bool kept = false;
		if (storage != NULL)
			xml_foreach_child(c, storage)
				kept |= str_eq_c(c->name, "conference") &&
					str_eq(xml_attr_get(c, "jid"), v[i].id);
		if (!kept && pep_sync_retract(st, a, s, NS_BOOKMARKS2,
					      v[i].id) < 0)
			return -1;
	}
	return 0;
}

/* The legacy node's <storage/> now, or NULL. */
static int legacy_pep_current(struct store *st, struct arena *a,
			      struct pep_sync *s, const struct xml_elem **x_r)
{
	struct ps_item *it;
	if (pep_sync_last(st, a, s, NS_BOOKMARKS_LEGACY, NULL, &it) < 0)
		return -1;
	*x_r = it ? payload_of(it) : NULL;
	return 0;
}

/* Publishes storage to the legacy node unless it holds it already. */
static int legacy_pep_put(struct store *st, struct arena *a,
			  struct pep_sync *s, const struct xml_elem *storage)
{
	const struct xml_elem *cur;
	if (legacy_pep_current(st, a, s, &cur) < 0)
		return -1;
	if (same(cur, storage))
		return 0;
	struct ps_config cfg;
	config_legacy(&cfg);
	struct xml_elem *it = item_with(a, STR_LIT(LEGACY_ITEM), storage);
	return it ? pep_sync_publish(st, a, s, NS_BOOKMARKS_LEGACY, it, &cfg)
		  : -1;
}

static struct xml_elem *storage_new(struct arena *a)
{
	return xml_elem_new(a, STR_LIT(NS_BOOKMARKS_LEGACY),
			    STR_LIT("storage"));
}

static int private_put(struct store *st, struct arena *a, struct pep_sync *s,
		       const struct xml_elem *storage)
{
	const struct ps_owner *o = pep_sync_owner(s);
	int rc = private_save(st, a, o->host, o->user, storage);
	if (rc == 1)
		log_warnx("bookmarks: %s@%s: too many for private storage; "
			  "not converted", o->user, o->host);
	return rc < 0 ? -1 : 0;
}

int bookmarks_from_private(struct store *st, struct arena *a,
			   struct pep_sync *s, const struct xml_elem *storage)
{
	if (legacy_to_pep2(st, a, s, storage) < 0)
		return -1;
	struct xml_elem *empty = storage ? NULL : storage_new(a);
	if (storage == NULL && empty == NULL)
		return -1;
	return legacy_pep_put(st, a, s, storage ? storage : empty);
}

int bookmarks_from_pep_legacy(struct store *st, struct arena *a,
			      struct pep_sync *s,
			      const struct xml_elem *storage)
{
	struct xml_elem *x = storage ? xml_copy(a, storage) : storage_new(a);
	if (x == NULL || legacy_to_pep2(st, a, s, storage) < 0)
		return -1;
	return private_put(st, a, s, x);
}

int bookmarks_from_pep2(struct store *st, struct arena *a,
			struct pep_sync *s, bool first)
{
	const struct ps_owner *o = pep_sync_owner(s);
	struct xml_elem *old;
	if (private_load(st, a, o->host, o->user, NS_BOOKMARKS_LEGACY,
			 &old) < 0)
		return -1;
	struct ps_item *v;
	size_t nv;
	if (pep2_items(st, a, s, &v, &nv) < 0)
		return -1;
	if (first && old != NULL) {
		/* Take over the rooms only the older storage has. */
		xml_foreach_child(c, old) {
			struct str jid = xml_attr_get(c, "jid");
			bool have = false;
			for (size_t i = 0; i < nv; i++)
				have |= str_eq(v[i].id, jid);
			if (!have && room_first(old, c, jid) &&
			    room_put(st, a, s, c, jid, v, nv) < 0)
				return -1;
		}
		if (pep2_items(st, a, s, &v, &nv) < 0)
			return -1;
	}
	/* §6.1: every item as a legacy conference, oldest first; the
	 * url bookmarks (and anything else but rooms) stay. */
	struct xml_elem *storage = storage_new(a);
	if (storage == NULL)
		return -1;
	if (old != NULL)
		xml_foreach_child(c, old) {
			if (str_eq_c(c->ns, NS_BOOKMARKS_LEGACY) &&
			    str_eq_c(c->name, "conference"))
				continue;
			struct xml_elem *cp = xml_copy(a, c);
			if (cp == NULL)
				return -1;
			xml_append_elem(storage, cp);
		}
	for (size_t i = nv; i-- > 0;) {
		const struct xml_elem *p = payload_of(&v[i]);
		if (p == NULL || !str_eq_c(p->ns, NS_BOOKMARKS2) ||
		    !str_eq_c(p->name, "conference"))
			continue;
		struct xml_elem *c = bookmark_to_legacy(a, v[i].id, p);
		if (c == NULL)
			return -1;
		xml_append_elem(storage, c);
	}
	if (private_put(st, a, s, storage) < 0)
		return -1;
	return legacy_pep_put(st, a, s, storage);
}

const struct module mod_bookmarks = {
	.name = "bookmarks",
	.spec = "XEP-0402",
	.account_features = (const char *const[]){
		NS_BOOKMARKS2 "#compat",
		NS_BOOKMARKS2 "#compat-pep",
		NULL,
	},
};
