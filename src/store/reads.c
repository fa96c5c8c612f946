/*
 * reads.c - store jobs that only read, run by the shard that queued them.
 *
 * A job on the thread pool costs two hand-overs between threads: a pool
 * thread woken for it, its shard woken for the done callback. A login
 * made five such round trips for reads of a few rows each (credentials,
 * the vCard's avatar hash, the roster for the roster get, for the initial
 * presence and for the unavailable one), and the hand-overs cost more
 * than the reads (docs/internals/performance.md, "Reads on the shards").
 * So a job that only reads a little of one account runs on its shard,
 * at the end of the loop iteration that queued it (the tick: after I/O,
 * before output is flushed), through a SQLite connection of the shard's
 * own (store_reader). WAL lets it read while the pool's connection
 * writes: it never waits for a lock, and sees what was committed when
 * each of its statements began. Writes, and anything that may read much
 * (archive queries) or compute long (PBKDF2), stay on the pool.
 *
 * What it may cost the shard is the read itself: microseconds for pages
 * in SQLite's or the kernel's cache, a disk read for pages in neither.
 */
#include <stdlib.h>

#include "../core/bug.h"
#include "../core/shard.h"
#include "../core/stats.h"
#include "../core/xmalloc.h"
#include "store.h"

struct rjob {
	struct rjob *next;
	struct store *st;
	store_work_fn *work;
	store_done_fn *done;
	void *ud;
};

/* This shard thread's queue of reads for its next tick. */
static _Thread_local struct {
	struct rjob *head, **tail;
} rq;

int store_queue_read(uv_loop_t *loop, struct store *st, store_work_fn *work,
		     store_done_fn *done, void *ud)
{
	BUG_ON(work == NULL || done == NULL);
	struct shard *s = shard_self;
	if (s == NULL || loop != &s->loop || !shard_ticking(s) ||
	    store_reader(st) == NULL)
		return store_queue_work(loop, st, work, done, ud);
	struct rjob *j = xmalloc(sizeof(*j));
	*j = (struct rjob){
		.st = st, .work = work, .done = done, .ud = ud,
	};
	if (rq.head == NULL)
		rq.tail = &rq.head;
	*rq.tail = j;
	rq.tail = &j->next;
	shard_want_tick(s);
	return 0;
}

void store_reads_run(void)
{
	while (rq.head != NULL) {
		struct rjob *j = rq.head;
		rq.head = j->next;
		/* A job queued before the shard stopped ticking: its reader
		 * is still there (it was when the job was queued). */
		int status = store_run(store_reader(j->st), j->work, j->ud);
		STATS_ADD(shard_reads, 1);
		j->done(j->st, j->ud, status);
		free(j);
	}
}
