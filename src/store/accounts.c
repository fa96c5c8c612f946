/*
 * accounts.c - the accounts table: (host, username) -> SCRAM credentials
 * (see auth/scram_creds.h), with its migrations.
 *
 * Every statement is prepared with bound parameters; no SQL is ever built
 * from user data, and kept prepared (store_stmt_get). The connection is
 * shared by pool threads, so each call holds the connection's mutex from
 * taking its statement to putting it back: the error message
 * and change count it reads are then its own, not another thread's.
 * Credentials read back are checked for exact lengths, so a damaged row is
 * an error, never a short key.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "../core/log.h"
#include "accounts.h"

static const char *const accounts_migrations[] = {
	/* 1: the table. WITHOUT ROWID: the key is the natural lookup. */
	"CREATE TABLE accounts("
	" host TEXT NOT NULL,"
	" username TEXT NOT NULL,"
	" iterations INTEGER NOT NULL,"
	" salt BLOB NOT NULL,"
	" stored_sha1 BLOB NOT NULL,"
	" server_sha1 BLOB NOT NULL,"
	" stored_sha256 BLOB NOT NULL,"
	" server_sha256 BLOB NOT NULL,"
	" created INTEGER NOT NULL,"
	" PRIMARY KEY(host, username)"
	") WITHOUT ROWID",
	NULL,
};

/* No user_tables: its user column is "username", and store_user_purge()
 * removes the account row itself, last. */
const struct store_schema accounts_schema = {
	.name = "accounts",
	.migrations = accounts_migrations,
	.user_tables = NULL,
};

/* One call's hold on the connection. */
struct acc_call {
	struct store *st;
	sqlite3 *db;
	sqlite3_stmt *stmt;
};

static int acc_begin(struct acc_call *c, struct store *st, const char *sql)
{
	c->st = st;
	c->db = store_db(st);
	c->stmt = NULL;
	/* Recursive, so SQLite's own entry into it below is fine. */
	sqlite3_mutex_enter(sqlite3_db_mutex(c->db));
	if (store_stmt_get(st, sql, &c->stmt) != SQLITE_OK) {
		log_errx("store: accounts: prepare: %s",
			 sqlite3_errmsg(c->db));
		return store_fail(c->db);
	}
	return 0;
}

static void acc_end(struct acc_call *c)
{
	store_stmt_put(c->st, c->stmt);
	sqlite3_mutex_leave(sqlite3_db_mutex(c->db));
}

/* Logs the connection's last error; returns -1 for the caller. */
static int acc_fail(struct acc_call *c, const char *what)
{
	log_errx("store: accounts: %s: %s", what, sqlite3_errmsg(c->db));
	return store_fail(c->db);
}

/* Binds host and user as ?1 and ?2. */
static int acc_bind_key(struct acc_call *c, const char *host,
			const char *user)
{
	if (sqlite3_bind_text(c->stmt, 1, host, -1, SQLITE_STATIC) !=
		    SQLITE_OK ||
	    sqlite3_bind_text(c->stmt, 2, user, -1, SQLITE_STATIC) !=
		    SQLITE_OK)
		return acc_fail(c, "bind");
	return 0;
}

/* Binds the credentials as ?3 to ?8. */
static int acc_bind_creds(struct acc_call *c, const struct scram_creds *cr)
{
	sqlite3_stmt *s = c->stmt;
	int rc = sqlite3_bind_int64(s, 3, cr->iterations);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 4, cr->salt, sizeof(cr->salt),
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 5, cr->stored_sha1,
				       sizeof(cr->stored_sha1), SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 6, cr->server_sha1,
				       sizeof(cr->server_sha1), SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 7, cr->stored_sha256,
				       sizeof(cr->stored_sha256),
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 8, cr->server_sha256,
				       sizeof(cr->server_sha256),
				       SQLITE_STATIC);
	return rc == SQLITE_OK ? 0 : acc_fail(c, "bind");
}

/* Copies blob column col into dst, which must be exactly len bytes. */
static int acc_column_blob(sqlite3_stmt *s, int col, void *dst, size_t len)
{
	const void *p = sqlite3_column_blob(s, col);
	if (p == NULL || (size_t)sqlite3_column_bytes(s, col) != len)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

static int acc_read_creds(sqlite3_stmt *s, struct scram_creds *cr)
{
	sqlite3_int64 it = sqlite3_column_int64(s, 0);
	if (it < 1 || it > (sqlite3_int64)UINT_MAX)
		return -1;
	cr->iterations = (unsigned)it;
	if (acc_column_blob(s, 1, cr->salt, sizeof(cr->salt)) < 0 ||
	    acc_column_blob(s, 2, cr->stored_sha1, sizeof(cr->stored_sha1)) <
		    0 ||
	    acc_column_blob(s, 3, cr->server_sha1, sizeof(cr->server_sha1)) <
		    0 ||
	    acc_column_blob(s, 4, cr->stored_sha256,
			    sizeof(cr->stored_sha256)) < 0 ||
	    acc_column_blob(s, 5, cr->server_sha256,
			    sizeof(cr->server_sha256)) < 0)
		return -1;
	return 0;
}

int accounts_get(struct store *st, const char *host, const char *user,
		 struct scram_creds *creds_r)
{
	struct acc_call c;
	int ret = -1;
	if (acc_begin(&c, st,
		      "SELECT iterations, salt, stored_sha1, server_sha1, "
		      "stored_sha256, server_sha256 FROM accounts "
		      "WHERE host = ?1 AND username = ?2") < 0 ||
	    acc_bind_key(&c, host, user) < 0)
		goto out;
	int rc = sqlite3_step(c.stmt);
	if (rc == SQLITE_DONE) {
		ret = 1;
	} else if (rc != SQLITE_ROW) {
		acc_fail(&c, "get");
	} else if (acc_read_creds(c.stmt, creds_r) < 0) {
		log_errx("store: accounts: damaged credentials for %s@%s",
			 user, host);
	} else {
		ret = 0;
	}
out:
	acc_end(&c);
	return ret;
}

int accounts_exists(struct store *st, const char *host, const char *user)
{
	struct acc_call c;
	int ret = -1;
	if (acc_begin(&c, st,
		      "SELECT 1 FROM accounts "
		      "WHERE host = ?1 AND username = ?2") < 0 ||
	    acc_bind_key(&c, host, user) < 0)
		goto out;
	int rc = sqlite3_step(c.stmt);
	if (rc == SQLITE_ROW)
		ret = 0;
	else if (rc == SQLITE_DONE)
		ret = 1;
	else
		acc_fail(&c, "exists");
out:
	acc_end(&c);
	return ret;
}

int accounts_create(struct store *st, const char *host, const char *user,
		    const struct scram_creds *creds)
{
	struct acc_call c;
	int ret = -1;
	if (acc_begin(&c, st,
		      "INSERT INTO accounts(host, username, iterations, salt, "
		      "stored_sha1, server_sha1, stored_sha256, "
		      "server_sha256, created) "
		      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)") < 0 ||
	    acc_bind_key(&c, host, user) < 0 || acc_bind_creds(&c, creds) < 0)
		goto out;
	if (sqlite3_bind_int64(c.stmt, 9, (sqlite3_int64)time(NULL)) !=
	    SQLITE_OK) {
		acc_fail(&c, "bind");
		goto out;
	}
	/* Extended result codes are on (store.c): only a duplicate key
	 * gives SQLITE_CONSTRAINT_PRIMARYKEY. */
	int rc = sqlite3_step(c.stmt);
	if (rc == SQLITE_DONE)
		ret = 0;
	else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		ret = 1;
	else
		acc_fail(&c, "create");
out:
	acc_end(&c);
	return ret;
}

/* Steps a statement that changes at most one row: 0 changed, 1 no row. */
static int acc_step_change(struct acc_call *c, const char *what)
{
	if (sqlite3_step(c->stmt) != SQLITE_DONE)
		return acc_fail(c, what);
	/* Valid for this statement: we hold the connection's mutex. */
	return sqlite3_changes64(c->db) > 0 ? 0 : 1;
}

int accounts_set(struct store *st, const char *host, const char *user,
		 const struct scram_creds *creds)
{
	struct acc_call c;
	int ret = -1;
	if (acc_begin(&c, st,
		      "UPDATE accounts SET iterations = ?3, salt = ?4, "
		      "stored_sha1 = ?5, server_sha1 = ?6, stored_sha256 = ?7, "
		      "server_sha256 = ?8 WHERE host = ?1 AND username = ?2") ==
		    0 &&
	    acc_bind_key(&c, host, user) == 0 &&
	    acc_bind_creds(&c, creds) == 0)
		ret = acc_step_change(&c, "set");
	acc_end(&c);
	return ret;
}

int accounts_delete(struct store *st, const char *host, const char *user)
{
	struct acc_call c;
	int ret = -1;
	if (acc_begin(&c, st,
		      "DELETE FROM accounts "
		      "WHERE host = ?1 AND username = ?2") == 0 &&
	    acc_bind_key(&c, host, user) == 0)
		ret = acc_step_change(&c, "delete");
	acc_end(&c);
	return ret;
}

int accounts_list(struct store *st, const char *host, accounts_list_fn *fn,
		  void *ud)
{
	struct acc_call c;
	if (acc_begin(&c, st,
		      "SELECT username FROM accounts WHERE host = ?1 "
		      "ORDER BY username") < 0 ||
	    sqlite3_bind_text(c.stmt, 1, host, -1, SQLITE_STATIC) !=
		    SQLITE_OK) {
		if (c.stmt != NULL)
			acc_fail(&c, "bind");
		acc_end(&c);
		return -1;
	}
	int rc;
	while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
		const char *u = (const char *)sqlite3_column_text(c.stmt, 0);
		if (u != NULL)
			fn(u, ud);
	}
	int ret = rc == SQLITE_DONE ? 0 : acc_fail(&c, "list");
	acc_end(&c);
	return ret;
}
