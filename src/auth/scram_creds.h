/*
 * scram_creds.h - stored SCRAM credentials (RFC 5802 §3, RFC 7677).
 *
 * A password is never stored: only a salt, an iteration count and, for each
 * hash, StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
 * ServerKey = HMAC(SaltedPassword, "Server Key"). These authenticate SCRAM
 * directly and PLAIN by deriving the keys from the offered password.
 * Derivation uses GNU SASL's gsasl_scram_secrets_from_password().
 */
#ifndef STANZAD_AUTH_SCRAM_CREDS_H
#define STANZAD_AUTH_SCRAM_CREDS_H

#include <stdbool.h>
#include <stddef.h>

#define SCRAM_SALT_LEN 16
#define SCRAM_SHA1_LEN 20
#define SCRAM_SHA256_LEN 32

enum scram_hash {
	SCRAM_SHA1,
	SCRAM_SHA256,
};

struct scram_creds {
	unsigned iterations;
	unsigned char salt[SCRAM_SALT_LEN];
	unsigned char stored_sha1[SCRAM_SHA1_LEN];
	unsigned char server_sha1[SCRAM_SHA1_LEN];
	unsigned char stored_sha256[SCRAM_SHA256_LEN];
	unsigned char server_sha256[SCRAM_SHA256_LEN];
};

/* The longest password accepted, in bytes (before SASLprep). */
#define SCRAM_PASSWORD_MAX 1024

/* Derives credentials for password (UTF-8, SASLprep'd here) with a fresh
 * random salt. Returns 0, or -1 and *error_r (static) if the password fails
 * SASLprep or is empty. Slow by design: run it off the event loop. */
int scram_creds_derive(const char *password, unsigned iterations,
		       struct scram_creds *creds_r, const char **error_r);

/* True if password matches creds (for PLAIN). Constant-time comparison of
 * the derived keys. Slow by design. */
bool scram_creds_check(const struct scram_creds *creds, const char *password);

/* Stored/server key of one hash, and its length. */
const unsigned char *scram_creds_stored_key(const struct scram_creds *c,
					    enum scram_hash h, size_t *len_r);
const unsigned char *scram_creds_server_key(const struct scram_creds *c,
					    enum scram_hash h, size_t *len_r);

#endif
