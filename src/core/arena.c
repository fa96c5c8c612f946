/*
 * arena.c - bump allocator in chunks; see arena.h.
 *
 * Chunks double in size from ARENA_FIRST_CHUNK up to ARENA_MAX_CHUNK; a
 * request larger than a chunk gets a chunk of its own. The cap counts bytes
 * handed out, so it tracks input size closely whatever the chunking.
 *
 * Each thread keeps up to ARENA_CACHE first chunks that the arenas it
 * destroyed gave back. Most arenas live for one stanza and never need more
 * than their first chunk, and a fresh 2 KiB chunk is past glibc's
 * per-thread cache (tcache, up to 1 KiB): every stanza cost a malloc from
 * the heap's bins, which also made glibc consolidate its fast bins (4 % of
 * a message's server CPU with frees). Chunks move between threads with
 * their arenas; a thread that ends frees its cache (thread_exit.h).
 * Under AddressSanitizer there is no cache, so that every
 * chunk is freed where ASan can see a later use.
 */
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "bug.h"
#include "thread_exit.h"
#include "xmalloc.h"

#define ARENA_FIRST_CHUNK 2048
#define ARENA_MAX_CHUNK (64 * 1024)
#define ARENA_ALIGN alignof(max_align_t)

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_CACHE 0
#endif
#endif
#ifndef ARENA_CACHE
#define ARENA_CACHE 32 /* 64 KiB per thread at most */
#endif

struct arena_chunk {
	struct arena_chunk *prev;
	size_t size, used;
	alignas(max_align_t) unsigned char data[];
};

const unsigned arena_cache_max = ARENA_CACHE;

static _Thread_local struct {
	struct arena_chunk *head; /* linked by prev */
	unsigned n;
} cache;

static void cache_free(void)
{
	while (cache.head != NULL) {
		struct arena_chunk *c = cache.head;
		cache.head = c->prev;
		free(c);
	}
	cache.n = 0;
}

static _Thread_local struct thread_exit cache_exit = { .fn = cache_free };

/* Keeps c for the next arena if it is a first chunk and there is room. */
static bool cache_put(struct arena_chunk *c)
{
	if (ARENA_CACHE == 0 || c->size != ARENA_FIRST_CHUNK ||
	    cache.n + 1 > ARENA_CACHE)
		return false;
	if (!thread_exit_arm(&cache_exit))
		return false;
	c->prev = cache.head;
	cache.head = c;
	cache.n++;
	return true;
}

unsigned arena_cached(void)
{
	return cache.n;
}

static struct arena_chunk *cache_take(void)
{
	struct arena_chunk *c = cache.head;
	if (c != NULL) {
		cache.head = c->prev;
		cache.n--;
	}
	return c;
}

struct arena *arena_new(size_t cap)
{
	struct arena *a = xcalloc(1, sizeof(*a));
	a->cap = cap;
	return a;
}

void arena_destroy(struct arena **ap)
{
	struct arena *a = *ap;
	if (a == NULL)
		return;
	struct arena_chunk *c = a->chunk;
	while (c != NULL) {
		struct arena_chunk *prev = c->prev;
		if (!cache_put(c))
			free(c);
		c = prev;
	}
	free(a);
	*ap = NULL;
}

static struct arena_chunk *chunk_new(struct arena *a, size_t need)
{
	size_t size = a->chunk ? a->chunk->size * 2 : ARENA_FIRST_CHUNK;
	if (size > ARENA_MAX_CHUNK)
		size = ARENA_MAX_CHUNK;
	if (size < need)
		size = need;
	struct arena_chunk *c = NULL;
	if (size == ARENA_FIRST_CHUNK)
		c = cache_take();
	if (c == NULL)
		c = xmalloc(sizeof(*c) + size);
	c->size = size;
	c->used = 0;
	c->prev = a->chunk;
	a->chunk = c;
	return c;
}

void *arena_alloc(struct arena *a, size_t size)
{
	if (a->cap && size > a->cap)
		return NULL;
	size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	BUG_ON(rounded < size);
	if (a->cap && (rounded > a->cap || a->used > a->cap - rounded))
		return NULL;
	struct arena_chunk *c = a->chunk;
	if (c == NULL || c->size - c->used < rounded)
		c = chunk_new(a, rounded);
	void *p = c->data + c->used;
	c->used += rounded;
	a->used += rounded;
	return p;
}

void *arena_zalloc(struct arena *a, size_t size)
{
	void *p = arena_alloc(a, size);
	if (p)
		memset(p, 0, size);
	return p;
}

struct str arena_strdup(struct arena *a, struct str s)
{
	if (s.p == NULL)
		return STR_NULL;
	char *p = arena_alloc(a, s.len + 1);
	if (p == NULL)
		return STR_NULL;
	if (s.len)
		memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	return STR(p, s.len);
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	BUG_ON(n < 0);
	char *p = arena_alloc(a, (size_t)n + 1);
	if (p == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}
