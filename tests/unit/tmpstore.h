/*
 * tmpstore.h - a store in a fresh temporary directory for unit tests:
 * under $TMPDIR (or the system's temporary directory), removed whole by
 * tmpstore_close. Header-only: each test executable is one file.
 */
#ifndef STANZAD_TESTS_TMPSTORE_H
#define STANZAD_TESTS_TMPSTORE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store.h"

struct tmpstore {
	char dir[4096];
};

static int tmpstore_rm(const char *path, const struct stat *sb, int flag,
		       struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Opens a store with schemas (NULL-terminated) in a new directory named
 * after prefix, into *st; 0, or -1 (*st NULL). */
static inline int tmpstore_open(struct tmpstore *t, const char *prefix,
				const struct store_schema *const *schemas,
				struct store **st)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(t->dir, sizeof(t->dir), "%s/%s.XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : P_tmpdir, prefix);
	*st = NULL;
	if (mkdtemp(t->dir) == NULL)
		return -1;
	store_register_schemas(schemas);
	char *err = NULL;
	if (store_open(t->dir, st, &err) != 0) {
		free(err);
		return -1;
	}
	return 0;
}

static inline void tmpstore_close(struct tmpstore *t, struct store **st)
{
	store_close(*st);
	*st = NULL;
	nftw(t->dir, tmpstore_rm, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
