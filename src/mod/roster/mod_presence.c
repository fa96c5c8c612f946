/*
 * mod_presence.c - RFC 6121 §3 (presence subscriptions) and §4 (presence
 * exchange) on top of the roster.
 *
 * Outbound (a local client sends): subscription stanzas run the state
 * machine of subscription.h on the user's roster item and are routed from
 * the user's bare JID; broadcast presence goes to every contact with a
 * From subscription and to the user's own available resources; initial
 * presence also probes every contact with a To subscription and re-delivers
 * pending subscription requests. Inbound (for a local account):
 * subscription stanzas run the inbound tables, probes are answered for
 * contacts with a From subscription, presence to the bare JID reaches every
 * available resource.
 *
 * Each step that reads or changes the roster is one thread-pool job (one
 * transaction when it writes); the actions run on the shard afterwards in
 * the order docs/internals/subscription.md gives. A session answers
 * "send your presence to X" itself (STANZA_OP_PRESENCE_TO): only it knows
 * its last presence.
 */
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/shard.h"
#include "../../router/route.h"
#include "../../router/sessions.h"
#include "../../store/accounts.h"
#include "../../store/shapes.h"
#include "../module.h"
#include "roster-private.h"

/* Roster items (in the job's arena). */
struct itemvec {
	const struct xml_elem **v;
	size_t n, cap;
};

struct pres_job {
	struct stanza *st;
	struct jid user;       /* the local account (bare) */
	struct jid contact;    /* the other side (bare) */
	const char *host, *node, *contact_s;
	bool outbound, initial, probe;
	enum sub_type type;
	struct sess_ref origin; /* outbound: the session that sent it */
	/* results */
	struct sub_result res;
	struct xml_elem *pushed;
	uint64_t ver;
	struct itemvec from_contacts, to_contacts, pending;
};

static void item_push(struct arena *a, struct itemvec *v,
		      const struct xml_elem *it)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		const struct xml_elem **nv = arena_alloc(a, cap * sizeof(*nv));
		if (nv == NULL)
			return;
		if (v->n)
			memcpy(nv, v->v, v->n * sizeof(*nv));
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = it;
}

static struct jid bare_of(const struct jid *j)
{
	struct jid b = *j;
	b.resource = STR_NULL;
	return b;
}

/* Sets st's 'to' (and 'from' if given) to bare JIDs, copied into st's own
 * arena: st may go to another shard and outlive the caller's memory. */
static void set_addr(struct stanza *st, const struct jid *from,
		     const struct jid *to)
{
	if (from != NULL) {
		st->from.node = arena_strdup(st->a, from->node);
		st->from.domain = arena_strdup(st->a, from->domain);
		st->from.resource = STR_NULL;
		xml_attr_set(st->a, st->x, "from",
			     jid_to_str(st->a, &st->from, true));
	}
	st->to.node = arena_strdup(st->a, to->node);
	st->to.domain = arena_strdup(st->a, to->domain);
	st->to.resource = STR_NULL;
	xml_attr_set(st->a, st->x, "to", jid_to_str(st->a, &st->to, true));
}

/* ---- sending on behalf of the user ---- */

/* Asks each available resource of user to send op to `to`. */
static void ask_session(const struct sess_ref *ref, const struct jid *user,
			const struct jid *to, enum stanza_op op)
{
	struct stanza *st = stanza_new(STANZA_PRESENCE, to, user, "probe");
	st->op = op;
	route_deliver(ref, st);
}

/* Asks every available resource of user to do op for to; returns how
 * many were asked. */
static size_t ask_sessions(const struct jid *user, const struct jid *to,
			   enum stanza_op op)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, user, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs)), asked = 0;
	for (size_t i = 0; i < n; i++)
		if (refs[i].available) {
			ask_session(&refs[i], user, to, op);
			asked++;
		}
	arena_destroy(&a);
	return asked;
}

static void send_typed(const struct jid *from, const struct jid *to,
		       const char *type)
{
	route(stanza_new(STANZA_PRESENCE, from, to, type));
}

/* Delivers a copy of st to every available resource of user. */
static void to_available(const struct jid *user, const struct stanza *st)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, user, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	for (size_t i = 0; i < n; i++)
		if (refs[i].available)
			route_deliver(&refs[i], stanza_copy(st));
	arena_destroy(&a);
}

/* Delivers an inbound subscription stanza of type t: a request to every
 * available resource (RFC 6121 §3.1.3 rule 3), the other types to every
 * interested resource too (§3.1.6, §3.2.3, §3.3.3 step 1): one that sent
 * no presence still shows the roster and must learn why it changed, and
 * an available one that never asked for the roster still sees the
 * contact's presence start or stop. */
static void deliver_sub(const struct jid *user, const struct stanza *st,
			enum sub_type t)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, user, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	for (size_t i = 0; i < n; i++) {
		bool want = refs[i].available ||
			    (t != SUB_SUBSCRIBE && refs[i].interested);
		if (want)
			route_deliver(&refs[i], stanza_copy(st));
	}
	arena_destroy(&a);
}

/* ---- jobs ---- */

/* A bare copy of j in arena a: the job outlives the session whose JID it
 * may have been given. */
static struct jid bare_copy(struct arena *a, const struct jid *j)
{
	struct jid b = { .node = arena_strdup(a, j->node),
			 .domain = arena_strdup(a, j->domain) };
	return b;
}

static struct pres_job *job_new(struct stanza *st, const struct jid *user,
				const struct jid *contact)
{
	struct pres_job *j = arena_zalloc(st->a, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->st = st;
	j->user = bare_copy(st->a, user);
	j->contact = bare_copy(st->a, contact);
	j->host = arena_strdup(st->a, j->user.domain).p;
	j->node = arena_strdup(st->a, j->user.node).p;
	j->contact_s = jid_to_str(st->a, &j->contact, true).p;
	return j;
}

static int sub_work(struct store *store, void *ud)
{
	struct pres_job *j = ud;
	struct arena *a = j->st->a;
	if (!j->outbound) {
		/* §8.5.1: for an account that does not exist, nothing (and
		 * no roster record for it either). */
		int rc = accounts_exists(store, j->host, j->node);
		if (rc != 0) {
			j->res = (struct sub_result){ 0 };
			return rc < 0 ? -1 : 0;
		}
	}
	if (store_begin(store) < 0)
		return -1;
	struct xml_elem *it;
	int rc = roster_item_load(store, j->host, j->node, j->contact_s, a,
				  &it);
	if (rc < 0)
		goto fail;
	struct sub_item cur = roster_item_state(it);
	j->res = j->outbound ? sub_outbound(cur, j->type, true)
			     : sub_inbound(cur, j->type);
	if (j->res.actions & SUB_ACT_SAVE) {
		if (it == NULL)
			it = roster_item_new(a, str_c(j->contact_s));
		roster_item_set_state(a, it, j->res.item);
		/* subscription.md note 9: the first request is the one kept. */
		if ((j->res.actions & SUB_ACT_STORE_REQUEST) &&
		    roster_item_request(it) == NULL)
			roster_item_keep_request(a, it, j->st->x);
		if (roster_item_save(store, j->host, j->node, j->contact_s,
				     it) < 0)
			goto fail;
	}
	if (j->res.actions & SUB_ACT_PUSH) {
		if (roster_version_bump(store, j->host, j->node, &j->ver) < 0)
			goto fail;
		j->pushed = roster_item_client(a, it);
	}
	return store_commit(store);
fail:
	store_rollback(store);
	return -1;
}

static void sub_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct pres_job *j = ud;
	struct stanza *st = j->st;
	unsigned act = status < 0 ? 0 : j->res.actions;
	if (status < 0 && status != UV_ECANCELED)
		log_warnx("presence: roster of %s@%s unavailable", j->node,
			  j->host);
	if (j->outbound) {
		/* Order (subscription.md): unavailable, route, push, presence.
		 * Routing consumes st and the job in its arena: keep copies. */
		struct arena *a = arena_new(0);
		struct jid user = j->user, contact = j->contact;
		user.node = arena_strdup(a, user.node);
		user.domain = arena_strdup(a, user.domain);
		contact.node = arena_strdup(a, contact.node);
		contact.domain = arena_strdup(a, contact.domain);
		struct xml_elem *pushed = j->pushed ? xml_copy(a, j->pushed)
						    : NULL;
		uint64_t ver = j->ver;
		if (act & SUB_ACT_SEND_UNAVAILABLE)
			ask_sessions(&user, &contact, STANZA_OP_UNAVAILABLE_TO);
		if (act & SUB_ACT_ROUTE) {
			/* §3.1.2: stamped with the user's bare JID. */
			set_addr(st, &user, &contact);
			route(st);
		} else {
			stanza_free(&st);
		}
		if (act & SUB_ACT_PUSH)
			roster_push(&user, pushed, ver);
		if (act & SUB_ACT_SEND_PRESENCE)
			ask_sessions(&user, &contact, STANZA_OP_PRESENCE_TO);
		arena_destroy(&a);
		return;
	} else {
		if (act & SUB_ACT_DELIVER)
			deliver_sub(&j->user, st, j->type);
		if (act & SUB_ACT_PUSH)
			roster_push(&j->user, j->pushed, j->ver);
		if (act & SUB_ACT_SEND_UNAVAILABLE)
			ask_sessions(&j->user, &j->contact,
				     STANZA_OP_UNAVAILABLE_TO);
		if (act & SUB_ACT_REPLY_SUBSCRIBED)
			send_typed(&j->user, &j->contact, "subscribed");
		if (act & SUB_ACT_SEND_PRESENCE)
			ask_sessions(&j->user, &j->contact,
				     STANZA_OP_PRESENCE_TO);
		if (act & SUB_ACT_REPLY_UNSUBSCRIBED)
			send_typed(&j->user, &j->contact, "unsubscribed");
	}
	stanza_free(&st);
}

static int list_item(struct xml_elem *it, void *ud)
{
	struct pres_job *j = ud;
	struct sub_item s = roster_item_state(it);
	if (sub_state_has_from(s.state))
		item_push(j->st->a, &j->from_contacts, it);
	if (j->initial && sub_state_has_to(s.state))
		item_push(j->st->a, &j->to_contacts, it);
	if (j->initial && sub_state_pending_in(s.state))
		item_push(j->st->a, &j->pending, it);
	return 0;
}

static int list_work(struct store *store, void *ud)
{
	struct pres_job *j = ud;
	return roster_each(store, j->host, j->node, j->st->a, list_item, j);
}

/* Calls fn with each item's contact JID (items in the job's arena). */
static void each_contact(struct pres_job *j, const struct itemvec *v,
			 void (*fn)(struct pres_job *, const struct jid *,
				    const struct xml_elem *))
{
	for (size_t i = 0; i < v->n; i++) {
		struct jid c;
		const char *why;
		if (jid_parse(j->st->a, xml_attr_get(v->v[i], "jid"), &c,
			      &why) == 0)
			fn(j, &c, v->v[i]);
	}
}

static void bcast_one(struct pres_job *j, const struct jid *c,
		      const struct xml_elem *it)
{
	(void)it;
	struct stanza *copy = stanza_copy(j->st);
	set_addr(copy, NULL, c);
	route(copy);
}

static void probe_one(struct pres_job *j, const struct jid *c,
		      const struct xml_elem *it)
{
	(void)it;
	send_typed(&j->user, c, "probe");
}

/* §3.1.3 rule 4: the request again, with what it carried (status,
 * nick...), until it is answered. */
static void pending_one(struct pres_job *j, const struct jid *c,
			const struct xml_elem *it)
{
	struct stanza *st = stanza_new(STANZA_PRESENCE, c, &j->user,
				       "subscribe");
	const struct xml_elem *req = roster_item_request(it);
	if (req != NULL)
		xml_foreach_child(x, req)
			xml_append_elem(st->x, xml_copy(st->a, x));
	route_deliver(&j->origin, st);
}

static void broadcast_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct pres_job *j = ud;
	struct stanza *st = j->st;
	if (status >= 0) {
		each_contact(j, &j->from_contacts, bcast_one);
		/* §4.2.2, §4.4.2: the user's own available resources too. */
		to_available(&j->user, st);
		each_contact(j, &j->to_contacts, probe_one);
		each_contact(j, &j->pending, pending_one);
	}
	stanza_free(&st);
}

static void probe_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct pres_job *j = ud;
	struct stanza *st = j->st;
	if (status >= 0 && j->probe) {
		/* §4.3.2: the contact may see the user's presence; a probe
		 * to a full JID learns about that resource alone. */
		struct sess_ref ref;
		size_t asked = 0;
		if (st->to.resource.len == 0) {
			asked = ask_sessions(&j->user, &st->from,
					     STANZA_OP_PRESENCE_TO);
		} else if (sessions_find(jid_to_str(st->a, &j->user, true),
					 st->to.resource, &ref) &&
			   ref.available) {
			ask_session(&ref, &j->user, &st->from,
				    STANZA_OP_PRESENCE_TO);
			asked = 1;
		}
		if (asked == 0)
			send_typed(&j->user, &st->from, "unavailable");
	}
	stanza_free(&st);
}

static int probe_work(struct store *store, void *ud)
{
	struct pres_job *j = ud;
	struct xml_elem *it;
	int rc = roster_item_load(store, j->host, j->node, j->contact_s,
				  j->st->a, &it);
	j->probe = rc == 0 && sub_state_has_from(roster_item_state(it).state);
	return rc < 0 ? -1 : 0;
}

/* Queues the job behind every earlier one of the same account (see
 * store_queue_keyed): what one job sends leaves before the next starts. A
 * job that only reads the roster (a broadcast's list, a probe's item) runs
 * on the shard (store_queue_keyed_read). */
static enum hook_ret start(struct pres_job *j, store_work_fn *work,
			   store_done_fn *done, bool read)
{
	if (j == NULL) /* no room left in the stanza's arena */
		return HOOK_STOP;
	struct str key = jid_to_str(j->st->a, &j->user, true);
	(read ? store_queue_keyed_read : store_queue_keyed)(server.store, key,
							    work, done, j);
	return HOOK_STOP;
}

static void deliver_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct pres_job *j = ud;
	struct stanza *st = j->st;
	if (status >= 0)
		to_available(&j->user, st);
	stanza_free(&st);
}

/* ---- hooks ---- */

static enum hook_ret presence_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	enum sub_type t;
	if (sub_type_parse(st->type, &t) == 0) {
		if (st->to.domain.len == 0 || jid_bare_eq(&st->to, ctx->user)) {
			stanza_free(&st);
			return HOOK_STOP;
		}
		struct pres_job *j = job_new(st, ctx->user, &st->to);
		if (j != NULL) {
			j->outbound = true;
			j->type = t;
		}
		return start(j, sub_work, sub_done, false);
	}
	bool bcast = st->type.len == 0 || str_eq_c(st->type, "unavailable");
	if (!bcast || xml_attr_get(st->x, "to").p != NULL)
		return HOOK_PASS; /* directed presence, probes, errors */
	struct pres_job *j = job_new(st, ctx->user, ctx->user);
	if (j != NULL) {
		j->initial = ctx->initial;
		j->origin = (struct sess_ref){ .shard = ctx->shard,
					       .conn_id = ctx->conn_id };
	}
	return start(j, list_work, broadcast_done, true);
}

static enum hook_ret presence_in(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	enum sub_type t;
	if (sub_type_parse(st->type, &t) == 0) {
		if (jid_bare_eq(&st->to, &st->from)) {
			stanza_free(&st);
			return HOOK_STOP;
		}
		struct pres_job *j = job_new(st, &st->to, &st->from);
		if (j != NULL)
			j->type = t;
		return start(j, sub_work, sub_done, false);
	}
	if (str_eq_c(st->type, "probe"))
		return start(job_new(st, &st->to, &st->from), probe_work,
			     probe_done, true);
	if (st->to.resource.len > 0)
		return HOOK_PASS; /* to a full JID: the resource, if any */
	if (st->type.len == 0 || str_eq_c(st->type, "unavailable"))
		return start(job_new(st, &st->to, &st->from), NULL,
			     deliver_done, false);
	stanza_free(&st);
	return HOOK_STOP;
}

void roster_removed(const struct jid *user, struct str contact,
		    struct sub_item old)
{
	struct arena *a = arena_new(0);
	struct jid c;
	const char *why;
	struct jid u = bare_of(user);
	if (jid_parse(a, contact, &c, &why) == 0) {
		if (sub_state_has_to(old.state) ||
		    sub_state_pending_out(old.state))
			send_typed(&u, &c, "unsubscribe");
		/* As for an outbound unsubscribed (§3.2.3): the contact
		 * stops seeing the user's resources. */
		if (sub_state_has_from(old.state))
			ask_sessions(&u, &c, STANZA_OP_UNAVAILABLE_TO);
		if (sub_state_has_from(old.state) ||
		    sub_state_pending_in(old.state))
			send_typed(&u, &c, "unsubscribed");
	}
	arena_destroy(&a);
}

static const struct hook presence_hooks[] = {
	{ EV_PRESENCE_OUT, 50, presence_out },
	{ EV_PRESENCE_IN, 50, presence_in },
	{ 0 },
};

const struct module mod_presence = {
	.name = "presence",
	.spec = "RFC 6121 §3, §4",
	.hooks = presence_hooks,
};
