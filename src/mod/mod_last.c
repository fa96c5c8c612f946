/*
 * mod_last.c - XEP-0012: Last Activity. To the server's domain (§5): the
 * seconds since the server started. To an account's bare JID (§4): 0 while
 * it has a connected resource, else the seconds since its last session
 * ended, with the status of that session's last unavailable presence.
 * Only the account itself and contacts it has granted a From subscription
 * learn this (§4, §9): everyone else, and anyone asking about an account
 * that does not exist, gets <forbidden/>, so nothing leaks. An account that
 * never logged out gets <item-not-found/>.
 *
 * Storage: keyval table `last_activity`, value a serialized <query/> with
 * an internal 'stamp' (Unix seconds) and the status as text, written at
 * EV_SESSION_END by a job keyed on the account's bare JID, so that it
 * orders with the account's roster and presence jobs and with queries.
 * A session's status waits in memory (by connection id) until it ends.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "../router/sessions.h"
#include "../store/accounts.h"
#include "../store/shapes.h"
#include "../xml/parser.h"
#include "../xmpp/ns.h"
#include "module.h"
#include "roster/roster-private.h"

#define NS_LAST "jabber:iq:last"
#define LAST_TABLE "last_activity"
#define LAST_STATUS_MAX 1024 /* bytes of status text kept */
#define LAST_VALUE_MAX (LAST_STATUS_MAX * 6 + 256) /* escaped, with tag */

static const char *const last_migrations[] = {
	"CREATE TABLE last_activity (host TEXT NOT NULL, "
	"user TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user)) WITHOUT ROWID",
	NULL,
};

static const struct store_schema last_schema = {
	.name = "last",
	.migrations = last_migrations,
	.user_tables = (const char *const[]){ LAST_TABLE, NULL },
};

/* ---- the status of each session's last unavailable presence ---- */

/* Few entries: only sessions that went unavailable with a status and are
 * still bound. Hooks of every shard use it, hence the lock. */
struct last_status {
	struct last_status *next;
	uint64_t conn_id;
	char *text;
};

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static struct last_status *status_list;

/* Removes conn_id's entry and returns its text (caller frees), or NULL. */
static char *status_take(uint64_t conn_id)
{
	char *text = NULL;
	pthread_mutex_lock(&status_lock);
	for (struct last_status **p = &status_list; *p; p = &(*p)->next) {
		if ((*p)->conn_id != conn_id)
			continue;
		struct last_status *e = *p;
		*p = e->next;
		text = e->text;
		free(e);
		break;
	}
	pthread_mutex_unlock(&status_lock);
	return text;
}

/* Replaces conn_id's status; an empty one removes it. */
static void status_set(uint64_t conn_id, struct str text)
{
	free(status_take(conn_id));
	if (text.len == 0)
		return;
	struct last_status *e = xmalloc(sizeof(*e));
	e->conn_id = conn_id;
	e->text = xmalloc(text.len + 1);
	memcpy(e->text, text.p, text.len);
	e->text[text.len] = '\0';
	pthread_mutex_lock(&status_lock);
	e->next = status_list;
	status_list = e;
	pthread_mutex_unlock(&status_lock);
}

/* At most LAST_STATUS_MAX bytes, cut before a UTF-8 lead byte. */
static struct str status_cut(struct str s)
{
	if (s.len <= LAST_STATUS_MAX)
		return s;
	size_t n = LAST_STATUS_MAX;
	while (n > 0 && ((unsigned char)s.p[n] & 0xC0) == 0x80)
		n--;
	s.len = n;
	return s;
}

/* Broadcast unavailable presence (none with 'to'): remember its status.
 * The one a session sends itself when it ends available (RFC 6121 §4.5.2)
 * has none, and so clears an earlier one, as it should. */
static enum hook_ret last_presence_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (!str_eq_c(st->type, "unavailable") ||
	    xml_attr_get(st->x, "to").p != NULL)
		return HOOK_PASS;
	struct xml_elem *s = xml_child(st->x, NS_CLIENT, "status");
	struct str text = s != NULL ? xml_text(st->a, s) : STR_NULL;
	if (text.p == NULL)
		text.len = 0;
	status_set(ctx->conn_id, status_cut(text));
	return HOOK_PASS;
}

/* ---- recording a session's end (keyed job) ---- */

struct last_end {
	struct arena *a;
	const char *host, *user;
	struct buf value;
};

/* Keyed after an account removal's purge, when the removal ended the
 * session: nothing may be written for the account then. */
static int end_work(struct store *st, void *ud)
{
	struct last_end *j = ud;
	int rc = accounts_exists(st, j->host, j->user);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	return store_kv_set(st, LAST_TABLE, j->host, j->user, j->value.data,
			    j->value.len);
}

static void end_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct last_end *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_errx("last: %s@%s: logout time not stored", j->user,
			 j->host);
	buf_reset(&j->value);
	struct arena *a = j->a;
	arena_destroy(&a);
}

/* The stored form: <query xmlns='jabber:iq:last' stamp='T'>status</query>. */
static int value_build(struct arena *a, struct buf *b, time_t now,
		       const char *status)
{
	struct xml_elem *q = xml_elem_new(a, STR_LIT(NS_LAST),
					  STR_LIT("query"));
	char stamp[32];
	snprintf(stamp, sizeof(stamp), "%" PRId64, (int64_t)now);
	if (q == NULL || xml_attr_set(a, q, "stamp", str_c(stamp)) < 0)
		return -1;
	if (status != NULL && xml_add_text(a, q, str_c(status)) < 0)
		return -1;
	b->max = LAST_VALUE_MAX;
	return xml_serialize(b, q, STR_LIT(""));
}

static enum hook_ret last_session_end(struct hook_ctx *ctx)
{
	char *status = status_take(ctx->conn_id);
	struct arena *a = arena_new(0);
	struct last_end *j = arena_zalloc(a, sizeof(*j));
	j->a = a;
	j->host = server.conf->hosts[ctx->host_idx];
	j->user = arena_strdup(a, ctx->user->node).p;
	struct jid bare = { .node = ctx->user->node,
			    .domain = ctx->user->domain };
	struct str key = jid_to_str(a, &bare, true);
	int rc = value_build(a, &j->value, time(NULL), status);
	free(status);
	if (rc < 0 || j->user == NULL || key.p == NULL) {
		log_errx("last: %s: logout time not recorded",
			 j->host);
		end_done(NULL, j, -1);
		return HOOK_PASS;
	}
	store_queue_keyed(server.store, key, end_work, end_done, j);
	return HOOK_PASS;
}

/* ---- queries ---- */

struct last_req {
	const char *host, *user; /* the account asked about */
	const char *contact;     /* the requester's bare JID */
	bool self, allowed, found;
	int64_t stamp;
	struct str status;
};

/* Reads a stored value; -1 if it is not one we wrote. */
static int value_parse(struct arena *a, struct str bytes,
		       struct last_req *r)
{
	struct xml_elem *q = xml_parse_elem(a, bytes, STR_LIT(""));
	if (q == NULL || !str_eq_c(q->ns, NS_LAST) ||
	    !str_eq_c(q->name, "query") || xml_first_child_elem(q) != NULL)
		return -1;
	struct str s = xml_attr_get(q, "stamp");
	if (s.len == 0 || s.len > 18)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (s.p[i] - '0');
	}
	r->stamp = v;
	r->status = xml_text(a, q);
	return r->status.p == NULL ? -1 : 0;
}

static int query_work(struct store *st, struct iq_ctx *ctx)
{
	struct last_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	r->allowed = r->self;
	if (!r->self) {
		struct xml_elem *it;
		int rc = roster_item_load(st, r->host, r->user, r->contact, a,
					  &it);
		if (rc < 0)
			return -1;
		r->allowed = rc == 0 &&
			     sub_state_has_from(roster_item_state(it).state);
	}
	if (!r->allowed)
		return 0;
	struct buf value = { .max = LAST_VALUE_MAX };
	int rc = store_kv_get(st, LAST_TABLE, r->host, r->user, &value);
	if (rc == 0 && value_parse(a, buf_str(&value), r) < 0) {
		log_errx("last: %s@%s: stored value unreadable", r->user,
			 r->host);
		rc = -1;
	}
	r->found = rc == 0;
	buf_reset(&value);
	return rc < 0 ? -1 : 0;
}

static enum hook_ret reply_seconds(struct iq_ctx *ctx, int64_t seconds,
				   struct str status)
{
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_LAST, "query");
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, seconds < 0 ? 0 : seconds);
	if (q == NULL || xml_attr_set(a, q, "seconds", str_c(buf)) < 0 ||
	    (status.len > 0 && xml_add_text(a, q, status) < 0))
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_reply_result(ctx, q);
}

/* Whether the account has a connected resource (§4: then 0 seconds);
 * looked up last, on the shard, to be as fresh as can be. */
static bool account_online(struct iq_ctx *ctx)
{
	struct sess_ref ref;
	struct str bare = jid_to_str(ctx->st->a, &ctx->st->to, true);
	return bare.p != NULL && sessions_find_all(bare, &ref, 1) > 0;
}

static void query_done(struct iq_ctx *ctx, int status)
{
	struct last_req *r = ctx->ud;
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	if (!r->allowed)
		iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	else if (account_online(ctx))
		reply_seconds(ctx, 0, STR_NULL);
	else if (!r->found)
		iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	else
		reply_seconds(ctx, (int64_t)time(NULL) - r->stamp, r->status);
}

static enum hook_ret last_account(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct last_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	r->host = server.conf->hosts[ctx->host_idx];
	r->user = arena_strdup(st->a, st->to.node).p;
	r->contact = jid_to_str(st->a, &st->from, true).p;
	r->self = jid_bare_eq(&st->from, &st->to);
	struct str key = jid_to_str(st->a, &st->to, true);
	if (r->user == NULL || r->contact == NULL || key.p == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	ctx->ud = r;
	return iq_defer_keyed(ctx, key, query_work, query_done);
}

static enum hook_ret last_handle(struct iq_ctx *ctx)
{
	if (ctx->target == TO_BARE)
		return last_account(ctx);
	/* §5: the server's uptime, without text. */
	return reply_seconds(ctx, (int64_t)time(NULL) - server.started,
			     STR_NULL);
}

static const struct iq_route last_iq[] = {
	{ IQ_GET, TO_HOST | TO_BARE, NS_LAST, "query", last_handle },
	{ 0 },
};

static const struct hook last_hooks[] = {
	/* Before mod_presence (50), which takes broadcast presence. */
	{ EV_PRESENCE_OUT, 10, last_presence_out },
	{ EV_SESSION_END, 50, last_session_end },
	{ 0 },
};

const struct module mod_last = {
	.name = "last",
	.spec = "XEP-0012",
	.iq = last_iq,
	.features = (const char *const[]){ NS_LAST, NULL },
	.store = &last_schema,
	.hooks = last_hooks,
};
