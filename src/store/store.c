/*
 * store.c - the SQLite backend: opening data_dir/stanzad.db, schema
 * migrations, and running store calls on the libuv thread pool.
 *
 * Invariants: the connection is in serialized mode (SQLITE_OPEN_FULLMUTEX)
 * and WAL journal mode with synchronous=FULL, so a write that returned is on
 * disk and survives a crash or power loss, and stanzactl (another process)
 * can write while the server reads. Each migration runs in its own
 * BEGIN IMMEDIATE transaction together with its schema_version bump, so a
 * crash leaves every schema at a version that was fully applied.
 *
 * Failures: store functions report why a call failed (store_fail) in a
 * per-thread note that store_queue_work reads when the job returns -1, so
 * a full disk or a locked database reaches the done callback as
 * STORE_EFULL or STORE_EBUSY (docs/internals/store.md, "Failures").
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/stats.h"
#include "../core/xmalloc.h"
#include "accounts.h"
#include "store.h"

#define STORE_DB_NAME "stanzad.db"
/* How long a writer waits for another connection's lock (stanzactl, a
 * checkpoint) before the call fails with SQLITE_BUSY; the server sets its
 * own (store.busy_timeout) after opening. */
#define STORE_BUSY_TIMEOUT_MS 5000

/* Why the last failed store call of this thread failed: 0 (none since the
 * job began), -1, STORE_EFULL or STORE_EBUSY. */
static _Thread_local int store_last_fail;

/* Statements kept prepared across calls, by SQL text (store_stmt_get). */
#define STORE_STMT_CACHE_MAX 256

struct store_stmt {
	sqlite3_stmt *stmt;
	bool busy; /* handed out and not yet put back */
};

struct store {
	sqlite3 *db;
	bool txn_open; /* store_begin() .. commit/rollback; under db mutex */
	struct hmap stmts; /* SQL text -> struct store_stmt; under db mutex */
	/* The connection store_open made (NULL path: a reader): */
	char *path;
	uint64_t gen;          /* which open this is, for the threads' cache */
	uv_mutex_t rlock;      /* guards readers */
	struct store *readers; /* store_reader's connections, one per thread */
	struct store *next_reader;
};

/* Numbers the stores opened, so a thread's cached reader is known to
 * belong to this one (never 0). */
static atomic_uint_fast64_t store_gens;

/* This thread's read connection (store_reader) and the store it reads. */
static _Thread_local struct {
	uint64_t gen;
	struct store *reader; /* NULL: opening it failed; not tried again */
} my_reader;

/* The registered schemas (modules'), applied after accounts_schema. */
static const struct store_schema *const store_no_schemas[] = { NULL };
static const struct store_schema *const *store_registered = store_no_schemas;

static char *store_errorf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* A malloc'ed message for *error_r. */
static char *store_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	BUG_ON(n < 0);
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/*
 * Creates data_dir (mode 0700: it holds credentials and, later, messages)
 * unless it exists. Only the last component is created, so a mistyped path
 * fails instead of growing a tree somewhere unexpected.
 */
static int store_make_dir(const char *data_dir, char **error_r)
{
	if (mkdir(data_dir, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		*error_r = store_errorf("cannot create data_dir %s: %s",
					data_dir, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (stat(data_dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		*error_r = store_errorf("data_dir %s is not a directory",
					data_dir);
		return -1;
	}
	if (sb.st_mode & 077)
		log_warnx("store: data_dir %s is accessible to other users "
			  "(mode %03o); 0700 is advised",
			  data_dir, (unsigned)(sb.st_mode & 0777));
	return 0;
}

/*
 * Creates the database file with mode 0600 before SQLite opens it: SQLite
 * would use 0644, and its -wal and -shm files copy the database's mode.
 * Changing the process umask instead would race with other threads.
 */
static int store_make_file(const char *path, char **error_r)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*error_r = store_errorf("cannot open %s: %s", path,
					strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* Runs SQL without results (PRAGMA, DDL, BEGIN...). */
static int store_exec(sqlite3 *db, const char *sql, const char *what,
		      char **error_r)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	*error_r = store_errorf("%s: %s", what,
				msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/* Runs a PRAGMA that returns one row and checks its first column. */
static int store_pragma(sqlite3 *db, const char *sql, const char *expect,
			char **error_r)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		*error_r = store_errorf("%s: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(stmt);
		return -1;
	}
	const char *got = (const char *)sqlite3_column_text(stmt, 0);
	int ret = 0;
	if (got == NULL || strcmp(got, expect) != 0) {
		*error_r = store_errorf("%s gave '%s', not '%s'", sql,
					got ? got : "", expect);
		ret = -1;
	}
	sqlite3_finalize(stmt);
	return ret;
}

/*
 * Connection settings. WAL lets readers and one writer (server and
 * stanzactl) work at once; synchronous=FULL syncs the WAL on every commit,
 * which NORMAL does not, so an acknowledged write survives power loss.
 */
static int store_configure(sqlite3 *db, char **error_r)
{
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
	if (store_pragma(db, "PRAGMA journal_mode=WAL", "wal", error_r) < 0)
		return -1;
	if (store_exec(db, "PRAGMA synchronous=FULL", "synchronous",
		       error_r) < 0 ||
	    store_pragma(db, "PRAGMA synchronous", "2", error_r) < 0)
		return -1;
	if (store_exec(db, "PRAGMA foreign_keys=ON", "foreign_keys",
		       error_r) < 0 ||
	    store_pragma(db, "PRAGMA foreign_keys", "1", error_r) < 0)
		return -1;
	/* 16 MiB of pages (SQLite's default is 2 MiB): the archive's index
	 * pages of every active account stay cached, and a batch of
	 * archived messages writes without reading them back (about 30%
	 * more rows per second; docs/internals/mam.md). Allocated as pages
	 * are read, so a small database stays small. */
	if (store_exec(db, "PRAGMA cache_size=-16384", "cache_size",
		       error_r) < 0)
		return -1;
	return store_exec(db,
			  "CREATE TABLE IF NOT EXISTS schema_version("
			  "name TEXT PRIMARY KEY, version INTEGER NOT NULL)",
			  "creating schema_version", error_r);
}

/* The recorded version of a schema, 0 if it has none yet. */
static int store_get_version(sqlite3 *db, const char *name,
			     sqlite3_int64 *version_r, char **error_r)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(
		db, "SELECT version FROM schema_version WHERE name = ?1", -1,
		&stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	*version_r = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		*error_r = store_errorf("reading version of schema %s: %s",
					name, sqlite3_errmsg(db));
		sqlite3_finalize(stmt);
		return -1;
	}
	sqlite3_finalize(stmt);
	return 0;
}

static int store_set_version(sqlite3 *db, const char *name,
			     sqlite3_int64 version, char **error_r)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(
		db,
		"INSERT INTO schema_version(name, version) VALUES(?1, ?2) "
		"ON CONFLICT(name) DO UPDATE SET version = excluded.version",
		-1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 2, version);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE) {
		*error_r = store_errorf("recording version of schema %s: %s",
					name, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

static sqlite3_int64 store_schema_latest(const struct store_schema *s)
{
	sqlite3_int64 n = 0;
	while (s->migrations[n] != NULL)
		n++;
	return n;
}

/*
 * One step inside an open transaction: reads the version again (another
 * process may have migrated since the last step), then applies the next
 * migration. Sets *done_r once the schema is current.
 */
static int store_migrate_step(sqlite3 *db, const struct store_schema *s,
			      bool *done_r, char **error_r)
{
	sqlite3_int64 latest = store_schema_latest(s), cur;
	if (store_get_version(db, s->name, &cur, error_r) < 0)
		return -1;
	if (cur > latest) {
		*error_r = store_errorf(
			"schema %s is at version %lld but this build knows "
			"only up to version %lld: the database was used by a "
			"newer stanzad; refusing to start",
			s->name, (long long)cur, (long long)latest);
		return -1;
	}
	*done_r = cur == latest;
	if (*done_r)
		return 0;
	char what[128];
	snprintf(what, sizeof(what), "migrating schema %s to version %lld",
		 s->name, (long long)cur + 1);
	if (store_exec(db, s->migrations[cur], what, error_r) < 0)
		return -1;
	log_info("store: schema %s migrated to version %lld", s->name,
		 (long long)cur + 1);
	return store_set_version(db, s->name, cur + 1, error_r);
}

/* Applies the pending migrations of s, each in its own transaction. */
static int store_migrate(sqlite3 *db, const struct store_schema *s,
			 char **error_r)
{
	for (;;) {
		/* IMMEDIATE takes the write lock first, so two processes
		 * starting at once cannot both apply the same step. */
		if (store_exec(db, "BEGIN IMMEDIATE", "BEGIN", error_r) < 0)
			return -1;
		bool done = false;
		if (store_migrate_step(db, s, &done, error_r) < 0 ||
		    store_exec(db, "COMMIT", "COMMIT", error_r) < 0) {
			/* SQLite may have rolled back already (SQLITE_FULL). */
			if (!sqlite3_get_autocommit(db))
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		if (done)
			return 0;
	}
}

static int store_open_db(const char *path, sqlite3 **db_r, char **error_r)
{
	if (!sqlite3_threadsafe()) {
		*error_r = store_errorf("SQLite was built without thread "
					"support (SQLITE_THREADSAFE=0)");
		return -1;
	}
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_FULLMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		*error_r = store_errorf("cannot open %s: %s", path,
					db ? sqlite3_errmsg(db)
					   : sqlite3_errstr(rc));
		sqlite3_close_v2(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

/* Settings and migrations; *detail_r is malloc'ed on failure. */
static int store_setup(sqlite3 *db, char **detail_r)
{
	if (store_configure(db, detail_r) < 0 ||
	    store_migrate(db, &accounts_schema, detail_r) < 0)
		return -1;
	for (const struct store_schema *const *s = store_registered; *s; s++)
		if (store_migrate(db, *s, detail_r) < 0)
			return -1;
	return 0;
}

void store_register_schemas(const struct store_schema *const *schemas)
{
	store_registered = schemas != NULL ? schemas : store_no_schemas;
}

const struct store_schema *const *store_schemas(void)
{
	return store_registered;
}

int store_open(const char *data_dir, struct store **st_r, char **error_r)
{
	*error_r = NULL;
	if (store_make_dir(data_dir, error_r) < 0)
		return -1;
	char *path = store_errorf("%s/%s", data_dir, STORE_DB_NAME);
	sqlite3 *db = NULL;
	char *detail = NULL;
	int ret = -1;
	if (store_make_file(path, error_r) < 0 ||
	    store_open_db(path, &db, error_r) < 0) {
		/* *error_r is set */
	} else if (store_setup(db, &detail) < 0) {
		*error_r = store_errorf("%s: %s", path, detail);
		sqlite3_close_v2(db);
	} else {
		struct store *st = xcalloc(1, sizeof(*st));
		st->db = db;
		st->path = path;
		path = NULL;
		st->gen = atomic_fetch_add(&store_gens, 1) + 1;
		BUG_ON(uv_mutex_init(&st->rlock) != 0);
		*st_r = st;
		ret = 0;
	}
	free(detail);
	free(path);
	return ret;
}

/*
 * A second connection to the same file, for reads on one thread only
 * (SQLITE_OPEN_NOMUTEX: no mutex to take). WAL lets it read while the
 * server's connection writes, without waiting: it sees what was committed
 * when each statement began. query_only turns any write into an error,
 * and there is no busy timeout: a read never sleeps on a lock.
 */
static struct store *reader_open(const char *path)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc == SQLITE_OK) {
		sqlite3_extended_result_codes(db, 1);
		rc = sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		log_warnx("store: no read connection for this thread (%s): "
			  "its reads go to the thread pool",
			  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close_v2(db);
		return NULL;
	}
	struct store *r = xcalloc(1, sizeof(*r));
	r->db = db;
	return r;
}

struct store *store_reader(struct store *st)
{
	if (st->path == NULL)
		return NULL; /* st is a reader */
	if (my_reader.gen == st->gen)
		return my_reader.reader;
	struct store *r = reader_open(st->path);
	if (r != NULL) {
		uv_mutex_lock(&st->rlock);
		r->next_reader = st->readers;
		st->readers = r;
		uv_mutex_unlock(&st->rlock);
	}
	my_reader.gen = st->gen;
	my_reader.reader = r;
	return r;
}

static void store_stmt_free(struct str sql, void *value, void *ud)
{
	(void)sql, (void)ud;
	struct store_stmt *s = value;
	BUG_ON(s->busy);
	sqlite3_finalize(s->stmt);
	free(s);
}

/*
 * Preparing is most of the cost of a small query (parsing and planning
 * the SQL: about 60% of the instructions of a login's store jobs), and the
 * statements are a few dozen fixed texts, so each is prepared once and
 * reset after use. One statement per text: a text whose statement is in
 * use (a call nested inside another's row loop) gets a fresh one, finalized
 * when put back.
 */
int store_stmt_get(struct store *st, const char *sql, sqlite3_stmt **stmt_r)
{
	*stmt_r = NULL;
	struct store_stmt *s = hmap_get(&st->stmts, str_c(sql));
	if (s != NULL && !s->busy) {
		s->busy = true;
		*stmt_r = s->stmt;
		return SQLITE_OK;
	}
	int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
				    stmt_r, NULL);
	if (rc != SQLITE_OK || s != NULL ||
	    st->stmts.count >= STORE_STMT_CACHE_MAX)
		return rc;
	s = xcalloc(1, sizeof(*s));
	s->stmt = *stmt_r;
	s->busy = true;
	hmap_put(&st->stmts, str_c(sql), s);
	return SQLITE_OK;
}

void store_stmt_put(struct store *st, sqlite3_stmt *stmt)
{
	if (stmt == NULL)
		return;
	struct store_stmt *s = hmap_get(&st->stmts, str_c(sqlite3_sql(stmt)));
	if (s == NULL || s->stmt != stmt) {
		sqlite3_finalize(stmt);
		return;
	}
	/* Ends the statement's read or write, as finalize would; bindings
	 * may point at the caller's memory. */
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	s->busy = false;
}

/* One connection, a reader or the store's own. */
static void store_close_one(struct store *st)
{
	BUG_ON(st->txn_open);
	hmap_foreach(&st->stmts, store_stmt_free, NULL);
	hmap_clear(&st->stmts);
	/* close_v2 defers the close until every statement is finalized;
	 * the last connection then checkpoints and removes the WAL. */
	if (sqlite3_close_v2(st->db) != SQLITE_OK)
		log_errx("store: close: %s", sqlite3_errmsg(st->db));
	free(st);
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	/* The readers first: their threads have ended (the shards stop
	 * before the store closes), and the store's own connection, closed
	 * last, checkpoints and removes the WAL. */
	while (st->readers != NULL) {
		struct store *r = st->readers;
		st->readers = r->next_reader;
		store_close_one(r);
	}
	if (st->path != NULL) {
		uv_mutex_destroy(&st->rlock);
		free(st->path);
	}
	store_close_one(st);
}

void store_set_busy_timeout(struct store *st, unsigned ms)
{
	BUG_ON(ms > INT_MAX);
	sqlite3_busy_timeout(st->db, (int)ms);
}

/* No room: a full file system or quota, or the file size limit
 * (RLIMIT_FSIZE). */
static bool store_errno_full(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/* The errno the unix VFS kept for a file's last failed call (0: none). */
static int store_file_errno(sqlite3_file *f)
{
	int e = 0;
	if (f == NULL || f->pMethods == NULL ||
	    f->pMethods->xFileControl(f, SQLITE_FCNTL_LAST_ERRNO, &e) !=
		    SQLITE_OK)
		return 0;
	return e;
}

/*
 * Whether a failed write ran out of room. SQLite turns ENOSPC into
 * SQLITE_FULL but EFBIG and EDQUOT into SQLITE_IOERR_WRITE, and
 * sqlite3_system_errno() is not reliable after the rollback that follows,
 * so the errno is read where the unix VFS keeps it, in the file written:
 * the WAL, or the database at a checkpoint. A file keeps its errno until
 * its next failure, so an older one may be seen; that can only turn an
 * I/O error on writing into "full", never hide a full disk.
 */
static bool store_write_full(sqlite3 *db)
{
	int code = sqlite3_extended_errcode(db);
	if (code == SQLITE_FULL)
		return true;
	if (code != SQLITE_IOERR_WRITE)
		return false;
	sqlite3_file *wal = NULL, *file = NULL;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER,
				 &wal) == SQLITE_OK &&
	    store_errno_full(store_file_errno(wal)))
		return true;
	return sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER,
				    &file) == SQLITE_OK &&
	       store_errno_full(store_file_errno(file));
}

int store_fail(sqlite3 *db)
{
	int code = sqlite3_extended_errcode(db) & 0xff;
	if (store_write_full(db))
		store_last_fail = STORE_EFULL;
	else if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		store_last_fail = STORE_EBUSY;
	else
		store_last_fail = -1;
	return -1;
}

sqlite3 *store_db(struct store *st)
{
	return st->db;
}

bool store_txn_open(const struct store *st)
{
	return st->txn_open;
}

void store_set_txn_open(struct store *st, bool open)
{
	st->txn_open = open;
}

/*
 * Pool jobs go out in batches, one batch per loop at a time (a lane).
 *
 * Every job takes the one database connection's mutex, so jobs run one at
 * a time whatever the number of pool threads; the server starts the pool
 * with one (stanzad.c), which then never waits on that mutex for another
 * of its own. Handed to the pool one by one, each job cost a pool
 * thread's wake-up, a wait for the mutex that another pool thread holds
 * (a futex sleep and wake), and an async wake-up of the loop: context
 * switches that take more CPU than a small job does
 * (profiled under a login storm). So each loop keeps its own queue: while
 * a batch of its jobs is on the pool, new jobs wait in the queue, and when
 * the batch's after-work callback has called their done callbacks in
 * order, what queued meanwhile leaves as the next batch. Under load a
 * batch carries many jobs for one wake-up each way; with little load it
 * carries one, as before. Jobs of one loop run in submission order, loops
 * in parallel.
 */
#define STORE_BATCH_MAX 64

/* One queued call; lives from store_queue_work() to the done callback. */
struct store_req {
	uv_work_t work_req; /* the first job of a batch carries the batch */
	struct store_req *next;
	struct store *st;
	store_work_fn *work;
	store_done_fn *done;
	void *ud;
	int status;
};

/* The calling thread's lane: its loop's jobs not yet on the pool, and
 * whether a batch is. A thread runs one loop at a time (a shard's; a
 * test's). */
struct store_lane {
	uv_loop_t *loop;
	struct store_req *head, **tail;
	bool running;
};
static _Thread_local struct store_lane lane;

/* On a pool thread. */
static void store_work_cb(uv_work_t *w)
{
	for (struct store_req *r = w->data; r != NULL; r = r->next)
		r->status = store_run(r->st, r->work, r->ud);
}

/* A -1 becomes the reason of the job's last failed store call, if that
 * was a full disk or a lock (the note is this thread's, and reset first,
 * so it is this job's). */
int store_run(struct store *st, store_work_fn *work, void *ud)
{
	store_last_fail = 0;
	int status = work(st, ud);
	if (status == -1 && store_last_fail < -1)
		status = store_last_fail;
	return status;
}

static void lane_submit(void);

/* Calls the done callbacks of a batch, or of jobs that could not be
 * queued (status < 0 for all of them). */
static void lane_finish(struct store_req *r, int status)
{
	while (r != NULL) {
		struct store_req *next = r->next;
		STATS_ADD(pool_done, 1);
		r->done(r->st, r->ud, status < 0 ? status : r->status);
		free(r);
		r = next;
	}
}

/* On the loop's thread; status is 0 or UV_ECANCELED (uv_cancel). Jobs
 * the done callbacks queue go out with the next batch. */
static void store_after_work_cb(uv_work_t *w, int status)
{
	lane_finish(w->data, status);
	lane.running = false;
	lane_submit();
}

/* Sends up to STORE_BATCH_MAX queued jobs to the pool as one batch. */
static void lane_submit(void)
{
	struct store_req *first = lane.head;
	if (first == NULL || lane.running)
		return;
	struct store_req *last = first;
	for (int n = 1; n < STORE_BATCH_MAX && last->next != NULL; n++)
		last = last->next;
	lane.head = last->next;
	if (lane.head == NULL)
		lane.tail = &lane.head;
	last->next = NULL;
	first->work_req.data = first;
	if (uv_queue_work(lane.loop, &first->work_req, store_work_cb,
			  store_after_work_cb) < 0) {
		/* Not queued, and nothing will call the done callbacks
		 * (store_queue_work already said yes): cancel the batch. */
		lane_finish(first, UV_ECANCELED);
		lane_submit();
		return;
	}
	lane.running = true;
}

int store_queue_work(uv_loop_t *loop, struct store *st, store_work_fn *work,
		     store_done_fn *done, void *ud)
{
	BUG_ON(work == NULL || done == NULL);
	if (lane.loop != loop) {
		/* A thread moves to another loop only when its lane is idle. */
		BUG_ON(lane.running || lane.head != NULL);
		lane = (struct store_lane){ .loop = loop, .tail = &lane.head };
	}
	struct store_req *r = xcalloc(1, sizeof(*r));
	*r = (struct store_req){
		.st = st, .work = work, .done = done, .ud = ud,
	};
	*lane.tail = r;
	lane.tail = &r->next;
	STATS_ADD(pool_queued, 1);
	lane_submit();
	return 0;
}
