/*
 * test_shard.c - posts between shards: order, and when a loop iteration's
 * records reach the other shard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/shard.h"

#define REC_LEN 100

struct seq_msg {
	struct shard_msg m;
	unsigned seq;
};

static unsigned posts;               /* how many shard 0 makes */
static atomic_uint received;         /* on shard 1, in order so far */
static atomic_bool out_of_order;
static bool early;                   /* shard 1 got some during the burst */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void got(unsigned seq)
{
	if (seq != atomic_load(&received))
		atomic_store(&out_of_order, true);
	atomic_fetch_add(&received, 1);
}

static void on_rec(struct shard *s, void *p, size_t len)
{
	(void)s;
	unsigned seq;
	memcpy(&seq, p, sizeof(seq));
	got(len == REC_LEN ? seq : UINT32_MAX); /* (no cmocka off main) */
}

static void on_msg(struct shard *s, struct shard_msg *m)
{
	(void)s;
	struct seq_msg *sm = (struct seq_msg *)m;
	got(sm->seq);
	free(sm);
}

/* Shard 0, in one go (its start hook runs before its loop, like one
 * iteration): records to shard 1 with a message every 100, then it waits
 * up to 2 s for shard 1 to get any while it has not returned. */
static void start(struct shard *s)
{
	if (s->id != 0)
		return;
	struct shard *to = &s->all[1];
	for (unsigned i = 0; i < posts; i++) {
		void *p = i % 100 == 50 ? NULL
					: shard_post_record(to, on_rec, REC_LEN);
		if (p != NULL) {
			memset(p, 0, REC_LEN);
			memcpy(p, &i, sizeof(i));
			continue;
		}
		struct seq_msg *m = calloc(1, sizeof(*m));
		if (m == NULL)
			abort();
		m->m.fn = on_msg;
		m->seq = i;
		shard_post(to, &m->m);
	}
	uint64_t end = now_ms() + 2000;
	while (atomic_load(&received) == 0 && now_ms() < end)
		;
	early = atomic_load(&received) > 0;
}

static void nothing(struct shard *s)
{
	(void)s;
}

static void run(unsigned n)
{
	posts = n;
	atomic_store(&received, 0);
	atomic_store(&out_of_order, false);
	early = false;
	struct shard *shards = shards_start(2, start, nothing, nothing);
	uint64_t end = now_ms() + 10000;
	while (atomic_load(&received) < n && now_ms() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	shards_stop(shards, 2);
	assert_int_equal(atomic_load(&received), n);
	assert_false(atomic_load(&out_of_order));
}

/* Less than a batch (64 KiB) in an iteration goes over at its tick, after
 * the iteration: nothing arrives while it runs. */
static void small_iteration_goes_at_the_tick(void **state)
{
	(void)state;
	run(200); /* about 23 KiB of records */
	assert_false(early);
}

/* An iteration that makes megabytes of records hands each full batch over
 * at once, in order with its messages: the other shard works on them
 * while the iteration goes on. */
static void full_batches_go_at_once(void **state)
{
	(void)state;
	run(50000); /* about 5.6 MiB */
	assert_true(early);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_iteration_goes_at_the_tick),
		cmocka_unit_test(full_batches_go_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
