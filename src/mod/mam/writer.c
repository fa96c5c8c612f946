/*
 * writer.c - the archive's writes: copies queued on the shards, written
 * by a pool job in batches, one transaction and one fsync per batch
 * (group commit), so archiving puts no fsync on the path of a message.
 *
 * One queue for the process. The job is started when the queue goes
 * from empty to non-empty and runs until it finds it empty. A query first
 * writes what is queued (mam_flush): batches are taken and committed
 * under one lock, so whatever was queued before the call is committed
 * when it returns, and a client always finds what it was delivered or
 * sent.
 *
 * Back-pressure: nothing is ever left out. When the queue reaches
 * mam.queue_high copies, the connection whose input is being processed
 * (conn_current: the client, server or component that sent what is being
 * archived) stops reading (conn_throttle), and so does every other one
 * that adds a copy while the queue is above the low-water mark (half the
 * high one). When the writer has taken the queue down to it, every shard
 * that stopped a connection is told through its inbox, and restarts them
 * there (conn_unthrottle_all). What a stopped connection had read already
 * is still routed and archived, so the queue passes the mark by at most
 * one read (SHARD_READ_BUF) of stanzas per connection that feeds it, and
 * by what other shards' inboxes held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/hmap.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/shard.h"
#include "../../core/xmalloc.h"
#include "../../net/conn.h"
#include "../../store/accounts.h"
#include "../../store/mam.h"
#include "../../store/shapes.h"
#include "../../xml/parser.h"
#include "../../xmpp/ns.h"
#include "../roster/roster-private.h"
#include "mam-private.h"
#include "request.h"

#define BATCH_MAX 5000       /* copies per transaction */
#define JOB_BUDGET_US 100000 /* writing time of one pool job */
#define PURGE_EVERY_US (3600LL * 1000000)

struct pending {
	struct pending *next;
	int64_t id;
	bool check_account; /* no available resource: does it exist? */
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

/* Back-pressure, under pend_lock. */
static bool throttling;         /* an episode: from high down to low */
static uint64_t throttle_shards; /* bit i: shard i stopped a connection */
static int64_t throttle_since_us;
static unsigned long episodes;

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

static size_t queue_high(void)
{
	return server.conf->mam.queue_high;
}

/* Where an episode ends: half the high mark, so a resumed sender has
 * room before the next one. */
static size_t queue_low(void)
{
	return queue_high() / 2;
}

static void on_resume(struct shard *s, struct shard_msg *m)
{
	free(m);
	if (!s->stopped_hook_ran)
		conn_unthrottle_all(s);
}

/* Tells shard s (from any thread) to restart the connections it
 * stopped. */
static void post_resume(struct shard *s)
{
	struct shard_msg *m = xmalloc(sizeof(*m));
	m->fn = on_resume;
	shard_post(s, m);
}

/* Takes up to BATCH_MAX queued copies, oldest first; ends a
 * back-pressure episode once what is left is down to the low mark. */
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
	uint64_t wake = 0;
	size_t left = pend_count;
	int64_t since = 0;
	if (throttling && pend_count <= queue_low()) {
		throttling = false;
		wake = throttle_shards;
		throttle_shards = 0;
		since = throttle_since_us;
	}
	uv_mutex_unlock(&pend_lock);
	if (since != 0) {
		log_info("mam: the archive writer caught up (%zu queued); "
			 "reading resumes after %.2f s", left,
			 (double)(mam_now_us() - since) / 1e6);
		for (unsigned i = 0; i < server.nshards && wake != 0; i++, wake >>= 1)
			if (wake & 1)
				post_resume(&server.shards[i]);
	}
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
		int rc = roster_item_load(st, p->host, p->user, p->with, a,
					  &it);
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
	int64_t floor = mam_retention_floor();
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
/* Every so often (mam.retention), under write_lock. */
static void maybe_purge(struct store *st)
{
	uint64_t r = server.conf->mam.retention_ms;
	int64_t every = r > 0 && (int64_t)r * 1000 < PURGE_EVERY_US
				? (int64_t)r * 1000
				: PURGE_EVERY_US;
	int64_t now = mam_now_us();
	if (r > 0 && now - last_purge_us >= every)
		purge_expired(st, now);
}

void mam_flush(struct store *st)
{
	uv_mutex_lock(&write_lock);
	struct pending *b;
	while ((b = take_batch()) != NULL)
		write_batch(st, b);
	maybe_purge(st);
	uv_mutex_unlock(&write_lock);
}

/*
 * A job writes batches for up to JOB_BUDGET_US, then its done queues the
 * next one behind whatever else the pool has to do meanwhile (logins,
 * roster jobs, queries), rather than the writer holding a pool thread,
 * and the connection between its transactions, for as long as messages
 * keep coming. Within the budget, batches follow each other at once:
 * each one's fsync is paid once for up to BATCH_MAX copies.
 */
static int writer_work(struct store *st, void *ud)
{
	(void)ud;
	int64_t until = mam_now_us() + JOB_BUDGET_US;
	uv_mutex_lock(&write_lock);
	struct pending *b;
	while ((b = take_batch()) != NULL) {
		write_batch(st, b);
		if (mam_now_us() >= until)
			break;
	}
	maybe_purge(st);
	uv_mutex_unlock(&write_lock);
	return 0;
}

static void writer_done(struct store *st, void *ud, int status)
{
	(void)ud;
	uv_mutex_lock(&pend_lock);
	bool more = pend_head != NULL && status != UV_ECANCELED;
	writer_queued = more;
	uv_mutex_unlock(&pend_lock);
	if (more && store_queue_work(&shard_self->loop, st, writer_work,
				     writer_done, NULL) < 0) {
		/* Shutting down: mam_stop() writes what is left. */
		uv_mutex_lock(&pend_lock);
		writer_queued = false;
		uv_mutex_unlock(&pend_lock);
	}
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
	/* Past the high mark, or within an episode: the sender stops. */
	struct conn *from = conn_current();
	bool begin = false, stop = false;
	size_t queued = pend_count;
	if (!throttling && pend_count >= queue_high()) {
		throttling = begin = true;
		throttle_since_us = mam_now_us();
		episodes++;
	}
	if (throttling && from != NULL) {
		throttle_shards |= UINT64_C(1) << shard_self->id;
		stop = true;
	}
	unsigned long nth = episodes;
	uv_mutex_unlock(&pend_lock);
	if (begin)
		log_warnx("mam: the archive writer is %zu messages behind; "
			  "streams that add to it stop reading until it is "
			  "down to %zu (episode %lu)", queued, queue_low(),
			  nth);
	if (stop)
		conn_throttle(from);
	if (start && store_queue_work(&shard_self->loop, server.store,
				      writer_work, writer_done, NULL) < 0) {
		/* Shutting down: mam_stop() writes what is left. */
		uv_mutex_lock(&pend_lock);
		writer_queued = false;
		uv_mutex_unlock(&pend_lock);
	}
}

/* The copy's serialized form must parse back. */
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

/* The copy as it is queued (serialized, checked to parse back), or
 * NULL. */
static struct pending *copy_new(const struct xml_elem *x, struct str host,
				struct str user, struct str with,
				struct str with_res, int64_t id)
{
	struct buf b = { 0 };
	if (xml_serialize(&b, x, STR_LIT(NS_CLIENT)) < 0 ||
	    (!tree_small(x, 1) && !xml_elem_readable(STR(b.data, b.len)))) {
		buf_reset(&b);
		return NULL;
	}
	struct pending *p = pending_new(host, user, with, with_res, &b);
	buf_reset(&b);
	p->id = id;
	return p;
}

void mam_archive(const struct stanza *st, const struct jid *account,
		 const struct jid *contact, int64_t id, bool check_account,
		 bool check_roster)
{
	struct arena *a = arena_new(0);
	struct pending *p = copy_new(st->x, account->domain, account->node,
				     jid_to_str(a, contact, true),
				     contact->resource, id);
	arena_destroy(&a);
	if (p == NULL)
		return;
	p->check_account = check_account;
	p->check_roster = check_roster;
	enqueue(p);
}

void mam_archive_elem(const struct xml_elem *x, struct str host,
		      struct str user, struct str with, struct str with_res,
		      int64_t id)
{
	struct pending *p = copy_new(x, host, user, with, with_res, id);
	if (p != NULL)
		enqueue(p);
}

void mam_purge(struct store *st)
{
	uv_mutex_lock(&write_lock);
	purge_expired(st, mam_now_us());
	uv_mutex_unlock(&write_lock);
}

void mam_writer_start(void)
{
	BUG_ON(uv_mutex_init(&pend_lock) != 0);
	BUG_ON(uv_mutex_init(&write_lock) != 0);
}

void mam_writer_stop(struct store *st)
{
	mam_flush(st); /* what the shards queued last */
	uv_mutex_destroy(&pend_lock);
	uv_mutex_destroy(&write_lock);
}
