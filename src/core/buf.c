/*
 * buf.c - bounded growable buffers; see buf.h.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "bug.h"
#include "xmalloc.h"

int buf_reserve(struct buf *b, size_t n)
{
	if (n > SIZE_MAX - b->len || (b->max && b->len + n > b->max))
		return -1;
	size_t need = b->len + n;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (b->max && cap > b->max)
		cap = b->max;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_append_c(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	/* Format aside first: vsnprintf needs room for a NUL that must not
	 * count against max. */
	char small[256];
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap2);
	va_end(ap2);
	BUG_ON(n < 0);
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	char *big = xmalloc((size_t)n + 1);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	int r = buf_append(b, big, (size_t)n);
	free(big);
	return r;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

/* Bytes written as references: ESC_TEXT everywhere, ESC_ATTR in attribute
 * values only (XML end-of-line and attribute-value normalisation would
 * change CR, and LF and tab in attributes, on the way back in). A table
 * lookup per byte: serializing a stanza scans all of its text, and a
 * switch per byte was 2 % of a message's server CPU. */
#define ESC_TEXT 1
#define ESC_ATTR 2
static const unsigned char xml_esc[256] = {
	['&'] = ESC_TEXT | ESC_ATTR, ['<'] = ESC_TEXT | ESC_ATTR,
	['>'] = ESC_TEXT | ESC_ATTR, ['\r'] = ESC_TEXT | ESC_ATTR,
	['\''] = ESC_ATTR, ['"'] = ESC_ATTR, ['\n'] = ESC_ATTR,
	['\t'] = ESC_ATTR,
};

int buf_append_xml_escaped(struct buf *b, struct str s, bool attr)
{
	if (s.len == 0) /* s.p may be NULL: no arithmetic on it */
		return 0;
	unsigned char mask = attr ? ESC_ATTR : ESC_TEXT;
	size_t start = 0;
	for (size_t i = 0; i < s.len; i++) {
		if (!(xml_esc[(unsigned char)s.p[i]] & mask))
			continue;
		const char *rep;
		switch (s.p[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		case '\r': rep = "&#13;"; break;
		case '\n': rep = "&#10;"; break;
		default: rep = "&#9;"; break; /* '\t' */
		}
		if (buf_append(b, s.p + start, i - start) < 0 ||
		    buf_append_c(b, rep) < 0)
			return -1;
		start = i + 1;
	}
	return buf_append(b, s.p + start, s.len - start);
}

void buf_consume(struct buf *b, size_t n)
{
	BUG_ON(n > b->len);
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void buf_reset(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
