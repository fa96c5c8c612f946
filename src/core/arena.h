/*
 * arena.h - bump allocator for one unit of work (one stanza, one request).
 *
 * Nothing in an arena is freed on its own; arena_destroy() frees it all in
 * one call (nginx request pool, jabberd2 pool). An arena may have a cap:
 * arena_alloc() then returns NULL once the cap would be passed, and that is
 * the peer's fault (a policy violation), not a bug. Uncapped arenas abort on
 * out-of-memory like xmalloc.
 *
 * An arena is owned by exactly one thread at a time; ownership moves with
 * the stanza between shards.
 */
#ifndef STANZAD_ARENA_H
#define STANZAD_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "str.h"

struct arena_chunk;

struct arena {
	struct arena_chunk *chunk; /* current chunk; older ones linked behind */
	size_t used;               /* bytes handed out, all chunks */
	size_t cap;                /* 0: uncapped */
};

/* First chunks each thread keeps for its next arenas (arena.c); 0 under
 * AddressSanitizer. */
extern const unsigned arena_cache_max;
/* How many the calling thread holds now (for tests). */
unsigned arena_cached(void);

/* Creates a heap-allocated arena; cap 0 means uncapped. Free with
 * arena_destroy(). */
struct arena *arena_new(size_t cap);
/* Frees every allocation and the arena itself; sets *ap to NULL. NULL ok. */
void arena_destroy(struct arena **ap);

/* Returns size bytes aligned for any type, or NULL if a capped arena would
 * pass its cap. Memory is not zeroed. */
void *arena_alloc(struct arena *a, size_t size);
/* As arena_alloc, zeroed. */
void *arena_zalloc(struct arena *a, size_t size);
/* Copies the view into the arena with a trailing NUL (not counted in len).
 * Returns STR_NULL with .p NULL on cap; a NULL input view gives STR_NULL. */
struct str arena_strdup(struct arena *a, struct str s);
/* printf into the arena; returns NULL on cap. */
char *arena_printf(struct arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
