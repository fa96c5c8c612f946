/*
 * pep_sync.c - the machinery the conversions between PEP and older
 * storage share (pep_sync.h): the snapshot of interested resources, the
 * publishes and retracts a conversion makes as the account, and what is
 * sent once the job is done. The conversions themselves are in
 * mod_avatar.c (XEP-0398) and mod_bookmarks.c (XEP-0402 §6).
 */
#include <string.h>

#include "../../core/log.h"
#include "../../core/server.h"
#include "pep_sync.h"
#include "pubsub-private.h"

/* The nodes a conversion may publish to: their interested resources are
 * taken on the shard, as for a publish by the account. */
static const char *const sync_nodes[] = {
	NS_AVATAR_DATA,
	NS_AVATAR_METADATA,
	NS_BOOKMARKS2,
	NS_BOOKMARKS_LEGACY,
};
#define NSYNC_NODES (sizeof(sync_nodes) / sizeof(sync_nodes[0]))

struct sync_out {
	struct xml_elem *event;
	struct str *to;
	size_t nto;
};

struct pep_sync {
	struct ps_owner owner;
	struct str bare;
	struct str *cand[NSYNC_NODES];
	size_t ncand[NSYNC_NODES];
	struct sync_out *out;
	size_t nout, cap;
	const char *hash; /* NULL: unchanged */
};

struct pep_sync *pep_sync_new(struct arena *a, const struct jid *account)
{
	struct pep_sync *s = arena_zalloc(a, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->owner.host = arena_strdup(a, account->domain).p;
	s->owner.user = arena_strdup(a, account->node).p;
	s->owner.jid.node = arena_strdup(a, account->node);
	s->owner.jid.domain = arena_strdup(a, account->domain);
	s->owner.jid.resource = STR_NULL;
	s->bare = jid_to_str(a, &s->owner.jid, true);
	if (s->owner.host == NULL || s->owner.user == NULL ||
	    s->bare.p == NULL)
		return NULL;
	for (size_t i = 0; i < NSYNC_NODES; i++)
		s->ncand[i] = pep_interested(a, s->bare, str_c(sync_nodes[i]),
					     &s->cand[i]);
	return s;
}

const struct ps_owner *pep_sync_owner(const struct pep_sync *s)
{
	return &s->owner;
}

void pep_sync_set_hash(struct arena *a, struct pep_sync *s, const char *hash)
{
	s->hash = arena_strdup(a, str_c(hash)).p;
}

bool pep_sync_node(struct str node)
{
	return str_eq_c(node, NS_AVATAR_METADATA) ||
	       str_eq_c(node, NS_BOOKMARKS2) ||
	       str_eq_c(node, NS_BOOKMARKS_LEGACY);
}

/* A request of the account on node, as mod_pep would build it. */
static struct ps_req *sync_req(struct arena *a, struct pep_sync *s,
			       const char *node, enum ps_op op)
{
	struct ps_req *r = arena_zalloc(a, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->owner = s->owner;
	r->from = s->owner.jid;
	r->from_bare = s->bare;
	r->from_local = true;
	r->op = op;
	r->node = str_c(node);
	for (size_t i = 0; i < NSYNC_NODES; i++)
		if (strcmp(node, sync_nodes[i]) == 0) {
			r->cand = s->cand[i];
			r->ncand = s->ncand[i];
		}
	r->el = xml_elem_new(a, STR_LIT(NS_PUBSUB),
			     str_c(op == PS_PUBLISH ? "publish" : "retract"));
	if (r->el == NULL || xml_attr_set(a, r->el, "node", r->node) < 0)
		return NULL;
	return r;
}

/* Keeps r's notification for pep_sync_send(). */
static int sync_keep(struct arena *a, struct pep_sync *s, struct ps_req *r)
{
	if (r->e.err != STANZA_ERR_NONE) {
		log_warnx("pep: %s@%s: conversion to %.*s refused (%s)",
			  s->owner.user, s->owner.host, STR_FMT(r->node),
			  stanza_err_name(r->e.err));
		return 0;
	}
	if (r->event == NULL || r->nnotify == 0)
		return 0;
	if (s->nout == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 4;
		struct sync_out *v = arena_alloc(a, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		if (s->nout > 0)
			memcpy(v, s->out, s->nout * sizeof(*v));
		s->out = v;
		s->cap = cap;
	}
	s->out[s->nout++] = (struct sync_out){ r->event, r->notify,
					       r->nnotify };
	return 0;
}

int pep_sync_publish(struct store *st, struct arena *a, struct pep_sync *s,
		     const char *node, const struct xml_elem *item,
		     const struct ps_config *create)
{
	struct ps_req *r = sync_req(a, s, node, PS_PUBLISH);
	struct xml_elem *it = item ? xml_copy(a, item) : NULL;
	if (r == NULL || it == NULL)
		return -1;
	it->ns = STR_LIT(NS_PUBSUB);
	xml_append_elem(r->el, it);
	if (create != NULL) {
		struct ps_node *n;
		int rc = ps_store_node_load(st, &s->owner, r->node, a, &n);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			n = arena_zalloc(a, sizeof(*n));
			if (n == NULL)
				return -1;
			n->name = r->node;
			n->cfg = *create;
			if (ps_store_node_save(st, &s->owner, n) < 0)
				return -1;
		}
	}
	if (ps_run(st, a, r) < 0)
		return -1;
	return sync_keep(a, s, r);
}

int pep_sync_retract(struct store *st, struct arena *a, struct pep_sync *s,
		     const char *node, struct str id)
{
	struct ps_req *r = sync_req(a, s, node, PS_RETRACT);
	struct xml_elem *it = r ? xml_add_child(a, r->el, STR_LIT(NS_PUBSUB),
						 STR_LIT("item")) : NULL;
	if (it == NULL || xml_attr_set(a, it, "id", id) < 0)
		return -1;
	if (ps_run(st, a, r) < 0)
		return -1;
	return sync_keep(a, s, r);
}

int pep_sync_last(struct store *st, struct arena *a, struct pep_sync *s,
		  const char *node, struct ps_node **n_r,
		  struct ps_item **it_r)
{
	*it_r = NULL;
	if (n_r != NULL)
		*n_r = NULL;
	struct ps_node *n;
	int rc = ps_store_node_load(st, &s->owner, str_c(node), a, &n);
	if (rc < 0)
		return -1;
	if (rc == 1)
		return 0;
	if (n_r != NULL)
		*n_r = n;
	struct ps_item *v;
	size_t nv;
	if (ps_store_items(st, &s->owner, str_c(node), a, &v, &nv) < 0)
		return -1;
	if (nv > 0)
		*it_r = &v[0];
	return 0;
}

int pep_sync_after(struct store *st, struct arena *a, struct ps_req *r)
{
	struct pep_sync *s = r->sync;
	struct xml_elem *it = xml_first_child_elem(r->el);
	struct xml_elem *payload = it ? xml_first_child_elem(it) : NULL;
	if (str_eq_c(r->node, NS_AVATAR_METADATA)) {
		/* The client publishes the data first, then the metadata
		 * that points at it (XEP-0084 §4.1, §4.2). */
		if (r->op != PS_PUBLISH || payload == NULL ||
		    !str_eq_c(payload->ns, NS_AVATAR_METADATA))
			return 0;
		return avatar_from_pep(st, a, s, payload);
	}
	if (str_eq_c(r->node, NS_BOOKMARKS2)) {
		if (r->op != PS_PUBLISH && r->op != PS_RETRACT &&
		    r->op != PS_PURGE && r->op != PS_DELETE)
			return 0;
		/* The node's first publish: bookmarks kept only in the
		 * older storage until now are taken over, not lost. */
		struct ps_node *n = NULL;
		if (r->op == PS_PUBLISH &&
		    ps_store_node_load(st, &s->owner, r->node, a, &n) < 0)
			return -1;
		return bookmarks_from_pep2(st, a, s, n != NULL && n->seq == 1);
	}
	if (str_eq_c(r->node, NS_BOOKMARKS_LEGACY)) {
		if (r->op == PS_PUBLISH) {
			if (payload == NULL ||
			    !str_eq_c(payload->ns, NS_BOOKMARKS_LEGACY) ||
			    !str_eq_c(payload->name, "storage"))
				return 0;
			return bookmarks_from_pep_legacy(st, a, s, payload);
		}
		if (r->op == PS_RETRACT || r->op == PS_PURGE ||
		    r->op == PS_DELETE)
			return bookmarks_from_pep_legacy(st, a, s, NULL);
	}
	return 0;
}

void pep_sync_send(struct pep_sync *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nout; i++)
		ps_send_event(&s->owner.jid, s->out[i].event, s->out[i].to,
			      s->out[i].nto);
	if (s->hash != NULL)
		avatar_hash_update(s->bare, s->hash);
}
