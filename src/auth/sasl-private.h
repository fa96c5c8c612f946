/*
 * sasl-private.h - shared by the files of auth/ only.
 */
#ifndef STANZAD_AUTH_SASL_PRIVATE_H
#define STANZAD_AUTH_SASL_PRIVATE_H

#include "sasl.h"
#include "scram_creds.h"

struct scram_tsep;

/* Loads the credentials of user (as sent, before nodeprep) into *creds_r.
 * Returns 0 (found), 1 (no such user or invalid name: *creds_r holds fake
 * ones that never verify) or -1 (storage error). On 0, *user_r is the
 * nodeprep'd name (malloc'ed). */
int sasl_load_creds(struct store *st, const char *host, const char *user,
		    unsigned iterations, struct scram_creds *creds_r,
		    char **user_r);

/* SCRAM with tls-server-end-point (RFC 5802 §5, RFC 5929 §4). */
struct scram_tsep *scram_tsep_new(enum scram_hash h);
void scram_tsep_free(struct scram_tsep *t);
/* As sasl_step, on decoded input. Returns SASL_* and fills *out_r
 * (malloc'ed raw bytes, *outlen_r), *user_r on success (malloc'ed). */
enum sasl_status scram_tsep_step(struct scram_tsep *t, struct store *st,
				 const char *host, unsigned iterations,
				 const struct sasl_cb *cb, const char *in,
				 size_t inlen, char **out_r, size_t *outlen_r,
				 char **user_r, const char **cond_r);

#endif
