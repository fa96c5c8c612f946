/*
 * hmap.c - chained hash map; see hmap.h. The hash is xxHash's XXH3, inlined:
 * a message costs four to five lookups by JID (the session, the sender's
 * other sessions for carbons, both block lists), and FNV-1a, one multiply
 * per byte in a chain, was 3 % of a message's server CPU. (Keys come from
 * peers, so a keyed hash would harden this against collision floods; the
 * session table only holds authenticated users' JIDs, which bounds the
 * exposure.)
 */
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hmap.h"
#include "xmalloc.h"

struct hmap_entry {
	struct hmap_entry *next;
	uint64_t hash;
	void *value;
	size_t klen;
	char key[];
};

uint64_t hash_bytes(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

static struct hmap_entry **find(const struct hmap *m, struct str key,
				uint64_t h)
{
	struct hmap_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->klen == key.len &&
		    memcmp((*pp)->key, key.p, key.len) == 0)
			return pp;
	return pp;
}

void *hmap_get(const struct hmap *m, struct str key)
{
	if (m->count == 0)
		return NULL;
	struct hmap_entry *e = *find(m, key, hash_bytes(key.p, key.len));
	return e ? e->value : NULL;
}

static void grow(struct hmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
	struct hmap_entry **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i];
		while (e != NULL) {
			struct hmap_entry *next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

void *hmap_put(struct hmap *m, struct str key, void *value)
{
	if (m->count >= m->nbuckets)
		grow(m);
	uint64_t h = hash_bytes(key.p, key.len);
	struct hmap_entry **pp = find(m, key, h);
	if (*pp != NULL) {
		void *old = (*pp)->value;
		(*pp)->value = value;
		return old;
	}
	struct hmap_entry *e = xmalloc(sizeof(*e) + key.len);
	e->next = NULL;
	e->hash = h;
	e->value = value;
	e->klen = key.len;
	memcpy(e->key, key.p, key.len);
	*pp = e;
	m->count++;
	return NULL;
}

void *hmap_del(struct hmap *m, struct str key)
{
	if (m->count == 0)
		return NULL;
	struct hmap_entry **pp = find(m, key, hash_bytes(key.p, key.len));
	struct hmap_entry *e = *pp;
	if (e == NULL)
		return NULL;
	void *v = e->value;
	*pp = e->next;
	free(e);
	m->count--;
	return v;
}

void hmap_clear(struct hmap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i];
		while (e != NULL) {
			struct hmap_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = m->count = 0;
}

void hmap_foreach(const struct hmap *m, hmap_iter_fn *fn, void *ud)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct hmap_entry *e = m->buckets[i]; e; e = e->next)
			fn(STR(e->key, e->klen), e->value, ud);
}
