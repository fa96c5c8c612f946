/*
 * keyed.c - storage jobs serialised per key (an account's bare JID).
 *
 * Jobs with the same key run one at a time, in the order they were
 * submitted from any shard: the next one starts only after the previous
 * one's done callback returned. So everything a job's done does (routing
 * presence, pushing roster items) happens before the next job for that
 * account even reads the database, and stanzas about one account leave in
 * the order their causes arrived. Jobs of different keys queued on
 * different shards run in parallel on the thread pool (one shard's jobs
 * run in the order queued: store_queue_work). A job that only reads
 * (store_queue_keyed_read) runs in its turn on its shard instead
 * (store_queue_read, reads.c): the key's earlier jobs have committed.
 *
 * The table of busy keys is shared by all shards behind one mutex; a key
 * is in it only while a job of it is running or waiting. A job starts on
 * the loop of the shard that submitted it (its done runs there): when the
 * previous job finished elsewhere, the start is posted to that shard.
 */
#include <stdlib.h>

#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "store.h"

struct kjob {
	struct shard_msg m; /* first: posted to the origin shard to start */
	struct kjob *next;
	struct store *st;
	struct shard *origin;
	store_work_fn *work;
	store_done_fn *done;
	void *ud;
	char *key;
	size_t klen;
	bool read; /* store_queue_keyed_read */
};

struct kqueue {
	struct kjob *head, *tail; /* waiting jobs (not the running one) */
};

static uv_mutex_t klock;
static uv_once_t kinit = UV_ONCE_INIT;
static struct hmap busy; /* key -> struct kqueue */
static size_t nwaiting;  /* jobs in the queues, under klock */

static void init_lock(void)
{
	BUG_ON(uv_mutex_init(&klock) != 0);
}

/* True once the shard's loop has ended (shutdown): work queued on it
 * would never run, and its done never come. Read by the shard's own
 * thread, the only one that sets it. */
static bool loop_ended(const struct shard *s)
{
	return s->dead;
}

static void run(struct kjob *j);

/* The job for j's key after j, or NULL (the key is free again). */
static struct kjob *next_of(struct kjob *j)
{
	uv_mutex_lock(&klock);
	struct kqueue *q = hmap_get(&busy, STR(j->key, j->klen));
	BUG_ON(q == NULL);
	struct kjob *n = q->head;
	if (n != NULL) {
		nwaiting--;
		q->head = n->next;
		if (q->head == NULL)
			q->tail = NULL;
	} else {
		hmap_del(&busy, STR(j->key, j->klen));
		free(q);
	}
	uv_mutex_unlock(&klock);
	return n;
}

static int kwork(struct store *st, void *ud);
static void kdone(struct store *st, void *ud, int status);

/* Hands j's work to the pool, or to its shard's reads. */
static int queue(struct kjob *j)
{
	uv_loop_t *loop = &j->origin->loop;
	return j->read ? store_queue_read(loop, j->st, kwork, kdone, j)
		       : store_queue_work(loop, j->st, kwork, kdone, j);
}

/* Calls j's done, then starts the jobs after it that can start here and
 * now: a loop rather than recursion, so long chains of jobs without work
 * need no stack. */
static void finish(struct kjob *j, int status)
{
	for (;;) {
		j->done(j->st, j->ud, status);
		struct kjob *n = next_of(j);
		free(j->key);
		free(j);
		if (n == NULL)
			return;
		if (n->origin != shard_self || shard_self == NULL) {
			shard_post(n->origin, &n->m);
			return;
		}
		/* (in the shard's last drain, after its loop ended, the
		 * next job is cancelled like this one) */
		if (n->work != NULL && !loop_ended(n->origin) &&
		    queue(n) == 0)
			return;
		j = n;
		status = n->work != NULL ? UV_ECANCELED : 0;
	}
}

static int kwork(struct store *st, void *ud)
{
	struct kjob *j = ud;
	return j->work(st, j->ud);
}

static void kdone(struct store *st, void *ud, int status)
{
	(void)st;
	finish(ud, status);
}

/* Starts j on its origin shard (the calling thread). */
static void run(struct kjob *j)
{
	if (j->work == NULL) {
		finish(j, 0);
		return;
	}
	if (loop_ended(j->origin) || queue(j) < 0)
		finish(j, UV_ECANCELED);
}

/* A start posted from another shard. After the shard's end (shutdown)
 * the job is cancelled: done gets UV_ECANCELED, maybe on the main thread. */
static void on_start(struct shard *s, struct shard_msg *m)
{
	struct kjob *j = (struct kjob *)m;
	if (s->stopped_hook_ran && s->dead)
		finish(j, UV_ECANCELED);
	else
		run(j);
}

static int queue_keyed(struct store *st, struct str key, store_work_fn *work,
		       store_done_fn *done, void *ud, bool read)
{
	BUG_ON(shard_self == NULL || done == NULL);
	uv_once(&kinit, init_lock);
	struct kjob *j = xcalloc(1, sizeof(*j));
	*j = (struct kjob){
		.m.fn = on_start,
		.st = st,
		.origin = shard_self,
		.work = work,
		.done = done,
		.ud = ud,
		.key = str_xdup(key),
		.klen = key.len,
		.read = read,
	};
	uv_mutex_lock(&klock);
	struct kqueue *q = hmap_get(&busy, key);
	if (q != NULL) {
		if (q->tail)
			q->tail->next = j;
		else
			q->head = j;
		q->tail = j;
		nwaiting++;
		uv_mutex_unlock(&klock);
		return 0;
	}
	hmap_put(&busy, key, xcalloc(1, sizeof(*q)));
	uv_mutex_unlock(&klock);
	run(j);
	return 0;
}

int store_queue_keyed(struct store *st, struct str key, store_work_fn *work,
		      store_done_fn *done, void *ud)
{
	return queue_keyed(st, key, work, done, ud, false);
}

int store_queue_keyed_read(struct store *st, struct str key,
			   store_work_fn *work, store_done_fn *done, void *ud)
{
	return queue_keyed(st, key, work, done, ud, true);
}

bool store_keyed_busy(struct str key)
{
	uv_once(&kinit, init_lock);
	uv_mutex_lock(&klock);
	bool r = hmap_get(&busy, key) != NULL;
	uv_mutex_unlock(&klock);
	return r;
}

void store_keyed_stats(size_t *keys_r, size_t *waiting_r)
{
	uv_once(&kinit, init_lock);
	uv_mutex_lock(&klock);
	*keys_r = busy.count;
	*waiting_r = nwaiting;
	uv_mutex_unlock(&klock);
}

void store_keyed_fini(void)
{
	/* Every job has finished or been cancelled by now. */
	hmap_clear(&busy);
}
