/*
 * sasl.h - SASL for c2s (RFC 6120 §6) through GNU SASL.
 *
 * Mechanisms: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256,
 * SCRAM-SHA-1 and PLAIN (the caller offers them only over TLS). Channel
 * bindings: tls-exporter (TLS 1.3) and tls-unique (TLS 1.2) through GNU
 * SASL; tls-server-end-point, which GNU SASL 2.2 does not know, through
 * scram_tsep.c, a SCRAM server on GNU SASL's own primitives.
 *
 * Credentials come from the store (accounts.h) as SCRAM StoredKey and
 * ServerKey; PLAIN derives the keys from the offered password. Unknown
 * users get a deterministic fake salt so SCRAM does not reveal which
 * accounts exist.
 *
 * A step that loads credentials (the first SCRAM message, PLAIN's only
 * one) blocks (database; PBKDF2 for PLAIN): run it on the thread pool. The
 * SCRAM steps after that use only what the first one loaded (a few HMACs)
 * and may run anywhere; sasl_step_blocks() says which is next. A struct
 * sasl is used by one thread at a time.
 */
#ifndef STANZAD_AUTH_SASL_H
#define STANZAD_AUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_CB_MAX 64

struct store;
struct sasl;

/* The connection's channel-binding data, captured on its shard. */
struct sasl_cb {
	unsigned char exporter[SASL_CB_MAX], tsep[SASL_CB_MAX],
		unique[SASL_CB_MAX];
	size_t exporter_len, tsep_len, unique_len; /* 0: not available */
};

enum sasl_status {
	SASL_CHALLENGE, /* send *out_r in <challenge/> */
	SASL_SUCCESS,   /* send *out_r (may be NULL) in <success/> */
	SASL_FAILURE,   /* send <failure><*cond_r/></failure> */
};

/* Once at start-up / shutdown. Returns 0 or -1 with *error_r (static). */
int sasl_init(const char **error_r);
void sasl_fini(void);

/* Fills names with the mechanisms to offer (best first); returns count. */
size_t sasl_mechanisms(const struct sasl_cb *cb, const char **names,
		       size_t max);
/* The channel-binding types to advertise (XEP-0440); returns count. */
size_t sasl_cb_types(const struct sasl_cb *cb, const char **names,
		     size_t max);

/* Starts an exchange for mech on host. Returns NULL if mech is not offered
 * (invalid-mechanism). cb is copied. */
struct sasl *sasl_start(const char *mech, const char *host,
			const struct sasl_cb *cb, unsigned iterations);
/* True if the next step may block (load credentials, derive keys): run it
 * on the thread pool. False once a SCRAM exchange has its credentials: the
 * next step needs no store (sasl_step's st may be NULL) and is cheap. */
bool sasl_step_blocks(const struct sasl *s);
/* True if what blocks in the next step is only reading the credentials (a
 * SCRAM exchange's first step: then a few hashes), so it may run as a
 * store read (store_queue_read). PLAIN also derives a key (PBKDF2). */
bool sasl_step_only_reads(const struct sasl *s);
/*
 * One step. in is the element's text (base64, "=" for empty, NULL when the
 * element had no text). Blocks unless sasl_step_blocks() said it would
 * not. On SASL_CHALLENGE and SASL_SUCCESS,
 * *out_r is malloc'ed base64 (or NULL for no data); on SASL_FAILURE,
 * *cond_r is the RFC 6120 §6.5 condition name.
 */
enum sasl_status sasl_step(struct sasl *s, struct store *st, const char *in,
			   char **out_r, const char **cond_r);
/* After SASL_SUCCESS: the authenticated username, nodeprep'd. */
const char *sasl_username(const struct sasl *s);
const char *sasl_mech(const struct sasl *s);
void sasl_free(struct sasl *s);

#endif
