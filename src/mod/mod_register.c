/*
 * mod_register.c - XEP-0077: In-Band Registration, as an IM server does it.
 *
 * Before authentication (over TLS only; the stream calls preauth_iq after
 * STARTTLS): the form and account creation with its errors (§3.1), at most
 * one per address per `limits.registration_interval`, when `registration`
 * is on; otherwise <service-unavailable/> (§3.1). After
 * binding: the account's own registration (<registered/>, §3.1), password
 * change (§3.3, allowed even with registration off) and account removal
 * (§3.2), which deletes every stored datum (store_user_purge) and ends all
 * of the account's sessions with a <not-authorized/> stream error.
 * Passwords are stored only as SCRAM credentials (auth/scram_creds.h), as
 * stanzactl does; all storage work runs on the thread pool.
 */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../auth/scram_creds.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "../router/sessions.h"
#include "../store/accounts.h"
#include "../store/shapes.h"
#include "module.h"
#include "roster/roster-private.h"

#define NS_REGISTER "jabber:iq:register"
#define NS_REGISTER_FEATURE "http://jabber.org/features/iq-register"

/* The fields of a <query/> set, each at most once (else bad). */
struct reg_fields {
	struct xml_elem *username, *password, *remove;
	bool bad;       /* a field given twice */
	size_t others;  /* other child elements */
};

/* A request across the thread pool, in the request's arena. */
struct reg_req {
	const char *host, *user; /* NUL-terminated; user nodeprep'd */
	char *password;          /* wiped once derived */
	enum stanza_err err;     /* the job refused the request */
	/* registration: the address's rate-limit slot taken for it */
	char ip[INET6_ADDRSTRLEN];
	bool limited;            /* a slot was taken */
	bool had_prev;
	uint64_t prev_ms, at_ms;
	/* removal: the roster's contacts and their states, malloc'ed */
	struct reg_contact *contacts;
	size_t ncontacts;
};

struct reg_contact {
	char *jid;
	struct sub_item state;
};

/* ---- the per-address limit on registrations ---- */

/* ip -> time of the last registration (or of one in progress); one
 * table for every shard, hence the lock. Entries older than the interval
 * are pruned as the table grows. */
struct reg_stamp {
	uint64_t at_ms;
};

static uv_once_t limit_once = UV_ONCE_INIT;
static uv_mutex_t limit_lock;
static struct hmap limit_table;
static size_t limit_prune_at = 64;

/* Bare JIDs of accounts removed by this process, until a bind finds the
 * account exists again (see register_bound). */
static uv_mutex_t removed_lock;
static struct hmap removed_set;

static void register_init(void)
{
	if (uv_mutex_init(&limit_lock) != 0 ||
	    uv_mutex_init(&removed_lock) != 0)
		fatalx("register: cannot create a mutex");
}

/* The disco feature says registration is open (§3.1 discovery); password
 * change and removal work either way. */
static bool register_advertised(void)
{
	return server.conf->registration;
}

/* Adds bare to (or drops it from) the accounts removed by this process. */
static void removed_mark(struct str bare, bool add)
{
	uv_once(&limit_once, register_init);
	static void *const present = (void *)1;
	uv_mutex_lock(&removed_lock);
	bool was = hmap_get(&removed_set, bare) != NULL;
	if (add && !was)
		hmap_put(&removed_set, bare, present);
	else if (!add && was)
		hmap_del(&removed_set, bare);
	uv_mutex_unlock(&removed_lock);
}

static bool removed_has(struct str bare)
{
	uv_once(&limit_once, register_init);
	uv_mutex_lock(&removed_lock);
	bool has = hmap_get(&removed_set, bare) != NULL;
	uv_mutex_unlock(&removed_lock);
	return has;
}

static uint64_t limit_interval(void)
{
	return server.conf->limits.registration_interval_ms;
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

struct prune_ctx {
	uint64_t now;
	char **keys;
	size_t n;
};

static void prune_collect(struct str key, void *value, void *ud)
{
	struct prune_ctx *p = ud;
	const struct reg_stamp *s = value;
	if (p->now - s->at_ms >= limit_interval())
		p->keys[p->n++] = str_xdup(key);
}

/* Drops expired entries (lock held); amortised by doubling limit_prune_at. */
static void limit_prune(uint64_t now)
{
	struct prune_ctx p = { .now = now };
	p.keys = xcalloc(limit_table.count, sizeof(*p.keys));
	hmap_foreach(&limit_table, prune_collect, &p);
	for (size_t i = 0; i < p.n; i++) {
		free(hmap_del(&limit_table, str_c(p.keys[i])));
		free(p.keys[i]);
	}
	free(p.keys);
	limit_prune_at = limit_table.count * 2 > 64 ? limit_table.count * 2
						    : 64;
}

/* Takes ip's slot for a registration. Returns false if one succeeded (or
 * is in progress) less than the interval ago. */
static bool limit_take(struct reg_req *r, const char *ip)
{
	if (limit_interval() == 0)
		return true;
	uint64_t now = now_ms();
	struct str key = str_c(ip);
	uv_mutex_lock(&limit_lock);
	struct reg_stamp *s = hmap_get(&limit_table, key);
	bool ok = s == NULL || now - s->at_ms >= limit_interval();
	if (ok) {
		r->had_prev = s != NULL;
		r->prev_ms = s != NULL ? s->at_ms : 0;
		if (s == NULL) {
			if (limit_table.count >= limit_prune_at)
				limit_prune(now);
			s = xmalloc(sizeof(*s));
			hmap_put(&limit_table, key, s);
		}
		s->at_ms = r->at_ms = now;
		snprintf(r->ip, sizeof(r->ip), "%s", ip);
		r->limited = true;
	}
	uv_mutex_unlock(&limit_lock);
	return ok;
}

/* Gives the slot back after a failed registration, unless a later one
 * has taken it since. */
static void limit_release(struct reg_req *r)
{
	if (!r->limited)
		return;
	uv_mutex_lock(&limit_lock);
	struct str key = str_c(r->ip);
	struct reg_stamp *s = hmap_get(&limit_table, key);
	if (s != NULL && s->at_ms == r->at_ms) {
		if (r->had_prev)
			s->at_ms = r->prev_ms;
		else
			free(hmap_del(&limit_table, key));
	}
	uv_mutex_unlock(&limit_lock);
	r->limited = false;
}

/* ---- parsing ---- */

static void fields_parse(const struct xml_elem *query, struct reg_fields *f)
{
	memset(f, 0, sizeof(*f));
	xml_foreach_child(c, query) {
		struct xml_elem **slot = NULL;
		if (str_eq_c(c->ns, NS_REGISTER)) {
			if (str_eq_c(c->name, "username"))
				slot = &f->username;
			else if (str_eq_c(c->name, "password"))
				slot = &f->password;
			else if (str_eq_c(c->name, "remove"))
				slot = &f->remove;
		}
		if (slot == NULL)
			f->others++;
		else if (*slot != NULL)
			f->bad = true;
		else
			*slot = c;
	}
}

/* The nodeprep'd username of field e, or NULL if it is missing, empty or
 * not a valid localpart. */
static const char *field_username(struct arena *a, const struct xml_elem *e)
{
	if (e == NULL)
		return NULL;
	struct str in = xml_text(a, e), out;
	const char *why;
	if (in.len == 0 || jid_nodeprep(a, in, &out, &why) < 0)
		return NULL;
	return out.p;
}

/* A NUL-terminated copy of the password field, or NULL if it is missing,
 * empty or too long (SASLprep is checked when deriving). */
static char *field_password(struct arena *a, const struct xml_elem *e)
{
	if (e == NULL)
		return NULL;
	struct str in = xml_text(a, e);
	if (in.len == 0 || in.len > SCRAM_PASSWORD_MAX)
		return NULL;
	return (char *)arena_strdup(a, in).p;
}

/* Derives r's credentials and wipes the password. Returns 0, or -1 with
 * r->err set when SASLprep refuses the password. */
static int req_derive(struct reg_req *r, struct scram_creds *creds)
{
	const char *why = NULL;
	int rc = scram_creds_derive(r->password, server.conf->scram_iterations,
				    creds, &why);
	explicit_bzero(r->password, strlen(r->password));
	if (rc < 0)
		r->err = STANZA_ERR_NOT_ACCEPTABLE;
	return rc;
}

/* ---- before authentication: the form and account creation ---- */

static int create_work(struct store *st, struct preauth_iq *q)
{
	struct reg_req *r = q->ud;
	struct scram_creds creds;
	if (req_derive(r, &creds) < 0)
		return 0;
	int rc = accounts_create(st, r->host, r->user, &creds);
	if (rc > 0)
		r->err = STANZA_ERR_CONFLICT;
	return rc < 0 ? -1 : 0;
}

static void create_done(struct preauth_iq *q, int status)
{
	struct reg_req *r = q->ud;
	if (status < 0 && r->err == STANZA_ERR_NONE)
		r->err = STANZA_ERR_INTERNAL_SERVER_ERROR;
	if (r->err != STANZA_ERR_NONE) {
		limit_release(r);
		q->reply(q, r->err, NULL);
		return;
	}
	log_info("register: %s@%s created from %s", r->user, r->host, r->ip);
	q->reply(q, STANZA_ERR_NONE, NULL);
}

static struct xml_elem *form_new(struct arena *a)
{
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_REGISTER),
					  STR_LIT("query"));
	struct xml_elem *i = xml_add_child(a, q, STR_LIT(NS_REGISTER),
					   STR_LIT("instructions"));
	xml_add_text(a, i, STR_LIT("Choose a username and password to "
				   "register with this server."));
	xml_add_child(a, q, STR_LIT(NS_REGISTER), STR_LIT("username"));
	xml_add_child(a, q, STR_LIT(NS_REGISTER), STR_LIT("password"));
	return q;
}

/* Answers q and returns HOOK_STOP. */
static enum hook_ret preauth_answer(struct preauth_iq *q, enum stanza_err err,
				    struct xml_elem *payload)
{
	q->reply(q, err, payload);
	return HOOK_STOP;
}

/* §3.1: creates the account of a set, or refuses it. */
static enum hook_ret create(struct preauth_iq *q)
{
	struct reg_fields f;
	fields_parse(q->payload, &f);
	struct reg_req *r = arena_zalloc(q->a, sizeof(*r));
	if (r == NULL)
		return preauth_answer(q, STANZA_ERR_RESOURCE_CONSTRAINT, NULL);
	if (f.bad)
		return preauth_answer(q, STANZA_ERR_BAD_REQUEST, NULL);
	/* §3.2: nobody to remove before authentication. */
	if (f.remove != NULL)
		return preauth_answer(q, STANZA_ERR_UNEXPECTED_REQUEST, NULL);
	r->host = server.conf->hosts[q->host_idx];
	r->user = field_username(q->a, f.username);
	r->password = field_password(q->a, f.password);
	if (r->user == NULL || r->password == NULL)
		return preauth_answer(q, STANZA_ERR_NOT_ACCEPTABLE, NULL);
	if (!limit_take(r, q->ip)) {
		log_info("register: refused from %s: rate limit", q->ip);
		return preauth_answer(q, STANZA_ERR_RESOURCE_CONSTRAINT, NULL);
	}
	q->ud = r;
	q->defer(q, create_work, create_done);
	return HOOK_STOP;
}

static enum hook_ret register_preauth(struct preauth_iq *q)
{
	if (!str_eq_c(q->payload->ns, NS_REGISTER) ||
	    !str_eq_c(q->payload->name, "query"))
		return HOOK_PASS;
	uv_once(&limit_once, register_init);
	if (!server.conf->registration)
		return preauth_answer(q, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	if (q->type == IQ_GET)
		return preauth_answer(q, STANZA_ERR_NONE, form_new(q->a));
	return create(q);
}

static void register_stream_features(struct buf *b, enum feature_phase phase,
				     size_t host_idx)
{
	(void)host_idx;
	uv_once(&limit_once, register_init);
	if (phase == FEATURES_PRE_AUTH && server.conf->registration)
		buf_append_c(b, "<register xmlns='" NS_REGISTER_FEATURE "'/>");
}

/* ---- ending the sessions of a removed account ---- */

/* §3.2: every session of bare ends, on whichever shard it is; the reply
 * already queued leaves first (route_kick always posts). */
static void kick_all(struct str bare)
{
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	for (size_t i = 0; i < n; i++)
		route_kick(&refs[i], STREAM_ERR_NOT_AUTHORIZED,
			   "account removed");
}

/* ---- after binding: own registration, password change, removal ---- */

static int passwd_work(struct store *st, struct iq_ctx *ctx)
{
	struct reg_req *r = ctx->ud;
	struct scram_creds creds;
	if (req_derive(r, &creds) < 0)
		return 0;
	int rc = accounts_set(st, r->host, r->user, &creds);
	if (rc > 0)
		r->err = STANZA_ERR_REGISTRATION_REQUIRED;
	return rc < 0 ? -1 : 0;
}

static void passwd_done(struct iq_ctx *ctx, int status)
{
	struct reg_req *r = ctx->ud;
	if (iq_done_error(ctx, status, r->err))
		return;
	log_info("register: %s@%s changed its password", r->user, r->host);
	iq_reply_result(ctx, NULL);
}

static int note_contact(struct xml_elem *it, void *ud)
{
	struct reg_req *r = ud;
	struct sub_item s = roster_item_state(it);
	struct str jid = xml_attr_get(it, "jid");
	if (s.state == SUB_NONE || jid.len == 0)
		return 0;
	r->contacts = xreallocarray(r->contacts, r->ncontacts + 1,
				    sizeof(*r->contacts));
	r->contacts[r->ncontacts++] = (struct reg_contact){ str_xdup(jid), s };
	return 0;
}

static void contacts_free(struct reg_contact *contacts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(contacts[i].jid);
	free(contacts);
}

/* §3.2: the subscriptions recorded in the roster are cancelled (after the
 * purge) as if each contact had been removed (RFC 6121 §2.5.2). */
static int remove_work(struct store *st, struct iq_ctx *ctx)
{
	struct reg_req *r = ctx->ud;
	struct arena *a = arena_new(0);
	int rc = roster_each(st, r->host, r->user, a, note_contact, r);
	arena_destroy(&a);
	/* 1 (already gone, e.g. stanzactl) removes leftovers all the same. */
	if (rc < 0 || store_user_purge(st, r->host, r->user) < 0) {
		contacts_free(r->contacts, r->ncontacts);
		r->contacts = NULL;
		r->ncontacts = 0;
		return -1;
	}
	return 0;
}

static void remove_done(struct iq_ctx *ctx, int status)
{
	struct reg_req *r = ctx->ud;
	struct reg_contact *contacts = r->contacts;
	size_t n = r->ncontacts;
	if (iq_done_error(ctx, status, STANZA_ERR_NONE)) {
		contacts_free(contacts, n);
		return;
	}
	/* The reply consumes the arena that holds r and the JID. */
	struct arena *a = arena_new(0);
	struct jid user = { .node = arena_strdup(a, str_c(r->user)),
			    .domain = arena_strdup(a, str_c(r->host)) };
	struct str bare = jid_to_str(a, &user, true);
	log_info("register: %.*s removed", STR_FMT(bare));
	iq_reply_result(ctx, NULL);
	removed_mark(bare, true);
	for (size_t i = 0; i < n; i++)
		roster_removed(&user, str_c(contacts[i].jid),
			       contacts[i].state);
	contacts_free(contacts, n);
	kick_all(bare);
	arena_destroy(&a);
}

/* Runs the job keyed on the account (store_queue_keyed), behind its
 * roster and presence jobs already queued. */
static enum hook_ret defer_own(struct iq_ctx *ctx, iq_work_fn *work,
			       iq_done_fn *done)
{
	struct str key = jid_to_str(ctx->st->a, &ctx->st->from, true);
	if (key.p == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_defer_keyed(ctx, key, work, done);
}

/* §3.3: username must be the account's own, password the new one. */
static enum hook_ret passwd(struct iq_ctx *ctx, struct reg_req *r,
			    const struct reg_fields *f)
{
	struct arena *a = ctx->st->a;
	if (f->username == NULL || f->password == NULL)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	const char *user = field_username(a, f->username);
	if (user == NULL || strcmp(user, r->user) != 0)
		return iq_reply_error(ctx, STANZA_ERR_NOT_AUTHORIZED);
	/* An empty password keeps the current one (§3.3). */
	if (xml_text(a, f->password).len == 0)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	r->password = field_password(a, f->password);
	if (r->password == NULL)
		return iq_reply_error(ctx, STANZA_ERR_NOT_ACCEPTABLE);
	return defer_own(ctx, passwd_work, passwd_done);
}

static enum hook_ret registered(struct iq_ctx *ctx, const struct reg_req *r)
{
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_REGISTER, "query");
	xml_add_child(a, q, STR_LIT(NS_REGISTER), STR_LIT("registered"));
	struct xml_elem *u = xml_add_child(a, q, STR_LIT(NS_REGISTER),
					   STR_LIT("username"));
	xml_add_text(a, u, str_c(r->user));
	return iq_reply_result(ctx, q);
}

static enum hook_ret register_handle(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	/* §3.3: errors do not carry the request (a password) back. Unlinked
	 * only: ctx->payload stays readable in the arena. */
	xml_remove_child(ctx->payload);
	/* Only the account itself, at its server or own bare JID. */
	if (ctx->target == TO_BARE && !jid_bare_eq(&st->from, &st->to))
		return iq_reply_error(ctx, STANZA_ERR_SERVICE_UNAVAILABLE);
	struct reg_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	r->host = server.conf->hosts[ctx->host_idx];
	r->user = arena_strdup(st->a, st->from.node).p;
	if (r->user == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	ctx->ud = r;
	if (ctx->type == IQ_GET)
		return registered(ctx, r);
	struct reg_fields f;
	fields_parse(ctx->payload, &f);
	if (f.bad)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	if (f.remove == NULL)
		return passwd(ctx, r, &f);
	/* §3.2: <remove/> must be the only child. */
	if (f.username != NULL || f.password != NULL || f.others > 0)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	return defer_own(ctx, remove_work, remove_done);
}

static const struct iq_route register_iq[] = {
	{ IQ_GET | IQ_SET, TO_HOST | TO_BARE, NS_REGISTER, "query",
	  register_handle },
	{ 0 },
};

/* ---- a session bound while its account was being removed ---- */

struct bound_check {
	struct sess_ref ref;
	char *host, *user, *bare;
};

static int bound_work(struct store *st, void *ud)
{
	struct bound_check *b = ud;
	return accounts_exists(st, b->host, b->user);
}

static void bound_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct bound_check *b = ud;
	if (status == 1)
		route_kick(&b->ref, STREAM_ERR_NOT_AUTHORIZED,
			   "account removed");
	else if (status == 0)
		removed_mark(str_c(b->bare), false); /* created again */
	free(b->host);
	free(b->user);
	free(b->bare);
	free(b);
}

/*
 * A login that passed SASL just before a removal may bind just after the
 * removal ended the account's sessions. remove_done marks the account
 * before it kicks, and the session is in the session table before this
 * hook runs, so either the kick finds the session or this finds the mark
 * (two locks, each side writes one and then reads the other). Only then
 * is the store asked, keyed on the account, so after any removal job:
 * other logins cost nothing here.
 */
static enum hook_ret register_bound(struct hook_ctx *ctx)
{
	struct arena *a = arena_new(0);
	struct str bare = jid_to_str(a, ctx->user, true);
	if (removed_has(bare)) {
		struct bound_check *b = xcalloc(1, sizeof(*b));
		b->ref = (struct sess_ref){ .shard = ctx->shard,
					    .conn_id = ctx->conn_id };
		b->host = str_xdup(ctx->user->domain);
		b->user = str_xdup(ctx->user->node);
		b->bare = str_xdup(bare);
		store_queue_keyed(server.store, bare, bound_work, bound_done,
				  b);
	}
	arena_destroy(&a);
	return HOOK_PASS;
}

static const struct hook register_hooks[] = {
	{ EV_SESSION_BOUND, 50, register_bound },
	{ 0 },
};

const struct module mod_register = {
	.name = "register",
	.spec = "XEP-0077",
	.iq = register_iq,
	.features = (const char *const[]){ NS_REGISTER, NULL },
	.advertised = register_advertised,
	.stream_features = register_stream_features,
	.preauth_iq = register_preauth,
	.hooks = register_hooks,
};
