/*
 * store.h - the storage API, SQLite backend (the embedded default).
 *
 * One struct store per process, opened on data_dir/stanzad.db in WAL mode so
 * stanzactl can change accounts while the server runs. Every call here is
 * synchronous and may block: the server runs them on the libuv thread pool
 * (store_queue_work), never on a shard's loop, except jobs that only read
 * a few rows of one account (store_queue_read), which a shard runs itself
 * on a read connection of its own; stanzactl calls them directly. The
 * connection is in SQLite's serialized threading mode, so calls from
 * several pool threads are safe.
 *
 * Schemas are declared by their owners (accounts.c, and each module in its
 * struct module) as numbered migrations; store_open() applies the pending
 * ones, each in its own transaction, and records them in a schema_version
 * table. Modules keep their data in the shapes of shapes.h.
 */
#ifndef STANZAD_STORE_H
#define STANZAD_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <uv.h>

#include "../core/str.h"

struct store;

struct store_schema {
	const char *name;              /* e.g. "accounts" */
	const char *const *migrations; /* SQL, NULL-terminated; index+1 = version */
	/* The schema's tables holding per-user rows in columns host and user
	 * (NULL-terminated; NULL: none): store_user_purge() empties them. */
	const char *const *user_tables;
};

/*
 * The schemas besides accounts (the modules'), NULL-terminated, applied in
 * order after accounts_schema by every later store_open(); NULL: none. The
 * list is kept, not copied. Call before store_open(), from one thread:
 * stanzad and stanzactl register the same list (module_schemas()), so both
 * migrate the same tables and purge the same user data.
 */
void store_register_schemas(const struct store_schema *const *schemas);

/* Opens (creating if needed) data_dir/stanzad.db and applies migrations of
 * accounts_schema, then of every registered schema. Returns 0 and *st_r, or
 * -1 and *error_r (malloc'ed, caller frees). */
int store_open(const char *data_dir, struct store **st_r, char **error_r);
void store_close(struct store *st);

/* For the files of store/ only: the underlying handle; the registered
 * schemas (never NULL); and whether a store_begin() transaction is open,
 * which only the thread holding the connection's mutex may read or set. */
sqlite3 *store_db(struct store *st);
/* For the files of store/ only, with the connection's mutex held from get
 * to put: a prepared statement for sql (a fixed text), kept prepared for
 * the next call with the same text; put resets it (or finalizes it). On
 * failure *stmt_r is NULL and the SQLite result code is returned. */
int store_stmt_get(struct store *st, const char *sql, sqlite3_stmt **stmt_r);
void store_stmt_put(struct store *st, sqlite3_stmt *stmt);
const struct store_schema *const *store_schemas(void);
bool store_txn_open(const struct store *st);
void store_set_txn_open(struct store *st, bool open);

/* How long a write waits for another connection's lock (stanzactl, an
 * external tool) before failing with STORE_EBUSY; 0 fails at once. Call
 * before any store_queue_work(). */
void store_set_busy_timeout(struct store *st, unsigned ms);

/*
 * Why a store call failed, for the done callbacks (docs/internals/store.md,
 * "Failures"). Below libuv's error codes, so never confused with them.
 * STORE_EFULL: the disk, a quota or the file size limit is full;
 * STORE_EBUSY: another connection held the lock past the busy timeout.
 * Any other failure stays -1.
 */
#define STORE_EFULL (-10001)
#define STORE_EBUSY (-10002)

/* For the files of store/ only: records why the last call on this thread
 * failed, from db's error code; returns -1 for the caller. */
int store_fail(sqlite3 *db);

/* For the files of store/ only: this thread's read connection to st's
 * file (opened at the first call; NULL if that failed, or st is itself a
 * reader). store_close(st) closes them all, after their threads ended. */
struct store *store_reader(struct store *st);

/*
 * Runs work(st, ud) on the libuv thread pool of loop, then done(st, ud,
 * status) on the loop's thread; status is work's return value, or
 * UV_ECANCELED. When work returns -1 after a store call of its own failed
 * because the disk was full or the database locked, status is STORE_EFULL
 * or STORE_EBUSY instead. Call on loop's thread. The jobs of one loop run
 * one at a time in the order queued, in batches (store.c); loops run
 * theirs in parallel. Follows libuv's rule: if this returns an error
 * (< 0), done is never called; otherwise done is called exactly once.
 */
typedef int store_work_fn(struct store *st, void *ud);
typedef void store_done_fn(struct store *st, void *ud, int status);
int store_queue_work(uv_loop_t *loop, struct store *st, store_work_fn *work,
		     store_done_fn *done, void *ud);
/* Runs work(st, ud) here and now, with status as store_queue_work gives
 * it (for the files of store/: the pool and the readers). */
int store_run(struct store *st, store_work_fn *work, void *ud);

/*
 * As store_queue_work, for a job whose work only reads, and little: a few
 * rows of one account found by key (credentials, a roster, a vCard). On a
 * shard's own loop it runs on that shard, in the loop iteration's tick
 * (after I/O; store_reads_run), on the shard's read connection
 * (store_reader: work's st is that connection, done's st is st), so the
 * job costs no hand-over to the pool and back. It sees every write
 * committed before it started: a job queued after another job's done has
 * run sees what that job wrote, as on the pool. A write fails
 * (query_only). Elsewhere (no shard, another loop, a shard that no longer
 * ticks, no read connection) it goes to the pool as store_queue_work.
 */
int store_queue_read(uv_loop_t *loop, struct store *st, store_work_fn *work,
		     store_done_fn *done, void *ud);
/* Runs the read jobs the calling shard queued, and those their done
 * callbacks queue, until none is left: the shard's tick calls it. */
void store_reads_run(void);

/*
 * As store_queue_work on the calling shard's loop, but jobs with the same
 * key (an account's bare JID) run one at a time in submission order across
 * all shards: the next starts after the previous one's done returned. work
 * may be NULL: done then runs in its turn without a thread-pool hop. Call
 * on a shard thread. Returns 0; done is always called exactly once, on the
 * submitting shard, or with status UV_ECANCELED (possibly on the main
 * thread, at shutdown) if that shard ended first: done must then only free.
 */
int store_queue_keyed(struct store *st, struct str key, store_work_fn *work,
		      store_done_fn *done, void *ud);
/* As store_queue_keyed, for a job whose work only reads (as for
 * store_queue_read): in its turn it runs as store_queue_read on the
 * submitting shard. The key's earlier jobs have all finished by then, so
 * it reads what they wrote. */
int store_queue_keyed_read(struct store *st, struct str key,
			   store_work_fn *work, store_done_fn *done, void *ud);
/* True while a job with this key runs or waits (a snapshot: a job may be
 * queued right after). */
bool store_keyed_busy(struct str key);
/* For stanzactl status: accounts with a job running or waiting, and jobs
 * waiting behind another of their account. */
void store_keyed_stats(size_t *keys_r, size_t *waiting_r);
/* Frees the key table after the shards stopped. */
void store_keyed_fini(void);

#endif
