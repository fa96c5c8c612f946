/*
 * bug.h - invariants that stay checked in release builds.
 *
 * BUG_ON(cond) aborts with file:line when cond holds (HAProxy). NEVER(x) and
 * ALWAYS(x) mark defensive branches that tests should never take (SQLite):
 * they evaluate to x, and in debug builds abort when the unexpected happens.
 */
#ifndef STANZAD_BUG_H
#define STANZAD_BUG_H

#include <stdbool.h>

_Noreturn void bug_abort(const char *file, int line, const char *cond);

#define BUG_ON(cond)                                          \
	do {                                                  \
		if (__builtin_expect(!!(cond), 0))            \
			bug_abort(__FILE__, __LINE__, #cond); \
	} while (0)

#ifdef NDEBUG
#define NEVER(x) (x)
#define ALWAYS(x) (x)
#else
#define NEVER(x) ((x) ? (bug_abort(__FILE__, __LINE__, #x), true) : false)
#define ALWAYS(x) ((x) ? true : (bug_abort(__FILE__, __LINE__, #x), false))
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
