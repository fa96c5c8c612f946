/*
 * caps_client.c - XEP-0115 for the capabilities clients announce: the
 * cache of verification strings and how an unknown one is learned.
 * See caps.h.
 *
 * An unknown ver is asked once: the first caps_learn() sends disco#info
 * (node "NODE#VER") to the entity that announced it; later callers for
 * the same ver wait on the same question. The answer is cached only if
 * it hashes to the ver (§5.4), so one client cannot tell the server that
 * another client's ver means something else. The features of a cached
 * ver are kept sorted for bsearch.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/xmalloc.h"
#include "../router/iq.h"
#include "../router/route.h"
#include "../xml/dataform.h"
#include "../xmpp/ns.h"
#include "caps.h"

#define NS_CAPS "http://jabber.org/protocol/caps"
#define CAPS_MAX_FEATURES 1024

struct caps_entry {
	char **features; /* sorted, owned */
	size_t n;
};

struct caps_waiter {
	caps_learned_fn *fn;
	void *ud;
	struct caps_waiter *next;
};

/* A question on its way: who waits for it. */
struct caps_query {
	char *ver;
	char *hash;
	struct caps_waiter *waiters;
};

static uv_rwlock_t lock;
static uv_once_t once = UV_ONCE_INIT;
static struct hmap cache;    /* ver -> struct caps_entry */
static struct hmap inflight; /* ver -> struct caps_query */

static void caps_init(void)
{
	BUG_ON(uv_rwlock_init(&lock) != 0);
}

struct caps_ref caps_of(const struct xml_elem *presence)
{
	struct caps_ref r = { STR_NULL, STR_NULL, STR_NULL };
	const struct xml_elem *c = xml_child(presence, NS_CAPS, "c");
	if (c == NULL)
		return r;
	struct str ver = xml_attr_get(c, "ver");
	struct str hash = xml_attr_get(c, "hash");
	struct str node = xml_attr_get(c, "node");
	if (ver.len == 0 || hash.len == 0 || node.p == NULL ||
	    ver.len > 128 || hash.len > 16 || node.len > 1024)
		return r; /* the legacy format (no hash) is not supported */
	r.ver = ver;
	r.hash = hash;
	r.node = node;
	return r;
}

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool caps_known(struct str ver)
{
	uv_once(&once, caps_init);
	uv_rwlock_rdlock(&lock);
	bool known = hmap_get(&cache, ver) != NULL;
	uv_rwlock_rdunlock(&lock);
	return known;
}

bool caps_has_feature(struct str ver, struct str feature)
{
	uv_once(&once, caps_init);
	char *f = str_xdup(feature);
	uv_rwlock_rdlock(&lock);
	const struct caps_entry *e = hmap_get(&cache, ver);
	bool has = e != NULL &&
		   bsearch(&f, e->features, e->n, sizeof(*e->features),
			   cmp_cstr) != NULL;
	uv_rwlock_rdunlock(&lock);
	free(f);
	return has;
}

/* ---- the verification string (§5.1, §5.4) ---- */

static int cmp_str(const void *a, const void *b)
{
	const struct str *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);
	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Sorts v and fails on a duplicate (§5.4 3.3, 3.4). */
static int sort_unique(struct str *v, size_t n)
{
	if (n > 1) /* NULL when empty */
		qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 1; i < n; i++)
		if (cmp_str(&v[i - 1], &v[i]) == 0)
			return -1;
	return 0;
}

static int cmp_field(const void *a, const void *b)
{
	const struct dataform_field *x = a, *y = b;
	return cmp_str(&x->var, &y->var);
}

static int cmp_form(const void *a, const void *b)
{
	const struct dataform *x = a, *y = b;
	return cmp_str(&x->form_type, &y->form_type);
}

/* Appends the forms of query to s, sorted (§5.1 step 6). */
static int append_forms(struct arena *a, const struct xml_elem *query,
			struct buf *s)
{
	size_t n = 0;
	xml_foreach_child(x, query)
		n += str_eq_c(x->ns, NS_DATA) && str_eq_c(x->name, "x");
	struct dataform *forms = arena_zalloc(a, (n + 1) * sizeof(*forms));
	if (forms == NULL)
		return -1;
	size_t k = 0;
	xml_foreach_child(x, query) {
		if (!str_eq_c(x->ns, NS_DATA) || !str_eq_c(x->name, "x"))
			continue;
		if (dataform_parse(a, x, &forms[k]) < 0)
			return -1;
		/* §5.4 3.6: a form without FORM_TYPE is ignored. */
		if (!str_is_null(forms[k].form_type))
			k++;
	}
	if (k > 1) /* NULL when empty */
		qsort(forms, k, sizeof(*forms), cmp_form);
	for (size_t i = 0; i < k; i++) {
		if (i > 0 && cmp_form(&forms[i - 1], &forms[i]) == 0)
			return -1; /* §5.4 3.5 */
		struct dataform *f = &forms[i];
		buf_append_str(s, f->form_type);
		buf_append_c(s, "<");
		if (f->nfields > 1) /* NULL when empty */
			qsort(f->fields, f->nfields, sizeof(*f->fields),
			      cmp_field);
		for (size_t j = 0; j < f->nfields; j++) {
			struct dataform_field *fd = &f->fields[j];
			buf_append_str(s, fd->var);
			buf_append_c(s, "<");
			if (fd->nvalues > 1) /* NULL when empty */
				qsort(fd->values, fd->nvalues,
				      sizeof(*fd->values), cmp_str);
			for (size_t v = 0; v < fd->nvalues; v++) {
				buf_append_str(s, fd->values[v]);
				buf_append_c(s, "<");
			}
		}
	}
	return 0;
}

static const EVP_MD *digest_of(struct str hash)
{
	/* IANA names ("sha-1", "sha-256") less the dash are OpenSSL's. */
	char name[16];
	size_t k = 0;
	for (size_t i = 0; i < hash.len && k + 1 < sizeof(name); i++)
		if (hash.p[i] != '-')
			name[k++] = hash.p[i];
	name[k] = '\0';
	if (strncmp(name, "sha", 3) != 0)
		return NULL; /* md5 and friends: §5.4 note, not accepted */
	return EVP_get_digestbyname(name);
}

int caps_compute(struct arena *a, const struct xml_elem *query,
		 struct str hash, struct str *ver_r)
{
	const EVP_MD *md = digest_of(hash);
	if (md == NULL)
		return -1;
	size_t nid = 0, nf = 0;
	xml_foreach_child(c, query) {
		nid += str_eq_c(c->ns, NS_DISCO_INFO) &&
		       str_eq_c(c->name, "identity");
		nf += str_eq_c(c->ns, NS_DISCO_INFO) &&
		      str_eq_c(c->name, "feature");
	}
	struct str *ids = arena_zalloc(a, (nid + 1) * sizeof(*ids));
	struct str *feats = arena_zalloc(a, (nf + 1) * sizeof(*feats));
	if (ids == NULL || feats == NULL)
		return -1;
	nid = nf = 0;
	xml_foreach_child(c, query) {
		if (!str_eq_c(c->ns, NS_DISCO_INFO))
			continue;
		if (str_eq_c(c->name, "identity")) {
			struct str lang = xml_attr_get_ns(c, NS_XML, "lang");
			struct str name = xml_attr_get(c, "name");
			char *s = arena_printf(
				a, "%.*s/%.*s/%.*s/%.*s",
				STR_FMT(xml_attr_get(c, "category")),
				STR_FMT(xml_attr_get(c, "type")),
				STR_FMT(lang), STR_FMT(name));
			if (s == NULL)
				return -1;
			ids[nid++] = str_c(s);
		} else if (str_eq_c(c->name, "feature")) {
			feats[nf++] = xml_attr_get(c, "var");
			if (feats[nf - 1].p == NULL)
				return -1;
		}
	}
	if (sort_unique(ids, nid) < 0 || sort_unique(feats, nf) < 0)
		return -1;
	struct buf s = { 0 };
	for (size_t i = 0; i < nid; i++) {
		buf_append_str(&s, ids[i]);
		buf_append_c(&s, "<");
	}
	for (size_t i = 0; i < nf; i++) {
		buf_append_str(&s, feats[i]);
		buf_append_c(&s, "<");
	}
	int rc = append_forms(a, query, &s);
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	if (rc == 0 && EVP_Digest(s.data, s.len, d, &dlen, md, NULL) != 1)
		rc = -1;
	buf_reset(&s);
	if (rc < 0)
		return -1;
	char *out = arena_alloc(a, 4 * ((dlen + 2) / 3) + 1);
	if (out == NULL)
		return -1;
	EVP_EncodeBlock((unsigned char *)out, d, (int)dlen);
	*ver_r = str_c(out);
	return 0;
}

/* ---- learning ---- */

static struct caps_entry *entry_new(const struct xml_elem *query)
{
	struct caps_entry *e = xcalloc(1, sizeof(*e));
	size_t n = 0;
	xml_foreach_child(c, query)
		n += str_eq_c(c->ns, NS_DISCO_INFO) &&
		     str_eq_c(c->name, "feature");
	if (n > CAPS_MAX_FEATURES)
		n = CAPS_MAX_FEATURES;
	e->features = xcalloc(n + 1, sizeof(*e->features));
	xml_foreach_child(c, query) {
		if (e->n == n)
			break;
		if (str_eq_c(c->ns, NS_DISCO_INFO) &&
		    str_eq_c(c->name, "feature"))
			e->features[e->n++] =
				str_xdup(xml_attr_get(c, "var"));
	}
	if (e->n > 1) /* NULL when empty */
		qsort(e->features, e->n, sizeof(*e->features), cmp_cstr);
	return e;
}

static void entry_free(struct caps_entry *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->features[i]);
	free(e->features);
	free(e);
}

/* Whether reply is a disco#info result that hashes to q's ver. */
static const struct xml_elem *verified(const struct stanza *reply,
				       const struct caps_query *q)
{
	if (reply == NULL || !str_eq_c(reply->type, "result"))
		return NULL;
	const struct xml_elem *query = xml_child(reply->x, NS_DISCO_INFO,
						 "query");
	if (query == NULL)
		return NULL;
	struct arena *a = arena_new(0);
	struct str ver;
	bool ok = caps_compute(a, query, str_c(q->hash), &ver) == 0 &&
		  str_eq_c(ver, q->ver);
	arena_destroy(&a);
	return ok ? query : NULL;
}

static void on_reply(const struct stanza *reply, void *ud)
{
	struct caps_query *q = ud;
	const struct xml_elem *query = verified(reply, q);
	if (reply != NULL && query == NULL) {
		struct buf b = { .max = 4096 };
		xml_serialize(&b, reply->x, STR_LIT(NS_CLIENT));
		log_debug("caps: %s did not verify: %.*s", q->ver,
			  (int)b.len, b.data);
		buf_reset(&b);
	}
	struct caps_entry *e = query != NULL ? entry_new(query) : NULL;
	uv_rwlock_wrlock(&lock);
	hmap_del(&inflight, str_c(q->ver));
	if (e != NULL && cache.count < CAPS_CACHE_MAX &&
	    hmap_get(&cache, str_c(q->ver)) == NULL) {
		hmap_put(&cache, str_c(q->ver), e);
		e = NULL;
	}
	bool ok = hmap_get(&cache, str_c(q->ver)) != NULL;
	uv_rwlock_wrunlock(&lock);
	if (e != NULL)
		entry_free(e);
	for (struct caps_waiter *w = q->waiters, *next; w; w = next) {
		next = w->next;
		w->fn(ok, w->ud);
		free(w);
	}
	free(q->ver);
	free(q->hash);
	free(q);
}

void caps_learn(const struct jid *from, const struct jid *to,
		struct caps_ref c, caps_learned_fn *fn, void *ud)
{
	uv_once(&once, caps_init);
	struct caps_waiter *w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->ud = ud;
	uv_rwlock_wrlock(&lock);
	if (hmap_get(&cache, c.ver) != NULL) {
		uv_rwlock_wrunlock(&lock);
		free(w);
		fn(true, ud);
		return;
	}
	struct caps_query *q = hmap_get(&inflight, c.ver);
	if (q != NULL) {
		w->next = q->waiters;
		q->waiters = w;
		uv_rwlock_wrunlock(&lock);
		return;
	}
	q = xcalloc(1, sizeof(*q));
	q->ver = str_xdup(c.ver);
	q->hash = str_xdup(c.hash);
	q->waiters = w;
	hmap_put(&inflight, c.ver, q);
	uv_rwlock_wrunlock(&lock);

	struct stanza *st = stanza_new(STANZA_IQ, from, to, "get");
	struct xml_elem *qe = xml_add_child(st->a, st->x,
					    STR_LIT(NS_DISCO_INFO),
					    STR_LIT("query"));
	char *node = arena_printf(st->a, "%.*s#%.*s", STR_FMT(c.node),
				  STR_FMT(c.ver));
	xml_attr_set(st->a, qe, "node", str_c(node));
	if (iq_request(st, on_reply, q) < 0)
		on_reply(NULL, q);
}

static void free_entry(struct str key, void *value, void *ud)
{
	(void)key, (void)ud;
	entry_free(value);
}

void caps_fini(void)
{
	uv_once(&once, caps_init);
	/* The questions were answered with NULL by iq_requests_fini. */
	hmap_foreach(&cache, free_entry, NULL);
	hmap_clear(&cache);
}
