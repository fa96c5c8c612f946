/*
 * shard.c - shard threads, their loops and inboxes; see shard.h.
 *
 * Shutdown: shards_stop() sets stopping and wakes each shard; the shard runs
 * stop_hook (which closes listeners and asks connections to end) and
 * closes its wakeup handle; the check handle (the tick) goes on flushing
 * the connections' last output and is closed once none is left, which ends
 * the loop.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bug.h"
#include "log.h"
#include "shard.h"
#include "xmalloc.h"

_Thread_local struct shard *shard_self;

static shard_hook_fn *start_hook, *stop_hook, *tick_hook;

static void drain_inbox(struct shard *s)
{
	uv_mutex_lock(&s->lock);
	struct shard_msg *m = s->inbox_head;
	s->inbox_head = NULL;
	s->inbox_tail = &s->inbox_head;
	bool stop = s->stopping;
	uv_mutex_unlock(&s->lock);
	while (m != NULL) {
		struct shard_msg *next = m->next;
		m->fn(s, m);
		m = next;
	}
	if (stop && !s->stopped_hook_ran) {
		s->stopped_hook_ran = true;
		stop_hook(s);
		uv_close((uv_handle_t *)&s->wakeup, NULL);
		/* The check handle stays until the last connection is gone:
		 * it flushes their final stream errors. */
		shard_conn_removed(s);
	}
}

static void on_wakeup(uv_async_t *h)
{
	drain_inbox(h->data);
}

/* Appends the list first..*last to s's inbox and wakes s. */
static void inbox_put(struct shard *s, struct shard_msg *first,
		      struct shard_msg **last)
{
	uv_mutex_lock(&s->lock);
	*s->inbox_tail = first;
	s->inbox_tail = last;
	/* Once the thread has left its loop the wakeup handle is gone;
	 * shards_stop() hands what arrives later to its handlers. */
	if (!s->dead)
		uv_async_send(&s->wakeup);
	uv_mutex_unlock(&s->lock);
}

/* ---- records: small posts packed into one buffer per receiver ---- */

struct rec_hdr {
	shard_rec_fn *fn;
	size_t len; /* of the payload that follows, before padding */
};

/* A sealed buffer of records, posted as one message. */
struct rec_batch {
	struct shard_msg m;
	char *data;
	size_t len;
};

/* A batch this full goes over at the next record for its shard rather
 * than at the tick (shard_post_record). */
#define REC_BATCH (64 * 1024)
#define REC_ALIGN 8
#define REC_PAD(n) (((n) + REC_ALIGN - 1) & ~(size_t)(REC_ALIGN - 1))

static void on_rec_batch(struct shard *s, struct shard_msg *m)
{
	struct rec_batch *b = (struct rec_batch *)m;
	for (size_t at = 0; at < b->len;) {
		struct rec_hdr *h = (struct rec_hdr *)(b->data + at);
		void *p = b->data + at + sizeof(*h);
		h->fn(s, p, h->len);
		at += sizeof(*h) + REC_PAD(h->len);
	}
	free(b->data);
	free(b);
}

static void outbox_append(struct shard *self, unsigned to,
			  struct shard_msg *m);

/* Turns the open record buffer for shard `to` into a message in the
 * outbox, behind what was posted before it. */
static void rec_seal(struct shard *self, unsigned to)
{
	struct buf *r = &self->rec[to];
	struct rec_batch *b = xmalloc(sizeof(*b));
	b->m.fn = on_rec_batch;
	b->m.next = NULL;
	b->data = r->data;
	b->len = r->len;
	self->out_recs[to] += r->len;
	*r = (struct buf){ 0 };
	self->rec_mask &= ~(UINT64_C(1) << to);
	outbox_append(self, to, &b->m);
}

/* Hands everything for shard `to` over now, the open record buffer
 * sealed behind the posts before it. */
static void outbox_flush_to(struct shard *self, unsigned to)
{
	uint64_t bit = UINT64_C(1) << to;
	if (self->rec_mask & bit)
		rec_seal(self, to);
	if (self->out_mask & bit) {
		inbox_put(&self->all[to], self->out_head[to],
			  self->out_tail[to]);
		self->out_head[to] = NULL;
		self->out_mask &= ~bit;
	}
	self->out_recs[to] = 0;
}

void *shard_post_record(struct shard *s, shard_rec_fn *fn, size_t len)
{
	struct shard *self = shard_self;
	if (self == NULL || !self->outbox_open || s == self)
		return NULL;
	struct buf *r = &self->rec[s->id];
	size_t need = sizeof(struct rec_hdr) + REC_PAD(len);
	/* 64 KiB of records for s go over now, with the posts among them
	 * (the record before this one is complete: a record is only written
	 * until the next post). Under load one loop iteration reads
	 * megabytes: at the tick, the other shard would get nothing of it
	 * until the iteration ends, in one buffer grown (and copied) to
	 * megabytes by doubling. */
	if (r->len + self->out_recs[s->id] > 0 &&
	    r->len + self->out_recs[s->id] + need > REC_BATCH)
		outbox_flush_to(self, s->id);
	if (r->len == 0 && buf_reserve(r, need > 16384 ? need : 16384) < 0)
		return NULL;
	if (buf_reserve(r, need) < 0)
		return NULL;
	struct rec_hdr *h = (struct rec_hdr *)(r->data + r->len);
	h->fn = fn;
	h->len = len;
	r->len += need;
	self->rec_mask |= UINT64_C(1) << s->id;
	shard_want_tick(self);
	return h + 1;
}

/* Hands the calling shard's collected posts to their shards. */
static void outbox_flush(struct shard *self)
{
	for (uint64_t m; (m = self->rec_mask | self->out_mask) != 0;)
		outbox_flush_to(self, (unsigned)__builtin_ctzll(m));
}

void shard_post(struct shard *s, struct shard_msg *m)
{
	m->next = NULL;
	struct shard *self = shard_self;
	if (self == NULL || !self->outbox_open) {
		inbox_put(s, m, &m->next);
		return;
	}
	/* Records posted before m go before it. */
	if (self->rec_mask & (UINT64_C(1) << s->id))
		rec_seal(self, s->id);
	outbox_append(self, s->id, m);
}

/* Under load a loop iteration makes many posts to the same shard
 * (deliveries to its sessions): they go over in one hand-over at this
 * iteration's tick, which the idle handle makes sure comes without
 * waiting for I/O. */
static void outbox_append(struct shard *self, unsigned to,
			  struct shard_msg *m)
{
	if (self->out_head[to] == NULL) {
		self->out_head[to] = m;
		self->out_mask |= UINT64_C(1) << to;
	} else {
		*self->out_tail[to] = m;
	}
	self->out_tail[to] = &m->next;
	shard_want_tick(self);
}

static void on_check(uv_check_t *h)
{
	struct shard *s = h->data;
	tick_hook(s);
	outbox_flush(s);
	uv_idle_stop(&s->idle);
	/* The last connection went while a tick was wanted. */
	shard_conn_removed(s);
}

static void on_idle(uv_idle_t *h)
{
	(void)h; /* its being active is what matters */
}

void shard_want_tick(struct shard *s)
{
	if (!uv_is_closing((uv_handle_t *)&s->idle))
		uv_idle_start(&s->idle, on_idle);
}

bool shard_ticking(const struct shard *s)
{
	return !uv_is_closing((const uv_handle_t *)&s->check);
}

void shard_conn_removed(struct shard *s)
{
	/* A check handle alone would leave the loop blocked in poll, so the
	 * last connection to go closes it, unless a tick is still wanted
	 * (work queued for it, such as store reads): then the tick does,
	 * after that work. */
	if (s->stopped_hook_ran && s->conns.count == 0 &&
	    !uv_is_active((uv_handle_t *)&s->idle) &&
	    !uv_is_closing((uv_handle_t *)&s->check)) {
		/* No more ticks: posts from now on go straight over. */
		s->outbox_open = false;
		outbox_flush(s);
		uv_close((uv_handle_t *)&s->check, NULL);
		uv_close((uv_handle_t *)&s->idle, NULL);
	}
}

static void shard_main(void *arg)
{
	struct shard *s = arg;
	shard_self = s;
	log_set_thread_name(s->name);
	s->outbox_open = true;
	start_hook(s);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	s->outbox_open = false;
	outbox_flush(s);
	uv_mutex_lock(&s->lock);
	s->dead = true;
	uv_mutex_unlock(&s->lock);
	/* Messages that raced with the stop are freed by their handlers. */
	drain_inbox(s);
	buf_reset(&s->scratch);
	int r = uv_loop_close(&s->loop);
	if (r != 0)
		log_warnx("shard %u: loop closed with handles open", s->id);
}

struct shard *shards_start(unsigned n, shard_hook_fn *start,
			   shard_hook_fn *stop, shard_hook_fn *tick)
{
	start_hook = start;
	stop_hook = stop;
	tick_hook = tick;
	struct shard *shards = xcalloc(n, sizeof(*shards));
	for (unsigned i = 0; i < n; i++) {
		struct shard *s = &shards[i];
		s->id = i;
		s->all = shards;
		snprintf(s->name, sizeof(s->name), "s%u", i);
		BUG_ON(uv_loop_init(&s->loop) != 0);
		BUG_ON(uv_mutex_init(&s->lock) != 0);
		s->inbox_tail = &s->inbox_head;
		BUG_ON(uv_async_init(&s->loop, &s->wakeup, on_wakeup) != 0);
		s->wakeup.data = s;
		BUG_ON(uv_check_init(&s->loop, &s->check) != 0);
		s->check.data = s;
		BUG_ON(uv_check_start(&s->check, on_check) != 0);
		BUG_ON(uv_idle_init(&s->loop, &s->idle) != 0);
		s->idle.data = s;
		s->loop.data = s;
	}
	for (unsigned i = 0; i < n; i++)
		BUG_ON(uv_thread_create(&shards[i].thread, shard_main,
					&shards[i]) != 0);
	return shards;
}

void shards_stop(struct shard *shards, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uv_mutex_lock(&shards[i].lock);
		shards[i].stopping = true;
		uv_mutex_unlock(&shards[i].lock);
		uv_async_send(&shards[i].wakeup);
	}
	for (unsigned i = 0; i < n; i++)
		uv_thread_join(&shards[i].thread);
	/* Posted after a shard's thread ended (by a shard that ended later):
	 * the handlers see stopped_hook_ran and only free. */
	/* Handlers may post again (a cancelled job starting the next one):
	 * drain until every inbox stays empty. */
	for (bool more = true; more;) {
		more = false;
		for (unsigned i = 0; i < n; i++) {
			uv_mutex_lock(&shards[i].lock);
			bool pending = shards[i].inbox_head != NULL;
			uv_mutex_unlock(&shards[i].lock);
			if (pending) {
				drain_inbox(&shards[i]);
				more = true;
			}
		}
	}
	for (unsigned i = 0; i < n; i++) {
		uv_mutex_destroy(&shards[i].lock);
		hmap_clear(&shards[i].conns);
	}
	free(shards);
}
