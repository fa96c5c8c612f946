/*
 * scram.c - the load generator's SCRAM client (RFC 5802; SHA-256 from
 * RFC 7677, SHA-1 as the fallback some servers offer alone), written on
 * OpenSSL primitives only. No channel binding (gs2 header "n,,"): the
 * benchmark compares servers, not -PLUS. Passwords are used as given
 * (SASLprep is the identity on the ASCII passwords benchmarks use).
 * Invariant: nothing from the server is trusted; every field is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "loadgen-private.h"

/* PBKDF2 work is bounded: a hostile or broken server could ask for
 * billions of iterations and stall the whole generator. */
#define LG_SCRAM_MAX_ITER 1000000u

/* Fetched once by lg_scram_init: a fetch per use takes the provider
 * store's locks and costs more than the HMAC itself. */
static EVP_MAC *scram_hmac_alg;
static EVP_MD *scram_mds[2];
static const char *const scram_md_names[2] = {
	[LG_SCRAM_SHA1] = "SHA1",
	[LG_SCRAM_SHA256] = "SHA2-256",
};

void lg_scram_init(void)
{
	scram_hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
	for (int h = 0; h < 2; h++)
		scram_mds[h] = EVP_MD_fetch(NULL, scram_md_names[h], NULL);
	if (!scram_hmac_alg || !scram_mds[0] || !scram_mds[1]) {
		fputs("loadgen: OpenSSL has no HMAC, SHA-1 or SHA-256\n",
		      stderr);
		exit(2);
	}
}

const char *lg_scram_mech(enum lg_scram_hash hash)
{
	return hash == LG_SCRAM_SHA256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
}

static const EVP_MD *scram_md(enum lg_scram_hash hash)
{
	return scram_mds[hash];
}

char *lg_b64_encode(const void *data, size_t len)
{
	char *out = lg_xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

unsigned char *lg_b64_decode(const char *s, size_t len, size_t *len_r)
{
	/* EVP_DecodeBlock accepts whitespace and counts padding as zero
	 * bytes; SCRAM wants strict base64, so check the shape first. */
	if (len % 4 != 0)
		return NULL;
	size_t pad = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool ok = (ch >= 'A' && ch <= 'Z') ||
			  (ch >= 'a' && ch <= 'z') ||
			  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
		if (ch == '=' && i >= len - 2) {
			pad++;
			continue;
		}
		if (!ok || pad)
			return NULL;
	}
	unsigned char *out = lg_xmalloc(len / 4 * 3 + 1);
	int n = len ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)len)
		    : 0;
	if (n < 0 || (size_t)n < pad) {
		free(out);
		return NULL;
	}
	*len_r = (size_t)n - pad;
	return out;
}

/* RFC 5802 §5.1: "=" and "," in the user name become =3D and =2C. */
static char *scram_saslname(const char *user)
{
	struct lg_sbuf b = { 0 };
	lg_sbuf_add(&b, "", 0);
	for (const char *p = user; *p; p++) {
		if (*p == '=')
			lg_sbuf_adds(&b, "=3D");
		else if (*p == ',')
			lg_sbuf_adds(&b, "=2C");
		else
			lg_sbuf_add(&b, p, 1);
	}
	return b.p;
}

char *lg_scram_first(struct lg_scram *s, enum lg_scram_hash hash,
		     const char *user)
{
	lg_scram_clear(s);
	s->hash = hash;
	s->md_len = (size_t)EVP_MD_get_size(scram_md(hash));
	unsigned char raw[18];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		abort(); /* no randomness: nothing sane to do */
	s->nonce = lg_b64_encode(raw, sizeof(raw));
	char *name = scram_saslname(user);
	s->first_bare = lg_xasprintf("n=%s,r=%s", name, s->nonce);
	free(name);
	return lg_xasprintf("n,,%s", s->first_bare);
}

/* Finds attribute `key` ("r", "s", "i", "v") in a comma-separated SCRAM
 * message; returns its value (not terminated) and length, or NULL. */
static const char *scram_attr(const char *in, size_t len, char key,
			      size_t *len_r)
{
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && in[end] != ',')
			end++;
		if (end - i >= 2 && in[i] == key && in[i + 1] == '=') {
			*len_r = end - i - 2;
			return in + i + 2;
		}
		i = end + 1;
	}
	return NULL;
}

static bool scram_parse_iter(const char *p, size_t len, unsigned *iter_r)
{
	if (len == 0 || len > 9)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	*iter_r = v;
	return v >= 1 && v <= LG_SCRAM_MAX_ITER;
}

/* A new HMAC state keyed with `key`. */
static EVP_MAC_CTX *scram_mac_new(enum lg_scram_hash hash, const void *key,
				  size_t key_len)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)scram_md_names[hash],
						 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(scram_hmac_alg);
	if (!ctx || !EVP_MAC_init(ctx, key, key_len, params)) {
		fputs("loadgen: HMAC set-up failed\n", stderr);
		abort();
	}
	return ctx;
}

/* out := HMAC(key of `ctx`, data). A NULL key restarts the state with
 * the key it has, so the state is used again at the next login. */
static void scram_mac(EVP_MAC_CTX *ctx, const void *data, size_t len,
		      unsigned char *out, size_t out_size)
{
	size_t n = 0;
	if (!EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, data, len) ||
	    !EVP_MAC_final(ctx, out, &n, out_size)) {
		fputs("loadgen: HMAC failed\n", stderr);
		abort();
	}
}

void lg_scram_cache_free(struct lg_scram_cache *cache)
{
	EVP_MAC_CTX_free(cache->stored_mac);
	EVP_MAC_CTX_free(cache->server_mac);
	OPENSSL_cleanse(cache->client_key, sizeof(cache->client_key));
	cache->stored_mac = cache->server_mac = NULL;
	cache->hash = -1;
}

/* Fills `keys` from Hi(password, salt, i) (RFC 5802 §3): ClientKey and
 * HMAC states keyed with StoredKey and ServerKey. */
static void scram_derive(const struct lg_scram *s, const char *password,
			 const unsigned char *salt, size_t salt_len,
			 unsigned iter, struct lg_scram_cache *keys)
{
	unsigned char salted[64], stored_key[64], server_key[64];
	size_t n = s->md_len;
	PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
			  (int)iter, scram_md(s->hash), (int)n, salted);
	EVP_MAC_CTX *ctx = scram_mac_new(s->hash, salted, n);
	scram_mac(ctx, "Client Key", 10, keys->client_key,
		  sizeof(keys->client_key));
	scram_mac(ctx, "Server Key", 10, server_key, sizeof(server_key));
	EVP_MAC_CTX_free(ctx);
	EVP_Digest(keys->client_key, n, stored_key, NULL, scram_md(s->hash),
		   NULL);
	keys->stored_mac = scram_mac_new(s->hash, stored_key, n);
	keys->server_mac = scram_mac_new(s->hash, server_key, n);
	keys->hash = (int)s->hash;
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(server_key, sizeof(server_key));
}

/* The keys for this salt and count: from the cache when they are the same
 * as last time, else derived (and cached when the salt fits). Returns
 * `tmp` when the result is not cached: the caller frees it. */
static struct lg_scram_cache *scram_keys_for(const struct lg_scram *s,
					     const char *password,
					     const unsigned char *salt,
					     size_t salt_len, unsigned iter,
					     struct lg_scram_cache *cache,
					     struct lg_scram_cache *tmp)
{
	if (cache && cache->hash == (int)s->hash && cache->iter == iter &&
	    cache->salt_len == salt_len &&
	    memcmp(cache->salt, salt, salt_len) == 0)
		return cache;
	if (!cache || salt_len > sizeof(cache->salt)) {
		*tmp = (struct lg_scram_cache){ .hash = -1 };
		scram_derive(s, password, salt, salt_len, iter, tmp);
		return tmp;
	}
	lg_scram_cache_free(cache);
	scram_derive(s, password, salt, salt_len, iter, cache);
	memcpy(cache->salt, salt, salt_len);
	cache->salt_len = salt_len;
	cache->iter = iter;
	return cache;
}

/* Computes the proof (into proof) and keeps ServerSignature for the
 * verification of the server-final-message. */
static void scram_keys(struct lg_scram *s, const struct lg_scram_cache *k,
		       const char *auth_msg, unsigned char *proof)
{
	unsigned char sig[64];
	size_t n = s->md_len, alen = strlen(auth_msg);
	scram_mac(k->stored_mac, auth_msg, alen, sig, sizeof(sig));
	for (size_t i = 0; i < n; i++)
		proof[i] = k->client_key[i] ^ sig[i];
	scram_mac(k->server_mac, auth_msg, alen, s->server_sig,
		  sizeof(s->server_sig));
}

char *lg_scram_final(struct lg_scram *s, const char *in, size_t in_len,
		     const char *password, struct lg_scram_cache *cache,
		     const char **error_r)
{
	size_t rlen = 0, slen = 0, ilen = 0, nlen = strlen(s->nonce);
	const char *r = scram_attr(in, in_len, 'r', &rlen);
	const char *salt64 = scram_attr(in, in_len, 's', &slen);
	const char *it = scram_attr(in, in_len, 'i', &ilen);
	unsigned iter = 0;
	*error_r = "scram-malformed-challenge";
	if (!r || !salt64 || !it || memchr(in, '\0', in_len))
		return NULL;
	/* RFC 5802 §5.1: a mandatory extension we do not know is fatal. */
	if (in_len >= 2 && in[0] == 'm' && in[1] == '=') {
		*error_r = "scram-mandatory-extension";
		return NULL;
	}
	/* RFC 5802 §5.1: the server nonce must extend ours. */
	if (rlen <= nlen || memcmp(r, s->nonce, nlen) != 0) {
		*error_r = "scram-bad-nonce";
		return NULL;
	}
	if (!scram_parse_iter(it, ilen, &iter)) {
		*error_r = "scram-bad-iteration-count";
		return NULL;
	}
	size_t salt_len = 0;
	unsigned char *salt = lg_b64_decode(salt64, slen, &salt_len);
	if (!salt || salt_len == 0) {
		free(salt);
		return NULL;
	}
	unsigned char proof[64];
	struct lg_scram_cache tmp;
	struct lg_scram_cache *keys = scram_keys_for(s, password, salt,
						     salt_len, iter, cache,
						     &tmp);
	free(salt);
	char *without_proof = lg_xasprintf("c=biws,r=%.*s", (int)rlen, r);
	char *auth_msg = lg_xasprintf("%s,%.*s,%s", s->first_bare, (int)in_len,
				      in, without_proof);
	scram_keys(s, keys, auth_msg, proof);
	if (keys == &tmp)
		lg_scram_cache_free(&tmp);
	char *p64 = lg_b64_encode(proof, s->md_len);
	char *out = lg_xasprintf("%s,p=%s", without_proof, p64);
	free(p64);
	free(auth_msg);
	free(without_proof);
	return out;
}

bool lg_scram_verify(struct lg_scram *s, const char *in, size_t in_len)
{
	size_t vlen = 0, sig_len = 0;
	const char *v = scram_attr(in, in_len, 'v', &vlen);
	if (!v || s->md_len == 0)
		return false;
	unsigned char *sig = lg_b64_decode(v, vlen, &sig_len);
	bool ok = sig && sig_len == s->md_len &&
		  CRYPTO_memcmp(sig, s->server_sig, sig_len) == 0;
	free(sig);
	return ok;
}

void lg_scram_clear(struct lg_scram *s)
{
	free(s->first_bare);
	free(s->nonce);
	*s = (struct lg_scram){ 0 };
}
