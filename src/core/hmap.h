/*
 * hmap.h - a hash map from byte-string keys to pointers.
 *
 * Separate chaining with power-of-two bucket arrays that double at a load
 * factor of 1. The map copies keys (one allocation per entry, key bytes
 * inline) and never owns values. Not thread-safe: each map has one owner
 * (a shard) or an outside lock (the session table).
 */
#ifndef STANZAD_HMAP_H
#define STANZAD_HMAP_H

#include <stddef.h>
#include <stdint.h>

#include "str.h"

struct hmap_entry;

struct hmap {
	struct hmap_entry **buckets;
	size_t nbuckets; /* 0 or a power of two */
	size_t count;
};

/* Returns the value for key, or NULL. */
void *hmap_get(const struct hmap *m, struct str key);
/* Sets key to value (value must not be NULL); returns the previous value or
 * NULL. */
void *hmap_put(struct hmap *m, struct str key, void *value);
/* Removes key; returns its value or NULL. */
void *hmap_del(struct hmap *m, struct str key);
/* Frees the map's memory (not the values). The map is empty afterwards. */
void hmap_clear(struct hmap *m);

/* Calls fn for every entry; fn must not change the map. */
typedef void hmap_iter_fn(struct str key, void *value, void *ud);
void hmap_foreach(const struct hmap *m, hmap_iter_fn *fn, void *ud);

/* Keys that are 64-bit ids. */
static inline struct str hmap_u64(const uint64_t *id)
{
	return STR(id, sizeof(*id));
}

uint64_t hash_bytes(const void *p, size_t len);

#endif
