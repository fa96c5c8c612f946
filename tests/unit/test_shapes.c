/*
 * test_shapes.c - the storage shapes (store/shapes.c): keyval, map and
 * archive over tables of test schemas registered with
 * store_register_schemas(), transactions across threads, account purge
 * over every schema's user_tables, and the storage failure paths.
 *
 * Every test runs on a fresh database in a directory under /tmp, removed
 * afterwards. Threads record what they saw; cmocka checks run on the main
 * thread only (its asserts are not thread-safe), and joins have a timeout
 * so that a deadlock fails the test instead of hanging it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/scram_creds.h"
#include "core/buf.h"
#include "core/log.h"
#include "store/accounts.h"
#include "store/shapes.h"
#include "store/store.h"

/* ---- test schemas ---- */

/* The triggers are no-ops whose creation fails if the table they name
 * does not exist yet: they check the order of migration. */
static const char *const one_migrations[] = {
	"CREATE TABLE t_kv(host TEXT NOT NULL, user TEXT NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(host, user)) WITHOUT ROWID;"
	"CREATE TABLE t_map(host TEXT NOT NULL, user TEXT NOT NULL,"
	" key TEXT NOT NULL, value BLOB NOT NULL,"
	" PRIMARY KEY(host, user, key)) WITHOUT ROWID;"
	"CREATE TRIGGER one_after_accounts AFTER DELETE ON accounts"
	" WHEN 0 BEGIN SELECT 1; END",
	"CREATE TABLE t_arch(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" host TEXT NOT NULL, user TEXT NOT NULL, ts INTEGER NOT NULL,"
	" with_jid TEXT NOT NULL, value BLOB NOT NULL);"
	"CREATE INDEX t_arch_user ON t_arch(host, user, id);"
	/* no primary key: the upserts must refuse it */
	"CREATE TABLE t_nokey(host TEXT, user TEXT, key TEXT, value BLOB)",
	NULL,
};
static const char *const one_tables[] = { "t_kv", "t_map", "t_arch", NULL };
static const struct store_schema one_schema = {
	.name = "test_one",
	.migrations = one_migrations,
	.user_tables = one_tables,
};

static const char *const two_migrations[] = {
	"CREATE TABLE t_kv2(host TEXT NOT NULL, user TEXT NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(host, user)) WITHOUT ROWID;"
	"CREATE TRIGGER two_after_one AFTER DELETE ON t_arch"
	" WHEN 0 BEGIN SELECT 1; END;"
	/* its index runs against key order: the map must sort anyway */
	"CREATE TABLE t_map_desc(host TEXT NOT NULL, user TEXT NOT NULL,"
	" key TEXT NOT NULL, value BLOB NOT NULL,"
	" PRIMARY KEY(host, user, key DESC)) WITHOUT ROWID;"
	/* host and user columns, but not a user table: purge keeps it */
	"CREATE TABLE t_keep(host TEXT NOT NULL, user TEXT NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(host, user)) WITHOUT ROWID",
	NULL,
};
static const char *const two_tables[] = { "t_kv2", "t_map_desc", NULL };
static const struct store_schema two_schema = {
	.name = "test_two",
	.migrations = two_migrations,
	.user_tables = two_tables,
};

/* A schema without tables whose user table does not exist. */
static const char *const no_migrations[] = { NULL };
static const char *const bad_tables[] = { "t_missing", NULL };
static const struct store_schema bad_schema = {
	.name = "test_bad",
	.migrations = no_migrations,
	.user_tables = bad_tables,
};

static const struct store_schema *const test_schemas[] = {
	&one_schema, &two_schema, NULL,
};
static const struct store_schema *const bad_schemas[] = {
	&one_schema, &two_schema, &bad_schema, NULL,
};

/* ---- fixture ---- */

struct fx {
	char root[64];
	char data[96];
	struct store *st;
};

static struct store *open_ok(const char *data)
{
	struct store *st = NULL;
	char *error = NULL;
	if (store_open(data, &st, &error) != 0)
		fail_msg("store_open: %s", error ? error : "(no message)");
	assert_null(error);
	assert_non_null(st);
	return st;
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/test_shapes.XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->data, sizeof(f->data), "%s/data", f->root);
	store_register_schemas(test_schemas);
	f->st = open_ok(f->data);
	*state = f;
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	store_register_schemas(NULL);
	int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

static long long query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	long long v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

/* Checks that (host, user) in the keyval table holds exactly want. */
static void assert_kv(struct store *st, const char *table, const char *host,
		      const char *user, const void *want, size_t len)
{
	struct buf b = { 0 };
	assert_int_equal(store_kv_get(st, table, host, user, &b), 0);
	assert_int_equal(b.len, len);
	if (len > 0)
		assert_memory_equal(b.data, want, len);
	buf_reset(&b);
}

static void assert_kv_missing(struct store *st, const char *table,
			      const char *host, const char *user)
{
	struct buf b = { 0 };
	assert_int_equal(store_kv_get(st, table, host, user, &b), 1);
	assert_int_equal(b.len, 0);
	buf_reset(&b);
}

static size_t arch_count(struct store *st, const char *host,
			 const char *user)
{
	size_t n = 12345;
	assert_int_equal(store_archive_count(st, "t_arch", host, user, &n),
			 0);
	return n;
}

/* ---- schemas ---- */

/* Accounts first, then the registered schemas in order (the triggers
 * would not have been created otherwise), each recorded. */
static void test_schemas_migrated(void **state)
{
	struct fx *f = *state;
	sqlite3 *db = store_db(f->st);
	assert_int_equal(query_int(db, "SELECT version FROM schema_version "
				       "WHERE name = 'accounts'"),
			 1);
	assert_int_equal(query_int(db, "SELECT version FROM schema_version "
				       "WHERE name = 'test_one'"),
			 2);
	assert_int_equal(query_int(db, "SELECT version FROM schema_version "
				       "WHERE name = 'test_two'"),
			 1);
	assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema "
				       "WHERE type = 'trigger'"),
			 2);
	assert_int_equal(store_kv_set(f->st, "t_kv", "a", "u", "x", 1), 0);
	store_close(f->st);

	/* Reopening applies nothing again and keeps the data. */
	f->st = open_ok(f->data);
	assert_int_equal(query_int(store_db(f->st),
				   "SELECT count(*) FROM schema_version"),
			 3);
	assert_kv(f->st, "t_kv", "a", "u", "x", 1);
	store_close(f->st);

	/* With no schemas registered only accounts is migrated. */
	char fresh[128];
	snprintf(fresh, sizeof(fresh), "%s/fresh", f->root);
	store_register_schemas(NULL);
	f->st = open_ok(fresh);
	assert_int_equal(query_int(store_db(f->st),
				   "SELECT count(*) FROM schema_version"),
			 1);
	assert_int_equal(query_int(store_db(f->st),
				   "SELECT count(*) FROM sqlite_schema "
				   "WHERE name = 't_kv'"),
			 0);
}

/* A schema listed in the wrong order (two needs one's table) fails to
 * open: store_open() follows the registered order. */
static void test_schema_order(void **state)
{
	struct fx *f = *state;
	static const struct store_schema *const reversed[] = {
		&two_schema, &one_schema, NULL,
	};
	char fresh[128];
	snprintf(fresh, sizeof(fresh), "%s/fresh", f->root);
	store_register_schemas(reversed);
	struct store *st = NULL;
	char *error = NULL;
	assert_int_equal(store_open(fresh, &st, &error), -1);
	assert_null(st);
	assert_non_null(error);
	assert_non_null(strstr(error, "test_two"));
	free(error);
}

/* ---- keyval ---- */

static void test_kv(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	static const char bin[] = { 'a', 0, 'b', 0, 0, (char)0xff, 'c' };
	struct buf b = { 0 };

	assert_kv_missing(st, "t_kv", "a.example", "alice");
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice", bin,
				      sizeof(bin)),
			 0);
	assert_kv(st, "t_kv", "a.example", "alice", bin, sizeof(bin));

	/* get resets a buffer that held something */
	assert_int_equal(buf_append_c(&b, "old contents"), 0);
	assert_int_equal(store_kv_get(st, "t_kv", "a.example", "alice", &b),
			 0);
	assert_int_equal(b.len, sizeof(bin));
	assert_memory_equal(b.data, bin, sizeof(bin));
	assert_int_equal(buf_append_c(&b, "more"), 0);
	assert_int_equal(store_kv_get(st, "t_kv", "a.example", "nobody", &b),
			 1);
	assert_int_equal(b.len, 0);
	buf_reset(&b);

	/* overwrite, then the empty value, which is not a missing one */
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice",
				      "second", 6),
			 0);
	assert_kv(st, "t_kv", "a.example", "alice", "second", 6);
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice", "", 0),
			 0);
	assert_kv(st, "t_kv", "a.example", "alice", "", 0);
	assert_int_equal(query_int(store_db(st), "SELECT count(*) FROM t_kv"),
			 1);

	/* NULL deletes; deleting nothing is fine */
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice", NULL,
				      0),
			 0);
	assert_kv_missing(st, "t_kv", "a.example", "alice");
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice", NULL,
				      0),
			 0);
	assert_int_equal(query_int(store_db(st), "SELECT count(*) FROM t_kv"),
			 0);
}

/* Users, hosts and the host itself (user "") are separate; names are
 * data, not SQL. */
static void test_kv_isolation(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	const char *who[][2] = {
		{ "a.example", "alice" }, { "b.example", "alice" },
		{ "a.example", "bob" },   { "a.example", "" },
		{ "a.example", "o'b\"); DROP TABLE t_kv;--" },
		{ "a.example", "%" },
	};
	size_t n = sizeof(who) / sizeof(who[0]);
	for (size_t i = 0; i < n; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%zu", i);
		assert_int_equal(store_kv_set(st, "t_kv", who[i][0],
					      who[i][1], v, strlen(v)),
				 0);
	}
	for (size_t i = 0; i < n; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%zu", i);
		assert_kv(st, "t_kv", who[i][0], who[i][1], v, strlen(v));
	}
	assert_kv_missing(st, "t_kv", "a.example", "_");
	assert_kv_missing(st, "t_kv", "c.example", "alice");
	/* the same (host, user) in another table is another value */
	assert_kv_missing(st, "t_kv2", "a.example", "alice");
	assert_int_equal(store_kv_set(st, "t_kv", "a.example", "alice", NULL,
				      0),
			 0);
	for (size_t i = 1; i < n; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%zu", i);
		assert_kv(st, "t_kv", who[i][0], who[i][1], v, strlen(v));
	}
}

/* value_r->max bounds what a get may return. */
static void test_value_max(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct buf b = { .max = 4 };
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "12345", 5), 0);
	assert_int_equal(store_map_set(st, "t_map", "h", "u", "k", "12345",
				       5),
			 0);
	assert_int_equal(store_kv_get(st, "t_kv", "h", "u", &b), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(store_map_get(st, "t_map", "h", "u", "k", &b), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 4);

	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "1234", 4), 0);
	assert_int_equal(store_map_set(st, "t_map", "h", "u", "k", "1234", 4),
			 0);
	assert_int_equal(store_kv_get(st, "t_kv", "h", "u", &b), 0);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "1234", 4);
	assert_int_equal(store_map_get(st, "t_map", "h", "u", "k", &b), 0);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "1234", 4);
	buf_reset(&b);
}

/* ---- map ---- */

#define MAP_MAX 16

struct map_seen {
	char keys[MAP_MAX][16];
	char vals[MAP_MAX][16];
	size_t lens[MAP_MAX];
	size_t n, stop_after;
	bool null_value;
};

static int map_cb(const char *key, const void *value, size_t len, void *ud)
{
	struct map_seen *m = ud;
	if (value == NULL)
		m->null_value = true;
	if (m->n < MAP_MAX) {
		snprintf(m->keys[m->n], sizeof(m->keys[0]), "%s", key);
		m->lens[m->n] = len;
		if (value != NULL && len <= sizeof(m->vals[0]))
			memcpy(m->vals[m->n], value, len);
	}
	m->n++;
	return m->stop_after != 0 && m->n >= m->stop_after;
}

static void check_map(struct store *st, const char *table)
{
	/* inserted out of order; bytewise order is B a b é */
	const char *keys[] = { "b", "\xc3\xa9", "a", "B" };
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(store_map_set(st, table, "h", "alice",
					       keys[i], keys[i],
					       strlen(keys[i]) + 1),
				 0);
	assert_int_equal(store_map_set(st, table, "h", "alice", "empty", "",
				       0),
			 0);
	assert_int_equal(store_map_set(st, table, "h", "bob", "a", "bob",
				       3),
			 0);
	assert_int_equal(store_map_set(st, table, "other", "alice", "a",
				       "o", 1),
			 0);

	struct map_seen m = { .n = 0 };
	assert_int_equal(store_map_all(st, table, "h", "alice", map_cb, &m),
			 0);
	assert_int_equal(m.n, 5);
	assert_false(m.null_value);
	const char *want[] = { "B", "a", "b", "empty", "\xc3\xa9" };
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(m.keys[i], want[i]);
		if (strcmp(want[i], "empty") == 0) {
			assert_int_equal(m.lens[i], 0);
			continue;
		}
		/* the value includes its NUL byte */
		assert_int_equal(m.lens[i], strlen(want[i]) + 1);
		assert_memory_equal(m.vals[i], want[i], m.lens[i]);
	}

	/* stop early */
	m = (struct map_seen){ .stop_after = 2 };
	assert_int_equal(store_map_all(st, table, "h", "alice", map_cb, &m),
			 0);
	assert_int_equal(m.n, 2);
	assert_string_equal(m.keys[1], "a");

	/* prefix: only the keys that start with it, bytewise, in order */
	assert_int_equal(store_map_set(st, table, "h", "alice", "n\x01" "1",
				       "x", 1),
			 0);
	assert_int_equal(store_map_set(st, table, "h", "alice", "n\x01" "0",
				       "y", 1),
			 0);
	assert_int_equal(store_map_set(st, table, "h", "alice", "n2\x01" "0",
				       "z", 1),
			 0);
	assert_int_equal(store_map_set(st, table, "h", "bob", "n\x01" "9",
				       "w", 1),
			 0);
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_prefix(st, table, "h", "alice", "n\x01",
					  map_cb, &m),
			 0);
	assert_int_equal(m.n, 2);
	assert_string_equal(m.keys[0], "n\x01" "0");
	assert_string_equal(m.keys[1], "n\x01" "1");
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_prefix(st, table, "h", "alice", "\xc3",
					  map_cb, &m),
			 0);
	assert_int_equal(m.n, 1);
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_prefix(st, table, "h", "alice", "zz",
					  map_cb, &m),
			 0);
	assert_int_equal(m.n, 0);
	for (const char *const *k = (const char *const[]){ "n\x01" "1",
							   "n\x01" "0",
							   "n2\x01" "0",
							   NULL };
	     *k; k++)
		assert_int_equal(store_map_set(st, table, "h", "alice", *k,
					       NULL, 0),
				 0);
	assert_int_equal(store_map_set(st, table, "h", "bob", "n\x01" "9",
				       NULL, 0),
			 0);

	/* get, overwrite, delete one key */
	struct buf b = { 0 };
	assert_int_equal(store_map_get(st, table, "h", "alice", "a", &b), 0);
	assert_int_equal(b.len, 2);
	assert_int_equal(store_map_get(st, table, "h", "alice", "empty",
				       &b),
			 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(store_map_get(st, table, "h", "alice", "A", &b), 1);
	assert_int_equal(store_map_set(st, table, "h", "alice", "a", "new",
				       3),
			 0);
	assert_int_equal(store_map_get(st, table, "h", "alice", "a", &b), 0);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "new", 3);
	assert_int_equal(store_map_set(st, table, "h", "alice", "a", NULL,
				       0),
			 0);
	assert_int_equal(store_map_get(st, table, "h", "alice", "a", &b), 1);
	assert_int_equal(store_map_set(st, table, "h", "alice", "a", NULL,
				       0),
			 0);
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_all(st, table, "h", "alice", map_cb, &m),
			 0);
	assert_int_equal(m.n, 4);

	/* clear: only (h, alice) */
	assert_int_equal(store_map_clear(st, table, "h", "alice"), 0);
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_all(st, table, "h", "alice", map_cb, &m),
			 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(store_map_clear(st, table, "h", "alice"), 0);
	assert_int_equal(store_map_get(st, table, "h", "bob", "a", &b), 0);
	assert_memory_equal(b.data, "bob", 3);
	assert_int_equal(store_map_get(st, table, "other", "alice", "a", &b),
			 0);
	assert_memory_equal(b.data, "o", 1);
	buf_reset(&b);
}

/* Both the plain table and one whose index runs the other way. */
static void test_map(void **state)
{
	struct fx *f = *state;
	check_map(f->st, "t_map");
	check_map(f->st, "t_map_desc");
}

/* A callback may call the store again on its own thread: the mutex it
 * runs under is recursive. */
struct nested {
	struct store *st;
	int gets;
	size_t total;
};

static int nested_cb(const char *key, const void *value, size_t len,
		     void *ud)
{
	struct nested *n = ud;
	struct buf b = { 0 };
	if (store_kv_get(n->st, "t_kv", "h", key, &b) == 0) {
		n->gets++;
		n->total += b.len;
	}
	buf_reset(&b);
	return 0;
}

static void test_map_nested_call(void **state)
{
	struct fx *f = *state;
	struct nested n = { .st = f->st };
	assert_int_equal(store_map_set(f->st, "t_map", "h", "u", "x", "1", 1),
			 0);
	assert_int_equal(store_map_set(f->st, "t_map", "h", "u", "y", "2", 1),
			 0);
	assert_int_equal(store_kv_set(f->st, "t_kv", "h", "x", "abc", 3), 0);
	assert_int_equal(store_map_all(f->st, "t_map", "h", "u", nested_cb,
				       &n),
			 0);
	assert_int_equal(n.gets, 1);
	assert_int_equal(n.total, 3);
}

/* ---- archive ---- */

#define ARCH_N 1000

struct arch_seen {
	int64_t ids[ARCH_N + 10];
	size_t n, stop_after;
	int64_t last_id;
	int bad; /* items out of order or not what was stored */
};

/* What item i holds: ts 1000 + i, a value with a NUL in it, and a peer
 * for odd i only. */
static void arch_value(int i, char *v, size_t *len)
{
	*len = (size_t)snprintf(v, 16, "v%04d", i) + 1;
	v[(*len)++] = 'z';
}

static int arch_cb(const struct store_item *it, void *ud)
{
	struct arch_seen *a = ud;
	int i = (int)(it->ts_ms - 1000);
	char v[16];
	size_t len;
	arch_value(i, v, &len);
	if (it->id <= a->last_id || it->len != len || it->value == NULL ||
	    memcmp(it->value, v, len) != 0 || it->with == NULL ||
	    strcmp(it->with, i % 2 ? "peer@x/r" : "") != 0)
		a->bad++;
	a->last_id = it->id;
	if (a->n < ARCH_N + 10)
		a->ids[a->n] = it->id;
	a->n++;
	return a->stop_after != 0 && a->n >= a->stop_after;
}

static void arch_fill(struct store *st, const char *user, int64_t *ids)
{
	for (int i = 0; i < ARCH_N; i++) {
		char v[16];
		size_t len;
		arch_value(i, v, &len);
		int64_t id = -1;
		assert_int_equal(store_archive_append(
					 st, "t_arch", "h", user, 1000 + i,
					 i % 2 ? "peer@x/r" : NULL, v, len,
					 &id),
				 0);
		if (i > 0)
			assert_true(id > ids[i - 1]);
		ids[i] = id;
	}
}

static void test_archive_paging(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	static int64_t ids[ARCH_N];
	assert_int_equal(arch_count(st, "h", "alice"), 0);
	/* one single transaction for speed: 1,000 fsyncs are slow */
	assert_int_equal(store_begin(st), 0);
	arch_fill(st, "alice", ids);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "bob", 1000,
					      NULL, "v0000\0z", 7, NULL),
			 0);
	assert_int_equal(arch_count(st, "h", "alice"), ARCH_N);
	assert_int_equal(arch_count(st, "h", "bob"), 1);
	assert_int_equal(arch_count(st, "other", "alice"), 0);

	/* page through with max 7, resuming after the last id seen */
	struct arch_seen all = { .n = 0 };
	int64_t after = 0;
	for (int pages = 0;; pages++) {
		assert_true(pages <= ARCH_N / 7 + 1);
		struct arch_seen page = { .last_id = after };
		assert_int_equal(store_archive_list(st, "t_arch", "h",
						    "alice", after, 7,
						    arch_cb, &page),
				 0);
		assert_int_equal(page.bad, 0);
		assert_true(page.n <= 7);
		if (page.n == 0)
			break;
		for (size_t i = 0; i < page.n; i++)
			all.ids[all.n++] = page.ids[i];
		after = page.last_id;
	}
	assert_int_equal(all.n, ARCH_N);
	assert_memory_equal(all.ids, ids, sizeof(ids));

	/* everything in one call; max 0; stop early */
	struct arch_seen a = { .n = 0 };
	assert_int_equal(store_archive_list(st, "t_arch", "h", "alice", 0,
					    SIZE_MAX, arch_cb, &a),
			 0);
	assert_int_equal(a.n, ARCH_N);
	assert_int_equal(a.bad, 0);
	a = (struct arch_seen){ .n = 0 };
	assert_int_equal(store_archive_list(st, "t_arch", "h", "alice", 0, 0,
					    arch_cb, &a),
			 0);
	assert_int_equal(a.n, 0);
	a = (struct arch_seen){ .stop_after = 3 };
	assert_int_equal(store_archive_list(st, "t_arch", "h", "alice",
					    ids[10], 100, arch_cb, &a),
			 0);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.ids[0], ids[11]);
	a = (struct arch_seen){ .n = 0 };
	assert_int_equal(store_archive_list(st, "t_arch", "h", "alice",
					    ids[ARCH_N - 1], 100, arch_cb,
					    &a),
			 0);
	assert_int_equal(a.n, 0);
}

static void test_archive_delete(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t ids[5], bob = 0;
	for (int i = 0; i < 5; i++)
		assert_int_equal(store_archive_append(st, "t_arch", "h",
						      "alice", 1000 + i, "",
						      "", 0, &ids[i]),
				 0);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "bob", 7,
					      "x", "b", 1, &bob),
			 0);
	assert_true(bob > ids[4]);

	struct arch_seen a = { .n = 0 };
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "alice",
					      ids[1]),
			 0);
	assert_int_equal(arch_count(st, "h", "alice"), 3);
	assert_int_equal(arch_count(st, "h", "bob"), 1);
	/* arch_cb would flag these items (other contents): count ids only */
	assert_int_equal(store_archive_list(st, "t_arch", "h", "alice", 0, 10,
					    arch_cb, &a),
			 0);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.ids[0], ids[2]);
	assert_int_equal(a.ids[2], ids[4]);

	/* deleting everything, then appending: ids are never reused */
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "alice",
					      INT64_MAX),
			 0);
	assert_int_equal(arch_count(st, "h", "alice"), 0);
	assert_int_equal(arch_count(st, "h", "bob"), 1);
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "alice",
					      INT64_MAX),
			 0);
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "bob", bob),
			 0);
	int64_t again = 0;
	assert_int_equal(store_archive_append(st, "t_arch", "h", "alice", 1,
					      NULL, "", 0, &again),
			 0);
	assert_true(again > bob);
}

/* Items read back exactly: empty value, "" for no peer, binary bytes. */
struct item_copy {
	int64_t id, ts;
	char with[32];
	char value[16];
	size_t len;
	int n;
};

static int copy_cb(const struct store_item *it, void *ud)
{
	struct item_copy *c = ud;
	c->n++;
	c->id = it->id;
	c->ts = it->ts_ms;
	snprintf(c->with, sizeof(c->with), "%s", it->with);
	c->len = it->len;
	if (it->len <= sizeof(c->value))
		memcpy(c->value, it->value, it->len);
	return 0;
}

static void test_archive_item(void **state)
{
	struct fx *f = *state;
	int64_t id;
	static const char bin[] = { 0, 1, 0, (char)0x80 };
	assert_int_equal(store_archive_append(f->st, "t_arch", "h", "u",
					      INT64_MAX, "a@b/c", bin,
					      sizeof(bin), &id),
			 0);
	struct item_copy c = { 0 };
	assert_int_equal(store_archive_list(f->st, "t_arch", "h", "u", 0, 5,
					    copy_cb, &c),
			 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.id, id);
	assert_int_equal(c.ts, INT64_MAX);
	assert_string_equal(c.with, "a@b/c");
	assert_int_equal(c.len, sizeof(bin));
	assert_memory_equal(c.value, bin, sizeof(bin));

	assert_int_equal(store_archive_append(f->st, "t_arch", "h", "v", -5,
					      NULL, NULL, 0, &id),
			 0);
	c = (struct item_copy){ 0 };
	assert_int_equal(store_archive_list(f->st, "t_arch", "h", "v", 0, 5,
					    copy_cb, &c),
			 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ts, -5);
	assert_string_equal(c.with, "");
	assert_int_equal(c.len, 0);
}

/* An append that returned 0 is in the file: a process that appends and
 * dies without closing anything leaves it for the next one. */
static void test_archive_durable(void **state)
{
	struct fx *f = *state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st = NULL;
		char *error = NULL;
		int64_t id = 0;
		if (store_open(f->data, &st, &error) < 0 ||
		    store_archive_append(st, "t_arch", "h", "u", 42, "p@q",
					 "kept", 4, &id) < 0)
			_exit(1);
		_exit(id > 0 ? 0 : 2); /* no store_close, no exit handlers */
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	struct item_copy c = { 0 };
	assert_int_equal(store_archive_list(f->st, "t_arch", "h", "u", 0, 5,
					    copy_cb, &c),
			 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ts, 42);
	assert_string_equal(c.with, "p@q");
	assert_int_equal(c.len, 4);
	assert_memory_equal(c.value, "kept", 4);
}

/* ---- transactions ---- */

/* Another connection (stanzactl's, say) sees a transaction's writes only
 * after the commit, and never after a rollback. */
static void test_txn_commit_rollback(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st, *other = open_ok(f->data);

	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "kv", 2), 0);
	assert_int_equal(store_map_set(st, "t_map", "h", "u", "k", "m", 1),
			 0);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "u", 1, NULL,
					      "a", 1, NULL),
			 0);
	assert_kv(st, "t_kv", "h", "u", "kv", 2); /* its own writes */
	assert_kv_missing(other, "t_kv", "h", "u");
	assert_int_equal(arch_count(other, "h", "u"), 0);
	assert_int_equal(store_commit(st), 0);
	assert_kv(other, "t_kv", "h", "u", "kv", 2);
	assert_int_equal(arch_count(other, "h", "u"), 1);

	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", NULL, 0), 0);
	assert_int_equal(store_map_clear(st, "t_map", "h", "u"), 0);
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "u",
					      INT64_MAX),
			 0);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "v", "new", 3), 0);
	assert_kv_missing(st, "t_kv", "h", "u");
	store_rollback(st);
	assert_kv(st, "t_kv", "h", "u", "kv", 2);
	assert_kv_missing(st, "t_kv", "h", "v");
	assert_int_equal(arch_count(st, "h", "u"), 1);
	struct buf b = { 0 };
	assert_int_equal(store_map_get(st, "t_map", "h", "u", "k", &b), 0);
	buf_reset(&b);

	/* the connection is usable again, for writes and new transactions */
	assert_int_equal(store_kv_set(st, "t_kv", "h", "v", "w", 1), 0);
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_commit(st), 0);
	store_close(other);
}

/* A thread that makes one store call and records what it got. */
struct caller {
	struct store *st;
	const char *op; /* "kv_set", "map_set", "try_mutex" */
	const char *value;
	atomic_int done;
	int rc;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	if (strcmp(c->op, "kv_set") == 0) {
		c->rc = store_kv_set(c->st, "t_kv", "h", "shared", c->value,
				     strlen(c->value));
	} else if (strcmp(c->op, "map_set") == 0) {
		c->rc = store_map_set(c->st, "t_map", "h", "u", "k", c->value,
				      strlen(c->value));
	} else {
		/* Whether another thread holds the connection right now. */
		sqlite3_mutex *m = sqlite3_db_mutex(store_db(c->st));
		c->rc = sqlite3_mutex_try(m);
		if (c->rc == SQLITE_OK)
			sqlite3_mutex_leave(m);
	}
	atomic_store(&c->done, 1);
	return NULL;
}

static void caller_start(pthread_t *t, struct caller *c)
{
	assert_int_equal(pthread_create(t, NULL, caller_main, c), 0);
}

/* Joins within 10 s: longer is a deadlock. */
static void caller_join(pthread_t t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	int rc = pthread_timedjoin_np(t, NULL, &ts);
	if (rc != 0)
		fail_msg("thread did not finish: %s (deadlock?)",
			 strerror(rc));
}

/* The mutex as seen from another thread: SQLITE_OK free, SQLITE_BUSY
 * held by someone else. */
static int mutex_from_other_thread(struct store *st)
{
	struct caller c = { .st = st, .op = "try_mutex" };
	pthread_t t;
	caller_start(&t, &c);
	caller_join(t);
	return c.rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* begin holds the connection's mutex until commit; the owner's calls
 * re-enter it, another thread's wait, then land after the commit. */
static void test_txn_blocks_other_thread(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_BUSY);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "shared", "A1", 2), 0);

	struct caller b = { .st = st, .op = "kv_set", .value = "B" };
	pthread_t t;
	caller_start(&t, &b);
	sleep_ms(300);
	assert_int_equal(atomic_load(&b.done), 0);
	/* still ours: calls inside the transaction do not deadlock */
	assert_int_equal(store_kv_set(st, "t_kv", "h", "shared", "A2", 2), 0);
	assert_kv(st, "t_kv", "h", "shared", "A2", 2);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_BUSY);
	assert_int_equal(store_commit(st), 0);
	caller_join(t);
	assert_int_equal(b.rc, 0);
	/* B's write came after A's commit, not between A1 and A2 */
	assert_kv(st, "t_kv", "h", "shared", "B", 1);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
}

static void test_txn_rollback_other_thread(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "shared", "A", 1), 0);
	struct caller b = { .st = st, .op = "map_set", .value = "B" };
	pthread_t t;
	caller_start(&t, &b);
	sleep_ms(200);
	assert_int_equal(atomic_load(&b.done), 0);
	store_rollback(st);
	caller_join(t);
	assert_int_equal(b.rc, 0);
	assert_kv_missing(st, "t_kv", "h", "shared");
	struct buf v = { 0 };
	assert_int_equal(store_map_get(st, "t_map", "h", "u", "k", &v), 0);
	assert_int_equal(v.len, 1);
	assert_memory_equal(v.data, "B", 1);
	buf_reset(&v);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
}

/* Read-modify-write transactions on several threads lose no update. */
#define INC_THREADS 4
#define INC_EACH 25

static void *incrementer(void *arg)
{
	struct caller *c = arg;
	c->rc = 0;
	for (int i = 0; i < INC_EACH && c->rc == 0; i++) {
		struct buf b = { .max = 32 };
		if (store_begin(c->st) < 0) {
			c->rc = -1;
			break;
		}
		long n = 0;
		int rc = store_kv_get(c->st, "t_kv", "h", "counter", &b);
		if (rc == 0 && buf_append(&b, "", 1) == 0)
			n = strtol(b.data, NULL, 10);
		char s[32];
		int len = snprintf(s, sizeof(s), "%ld", n + 1);
		buf_reset(&b);
		if (rc < 0 || store_kv_set(c->st, "t_kv", "h", "counter", s,
					   (size_t)len) < 0) {
			store_rollback(c->st);
			c->rc = -1;
		} else if (store_commit(c->st) < 0) {
			c->rc = -1;
		}
	}
	atomic_store(&c->done, 1);
	return NULL;
}

static void test_txn_no_lost_update(void **state)
{
	struct fx *f = *state;
	struct caller c[INC_THREADS];
	pthread_t t[INC_THREADS];
	for (int i = 0; i < INC_THREADS; i++) {
		c[i] = (struct caller){ .st = f->st };
		assert_int_equal(pthread_create(&t[i], NULL, incrementer,
						&c[i]),
				 0);
	}
	for (int i = 0; i < INC_THREADS; i++) {
		caller_join(t[i]);
		assert_int_equal(c[i].rc, 0);
	}
	char want[16];
	int len = snprintf(want, sizeof(want), "%d", INC_THREADS * INC_EACH);
	assert_kv(f->st, "t_kv", "h", "counter", want, (size_t)len);
}

/* A begin that cannot take the write lock fails with nothing held. */
static void test_txn_begin_busy(void **state)
{
	struct fx *f = *state;
	struct store *other = open_ok(f->data);
	sqlite3_busy_timeout(store_db(f->st), 50);
	exec_ok(store_db(other), "BEGIN IMMEDIATE");
	assert_int_equal(store_begin(f->st), -1);
	assert_int_equal(mutex_from_other_thread(f->st), SQLITE_OK);
	/* and a plain write fails the same way, cleanly */
	assert_int_equal(store_kv_set(f->st, "t_kv", "h", "u", "x", 1), -1);
	exec_ok(store_db(other), "COMMIT");
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_kv_set(f->st, "t_kv", "h", "u", "x", 1), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_kv(other, "t_kv", "h", "u", "x", 1);
	store_close(other);
}

/* After SQLite rolled a transaction back on its own (as on SQLITE_FULL;
 * simulated here), later calls refuse instead of committing one by one,
 * and commit reports the loss. */
static void test_txn_rolled_back_under(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "1", 1), 0);
	exec_ok(store_db(st), "ROLLBACK");
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "2", 1), -1);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "u", 1, NULL,
					      "x", 1, NULL),
			 -1);
	assert_int_equal(store_commit(st), -1);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
	assert_kv_missing(st, "t_kv", "h", "u");
	assert_int_equal(arch_count(st, "h", "u"), 0);

	/* the same with a rollback at the end */
	assert_int_equal(store_begin(st), 0);
	exec_ok(store_db(st), "ROLLBACK");
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "2", 1), -1);
	store_rollback(st);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "3", 1), 0);
}

/* ---- purge ---- */

static void add_account(struct store *st, const char *host, const char *user)
{
	struct scram_creds c;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	assert_int_equal(accounts_create(st, host, user, &c), 0);
}

/* Everything of one user in every registered schema's user tables. */
static void fill_user(struct store *st, const char *host, const char *user)
{
	char v[64];
	int len = snprintf(v, sizeof(v), "%s@%s", user, host);
	size_t n = (size_t)len;
	assert_int_equal(store_kv_set(st, "t_kv", host, user, v, n), 0);
	assert_int_equal(store_kv_set(st, "t_kv2", host, user, v, n), 0);
	assert_int_equal(store_kv_set(st, "t_keep", host, user, v, n), 0);
	assert_int_equal(store_map_set(st, "t_map", host, user, "k1", v, n),
			 0);
	assert_int_equal(store_map_set(st, "t_map", host, user, "k2", v, n),
			 0);
	assert_int_equal(store_map_set(st, "t_map_desc", host, user, "k", v,
				       n),
			 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_archive_append(st, "t_arch", host, user,
						      i, NULL, v, n, NULL),
				 0);
}

static void assert_user_full(struct store *st, const char *host,
			     const char *user)
{
	char v[64];
	size_t n = (size_t)snprintf(v, sizeof(v), "%s@%s", user, host);
	assert_kv(st, "t_kv", host, user, v, n);
	assert_kv(st, "t_kv2", host, user, v, n);
	assert_kv(st, "t_keep", host, user, v, n);
	struct map_seen m = { .n = 0 };
	assert_int_equal(store_map_all(st, "t_map", host, user, map_cb, &m),
			 0);
	assert_int_equal(m.n, 2);
	m = (struct map_seen){ .n = 0 };
	assert_int_equal(store_map_all(st, "t_map_desc", host, user, map_cb,
				       &m),
			 0);
	assert_int_equal(m.n, 1);
	assert_int_equal(arch_count(st, host, user), 3);
}

static void assert_user_gone(struct store *st, const char *host,
			     const char *user)
{
	struct scram_creds c;
	assert_int_equal(accounts_get(st, host, user, &c), 1);
	assert_kv_missing(st, "t_kv", host, user);
	assert_kv_missing(st, "t_kv2", host, user);
	struct map_seen m = { .n = 0 };
	assert_int_equal(store_map_all(st, "t_map", host, user, map_cb, &m),
			 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(store_map_all(st, "t_map_desc", host, user, map_cb,
				       &m),
			 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(arch_count(st, host, user), 0);
}

static void test_purge(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct scram_creds c;
	const char *who[][2] = {
		{ "a", "alice" }, { "a", "bob" }, { "b", "alice" },
		{ "a", "" },
	};
	for (size_t i = 0; i < 4; i++) {
		if (who[i][1][0] != '\0')
			add_account(st, who[i][0], who[i][1]);
		fill_user(st, who[i][0], who[i][1]);
	}

	assert_int_equal(store_user_purge(st, "a", "alice"), 0);
	assert_user_gone(st, "a", "alice");
	/* t_keep is not a user table: purge follows user_tables */
	char v[] = "alice@a";
	assert_kv(st, "t_keep", "a", "alice", v, strlen(v));
	for (size_t i = 1; i < 4; i++)
		assert_user_full(st, who[i][0], who[i][1]);
	assert_int_equal(accounts_get(st, "a", "bob", &c), 0);
	assert_int_equal(accounts_get(st, "b", "alice", &c), 0);

	/* no account: 1, and leftovers go all the same */
	assert_int_equal(store_user_purge(st, "a", "alice"), 1);
	fill_user(st, "a", "ghost");
	assert_int_equal(store_user_purge(st, "a", "ghost"), 1);
	assert_user_gone(st, "a", "ghost");
	assert_user_full(st, "a", "bob");
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
}

/* A purge that fails half-way deletes nothing. */
static void test_purge_fails_atomically(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	store_register_schemas(bad_schemas);
	f->st = open_ok(f->data);
	add_account(f->st, "a", "alice");
	fill_user(f->st, "a", "alice");
	assert_int_equal(store_user_purge(f->st, "a", "alice"), -1);
	assert_user_full(f->st, "a", "alice");
	struct scram_creds c;
	assert_int_equal(accounts_get(f->st, "a", "alice", &c), 0);
	assert_int_equal(mutex_from_other_thread(f->st), SQLITE_OK);

	/* with the bad schema gone, the same purge goes through */
	store_close(f->st);
	store_register_schemas(test_schemas);
	f->st = open_ok(f->data);
	assert_int_equal(store_user_purge(f->st, "a", "alice"), 0);
	assert_user_gone(f->st, "a", "alice");
}

/* ---- failures ---- */

static int never_cb(const char *key, const void *value, size_t len,
		    void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int never_item_cb(const struct store_item *it, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

/* Every function on a table that does not exist is -1, not a crash. */
static void test_missing_table(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	const char *t = "t_missing";
	struct buf b = { 0 };
	size_t n = 7;
	int calls = 0;
	assert_int_equal(store_kv_get(st, t, "h", "u", &b), -1);
	assert_int_equal(store_kv_set(st, t, "h", "u", "x", 1), -1);
	assert_int_equal(store_kv_set(st, t, "h", "u", NULL, 0), -1);
	assert_int_equal(store_map_get(st, t, "h", "u", "k", &b), -1);
	assert_int_equal(store_map_set(st, t, "h", "u", "k", "x", 1), -1);
	assert_int_equal(store_map_set(st, t, "h", "u", "k", NULL, 0), -1);
	assert_int_equal(store_map_all(st, t, "h", "u", never_cb, &calls),
			 -1);
	assert_int_equal(store_map_clear(st, t, "h", "u"), -1);
	assert_int_equal(store_archive_append(st, t, "h", "u", 1, NULL, "x",
					      1, NULL),
			 -1);
	assert_int_equal(store_archive_count(st, t, "h", "u", &n), -1);
	assert_int_equal(store_archive_list(st, t, "h", "u", 0, 10,
					    never_item_cb, &calls),
			 -1);
	assert_int_equal(store_archive_delete(st, t, "h", "u", INT64_MAX), -1);
	assert_int_equal(calls, 0);
	assert_int_equal(b.len, 0);
	/* the wrong shape for the table is an error too */
	assert_int_equal(store_map_set(st, "t_kv", "h", "u", "k", "x", 1), -1);
	assert_int_equal(store_archive_append(st, "t_map", "h", "u", 1, NULL,
					      "x", 1, NULL),
			 -1);
	/* a table without the key the upserts need refuses */
	assert_int_equal(store_map_set(st, "t_nokey", "h", "u", "k", "x", 1),
			 -1);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
	/* and the connection goes on working */
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "x", 1), 0);
}

/* Interrupts the connection from inside an iteration: the next step
 * fails, as a read error half-way would. */
struct interrupter {
	sqlite3 *db;
	int calls;
};

static int interrupt_map_cb(const char *key, const void *value, size_t len,
			    void *ud)
{
	struct interrupter *i = ud;
	i->calls++;
	sqlite3_interrupt(i->db);
	return 0;
}

static int interrupt_item_cb(const struct store_item *it, void *ud)
{
	struct interrupter *i = ud;
	i->calls++;
	sqlite3_interrupt(i->db);
	return 0;
}

static void test_iteration_error(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	for (int i = 0; i < 3; i++) {
		char k[4];
		snprintf(k, sizeof(k), "k%d", i);
		assert_int_equal(store_map_set(st, "t_map", "h", "u", k, "v",
					       1),
				 0);
		assert_int_equal(store_archive_append(st, "t_arch", "h", "u",
						      i, NULL, "v", 1, NULL),
				 0);
	}
	struct interrupter in = { .db = store_db(st) };
	assert_int_equal(store_map_all(st, "t_map", "h", "u",
				       interrupt_map_cb, &in),
			 -1);
	assert_int_equal(in.calls, 1);
	in.calls = 0;
	assert_int_equal(store_archive_list(st, "t_arch", "h", "u", 0, 10,
					    interrupt_item_cb, &in),
			 -1);
	assert_int_equal(in.calls, 1);
	/* the interruption ends with the statement */
	struct map_seen m = { .n = 0 };
	assert_int_equal(store_map_all(st, "t_map", "h", "u", map_cb, &m), 0);
	assert_int_equal(m.n, 3);
	assert_int_equal(arch_count(st, "h", "u"), 3);
}

/* A read-only connection: writes are -1, reads still work. */
static void test_read_only(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "x", 1), 0);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "u", 1, NULL,
					      "x", 1, NULL),
			 0);
	exec_ok(store_db(st), "PRAGMA query_only = 1");
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "y", 1), -1);
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", NULL, 0), -1);
	assert_int_equal(store_map_set(st, "t_map", "h", "u", "k", "x", 1), -1);
	assert_int_equal(store_map_clear(st, "t_map", "h", "u"), -1);
	assert_int_equal(store_archive_append(st, "t_arch", "h", "u", 1, NULL,
					      "x", 1, NULL),
			 -1);
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "u",
					      INT64_MAX),
			 -1);
	assert_int_equal(store_user_purge(st, "h", "u"), -1);
	assert_kv(st, "t_kv", "h", "u", "x", 1);
	assert_int_equal(arch_count(st, "h", "u"), 1);
	assert_int_equal(mutex_from_other_thread(st), SQLITE_OK);
	exec_ok(store_db(st), "PRAGMA query_only = 0");
	assert_int_equal(store_kv_set(st, "t_kv", "h", "u", "y", 1), 0);
}

/* A full database (max_page_count stands in for a full disk). */
static void test_full(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	sqlite3 *db = store_db(st);
	int64_t first = 0;
	assert_int_equal(store_archive_append(st, "t_arch", "h", "u", 1, NULL,
					      "first", 5, &first),
			 0);
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
		 query_int(db, "PRAGMA page_count"));
	exec_ok(db, sql);
	static char big[3000];
	memset(big, 'x', sizeof(big));
	int rc = 0, i;
	for (i = 0; i < 1000 && rc == 0; i++)
		rc = store_archive_append(st, "t_arch", "h", "u", 2, NULL, big,
					  sizeof(big), NULL);
	assert_int_equal(rc, -1);
	assert_true(i < 1000);
	assert_int_equal(arch_count(st, "h", "u"), (size_t)i);
	struct item_copy c = { 0 };
	assert_int_equal(store_archive_list(st, "t_arch", "h", "u", 0, 1,
					    copy_cb, &c),
			 0);
	assert_int_equal(c.id, first);
	assert_int_equal(store_archive_delete(st, "t_arch", "h", "u",
					      INT64_MAX),
			 0);
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	/* The failure tests log errors on purpose; nothing below that. */
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		FX_TEST(test_schemas_migrated),
		FX_TEST(test_schema_order),
		FX_TEST(test_kv),
		FX_TEST(test_kv_isolation),
		FX_TEST(test_value_max),
		FX_TEST(test_map),
		FX_TEST(test_map_nested_call),
		FX_TEST(test_archive_paging),
		FX_TEST(test_archive_delete),
		FX_TEST(test_archive_item),
		FX_TEST(test_archive_durable),
		FX_TEST(test_txn_commit_rollback),
		FX_TEST(test_txn_blocks_other_thread),
		FX_TEST(test_txn_rollback_other_thread),
		FX_TEST(test_txn_no_lost_update),
		FX_TEST(test_txn_begin_busy),
		FX_TEST(test_txn_rolled_back_under),
		FX_TEST(test_purge),
		FX_TEST(test_purge_fails_atomically),
		FX_TEST(test_missing_table),
		FX_TEST(test_iteration_error),
		FX_TEST(test_read_only),
		FX_TEST(test_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
