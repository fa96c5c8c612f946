/*
 * mod_offline.c - XEP-0160: Best Practices for Handling Offline Messages.
 *
 * A chat or normal message for an existing local account with no available
 * resource is stored, with a XEP-0203 <delay/> stamp, in the archive table
 * `offline`, durably (the store writes with synchronous=FULL) before
 * anything else happens to it. At the account's next initial presence the
 * stored messages go to that resource in order, before its presence is
 * broadcast, and are then deleted (a crash in between delivers them again
 * rather than losing them). Beyond limits.max_offline_messages per account,
 * and for accounts that do not exist, the sender gets
 * <service-unavailable/>; when storing fails the sender gets the message
 * back with <resource-constraint/> (disk full, database locked) or
 * <internal-server-error/>, never a silent loss.
 *
 * Storage and delivery are keyed jobs of the account (store_queue_keyed),
 * ordered with its roster and presence jobs.
 *
 * Accounts whose last check found nothing, with no message stored since,
 * are known to have none (a set in memory, empty at start): their initial
 * presence skips the check, the commonest case at login. Storing a
 * message forgets that before its job is queued, so a check queued after
 * it runs as before; see empty_*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../router/route.h"
#include "../router/sessions.h"
#include "../store/accounts.h"
#include "../store/shapes.h"
#include "../xml/parser.h"
#include "../xmpp/datetime.h"
#include "../xmpp/ns.h"
#include "module.h"

#include <uv.h>

#define NS_DELAY "urn:xmpp:delay"
#define NS_MSGOFFLINE "msgoffline"
#define OFFLINE_DELIVER_MAX 10000

enum store_result {
	STORED,
	NO_ACCOUNT,
	FULL,
};

struct offline_job {
	struct stanza *st;      /* the message to store, or the presence */
	const char *host, *user;
	struct str key;         /* the account's bare JID */
	enum store_result result;
	/* delivery */
	struct sess_ref to;
	struct buf items;       /* serialized messages, NUL-separated */
	int64_t last_id;
};

static const char *const offline_migrations[] = {
	"CREATE TABLE offline (id INTEGER PRIMARY KEY AUTOINCREMENT, "
	"host TEXT NOT NULL, user TEXT NOT NULL, ts INTEGER NOT NULL, "
	"with_jid TEXT NOT NULL, value BLOB NOT NULL)",
	"CREATE INDEX offline_user ON offline (host, user, id)",
	NULL,
};

static const struct store_schema offline_schema = {
	.name = "offline",
	.migrations = offline_migrations,
	.user_tables = (const char *const[]){ "offline", NULL },
};

/* ---- accounts known to have no stored messages ---- */

/*
 * Bare JID -> empty_known, or the check job that may prove it. A check
 * records itself when it is queued; if no store removed that by the time
 * its done runs and it found nothing, the account is known empty. A store
 * removes the entry before its job is queued: a check queued later runs
 * (and sees the message, being behind the store in the account's queue),
 * one queued earlier cannot mark the account. The set lives as long as
 * the process (one entry per account that logged in).
 */
static uv_mutex_t empty_lock;
static uv_once_t empty_once = UV_ONCE_INIT;
static struct hmap empty_set;
static char empty_known_c;
static void *const empty_known = &empty_known_c;

static void empty_init(void)
{
	if (uv_mutex_init(&empty_lock) != 0)
		fatalx("offline: cannot create a mutex");
}

/* Before a store is queued: the account may have messages. */
static void empty_forget(struct str key)
{
	uv_once(&empty_once, empty_init);
	uv_mutex_lock(&empty_lock);
	hmap_del(&empty_set, key);
	uv_mutex_unlock(&empty_lock);
}

/* Before a check is queued: false if the account is known empty (no
 * check needed), else records check as the one that may prove it. */
static bool empty_check_start(struct str key, void *check)
{
	uv_once(&empty_once, empty_init);
	uv_mutex_lock(&empty_lock);
	bool need = hmap_get(&empty_set, key) != empty_known;
	if (need)
		hmap_put(&empty_set, key, check);
	uv_mutex_unlock(&empty_lock);
	return need;
}

/* When check is done: found_none says it read the table and found no
 * message. */
static void empty_check_done(struct str key, void *check, bool found_none)
{
	uv_mutex_lock(&empty_lock);
	if (hmap_get(&empty_set, key) == check) {
		if (found_none)
			hmap_put(&empty_set, key, empty_known);
		else
			hmap_del(&empty_set, key);
	}
	uv_mutex_unlock(&empty_lock);
}

static struct offline_job *job_new(struct stanza *st, const struct jid *user)
{
	struct offline_job *j = arena_zalloc(st->a, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->st = st;
	j->host = arena_strdup(st->a, user->domain).p;
	j->user = arena_strdup(st->a, user->node).p;
	j->key = jid_to_str(st->a, user, true);
	return j;
}

/* ---- storing ---- */

/* XEP-0203: when and by whom the message was delayed. Returns the
 * element added. */
static struct xml_elem *stamp(struct stanza *st, const char *host)
{
	char when[XEP82_DATETIME_LEN];
	xep82_now(when);
	struct xml_elem *d = xml_add_child(st->a, st->x, STR_LIT(NS_DELAY),
					   STR_LIT("delay"));
	if (d == NULL)
		return NULL; /* the stanza's arena is full: stored unstamped */
	xml_attr_set(st->a, d, "from", str_c(host));
	xml_attr_set(st->a, d, "stamp", str_c(when));
	xml_add_text(st->a, d, STR_LIT("Offline Storage"));
	return d;
}

static int store_work(struct store *store, void *ud)
{
	struct offline_job *j = ud;
	int rc = accounts_exists(store, j->host, j->user);
	if (rc != 0) {
		j->result = NO_ACCOUNT;
		return rc < 0 ? -1 : 0;
	}
	size_t n;
	if (store_archive_count(store, "offline", j->host, j->user, &n) < 0)
		return -1;
	if (n >= server.conf->limits.max_offline_messages) {
		j->result = FULL;
		return 0;
	}
	/* Stamped for storage only: a bounce returns the message as sent. */
	struct xml_elem *d = stamp(j->st, j->host);
	struct buf b = { 0 };
	rc = xml_serialize(&b, j->st->x, STR_LIT(NS_CLIENT));
	if (d != NULL)
		xml_remove_child(d);
	struct str from = jid_to_str(j->st->a, &j->st->from, true);
	if (rc == 0)
		rc = store_archive_append(store, "offline", j->host, j->user,
					  (int64_t)time(NULL) * 1000, from.p,
					  b.data, b.len, NULL);
	buf_reset(&b);
	j->result = STORED;
	return rc;
}

static void store_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct offline_job *j = ud;
	struct stanza *st = j->st;
	if (status == UV_ECANCELED) {
		stanza_free(&st);
	} else if (status < 0) {
		/* Not stored: the sender must learn it, not lose it quietly. */
		const char *text;
		enum stanza_err err = iq_job_error(status, &text);
		log_warnx("offline: a message to %s@%s was not stored",
			  j->user, j->host);
		route_bounce(st, err, text);
	} else if (j->result != STORED) {
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE,
			     j->result == FULL ? "offline storage is full"
					       : NULL);
	} else {
		stanza_free(&st);
	}
}

static enum hook_ret offline_store(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (server.conf->limits.max_offline_messages == 0 ||
	    !(st->type.len == 0 || str_eq_c(st->type, "chat") ||
	      str_eq_c(st->type, "normal")))
		return HOOK_PASS;
	struct jid user = st->to;
	user.resource = STR_NULL;
	struct offline_job *j = job_new(st, &user);
	if (j == NULL)
		return HOOK_PASS;
	empty_forget(j->key);
	store_queue_keyed(server.store, j->key, store_work, store_done, j);
	return HOOK_STOP;
}

/* ---- delivering ---- */

static int collect(const struct store_item *it, void *ud)
{
	struct offline_job *j = ud;
	j->last_id = it->id;
	return buf_append(&j->items, it->value, it->len) < 0 ||
			       buf_append(&j->items, "", 1) < 0
		       ? 1
		       : 0;
}

static int list_work(struct store *store, void *ud)
{
	struct offline_job *j = ud;
	return store_archive_list(store, "offline", j->host, j->user, 0,
				  OFFLINE_DELIVER_MAX, collect, j);
}

static int delete_work(struct store *store, void *ud)
{
	struct offline_job *j = ud;
	return store_archive_delete(store, "offline", j->host, j->user,
				    j->last_id);
}

static void delete_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct offline_job *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_warnx("offline: could not delete delivered messages of "
			  "%s@%s", j->user, j->host);
	buf_reset(&j->items);
	struct stanza *st = j->st; /* j lives in st's arena */
	stanza_free(&st);
}

static void list_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct offline_job *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_warnx("offline: could not read the stored messages of "
			  "%s@%s; they stay stored for the next session",
			  j->user, j->host);
	empty_check_done(j->key, j, status >= 0 && j->last_id == 0);
	if (status < 0 || j->last_id == 0) {
		buf_reset(&j->items);
		struct stanza *st = j->st; /* j lives in st's arena */
		stanza_free(&st);
		return;
	}
	size_t n = 0;
	for (size_t off = 0; off < j->items.len; n++) {
		struct str x = str_c(j->items.data + off);
		off += x.len + 1;
		struct stanza *m = stanza_new(STANZA_MESSAGE, &j->st->from,
					      NULL, NULL);
		struct xml_elem *e = xml_parse_elem(m->a, x, STR_LIT(NS_CLIENT));
		if (e == NULL) {
			stanza_free(&m);
			continue;
		}
		m->x = e;
		route_deliver(&j->to, m);
	}
	log_debug("offline: %zu message(s) to %s@%s", n, j->user, j->host);
	/* Deleted once handed to the session: a crash before this point
	 * delivers them again rather than losing them. */
	store_queue_keyed(server.store, j->key, delete_work, delete_done, j);
}

static enum hook_ret offline_deliver(struct hook_ctx *ctx)
{
	if (!ctx->initial)
		return HOOK_PASS;
	struct stanza *marker = stanza_new(STANZA_PRESENCE, ctx->user, NULL,
					   NULL);
	struct jid user = *ctx->user;
	user.resource = STR_NULL;
	struct offline_job *j = job_new(marker, &user);
	if (!empty_check_start(j->key, j)) {
		stanza_free(&marker); /* j lived in it */
		return HOOK_PASS;
	}
	j->to = (struct sess_ref){ .shard = ctx->shard,
				   .conn_id = ctx->conn_id };
	store_queue_keyed(server.store, j->key, list_work, list_done, j);
	return HOOK_PASS;
}

static const struct hook offline_hooks[] = {
	{ EV_MESSAGE_OFFLINE, 50, offline_store },
	/* Before mod_presence (50): stored messages precede the broadcast. */
	{ EV_PRESENCE_OUT, 40, offline_deliver },
	{ 0 },
};

const struct module mod_offline = {
	.name = "offline",
	.spec = "XEP-0160, XEP-0203",
	.features = (const char *const[]){ NS_MSGOFFLINE, NULL },
	.store = &offline_schema,
	.hooks = offline_hooks,
};
