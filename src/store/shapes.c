/*
 * shapes.c - the keyval, map and archive shapes over module tables (see
 * shapes.h), store_begin()/store_commit() transactions, and account purge
 * (XEP-0077 §3.2).
 *
 * Only table names, compile-time constants checked to be plain identifiers,
 * are pasted into SQL; every value is bound. Each call holds the
 * connection's mutex from taking its statement (kept prepared across
 * calls, store_stmt_get) to putting it back, as accounts.c does, and
 * store_begin() holds it until commit or rollback. In serialized mode that
 * mutex is recursive, so calls inside a transaction re-enter it while other
 * threads wait for the transaction to end.
 */
#include <stdio.h>
#include <string.h>

#include "../core/bug.h"
#include "../core/log.h"
#include "accounts.h"
#include "shapes.h"

/* Longest SQL text built here, table name included. */
#define SHP_SQL_MAX 256
#define SHP_TABLE_MAX 64

/* One call's hold on the connection. */
struct shp_call {
	struct store *st;
	sqlite3 *db;
	sqlite3_stmt *stmt;
	const char *table;
	const char *op; /* for log lines */
};

/* A plain identifier: what a table name must be to be pasted into SQL. */
static bool shp_table_ok(const char *t)
{
	size_t n = t != NULL ? strlen(t) : 0;
	if (n == 0 || n >= SHP_TABLE_MAX || (t[0] >= '0' && t[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(t[i] == '_' || (t[i] >= 'a' && t[i] <= 'z') ||
		      (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9')))
			return false;
	return true;
}

/* Logs the connection's last error; returns -1 for the caller. */
static int shp_fail(struct shp_call *c, const char *what)
{
	log_errx("store: %s: %s: %s: %s", c->table, c->op, what,
		 sqlite3_errmsg(c->db));
	return store_fail(c->db);
}

/*
 * Takes the connection and prepares pre "table" post. Inside a transaction
 * that SQLite has already rolled back (after SQLITE_FULL, say), it refuses:
 * the statement would otherwise commit on its own, outside the transaction
 * its caller believes it is in.
 */
static int shp_begin(struct shp_call *c, struct store *st, const char *table,
		     const char *op, const char *pre, const char *post)
{
	BUG_ON(!shp_table_ok(table));
	*c = (struct shp_call){
		.st = st, .db = store_db(st), .table = table, .op = op,
	};
	sqlite3_mutex_enter(sqlite3_db_mutex(c->db));
	if (store_txn_open(st) && sqlite3_get_autocommit(c->db)) {
		log_errx("store: %s: %s: the transaction was rolled back",
			 table, op);
		return -1;
	}
	char sql[SHP_SQL_MAX];
	int n = snprintf(sql, sizeof(sql), "%s\"%s\"%s", pre, table, post);
	BUG_ON(n < 0 || (size_t)n >= sizeof(sql));
	if (store_stmt_get(c->st, sql, &c->stmt) != SQLITE_OK)
		return shp_fail(c, "prepare");
	return 0;
}

static void shp_end(struct shp_call *c)
{
	store_stmt_put(c->st, c->stmt);
	sqlite3_mutex_leave(sqlite3_db_mutex(c->db));
}

static int shp_bind_text(struct shp_call *c, int idx, const char *s)
{
	if (sqlite3_bind_text(c->stmt, idx, s, -1, SQLITE_STATIC) != SQLITE_OK)
		return shp_fail(c, "bind");
	return 0;
}

/* Binds host and user as ?1 and ?2. */
static int shp_bind_user(struct shp_call *c, const char *host,
			 const char *user)
{
	BUG_ON(host == NULL || user == NULL);
	if (shp_bind_text(c, 1, host) < 0 || shp_bind_text(c, 2, user) < 0)
		return -1;
	return 0;
}

/* Binds a value as a BLOB; an empty one is a zero-length BLOB, not NULL,
 * so that it reads back as present. */
static int shp_bind_value(struct shp_call *c, int idx, const void *value,
			  size_t len)
{
	BUG_ON(value == NULL && len > 0);
	int rc = len == 0 ? sqlite3_bind_zeroblob(c->stmt, idx, 0)
			  : sqlite3_bind_blob64(c->stmt, idx, value, len,
						SQLITE_STATIC);
	return rc == SQLITE_OK ? 0 : shp_fail(c, "bind");
}

static int shp_bind_int(struct shp_call *c, int idx, int64_t v)
{
	if (sqlite3_bind_int64(c->stmt, idx, v) != SQLITE_OK)
		return shp_fail(c, "bind");
	return 0;
}

/* Steps a statement that returns no rows. */
static int shp_step_done(struct shp_call *c)
{
	return sqlite3_step(c->stmt) == SQLITE_DONE ? 0 : shp_fail(c, "step");
}

/* Column col of the current row as bytes: never NULL, "" when empty. */
static const void *shp_column_bytes(struct shp_call *c, int col, size_t *len)
{
	/* blob before bytes: SQLite's documented order. */
	const void *p = sqlite3_column_blob(c->stmt, col);
	int n = sqlite3_column_bytes(c->stmt, col);
	*len = p != NULL && n > 0 ? (size_t)n : 0;
	return *len > 0 ? p : "";
}

static const char *shp_column_text(struct shp_call *c, int col)
{
	const char *s = (const char *)sqlite3_column_text(c->stmt, col);
	return s != NULL ? s : "";
}

/* Steps a one-value SELECT into *value_r: 0, 1 no row, -1. */
static int shp_step_value(struct shp_call *c, struct buf *value_r)
{
	int rc = sqlite3_step(c->stmt);
	if (rc == SQLITE_DONE)
		return 1;
	if (rc != SQLITE_ROW)
		return shp_fail(c, "step");
	size_t len;
	const void *p = shp_column_bytes(c, 0, &len);
	if (buf_append(value_r, p, len) < 0) {
		log_errx("store: %s: %s: a value of %zu bytes is over the "
			 "limit of %zu", c->table, c->op, len, value_r->max);
		return -1;
	}
	return 0;
}

/* ---- keyval ---- */

int store_kv_get(struct store *st, const char *table, const char *host,
		 const char *user, struct buf *value_r)
{
	struct shp_call c;
	int ret = -1;
	buf_reset(value_r);
	if (shp_begin(&c, st, table, "get", "SELECT value FROM ",
		      " WHERE host = ?1 AND user = ?2") == 0 &&
	    shp_bind_user(&c, host, user) == 0)
		ret = shp_step_value(&c, value_r);
	shp_end(&c);
	return ret;
}

/* Deletes the rows of (host, user), of one key when key is not NULL. */
static int shp_delete(struct store *st, const char *table, const char *op,
		      const char *host, const char *user, const char *key)
{
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, op, "DELETE FROM ",
		      key != NULL ? " WHERE host = ?1 AND user = ?2 "
				    "AND key = ?3"
				  : " WHERE host = ?1 AND user = ?2") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    (key == NULL || shp_bind_text(&c, 3, key) == 0))
		ret = shp_step_done(&c);
	shp_end(&c);
	return ret;
}

int store_kv_set(struct store *st, const char *table, const char *host,
		 const char *user, const void *value, size_t len)
{
	if (value == NULL)
		return shp_delete(st, table, "delete", host, user, NULL);
	struct shp_call c;
	int ret = -1;
	/* The upsert needs the table's PRIMARY KEY(host, user); without it
	 * the statement does not prepare, rather than adding duplicates. */
	if (shp_begin(&c, st, table, "set",
		      "INSERT INTO ",
		      "(host, user, value) VALUES(?1, ?2, ?3) "
		      "ON CONFLICT(host, user) "
		      "DO UPDATE SET value = excluded.value") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_value(&c, 3, value, len) == 0)
		ret = shp_step_done(&c);
	shp_end(&c);
	return ret;
}

/* ---- map ---- */

int store_map_get(struct store *st, const char *table, const char *host,
		  const char *user, const char *key, struct buf *value_r)
{
	struct shp_call c;
	int ret = -1;
	buf_reset(value_r);
	if (shp_begin(&c, st, table, "get", "SELECT value FROM ",
		      " WHERE host = ?1 AND user = ?2 AND key = ?3") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_text(&c, 3, key) == 0)
		ret = shp_step_value(&c, value_r);
	shp_end(&c);
	return ret;
}

int store_map_set(struct store *st, const char *table, const char *host,
		  const char *user, const char *key, const void *value,
		  size_t len)
{
	BUG_ON(key == NULL);
	if (value == NULL)
		return shp_delete(st, table, "delete", host, user, key);
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, "set", "INSERT INTO ",
		      "(host, user, key, value) VALUES(?1, ?2, ?3, ?4) "
		      "ON CONFLICT(host, user, key) "
		      "DO UPDATE SET value = excluded.value") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_text(&c, 3, key) == 0 &&
	    shp_bind_value(&c, 4, value, len) == 0)
		ret = shp_step_done(&c);
	shp_end(&c);
	return ret;
}

int store_map_all(struct store *st, const char *table, const char *host,
		  const char *user, store_map_fn *fn, void *ud)
{
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, "all", "SELECT key, value FROM ",
		      " WHERE host = ?1 AND user = ?2 ORDER BY key") < 0 ||
	    shp_bind_user(&c, host, user) < 0)
		goto out;
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		size_t len;
		const void *v = shp_column_bytes(&c, 1, &len);
		if (fn(shp_column_text(&c, 0), v, len, ud) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	ret = rc == SQLITE_DONE ? 0 : shp_fail(&c, "step");
out:
	shp_end(&c);
	return ret;
}

int store_map_prefix(struct store *st, const char *table, const char *host,
		     const char *user, const char *prefix, store_map_fn *fn,
		     void *ud)
{
	struct shp_call c;
	int ret = -1;
	/* substr() compares bytes (BINARY); the range on key would use the
	 * index but needs an upper bound, which a prefix ending in 0xff
	 * bytes does not have. The rows of (host, user) are found by the
	 * primary key's first columns either way. */
	if (shp_begin(&c, st, table, "prefix", "SELECT key, value FROM ",
		      " WHERE host = ?1 AND user = ?2 AND "
		      "substr(CAST(key AS BLOB), 1, length(CAST(?3 AS BLOB))) "
		      "= CAST(?3 AS BLOB) ORDER BY key") < 0 ||
	    shp_bind_user(&c, host, user) < 0 ||
	    shp_bind_text(&c, 3, prefix) < 0)
		goto out;
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		size_t len;
		const void *v = shp_column_bytes(&c, 1, &len);
		if (fn(shp_column_text(&c, 0), v, len, ud) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	ret = rc == SQLITE_DONE ? 0 : shp_fail(&c, "step");
out:
	shp_end(&c);
	return ret;
}

int store_map_clear(struct store *st, const char *table, const char *host,
		    const char *user)
{
	return shp_delete(st, table, "clear", host, user, NULL);
}

/* ---- archive ---- */

int store_archive_append(struct store *st, const char *table,
			 const char *host, const char *user, int64_t ts_ms,
			 const char *with, const void *value, size_t len,
			 int64_t *id_r)
{
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, "append", "INSERT INTO ",
		      "(host, user, ts, with_jid, value) "
		      "VALUES(?1, ?2, ?3, ?4, ?5)") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_int(&c, 3, ts_ms) == 0 &&
	    shp_bind_text(&c, 4, with != NULL ? with : "") == 0 &&
	    shp_bind_value(&c, 5, value, len) == 0)
		ret = shp_step_done(&c);
	/* Still this statement's rowid: we hold the connection's mutex. */
	if (ret == 0 && id_r != NULL)
		*id_r = sqlite3_last_insert_rowid(c.db);
	shp_end(&c);
	return ret;
}

int store_archive_count(struct store *st, const char *table, const char *host,
			const char *user, size_t *count_r)
{
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, "count", "SELECT count(*) FROM ",
		      " WHERE host = ?1 AND user = ?2") == 0 &&
	    shp_bind_user(&c, host, user) == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_ROW) {
			*count_r = (size_t)sqlite3_column_int64(c.stmt, 0);
			ret = 0;
		} else {
			shp_fail(&c, "step");
		}
	}
	shp_end(&c);
	return ret;
}

/* Calls fn for each row of a SELECT id, ts, with_jid, value. */
static int shp_list_rows(struct shp_call *c, store_item_fn *fn, void *ud)
{
	int rc;
	while ((rc = sqlite3_step(c->stmt)) == SQLITE_ROW) {
		struct store_item it = {
			.id = sqlite3_column_int64(c->stmt, 0),
			.ts_ms = sqlite3_column_int64(c->stmt, 1),
			.with = shp_column_text(c, 2),
		};
		it.value = shp_column_bytes(c, 3, &it.len);
		if (fn(&it, ud) != 0)
			return 0;
	}
	return rc == SQLITE_DONE ? 0 : shp_fail(c, "step");
}

int store_archive_list(struct store *st, const char *table, const char *host,
		       const char *user, int64_t after_id, size_t max,
		       store_item_fn *fn, void *ud)
{
	struct shp_call c;
	int ret = -1;
	int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
	if (shp_begin(&c, st, table, "list",
		      "SELECT id, ts, with_jid, value FROM ",
		      " WHERE host = ?1 AND user = ?2 AND id > ?3 "
		      "ORDER BY id LIMIT ?4") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_int(&c, 3, after_id) == 0 &&
	    shp_bind_int(&c, 4, limit) == 0)
		ret = shp_list_rows(&c, fn, ud);
	shp_end(&c);
	return ret;
}

int store_archive_delete(struct store *st, const char *table,
			 const char *host, const char *user, int64_t upto_id)
{
	struct shp_call c;
	int ret = -1;
	if (shp_begin(&c, st, table, "delete", "DELETE FROM ",
		      " WHERE host = ?1 AND user = ?2 AND id <= ?3") == 0 &&
	    shp_bind_user(&c, host, user) == 0 &&
	    shp_bind_int(&c, 3, upto_id) == 0)
		ret = shp_step_done(&c);
	shp_end(&c);
	return ret;
}

/* ---- transactions ---- */

/*
 * The mutex is entered here and left by commit or rollback, so the
 * transaction's statements are the only ones on the connection until then.
 * IMMEDIATE takes the write lock now: a busy database fails here, before
 * any work, not at the first write or at COMMIT.
 */
int store_begin(struct store *st)
{
	sqlite3 *db = store_db(st);
	sqlite3_mutex_enter(sqlite3_db_mutex(db));
	/* Another thread's transaction has ended by now: this is ours. */
	BUG_ON(store_txn_open(st));
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		log_errx("store: begin: %s", sqlite3_errmsg(db));
		store_fail(db);
		sqlite3_mutex_leave(sqlite3_db_mutex(db));
		return -1;
	}
	store_set_txn_open(st, true);
	return 0;
}

/*
 * Ends the transaction and leaves the mutex store_begin() entered. Entering
 * once more first is a no-op for the owner (recursive) and makes a caller
 * without a transaction wait, then fail the check, instead of releasing
 * another thread's hold.
 */
static void shp_txn_end(struct store *st)
{
	sqlite3_mutex *m = sqlite3_db_mutex(store_db(st));
	store_set_txn_open(st, false);
	sqlite3_mutex_leave(m);
	sqlite3_mutex_leave(m);
}

int store_commit(struct store *st)
{
	sqlite3 *db = store_db(st);
	sqlite3_mutex_enter(sqlite3_db_mutex(db));
	BUG_ON(!store_txn_open(st));
	int ret = 0;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		/* Also when SQLite rolled back already (SQLITE_FULL...):
		 * "no transaction is active" then, and nothing was kept. */
		log_errx("store: commit: %s", sqlite3_errmsg(db));
		store_fail(db);
		if (!sqlite3_get_autocommit(db))
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		ret = -1;
	}
	shp_txn_end(st);
	return ret;
}

void store_rollback(struct store *st)
{
	sqlite3 *db = store_db(st);
	sqlite3_mutex_enter(sqlite3_db_mutex(db));
	BUG_ON(!store_txn_open(st));
	/* Nothing to undo if SQLite rolled back on an error already. */
	if (!sqlite3_get_autocommit(db) &&
	    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
		log_errx("store: rollback: %s", sqlite3_errmsg(db));
	shp_txn_end(st);
}

/* ---- account removal ---- */

static int shp_purge_schema(struct store *st, const struct store_schema *s,
			    const char *host, const char *user)
{
	for (const char *const *t = s->user_tables; t && *t; t++)
		if (shp_delete(st, *t, "purge", host, user, NULL) < 0)
			return -1;
	return 0;
}

/*
 * The user's rows go even when the account is already gone (1): data left
 * behind by an earlier deletion is cleaned up rather than kept forever.
 */
int store_user_purge(struct store *st, const char *host, const char *user)
{
	if (store_begin(st) < 0)
		return -1;
	if (shp_purge_schema(st, &accounts_schema, host, user) < 0)
		goto fail;
	for (const struct store_schema *const *s = store_schemas(); *s; s++)
		if (shp_purge_schema(st, *s, host, user) < 0)
			goto fail;
	int rc = accounts_delete(st, host, user);
	if (rc < 0)
		goto fail;
	return store_commit(st) < 0 ? -1 : rc;
fail:
	store_rollback(st);
	return -1;
}
