/*
 * route.c - stanzas and the delivery rules; see route.h.
 *
 * RFC 6120 §10 (server rules for processing XML stanzas) and RFC 6121 §8:
 * a full JID goes to that resource (§8.5.3.1; with none, a chat goes on as
 * to the bare JID, other messages and iq requests bounce, §8.5.3.2); a
 * bare JID's message goes to the most available resources or offline
 * storage (§8.5.2); an iq to a host or an existing account's bare JID is
 * answered by the server's modules (§8.5.1: none for a missing account);
 * presence is the presence module's (hooks). tests/scripts/deliver-*
 * walk through every rule.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/stats.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../store/accounts.h"
#include "../xmpp/ns.h"
#include "components.h"
#include "fanout.h"
#include "hooks.h"
#include "iq.h"
#include "route.h"
#include "services.h"
#include "sessions.h"

static const char *const kind_names[] = {
	[STANZA_MESSAGE] = "message",
	[STANZA_PRESENCE] = "presence",
	[STANZA_IQ] = "iq",
};
static_assert(ARRAY_SIZE(kind_names) == STATS_KINDS, "stats by kind");

/* Valid type values per kind (RFC 6120 §8.2.2, §8.2.3; RFC 6121 §4.7.1,
 * §5.2.2); NULL-terminated. The empty string stands for "absent". */
static const char *const message_types[] = {
	"", "chat", "error", "groupchat", "headline", "normal", NULL
};
static const char *const presence_types[] = {
	"", "error", "probe", "subscribe", "subscribed", "unavailable",
	"unsubscribe", "unsubscribed", NULL
};
static const char *const iq_types[] = { "get", "set", "result", "error",
					NULL };

const char *stanza_kind_name(enum stanza_kind k)
{
	return kind_names[k];
}

static bool type_valid(enum stanza_kind k, struct str type)
{
	const char *const *t = k == STANZA_MESSAGE    ? message_types
			       : k == STANZA_PRESENCE ? presence_types
						      : iq_types;
	for (; *t; t++)
		if (str_eq_c(type, *t))
			return true;
	return false;
}

static int kind_of(const struct xml_elem *x, enum stanza_kind *k_r)
{
	for (size_t i = 0; i < ARRAY_SIZE(kind_names); i++)
		if (str_eq_c(x->name, kind_names[i])) {
			*k_r = (enum stanza_kind)i;
			return 0;
		}
	return -1;
}

static void copy_jid(struct arena *a, struct jid *dst, const struct jid *src)
{
	dst->node = arena_strdup(a, src->node);
	dst->domain = arena_strdup(a, src->domain);
	dst->resource = arena_strdup(a, src->resource);
}

bool stanza_iq_well_formed(const struct xml_elem *x, struct str type)
{
	if (xml_attr_get(x, "id").p == NULL)
		return false;
	size_t n = xml_child_count(x);
	if (str_eq_c(type, "get") || str_eq_c(type, "set"))
		return n == 1;
	if (str_eq_c(type, "result"))
		return n <= 1;
	return true;
}

struct stanza *stanza_wrap(struct arena *a, struct xml_elem *x,
			   const struct jid *from, enum stanza_err *err_r)
{
	enum stanza_kind kind;
	if (kind_of(x, &kind) < 0) {
		*err_r = STANZA_ERR_BAD_REQUEST;
		return NULL;
	}
	struct stanza *st = arena_zalloc(a, sizeof(*st));
	if (st == NULL) {
		*err_r = STANZA_ERR_POLICY_VIOLATION;
		return NULL;
	}
	st->a = a;
	st->x = x;
	st->kind = kind;
	st->type = xml_attr_get(x, "type");
	if (st->type.p == NULL)
		st->type = STR_LIT("");
	if (!type_valid(kind, st->type) ||
	    (kind == STANZA_IQ && !stanza_iq_well_formed(x, st->type))) {
		*err_r = STANZA_ERR_BAD_REQUEST;
		return NULL;
	}
	copy_jid(a, &st->from, from);
	struct str to = xml_attr_get(x, "to");
	const char *why;
	if (to.p != NULL && jid_parse(a, to, &st->to, &why) < 0) {
		*err_r = STANZA_ERR_JID_MALFORMED;
		return NULL;
	}
	/* Every stream wraps what its peer sent here, and only that. */
	STATS_ADD(stanzas_in[kind], 1);
	return st;
}

static void set_jid_attr(struct stanza *st, const char *name,
			 const struct jid *j)
{
	if (j == NULL || j->domain.len == 0) {
		xml_attr_set(st->a, st->x, name, STR_NULL);
		return;
	}
	xml_attr_set(st->a, st->x, name, jid_to_str(st->a, j, false));
}

struct stanza *stanza_new(enum stanza_kind kind, const struct jid *from,
			  const struct jid *to, const char *type)
{
	struct arena *a = arena_new(0);
	struct stanza *st = arena_zalloc(a, sizeof(*st));
	st->a = a;
	st->kind = kind;
	st->x = xml_elem_new(a, STR_LIT(NS_CLIENT), str_c(kind_names[kind]));
	st->type = arena_strdup(a, str_c(type ? type : ""));
	if (type != NULL)
		xml_attr_set(a, st->x, "type", st->type);
	copy_jid(a, &st->from, from);
	if (to != NULL)
		copy_jid(a, &st->to, to);
	set_jid_attr(st, "from", &st->from);
	set_jid_attr(st, "to", to);
	return st;
}

void stanza_free(struct stanza **stp)
{
	if (*stp == NULL)
		return;
	struct arena *a = (*stp)->a;
	arena_destroy(&a);
	*stp = NULL;
}

struct stanza *stanza_copy(const struct stanza *src)
{
	struct arena *a = arena_new(0);
	struct stanza *st = arena_zalloc(a, sizeof(*st));
	st->a = a;
	st->kind = src->kind;
	st->x = xml_copy(a, src->x);
	st->type = arena_strdup(a, src->type);
	copy_jid(a, &st->from, &src->from);
	copy_jid(a, &st->to, &src->to);
	return st;
}

void stanza_set_error(struct arena *a, struct xml_elem *x,
		      enum stanza_err err, const char *text)
{
	STATS_ADD(stanza_errors, 1);
	xml_attr_set(a, x, "type", STR_LIT("error"));
	struct xml_elem *e = xml_add_child(a, x, STR_LIT(NS_CLIENT),
					   STR_LIT("error"));
	xml_attr_set(a, e, "type", str_c(stanza_err_type(err)));
	xml_add_child(a, e, STR_LIT(NS_STANZA_ERRORS),
		      str_c(stanza_err_name(err)));
	if (text != NULL) {
		struct xml_elem *t = xml_add_child(
			a, e, STR_LIT(NS_STANZA_ERRORS), STR_LIT("text"));
		xml_attr_set_ns(a, t, NS_XML, "lang", STR_LIT("en"));
		xml_add_text(a, t, str_c(text));
	}
}

void route_bounce(struct stanza *st, enum stanza_err err, const char *text)
{
	route_bounce_ex(st, err, &(const struct bounce_opts){ .text = text });
}

void route_bounce_ex(struct stanza *st, enum stanza_err err,
		     const struct bounce_opts *o)
{
	if (str_eq_c(st->type, "error") ||
	    (st->kind == STANZA_PRESENCE && !o->presence) ||
	    (st->kind == STANZA_IQ && str_eq_c(st->type, "result"))) {
		/* RFC 6120 §8.3.1: never answer an error with an error;
		 * §8.2.3: nor an iq result with anything (its sender waits
		 * for nothing, and an error would look like a reply to a
		 * request it never sent). Presence is answered only when
		 * the caller's protocol says so (XEP-0045 §7.2: a refused
		 * join is a presence error). */
		stanza_free(&st);
		return;
	}
	struct jid from = st->from;
	st->from = st->to;
	st->to = from;
	if (st->from.domain.len == 0) {
		/* No 'to' meant the sender's own account. */
		st->from = from;
		st->from.resource = STR_NULL;
	}
	set_jid_attr(st, "from", &st->from);
	set_jid_attr(st, "to", &st->to);
	st->type = STR_LIT("error");
	stanza_set_error(st->a, st->x, err, o->text);
	if (o->type != NULL)
		xml_attr_set(st->a, xml_child(st->x, NS_CLIENT, "error"),
			     "type", str_c(o->type));
	route(st);
}

/* ---- delivery to sessions, possibly on another shard ---- */

struct deliver_msg {
	struct shard_msg m;
	uint64_t conn_id;
	struct stanza *st;
};

static void deliver_local(uint64_t conn_id, struct stanza *st)
{
	struct conn *c = hmap_get(&shard_self->conns, hmap_u64(&conn_id));
	if (c == NULL || conn_closing(c)) {
		/* The session ended meanwhile: as if it had never been. */
		if (st->kind == STANZA_IQ && !str_eq_c(st->type, "result"))
			route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
		else
			stanza_free(&st);
		return;
	}
	if (st->op == STANZA_OP_DELIVER)
		STATS_ADD(stanzas_out[st->kind], 1);
	c->ops->deliver(c, st);
}

static void on_deliver_msg(struct shard *s, struct shard_msg *m)
{
	struct deliver_msg *dm = (struct deliver_msg *)m;
	struct stanza *st = dm->st;
	uint64_t id = dm->conn_id;
	free(dm);
	if (s->stopped_hook_ran)
		stanza_free(&st); /* shutting down: the sessions are gone */
	else
		deliver_local(id, st);
}

void route_deliver(const struct sess_ref *ref, struct stanza *st)
{
	if (ref->shard == shard_self->id) {
		deliver_local(ref->conn_id, st);
		return;
	}
	struct deliver_msg *dm = calloc(1, sizeof(*dm));
	BUG_ON(dm == NULL);
	dm->m.fn = on_deliver_msg;
	dm->conn_id = ref->conn_id;
	dm->st = st;
	shard_post(&server.shards[ref->shard], &dm->m);
}

/*
 * A message for a session on another shard leaves serialized, as a record
 * (shard_post_record): the sending shard has the stanza in its cache and
 * frees it itself, and the receiving shard only copies bytes into the
 * connection. Handing over the parsed stanza instead cost that shard cache
 * misses over the whole tree and frees into this shard's heap: a second
 * shard made every message about a third dearer (docs/internals/
 * performance.md). Only messages as they are (no 'to' rewriting) take
 * this path; the payload is the connection id, then a struct
 * shared_bytes without splice, which deliver_shared takes.
 */
static void on_message_rec(struct shard *s, void *p, size_t len)
{
	(void)len;
	uint64_t conn_id;
	memcpy(&conn_id, p, sizeof(conn_id));
	const struct shared_bytes *b =
		(const struct shared_bytes *)((char *)p + sizeof(conn_id));
	struct conn *c = hmap_get(&s->conns, hmap_u64(&conn_id));
	/* The session ended meanwhile: as if it had never been, as in
	 * deliver_local. */
	if (s->stopped_hook_ran || c == NULL || conn_closing(c) ||
	    c->ops->deliver_shared == NULL)
		return;
	STATS_ADD(stanzas_out[STANZA_MESSAGE], 1);
	c->ops->deliver_shared(c, b, NULL);
}

/* route_deliver for a message to a client session (ref from the session
 * table). */
static void deliver_message(const struct sess_ref *ref, struct stanza *st)
{
	if (ref->shard == shard_self->id || st->to_session ||
	    st->op != STANZA_OP_DELIVER) {
		route_deliver(ref, st);
		return;
	}
	struct buf *scratch = &shard_self->scratch;
	scratch->len = 0;
	void *p = NULL;
	size_t head = sizeof(uint64_t) + sizeof(struct shared_bytes);
	if (xml_serialize(scratch, st->x, STR_LIT(NS_CLIENT)) == 0)
		p = shard_post_record(&server.shards[ref->shard],
				      on_message_rec, head + scratch->len + 1);
	if (p == NULL) {
		route_deliver(ref, st);
		return;
	}
	memcpy(p, &ref->conn_id, sizeof(ref->conn_id));
	struct shared_bytes *b =
		(struct shared_bytes *)((char *)p + sizeof(uint64_t));
	atomic_init(&b->refs, 1);
	b->len = scratch->len;
	b->at = SHARED_NO_SPLICE;
	memcpy(b->data, scratch->data, scratch->len);
	b->data[scratch->len] = '\0';
	if (scratch->cap > 64 * 1024)
		buf_reset(scratch);
	stanza_free(&st);
}

struct kick_msg {
	struct shard_msg m;
	uint64_t conn_id;
	enum stream_err err;
	const char *text;
};

static void on_kick_msg(struct shard *s, struct shard_msg *m)
{
	struct kick_msg *k = (struct kick_msg *)m;
	struct conn *c = hmap_get(&s->conns, hmap_u64(&k->conn_id));
	if (c != NULL && !s->stopped_hook_ran)
		c->ops->kick(c, k->err, k->text);
	free(k);
}

void route_kick(const struct sess_ref *ref, enum stream_err err,
		const char *text)
{
	struct kick_msg *k = xcalloc(1, sizeof(*k));
	k->m.fn = on_kick_msg;
	k->conn_id = ref->conn_id;
	k->err = err;
	k->text = text;
	shard_post(&server.shards[ref->shard], &k->m);
}

/* ---- the rules ---- */

/* RFC 6121 §8.5.2.1.1: a chat or normal message to a bare JID goes to the
 * "most available" resources: here every available resource with the
 * highest non-negative priority. §8.5.2.1.3: a headline goes to every
 * available resource with a non-negative priority. Resources with a
 * negative priority get messages only at their full JID. Returns the
 * count selected into refs (in place). */
static size_t pick_resources(struct sess_ref *refs, size_t n, bool all)
{
	int best = -1;
	for (size_t i = 0; i < n; i++)
		if (refs[i].available && refs[i].priority > best)
			best = refs[i].priority;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (refs[i].available && refs[i].priority >= 0 &&
		    (all || refs[i].priority == best))
			refs[k++] = refs[i];
	return k;
}

/* Tells the hooks where a message for a local account goes (carbons). */
static void message_delivering(const struct stanza *st,
			       const struct sess_ref *refs, size_t n,
			       size_t host_idx)
{
	struct hook_ctx h = {
		.ev = EV_MESSAGE_DELIVER,
		.st = (struct stanza *)st,
		.shard = shard_self->id,
		.host_idx = host_idx,
		.refs = refs,
		.nrefs = n,
	};
	BUG_ON(hooks_run(&h) != HOOK_PASS);
}

static void message_to_bare(struct stanza *st, struct str bare,
			    size_t host_idx)
{
	if (str_eq_c(st->type, "error")) {
		stanza_free(&st); /* §8.5.2.1.1: silently ignored */
		return;
	}
	if (str_eq_c(st->type, "groupchat")) {
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
		return;
	}
	bool headline = str_eq_c(st->type, "headline");
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	n = pick_resources(refs, n, headline);
	message_delivering(st, refs, n, host_idx);
	if (n == 0) {
		/* §8.5.2.2: no available resource: chat and normal may be
		 * stored, headlines are dropped, the rest bounces. */
		if (headline) {
			stanza_free(&st);
			return;
		}
		struct hook_ctx h = {
			.ev = EV_MESSAGE_OFFLINE,
			.st = st,
			.shard = shard_self->id,
			.host_idx = host_idx,
		};
		if (hooks_run(&h) == HOOK_STOP)
			return;
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
		return;
	}
	for (size_t i = 1; i < n; i++)
		deliver_message(&refs[i], stanza_copy(st));
	deliver_message(&refs[0], st);
}

/* RFC 6121 §8.5.3.2.1: a message to a full JID that matches no resource
 * goes on as to the bare JID only if it is a chat (or an error, which the
 * bare JID's rules then ignore). A normal or groupchat message comes back
 * with <service-unavailable/> (option b: a room learns that its occupant
 * left, a sender that it may retry at the bare JID); a headline is
 * dropped (option a, as headlines nobody takes are everywhere else).
 * Returns false if st is still the caller's. */
static bool message_to_gone_resource(struct stanza *st)
{
	if (str_eq_c(st->type, "chat") || str_eq_c(st->type, "error"))
		return false;
	if (str_eq_c(st->type, "headline"))
		stanza_free(&st);
	else
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	return true;
}

/* ---- an iq get or set for an account's bare JID ---- */

/*
 * RFC 6121 §8.5.1: an iq for an account that does not exist gets
 * <service-unavailable/>; the modules that answer for an account (ping,
 * disco, vCard...) must not answer for anyone. An account that has a bound
 * session, or that sent the iq, exists; otherwise the store says, as a
 * keyed job of that account (in order with its other work).
 */
struct iq_check {
	struct stanza *st;
	size_t host_idx;
	const char *host, *user;
	bool missing;
};

static int iq_check_work(struct store *store, void *ud)
{
	struct iq_check *c = ud;
	int rc = accounts_exists(store, c->host, c->user);
	c->missing = rc == 1;
	return rc < 0 ? -1 : 0;
}

static void iq_check_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct iq_check *c = ud; /* in st's arena */
	struct stanza *st = c->st;
	const char *text = NULL;
	if (status == UV_ECANCELED)
		stanza_free(&st); /* shutting down: nobody to answer */
	else if (status < 0)
		route_bounce(st, iq_job_error(status, &text), text);
	else if (c->missing)
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	else
		iq_dispatch(st, c->host_idx, TO_BARE);
}

static void iq_to_bare(struct stanza *st, struct str bare, size_t host_idx)
{
	struct sess_ref ref;
	bool request = str_eq_c(st->type, "get") || str_eq_c(st->type, "set");
	if (!request || jid_bare_eq(&st->from, &st->to) ||
	    sessions_find_all(bare, &ref, 1) > 0) {
		iq_dispatch(st, host_idx, TO_BARE);
		return;
	}
	struct iq_check *c = arena_zalloc(st->a, sizeof(*c));
	if (c == NULL) {
		route_bounce(st, STANZA_ERR_RESOURCE_CONSTRAINT, NULL);
		return;
	}
	c->st = st;
	c->host_idx = host_idx;
	c->host = server.conf->hosts[host_idx];
	c->user = arena_strdup(st->a, st->to.node).p;
	store_queue_keyed(server.store, bare, iq_check_work, iq_check_done, c);
}

enum hook_event hook_event_of(enum stanza_kind kind, bool out)
{
	switch (kind) {
	case STANZA_MESSAGE:
		return out ? EV_MESSAGE_OUT : EV_MESSAGE_IN;
	case STANZA_PRESENCE:
		return out ? EV_PRESENCE_OUT : EV_PRESENCE_IN;
	case STANZA_IQ:
		break;
	}
	return out ? EV_IQ_OUT : EV_IQ_IN;
}

static void to_account(struct stanza *st, size_t host_idx)
{
	struct hook_ctx h = {
		.ev = hook_event_of(st->kind, false),
		.st = st,
		.shard = shard_self->id,
		.host_idx = host_idx,
	};
	if (hooks_run(&h) == HOOK_STOP)
		return;
	struct str bare = jid_to_str(st->a, &st->to, true);
	if (st->to.resource.len > 0) {
		struct sess_ref ref;
		if (sessions_find(bare, st->to.resource, &ref)) {
			if (st->kind == STANZA_MESSAGE) {
				message_delivering(st, &ref, 1, host_idx);
				deliver_message(&ref, st);
			} else {
				route_deliver(&ref, st);
			}
			return;
		}
		/* RFC 6121 §8.5.3.2: no such resource. A chat goes as if to
		 * the bare JID (§8.5.3.2.1), presence is dropped below
		 * (§8.5.3.2.2; mod_presence took the subscription types and
		 * probes), an iq request gets <service-unavailable/>
		 * (§8.5.3.2.3; route_bounce drops results and errors). */
		if (st->kind == STANZA_IQ) {
			route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
			return;
		}
		if (st->kind == STANZA_MESSAGE &&
		    message_to_gone_resource(st))
			return;
	}
	switch (st->kind) {
	case STANZA_MESSAGE:
		message_to_bare(st, bare, host_idx);
		return;
	case STANZA_IQ:
		iq_to_bare(st, bare, host_idx);
		return;
	case STANZA_PRESENCE:
		/* What no hook took (mod_presence, RFC 6121 §4) is dropped. */
		stanza_free(&st);
		return;
	}
}

static route_remote_fn *remote_fn;

void route_set_remote(route_remote_fn *fn)
{
	remote_fn = fn;
}

void route(struct stanza *st)
{
	BUG_ON(shard_self == NULL);
	if (st->to.domain.len == 0) {
		/* RFC 6120 §10.3: no 'to' means the sender's account. */
		st->to = st->from;
		st->to.resource = STR_NULL;
		if (st->kind == STANZA_IQ) {
			int h = conf_find_host(server.conf, st->to.domain.p,
					       st->to.domain.len);
			if (h >= 0) {
				iq_dispatch(st, (size_t)h, TO_BARE);
				return;
			}
		}
	}
	int h = conf_find_host(server.conf, st->to.domain.p, st->to.domain.len);
	if (h < 0) {
		if (service_route(st) || component_route(st))
			return;
		if (remote_fn != NULL) {
			STATS_ADD(stanzas_out[st->kind], 1);
			remote_fn(st);
		}
		else
			route_bounce(st, STANZA_ERR_REMOTE_SERVER_NOT_FOUND,
				     NULL);
		return;
	}
	if (st->to.node.len > 0) {
		to_account(st, (size_t)h);
		return;
	}
	if (st->kind == STANZA_IQ && st->to.resource.len == 0) {
		iq_dispatch(st, (size_t)h, TO_HOST);
		return;
	}
	if (st->kind == STANZA_IQ)
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	else
		stanza_free(&st);
}
