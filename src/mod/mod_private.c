/*
 * mod_private.c - XEP-0049: private XML storage. An account stores
 * elements in <query xmlns='jabber:iq:private'/> and gets them back by
 * namespace; only the account itself may (else <forbidden/>).
 *
 * Storage: the map table `private`, key the namespace, value a serialized
 * <query xmlns='jabber:iq:private'/> holding every element of that
 * namespace from the last set (a set MAY carry several, §2.3), so a get
 * returns the stored value as its payload. Bounds: PRIVATE_MAX bytes per
 * namespace, PRIVATE_MAX_KEYS namespaces per account, PRIVATE_MAX_CHILDREN
 * elements per set. A set is one transaction, stored only if every value
 * reads back with xml_parse_elem. Empty elements delete their namespace.
 *
 * XEP-0402 §6 (#compat): a set is a keyed job of the account (as PEP
 * requests are), and in its transaction a set of storage:bookmarks
 * (XEP-0048) updates the PEP bookmarks nodes (pep_sync.h); the reverse is
 * done by mod_bookmarks with private_save().
 */
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../store/shapes.h"
#include "../xml/parser.h"
#include "../xmpp/ns.h"
#include "module.h"
#include "private.h"
#include "pubsub/pep_sync.h"

#define NS_PRIVATE "jabber:iq:private"
#define PRIVATE_TABLE "private"
#define PRIVATE_MAX (64 * 1024)   /* bytes stored per namespace */
#define PRIVATE_MAX_KEYS 64       /* namespaces per account */
#define PRIVATE_MAX_CHILDREN 32   /* elements in one set */

#define QUERY_OPEN "<query xmlns='" NS_PRIVATE "'>"
#define QUERY_CLOSE "</query>"

/* The per-request state across iq_defer, in the request's arena. */
struct private_req {
	const char *host, *user; /* the account, NUL-terminated */
	struct xml_elem *query;  /* get: the reply payload */
	enum stanza_err err;     /* set: refused (nothing stored) */
	struct pep_sync *sync;   /* set: the bookmarks conversion */
};

static const char *const private_migrations[] = {
	"CREATE TABLE private (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key)) WITHOUT ROWID",
	NULL,
};

static const struct store_schema private_schema = {
	.name = "private",
	.migrations = private_migrations,
	.user_tables = (const char *const[]){ PRIVATE_TABLE, NULL },
};

/* ---- storage (thread pool) ---- */

/* A stored value is a <query/> of elements all in the key's namespace. */
static bool value_ok(const struct xml_elem *q, struct str key)
{
	if (!str_eq_c(q->ns, NS_PRIVATE) || !str_eq_c(q->name, "query") ||
	    xml_first_child_elem(q) == NULL)
		return false;
	xml_foreach_child(c, q)
		if (!str_eq(c->ns, key))
			return false;
	return true;
}

static int get_work(struct store *st, struct iq_ctx *ctx)
{
	struct private_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	const struct xml_elem *asked = xml_first_child_elem(ctx->payload);
	const char *key = arena_strdup(a, asked->ns).p;
	if (key == NULL)
		return -1;
	struct buf value = { .max = PRIVATE_MAX };
	int rc = store_map_get(st, PRIVATE_TABLE, r->host, r->user, key,
			       &value);
	if (rc == 0) {
		r->query = xml_parse_elem(a, buf_str(&value), STR_LIT(""));
		if (r->query == NULL || !value_ok(r->query, asked->ns)) {
			log_errx("private: %s@%s: stored %s unreadable",
				 r->user, r->host, key);
			rc = -1;
		}
	} else if (rc == 1) {
		/* Nothing stored: the requested element, empty. */
		r->query = xml_elem_new(a, STR_LIT(NS_PRIVATE),
					STR_LIT("query"));
		if (r->query == NULL ||
		    !xml_add_child(a, r->query, asked->ns, asked->name))
			rc = -1;
		else
			rc = 0;
	}
	buf_reset(&value);
	return rc;
}

/* Serializes the set's elements in namespace ns into value; sets *empty
 * if none has content. -1 if value passes its max. */
static int group_serialize(struct arena *a, const struct xml_elem *payload,
			   struct str ns, struct buf *value, bool *empty)
{
	*empty = true;
	if (buf_append_c(value, QUERY_OPEN) < 0)
		return -1;
	xml_foreach_child(c, payload) {
		if (!str_eq(c->ns, ns))
			continue;
		if (!xml_elem_is_blank(a, c))
			*empty = false;
		if (xml_serialize(value, c, STR_LIT(NS_PRIVATE)) < 0)
			return -1;
	}
	return buf_append_c(value, QUERY_CLOSE);
}

/* Stores (or, all empty, deletes) the elements of namespace ns. */
static int group_store(struct store *st, struct iq_ctx *ctx, struct str ns)
{
	struct private_req *r = ctx->ud;
	const char *key = arena_strdup(ctx->st->a, ns).p;
	if (key == NULL)
		return -1;
	struct buf value = { .max = PRIVATE_MAX };
	bool empty;
	int rc = 0;
	if (group_serialize(ctx->st->a, ctx->payload, ns, &value, &empty) < 0
	    || (!empty && !xml_elem_readable(buf_str(&value))))
		r->err = STANZA_ERR_NOT_ACCEPTABLE;
	else
		rc = store_map_set(st, PRIVATE_TABLE, r->host, r->user, key,
				   empty ? NULL : value.data, value.len);
	buf_reset(&value);
	return rc;
}

int private_load(struct store *st, struct arena *a, const char *host,
		 const char *user, const char *ns, struct xml_elem **el_r)
{
	*el_r = NULL;
	struct buf value = { .max = PRIVATE_MAX };
	int rc = store_map_get(st, PRIVATE_TABLE, host, user, ns, &value);
	if (rc == 0) {
		struct xml_elem *q = xml_parse_elem(a, buf_str(&value),
						    STR_LIT(""));
		if (q == NULL || !value_ok(q, str_c(ns))) {
			log_errx("private: %s@%s: stored %s unreadable", user,
				 host, ns);
			rc = -1;
		} else {
			*el_r = xml_first_child_elem(q);
		}
	}
	buf_reset(&value);
	return rc < 0 ? -1 : 0;
}

int private_save(struct store *st, struct arena *a, const char *host,
		 const char *user, const struct xml_elem *el)
{
	const char *key = arena_strdup(a, el->ns).p;
	if (key == NULL)
		return -1;
	if (xml_elem_is_blank(a, el))
		return store_map_set(st, PRIVATE_TABLE, host, user, key, NULL,
				     0);
	struct buf value = { .max = PRIVATE_MAX };
	int rc = 1;
	if (buf_append_c(&value, QUERY_OPEN) == 0 &&
	    xml_serialize(&value, el, STR_LIT(NS_PRIVATE)) == 0 &&
	    buf_append_c(&value, QUERY_CLOSE) == 0 &&
	    xml_elem_readable(buf_str(&value)))
		rc = store_map_set(st, PRIVATE_TABLE, host, user, key,
				   value.data, value.len);
	buf_reset(&value);
	return rc;
}

/* XEP-0402 §6: the set's XEP-0048 bookmarks to the PEP nodes. */
static int bookmarks_sync(struct store *st, struct iq_ctx *ctx)
{
	struct private_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	struct xml_elem *storage = NULL;
	bool seen = false;
	xml_foreach_child(c, ctx->payload) {
		if (!str_eq_c(c->ns, NS_BOOKMARKS_LEGACY))
			continue;
		seen = true;
		if (storage == NULL && str_eq_c(c->name, "storage") &&
		    !xml_elem_is_blank(a, c))
			storage = c;
	}
	return seen ? bookmarks_from_private(st, a, r->sync, storage) : 0;
}

static int count_key(const char *key, const void *value, size_t len,
		     void *ud)
{
	(void)key, (void)value, (void)len;
	size_t *n = ud;
	return ++*n > PRIVATE_MAX_KEYS;
}

/* True if c's namespace was already seen among its earlier siblings. */
static bool ns_seen(const struct xml_elem *payload, const struct xml_elem *c)
{
	xml_foreach_child(p, payload) {
		if (p == c)
			return false;
		if (str_eq(p->ns, c->ns))
			return true;
	}
	return false;
}

static int set_locked(struct store *st, struct iq_ctx *ctx)
{
	struct private_req *r = ctx->ud;
	xml_foreach_child(c, ctx->payload) {
		if (ns_seen(ctx->payload, c))
			continue;
		if (group_store(st, ctx, c->ns) < 0)
			return -1;
		if (r->err != STANZA_ERR_NONE)
			return 0;
	}
	if (bookmarks_sync(st, ctx) < 0)
		return -1;
	size_t keys = 0;
	if (store_map_all(st, PRIVATE_TABLE, r->host, r->user, count_key,
			  &keys) < 0)
		return -1;
	if (keys > PRIVATE_MAX_KEYS)
		r->err = STANZA_ERR_POLICY_VIOLATION;
	return 0;
}

static int set_work(struct store *st, struct iq_ctx *ctx)
{
	struct private_req *r = ctx->ud;
	if (store_begin(st) < 0)
		return -1;
	int rc = set_locked(st, ctx);
	if (rc < 0 || r->err != STANZA_ERR_NONE) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

/* ---- on the shard ---- */

static void get_done(struct iq_ctx *ctx, int status)
{
	struct private_req *r = ctx->ud;
	if (!iq_done_error(ctx, status, STANZA_ERR_NONE))
		iq_reply_result(ctx, r->query);
}

static void set_done(struct iq_ctx *ctx, int status)
{
	struct private_req *r = ctx->ud;
	if (iq_done_error(ctx, status, r->err))
		return;
	pep_sync_send(r->sync);
	iq_reply_result(ctx, NULL);
}

/* §2.3: elements need their own namespace; the stream's and this
 * protocol's are refused (the XEP's other reserved ones are optional). */
static bool ns_allowed(struct str ns)
{
	return ns.len > 0 && !str_eq_c(ns, NS_CLIENT) &&
	       !str_eq_c(ns, NS_SERVER) && !str_eq_c(ns, NS_PRIVATE);
}

/* What is wrong with the request, before any storage work. */
static enum stanza_err check(const struct iq_ctx *ctx)
{
	const struct stanza *st = ctx->st;
	if (ctx->target != TO_BARE || !jid_bare_eq(&st->from, &st->to))
		return STANZA_ERR_FORBIDDEN;
	size_t n = xml_child_count(ctx->payload);
	if (n == 0)
		return STANZA_ERR_NOT_ACCEPTABLE; /* §2.3: at least one */
	if (ctx->type == IQ_GET && n > 1)
		return STANZA_ERR_BAD_REQUEST;    /* one namespace per get */
	if (n > PRIVATE_MAX_CHILDREN)
		return STANZA_ERR_NOT_ACCEPTABLE;
	xml_foreach_child(c, ctx->payload)
		if (!ns_allowed(c->ns))
			return STANZA_ERR_NOT_ACCEPTABLE;
	return STANZA_ERR_NONE;
}

static enum hook_ret private_handle(struct iq_ctx *ctx)
{
	enum stanza_err err = check(ctx);
	if (err != STANZA_ERR_NONE)
		return iq_reply_error(ctx, err);
	struct stanza *st = ctx->st;
	struct private_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	r->host = server.conf->hosts[ctx->host_idx];
	r->user = arena_strdup(st->a, st->to.node).p;
	if (r->user == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	ctx->ud = r;
	if (ctx->type == IQ_GET)
		return iq_defer(ctx, get_work, get_done);
	r->sync = pep_sync_new(st->a, &st->to);
	if (r->sync == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_defer_keyed(ctx, jid_to_str(st->a, &st->to, true), set_work,
			      set_done);
}

static const struct iq_route private_iq[] = {
	{ IQ_GET | IQ_SET, TO_HOST | TO_BARE, NS_PRIVATE, "query",
	  private_handle },
	{ 0 },
};

const struct module mod_private = {
	.name = "private",
	.spec = "XEP-0049",
	.iq = private_iq,
	.features = (const char *const[]){ NS_PRIVATE, NULL },
	.store = &private_schema,
};
