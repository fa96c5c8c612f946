/*
 * mod_mam.c - XEP-0313 Message Archive Management for user accounts,
 * XEP-0359 stanza ids, XEP-0441 archiving preferences, XEP-0334 storage
 * hints. docs/internals/mam.md describes the design; in short:
 *
 * What: chat and normal messages with a <body/> (or a <store/> hint),
 * without <no-store/> or <no-permanent-store/>, are archived once per
 * account: for a local sender when its client sends the message
 * (EV_MESSAGE_OUT), for a local recipient where route() has chosen its
 * resources (EV_MESSAGE_DELIVER: once, whatever the number of resources,
 * and also when the message goes to offline storage). A message to
 * oneself is archived once, as received.
 *
 * Ids: one server-wide source of strictly increasing integers, the
 * current time in microseconds (or the last id + 1), so archive order is
 * arrival order and start/end are id ranges. The recipient's copy gets
 * <stanza-id by=bare JID id=ID/> before delivery (and before carbons copy
 * it, and before offline storage keeps it); incoming stanza-ids that
 * claim the account's `by` are removed first (XEP-0359 §4).
 *
 * Writes: the id is known on the shard, so delivery does not wait for the
 * disk. Archived copies are queued (one list for the process) and written
 * by a pool job in batches, one transaction and one fsync per batch
 * (group commit). A query first writes what is queued, under the same
 * writer lock, so a client always finds the messages it has been
 * delivered or has sent.
 *
 * Preferences: cached in memory for every account that has any (loaded at
 * start-up, changed by <prefs/> sets after they are stored). Routing
 * decides from the cache; only default='roster' for a contact on neither
 * list needs the roster: an incoming message is then held in the
 * account's keyed queue until the roster says, and routed on with the
 * answer; an outgoing copy is checked by the writer instead (it carries
 * no stanza-id).
 *
 * Queries (keyed jobs of the account): the form and RSM set are read by
 * mam_query.c into one id range; results are sent to the querying
 * resource, then the <fin/> result.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../router/sessions.h"
#include "../store/accounts.h"
#include "../store/mam.h"
#include "../store/shapes.h"
#include "../xml/dataform.h"
#include "../xml/parser.h"
#include "../xmpp/datetime.h"
#include "../xmpp/ns.h"
#include "mam_query.h"
#include "module.h"
#include "roster/roster-private.h"

#define NS_MAM_EXTENDED "urn:xmpp:mam:2#extended"
#define NS_SID "urn:xmpp:sid:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"

#define PENDING_MAX 200000   /* queued copies; beyond, not archived */
#define BATCH_MAX 2000       /* copies per transaction */
#define PREFS_JIDS_MAX 1000  /* JIDs in the always and never lists */
#define PREFS_VALUE_MAX (256 * 1024)
#define JID_TEXT_MAX 3200
#define PURGE_EVERY_US (3600LL * 1000000)

/* ---- archive ids ---- */

static _Atomic int64_t last_id;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The next id: the time in microseconds, or one more than the last id if
 * the clock has not moved past it (a burst, or a clock set back). */
static int64_t next_id(void)
{
	int64_t now = now_us();
	int64_t last = atomic_load(&last_id);
	int64_t id;
	do
		id = now > last ? now : last + 1;
	while (!atomic_compare_exchange_weak(&last_id, &last, id));
	return id;
}

/* The oldest id still kept (retention), or 0. */
static int64_t retention_floor(void)
{
	uint64_t r = server.conf->mam.retention_ms;
	if (r == 0)
		return 0;
	int64_t f = now_us() - (int64_t)r * 1000;
	return f > 0 ? f : 0;
}

/* ---- preferences (XEP-0441) ---- */

enum mam_default { DEF_ALWAYS, DEF_NEVER, DEF_ROSTER };
static const char *const default_names[] = { "always", "never", "roster" };

struct prefs {
	enum mam_default def;
	struct hmap always, never; /* normalised JID -> (void *)1 */
};

enum decision { ARCHIVE, SKIP, ASK_ROSTER };

static uv_rwlock_t prefs_lock;
static struct hmap prefs_cache; /* account bare JID -> struct prefs */
static void *const present = (void *)1;

static void prefs_free(struct prefs *p)
{
	if (p == NULL)
		return;
	hmap_clear(&p->always);
	hmap_clear(&p->never);
	free(p);
}

static void prefs_free_entry(struct str key, void *value, void *ud)
{
	(void)key;
	(void)ud;
	prefs_free(value);
}

/* Whether set lists j, as a full JID or by its bare JID. */
static bool listed(const struct hmap *set, struct arena *a,
		   const struct jid *j)
{
	if (set->count == 0)
		return false;
	return hmap_get(set, jid_to_str(a, j, true)) != NULL ||
	       (j->resource.len > 0 &&
		hmap_get(set, jid_to_str(a, j, false)) != NULL);
}

/* What account's preferences say about contact (a is scratch space). */
static enum decision decide(struct arena *a, struct str account,
			    const struct jid *contact)
{
	enum decision d = ARCHIVE;
	uv_rwlock_rdlock(&prefs_lock);
	const struct prefs *p = hmap_get(&prefs_cache, account);
	if (p == NULL)
		d = ARCHIVE;
	else if (listed(&p->never, a, contact))
		d = SKIP; /* never wins over always: the safer reading */
	else if (listed(&p->always, a, contact))
		d = ARCHIVE;
	else
		d = p->def == DEF_ALWAYS ? ARCHIVE
		    : p->def == DEF_NEVER ? SKIP
					  : ASK_ROSTER;
	uv_rwlock_rdunlock(&prefs_lock);
	return d;
}

/* Reads <prefs/> into a new struct prefs (NULL: malformed, or the
 * a is full). */
static struct prefs *prefs_read(struct arena *a, const struct xml_elem *x)
{
	struct str def = xml_attr_get(x, "default");
	size_t i;
	for (i = 0; i < ARRAY_SIZE(default_names); i++)
		if (str_eq_c(def, default_names[i]))
			break;
	if (i == ARRAY_SIZE(default_names))
		return NULL;
	struct prefs *p = xcalloc(1, sizeof(*p));
	p->def = (enum mam_default)i;
	size_t n = 0;
	xml_foreach_child(list, x) {
		if (!str_eq_c(list->ns, NS_MAM))
			continue;
		struct hmap *set = str_eq_c(list->name, "always") ? &p->always
				   : str_eq_c(list->name, "never") ? &p->never
								   : NULL;
		if (set == NULL)
			continue;
		xml_foreach_child(j, list) {
			if (!str_eq_c(j->name, "jid") || !str_eq_c(j->ns, NS_MAM))
				continue;
			struct jid jid;
			const char *why;
			if (++n > PREFS_JIDS_MAX ||
			    jid_parse(a, xml_text(a, j), &jid, &why) < 0) {
				prefs_free(p);
				return NULL;
			}
			hmap_put(set, jid_to_str(a, &jid, false), present);
		}
	}
	return p;
}

struct prefs_xml_ctx {
	struct arena *a;
	struct xml_elem *list;
};

static void add_jid(struct str key, void *value, void *ud)
{
	(void)value;
	struct prefs_xml_ctx *c = ud;
	struct xml_elem *j = xml_add_child(c->a, c->list, STR_LIT(NS_MAM),
					   STR_LIT("jid"));
	if (j != NULL)
		xml_add_text(c->a, j, key);
}

/* <prefs/> for p (NULL: the server's default, always). */
static struct xml_elem *prefs_xml(struct arena *a, const struct prefs *p)
{
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_MAM), STR_LIT("prefs"));
	if (x == NULL)
		return NULL;
	xml_attr_set(a, x, "default",
		     str_c(default_names[p ? p->def : DEF_ALWAYS]));
	struct prefs_xml_ctx c = { .a = a };
	c.list = xml_add_child(a, x, STR_LIT(NS_MAM), STR_LIT("always"));
	if (p != NULL && c.list != NULL)
		hmap_foreach(&p->always, add_jid, &c);
	c.list = xml_add_child(a, x, STR_LIT(NS_MAM), STR_LIT("never"));
	if (p != NULL && c.list != NULL)
		hmap_foreach(&p->never, add_jid, &c);
	return x;
}

static bool prefs_is_default(const struct prefs *p)
{
	return p->def == DEF_ALWAYS && p->always.count == 0 &&
	       p->never.count == 0;
}

/* Puts p (owned from now on; NULL or default: none) in the cache. */
static void prefs_cache_set(struct str account, struct prefs *p)
{
	if (p != NULL && prefs_is_default(p)) {
		prefs_free(p);
		p = NULL;
	}
	uv_rwlock_wrlock(&prefs_lock);
	struct prefs *old = p != NULL ? hmap_put(&prefs_cache, account, p)
				      : hmap_del(&prefs_cache, account);
	uv_rwlock_wrunlock(&prefs_lock);
	prefs_free(old);
}

/* ---- the writer: queued copies, written in batches ---- */

struct pending {
	struct pending *next;
	int64_t id;
	bool check_account; /* the recipient had no session: does it exist? */
	bool check_roster;  /* default=roster: is `with` in the roster? */
	const char *host, *user, *with, *with_res; /* in data[] */
	size_t len;
	const char *value;  /* in data[] */
	char data[];
};

static uv_mutex_t pend_lock;  /* the list and writer_queued */
static uv_mutex_t write_lock; /* one batch at a time, taken to committed */
static struct pending *pend_head, **pend_tail = &pend_head;
static size_t pend_count;
static bool writer_queued;
static int64_t last_purge_us;  /* under write_lock */
static unsigned long dropped;  /* copies not archived: queue full */

static struct pending *pending_new(struct str host, struct str user,
				   struct str with, struct str with_res,
				   const struct buf *value)
{
	size_t n = host.len + user.len + with.len + with_res.len + 4 +
		   value->len;
	struct pending *p = xmalloc(sizeof(*p) + n);
	char *d = p->data;
	const struct str parts[] = { host, user, with, with_res };
	const char **dst[] = { &p->host, &p->user, &p->with, &p->with_res };
	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		*dst[i] = d;
		if (parts[i].len > 0)
			memcpy(d, parts[i].p, parts[i].len);
		d += parts[i].len;
		*d++ = '\0';
	}
	p->value = d;
	if (value->len > 0)
		memcpy(d, value->data, value->len);
	p->len = value->len;
	p->next = NULL;
	p->check_account = p->check_roster = false;
	return p;
}

/* Takes up to BATCH_MAX queued copies, oldest first. */
static struct pending *take_batch(void)
{
	uv_mutex_lock(&pend_lock);
	struct pending *head = pend_head, **end = &pend_head;
	size_t n = 0;
	while (*end != NULL && n < BATCH_MAX) {
		end = &(*end)->next;
		n++;
	}
	pend_head = *end;
	*end = NULL;
	if (pend_head == NULL)
		pend_tail = &pend_head;
	pend_count -= n;
	uv_mutex_unlock(&pend_lock);
	return head;
}

/* Whether the writer should archive p (its account exists, its contact
 * passes default=roster). -1: storage error. */
static int wanted(struct store *st, struct arena *a, const struct pending *p)
{
	if (p->check_account) {
		int rc = accounts_exists(st, p->host, p->user);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	if (p->check_roster) {
		struct xml_elem *it = NULL;
		int rc = roster_item_load(st, p->host, p->user, p->with, a, &it);
		if (rc < 0)
			return -1;
		if (rc == 1 || !roster_item_visible(it))
			return 0;
	}
	return 1;
}

static void write_batch(struct store *st, struct pending *batch)
{
	size_t n = 0, kept = 0;
	int64_t high = 0;
	for (struct pending *p = batch; p != NULL; p = p->next) {
		n++;
		high = p->id > high ? p->id : high;
	}
	struct arena *a = arena_new(0);
	int rc = store_begin(st);
	bool open = rc == 0;
	/* The batch's accounts' keys, looked up once each (a batch holds
	 * the write lock: no account can go meanwhile). */
	struct hmap uids = { 0 };
	for (struct pending *p = batch; rc == 0 && p != NULL; p = p->next) {
		int w = wanted(st, a, p);
		if (w <= 0) {
			rc = w;
			continue;
		}
		char key[JID_TEXT_MAX];
		int kn = snprintf(key, sizeof(key), "%s@%s", p->user, p->host);
		BUG_ON(kn < 0 || (size_t)kn >= sizeof(key));
		int64_t uid = (int64_t)(intptr_t)hmap_get(&uids,
							  STR(key, (size_t)kn));
		if (uid == 0) {
			rc = mam_store_user(st, p->host, p->user, true, &uid);
			if (rc == 0)
				hmap_put(&uids, STR(key, (size_t)kn),
					 (void *)(intptr_t)uid);
		}
		if (rc == 0)
			rc = mam_store_append(st, uid, p->id, p->with,
					      p->with_res, p->value, p->len);
		kept += rc == 0;
	}
	hmap_clear(&uids);
	if (rc == 0)
		rc = mam_store_set_high(st, high);
	if (rc == 0)
		rc = store_commit(st);
	else if (open)
		store_rollback(st);
	if (rc < 0)
		log_warnx("mam: %zu message(s) could not be archived", n);
	else
		log_debug("mam: archived %zu of %zu", kept, n);
	arena_destroy(&a);
	while (batch != NULL) {
		struct pending *next = batch->next;
		free(batch);
		batch = next;
	}
}

static void purge_expired(struct store *st, int64_t now)
{
	int64_t floor = retention_floor();
	if (floor == 0)
		return;
	last_purge_us = now;
	size_t n;
	if (mam_store_purge(st, floor, &n) == 0 && n > 0)
		log_info("mam: %zu message(s) past retention deleted", n);
}

/* Writes everything queued so far (and, now and then, applies
 * retention). Whatever was queued before the call is committed when it
 * returns: batches are taken and committed under write_lock, so a
 * caller cannot pass a batch another thread took earlier but has not
 * committed yet. Pool threads only. */
static void flush(struct store *st)
{
	uv_mutex_lock(&write_lock);
	struct pending *b;
	while ((b = take_batch()) != NULL)
		write_batch(st, b);
	uint64_t r = server.conf->mam.retention_ms;
	int64_t every = r > 0 && (int64_t)r * 1000 < PURGE_EVERY_US
				? (int64_t)r * 1000
				: PURGE_EVERY_US;
	int64_t now = now_us();
	if (r > 0 && now - last_purge_us >= every)
		purge_expired(st, now);
	uv_mutex_unlock(&write_lock);
}

static int writer_work(struct store *st, void *ud)
{
	(void)ud;
	for (;;) {
		flush(st);
		uv_mutex_lock(&pend_lock);
		bool empty = pend_head == NULL;
		if (empty)
			writer_queued = false;
		uv_mutex_unlock(&pend_lock);
		if (empty)
			return 0;
	}
}

static void writer_done(struct store *st, void *ud, int status)
{
	(void)st;
	(void)ud;
	(void)status;
}

/* Queues p; starts the writer if none is queued. */
static void enqueue(struct pending *p)
{
	uv_mutex_lock(&pend_lock);
	*pend_tail = p;
	pend_tail = &p->next;
	pend_count++;
	bool start = !writer_queued;
	writer_queued = true;
	uv_mutex_unlock(&pend_lock);
	if (start && store_queue_work(&shard_self->loop, server.store,
				      writer_work, writer_done, NULL) < 0) {
		/* Shutting down: mam_stop() writes what is left. */
		uv_mutex_lock(&pend_lock);
		writer_queued = false;
		uv_mutex_unlock(&pend_lock);
	}
}

static bool queue_full(void)
{
	uv_mutex_lock(&pend_lock);
	bool full = pend_count >= PENDING_MAX;
	if (full && dropped++ % 10000 == 0)
		log_warnx("mam: the archive writer is %zu messages behind; "
			  "new messages are not archived (%lu so far)",
			  pend_count, dropped);
	uv_mutex_unlock(&pend_lock);
	return full;
}

/* ---- which messages ---- */

/* XEP-0313 §7.1.1 (user archives) and XEP-0334 hints. */
static bool archivable(const struct stanza *st)
{
	if (st->kind != STANZA_MESSAGE ||
	    !(st->type.len == 0 || str_eq_c(st->type, "chat") ||
	      str_eq_c(st->type, "normal")))
		return false;
	const struct xml_elem *x = st->x;
	if (xml_child(x, NS_HINTS, "no-store") != NULL ||
	    xml_child(x, NS_HINTS, "no-permanent-store") != NULL)
		return false;
	return xml_child(x, NS_CLIENT, "body") != NULL ||
	       xml_child(x, NS_HINTS, "store") != NULL;
}

/* XEP-0359 §4: a stanza-id whose `by` is the archive's own JID can only
 * be forged; it goes before anything else sees the message. */
static void strip_ids(struct stanza *st, const struct jid *archive)
{
	struct xml_elem *c = xml_first_child_elem(st->x);
	while (c != NULL) {
		struct xml_elem *next = xml_next_elem(c);
		if (str_eq_c(c->name, "stanza-id") && str_eq_c(c->ns, NS_SID)) {
			struct jid by;
			const char *why;
			struct str s = xml_attr_get(c, "by");
			if (s.p != NULL && jid_parse(st->a, s, &by, &why) == 0 &&
			    jid_is_bare(&by) && jid_bare_eq(&by, archive))
				xml_remove_child(c);
		}
		c = next;
	}
}

/* Whether e is within the stream's default limits (depth 32, 64
 * attributes an element), which xml_parse_elem's are above: then its
 * serialized copy parses back for sure, and only a deeper or wider tree
 * (a server configured with larger limits) pays for a trial parse. */
static bool tree_small(const struct xml_elem *e, unsigned depth)
{
	if (depth > 32)
		return false;
	size_t n = 0;
	for (const struct xml_attr *at = e->attrs; at != NULL; at = at->next)
		if (++n > 64)
			return false;
	xml_foreach_child(c, e)
		if (!tree_small(c, depth + 1))
			return false;
	return true;
}

/* Queues a copy of st for account's archive, with contact as `with`. */
static void archive(const struct stanza *st, const struct jid *account,
		    const struct jid *contact, int64_t id, bool check_account,
		    bool check_roster)
{
	struct buf b = { 0 };
	if (xml_serialize(&b, st->x, STR_LIT(NS_CLIENT)) < 0 ||
	    (!tree_small(st->x, 1) && !xml_elem_readable(STR(b.data, b.len)))) {
		buf_reset(&b);
		return;
	}
	struct arena *a = arena_new(0);
	struct pending *p = pending_new(account->domain, account->node,
					jid_to_str(a, contact, true),
					contact->resource, &b);
	arena_destroy(&a);
	buf_reset(&b);
	p->id = id;
	p->check_account = check_account;
	p->check_roster = check_roster;
	enqueue(p);
}

/* ---- hooks ---- */

/* The roster answer for a held incoming message, for the second pass of
 * route() on this thread (resume.st is that message). */
static _Thread_local struct {
	const struct stanza *st;
	bool archive;
} resume;

struct held {
	struct stanza *st;
	const char *host, *user, *contact;
	bool in_roster;
};

static int held_work(struct store *store, void *ud)
{
	struct held *h = ud;
	struct arena *a = arena_new(0);
	struct xml_elem *it = NULL;
	int rc = roster_item_load(store, h->host, h->user, h->contact, a, &it);
	h->in_roster = rc == 0 && roster_item_visible(it);
	arena_destroy(&a);
	return rc < 0 ? -1 : 0;
}

static void held_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct held *h = ud;
	struct stanza *st = h->st;
	if (status == UV_ECANCELED) {
		stanza_free(&st);
		return;
	}
	if (status < 0)
		log_warnx("mam: roster of %s@%s unreadable; a message from %s "
			  "is not archived", h->user, h->host, h->contact);
	resume.st = st;
	resume.archive = status >= 0 && h->in_roster;
	route(st); /* the hooks again; mam_deliver takes the answer */
	resume.st = NULL;
}

/* Incoming, before routing: forged ids go; with default='roster' and a
 * contact on neither list the message waits for the roster. */
static enum hook_ret mam_in(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->kind != STANZA_MESSAGE || resume.st == st)
		return HOOK_PASS;
	strip_ids(st, &st->to);
	if (!archivable(st) || st->from.domain.len == 0)
		return HOOK_PASS;
	struct str account = jid_to_str(st->a, &st->to, true);
	if (decide(st->a, account, &st->from) != ASK_ROSTER)
		return HOOK_PASS;
	struct held *h = arena_zalloc(st->a, sizeof(*h));
	if (h == NULL)
		return HOOK_PASS; /* arena full: routed, not archived */
	h->st = st;
	h->host = arena_strdup(st->a, st->to.domain).p;
	h->user = arena_strdup(st->a, st->to.node).p;
	h->contact = jid_to_str(st->a, &st->from, true).p;
	store_queue_keyed(server.store, account, held_work, held_done, h);
	return HOOK_STOP;
}

/* Incoming, resources chosen (or none: offline storage next): the one
 * archived copy of the recipient, and its stanza-id on what is
 * delivered. */
static enum hook_ret mam_deliver(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (!archivable(st) || st->from.domain.len == 0)
		return HOOK_PASS;
	struct jid account = st->to;
	account.resource = STR_NULL;
	bool yes;
	if (resume.st == st) {
		yes = resume.archive;
	} else {
		struct str bare = jid_to_str(st->a, &account, true);
		/* ASK_ROSTER here: the preferences changed since mam_in;
		 * not archived rather than guessed. */
		yes = decide(st->a, bare, &st->from) == ARCHIVE;
	}
	if (!yes || queue_full())
		return HOOK_PASS;
	int64_t id = next_id();
	char ids[MAM_ID_LEN];
	mam_id_format(id, ids);
	struct xml_elem *sid = xml_add_child(st->a, st->x, STR_LIT(NS_SID),
					     STR_LIT("stanza-id"));
	if (sid == NULL)
		return HOOK_PASS; /* arena full: delivered, not archived */
	xml_attr_set(st->a, sid, "by", jid_to_str(st->a, &account, true));
	xml_attr_set(st->a, sid, "id", str_c(ids));
	archive(st, &account, &st->from, id, ctx->nrefs == 0, false);
	return HOOK_PASS;
}

/* Outgoing, from a local client: the sender's copy (without stanza-id:
 * XEP-0313 §3.3, it is not for the recipient). */
static enum hook_ret mam_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->kind != STANZA_MESSAGE)
		return HOOK_PASS;
	struct jid account = *ctx->user;
	account.resource = STR_NULL;
	strip_ids(st, &account);
	if (!archivable(st) || st->to.domain.len == 0 ||
	    jid_bare_eq(&st->to, &account))
		return HOOK_PASS; /* to oneself: archived once, as received */
	enum decision d =
		decide(st->a, jid_to_str(st->a, &account, true), &st->to);
	if (d == SKIP || queue_full())
		return HOOK_PASS;
	archive(st, &account, &st->to, next_id(), false, d == ASK_ROSTER);
	return HOOK_PASS;
}

/* ---- queries ---- */

struct result {
	int64_t id;
	size_t off, len; /* in query_job.values */
};

struct query_job {
	struct mam_request req;
	const char *host, *user;
	int64_t uid;
	struct buf values;   /* the stored messages, back to back */
	struct result *res;  /* nres results, in the order read */
	size_t nres, cap;
	bool more;
	size_t count;
	bool missing;        /* a named id is not in the archive */
	int64_t first, last; /* metadata */
	bool empty;
};

static int collect(const struct mam_store_item *it, void *ud)
{
	struct query_job *q = ud;
	if (q->nres == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->res = xrealloc(q->res, q->cap * sizeof(*q->res));
	}
	q->res[q->nres++] = (struct result){ .id = it->id,
					     .off = q->values.len,
					     .len = it->len };
	return buf_append(&q->values, it->value, it->len) < 0;
}

static void query_job_free(struct query_job *q)
{
	buf_reset(&q->values);
	free(q->res);
	q->res = NULL;
}

static int query_work(struct store *store, struct iq_ctx *ctx)
{
	struct query_job *q = ctx->ud;
	struct mam_request *r = &q->req;
	flush(store);
	int rc = mam_store_user(store, q->host, q->user, false, &q->uid);
	if (rc != 0) {
		/* no archive yet: every named id is unknown */
		q->missing = r->ncheck > 0 || r->nids > 0;
		return rc < 0 ? -1 : 0;
	}
	for (size_t i = 0; i < r->ncheck; i++) {
		rc = mam_store_exists(store, q->uid, r->check[i]);
		if (rc != 0) {
			q->missing = rc == 1;
			return rc < 0 ? -1 : 0;
		}
	}
	struct arena *a = ctx->st->a;
	struct mam_store_query sq = {
		.uid = q->uid,
		.lo = r->lo,
		.hi = r->hi,
		.ids = r->ids,
		.nids = r->nids,
		.max = r->max,
		.backward = r->backward,
	};
	int64_t floor = retention_floor();
	if (floor > 0 && sq.lo < floor - 1)
		sq.lo = floor - 1;
	if (r->has_with) {
		sq.with = jid_to_str(a, &r->with, true).p;
		if (r->with.resource.len > 0)
			sq.with_res = arena_strdup(a, r->with.resource).p;
	}
	if (r->count_only)
		return mam_store_count(store, &sq, &q->count);
	rc = mam_store_query(store, &sq, collect, q, &q->more);
	if (rc == 1)
		q->missing = true;
	return rc < 0 ? -1 : 0;
}

static void add_text_child(struct arena *a, struct xml_elem *parent,
			   const char *ns, const char *name, struct str text)
{
	struct xml_elem *e = xml_add_child(a, parent, str_c(ns), str_c(name));
	if (e != NULL)
		xml_add_text(a, e, text);
}

/* <message from=account to=querier><result queryid id><forwarded>
 * <delay stamp/>MESSAGE</forwarded></result></message> */
static void send_result(const struct iq_ctx *ctx, const struct sess_ref *to,
			const struct query_job *q, const struct result *r)
{
	const struct stanza *req = ctx->st;
	struct jid account = req->from;
	account.resource = STR_NULL;
	struct stanza *m = stanza_new(STANZA_MESSAGE, &account, &req->from,
				      NULL);
	struct arena *a = m->a;
	char id[MAM_ID_LEN], stamp[XEP82_DATETIME_LEN];
	mam_id_format(r->id, id);
	xep82_format_us(r->id, stamp);
	struct xml_elem *res = xml_add_child(a, m->x, STR_LIT(NS_MAM),
					     STR_LIT("result"));
	struct xml_elem *fwd = res ? xml_add_child(a, res, STR_LIT(NS_FORWARD),
						   STR_LIT("forwarded"))
				   : NULL;
	struct xml_elem *delay = fwd ? xml_add_child(a, fwd, STR_LIT(NS_DELAY),
						     STR_LIT("delay"))
				     : NULL;
	struct xml_elem *orig = xml_parse_elem(
		a, STR(q->values.data + r->off, r->len), STR_LIT(NS_CLIENT));
	if (delay == NULL || orig == NULL) {
		log_warnx("mam: archived message %s unreadable", id);
		stanza_free(&m);
		return;
	}
	if (!str_is_null(q->req.queryid))
		xml_attr_set(a, res, "queryid", q->req.queryid);
	xml_attr_set(a, res, "id", str_c(id));
	xml_attr_set(a, delay, "stamp", str_c(stamp));
	xml_append_elem(fwd, orig);
	route_deliver(to, m);
}

static void query_done(struct iq_ctx *ctx, int status)
{
	struct query_job *q = ctx->ud; /* in the request's arena */
	enum stanza_err err = q->missing ? STANZA_ERR_ITEM_NOT_FOUND
					 : STANZA_ERR_NONE;
	if (status < 0 || err != STANZA_ERR_NONE) {
		query_job_free(q); /* before the reply frees q */
		iq_done_error(ctx, status, err);
		return;
	}
	/* Chronological order, unless the client asked for the page
	 * flipped; a backward read came newest first. */
	bool reverse = q->req.backward != q->req.flip;
	struct sess_ref to;
	struct arena *a = ctx->st->a;
	struct str bare = jid_to_str(a, &ctx->st->from, true);
	if (q->nres > 0 && sessions_find(bare, ctx->st->from.resource, &to)) {
		for (size_t k = 0; k < q->nres; k++) {
			size_t i = reverse ? q->nres - 1 - k : k;
			send_result(ctx, &to, q, &q->res[i]);
		}
	}
	struct xml_elem *fin = iq_payload_new(ctx, NS_MAM, "fin");
	struct xml_elem *set =
		xml_add_child(a, fin, STR_LIT(NS_RSM), STR_LIT("set"));
	if (!q->more && !q->req.count_only)
		xml_attr_set(a, fin, "complete", STR_LIT("true"));
	if (q->nres > 0) {
		/* RSM first/last: the page's oldest and newest. */
		size_t oldest = q->req.backward ? q->nres - 1 : 0;
		size_t newest = q->req.backward ? 0 : q->nres - 1;
		char id[MAM_ID_LEN];
		mam_id_format(q->res[oldest].id, id);
		add_text_child(a, set, NS_RSM, "first",
			       arena_strdup(a, str_c(id)));
		mam_id_format(q->res[newest].id, id);
		add_text_child(a, set, NS_RSM, "last",
			       arena_strdup(a, str_c(id)));
	}
	if (q->req.count_only) {
		char n[32];
		snprintf(n, sizeof(n), "%zu", q->count);
		add_text_child(a, set, NS_RSM, "count",
			       arena_strdup(a, str_c(n)));
	}
	query_job_free(q);
	iq_reply_result(ctx, fin);
}

/* Only the account itself reads its archive (XEP-0313 §8.1). */
static bool own_archive(const struct iq_ctx *ctx)
{
	return jid_bare_eq(&ctx->st->from, &ctx->st->to);
}

static struct query_job *job_new(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct query_job *q = arena_zalloc(st->a, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->host = arena_strdup(st->a, st->to.domain).p;
	q->user = arena_strdup(st->a, st->to.node).p;
	ctx->ud = q;
	return q;
}

static enum hook_ret mam_query(struct iq_ctx *ctx)
{
	if (!own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct query_job *q = job_new(ctx);
	if (q == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	enum stanza_err err;
	if (mam_request_parse(ctx->st->a, ctx->payload, &q->req, &err) < 0)
		return iq_reply_error(ctx, err);
	if (q->req.unknown_id)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct str key = jid_to_str(ctx->st->a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, query_work, query_done);
}

/* §4.1.5: the fields a query may use. */
static enum hook_ret mam_form(struct iq_ctx *ctx)
{
	if (!own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_MAM, "query");
	struct xml_elem *x = dataform_new(a, "form", NS_MAM);
	if (q == NULL || x == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	xml_append_elem(q, x);
	static const char *const fields[][2] = {
		{ "with", "jid-single" },     { "start", "text-single" },
		{ "end", "text-single" },     { "before-id", "text-single" },
		{ "after-id", "text-single" }, { "ids", "list-multi" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		struct xml_elem *f = dataform_add_field(
			a, x, fields[i][0], fields[i][1], NULL, NULL, 0);
		if (f != NULL && strcmp(fields[i][0], "ids") == 0) {
			/* XEP-0122: the list is open, not enumerated. */
			struct xml_elem *v = xml_add_child(
				a, f, STR_LIT("http://jabber.org/protocol/"
					      "xdata-validate"),
				STR_LIT("validate"));
			if (v != NULL) {
				xml_attr_set(a, v, "datatype",
					     STR_LIT("xs:string"));
				xml_add_child(a, v, v->ns, STR_LIT("open"));
			}
		}
	}
	return iq_reply_result(ctx, q);
}

/* §5: the first and last message of the archive. */
static int metadata_work(struct store *store, struct iq_ctx *ctx)
{
	struct query_job *q = ctx->ud;
	flush(store);
	int64_t floor = retention_floor();
	int rc = mam_store_user(store, q->host, q->user, false, &q->uid);
	if (rc == 0)
		rc = mam_store_bounds(store, q->uid, floor > 0 ? floor - 1 : 0,
				      &q->first, &q->last);
	q->empty = rc == 1;
	return rc < 0 ? -1 : 0;
}

static void add_bound(struct iq_ctx *ctx, struct xml_elem *md,
		      const char *name, int64_t id)
{
	struct arena *a = ctx->st->a;
	char ids[MAM_ID_LEN], stamp[XEP82_DATETIME_LEN];
	mam_id_format(id, ids);
	xep82_format_us(id, stamp);
	struct xml_elem *e =
		xml_add_child(a, md, STR_LIT(NS_MAM), str_c(name));
	if (e == NULL)
		return;
	xml_attr_set(a, e, "id", arena_strdup(a, str_c(ids)));
	xml_attr_set(a, e, "timestamp", arena_strdup(a, str_c(stamp)));
}

static void metadata_done(struct iq_ctx *ctx, int status)
{
	struct query_job *q = ctx->ud;
	if (iq_done_error(ctx, status, STANZA_ERR_NONE))
		return;
	struct xml_elem *md = iq_payload_new(ctx, NS_MAM, "metadata");
	if (!q->empty) {
		add_bound(ctx, md, "start", q->first);
		add_bound(ctx, md, "end", q->last);
	}
	iq_reply_result(ctx, md);
}

static enum hook_ret mam_metadata(struct iq_ctx *ctx)
{
	if (!own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	if (job_new(ctx) == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	struct str key = jid_to_str(ctx->st->a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, metadata_work, metadata_done);
}

/* ---- preferences: get and set ---- */

static enum hook_ret prefs_get(struct iq_ctx *ctx)
{
	if (!own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct str account = jid_to_str(ctx->st->a, &ctx->st->to, true);
	uv_rwlock_rdlock(&prefs_lock);
	struct xml_elem *x =
		prefs_xml(ctx->st->a, hmap_get(&prefs_cache, account));
	uv_rwlock_rdunlock(&prefs_lock);
	if (x == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	return iq_reply_result(ctx, x);
}

struct prefs_job {
	struct prefs *p; /* the new preferences (owned) */
	struct buf value;
};

static int prefs_set_work(struct store *store, struct iq_ctx *ctx)
{
	struct prefs_job *j = ctx->ud;
	const char *host = arena_strdup(ctx->st->a, ctx->st->to.domain).p;
	const char *user = arena_strdup(ctx->st->a, ctx->st->to.node).p;
	if (prefs_is_default(j->p))
		return store_kv_set(store, MAM_PREFS_TABLE, host, user, NULL,
				    0);
	return store_kv_set(store, MAM_PREFS_TABLE, host, user, j->value.data,
			    j->value.len);
}

static void prefs_set_done(struct iq_ctx *ctx, int status)
{
	struct prefs_job *j = ctx->ud; /* in the request's arena */
	buf_reset(&j->value);
	if (status < 0) {
		prefs_free(j->p); /* before the reply frees j */
		iq_done_error(ctx, status, STANZA_ERR_NONE);
		return;
	}
	struct xml_elem *x = prefs_xml(ctx->st->a, j->p);
	prefs_cache_set(jid_to_str(ctx->st->a, &ctx->st->to, true), j->p);
	iq_reply_result(ctx, x);
}

static enum hook_ret prefs_set(struct iq_ctx *ctx)
{
	if (!own_archive(ctx))
		return iq_reply_error(ctx, STANZA_ERR_FORBIDDEN);
	struct arena *a = ctx->st->a;
	struct prefs_job *j = arena_zalloc(a, sizeof(*j));
	if (j == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	j->p = prefs_read(a, ctx->payload);
	if (j->p == NULL)
		return iq_reply_error(ctx, STANZA_ERR_BAD_REQUEST);
	/* Stored as we would answer it: normalised, nothing else kept. */
	struct xml_elem *x = prefs_xml(a, j->p);
	if (x == NULL || xml_serialize(&j->value, x, STR_LIT(NS_CLIENT)) < 0) {
		prefs_free(j->p);
		buf_reset(&j->value);
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	}
	ctx->ud = j;
	struct str key = jid_to_str(a, &ctx->st->to, true);
	return iq_defer_keyed(ctx, key, prefs_set_work, prefs_set_done);
}

/* ---- start and stop ---- */

static int load_prefs(const char *host, const char *user, const void *value,
		      size_t len, void *ud)
{
	(void)ud;
	struct arena *a = arena_new(0);
	struct xml_elem *x = xml_parse_elem(a, STR(value, len),
					    STR_LIT(NS_CLIENT));
	struct prefs *p = x != NULL ? prefs_read(a, x) : NULL;
	char key[JID_TEXT_MAX];
	int n = snprintf(key, sizeof(key), "%s@%s", user, host);
	if (p == NULL || n < 0 || (size_t)n >= sizeof(key))
		log_warnx("mam: unreadable preferences of %s@%s ignored", user,
			  host);
	else
		prefs_cache_set(STR(key, (size_t)n), p);
	arena_destroy(&a);
	return 0;
}

static bool started;

static int mam_start(struct store *store, char **error_r)
{
	started = true;
	BUG_ON(uv_rwlock_init(&prefs_lock) != 0);
	BUG_ON(uv_mutex_init(&pend_lock) != 0);
	BUG_ON(uv_mutex_init(&write_lock) != 0);
	int64_t high;
	if (mam_store_high(store, &high) < 0 ||
	    mam_store_prefs_all(store, load_prefs, NULL) < 0) {
		*error_r = xstrdup("mam: cannot read the archive");
		return -1;
	}
	atomic_store(&last_id, high);
	if (server.conf->mam.retention_ms > 0)
		purge_expired(store, now_us());
	return 0;
}

static void mam_stop(struct store *store)
{
	if (!started)
		return;
	started = false;
	flush(store); /* what the shards queued last */
	uv_rwlock_wrlock(&prefs_lock);
	hmap_foreach(&prefs_cache, prefs_free_entry, NULL);
	hmap_clear(&prefs_cache);
	uv_rwlock_wrunlock(&prefs_lock);
	uv_rwlock_destroy(&prefs_lock);
	uv_mutex_destroy(&pend_lock);
	uv_mutex_destroy(&write_lock);
}

static const struct iq_route mam_iq[] = {
	{ IQ_SET, TO_BARE, NS_MAM, "query", mam_query },
	{ IQ_GET, TO_BARE, NS_MAM, "query", mam_form },
	{ IQ_GET, TO_BARE, NS_MAM, "metadata", mam_metadata },
	{ IQ_GET, TO_BARE, NS_MAM, "prefs", prefs_get },
	{ IQ_SET, TO_BARE, NS_MAM, "prefs", prefs_set },
	{ 0 },
};

static const struct hook mam_hooks[] = {
	/* After blocking (5): a refused message is not archived. */
	{ EV_MESSAGE_IN, 10, mam_in },
	{ EV_MESSAGE_OUT, 10, mam_out },
	/* Before carbons (20): the copies carry the stanza-id. */
	{ EV_MESSAGE_DELIVER, 10, mam_deliver },
	{ 0 },
};

const struct module mod_mam = {
	.name = "mam",
	.spec = "XEP-0313, XEP-0359, XEP-0441, XEP-0334",
	.iq = mam_iq,
	.account_features = (const char *const[]){ NS_MAM, NS_MAM_EXTENDED,
						   NS_SID, NULL },
	.store = &mam_schema,
	.hooks = mam_hooks,
	.start = mam_start,
	.stop = mam_stop,
};
