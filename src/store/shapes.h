/*
 * shapes.h - the three storage shapes modules use (after Prosody's
 * keyval/map/archive stores), over tables each module declares itself.
 *
 *   keyval   (host, user)        -> value   columns: host, user, value
 *   map      (host, user, key)   -> value   columns: host, user, key, value
 *   archive  (host, user) -> ordered items  columns: id INTEGER PRIMARY KEY
 *            AUTOINCREMENT, host, user, ts (ms since the epoch), with_jid,
 *            value
 *
 * Values are opaque bytes (modules store serialized XML). A module creates
 * its tables with the columns above in its schema's migrations (struct
 * store_schema, listed in its struct module) and names them here; table
 * names are compile-time constants, never input (plain identifiers,
 * checked with BUG_ON). Hosts are nameprep'd and users nodeprep'd by the
 * caller; user "" is the host itself. The tables need these keys (the
 * upserts rely on them, and fail to prepare without them):
 *
 *   CREATE TABLE t(host TEXT NOT NULL, user TEXT NOT NULL,
 *     value BLOB NOT NULL, PRIMARY KEY(host, user)) WITHOUT ROWID
 *   CREATE TABLE t(host TEXT NOT NULL, user TEXT NOT NULL,
 *     key TEXT NOT NULL, value BLOB NOT NULL,
 *     PRIMARY KEY(host, user, key)) WITHOUT ROWID
 *   CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT,
 *     host TEXT NOT NULL, user TEXT NOT NULL, ts INTEGER NOT NULL,
 *     with_jid TEXT NOT NULL, value BLOB NOT NULL);
 *   CREATE INDEX t_user ON t(host, user, id)
 *
 * (AUTOINCREMENT: ids are never reused, even after the newest items are
 * deleted.) Every table with host and user columns belongs in its schema's
 * user_tables, or account removal leaves its rows behind.
 *
 * Every function is synchronous and may block: the server calls them from
 * store_queue_work() jobs. Return values: 0 done/found, 1 not found, -1
 * storage error (logged; the caller answers <internal-server-error/>).
 * Several calls can be made atomic with store_begin()/store_commit().
 */
#ifndef STANZAD_STORE_SHAPES_H
#define STANZAD_STORE_SHAPES_H

#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "store.h"

/* keyval. *value_r is reset and filled (value_r->max is respected: a
 * larger value is -1, with *value_r left empty). An empty value is found
 * (0, len 0), not missing (1). */
int store_kv_get(struct store *st, const char *table, const char *host,
		 const char *user, struct buf *value_r);
/* Sets the value; value NULL deletes it (0 even if there was none). */
int store_kv_set(struct store *st, const char *table, const char *host,
		 const char *user, const void *value, size_t len);

/* map; store_map_set() with value NULL deletes the key (0 even if there
 * was none). */
int store_map_get(struct store *st, const char *table, const char *host,
		  const char *user, const char *key, struct buf *value_r);
int store_map_set(struct store *st, const char *table, const char *host,
		  const char *user, const char *key, const void *value,
		  size_t len);
/* Calls fn for every key of (host, user) in key order (bytewise); fn
 * returns 0 to go on, non-zero to stop (then store_map_all returns 0).
 * Callbacks run with the connection's mutex held: keep them short. key and
 * value are valid during the call only; value is never NULL. */
typedef int store_map_fn(const char *key, const void *value, size_t len,
			 void *ud);
int store_map_all(struct store *st, const char *table, const char *host,
		  const char *user, store_map_fn *fn, void *ud);
/* As store_map_all, for the keys of (host, user) that start with prefix
 * (bytewise), in key order. */
int store_map_prefix(struct store *st, const char *table, const char *host,
		     const char *user, const char *prefix, store_map_fn *fn,
		     void *ud);
/* Deletes every key of (host, user). */
int store_map_clear(struct store *st, const char *table, const char *host,
		    const char *user);

/* archive */
struct store_item {
	int64_t id;
	int64_t ts_ms;
	const char *with; /* "" when none */
	const void *value;
	size_t len;
};
/* Appends; *id_r (may be NULL) gets the new item's id (ids increase).
 * Outside a transaction, 0 means committed and synced (synchronous=FULL);
 * inside one, store_commit() is the moment it is durable. with NULL is
 * stored as "". */
int store_archive_append(struct store *st, const char *table,
			 const char *host, const char *user, int64_t ts_ms,
			 const char *with, const void *value, size_t len,
			 int64_t *id_r);
int store_archive_count(struct store *st, const char *table, const char *host,
			const char *user, size_t *count_r);
/* Calls fn for up to max items with id > after_id, in id order; fn
 * returns 0 to go on, non-zero to stop (the list still returns 0). As with
 * store_map_all(), fn runs with the mutex held and *item lasts the call. */
typedef int store_item_fn(const struct store_item *item, void *ud);
int store_archive_list(struct store *st, const char *table, const char *host,
		       const char *user, int64_t after_id, size_t max,
		       store_item_fn *fn, void *ud);
/* Deletes the items with id <= upto_id (all: INT64_MAX). */
int store_archive_delete(struct store *st, const char *table,
			 const char *host, const char *user, int64_t upto_id);

/* Transactions: the calling thread holds the connection until commit or
 * rollback (no other thread's statements land inside; theirs wait). Not
 * nestable (BUG_ON), and commit/rollback without begin is a BUG_ON too.
 * store_begin() takes the write lock (BEGIN IMMEDIATE) or returns -1 with
 * nothing held. After any -1 inside, call store_rollback(): if SQLite has
 * already rolled back (a full disk...), later calls refuse with -1 rather
 * than commit on their own. store_commit() returning -1 has rolled back;
 * either way the transaction is over. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/* Deletes everything stored for (host, user) in the user tables of every
 * schema (struct store_schema.user_tables) and the account itself, in one
 * transaction: account removal (XEP-0077 §3.2, stanzactl user del).
 * Returns 0, 1 if there was no account (its data, if any was left, is
 * deleted all the same), -1 with nothing deleted. Not inside a
 * store_begin() transaction. */
int store_user_purge(struct store *st, const char *host, const char *user);

#endif
