/*
 * store.h - the storage API, SQLite backend (the embedded default).
 *
 * One struct store per process, opened on data_dir/stanzad.db in WAL mode so
 * stanzactl can change accounts while the server runs. Every call here is
 * synchronous and may block: the server runs them on the libuv thread pool
 * (store_queue_work), never on a shard's loop; stanzactl calls them
 * directly. The connection is in SQLite's serialized threading mode, so
 * calls from several pool threads are safe.
 *
 * Schemas are declared by their owners (accounts.c now, modules later) as
 * numbered migrations; store_open() applies the pending ones, each in its
 * own transaction, and records them in a schema_version table.
 */
#ifndef STANZAD_STORE_H
#define STANZAD_STORE_H

#include <sqlite3.h>
#include <uv.h>

struct store;

struct store_schema {
	const char *name;              /* e.g. "accounts" */
	const char *const *migrations; /* SQL, NULL-terminated; index+1 = version */
};

/* Opens (creating if needed) data_dir/stanzad.db and applies migrations of
 * every schema in store_schemas (store.c). Returns 0 and *st_r, or -1 and
 * *error_r (malloc'ed, caller frees). */
int store_open(const char *data_dir, struct store **st_r, char **error_r);
void store_close(struct store *st);

/* The underlying handle, for the files of store/ only. */
sqlite3 *store_db(struct store *st);

/*
 * Runs work(st, ud) on the libuv thread pool of loop, then done(st, ud,
 * status) on the loop's thread; status is work's return value, or
 * UV_ECANCELED. Follows libuv's rule: if this returns an error (< 0), done
 * is never called; otherwise done is called exactly once.
 */
typedef int store_work_fn(struct store *st, void *ud);
typedef void store_done_fn(struct store *st, void *ud, int status);
int store_queue_work(uv_loop_t *loop, struct store *st, store_work_fn *work,
		     store_done_fn *done, void *ud);

#endif
