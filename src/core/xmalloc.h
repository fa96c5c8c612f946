/*
 * xmalloc.h - allocation that aborts instead of failing (OpenSMTPD).
 *
 * Memory is bounded by input limits, not by NULL checks on every line. The
 * exception is capped arenas (arena.h), where running out is the peer's
 * fault.
 */
#ifndef STANZAD_XMALLOC_H
#define STANZAD_XMALLOC_H

#include <stddef.h>

#include "str.h"

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Reallocates an array of nmemb elements of size bytes, checking overflow. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Returns a NUL-terminated malloc'ed copy of the view; caller frees. */
char *str_xdup(struct str s);

#endif
