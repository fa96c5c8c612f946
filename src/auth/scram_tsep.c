/*
 * scram_tsep.c - the server side of SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS
 * with the tls-server-end-point channel binding (RFC 5802 §5, §7;
 * RFC 5929 §4).
 *
 * GNU SASL 2.2 only binds to tls-unique and tls-exporter, and refuses any
 * other binding name, so this file fills that one gap. It uses GNU SASL's
 * primitives (SASLprep, nonces, base64), OpenSSL's HMAC and digests, and
 * the same stored credentials; everything else goes through GNU SASL.
 *
 *   client-first  = gs2-header client-first-bare
 *   gs2-header    = "p=tls-server-end-point," [ "a=" authzid ] ","
 *   client-first-bare = "n=" user ",r=" c-nonce [ "," extensions ]
 *   server-first  = "r=" c-nonce s-nonce ",s=" salt ",i=" iterations
 *   client-final  = "c=" base64(gs2-header cb-data) ",r=" nonce ",p=" proof
 *   server-final  = "v=" base64(ServerSignature)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../core/xmalloc.h"
#include "sasl-private.h"

#define NONCE_RAW 18

struct scram_tsep {
	enum scram_hash hash;
	int step;
	int load;               /* sasl_load_creds result */
	char *user;             /* nodeprep'd, when the account exists */
	char *gs2;              /* gs2-header */
	char *client_first_bare;
	char *server_first;
	char *nonce;            /* c-nonce s-nonce */
	struct scram_creds creds;
};

struct scram_tsep *scram_tsep_new(enum scram_hash h)
{
	struct scram_tsep *t = xcalloc(1, sizeof(*t));
	t->hash = h;
	return t;
}

void scram_tsep_free(struct scram_tsep *t)
{
	if (t == NULL)
		return;
	free(t->user);
	free(t->gs2);
	free(t->client_first_bare);
	free(t->server_first);
	free(t->nonce);
	OPENSSL_cleanse(&t->creds, sizeof(t->creds));
	free(t);
}

static size_t hash_len(enum scram_hash h)
{
	return h == SCRAM_SHA1 ? SCRAM_SHA1_LEN : SCRAM_SHA256_LEN;
}

static const EVP_MD *md_of(enum scram_hash h)
{
	return h == SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

static int hmac(enum scram_hash h, const unsigned char *key, size_t klen,
		const char *msg, size_t len, unsigned char *out)
{
	unsigned n = 0;
	return HMAC(md_of(h), key, (int)klen, (const unsigned char *)msg, len,
		    out, &n) != NULL && n == hash_len(h) ? 0 : -1;
}

static int digest(enum scram_hash h, const unsigned char *in, size_t len,
		  unsigned char *out)
{
	unsigned n = 0;
	return EVP_Digest(in, len, out, &n, md_of(h), NULL) == 1 &&
			       n == hash_len(h)
		       ? 0
		       : -1;
}

/* Decodes a SCRAM saslname ("=2C" -> ',', "=3D" -> '='); NULL if bad. */
static char *saslname_decode(const char *p, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0')
			goto bad;
		if (p[i] != '=') {
			*o++ = p[i];
			continue;
		}
		if (len - i < 3)
			goto bad;
		if (memcmp(p + i, "=2C", 3) == 0)
			*o++ = ',';
		else if (memcmp(p + i, "=3D", 3) == 0)
			*o++ = '=';
		else
			goto bad;
		i += 2;
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

static enum sasl_status fail(const char **cond_r, const char *cond)
{
	*cond_r = cond;
	return SASL_FAILURE;
}

static enum sasl_status client_first(struct scram_tsep *t, struct store *st,
				     const char *host, unsigned iterations,
				     const char *in, size_t len, char **out_r,
				     size_t *outlen_r, const char **cond_r)
{
	if (memchr(in, '\0', len) != NULL)
		return fail(cond_r, "malformed-request");
	static const char p[] = "p=tls-server-end-point,";
	if (len < sizeof(p) - 1 || memcmp(in, p, sizeof(p) - 1) != 0)
		return fail(cond_r, "malformed-request");
	/* The authzid, if any, ends at the next comma. */
	const char *end = in + len;
	const char *q = in + sizeof(p) - 1;
	const char *comma = memchr(q, ',', (size_t)(end - q));
	if (comma == NULL || (q != comma && strncmp(q, "a=", 2) != 0))
		return fail(cond_r, "malformed-request");
	t->gs2 = str_xdup(STR(in, (size_t)(comma + 1 - in)));
	const char *bare = comma + 1;
	if (end - bare < 2 || strncmp(bare, "n=", 2) != 0)
		return fail(cond_r, "malformed-request");
	const char *ucomma = memchr(bare, ',', (size_t)(end - bare));
	if (ucomma == NULL || end - ucomma < 3 || strncmp(ucomma, ",r=", 3))
		return fail(cond_r, "malformed-request");
	const char *cn = ucomma + 3;
	const char *cn_end = memchr(cn, ',', (size_t)(end - cn));
	if (cn_end == NULL)
		cn_end = end;
	if (cn_end == cn)
		return fail(cond_r, "malformed-request");
	char *user = saslname_decode(bare + 2, (size_t)(ucomma - bare - 2));
	char *prepped = NULL;
	if (user == NULL ||
	    gsasl_saslprep(user, GSASL_ALLOW_UNASSIGNED, &prepped, NULL) !=
		    GSASL_OK) {
		free(user);
		return fail(cond_r, "malformed-request");
	}
	free(user);
	t->load = sasl_load_creds(st, host, prepped, iterations, &t->creds,
				  &t->user);
	gsasl_free(prepped);
	if (t->load < 0)
		return fail(cond_r, "temporary-auth-failure");
	t->client_first_bare = str_xdup(STR(bare, (size_t)(end - bare)));

	char raw[NONCE_RAW], *snonce = NULL, *salt = NULL;
	if (gsasl_nonce(raw, sizeof(raw)) != GSASL_OK ||
	    gsasl_base64_to(raw, sizeof(raw), &snonce, NULL) != GSASL_OK ||
	    gsasl_base64_to((const char *)t->creds.salt, sizeof(t->creds.salt),
			    &salt, NULL) != GSASL_OK) {
		gsasl_free(snonce);
		return fail(cond_r, "temporary-auth-failure");
	}
	size_t cnlen = (size_t)(cn_end - cn);
	t->nonce = xmalloc(cnlen + strlen(snonce) + 1);
	memcpy(t->nonce, cn, cnlen);
	strcpy(t->nonce + cnlen, snonce);
	gsasl_free(snonce);
	int n = asprintf(&t->server_first, "r=%s,s=%s,i=%u", t->nonce, salt,
			 t->creds.iterations);
	gsasl_free(salt);
	if (n < 0)
		return fail(cond_r, "temporary-auth-failure");
	*out_r = xstrdup(t->server_first);
	*outlen_r = (size_t)n;
	t->step = 1;
	return SASL_CHALLENGE;
}

/* Checks c= against the gs2-header and our certificate's hash. */
static bool binding_ok(const struct scram_tsep *t, const struct sasl_cb *cb,
		       const char *b64, size_t len)
{
	char *raw = NULL;
	size_t rawlen = 0;
	if (cb->tsep_len == 0 ||
	    gsasl_base64_from(b64, len, &raw, &rawlen) != GSASL_OK)
		return false;
	size_t glen = strlen(t->gs2);
	bool ok = rawlen == glen + cb->tsep_len &&
		  memcmp(raw, t->gs2, glen) == 0 &&
		  CRYPTO_memcmp(raw + glen, cb->tsep, cb->tsep_len) == 0;
	gsasl_free(raw);
	return ok;
}

static enum sasl_status client_final(struct scram_tsep *t,
				     const struct sasl_cb *cb, const char *in,
				     size_t len, char **out_r,
				     size_t *outlen_r, char **user_r,
				     const char **cond_r)
{
	if (memchr(in, '\0', len) != NULL || len < 2 ||
	    strncmp(in, "c=", 2) != 0)
		return fail(cond_r, "malformed-request");
	const char *end = in + len;
	const char *c_end = memchr(in, ',', len);
	const char *proof = NULL;
	for (const char *p = in; p && p + 3 <= end;
	     p = memchr(p + 1, ',', (size_t)(end - p - 1)))
		if (strncmp(p, ",p=", 3) == 0)
			proof = p;
	if (c_end == NULL || proof == NULL ||
	    end - c_end < 3 || strncmp(c_end, ",r=", 3) != 0)
		return fail(cond_r, "malformed-request");
	const char *r = c_end + 3;
	const char *r_end = memchr(r, ',', (size_t)(end - r));
	size_t nlen = strlen(t->nonce);
	if (r_end == NULL || (size_t)(r_end - r) != nlen ||
	    memcmp(r, t->nonce, nlen) != 0)
		return fail(cond_r, "not-authorized");
	if (!binding_ok(t, cb, in + 2, (size_t)(c_end - in - 2)))
		return fail(cond_r, "not-authorized");

	char *proof_raw = NULL;
	size_t proof_len = 0, hl = hash_len(t->hash);
	if (gsasl_base64_from(proof + 3, (size_t)(end - proof - 3), &proof_raw,
			      &proof_len) != GSASL_OK || proof_len != hl) {
		gsasl_free(proof_raw);
		return fail(cond_r, "malformed-request");
	}
	char *auth_msg = NULL;
	int n = asprintf(&auth_msg, "%s,%s,%.*s", t->client_first_bare,
			 t->server_first, (int)(proof - in), in);
	size_t klen;
	const unsigned char *stored =
		scram_creds_stored_key(&t->creds, t->hash, &klen);
	const unsigned char *server_key =
		scram_creds_server_key(&t->creds, t->hash, &klen);
	unsigned char sig[SCRAM_SHA256_LEN], key[SCRAM_SHA256_LEN],
		check[SCRAM_SHA256_LEN], ssig[SCRAM_SHA256_LEN];
	bool ok = n > 0 &&
		  hmac(t->hash, stored, hl, auth_msg, (size_t)n, sig) == 0;
	for (size_t i = 0; ok && i < hl; i++)
		key[i] = (unsigned char)proof_raw[i] ^ sig[i];
	ok = ok && digest(t->hash, key, hl, check) == 0 &&
	     CRYPTO_memcmp(check, stored, hl) == 0 && t->load == 0 &&
	     hmac(t->hash, server_key, hl, auth_msg, (size_t)n, ssig) == 0;
	gsasl_free(proof_raw);
	free(auth_msg);
	if (!ok)
		return fail(cond_r, "not-authorized");
	/* The authzid, if any, must name the account itself: checked by
	 * the caller through the username; refuse any other here. */
	if (strncmp(t->gs2 + 23, "a=", 2) == 0)
		return fail(cond_r, "invalid-authzid");
	char *v = NULL;
	if (gsasl_base64_to((const char *)ssig, hl, &v, NULL) != GSASL_OK)
		return fail(cond_r, "temporary-auth-failure");
	n = asprintf(out_r, "v=%s", v);
	gsasl_free(v);
	if (n < 0)
		return fail(cond_r, "temporary-auth-failure");
	*outlen_r = (size_t)n;
	*user_r = xstrdup(t->user);
	t->step = 2;
	return SASL_SUCCESS;
}

enum sasl_status scram_tsep_step(struct scram_tsep *t, struct store *st,
				 const char *host, unsigned iterations,
				 const struct sasl_cb *cb, const char *in,
				 size_t inlen, char **out_r, size_t *outlen_r,
				 char **user_r, const char **cond_r)
{
	*out_r = NULL;
	*outlen_r = 0;
	*user_r = NULL;
	switch (t->step) {
	case 0:
		return client_first(t, st, host, iterations, in, inlen, out_r,
				    outlen_r, cond_r);
	case 1:
		return client_final(t, cb, in, inlen, out_r, outlen_r, user_r,
				    cond_r);
	default:
		return fail(cond_r, "malformed-request");
	}
}
