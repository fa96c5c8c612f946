/*
 * scram_creds.c - derive and check stored SCRAM credentials (RFC 5802 §3,
 * RFC 7677) for SCRAM-SHA-1 and SCRAM-SHA-256.
 *
 * GNU SASL does the SASLprep (RFC 4013, unassigned code points allowed as
 * for a stored string's query) and the PBKDF2/HMAC work. Its
 * gsasl_scram_secrets_from_password() takes no Gsasl context and keeps no
 * state, so this file needs no gsasl_init() and is safe on any number of
 * pool threads at once. The salt comes from OpenSSL's CSPRNG. Secrets that
 * pass through here (prepared password, SaltedPassword, ClientKey) are
 * wiped before their memory is released.
 */
#include <assert.h>
#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "../core/bug.h"
#include "scram_creds.h"

static_assert(SCRAM_SHA1_LEN == GSASL_HASH_SHA1_SIZE, "SHA-1 size");
static_assert(SCRAM_SHA256_LEN == GSASL_HASH_SHA256_SIZE, "SHA-256 size");

/* The four keys of one password, as the derivation produces them. */
struct scram_keys {
	unsigned char stored_sha1[SCRAM_SHA1_LEN];
	unsigned char server_sha1[SCRAM_SHA1_LEN];
	unsigned char stored_sha256[SCRAM_SHA256_LEN];
	unsigned char server_sha256[SCRAM_SHA256_LEN];
};

/*
 * Checks that password survives SASLprep and is not empty afterwards (a
 * password made only of characters mapped to nothing, like U+00AD, would
 * otherwise become the empty password). Returns 0 or -1 and *error_r.
 */
static int scram_check_prep(const char *password, const char **error_r)
{
	/* PBKDF2 rehashes a key longer than the hash's block every
	 * iteration: an unbounded password would buy seconds of CPU per
	 * PLAIN attempt, for known and unknown users alike. */
	if (strnlen(password, SCRAM_PASSWORD_MAX + 1) > SCRAM_PASSWORD_MAX) {
		*error_r = "password longer than 1024 bytes";
		return -1;
	}
	char *prep = NULL;
	int rc = gsasl_saslprep(password, GSASL_ALLOW_UNASSIGNED, &prep, NULL);
	if (rc != GSASL_OK) {
		*error_r = "password is not valid UTF-8 or has characters "
			   "SASLprep forbids";
		return -1;
	}
	size_t len = strlen(prep);
	OPENSSL_cleanse(prep, len);
	gsasl_free(prep);
	if (len == 0) {
		*error_r = "empty password";
		return -1;
	}
	return 0;
}

/* One hash's StoredKey and ServerKey; gsasl SASLpreps password itself. */
static int scram_derive_one(Gsasl_hash hash, const char *password,
			    unsigned iterations, const unsigned char *salt,
			    unsigned char *stored_r, unsigned char *server_r)
{
	char salted[GSASL_HASH_MAX_SIZE], client[GSASL_HASH_MAX_SIZE];
	int rc = gsasl_scram_secrets_from_password(
		hash, password, iterations, (const char *)salt,
		SCRAM_SALT_LEN, salted, client, (char *)server_r,
		(char *)stored_r);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client, sizeof(client));
	return rc == GSASL_OK ? 0 : -1;
}

static int scram_derive_keys(const char *password, unsigned iterations,
			     const unsigned char *salt, struct scram_keys *k)
{
	if (scram_derive_one(GSASL_HASH_SHA1, password, iterations, salt,
			     k->stored_sha1, k->server_sha1) < 0)
		return -1;
	return scram_derive_one(GSASL_HASH_SHA256, password, iterations, salt,
				k->stored_sha256, k->server_sha256);
}

int scram_creds_derive(const char *password, unsigned iterations,
		       struct scram_creds *creds_r, const char **error_r)
{
	if (iterations == 0) {
		*error_r = "iteration count must be at least 1";
		return -1;
	}
	if (scram_check_prep(password, error_r) < 0)
		return -1;
	struct scram_creds c = { .iterations = iterations };
	if (RAND_bytes(c.salt, sizeof(c.salt)) != 1) {
		*error_r = "random number generator failed";
		return -1;
	}
	struct scram_keys k;
	if (scram_derive_keys(password, iterations, c.salt, &k) < 0) {
		/* SASLprep already passed, so this is the library failing. */
		*error_r = "SCRAM key derivation failed";
		return -1;
	}
	memcpy(c.stored_sha1, k.stored_sha1, sizeof(c.stored_sha1));
	memcpy(c.server_sha1, k.server_sha1, sizeof(c.server_sha1));
	memcpy(c.stored_sha256, k.stored_sha256, sizeof(c.stored_sha256));
	memcpy(c.server_sha256, k.server_sha256, sizeof(c.server_sha256));
	*creds_r = c;
	return 0;
}

bool scram_creds_check(const struct scram_creds *creds, const char *password)
{
	const char *error;
	if (creds->iterations == 0 || scram_check_prep(password, &error) < 0)
		return false;
	struct scram_keys k;
	if (scram_derive_keys(password, creds->iterations, creds->salt, &k) < 0)
		return false;
	/* Every key is compared, whatever the earlier ones gave, so the time
	 * taken says nothing about which one differed. */
	int diff = CRYPTO_memcmp(k.stored_sha1, creds->stored_sha1,
				 SCRAM_SHA1_LEN);
	diff |= CRYPTO_memcmp(k.server_sha1, creds->server_sha1,
			      SCRAM_SHA1_LEN);
	diff |= CRYPTO_memcmp(k.stored_sha256, creds->stored_sha256,
			      SCRAM_SHA256_LEN);
	diff |= CRYPTO_memcmp(k.server_sha256, creds->server_sha256,
			      SCRAM_SHA256_LEN);
	OPENSSL_cleanse(&k, sizeof(k));
	return diff == 0;
}

const unsigned char *scram_creds_stored_key(const struct scram_creds *c,
					    enum scram_hash h, size_t *len_r)
{
	switch (h) {
	case SCRAM_SHA1:
		*len_r = SCRAM_SHA1_LEN;
		return c->stored_sha1;
	case SCRAM_SHA256:
		*len_r = SCRAM_SHA256_LEN;
		return c->stored_sha256;
	}
	bug_abort(__FILE__, __LINE__, "unknown enum scram_hash");
}

const unsigned char *scram_creds_server_key(const struct scram_creds *c,
					    enum scram_hash h, size_t *len_r)
{
	switch (h) {
	case SCRAM_SHA1:
		*len_r = SCRAM_SHA1_LEN;
		return c->server_sha1;
	case SCRAM_SHA256:
		*len_r = SCRAM_SHA256_LEN;
		return c->server_sha256;
	}
	bug_abort(__FILE__, __LINE__, "unknown enum scram_hash");
}
