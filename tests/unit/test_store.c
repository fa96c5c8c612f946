/*
 * test_store.c - the SQLite store (store.c), the accounts table
 * (accounts.c) and SCRAM credential derivation (scram_creds.c).
 *
 * SCRAM keys are checked against an independent derivation written here
 * with OpenSSL (PBKDF2, HMAC, SHA), which is itself checked against the
 * worked examples of RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3
 * (SCRAM-SHA-256). Every store test runs in a fresh directory under /tmp,
 * removed afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/scram_creds.h"
#include "core/log.h"
#include "store/accounts.h"
#include "store/store.h"

/* ---- an independent SCRAM derivation (RFC 5802 §3) ---- */

struct ref_keys {
	unsigned char stored[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
	unsigned char client[EVP_MAX_MD_SIZE];
	size_t len;
};

static void ref_hmac(const EVP_MD *md, const void *key, size_t keylen,
		     const void *data, size_t len, unsigned char *out)
{
	unsigned outlen = 0;
	assert_non_null(HMAC(md, key, (int)keylen, data, len, out, &outlen));
	assert_int_equal(outlen, EVP_MD_get_size(md));
}

static void ref_derive(const EVP_MD *md, const char *password,
		       const unsigned char *salt, size_t saltlen,
		       unsigned iterations, struct ref_keys *k)
{
	unsigned char salted[EVP_MAX_MD_SIZE];
	k->len = (size_t)EVP_MD_get_size(md);
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password),
					   salt, (int)saltlen, (int)iterations,
					   md, (int)k->len, salted),
			 1);
	ref_hmac(md, salted, k->len, "Client Key", 10, k->client);
	ref_hmac(md, salted, k->len, "Server Key", 10, k->server);
	unsigned n = 0;
	assert_int_equal(EVP_Digest(k->client, k->len, k->stored, &n, md,
				    NULL),
			 1);
	assert_int_equal(n, k->len);
}

static size_t b64_decode(const char *in, unsigned char *out)
{
	size_t inlen = strlen(in);
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen);
	assert_true(n >= 0);
	/* EVP_DecodeBlock counts the bytes of padding as output. */
	for (size_t i = inlen; i > 0 && in[i - 1] == '='; i--)
		n--;
	return (size_t)n;
}

/* One worked example from an RFC. */
struct rfc_vector {
	const EVP_MD *(*md)(void);
	const char *salt_b64;
	const char *client_first_bare, *server_first, *client_final_bare;
	const char *proof_b64, *verifier_b64;
};

static const struct rfc_vector rfc5802 = {
	EVP_sha1,
	"QSXCR+Q6sek8bf92",
	"n=user,r=fyko+d2lbbFgONRv9qkxdawL",
	"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
	"s=QSXCR+Q6sek8bf92,i=4096",
	"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
	"v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	"rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const struct rfc_vector rfc7677 = {
	EVP_sha256,
	"W22ZaJ0SNY7soEsUEjb6gQ==",
	"n=user,r=rOprNGfwEbeRWgbNEkqO",
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/*
 * Checks keys against an RFC exchange: the server's verifier is
 * HMAC(ServerKey, AuthMessage), and the client's proof XOR
 * HMAC(StoredKey, AuthMessage) is the ClientKey, whose hash is StoredKey.
 */
static void check_rfc_exchange(const struct rfc_vector *v,
			       const unsigned char *stored,
			       const unsigned char *server, size_t len)
{
	const EVP_MD *md = v->md();
	char auth[512];
	snprintf(auth, sizeof(auth), "%s,%s,%s", v->client_first_bare,
		 v->server_first, v->client_final_bare);
	unsigned char sig[EVP_MAX_MD_SIZE], want[EVP_MAX_MD_SIZE + 3];
	ref_hmac(md, server, len, auth, strlen(auth), sig);
	assert_int_equal(b64_decode(v->verifier_b64, want), len);
	assert_memory_equal(sig, want, len);

	unsigned char proof[EVP_MAX_MD_SIZE + 3], ckey[EVP_MAX_MD_SIZE];
	assert_int_equal(b64_decode(v->proof_b64, proof), len);
	ref_hmac(md, stored, len, auth, strlen(auth), sig);
	for (size_t i = 0; i < len; i++)
		ckey[i] = proof[i] ^ sig[i];
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	assert_int_equal(EVP_Digest(ckey, len, h, &n, md, NULL), 1);
	assert_memory_equal(h, stored, len);
}

/* The reference derivation reproduces both RFC examples. */
static void test_ref_matches_rfc(void **state)
{
	(void)state;
	const struct rfc_vector *vs[] = { &rfc5802, &rfc7677 };
	for (size_t i = 0; i < 2; i++) {
		unsigned char salt[64];
		size_t saltlen = b64_decode(vs[i]->salt_b64, salt);
		struct ref_keys k;
		ref_derive(vs[i]->md(), "pencil", salt, saltlen, 4096, &k);
		check_rfc_exchange(vs[i], k.stored, k.server, k.len);
	}
}

/* Credentials for password with a given salt, built by the reference. */
static void ref_creds(const char *password, const unsigned char *salt,
		      unsigned iterations, struct scram_creds *c)
{
	memset(c, 0, sizeof(*c));
	c->iterations = iterations;
	memcpy(c->salt, salt, SCRAM_SALT_LEN);
	struct ref_keys k;
	ref_derive(EVP_sha1(), password, salt, SCRAM_SALT_LEN, iterations, &k);
	memcpy(c->stored_sha1, k.stored, SCRAM_SHA1_LEN);
	memcpy(c->server_sha1, k.server, SCRAM_SHA1_LEN);
	ref_derive(EVP_sha256(), password, salt, SCRAM_SALT_LEN, iterations,
		   &k);
	memcpy(c->stored_sha256, k.stored, SCRAM_SHA256_LEN);
	memcpy(c->server_sha256, k.server, SCRAM_SHA256_LEN);
}

static void assert_creds_equal(const struct scram_creds *a,
			       const struct scram_creds *b)
{
	assert_int_equal(a->iterations, b->iterations);
	assert_memory_equal(a->salt, b->salt, SCRAM_SALT_LEN);
	assert_memory_equal(a->stored_sha1, b->stored_sha1, SCRAM_SHA1_LEN);
	assert_memory_equal(a->server_sha1, b->server_sha1, SCRAM_SHA1_LEN);
	assert_memory_equal(a->stored_sha256, b->stored_sha256,
			    SCRAM_SHA256_LEN);
	assert_memory_equal(a->server_sha256, b->server_sha256,
			    SCRAM_SHA256_LEN);
}

/* scram_creds_check() agrees with the RFC 7677 example (16-byte salt). */
static void test_check_rfc7677(void **state)
{
	(void)state;
	unsigned char salt[64];
	assert_int_equal(b64_decode(rfc7677.salt_b64, salt), SCRAM_SALT_LEN);
	struct scram_creds c;
	ref_creds("pencil", salt, 4096, &c);
	check_rfc_exchange(&rfc7677, c.stored_sha256, c.server_sha256,
			   SCRAM_SHA256_LEN);
	assert_true(scram_creds_check(&c, "pencil"));
	assert_false(scram_creds_check(&c, "Pencil"));
	assert_false(scram_creds_check(&c, "pencil "));
}

/* derive() with a random salt gives what the reference gives. */
static void test_derive_matches_ref(void **state)
{
	(void)state;
	struct scram_creds a, b, want;
	const char *error = NULL;
	assert_int_equal(scram_creds_derive("pencil", 4096, &a, &error), 0);
	ref_creds("pencil", a.salt, 4096, &want);
	assert_creds_equal(&a, &want);
	/* A fresh salt each time. */
	assert_int_equal(scram_creds_derive("pencil", 4096, &b, &error), 0);
	assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
	assert_memory_not_equal(a.stored_sha256, b.stored_sha256,
				SCRAM_SHA256_LEN);
}

/* A wrong password, and a change to any one key, fail the check. */
static void test_check(void **state)
{
	(void)state;
	struct scram_creds c;
	const char *error = NULL;
	assert_int_equal(scram_creds_derive("s3cret", 64, &c, &error), 0);
	assert_true(scram_creds_check(&c, "s3cret"));
	assert_false(scram_creds_check(&c, "s3creT"));
	assert_false(scram_creds_check(&c, ""));
	unsigned char *keys[] = { c.stored_sha1, c.server_sha1,
				  c.stored_sha256, c.server_sha256 };
	for (size_t i = 0; i < 4; i++) {
		keys[i][7] ^= 1;
		assert_false(scram_creds_check(&c, "s3cret"));
		keys[i][7] ^= 1;
	}
	assert_true(scram_creds_check(&c, "s3cret"));
	c.iterations++;
	assert_false(scram_creds_check(&c, "s3cret"));
}

/* RFC 4013 §3 examples: mapping, normalisation, prohibited output. */
static void test_saslprep(void **state)
{
	(void)state;
	struct scram_creds c, want;
	const char *error = NULL;
	/* "I<U+00AD>X": the soft hyphen maps to nothing. */
	assert_int_equal(scram_creds_derive("I\xC2\xADX", 32, &c, &error), 0);
	ref_creds("IX", c.salt, 32, &want);
	assert_creds_equal(&c, &want);
	assert_true(scram_creds_check(&c, "IX"));
	/* U+2168 ROMAN NUMERAL NINE normalises (NFKC) to "IX". */
	assert_true(scram_creds_check(&c, "\xE2\x85\xA8"));
	assert_false(scram_creds_check(&c, "ix"));

	const char *bad[] = { "", "\xC2\xAD", "\x07", "a\xff", "\xD8\xA7" "1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		assert_int_equal(scram_creds_derive(bad[i], 32, &c, &error),
				 -1);
		assert_non_null(error);
		assert_false(scram_creds_check(&want, bad[i]));
	}
	error = NULL;
	assert_int_equal(scram_creds_derive("pencil", 0, &c, &error), -1);
	assert_non_null(error);
}

static void test_key_accessors(void **state)
{
	(void)state;
	struct scram_creds c;
	const char *error;
	assert_int_equal(scram_creds_derive("pencil", 16, &c, &error), 0);
	size_t len = 0;
	assert_ptr_equal(scram_creds_stored_key(&c, SCRAM_SHA1, &len),
			 c.stored_sha1);
	assert_int_equal(len, SCRAM_SHA1_LEN);
	assert_ptr_equal(scram_creds_server_key(&c, SCRAM_SHA1, &len),
			 c.server_sha1);
	assert_int_equal(len, SCRAM_SHA1_LEN);
	assert_ptr_equal(scram_creds_stored_key(&c, SCRAM_SHA256, &len),
			 c.stored_sha256);
	assert_int_equal(len, SCRAM_SHA256_LEN);
	assert_ptr_equal(scram_creds_server_key(&c, SCRAM_SHA256, &len),
			 c.server_sha256);
	assert_int_equal(len, SCRAM_SHA256_LEN);
}

/* ---- the store ---- */

struct tmp {
	char root[64];    /* the mkdtemp directory */
	char data[96];    /* root/data, not created in advance */
	char db[128];     /* data/stanzad.db */
};

static int tmp_setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -1;
	snprintf(t->root, sizeof(t->root), "/tmp/test_store.XXXXXX");
	if (mkdtemp(t->root) == NULL) {
		free(t);
		return -1;
	}
	snprintf(t->data, sizeof(t->data), "%s/data", t->root);
	snprintf(t->db, sizeof(t->db), "%s/stanzad.db", t->data);
	*state = t;
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;
	int rc = nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return rc;
}

static struct store *open_ok(const struct tmp *t)
{
	struct store *st = NULL;
	char *error = NULL;
	int rc = store_open(t->data, &st, &error);
	if (rc != 0)
		fail_msg("store_open: %s", error ? error : "(no message)");
	assert_null(error);
	assert_non_null(st);
	return st;
}

/* The first column of the first row of sql, as an integer. */
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

static void test_open_settings(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct stat sb;
	assert_int_equal(stat(t->data, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(t->db, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	sqlite3 *db = store_db(st);
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s,
					    NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	assert_int_equal(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
	assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(query_int(db, "PRAGMA busy_timeout"), 5000);
	assert_int_equal(query_int(db, "SELECT version FROM schema_version "
				       "WHERE name = 'accounts'"),
			 1);
	store_close(st);
}

static void test_reopen_idempotent(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds c, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 8, &c, &error), 0);
	assert_int_equal(accounts_create(st, "localhost", "alice", &c), 0);
	store_close(st);

	for (int i = 0; i < 2; i++) {
		st = open_ok(t);
		sqlite3 *db = store_db(st);
		assert_int_equal(query_int(db, "SELECT count(*) FROM "
					       "schema_version"),
				 1);
		assert_int_equal(query_int(db, "SELECT version FROM "
					       "schema_version"),
				 1);
		assert_int_equal(accounts_get(st, "localhost", "alice", &got),
				 0);
		assert_creds_equal(&c, &got);
		store_close(st);
	}
}

static void test_too_new_refused(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	exec_ok(store_db(st),
		"UPDATE schema_version SET version = 99 "
		"WHERE name = 'accounts'");
	store_close(st);

	st = NULL;
	char *error = NULL;
	assert_int_equal(store_open(t->data, &st, &error), -1);
	assert_null(st);
	assert_non_null(error);
	assert_non_null(strstr(error, "version 99"));
	assert_non_null(strstr(error, "newer"));
	free(error);
}

/* A migration that fails leaves no trace: its version is not recorded. */
static void test_failed_migration_rolls_back(void **state)
{
	struct tmp *t = *state;
	assert_int_equal(mkdir(t->data, 0700), 0);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(t->db, &db), SQLITE_OK);
	exec_ok(db, "CREATE TABLE accounts(x)");
	sqlite3_close(db);

	struct store *st = NULL;
	char *error = NULL;
	assert_int_equal(store_open(t->data, &st, &error), -1);
	assert_non_null(error);
	assert_non_null(strstr(error, "already exists"));
	free(error);

	assert_int_equal(sqlite3_open(t->db, &db), SQLITE_OK);
	assert_int_equal(query_int(db, "SELECT count(*) FROM schema_version"),
			 0);
	sqlite3_close(db);
}

static void test_open_errors(void **state)
{
	struct tmp *t = *state;
	struct store *st = NULL;
	char *error = NULL;
	/* data_dir is a file */
	FILE *f = fopen(t->data, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(store_open(t->data, &st, &error), -1);
	assert_non_null(error);
	free(error);
	error = NULL;
	assert_int_equal(remove(t->data), 0);

	/* the database file is not a database */
	assert_int_equal(mkdir(t->data, 0700), 0);
	f = fopen(t->db, "w");
	assert_non_null(f);
	for (int i = 0; i < 64; i++)
		fputs("this is not an SQLite database, ", f);
	fclose(f);
	assert_int_equal(store_open(t->data, &st, &error), -1);
	assert_non_null(error);
	free(error);
	error = NULL;

	/* parent of data_dir missing */
	char deep[160];
	snprintf(deep, sizeof(deep), "%s/no/such", t->root);
	assert_int_equal(store_open(deep, &st, &error), -1);
	assert_non_null(error);
	free(error);
	assert_null(st);
}

static void test_accounts_crud(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds a, b, got;
	const char *error;
	assert_int_equal(scram_creds_derive("one", 8, &a, &error), 0);
	assert_int_equal(scram_creds_derive("two", 9, &b, &error), 0);

	assert_int_equal(accounts_get(st, "localhost", "alice", &got), 1);
	assert_int_equal(accounts_create(st, "localhost", "alice", &a), 0);
	assert_int_equal(accounts_create(st, "localhost", "alice", &b), 1);
	assert_int_equal(accounts_get(st, "localhost", "alice", &got), 0);
	assert_creds_equal(&a, &got); /* the duplicate changed nothing */
	assert_true(scram_creds_check(&got, "one"));
	assert_false(scram_creds_check(&got, "two"));

	/* the same name on another host is another account */
	assert_int_equal(accounts_get(st, "example.org", "alice", &got), 1);
	assert_int_equal(accounts_create(st, "example.org", "alice", &b), 0);

	assert_int_equal(accounts_set(st, "localhost", "alice", &b), 0);
	assert_int_equal(accounts_get(st, "localhost", "alice", &got), 0);
	assert_creds_equal(&b, &got);
	assert_true(scram_creds_check(&got, "two"));
	assert_int_equal(accounts_set(st, "localhost", "bob", &b), 1);
	assert_int_equal(accounts_get(st, "localhost", "bob", &got), 1);

	assert_int_equal(accounts_delete(st, "localhost", "alice"), 0);
	assert_int_equal(accounts_delete(st, "localhost", "alice"), 1);
	assert_int_equal(accounts_get(st, "localhost", "alice", &got), 1);
	assert_int_equal(accounts_get(st, "example.org", "alice", &got), 0);
	assert_creds_equal(&b, &got);
	store_close(st);
}

/* Names with SQL metacharacters are data, and bytes come back exact. */
static void test_accounts_odd_names(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds c, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	/* salt and keys with NUL bytes survive as BLOBs */
	memset(c.salt, 0, 8);
	c.stored_sha1[0] = 0;
	const char *user = "o'brien\"); DROP TABLE accounts;--";
	assert_int_equal(accounts_create(st, "localhost", user, &c), 0);
	assert_int_equal(accounts_get(st, "localhost", user, &got), 0);
	assert_creds_equal(&c, &got);
	assert_int_equal(accounts_get(st, "localhost", "o'brien", &got), 1);
	assert_int_equal(accounts_create(st, "localhost", "%", &c), 0);
	assert_int_equal(accounts_get(st, "localhost", "_", &got), 1);
	assert_int_equal(accounts_delete(st, "localhost", "%%"), 1);
	assert_int_equal(accounts_delete(st, "localhost", user), 0);
	assert_int_equal(accounts_get(st, "localhost", "%", &got), 0);
	store_close(st);
}

struct list_ctx {
	char names[8][16];
	size_t n;
};

static void list_cb(const char *user, void *ud)
{
	struct list_ctx *l = ud;
	if (l->n < 8)
		snprintf(l->names[l->n], sizeof(l->names[0]), "%s", user);
	l->n++;
}

static void test_accounts_list(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds c;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	const char *users[] = { "carol", "alice", "dave", "bob" };
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(accounts_create(st, "a.example", users[i],
						 &c),
				 0);
	assert_int_equal(accounts_create(st, "b.example", "eve", &c), 0);

	struct list_ctx l = { .n = 0 };
	assert_int_equal(accounts_list(st, "a.example", list_cb, &l), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.names[0], "alice");
	assert_string_equal(l.names[1], "bob");
	assert_string_equal(l.names[2], "carol");
	assert_string_equal(l.names[3], "dave");

	l.n = 0;
	assert_int_equal(accounts_list(st, "b.example", list_cb, &l), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.names[0], "eve");
	l.n = 0;
	assert_int_equal(accounts_list(st, "c.example", list_cb, &l), 0);
	assert_int_equal(l.n, 0);
	store_close(st);
}

/* Server and stanzactl: two handles on one database. */
static void test_two_handles(void **state)
{
	struct tmp *t = *state;
	struct store *server = open_ok(t), *ctl = open_ok(t);
	struct scram_creds c, d, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	assert_int_equal(scram_creds_derive("pw2", 4, &d, &error), 0);

	assert_int_equal(accounts_create(ctl, "localhost", "alice", &c), 0);
	assert_int_equal(accounts_get(server, "localhost", "alice", &got), 0);
	assert_creds_equal(&c, &got);
	assert_int_equal(accounts_create(server, "localhost", "alice", &d), 1);
	assert_int_equal(accounts_set(server, "localhost", "alice", &d), 0);
	assert_int_equal(accounts_get(ctl, "localhost", "alice", &got), 0);
	assert_creds_equal(&d, &got);
	assert_int_equal(accounts_delete(ctl, "localhost", "alice"), 0);
	assert_int_equal(accounts_get(server, "localhost", "alice", &got), 1);
	assert_int_equal(query_int(store_db(server), "SELECT count(*) FROM "
						     "schema_version"),
			 1);
	store_close(ctl);
	store_close(server);
}

/* A thread's read connection: one per thread and store, sees what the
 * store's connection committed, even while it holds the write lock, and
 * cannot write. store_close closes it (a leak under ASan otherwise). */
struct reader_thread {
	struct store *st, *r;
};

static void *other_thread_reader(void *arg)
{
	struct reader_thread *rt = arg;
	rt->r = store_reader(rt->st);
	return NULL;
}

static void test_reader(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds c, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	struct store *r = store_reader(st);
	assert_non_null(r);
	assert_ptr_not_equal(r, st);
	assert_ptr_equal(store_reader(st), r); /* kept for this thread */
	assert_null(store_reader(r));          /* a reader has none */
	struct reader_thread rt = { .st = st };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, other_thread_reader, &rt),
			 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_non_null(rt.r);
	assert_ptr_not_equal(rt.r, r);

	assert_int_equal(accounts_get(r, "localhost", "alice", &got), 1);
	assert_int_equal(accounts_create(st, "localhost", "alice", &c), 0);
	assert_int_equal(accounts_get(r, "localhost", "alice", &got), 0);
	assert_creds_equal(&c, &got);
	/* the writer's open transaction: the reader neither waits nor
	 * sees it, until it commits */
	exec_ok(store_db(st), "BEGIN IMMEDIATE");
	exec_ok(store_db(st), "DELETE FROM accounts");
	assert_int_equal(accounts_get(r, "localhost", "alice", &got), 0);
	exec_ok(store_db(st), "COMMIT");
	assert_int_equal(accounts_get(r, "localhost", "alice", &got), 1);
	/* query_only */
	assert_int_equal(accounts_create(r, "localhost", "bob", &c), -1);
	assert_int_equal(accounts_get(st, "localhost", "bob", &got), 1);
	store_close(st);

	/* a store opened later (maybe at the same address) gets a new
	 * reader on this thread, not the closed one */
	st = open_ok(t);
	r = store_reader(st);
	assert_non_null(r);
	assert_int_equal(accounts_create(st, "localhost", "carol", &c), 0);
	assert_int_equal(accounts_get(r, "localhost", "carol", &got), 0);
	store_close(st);
}

/* A write while another connection holds the write lock fails cleanly
 * after the busy timeout and works once the lock is gone. */
static void test_locked(void **state)
{
	struct tmp *t = *state;
	struct store *a = open_ok(t), *b = open_ok(t);
	struct scram_creds c, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	sqlite3_busy_timeout(store_db(a), 50); /* keep the test quick */
	exec_ok(store_db(b), "BEGIN IMMEDIATE");
	assert_int_equal(accounts_create(a, "localhost", "alice", &c), -1);
	/* readers are not blocked by a writer in WAL mode */
	assert_int_equal(accounts_get(a, "localhost", "alice", &got), 1);
	exec_ok(store_db(b), "COMMIT");
	assert_int_equal(accounts_create(a, "localhost", "alice", &c), 0);
	store_close(a);
	store_close(b);
}

/* A full database (max_page_count stands in for a full disk) makes writes
 * fail with -1; reads and the handle keep working. */
static void test_full(void **state)
{
	struct tmp *t = *state;
	struct store *st = open_ok(t);
	struct scram_creds c, got;
	const char *error;
	assert_int_equal(scram_creds_derive("pw", 4, &c, &error), 0);
	assert_int_equal(accounts_create(st, "localhost", "first", &c), 0);
	sqlite3 *db = store_db(st);
	long long pages = query_int(db, "PRAGMA page_count");
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", pages);
	exec_ok(db, sql);
	int rc = 0, i;
	for (i = 0; i < 10000 && rc == 0; i++) {
		char user[32];
		snprintf(user, sizeof(user), "user%05d", i);
		rc = accounts_create(st, "localhost", user, &c);
	}
	assert_int_equal(rc, -1);
	assert_true(i < 10000);
	assert_int_equal(accounts_get(st, "localhost", "first", &got), 0);
	assert_creds_equal(&c, &got);
	assert_int_equal(accounts_delete(st, "localhost", "first"), 0);
	store_close(st);
}

/* ---- store_queue_work ---- */

#define NWORK 8

struct work_ctx {
	struct store *st;
	pthread_t loop_thread;
	int work_calls[NWORK];
	int done_calls[NWORK];
	int done_status[NWORK];
	bool done_on_loop[NWORK];
	bool work_off_loop[NWORK];
	int created[NWORK];
};

struct work_item {
	struct work_ctx *ctx;
	int i;
};

static int work_fn(struct store *st, void *ud)
{
	struct work_item *w = ud;
	struct work_ctx *ctx = w->ctx;
	/* cmocka asserts are not thread-safe: record, check on the loop */
	ctx->work_calls[w->i]++;
	ctx->work_off_loop[w->i] =
		!pthread_equal(pthread_self(), ctx->loop_thread);
	struct scram_creds c = { .iterations = 1 };
	char user[16];
	snprintf(user, sizeof(user), "u%d", w->i);
	ctx->created[w->i] = accounts_create(st, "localhost", user, &c);
	return w->i == 3 ? -1 : 100 + w->i;
}

static void done_fn(struct store *st, void *ud, int status)
{
	struct work_item *w = ud;
	struct work_ctx *ctx = w->ctx;
	ctx->done_calls[w->i]++;
	ctx->done_status[w->i] = status;
	ctx->done_on_loop[w->i] =
		pthread_equal(pthread_self(), ctx->loop_thread) &&
		st == ctx->st;
}

static void test_queue_work(void **state)
{
	struct tmp *t = *state;
	struct work_ctx ctx = { .st = open_ok(t),
				.loop_thread = pthread_self() };
	struct work_item items[NWORK];
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	for (int i = 0; i < NWORK; i++) {
		items[i] = (struct work_item){ &ctx, i };
		assert_int_equal(store_queue_work(&loop, ctx.st, work_fn,
						  done_fn, &items[i]),
				 0);
	}
	/* nothing completes before the loop runs */
	for (int i = 0; i < NWORK; i++)
		assert_int_equal(ctx.done_calls[i], 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < NWORK; i++) {
		assert_int_equal(ctx.work_calls[i], 1);
		assert_int_equal(ctx.done_calls[i], 1);
		assert_true(ctx.done_on_loop[i]);
		assert_true(ctx.work_off_loop[i]);
		assert_int_equal(ctx.created[i], 0);
		assert_int_equal(ctx.done_status[i], i == 3 ? -1 : 100 + i);
	}
	assert_int_equal(query_int(store_db(ctx.st),
				   "SELECT count(*) FROM accounts"),
			 NWORK);
	assert_int_equal(uv_loop_close(&loop), 0);
	store_close(ctx.st);
}

#define STORE_TEST(f) \
	cmocka_unit_test_setup_teardown(f, tmp_setup, tmp_teardown)

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ref_matches_rfc),
		cmocka_unit_test(test_check_rfc7677),
		cmocka_unit_test(test_derive_matches_ref),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_saslprep),
		cmocka_unit_test(test_key_accessors),
		STORE_TEST(test_open_settings),
		STORE_TEST(test_reopen_idempotent),
		STORE_TEST(test_too_new_refused),
		STORE_TEST(test_failed_migration_rolls_back),
		STORE_TEST(test_open_errors),
		STORE_TEST(test_accounts_crud),
		STORE_TEST(test_accounts_odd_names),
		STORE_TEST(test_accounts_list),
		STORE_TEST(test_two_handles),
		STORE_TEST(test_reader),
		STORE_TEST(test_locked),
		STORE_TEST(test_full),
		STORE_TEST(test_queue_work),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
