/*
 * brlock.c - per-shard reader slots; see brlock.h.
 */
#include "brlock.h"
#include "bug.h"

void brlock_init(struct brlock *l, unsigned nshards)
{
	l->n = nshards < SHARDS_MAX ? nshards : SHARDS_MAX;
	for (unsigned i = 0; i < l->n; i++)
		BUG_ON(uv_rwlock_init(&l->slot[i].l) != 0);
	BUG_ON(uv_rwlock_init(&l->slot[SHARDS_MAX].l) != 0);
}

void brlock_destroy(struct brlock *l)
{
	for (unsigned i = 0; i < l->n; i++)
		uv_rwlock_destroy(&l->slot[i].l);
	uv_rwlock_destroy(&l->slot[SHARDS_MAX].l);
}

/* Always in slot order, so two writers cannot deadlock. */
void brlock_wrlock(struct brlock *l)
{
	for (unsigned i = 0; i < l->n; i++)
		uv_rwlock_wrlock(&l->slot[i].l);
	uv_rwlock_wrlock(&l->slot[SHARDS_MAX].l);
}

void brlock_wrunlock(struct brlock *l)
{
	uv_rwlock_wrunlock(&l->slot[SHARDS_MAX].l);
	for (unsigned i = l->n; i-- > 0;)
		uv_rwlock_wrunlock(&l->slot[i].l);
}
