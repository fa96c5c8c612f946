/*
 * str.h - string views: pointer + length, never owning, not NUL-terminated.
 *
 * Bytes from the wire travel as struct str views (nginx ngx_str_t, HAProxy
 * ist). A NUL is added only at library boundaries that need one.
 */
#ifndef STANZAD_STR_H
#define STANZAD_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct str {
	const char *p;
	size_t len;
};

#define STR(ptr, n) ((struct str){ .p = (const char *)(ptr), .len = (n) })
#define STR_LIT(s) ((struct str){ .p = (s), .len = sizeof(s) - 1 })
#define STR_NULL ((struct str){ .p = NULL, .len = 0 })
/* For printf: printf("%.*s", STR_FMT(s)). */
#define STR_FMT(s) (int)(s).len, (s).p

static inline struct str str_c(const char *s)
{
	return s ? STR(s, strlen(s)) : STR_NULL;
}

static inline bool str_is_null(struct str s)
{
	return s.p == NULL;
}

static inline bool str_eq(struct str a, struct str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline bool str_eq_c(struct str a, const char *b)
{
	return str_eq(a, str_c(b));
}

/* ASCII case-insensitive comparison. */
bool str_eq_nocase(struct str a, struct str b);

#endif
