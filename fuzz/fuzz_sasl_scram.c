/*
 * fuzz_sasl_scram.c - the SCRAM-*-PLUS tls-server-end-point server
 * (src/auth/scram_tsep.c), our own parser of client-first and client-final
 * messages. The input is split at the first 0xff byte into the two
 * messages (the first byte picks SHA-1 or SHA-256); a real store in a
 * temporary directory holds one account, so both the known-user and the
 * unknown-user paths run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sasl-private.h"
#include "core/log.h"
#include "fuzz.h"
#include "store/accounts.h"
#include "store/store.h"

static struct store *store;
static char dir[] = "/tmp/fuzz-scram-XXXXXX";

/* The store and its temporary directory go at exit. */
static void teardown(void)
{
	store_close(store);
	static const char *const files[] = { "stanzad.db", "stanzad.db-wal",
					     "stanzad.db-shm" };
	char path[64];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void setup(void)
{
	if (store != NULL)
		return;
	log_set_level(LOG_LEVEL_ERROR);
	char *err = NULL;
	if (mkdtemp(dir) == NULL || store_open(dir, &store, &err) < 0)
		abort();
	atexit(teardown);
	struct scram_creds c;
	const char *why;
	if (scram_creds_derive("pencil", 4096, &c, &why) < 0 ||
	    accounts_create(store, "localhost", "user", &c) < 0)
		abort();
}

FUZZ_TARGET(sasl_scram)
{
	(void)fuzz_arena;
	setup();
	if (size < 1)
		return;
	enum scram_hash h = data[0] & 1 ? SCRAM_SHA256 : SCRAM_SHA1;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	const char *sep = memchr(in, 0xff, len);
	size_t first = sep ? (size_t)(sep - in) : len;
	struct sasl_cb cb = { .tsep_len = 32 };
	memset(cb.tsep, 0x5a, sizeof(cb.tsep));
	struct scram_tsep *t = scram_tsep_new(h);
	char *out = NULL, *user = NULL;
	size_t outlen;
	const char *cond;
	enum sasl_status r = scram_tsep_step(t, store, "localhost", 4096, &cb,
					     in, first, &out, &outlen, &user,
					     &cond);
	free(out);
	free(user);
	out = user = NULL;
	if (r == SASL_CHALLENGE && sep != NULL) {
		r = scram_tsep_step(t, store, "localhost", 4096, &cb, sep + 1,
				    len - first - 1, &out, &outlen, &user,
				    &cond);
		/* A guessed proof cannot succeed. */
		if (r == SASL_SUCCESS)
			abort();
		free(out);
		free(user);
	}
	scram_tsep_free(t);
}
