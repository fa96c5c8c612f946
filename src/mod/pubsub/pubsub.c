/*
 * pubsub.c - XEP-0060 requests, the same for PEP nodes and the service's:
 * parsing on the shard (ps_parse), the work in one storage job of the
 * owner (ps_run), the answer and the notifications back on the shard
 * (ps_answer). Who may do what:
 *
 * - PEP (XEP-0163): the account alone publishes, retracts, creates,
 *   configures, deletes and purges; others read as the node's access
 *   model says (§4.5 of XEP-0060: presence, roster, open, whitelist).
 *   Subscriptions are implicit (presence + caps), so subscribe and
 *   unsubscribe are <feature-not-implemented/>.
 * - The service: any account of its host creates nodes (it becomes their
 *   owner); owners and publishers publish; subscriptions are explicit;
 *   outcasts may do nothing; access is open or whitelist.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/server.h"
#include "../../router/route.h"
#include "../roster/roster-private.h"
#include "pep_sync.h"
#include "pubsub-private.h"

static const char *const op_names[] = {
	[PS_PUBLISH] = "publish",
	[PS_RETRACT] = "retract",
	[PS_ITEMS] = "items",
	[PS_CREATE] = "create",
	[PS_SUBSCRIBE] = "subscribe",
	[PS_UNSUBSCRIBE] = "unsubscribe",
	[PS_SUBSCRIPTIONS] = "subscriptions",
	[PS_AFFILIATIONS] = "affiliations",
	[PS_CONFIGURE_GET] = "configure get",
	[PS_CONFIGURE_SET] = "configure set",
	[PS_DEFAULT] = "default",
	[PS_DELETE] = "delete",
	[PS_PURGE] = "purge",
	[PS_OWNER_AFFS_GET] = "affiliations get",
	[PS_OWNER_AFFS_SET] = "affiliations set",
};

const char *ps_op_name(enum ps_op op)
{
	return (size_t)op < ARRAY_SIZE(op_names) ? op_names[op] : "?";
}

static struct ps_error err(enum stanza_err e, const char *app)
{
	return (struct ps_error){ e, app, NULL };
}

static struct ps_error unsupported(const char *feature)
{
	return (struct ps_error){ STANZA_ERR_FEATURE_NOT_IMPLEMENTED,
				  "unsupported", feature };
}

/* ---- parsing (shard) ---- */

struct op_def {
	const char *name;
	bool owner_ns;
	enum iq_type type;
	enum ps_op op;
	bool needs_node;
};

static const struct op_def op_defs[] = {
	{ "publish", false, IQ_SET, PS_PUBLISH, true },
	{ "retract", false, IQ_SET, PS_RETRACT, true },
	{ "items", false, IQ_GET, PS_ITEMS, true },
	{ "create", false, IQ_SET, PS_CREATE, false },
	{ "subscribe", false, IQ_SET, PS_SUBSCRIBE, true },
	{ "unsubscribe", false, IQ_SET, PS_UNSUBSCRIBE, true },
	{ "subscriptions", false, IQ_GET, PS_SUBSCRIPTIONS, false },
	{ "affiliations", false, IQ_GET, PS_AFFILIATIONS, false },
	{ "configure", true, IQ_GET, PS_CONFIGURE_GET, true },
	{ "configure", true, IQ_SET, PS_CONFIGURE_SET, true },
	{ "default", true, IQ_GET, PS_DEFAULT, false },
	{ "delete", true, IQ_SET, PS_DELETE, true },
	{ "purge", true, IQ_SET, PS_PURGE, true },
	{ "affiliations", true, IQ_GET, PS_OWNER_AFFS_GET, true },
	{ "affiliations", true, IQ_SET, PS_OWNER_AFFS_SET, true },
};

/* Features of XEP-0060 §10 for what we do not do, by element. */
static const char *unsupported_feature(bool owner_ns, struct str name)
{
	if (str_eq_c(name, "options"))
		return "subscription-options";
	if (owner_ns && str_eq_c(name, "subscriptions"))
		return "manage-subscriptions";
	return NULL;
}

static bool node_name_ok(struct str node)
{
	return node.len > 0 && node.len <= PS_NODE_MAX_LEN;
}

/* The data form inside the element named name, a sibling of the
 * operation (publish-options, configure). */
static struct xml_elem *sibling_form(const struct xml_elem *pubsub,
				     const char *name)
{
	struct xml_elem *e = xml_child(pubsub, NULL, name);
	return e != NULL ? dataform_find(e) : NULL;
}

static struct ps_error parse_publish(struct ps_req *r,
				     const struct xml_elem *pubsub)
{
	size_t n = xml_child_count(r->el);
	struct xml_elem *it = xml_first_child_elem(r->el);
	if (n > 1 || (it != NULL && !str_eq_c(it->name, "item")))
		return err(STANZA_ERR_BAD_REQUEST, "invalid-payload");
	if (it == NULL || xml_child_count(it) != 1)
		return err(STANZA_ERR_BAD_REQUEST, it == NULL ?
			   "item-required" : (xml_child_count(it) == 0 ?
			   "payload-required" : "invalid-payload"));
	if (xml_attr_get(it, "id").len > PS_ID_MAX_LEN)
		return err(STANZA_ERR_NOT_ACCEPTABLE, NULL);
	struct xml_elem *po = xml_child(pubsub, NULL, "publish-options");
	if (po != NULL) {
		r->form = dataform_find(po);
		if (r->form == NULL)
			return err(STANZA_ERR_BAD_REQUEST, "invalid-options");
	}
	return PS_OK;
}

static struct ps_error parse_retract(struct ps_req *r)
{
	struct xml_elem *it = xml_first_child_elem(r->el);
	if (it == NULL || !str_eq_c(it->name, "item") ||
	    xml_attr_get(it, "id").len == 0)
		return err(STANZA_ERR_BAD_REQUEST, "item-required");
	return PS_OK;
}

/* The bare JID of a subscribe/unsubscribe's jid attribute must be the
 * requester's (§6.1.3.1). */
static struct ps_error parse_sub(struct arena *a, struct ps_req *r)
{
	struct jid j;
	const char *why;
	struct str jid = xml_attr_get(r->el, "jid");
	if (str_is_null(jid)) /* XEP-0060 subscriber-configure-error-jid */
		return err(STANZA_ERR_BAD_REQUEST, "jid-required");
	if (jid_parse(a, jid, &j, &why) < 0 ||
	    !jid_bare_eq(&j, &r->from))
		return err(STANZA_ERR_BAD_REQUEST, "invalid-jid");
	return PS_OK;
}

struct ps_error ps_parse(struct iq_ctx *ctx, struct ps_req *r)
{
	const struct xml_elem *p = ctx->payload;
	bool owner_ns = str_eq_c(p->ns, NS_PUBSUB_OWNER);
	r->el = xml_first_child_elem(p);
	if (r->el == NULL)
		return err(STANZA_ERR_BAD_REQUEST, NULL);
	const struct op_def *d = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(op_defs) && d == NULL; i++)
		if (op_defs[i].owner_ns == owner_ns &&
		    str_eq_c(r->el->name, op_defs[i].name) &&
		    str_eq(r->el->ns, p->ns))
			d = &op_defs[i];
	if (d == NULL) {
		const char *f = unsupported_feature(owner_ns, r->el->name);
		return f != NULL ? unsupported(f)
				 : err(STANZA_ERR_BAD_REQUEST, NULL);
	}
	if (d->type != ctx->type) {
		/* configure and affiliations (owner) come in both types. */
		const struct op_def *other = d + 1;
		if (other < op_defs + ARRAY_SIZE(op_defs) &&
		    other->op != d->op && str_eq_c(r->el->name, other->name) &&
		    other->owner_ns == owner_ns && other->type == ctx->type)
			d = other;
		else
			return err(STANZA_ERR_BAD_REQUEST, NULL);
	}
	r->op = d->op;
	r->node = xml_attr_get(r->el, "node");
	if (r->node.p != NULL && !node_name_ok(r->node))
		return err(STANZA_ERR_NOT_ACCEPTABLE, "nodeid-required");
	if (d->needs_node && r->node.p == NULL)
		return err(STANZA_ERR_BAD_REQUEST, "nodeid-required");
	if (r->owner.service == false &&
	    (r->op == PS_SUBSCRIBE || r->op == PS_UNSUBSCRIBE))
		return unsupported("subscribe");
	switch (r->op) {
	case PS_PUBLISH:
		return parse_publish(r, p);
	case PS_RETRACT:
		return parse_retract(r);
	case PS_CREATE:
		if (r->node.p == NULL && !r->owner.service)
			return err(STANZA_ERR_NOT_ACCEPTABLE,
				   "nodeid-required");
		r->form = sibling_form(p, "configure");
		return PS_OK;
	case PS_CONFIGURE_SET:
		r->form = dataform_find(r->el);
		return r->form != NULL ? PS_OK
				       : err(STANZA_ERR_BAD_REQUEST, NULL);
	case PS_SUBSCRIBE:
	case PS_UNSUBSCRIBE:
		return parse_sub(ctx->st->a, r);
	default:
		return PS_OK;
	}
}

/* ---- access (thread pool) ---- */

static bool is_owner_bare(const struct ps_req *r)
{
	return !r->owner.service && jid_bare_eq(&r->from, &r->owner.jid);
}

/* The affiliation of jid (bare) with node n. */
static enum ps_aff aff_of(const struct ps_owner *o, const struct ps_node *n,
			  struct str jid)
{
	if (!o->service) {
		struct arena *a = arena_new(0);
		bool owner = str_eq(jid, jid_to_str(a, &o->jid, true));
		arena_destroy(&a);
		if (owner)
			return PS_AFF_OWNER;
	}
	for (size_t i = 0; n != NULL && i < n->naffs; i++)
		if (str_eq(n->affs[i].jid, jid))
			return n->affs[i].aff;
	return PS_AFF_NONE;
}

static bool in_groups(struct arena *a, const struct xml_elem *it,
		      const struct ps_config *c)
{
	xml_foreach_child(g, it) {
		if (!str_eq_c(g->name, "group"))
			continue;
		for (size_t i = 0; i < c->ngroups; i++)
			if (str_eq(xml_text(a, g), c->groups[i]))
				return true;
	}
	return false;
}

struct ps_error ps_may_read(struct store *st, struct arena *a,
			    const struct ps_owner *o, const struct ps_node *n,
			    struct str jid, int *rc_r)
{
	*rc_r = 0;
	enum ps_aff aff = aff_of(o, n, jid);
	if (aff == PS_AFF_OWNER)
		return PS_OK;
	if (aff == PS_AFF_OUTCAST)
		return err(STANZA_ERR_FORBIDDEN, NULL);
	switch (n->cfg.access) {
	case PS_ACCESS_OPEN:
		return PS_OK;
	case PS_ACCESS_WHITELIST:
		return aff >= PS_AFF_MEMBER ? PS_OK
			: err(STANZA_ERR_NOT_ALLOWED, "closed-node");
	case PS_ACCESS_PRESENCE:
	case PS_ACCESS_ROSTER:
		break;
	}
	if (o->service) /* no roster: never configured so */
		return err(STANZA_ERR_FORBIDDEN, NULL);
	const char *contact = arena_strdup(a, jid).p;
	struct xml_elem *it = NULL;
	int rc = contact == NULL ? -1 :
		roster_item_load(st, o->host, o->user, contact, a, &it);
	if (rc < 0) {
		*rc_r = -1;
		return err(STANZA_ERR_INTERNAL_SERVER_ERROR, NULL);
	}
	if (n->cfg.access == PS_ACCESS_PRESENCE)
		return rc == 0 && sub_state_has_from(roster_item_state(it).state)
			? PS_OK
			: err(STANZA_ERR_NOT_AUTHORIZED,
			      "presence-subscription-required");
	return rc == 0 && roster_item_visible(it) && in_groups(a, it, &n->cfg)
		? PS_OK
		: err(STANZA_ERR_NOT_AUTHORIZED, "not-in-roster-group");
}

/* Whether the requester may change the node (owner) or publish to it. */
static bool may_manage(const struct ps_req *r, const struct ps_node *n)
{
	return aff_of(&r->owner, n, r->from_bare) == PS_AFF_OWNER;
}

static bool may_publish(const struct ps_req *r, const struct ps_node *n)
{
	return aff_of(&r->owner, n, r->from_bare) >= PS_AFF_PUBLISHER;
}

/* ---- building replies and events ---- */

static struct xml_elem *reply_new(struct arena *a, bool owner_ns)
{
	return xml_elem_new(a, str_c(owner_ns ? NS_PUBSUB_OWNER : NS_PUBSUB),
			    STR_LIT("pubsub"));
}

static struct xml_elem *child(struct arena *a, struct xml_elem *parent,
			      const char *name)
{
	return xml_add_child(a, parent, parent->ns, str_c(name));
}

struct xml_elem *ps_event_items(struct arena *a, struct str node,
				struct ps_item *const *items, size_t n)
{
	struct xml_elem *ev = xml_elem_new(a, STR_LIT(NS_PUBSUB_EVENT),
					   STR_LIT("event"));
	struct xml_elem *its = ev ? child(a, ev, "items") : NULL;
	if (its == NULL)
		return NULL;
	xml_attr_set(a, its, "node", node);
	for (size_t i = 0; i < n; i++) {
		struct xml_elem *it = xml_copy(a, items[i]->x);
		if (it == NULL)
			return NULL;
		it->ns = STR_LIT(NS_PUBSUB_EVENT);
		xml_append_elem(its, it);
	}
	return ev;
}

static struct xml_elem *event_simple(struct arena *a, const char *what,
				     struct str node)
{
	struct xml_elem *ev = xml_elem_new(a, STR_LIT(NS_PUBSUB_EVENT),
					   STR_LIT("event"));
	struct xml_elem *e = ev ? child(a, ev, what) : NULL;
	if (e == NULL)
		return NULL;
	xml_attr_set(a, e, "node", node);
	return ev;
}

void ps_notify_add(struct arena *a, struct ps_req *r, struct str to)
{
	for (size_t i = 0; i < r->nnotify; i++)
		if (str_eq(r->notify[i], to))
			return;
	if (r->nnotify == r->notify_cap) {
		size_t cap = r->notify_cap ? 2 * r->notify_cap : 8;
		struct str *v = arena_alloc(a, cap * sizeof(*v));
		if (v == NULL)
			return;
		if (r->nnotify > 0)
			memcpy(v, r->notify, r->nnotify * sizeof(*v));
		r->notify = v;
		r->notify_cap = cap;
	}
	r->notify[r->nnotify++] = to;
}

/* Who hears of a change to node n: PEP, the interested resources that
 * may read it; the service, its subscribers that are not outcasts. */
static int add_recipients(struct store *st, struct arena *a,
			  struct ps_req *r, const struct ps_node *n)
{
	if (r->owner.service) {
		for (size_t i = 0; i < n->nsubs; i++) {
			struct jid j;
			const char *why;
			if (jid_parse(a, n->subs[i], &j, &why) < 0 ||
			    aff_of(&r->owner, n, jid_to_str(a, &j, true)) ==
				    PS_AFF_OUTCAST)
				continue;
			ps_notify_add(a, r, n->subs[i]);
		}
		return 0;
	}
	for (size_t i = 0; i < r->ncand; i++) {
		struct jid j;
		const char *why;
		if (jid_parse(a, r->cand[i], &j, &why) < 0)
			continue;
		int rc;
		struct ps_error e = ps_may_read(st, a, &r->owner, n,
						jid_to_str(a, &j, true), &rc);
		if (rc < 0)
			return -1;
		if (e.err == STANZA_ERR_NONE)
			ps_notify_add(a, r, r->cand[i]);
	}
	return 0;
}

/* ---- the operations (thread pool) ---- */

static int count_nodes(struct store *st, struct arena *a,
		       const struct ps_owner *o, size_t *n_r)
{
	struct ps_node **v;
	return ps_store_nodes(st, o, a, &v, n_r);
}

/* A new node named r->node (the requester becomes the service node's
 * owner), configured with form (config or publish-options) if any. */
static int node_create(struct store *st, struct arena *a, struct ps_req *r,
		       const struct xml_elem *form, bool preconditions,
		       struct ps_node **n_r)
{
	size_t count;
	if (count_nodes(st, a, &r->owner, &count) < 0)
		return -1;
	if (count >= server.conf->pubsub.max_nodes) {
		r->e = err(STANZA_ERR_NOT_ALLOWED, "max-nodes-exceeded");
		return 0;
	}
	struct ps_node *n = arena_zalloc(a, sizeof(*n));
	if (n == NULL)
		return -1;
	n->name = r->node;
	ps_config_default(&n->cfg, r->owner.service);
	if (form != NULL) {
		struct dataform f;
		if (dataform_parse(a, form, &f) < 0) {
			r->e = err(STANZA_ERR_BAD_REQUEST, NULL);
			return 0;
		}
		if (preconditions) {
			/* §7.1.5: options of an auto-created node; any we
			 * cannot take fails as an unmet precondition. */
			f.type = DATAFORM_SUBMIT;
			f.form_type = STR_NULL;
		}
		r->e = ps_config_apply(a, &f, &n->cfg, r->owner.service);
		if (r->e.err != STANZA_ERR_NONE) {
			if (preconditions)
				r->e = err(STANZA_ERR_CONFLICT,
					   "precondition-not-met");
			return 0;
		}
	}
	if (r->owner.service) {
		n->affs = arena_zalloc(a, sizeof(*n->affs));
		if (n->affs == NULL)
			return -1;
		n->affs[0] = (struct ps_jid_aff){ r->from_bare, PS_AFF_OWNER };
		n->naffs = 1;
	}
	*n_r = n;
	return ps_store_node_save(st, &r->owner, n);
}

static char *gen_id(struct arena *a)
{
	unsigned char rnd[8];
	BUG_ON(RAND_bytes(rnd, sizeof(rnd)) != 1);
	return arena_printf(a, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
			    rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
			    rnd[7]);
}

/* Loads r->node; 1 (with r->e set) when it does not exist. */
static int load(struct store *st, struct arena *a, struct ps_req *r,
		struct ps_node **n_r)
{
	int rc = ps_store_node_load(st, &r->owner, r->node, a, n_r);
	if (rc == 1)
		r->e = err(STANZA_ERR_ITEM_NOT_FOUND, NULL);
	return rc;
}

static bool preconditions_ok(struct arena *a, struct ps_req *r,
			     const struct ps_node *n)
{
	struct dataform f;
	if (dataform_parse(a, r->form, &f) < 0)
		return false;
	if (!str_is_null(f.form_type) &&
	    !str_eq_c(f.form_type, NS_PUBSUB_PUBLISH_OPTIONS))
		return false;
	return ps_preconditions_met(&f, &n->cfg);
}

static int op_publish(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = ps_store_node_load(st, &r->owner, r->node, a, &n);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		/* Auto-create (§7.1.4): the account's own PEP, or any
		 * account of the service's host. */
		if (r->owner.service ? !r->from_local : !is_owner_bare(r)) {
			r->e = err(STANZA_ERR_FORBIDDEN, NULL);
			return 0;
		}
		if (node_create(st, a, r, r->form, true, &n) < 0)
			return -1;
		if (r->e.err != STANZA_ERR_NONE)
			return 0;
	} else if (!may_publish(r, n)) {
		r->e = err(STANZA_ERR_FORBIDDEN, NULL);
		return 0;
	} else if (r->form != NULL && !preconditions_ok(a, r, n)) {
		r->e = err(STANZA_ERR_CONFLICT, "precondition-not-met");
		return 0;
	}
	struct xml_elem *src = xml_first_child_elem(r->el);
	struct ps_item it = { .seq = ++n->seq };
	it.id = xml_attr_get(src, "id");
	if (it.id.len == 0)
		it.id = str_c(gen_id(a));
	it.x = xml_elem_new(a, STR_LIT(NS_PUBSUB), STR_LIT("item"));
	if (it.x == NULL || xml_attr_set(a, it.x, "id", it.id) < 0)
		return -1;
	xml_append_elem(it.x, xml_copy(a, xml_first_child_elem(src)));
	if (ps_store_node_save(st, &r->owner, n) < 0 ||
	    ps_store_item_put(st, &r->owner, r->node, &it) < 0 ||
	    ps_store_trim(st, &r->owner, r->node,
			  n->cfg.persist ? n->cfg.max_items : 1) < 0)
		return -1;
	struct ps_item *one = &it;
	r->event = ps_event_items(a, r->node, &one, 1);
	r->reply = reply_new(a, false);
	struct xml_elem *p = child(a, r->reply, "publish");
	struct xml_elem *ri = p ? child(a, p, "item") : NULL;
	if (r->event == NULL || ri == NULL)
		return -1;
	xml_attr_set(a, p, "node", r->node);
	xml_attr_set(a, ri, "id", it.id);
	return add_recipients(st, a, r, n);
}

static int op_retract(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = load(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (!may_publish(r, n)) {
		r->e = err(STANZA_ERR_FORBIDDEN, NULL);
		return 0;
	}
	struct str id = xml_attr_get(xml_first_child_elem(r->el), "id");
	struct ps_item *v;
	size_t nv;
	if (ps_store_items(st, &r->owner, r->node, a, &v, &nv) < 0)
		return -1;
	bool found = false;
	for (size_t i = 0; i < nv && !found; i++)
		found = str_eq(v[i].id, id);
	if (!found) {
		r->e = err(STANZA_ERR_ITEM_NOT_FOUND, NULL);
		return 0;
	}
	if (ps_store_item_delete(st, &r->owner, r->node, id) < 0)
		return -1;
	bool notify = n->cfg.notify_retract;
	struct str na = xml_attr_get(r->el, "notify");
	if (na.p != NULL)
		dataform_bool(na, &notify);
	if (!notify)
		return 0;
	r->event = event_simple(a, "items", r->node);
	struct xml_elem *ret = r->event ?
		child(a, xml_first_child_elem(r->event), "retract") : NULL;
	if (ret == NULL)
		return -1;
	xml_attr_set(a, ret, "id", id);
	return add_recipients(st, a, r, n);
}

/* The items asked for: by id, or the newest max_items (all), oldest
 * first in the reply. */
static int op_items(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = load(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	r->e = ps_may_read(st, a, &r->owner, n, r->from_bare, &rc);
	if (rc < 0 || r->e.err != STANZA_ERR_NONE)
		return rc;
	struct ps_item *v;
	size_t nv;
	if (ps_store_items(st, &r->owner, r->node, a, &v, &nv) < 0)
		return -1;
	struct str max = xml_attr_get(r->el, "max_items");
	size_t take = nv;
	if (max.p != NULL) {
		char *end;
		unsigned long m = strtoul(max.p, &end, 10);
		if (max.len == 0 || *end != '\0') {
			r->e = err(STANZA_ERR_BAD_REQUEST, NULL);
			return 0;
		}
		if (m < take)
			take = m;
	}
	r->reply = reply_new(a, false);
	struct xml_elem *its = r->reply ? child(a, r->reply, "items") : NULL;
	if (its == NULL)
		return -1;
	xml_attr_set(a, its, "node", r->node);
	bool by_id = xml_first_child_elem(r->el) != NULL;
	for (size_t k = take; k-- > 0;) {
		if (by_id) {
			bool asked = false;
			xml_foreach_child(c, r->el)
				asked |= str_eq_c(c->name, "item") &&
					 str_eq(xml_attr_get(c, "id"), v[k].id);
			if (!asked)
				continue;
		}
		xml_append_elem(its, v[k].x);
	}
	return 0;
}

static int op_create(struct store *st, struct arena *a, struct ps_req *r)
{
	if (r->owner.service ? !r->from_local : !is_owner_bare(r)) {
		r->e = err(STANZA_ERR_FORBIDDEN, NULL);
		return 0;
	}
	bool instant = r->node.p == NULL;
	if (instant)
		r->node = str_c(gen_id(a));
	struct ps_node *n;
	int rc = ps_store_node_load(st, &r->owner, r->node, a, &n);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		r->e = err(STANZA_ERR_CONFLICT, NULL);
		return 0;
	}
	if (node_create(st, a, r, r->form, false, &n) < 0)
		return -1;
	if (instant && r->e.err == STANZA_ERR_NONE) {
		r->reply = reply_new(a, false);
		struct xml_elem *c = r->reply ? child(a, r->reply, "create")
					      : NULL;
		if (c == NULL)
			return -1;
		xml_attr_set(a, c, "node", r->node);
	}
	return 0;
}

/* Loads the node for an owner's operation. */
static int load_managed(struct store *st, struct arena *a, struct ps_req *r,
			struct ps_node **n_r)
{
	int rc = load(st, a, r, n_r);
	if (rc == 0 && !may_manage(r, *n_r)) {
		r->e = err(STANZA_ERR_FORBIDDEN, NULL);
		rc = 1;
	}
	return rc;
}

static int op_configure(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = load_managed(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (r->op == PS_CONFIGURE_GET) {
		r->reply = reply_new(a, true);
		struct xml_elem *c = r->reply ? child(a, r->reply, "configure")
					      : NULL;
		struct xml_elem *x = ps_config_form(a, &n->cfg,
						    r->owner.service);
		if (c == NULL || x == NULL)
			return -1;
		xml_attr_set(a, c, "node", r->node);
		xml_append_elem(c, x);
		return 0;
	}
	struct dataform f;
	if (dataform_parse(a, r->form, &f) < 0) {
		r->e = err(STANZA_ERR_BAD_REQUEST, NULL);
		return 0;
	}
	r->e = ps_config_apply(a, &f, &n->cfg, r->owner.service);
	if (r->e.err != STANZA_ERR_NONE)
		return 0;
	if (ps_store_node_save(st, &r->owner, n) < 0)
		return -1;
	return ps_store_trim(st, &r->owner, r->node,
			     n->cfg.persist ? n->cfg.max_items : 1);
}

static int op_default(struct arena *a, struct ps_req *r)
{
	struct ps_config c;
	ps_config_default(&c, r->owner.service);
	r->reply = reply_new(a, true);
	struct xml_elem *d = r->reply ? child(a, r->reply, "default") : NULL;
	struct xml_elem *x = ps_config_form(a, &c, r->owner.service);
	if (d == NULL || x == NULL)
		return -1;
	xml_append_elem(d, x);
	return 0;
}

static int op_delete_purge(struct store *st, struct arena *a,
			   struct ps_req *r)
{
	struct ps_node *n;
	int rc = load_managed(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	bool del = r->op == PS_DELETE;
	rc = del ? ps_store_node_delete(st, &r->owner, r->node)
		 : ps_store_trim(st, &r->owner, r->node, 0);
	if (rc < 0)
		return -1;
	r->event = event_simple(a, del ? "delete" : "purge", r->node);
	if (r->event == NULL)
		return -1;
	return add_recipients(st, a, r, n);
}

static bool subscribed(const struct ps_node *n, struct str jid)
{
	for (size_t i = 0; i < n->nsubs; i++)
		if (str_eq(n->subs[i], jid))
			return true;
	return false;
}

static int op_subscribe(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = load(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	struct str jid = arena_strdup(a, xml_attr_get(r->el, "jid"));
	bool was = subscribed(n, jid);
	if (r->op == PS_UNSUBSCRIBE) {
		if (!was) {
			r->e = err(STANZA_ERR_UNEXPECTED_REQUEST,
				   "not-subscribed");
			return 0;
		}
		size_t k = 0;
		for (size_t i = 0; i < n->nsubs; i++)
			if (!str_eq(n->subs[i], jid))
				n->subs[k++] = n->subs[i];
		n->nsubs = k;
		return ps_store_node_save(st, &r->owner, n);
	}
	r->e = ps_may_read(st, a, &r->owner, n, r->from_bare, &rc);
	if (rc < 0 || r->e.err != STANZA_ERR_NONE)
		return rc;
	if (!was) {
		if (n->nsubs >= PS_MAX_AFFS) {
			r->e = err(STANZA_ERR_NOT_ALLOWED, "too-many-subscriptions");
			return 0;
		}
		struct str *v = arena_alloc(a, (n->nsubs + 1) * sizeof(*v));
		if (v == NULL)
			return -1;
		if (n->nsubs > 0)
			memcpy(v, n->subs, n->nsubs * sizeof(*v));
		v[n->nsubs++] = jid;
		n->subs = v;
		if (ps_store_node_save(st, &r->owner, n) < 0)
			return -1;
	}
	r->reply = reply_new(a, false);
	struct xml_elem *s = r->reply ? child(a, r->reply, "subscription")
				      : NULL;
	if (s == NULL)
		return -1;
	xml_attr_set(a, s, "node", r->node);
	xml_attr_set(a, s, "jid", jid);
	xml_attr_set(a, s, "subscription", STR_LIT("subscribed"));
	if (n->cfg.send_last == PS_SEND_LAST_NEVER)
		return 0;
	/* §6.1.7: the last item, to the new subscriber. */
	struct ps_item *v;
	size_t nv;
	if (ps_store_items(st, &r->owner, r->node, a, &v, &nv) < 0)
		return -1;
	if (nv > 0) {
		struct ps_item *last = &v[0];
		r->event = ps_event_items(a, r->node, &last, 1);
		ps_notify_add(a, r, jid);
	}
	return 0;
}

/* The requester's own subscriptions or affiliations, on every node. */
static int op_own(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node **v;
	size_t nv;
	if (ps_store_nodes(st, &r->owner, a, &v, &nv) < 0)
		return -1;
	bool subs = r->op == PS_SUBSCRIPTIONS;
	r->reply = reply_new(a, false);
	struct xml_elem *list = r->reply ?
		child(a, r->reply, subs ? "subscriptions" : "affiliations")
		: NULL;
	if (list == NULL)
		return -1;
	for (size_t i = 0; i < nv; i++) {
		if (r->node.p != NULL && !str_eq(r->node, v[i]->name))
			continue;
		if (subs) {
			for (size_t k = 0; k < v[i]->nsubs; k++) {
				struct jid j;
				const char *why;
				if (jid_parse(a, v[i]->subs[k], &j, &why) < 0 ||
				    !jid_bare_eq(&j, &r->from))
					continue;
				struct xml_elem *s = child(a, list,
							   "subscription");
				xml_attr_set(a, s, "node", v[i]->name);
				xml_attr_set(a, s, "jid", v[i]->subs[k]);
				xml_attr_set(a, s, "subscription",
					     STR_LIT("subscribed"));
			}
			continue;
		}
		enum ps_aff aff = aff_of(&r->owner, v[i], r->from_bare);
		if (aff == PS_AFF_NONE)
			continue;
		struct xml_elem *f = child(a, list, "affiliation");
		xml_attr_set(a, f, "node", v[i]->name);
		xml_attr_set(a, f, "affiliation", str_c(ps_aff_name(aff)));
	}
	return 0;
}

static int set_affs(struct store *st, struct arena *a, struct ps_req *r,
		    struct ps_node *n)
{
	size_t cap = n->naffs + xml_child_count(r->el);
	struct ps_jid_aff *v = arena_zalloc(a, (cap + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	if (n->naffs > 0)
		memcpy(v, n->affs, n->naffs * sizeof(*v));
	size_t nv = n->naffs;
	xml_foreach_child(c, r->el) {
		struct jid j;
		const char *why;
		enum ps_aff aff;
		if (!str_eq_c(c->name, "affiliation") ||
		    jid_parse(a, xml_attr_get(c, "jid"), &j, &why) < 0 ||
		    ps_aff_parse(xml_attr_get(c, "affiliation"), &aff) < 0 ||
		    (!r->owner.service && aff != PS_AFF_MEMBER &&
		     aff != PS_AFF_NONE && aff != PS_AFF_OUTCAST)) {
			r->e = err(STANZA_ERR_NOT_ACCEPTABLE, NULL);
			return 0;
		}
		struct str bare = jid_to_str(a, &j, true);
		if (str_eq(bare, r->from_bare)) {
			/* The owner keeps ownership (§8.9.2.4). */
			r->e = err(STANZA_ERR_NOT_ACCEPTABLE, NULL);
			return 0;
		}
		size_t i = 0;
		while (i < nv && !str_eq(v[i].jid, bare))
			i++;
		if (i == nv)
			nv++;
		v[i] = (struct ps_jid_aff){ bare, aff };
	}
	if (nv > PS_MAX_AFFS) {
		r->e = err(STANZA_ERR_NOT_ALLOWED, NULL);
		return 0;
	}
	n->affs = v;
	n->naffs = nv;
	return ps_store_node_save(st, &r->owner, n);
}

static int op_owner_affs(struct store *st, struct arena *a, struct ps_req *r)
{
	struct ps_node *n;
	int rc = load_managed(st, a, r, &n);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (r->op == PS_OWNER_AFFS_SET)
		return set_affs(st, a, r, n);
	r->reply = reply_new(a, true);
	struct xml_elem *list = r->reply ? child(a, r->reply, "affiliations")
					 : NULL;
	if (list == NULL)
		return -1;
	xml_attr_set(a, list, "node", r->node);
	if (!r->owner.service) {
		struct xml_elem *f = child(a, list, "affiliation");
		xml_attr_set(a, f, "jid", r->from_bare);
		xml_attr_set(a, f, "affiliation", STR_LIT("owner"));
	}
	for (size_t i = 0; i < n->naffs; i++) {
		if (n->affs[i].aff == PS_AFF_NONE)
			continue;
		struct xml_elem *f = child(a, list, "affiliation");
		xml_attr_set(a, f, "jid", n->affs[i].jid);
		xml_attr_set(a, f, "affiliation",
			     str_c(ps_aff_name(n->affs[i].aff)));
	}
	return 0;
}

static int run_op(struct store *st, struct arena *a, struct ps_req *r)
{
	switch (r->op) {
	case PS_PUBLISH:
		return op_publish(st, a, r);
	case PS_RETRACT:
		return op_retract(st, a, r);
	case PS_ITEMS:
		return op_items(st, a, r);
	case PS_CREATE:
		return op_create(st, a, r);
	case PS_SUBSCRIBE:
	case PS_UNSUBSCRIBE:
		return op_subscribe(st, a, r);
	case PS_SUBSCRIPTIONS:
	case PS_AFFILIATIONS:
		return op_own(st, a, r);
	case PS_CONFIGURE_GET:
	case PS_CONFIGURE_SET:
		return op_configure(st, a, r);
	case PS_DEFAULT:
		return op_default(a, r);
	case PS_DELETE:
	case PS_PURGE:
		return op_delete_purge(st, a, r);
	case PS_OWNER_AFFS_GET:
	case PS_OWNER_AFFS_SET:
		return op_owner_affs(st, a, r);
	}
	return -1;
}

int ps_run(struct store *st, struct arena *a, struct ps_req *r)
{
	int rc = run_op(st, a, r);
	/* The conversions of the change (pep_sync.h), in the same job. */
	if (rc == 0 && r->sync != NULL && r->e.err == STANZA_ERR_NONE)
		rc = pep_sync_after(st, a, r);
	return rc;
}

/* ---- answering (shard) ---- */

void ps_reply_error(struct iq_ctx *ctx, struct ps_error e)
{
	if (e.app == NULL) {
		iq_reply_error(ctx, e.err);
		return;
	}
	/* route_bounce() with the application condition (XEP-0060 §7.1.3
	 * and the like) added to <error/>. */
	struct stanza *st = ctx->st;
	ctx->st = NULL;
	struct jid from = st->from;
	st->from = st->to;
	st->to = from;
	if (st->from.domain.len == 0) {
		st->from = from;
		st->from.resource = STR_NULL;
	}
	xml_attr_set(st->a, st->x, "from", jid_to_str(st->a, &st->from,
						      false));
	xml_attr_set(st->a, st->x, "to", jid_to_str(st->a, &st->to, false));
	st->type = STR_LIT("error");
	stanza_set_error(st->a, st->x, e.err, NULL);
	struct xml_elem *er = NULL;
	xml_foreach_child(c, st->x)
		if (str_eq_c(c->name, "error"))
			er = c;
	struct xml_elem *app = er ? xml_add_child(st->a, er,
						  STR_LIT(NS_PUBSUB_ERRORS),
						  str_c(e.app))
				  : NULL;
	if (app != NULL && e.feature != NULL)
		xml_attr_set(st->a, app, "feature", str_c(e.feature));
	route(st);
}

void ps_send_event(const struct jid *from, const struct xml_elem *event,
		   const struct str *to, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct arena *a = arena_new(0);
		struct jid j;
		const char *why;
		int rc = jid_parse(a, to[i], &j, &why);
		if (rc == 0) {
			struct stanza *st = stanza_new(STANZA_MESSAGE, from,
						       &j, "headline");
			xml_append_elem(st->x, xml_copy(st->a, event));
			route(st);
		}
		arena_destroy(&a);
	}
}

void ps_answer(struct iq_ctx *ctx, struct ps_req *r, int status)
{
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	if (r->e.err != STANZA_ERR_NONE) {
		ps_reply_error(ctx, r->e);
		return;
	}
	/* The notifications first: r lives in the request's arena, which
	 * the reply takes. */
	if (r->event != NULL)
		ps_send_event(&r->owner.jid, r->event, r->notify, r->nnotify);
	pep_sync_send(r->sync);
	iq_reply_result(ctx, r->reply);
}
