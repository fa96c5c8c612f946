/*
 * mam.c - the message archive tables (see mam.h).
 *
 * As in accounts.c, every statement is a fixed text with bound values,
 * kept prepared (store_stmt_get), and each call holds the connection's
 * mutex from taking its statement to putting it back.
 *
 * The archive's rowid is the archive id itself (microseconds, handed out
 * increasing by mod_mam), so the retention purge and the "highest id"
 * read walk the table's own b-tree and need no index of their own.
 */
#include <string.h>

#include "../core/bug.h"
#include "../core/log.h"
#include "mam.h"

static const char *const mam_migrations[] = {
	/* 1 */
	"CREATE TABLE mam_users (uid INTEGER PRIMARY KEY, "
	"host TEXT NOT NULL, user TEXT NOT NULL, UNIQUE (host, user));"
	"CREATE TABLE mam (id INTEGER PRIMARY KEY, uid INTEGER NOT NULL "
	"REFERENCES mam_users (uid) ON DELETE CASCADE, "
	"with_jid TEXT NOT NULL, with_res TEXT NOT NULL, value BLOB NOT NULL);"
	"CREATE INDEX mam_user ON mam (uid, id);"
	"CREATE INDEX mam_with ON mam (uid, with_jid, id);"
	"CREATE TABLE mam_prefs (host TEXT NOT NULL, user TEXT NOT NULL, "
	"value BLOB NOT NULL, PRIMARY KEY (host, user)) WITHOUT ROWID;"
	"CREATE TABLE mam_meta (key TEXT PRIMARY KEY, value NOT NULL)"
	" WITHOUT ROWID",
	NULL,
};

const struct store_schema mam_schema = {
	.name = "mam",
	.migrations = mam_migrations,
	/* mam goes with mam_users (ON DELETE CASCADE) */
	.user_tables = (const char *const[]){ "mam_users", "mam_prefs", NULL },
};

struct mam_call {
	struct store *st;
	sqlite3 *db;
	sqlite3_stmt *stmt;
	const char *op;
};

static int mam_fail(struct mam_call *c, const char *what)
{
	log_errx("store: mam: %s: %s: %s", c->op, what, sqlite3_errmsg(c->db));
	return store_fail(c->db);
}

static int mam_begin(struct mam_call *c, struct store *st, const char *op,
		     const char *sql)
{
	*c = (struct mam_call){ .st = st, .db = store_db(st), .op = op };
	sqlite3_mutex_enter(sqlite3_db_mutex(c->db));
	if (store_txn_open(st) && sqlite3_get_autocommit(c->db)) {
		log_errx("store: mam: %s: the transaction was rolled back", op);
		return -1;
	}
	if (store_stmt_get(st, sql, &c->stmt) != SQLITE_OK)
		return mam_fail(c, "prepare");
	return 0;
}

static void mam_end(struct mam_call *c)
{
	if (c->stmt != NULL)
		store_stmt_put(c->st, c->stmt);
	sqlite3_mutex_leave(sqlite3_db_mutex(c->db));
}

static int bind_text(struct mam_call *c, int idx, const char *s)
{
	int rc = s == NULL ? sqlite3_bind_null(c->stmt, idx)
			   : sqlite3_bind_text(c->stmt, idx, s, -1,
					       SQLITE_STATIC);
	return rc == SQLITE_OK ? 0 : mam_fail(c, "bind");
}

static int bind_int(struct mam_call *c, int idx, int64_t v)
{
	return sqlite3_bind_int64(c->stmt, idx, v) == SQLITE_OK
		       ? 0
		       : mam_fail(c, "bind");
}

static int bind_user(struct mam_call *c, const char *host, const char *user)
{
	BUG_ON(host == NULL || user == NULL);
	return bind_text(c, 1, host) < 0 || bind_text(c, 2, user) < 0 ? -1 : 0;
}

static const void *column_bytes(struct mam_call *c, int col, size_t *len)
{
	const void *p = sqlite3_column_blob(c->stmt, col);
	int n = sqlite3_column_bytes(c->stmt, col);
	*len = p != NULL && n > 0 ? (size_t)n : 0;
	return *len > 0 ? p : "";
}

/* Steps a statement that yields at most one row: 0 a row (its first
 * column, when v is not NULL, in *v), 1 none, -1 a failure (logged). */
static int step_row(struct mam_call *c, int64_t *v)
{
	int rc = sqlite3_step(c->stmt);
	if (rc == SQLITE_ROW) {
		if (v != NULL)
			*v = sqlite3_column_int64(c->stmt, 0);
		return 0;
	}
	return rc == SQLITE_DONE ? 1 : mam_fail(c, "step");
}

static int find_user(struct store *st, const char *host, const char *user,
		     int64_t *uid_r)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "user",
		      "SELECT uid FROM mam_users WHERE host = ?1 "
		      "AND user = ?2") == 0 &&
	    bind_user(&c, host, user) == 0) {
		ret = step_row(&c, uid_r);
	}
	mam_end(&c);
	return ret;
}

int mam_store_user(struct store *st, const char *host, const char *user,
		   bool create, int64_t *uid_r)
{
	int rc = find_user(st, host, user, uid_r);
	if (rc != 1 || !create)
		return rc;
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "user",
		      "INSERT INTO mam_users (host, user) VALUES (?1, ?2)") ==
		    0 &&
	    bind_user(&c, host, user) == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_DONE) {
			*uid_r = sqlite3_last_insert_rowid(c.db);
			ret = 0;
		} else {
			mam_fail(&c, "step");
		}
	}
	mam_end(&c);
	return ret;
}

int mam_store_append(struct store *st, int64_t uid, int64_t id,
		     const char *with, const char *with_res,
		     const void *value, size_t len)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "append",
		      "INSERT INTO mam (id, uid, with_jid, with_res, value) "
		      "VALUES (?2, ?1, ?3, ?4, ?5)") == 0 &&
	    bind_int(&c, 1, uid) == 0 && bind_int(&c, 2, id) == 0 &&
	    bind_text(&c, 3, with ? with : "") == 0 &&
	    bind_text(&c, 4, with_res ? with_res : "") == 0) {
		int rc = len == 0 ? sqlite3_bind_zeroblob(c.stmt, 5, 0)
				  : sqlite3_bind_blob64(c.stmt, 5, value, len,
							SQLITE_STATIC);
		if (rc != SQLITE_OK)
			mam_fail(&c, "bind");
		else if (sqlite3_step(c.stmt) != SQLITE_DONE)
			mam_fail(&c, "step");
		else
			ret = 0;
	}
	mam_end(&c);
	return ret;
}

int mam_store_exists(struct store *st, int64_t uid, int64_t id)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "exists",
		      "SELECT 1 FROM mam WHERE id = ?2 AND uid = ?1") == 0 &&
	    bind_int(&c, 1, uid) == 0 && bind_int(&c, 2, id) == 0) {
		ret = step_row(&c, NULL);
	}
	mam_end(&c);
	return ret;
}

/*
 * The range queries: four fixed texts (with or without the `with` filter,
 * oldest or newest first). INDEXED BY pins the index whose order is the
 * answer's, so a page is an index range scan of max + 1 entries whatever
 * the planner would guess without statistics.
 */
static const char *const range_sql[2][2] = {
	[0][0] = "SELECT id, value FROM mam INDEXED BY mam_user "
		 "WHERE uid = ?1 AND id > ?3 AND id < ?4 "
		 "ORDER BY id ASC LIMIT ?5",
	[0][1] = "SELECT id, value FROM mam INDEXED BY mam_user "
		 "WHERE uid = ?1 AND id > ?3 AND id < ?4 "
		 "ORDER BY id DESC LIMIT ?5",
	[1][0] = "SELECT id, value FROM mam INDEXED BY mam_with "
		 "WHERE uid = ?1 AND with_jid = ?6 "
		 "AND (?7 IS NULL OR with_res = ?7) AND id > ?3 AND id < ?4 "
		 "ORDER BY id ASC LIMIT ?5",
	[1][1] = "SELECT id, value FROM mam INDEXED BY mam_with "
		 "WHERE uid = ?1 AND with_jid = ?6 "
		 "AND (?7 IS NULL OR with_res = ?7) AND id > ?3 AND id < ?4 "
		 "ORDER BY id DESC LIMIT ?5",
};

static const char *const count_sql[2] = {
	"SELECT count(*) FROM mam INDEXED BY mam_user "
	"WHERE uid = ?1 AND id > ?3 AND id < ?4",
	"SELECT count(*) FROM mam INDEXED BY mam_with "
	"WHERE uid = ?1 AND with_jid = ?6 "
	"AND (?7 IS NULL OR with_res = ?7) AND id > ?3 AND id < ?4",
};

static int bind_range(struct mam_call *c, const struct mam_store_query *q)
{
	if (bind_int(c, 1, q->uid) < 0 || bind_int(c, 3, q->lo) < 0 ||
	    bind_int(c, 4, q->hi) < 0)
		return -1;
	if (q->with != NULL &&
	    (bind_text(c, 6, q->with) < 0 || bind_text(c, 7, q->with_res) < 0))
		return -1;
	return 0;
}

static int query_range(struct store *st, const struct mam_store_query *q,
		       mam_item_fn *fn, void *ud, bool *more_r)
{
	struct mam_call c;
	int ret = -1;
	size_t max = q->max > 100000 ? 100000 : q->max;
	*more_r = false;
	if (mam_begin(&c, st, "query",
		      range_sql[q->with != NULL][q->backward]) < 0 ||
	    bind_range(&c, q) < 0 || bind_int(&c, 5, (int64_t)max + 1) < 0)
		goto out;
	size_t n = 0;
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		if (n == max) {
			*more_r = true;
			break;
		}
		struct mam_store_item it = { .id = sqlite3_column_int64(c.stmt,
									0) };
		it.value = column_bytes(&c, 1, &it.len);
		n++;
		if (fn(&it, ud) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		mam_fail(&c, "step");
	else
		ret = 0;
out:
	mam_end(&c);
	return ret;
}

/* One id of an `ids` query: 1 if the account has no such message. */
static int query_one(struct store *st, const struct mam_store_query *q,
		     int64_t id, mam_item_fn *fn, void *ud, bool *taken_r)
{
	struct mam_call c;
	int ret = -1;
	*taken_r = false;
	if (mam_begin(&c, st, "query id",
		      "SELECT id, value, with_jid, with_res FROM mam "
		      "WHERE id = ?2 AND uid = ?1") < 0 ||
	    bind_int(&c, 1, q->uid) < 0 || bind_int(&c, 2, id) < 0)
		goto out;
	int rc = sqlite3_step(c.stmt);
	if (rc == SQLITE_DONE) {
		ret = 1;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		mam_fail(&c, "step");
		goto out;
	}
	ret = 0;
	const char *with = (const char *)sqlite3_column_text(c.stmt, 2);
	const char *res = (const char *)sqlite3_column_text(c.stmt, 3);
	if (id <= q->lo || id >= q->hi)
		goto out;
	if (q->with != NULL && (with == NULL || strcmp(with, q->with) != 0))
		goto out;
	if (q->with_res != NULL && (res == NULL || strcmp(res, q->with_res)))
		goto out;
	struct mam_store_item it = { .id = id };
	it.value = column_bytes(&c, 1, &it.len);
	*taken_r = true;
	fn(&it, ud);
out:
	mam_end(&c);
	return ret;
}

/* ids (sorted, unique, checked by the caller) must all exist: returns 1
 * as soon as one does not, having called fn for none of them. */
static int query_ids(struct store *st, const struct mam_store_query *q,
		     mam_item_fn *fn, void *ud, bool *more_r)
{
	*more_r = false;
	for (size_t i = 0; i < q->nids; i++) {
		int rc = mam_store_exists(st, q->uid, q->ids[i]);
		if (rc != 0)
			return rc;
	}
	size_t n = 0;
	for (size_t k = 0; k < q->nids; k++) {
		size_t i = q->backward ? q->nids - 1 - k : k;
		bool taken;
		if (n == q->max) {
			/* More only if another one would pass the filters:
			 * unknown without reading it; say so. */
			*more_r = true;
			break;
		}
		int rc = query_one(st, q, q->ids[i], fn, ud, &taken);
		if (rc < 0)
			return -1;
		n += taken;
	}
	return 0;
}

int mam_store_query(struct store *st, const struct mam_store_query *q,
		    mam_item_fn *fn, void *ud, bool *more_r)
{
	if (q->nids > 0)
		return query_ids(st, q, fn, ud, more_r);
	return query_range(st, q, fn, ud, more_r);
}

int mam_store_count(struct store *st, const struct mam_store_query *q,
		    size_t *count_r)
{
	struct mam_call c;
	int ret = -1;
	*count_r = 0;
	if (mam_begin(&c, st, "count", count_sql[q->with != NULL]) == 0 &&
	    bind_range(&c, q) == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_ROW) {
			*count_r = (size_t)sqlite3_column_int64(c.stmt, 0);
			ret = 0;
		} else {
			mam_fail(&c, "step");
		}
	}
	mam_end(&c);
	return ret;
}

static int bound(struct store *st, const char *sql, int64_t uid, int64_t lo,
		 int64_t *id_r)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "bounds", sql) == 0 &&
	    bind_int(&c, 1, uid) == 0 && bind_int(&c, 3, lo) == 0) {
		ret = step_row(&c, id_r);
	}
	mam_end(&c);
	return ret;
}

int mam_store_bounds(struct store *st, int64_t uid, int64_t lo,
		     int64_t *first_r, int64_t *last_r)
{
	int rc = bound(st,
		       "SELECT id FROM mam INDEXED BY mam_user WHERE uid = ?1 "
		       "AND id > ?3 ORDER BY id ASC LIMIT 1",
		       uid, lo, first_r);
	if (rc != 0)
		return rc;
	return bound(st,
		     "SELECT id FROM mam INDEXED BY mam_user WHERE uid = ?1 "
		     "AND id > ?3 ORDER BY id DESC LIMIT 1",
		     uid, lo, last_r);
}

int mam_store_purge(struct store *st, int64_t before, size_t *deleted_r)
{
	struct mam_call c;
	int ret = -1;
	*deleted_r = 0;
	if (mam_begin(&c, st, "purge", "DELETE FROM mam WHERE id < ?1") == 0 &&
	    bind_int(&c, 1, before) == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_DONE) {
			*deleted_r = (size_t)sqlite3_changes(c.db);
			ret = 0;
		} else {
			mam_fail(&c, "step");
		}
	}
	mam_end(&c);
	return ret;
}

int mam_store_high(struct store *st, int64_t *high_r)
{
	struct mam_call c;
	int ret = -1;
	*high_r = 0;
	/* max(id) of a rowid table is its b-tree's last entry. */
	if (mam_begin(&c, st, "high",
		      "SELECT max(coalesce((SELECT max(id) FROM mam), 0), "
		      "coalesce((SELECT value FROM mam_meta "
		      "WHERE key = 'high'), 0))") == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_ROW) {
			*high_r = sqlite3_column_int64(c.stmt, 0);
			ret = 0;
		} else {
			mam_fail(&c, "step");
		}
	}
	mam_end(&c);
	return ret;
}

int mam_store_set_high(struct store *st, int64_t high)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "set high",
		      "INSERT INTO mam_meta (key, value) VALUES ('high', ?1) "
		      "ON CONFLICT (key) DO UPDATE SET value = "
		      "max(value, excluded.value)") == 0 &&
	    bind_int(&c, 1, high) == 0) {
		if (sqlite3_step(c.stmt) == SQLITE_DONE)
			ret = 0;
		else
			mam_fail(&c, "step");
	}
	mam_end(&c);
	return ret;
}

int mam_store_key(struct store *st, const unsigned char *fresh, size_t len,
		  unsigned char *key_r)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "key",
		      "INSERT INTO mam_meta (key, value) VALUES ('idkey', ?1) "
		      "ON CONFLICT (key) DO NOTHING") == 0) {
		if (sqlite3_bind_blob(c.stmt, 1, fresh, (int)len,
				      SQLITE_STATIC) != SQLITE_OK)
			mam_fail(&c, "bind");
		else if (sqlite3_step(c.stmt) != SQLITE_DONE)
			mam_fail(&c, "step");
		else
			ret = 0;
	}
	mam_end(&c);
	if (ret < 0)
		return -1;
	ret = -1;
	if (mam_begin(&c, st, "key",
		      "SELECT value FROM mam_meta WHERE key = 'idkey'") == 0) {
		if (sqlite3_step(c.stmt) != SQLITE_ROW) {
			mam_fail(&c, "step");
		} else if (sqlite3_column_type(c.stmt, 0) != SQLITE_BLOB ||
			   sqlite3_column_bytes(c.stmt, 0) != (int)len) {
			log_errx("store: mam: the archive key is damaged");
		} else {
			memcpy(key_r, sqlite3_column_blob(c.stmt, 0), len);
			ret = 0;
		}
	}
	mam_end(&c);
	return ret;
}

int mam_store_prefs_all(struct store *st, mam_prefs_fn *fn, void *ud)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "prefs",
		      "SELECT host, user, value FROM mam_prefs") < 0)
		goto out;
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		const char *host = (const char *)sqlite3_column_text(c.stmt, 0);
		const char *user = (const char *)sqlite3_column_text(c.stmt, 1);
		size_t len;
		const void *v = column_bytes(&c, 2, &len);
		if (host == NULL || user == NULL)
			continue;
		if (fn(host, user, v, len, ud) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	ret = rc == SQLITE_DONE ? 0 : mam_fail(&c, "step");
out:
	mam_end(&c);
	return ret;
}

int mam_store_get(struct store *st, int64_t uid, int64_t id, struct buf *out)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "get",
		      "SELECT value FROM mam WHERE id = ?2 AND uid = ?1") ==
		    0 &&
	    bind_int(&c, 1, uid) == 0 && bind_int(&c, 2, id) == 0) {
		int rc = sqlite3_step(c.stmt);
		size_t len;
		if (rc == SQLITE_ROW) {
			const void *v = column_bytes(&c, 0, &len);
			ret = buf_append(out, v, len) < 0 ? -1 : 0;
		} else if (rc == SQLITE_DONE) {
			ret = 1;
		} else {
			mam_fail(&c, "step");
		}
	}
	mam_end(&c);
	return ret;
}

int mam_store_replace(struct store *st, int64_t uid, int64_t id,
		      const void *value, size_t len)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "replace",
		      "UPDATE mam SET value = ?3 WHERE id = ?2 AND uid = ?1") ==
		    0 &&
	    bind_int(&c, 1, uid) == 0 && bind_int(&c, 2, id) == 0) {
		int rc = len == 0 ? sqlite3_bind_zeroblob(c.stmt, 3, 0)
				  : sqlite3_bind_blob64(c.stmt, 3, value, len,
							SQLITE_STATIC);
		if (rc != SQLITE_OK)
			mam_fail(&c, "bind");
		else if (sqlite3_step(c.stmt) != SQLITE_DONE)
			mam_fail(&c, "step");
		else
			ret = sqlite3_changes(c.db) > 0 ? 0 : 1;
	}
	mam_end(&c);
	return ret;
}

static int drop_step(struct store *st, const char *sql, int64_t uid,
		     int64_t upto)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "drop", sql) == 0 && bind_int(&c, 1, uid) == 0 &&
	    (sqlite3_bind_parameter_count(c.stmt) < 2 ||
	     bind_int(&c, 2, upto) == 0)) {
		if (sqlite3_step(c.stmt) == SQLITE_DONE)
			ret = 0;
		else
			mam_fail(&c, "step");
	}
	mam_end(&c);
	return ret;
}

int mam_store_drop(struct store *st, int64_t uid, int64_t upto)
{
	/* The key goes only with its last row: a newer archive of the
	 * same name (rows above upto) keeps it. */
	if (drop_step(st, "DELETE FROM mam WHERE uid = ?1 AND id <= ?2",
		      uid, upto) < 0)
		return -1;
	return drop_step(st,
			 "DELETE FROM mam_users WHERE uid = ?1 "
			 "AND NOT EXISTS (SELECT 1 FROM mam WHERE uid = ?1)",
			 uid, upto);
}

int mam_store_archives(struct store *st, const char *host,
		       mam_archive_fn *fn, void *ud)
{
	struct mam_call c;
	int ret = -1;
	if (mam_begin(&c, st, "archives",
		      "SELECT uid, user FROM mam_users WHERE host = ?1") < 0 ||
	    bind_text(&c, 1, host) < 0)
		goto out;
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		const char *user = (const char *)sqlite3_column_text(c.stmt, 1);
		if (user != NULL &&
		    fn(sqlite3_column_int64(c.stmt, 0), user, ud) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	ret = rc == SQLITE_DONE ? 0 : mam_fail(&c, "step");
out:
	mam_end(&c);
	return ret;
}
