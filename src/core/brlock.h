/*
 * brlock.h - a read-write lock whose readers on different shards never
 * write the same cache line.
 *
 * A uv_rwlock_t keeps its reader count in one word: with two shards, every
 * read lock and unlock moves that cache line between the cores. Tables
 * read on every stanza and changed rarely (the session table, block lists,
 * archive preferences) use this lock instead: one rwlock per shard, each
 * on its own cache line, plus one shared by every other thread (main,
 * pool). A reader takes only its own thread's; a writer takes them all, in
 * order. Reads stay as cheap as an uncontended lock; a write costs one
 * lock per shard.
 */
#ifndef STANZAD_BRLOCK_H
#define STANZAD_BRLOCK_H

#include <uv.h>

#include "shard.h"

struct brlock_slot {
	_Alignas(64) uv_rwlock_t l;
};

struct brlock {
	unsigned n; /* shard slots in use; slot[SHARDS_MAX] is the shared one */
	struct brlock_slot slot[SHARDS_MAX + 1];
};

/* For nshards shards (slots of shards with a higher id, and of other
 * threads, are the shared one). */
void brlock_init(struct brlock *l, unsigned nshards);
void brlock_destroy(struct brlock *l);

static inline uv_rwlock_t *brlock_mine(struct brlock *l)
{
	const struct shard *s = shard_self;
	return &l->slot[s != NULL && s->id < l->n ? s->id : SHARDS_MAX].l;
}

static inline void brlock_rdlock(struct brlock *l)
{
	uv_rwlock_rdlock(brlock_mine(l));
}

static inline void brlock_rdunlock(struct brlock *l)
{
	uv_rwlock_rdunlock(brlock_mine(l));
}

void brlock_wrlock(struct brlock *l);
void brlock_wrunlock(struct brlock *l);

#endif
