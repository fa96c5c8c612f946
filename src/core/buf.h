/*
 * buf.h - owned, growable, bounded byte buffers.
 *
 * len is bytes used, cap bytes allocated, max the enforced limit (0: none).
 * Appends never truncate: they fail with -1 when len would pass max.
 * A zeroed struct buf is a valid empty buffer that holds no memory.
 */
#ifndef STANZAD_BUF_H
#define STANZAD_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "str.h"

struct buf {
	char *data;
	size_t len, cap, max;
};

/* Makes room for n more bytes after len. Returns 0, or -1 if len + n
 * would pass max (buffer unchanged). */
int buf_reserve(struct buf *b, size_t n);
/* Returns 0, or -1 if len + n would pass max (buffer unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
static inline int buf_append_str(struct buf *b, struct str s)
{
	return buf_append(b, s.p, s.len);
}
int buf_append_c(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Appends s escaped for XML character data, or for an attribute value
 * delimited by ' when attr is true, so that parsing gives back exactly s
 * (CR, and TAB/LF in attributes, become character references). The only
 * way text reaches XML. */
int buf_append_xml_escaped(struct buf *b, struct str s, bool attr);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Frees the memory; the buffer stays usable (empty, same max). */
void buf_reset(struct buf *b);
static inline struct str buf_str(const struct buf *b)
{
	return STR(b->data, b->len);
}

#endif
