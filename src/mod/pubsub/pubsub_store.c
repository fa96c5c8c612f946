/*
 * pubsub_store.c - nodes and items of publish-subscribe in two map tables
 * (store/shapes.h); see pubsub-private.h and docs/internals/pubsub.md.
 *
 * pubsub_nodes: key the node name, value
 *   <node xmlns='urn:stanzad:pubsub' seq='N' access='presence' max='1'
 *         persist='1' notify-retract='1' send-last='never' title='..'>
 *     <group>..</group>* <aff jid='..' a='member'/>* <sub jid='..'/>*
 *   </node>
 * pubsub_items: key "NODE\x01ID" (XML text never holds U+0001, so the
 *   separator cannot occur in either part), value the <item/> as clients
 *   see it with a seq='N' attribute: the node's publish counter, which
 *   orders items (newest first) and survives the item being replaced.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "pubsub-private.h"

#define NODES "pubsub_nodes"
#define ITEMS "pubsub_items"
#define SEP "\x01"

static const char *const pubsub_migrations[] = {
	"CREATE TABLE pubsub_nodes (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key)) WITHOUT ROWID;"
	"CREATE TABLE pubsub_items (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key)) WITHOUT ROWID",
	NULL,
};

const struct store_schema pubsub_schema = {
	.name = "pubsub",
	.migrations = pubsub_migrations,
	.user_tables = (const char *const[]){ NODES, ITEMS, NULL },
};

static const char *const access_names[] = {
	[PS_ACCESS_OPEN] = "open",
	[PS_ACCESS_PRESENCE] = "presence",
	[PS_ACCESS_ROSTER] = "roster",
	[PS_ACCESS_WHITELIST] = "whitelist",
};
static const char *const send_last_names[] = {
	[PS_SEND_LAST_NEVER] = "never",
	[PS_SEND_LAST_ON_SUB] = "on_sub",
	[PS_SEND_LAST_ON_SUB_AND_PRESENCE] = "on_sub_and_presence",
};
static const char *const aff_names[] = {
	[PS_AFF_OUTCAST] = "outcast",
	[PS_AFF_NONE] = "none",
	[PS_AFF_MEMBER] = "member",
	[PS_AFF_PUBLISHER] = "publisher",
	[PS_AFF_OWNER] = "owner",
};

const char *ps_access_name(enum ps_access a)
{
	return (size_t)a < ARRAY_SIZE(access_names) ? access_names[a] : "?";
}

const char *ps_send_last_name(enum ps_send_last s)
{
	return (size_t)s < ARRAY_SIZE(send_last_names) ? send_last_names[s]
						       : "?";
}

const char *ps_aff_name(enum ps_aff a)
{
	return (size_t)a < ARRAY_SIZE(aff_names) ? aff_names[a] : "?";
}

static int lookup(const char *const *names, size_t n, struct str s)
{
	for (size_t i = 0; i < n; i++)
		if (str_eq_c(s, names[i]))
			return (int)i;
	return -1;
}

int ps_aff_parse(struct str s, enum ps_aff *a_r)
{
	int i = lookup(aff_names, ARRAY_SIZE(aff_names), s);
	if (i < 0)
		return -1;
	*a_r = (enum ps_aff)i;
	return 0;
}

void ps_config_default(struct ps_config *c, bool service)
{
	/* XEP-0163 §4.1.1 (presence access for PEP); one item, as the PEP
	 * uses (device lists, avatars, nicknames) expect. */
	*c = (struct ps_config){
		.access = service ? PS_ACCESS_OPEN : PS_ACCESS_PRESENCE,
		.max_items = service ? 10 : 1,
		.persist = true,
		.notify_retract = true,
		.send_last = service ? PS_SEND_LAST_NEVER
				     : PS_SEND_LAST_ON_SUB_AND_PRESENCE,
	};
	if (c->max_items > server.conf->pubsub.max_items)
		c->max_items = server.conf->pubsub.max_items;
}

/* ---- nodes ---- */

static uint64_t attr_u64(const struct xml_elem *x, const char *name)
{
	struct str v = xml_attr_get(x, name);
	return v.p != NULL ? strtoull(v.p, NULL, 10) : 0;
}

static int node_from_xml(struct arena *a, struct str name,
			 const struct xml_elem *x, struct ps_node *n)
{
	if (!str_eq_c(x->ns, NS_PUBSUB_INTERNAL) || !str_eq_c(x->name, "node"))
		return -1;
	n->name = arena_strdup(a, name);
	n->seq = attr_u64(x, "seq");
	int acc = lookup(access_names, ARRAY_SIZE(access_names),
			 xml_attr_get(x, "access"));
	int sl = lookup(send_last_names, ARRAY_SIZE(send_last_names),
			xml_attr_get(x, "send-last"));
	if (acc < 0 || sl < 0)
		return -1;
	n->cfg.access = (enum ps_access)acc;
	n->cfg.send_last = (enum ps_send_last)sl;
	n->cfg.max_items = (unsigned)attr_u64(x, "max");
	n->cfg.persist = attr_u64(x, "persist") != 0;
	n->cfg.notify_retract = attr_u64(x, "notify-retract") != 0;
	n->cfg.title = xml_attr_get(x, "title");
	size_t ng = 0, na = 0, ns = 0;
	xml_foreach_child(c, x) {
		ng += str_eq_c(c->name, "group");
		na += str_eq_c(c->name, "aff");
		ns += str_eq_c(c->name, "sub");
	}
	n->cfg.groups = arena_zalloc(a, (ng + 1) * sizeof(*n->cfg.groups));
	n->affs = arena_zalloc(a, (na + 1) * sizeof(*n->affs));
	n->subs = arena_zalloc(a, (ns + 1) * sizeof(*n->subs));
	if (n->cfg.groups == NULL || n->affs == NULL || n->subs == NULL)
		return -1;
	xml_foreach_child(c, x) {
		if (str_eq_c(c->name, "group")) {
			n->cfg.groups[n->cfg.ngroups++] = xml_text(a, c);
		} else if (str_eq_c(c->name, "aff")) {
			struct ps_jid_aff *f = &n->affs[n->naffs];
			f->jid = xml_attr_get(c, "jid");
			if (f->jid.p == NULL ||
			    ps_aff_parse(xml_attr_get(c, "a"), &f->aff) < 0)
				return -1;
			n->naffs++;
		} else if (str_eq_c(c->name, "sub")) {
			n->subs[n->nsubs] = xml_attr_get(c, "jid");
			if (n->subs[n->nsubs].p == NULL)
				return -1;
			n->nsubs++;
		}
	}
	return 0;
}

static int node_to_buf(struct arena *a, const struct ps_node *n,
		       struct buf *b)
{
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_PUBSUB_INTERNAL),
					  STR_LIT("node"));
	if (x == NULL)
		return -1;
	char num[24];
	snprintf(num, sizeof(num), "%" PRIu64, n->seq);
	xml_attr_set(a, x, "seq", str_c(num));
	xml_attr_set(a, x, "access", str_c(ps_access_name(n->cfg.access)));
	snprintf(num, sizeof(num), "%u", n->cfg.max_items);
	xml_attr_set(a, x, "max", str_c(num));
	xml_attr_set(a, x, "persist", str_c(n->cfg.persist ? "1" : "0"));
	xml_attr_set(a, x, "notify-retract",
		     str_c(n->cfg.notify_retract ? "1" : "0"));
	xml_attr_set(a, x, "send-last",
		     str_c(ps_send_last_name(n->cfg.send_last)));
	if (n->cfg.title.len > 0)
		xml_attr_set(a, x, "title", n->cfg.title);
	for (size_t i = 0; i < n->cfg.ngroups; i++) {
		struct xml_elem *g = xml_add_child(
			a, x, STR_LIT(NS_PUBSUB_INTERNAL), STR_LIT("group"));
		if (g == NULL || xml_add_text(a, g, n->cfg.groups[i]) < 0)
			return -1;
	}
	for (size_t i = 0; i < n->naffs; i++) {
		if (n->affs[i].aff == PS_AFF_NONE)
			continue;
		struct xml_elem *f = xml_add_child(
			a, x, STR_LIT(NS_PUBSUB_INTERNAL), STR_LIT("aff"));
		if (f == NULL)
			return -1;
		xml_attr_set(a, f, "jid", n->affs[i].jid);
		xml_attr_set(a, f, "a", str_c(ps_aff_name(n->affs[i].aff)));
	}
	for (size_t i = 0; i < n->nsubs; i++) {
		struct xml_elem *s = xml_add_child(
			a, x, STR_LIT(NS_PUBSUB_INTERNAL), STR_LIT("sub"));
		if (s == NULL)
			return -1;
		xml_attr_set(a, s, "jid", n->subs[i]);
	}
	return xml_serialize(b, x, STR_LIT(""));
}

/* A stored value as a tree, or NULL (logged) when it does not read. */
static struct xml_elem *parse_value(struct arena *a, const char *table,
				    const struct ps_owner *o, const char *key,
				    const void *v, size_t len)
{
	struct xml_elem *x = xml_parse_elem(a, STR(v, len), STR_LIT(""));
	if (x == NULL)
		log_errx("pubsub: %s@%s: %s %s unreadable", o->user, o->host,
			 table, key);
	return x;
}

int ps_store_node_load(struct store *st, const struct ps_owner *o,
		       struct str name, struct arena *a, struct ps_node **n_r)
{
	const char *key = arena_strdup(a, name).p;
	struct buf b = { .max = server.conf->limits.max_stanza_size * 4 };
	int rc = key == NULL ? -1 :
		store_map_get(st, NODES, o->host, o->user, key, &b);
	if (rc == 0) {
		struct ps_node *n = arena_zalloc(a, sizeof(*n));
		struct xml_elem *x = parse_value(a, NODES, o, key, b.data,
						 b.len);
		if (n == NULL || x == NULL || node_from_xml(a, name, x, n) < 0)
			rc = -1;
		else
			*n_r = n;
	}
	buf_reset(&b);
	return rc;
}

int ps_store_node_save(struct store *st, const struct ps_owner *o,
		       const struct ps_node *n)
{
	struct arena *a = arena_new(0);
	struct buf b = { 0 };
	const char *key = arena_strdup(a, n->name).p;
	int rc = node_to_buf(a, n, &b);
	if (rc == 0)
		rc = store_map_set(st, NODES, o->host, o->user, key, b.data,
				   b.len);
	buf_reset(&b);
	arena_destroy(&a);
	return rc;
}

struct collect {
	struct arena *a;
	const struct ps_owner *o;
	void **v;
	size_t n, cap;
	bool failed;
	bool items;
	size_t skip; /* bytes of the key's "NODE\x01" prefix */
};

static int collect_push(struct collect *c, void *p)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		void **v = arena_alloc(c->a, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		if (c->n > 0)
			memcpy(v, c->v, c->n * sizeof(*v));
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = p;
	return 0;
}

static int collect_one(const char *key, const void *value, size_t len,
		       void *ud)
{
	struct collect *c = ud;
	struct xml_elem *x = parse_value(c->a, c->items ? ITEMS : NODES, c->o,
					 key, value, len);
	if (x == NULL) {
		c->failed = true;
		return 1;
	}
	if (c->items) {
		struct ps_item *it = arena_zalloc(c->a, sizeof(*it));
		if (it == NULL) {
			c->failed = true;
			return 1;
		}
		it->seq = attr_u64(x, "seq");
		xml_attr_set(c->a, x, "seq", STR_NULL);
		it->id = arena_strdup(c->a, str_c(key + c->skip));
		it->x = x;
		c->failed = collect_push(c, it) < 0;
	} else {
		struct ps_node *n = arena_zalloc(c->a, sizeof(*n));
		c->failed = n == NULL ||
			    node_from_xml(c->a, str_c(key), x, n) < 0 ||
			    collect_push(c, n) < 0;
	}
	return c->failed;
}

int ps_store_nodes(struct store *st, const struct ps_owner *o,
		   struct arena *a, struct ps_node ***v_r, size_t *n_r)
{
	struct collect c = { .a = a, .o = o };
	if (store_map_all(st, NODES, o->host, o->user, collect_one, &c) < 0 ||
	    c.failed)
		return -1;
	*v_r = (struct ps_node **)c.v;
	*n_r = c.n;
	return 0;
}

static int cmp_newest(const void *a, const void *b)
{
	const struct ps_item *x = *(struct ps_item *const *)a;
	const struct ps_item *y = *(struct ps_item *const *)b;
	return (x->seq < y->seq) - (x->seq > y->seq);
}

int ps_store_items(struct store *st, const struct ps_owner *o,
		   struct str node, struct arena *a, struct ps_item **v_r,
		   size_t *n_r)
{
	char *prefix = arena_printf(a, "%.*s" SEP, STR_FMT(node));
	if (prefix == NULL)
		return -1;
	struct collect c = { .a = a, .o = o, .items = true,
			     .skip = strlen(prefix) };
	if (store_map_prefix(st, ITEMS, o->host, o->user, prefix, collect_one,
			     &c) < 0 ||
	    c.failed)
		return -1;
	if (c.n > 1) /* NULL when empty */
		qsort(c.v, c.n, sizeof(*c.v), cmp_newest);
	struct ps_item *v = arena_zalloc(a, (c.n + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < c.n; i++)
		v[i] = *(struct ps_item *)c.v[i];
	*v_r = v;
	*n_r = c.n;
	return 0;
}

static char *item_key(struct arena *a, struct str node, struct str id)
{
	return arena_printf(a, "%.*s" SEP "%.*s", STR_FMT(node), STR_FMT(id));
}

int ps_store_item_put(struct store *st, const struct ps_owner *o,
		      struct str node, const struct ps_item *it)
{
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_copy(a, it->x);
	char num[24];
	snprintf(num, sizeof(num), "%" PRIu64, it->seq);
	struct buf b = { 0 };
	int rc = -1;
	char *key = item_key(a, node, it->id);
	if (x != NULL && key != NULL &&
	    xml_attr_set(a, x, "seq", str_c(num)) == 0 &&
	    xml_serialize(&b, x, STR_LIT("")) == 0)
		rc = store_map_set(st, ITEMS, o->host, o->user, key, b.data,
				   b.len);
	buf_reset(&b);
	arena_destroy(&a);
	return rc;
}

int ps_store_item_delete(struct store *st, const struct ps_owner *o,
			 struct str node, struct str id)
{
	struct arena *a = arena_new(0);
	char *key = item_key(a, node, id);
	int rc = key == NULL ? -1 :
		store_map_set(st, ITEMS, o->host, o->user, key, NULL, 0);
	arena_destroy(&a);
	return rc;
}

int ps_store_trim(struct store *st, const struct ps_owner *o,
		  struct str node, unsigned max)
{
	struct arena *a = arena_new(0);
	struct ps_item *v;
	size_t n;
	int rc = ps_store_items(st, o, node, a, &v, &n);
	for (size_t i = max; rc == 0 && i < n; i++)
		rc = ps_store_item_delete(st, o, node, v[i].id);
	arena_destroy(&a);
	return rc;
}

int ps_store_node_delete(struct store *st, const struct ps_owner *o,
			 struct str name)
{
	int rc = ps_store_trim(st, o, name, 0);
	if (rc < 0)
		return rc;
	struct arena *a = arena_new(0);
	const char *key = arena_strdup(a, name).p;
	rc = store_map_set(st, NODES, o->host, o->user, key, NULL, 0);
	arena_destroy(&a);
	return rc;
}
