/*
 * tls.c - per-host OpenSSL server contexts, SNI, self-signed certificates
 * and channel bindings; see tls.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/stats.h"
#include "../core/thread_exit.h"
#include "../core/xmalloc.h"
#include "resolve.h"
#include "tls.h"

/* Indexed by local domain (conf_find_domain): the hosts, then the
 * components and the subdomain services, whose entries share a host's
 * contexts (component_ctx). */
static SSL_CTX **host_ctx;
static SSL_CTX **client_ctx;   /* s2s: outgoing, our certificate per host */
static size_t nctx;
static X509_STORE *trust;      /* s2s: authorities for peers' certificates */
static const struct config *tls_conf;

/* Modern suites for TLS 1.2, AES-128-GCM first as in TLS 1.3 below. */
static const char tls12_ciphers[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* TLS 1.3: OpenSSL's three suites, but TLS_AES_128_GCM_SHA256 (the one
 * every implementation must have, RFC 8446 9.1) first where OpenSSL puts
 * TLS_AES_256_GCM_SHA384. With the server's preference this is what every
 * client gets: the handshake's key schedule is HKDF over SHA-256, which
 * processors hash in hardware (SHA-NI), not SHA-384 (docs/internals/
 * performance.md: ~17% of a login's server instructions were HKDF-SHA384). */
static const char tls13_suites[] =
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	"TLS_CHACHA20_POLY1305_SHA256";

/*
 * OpenSSL's record buffers, kept per thread. SSL_MODE_RELEASE_BUFFERS
 * frees a connection's read buffer whenever it is empty and its write
 * buffer once written, so an idle connection holds neither; the price was
 * a malloc and a free of about 16.5 KiB per read and per flush, past
 * glibc's per-thread caches (from the heap's bins, consolidating its fast
 * bins): about 5% of a message's server CPU at a fixed rate. OpenSSL
 * allocates through the functions below (tls_mem_init): requests of
 * TLS_BUF_MIN..TLS_BUF_SIZE bytes get TLS_BUF_SIZE, and each thread keeps
 * up to TLS_BUF_CACHE freed blocks of that size for the next (counted in
 * the shard's tls_bufs_reused). Also under ASan: stanzad's code never
 * touches these buffers, and the leak check covers the cache's freeing
 * at thread exit.
 */
#define TLS_BUF_MIN (16 * 1024)
#define TLS_BUF_SIZE (17 * 1024 + 512)
#define TLS_BUF_CACHE 8

static _Thread_local struct {
	void *blk[TLS_BUF_CACHE];
	unsigned n;
} bufs;

static void bufs_free(void)
{
	while (bufs.n > 0)
		free(bufs.blk[--bufs.n]);
}

static _Thread_local struct thread_exit bufs_exit = { .fn = bufs_free };

static void *tls_malloc(size_t n, const char *file, int line)
{
	(void)file, (void)line;
	if (n < TLS_BUF_MIN || n > TLS_BUF_SIZE)
		return malloc(n);
	if (bufs.n > 0) {
		STATS_ADD(tls_bufs_reused, 1);
		return bufs.blk[--bufs.n];
	}
	return malloc(TLS_BUF_SIZE);
}

static void *tls_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file, (void)line;
	return realloc(p, n);
}

static void tls_free(void *p, const char *file, int line)
{
	(void)file, (void)line;
	if (p == NULL)
		return;
	size_t u = malloc_usable_size(p);
	if (u < TLS_BUF_SIZE || u >= TLS_BUF_SIZE + 64 ||
	    bufs.n >= TLS_BUF_CACHE || !thread_exit_arm(&bufs_exit)) {
		free(p);
		return;
	}
	bufs.blk[bufs.n++] = p;
}

void tls_mem_init(void)
{
	/* Refused once OpenSSL has allocated (a library's constructor):
	 * then buffers come from malloc, as without the cache. */
	(void)CRYPTO_set_mem_functions(tls_malloc, tls_realloc, tls_free);
}

static char *ssl_error(const char *what, const char *detail)
{
	char buf[512];
	unsigned long e = ERR_get_error();
	snprintf(buf, sizeof(buf), "%s %s: %s", what, detail,
		 e ? ERR_reason_error_string(e) : "unknown error");
	ERR_clear_error();
	return xstrdup(buf);
}

/* SNI: switch to the context of the named host; unknown names keep the
 * context the connection started with. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	/* a component's domain too: other servers reach it over s2s */
	int idx = conf_find_domain(tls_conf, name, strlen(name));
	if (idx >= 0 && SSL_get_SSL_CTX(ssl) != host_ctx[idx])
		SSL_set_SSL_CTX(ssl, host_ctx[idx]);
	return SSL_TLSEXT_ERR_OK;
}

/* XEP-0368: direct TLS clients offer ALPN "xmpp-client", servers
 * "xmpp-server". Accept them; without a match, continue without ALPN
 * rather than failing. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char want[] = "\x0bxmpp-client\x0bxmpp-server";
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, want, sizeof(want) - 1, in,
				  inlen) == OPENSSL_NPN_NEGOTIATED) {
		*out = sel;
		return SSL_TLSEXT_ERR_OK;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static int write_key(EVP_PKEY *key, const char *path, const char **error_r)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		if (fd >= 0)
			close(fd);
		*error_r = "cannot create key file";
		return -1;
	}
	int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0 || !ok) {
		*error_r = "cannot write key file";
		return -1;
	}
	return 0;
}

static int write_cert(X509 *x, const char *path, const char **error_r)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		*error_r = "cannot create certificate file";
		return -1;
	}
	int ok = PEM_write_X509(f, x);
	if (fclose(f) != 0 || !ok) {
		*error_r = "cannot write certificate file";
		return -1;
	}
	return 0;
}

static X509 *self_signed(EVP_PKEY *key, const char *host)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	unsigned char serial[16];
	BIGNUM *bn = BN_new();
	RAND_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f;
	BN_bin2bn(serial, sizeof(serial), bn);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				   (const unsigned char *)host, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	char san[1100];
	snprintf(san, sizeof(san), "DNS:%s", host);
	X509_EXTENSION *ext =
		X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext != NULL) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, key, EVP_sha256()) == 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int tls_make_self_signed(const char *host, const char *cert_path,
			 const char *key_path, const char **error_r)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (key == NULL) {
		*error_r = "cannot generate key";
		return -1;
	}
	X509 *x = self_signed(key, host);
	int r = -1;
	if (x == NULL)
		*error_r = "cannot sign certificate";
	else if (write_key(key, key_path, error_r) == 0 &&
		 write_cert(x, cert_path, error_r) == 0)
		r = 0;
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

void tls_host_paths(const struct config *conf, size_t i, char **cert_r,
		    char **key_r, bool *generated_r)
{
	const struct host_conf *h = &conf->host_confs[i];
	*generated_r = h->cert_file == NULL;
	if (h->cert_file != NULL) {
		*cert_r = xstrdup(h->cert_file);
		*key_r = xstrdup(h->key_file);
		return;
	}
	char cert[4200], key[4200];
	snprintf(cert, sizeof(cert), "%s/certs/%s.pem", conf->data_dir,
		 h->name);
	snprintf(key, sizeof(key), "%s/certs/%s.key", conf->data_dir, h->name);
	*cert_r = xstrdup(cert);
	*key_r = xstrdup(key);
}

/* Fills cert/key paths for host i, creating the self-signed pair if the
 * host has no configured files and none exist yet. */
static int host_files(const struct config *conf, size_t i, char **cert_r,
		      char **key_r, char **error_r)
{
	const struct host_conf *h = &conf->host_confs[i];
	bool generated;
	tls_host_paths(conf, i, cert_r, key_r, &generated);
	if (!generated)
		return 0;
	char dir[4096];
	const char *cert = *cert_r, *key = *key_r;
	snprintf(dir, sizeof(dir), "%s/certs", conf->data_dir);
	if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
		const char *err;
		if ((mkdir(conf->data_dir, 0700) < 0 && errno != EEXIST) ||
		    (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
			char b[4400];
			snprintf(b, sizeof(b), "cannot create %s: %s", dir,
				 strerror(errno));
			*error_r = xstrdup(b);
			free(*cert_r);
			free(*key_r);
			return -1;
		}
		if (tls_make_self_signed(h->name, cert, key, &err) < 0) {
			char b[4400];
			snprintf(b, sizeof(b), "%s: %s", cert, err);
			*error_r = xstrdup(b);
			free(*cert_r);
			free(*key_r);
			return -1;
		}
		log_info("created self-signed certificate %s", cert);
	}
	return 0;
}

static void end_point_cache(SSL_CTX *ctx);

SSL_CTX *tls_ctx_new(const char *cert, const char *key, char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	BUG_ON(ctx == NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
	SSL_CTX_set_ciphersuites(ctx, tls13_suites);
	SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
	SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
	/* Stateless tickets keep no per-session server memory. One per
	 * handshake, not OpenSSL's two: an XMPP client keeps one connection
	 * per account and resumes with one ticket (the second is for
	 * parallel connections, as browsers make); each ticket costs a
	 * session serialized and encrypted here and parsed by the client. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*error_r = ssl_error("cannot load certificate", cert);
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		*error_r = ssl_error("cannot load key", key);
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = ssl_error("key does not match certificate", cert);
	} else {
		end_point_cache(ctx);
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * A certificate file with the leaf alone (a self-signed certificate, or an
 * administrator's file without intermediates) gets its chain built once,
 * here, from the trust store. Otherwise libssl builds it again in every
 * handshake against the context's store, and the system store's lookups
 * (OpenSSL 3's directory store reads every file of the CA directory) cost
 * more per login than the ECDSA signature (docs/internals/performance.md).
 * The root is left out (RFC 8446 4.4.2: the peer has it). A file with a
 * chain is sent as it is: libssl never adds to one.
 */
static void chain_once(SSL_CTX *ctx)
{
	STACK_OF(X509) *chain = NULL;
	if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != NULL &&
	    sk_X509_num(chain) > 0)
		return;
	SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
				      SSL_BUILD_CHAIN_FLAG_NO_ROOT);
	ERR_clear_error();
}

/* Peers' certificates are checked after the handshake (tls_peer_verified),
 * so that a server whose certificate does not verify can still use
 * dialback: the handshake itself never fails on them. */
static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok, (void)x;
	return 1;
}

/* The context of outgoing server-to-server connections from one host: its
 * certificate (for SASL EXTERNAL) and the trust store. */
static SSL_CTX *client_ctx_new(const char *cert, const char *key,
			       char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BUG_ON(ctx == NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set1_cert_store(ctx, trust);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
	/* DANE (RFC 6698) with OpenSSL's digests: SHA2-256 and SHA2-512. */
	if (SSL_CTX_dane_enable(ctx) <= 0) {
		*error_r = ssl_error("cannot enable DANE for", cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*error_r = ssl_error("cannot load certificate", cert);
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		*error_r = ssl_error("cannot load key", key);
	} else {
		chain_once(ctx);
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

static int trust_init(const struct config *conf, char **error_r)
{
	trust = X509_STORE_new();
	BUG_ON(trust == NULL);
	const char *ca = conf->s2s.ca_file;
	int ok = ca != NULL ? X509_STORE_load_file(trust, ca)
			    : X509_STORE_set_default_paths(trust);
	if (ok != 1) {
		*error_r = ssl_error("cannot load trusted certificates",
				     ca ? ca : "(system)");
		return -1;
	}
	return 0;
}

/*
 * Which host's certificate a component presents (incoming s2s, SNI) and
 * offers (outgoing, SASL EXTERNAL): components have no certificate of
 * their own, as with Prosody and ejabberd, where a host's certificate
 * lists its services' names. The first host whose certificate names the
 * component's domain (SASL EXTERNAL works); else the host the domain is a
 * subdomain of (the longest such), else the default host: a certificate
 * that does not verify for the component, which peers then authenticate
 * by dialback.
 */
static size_t component_host(const struct config *conf, const char *domain)
{
	for (size_t i = 0; i < conf->nhosts; i++) {
		X509 *x = SSL_CTX_get0_certificate(host_ctx[i]);
		if (x != NULL &&
		    X509_check_host(x, domain, 0,
				    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
				    NULL) == 1)
			return i;
	}
	size_t best = 0, best_len = 0, dlen = strlen(domain);
	for (size_t i = 0; i < conf->nhosts; i++) {
		size_t hlen = strlen(conf->hosts[i]);
		if (hlen + 1 < dlen && hlen > best_len &&
		    domain[dlen - hlen - 1] == '.' &&
		    strcmp(domain + dlen - hlen, conf->hosts[i]) == 0) {
			best = i;
			best_len = hlen;
		}
	}
	return best;
}

static void component_ctx(const struct config *conf)
{
	/* The subdomain services (pubsub.HOST, conference.HOST) likewise. */
	for (size_t d = conf->nhosts; d < conf_ndomains(conf); d++) {
		size_t h = component_host(conf, conf_domain_name(conf, d));
		BUG_ON(SSL_CTX_up_ref(host_ctx[h]) != 1 ||
		       SSL_CTX_up_ref(client_ctx[h]) != 1);
		host_ctx[d] = host_ctx[h];
		client_ctx[d] = client_ctx[h];
	}
}

int tls_init(const struct config *conf, char **error_r)
{
	tls_conf = conf;
	nctx = conf_ndomains(conf);
	host_ctx = xcalloc(nctx, sizeof(*host_ctx));
	client_ctx = xcalloc(nctx, sizeof(*client_ctx));
	if (trust_init(conf, error_r) < 0) {
		tls_fini();
		return -1;
	}
	for (size_t i = 0; i < conf->nhosts; i++) {
		char *cert, *key;
		if (host_files(conf, i, &cert, &key, error_r) < 0) {
			tls_fini();
			return -1;
		}
		host_ctx[i] = tls_ctx_new(cert, key, error_r);
		if (host_ctx[i] != NULL) {
			/* for the certificates of incoming servers */
			SSL_CTX_set1_cert_store(host_ctx[i], trust);
			chain_once(host_ctx[i]);
			client_ctx[i] = client_ctx_new(cert, key, error_r);
		}
		free(cert);
		free(key);
		if (host_ctx[i] == NULL || client_ctx[i] == NULL) {
			tls_fini();
			return -1;
		}
	}
	component_ctx(conf);
	return 0;
}

void tls_fini(void)
{
	if (host_ctx == NULL)
		return;
	for (size_t i = 0; i < nctx; i++) {
		SSL_CTX_free(host_ctx[i]);
		SSL_CTX_free(client_ctx[i]);
	}
	free(host_ctx);
	free(client_ctx);
	X509_STORE_free(trust);
	trust = NULL;
	host_ctx = NULL;
	client_ctx = NULL;
}

static SSL *client_ssl(size_t host_idx, const char *domain, bool direct)
{
	BUG_ON(client_ctx == NULL || host_idx >= nctx);
	SSL *ssl = SSL_new(client_ctx[host_idx]);
	BUG_ON(ssl == NULL);
	SSL_set_connect_state(ssl);
	SSL_set_tlsext_host_name(ssl, domain);
	if (direct) /* XEP-0368 */
		SSL_set_alpn_protos(ssl, (const unsigned char *)"\x0bxmpp-server",
				    12);
	return ssl;
}

/* Turns DANE on for ssl; returns how many records OpenSSL can use. */
static size_t dane_setup(SSL *ssl, const char *domain,
			 const struct tls_dane *d)
{
	/* RFC 7673 §4.2: the reference identifiers are the TLSA base domain
	 * (the SRV target) and the service domain; SSL_dane_enable makes
	 * the first the primary one (SNI stays the domain, RFC 6120). */
	if (SSL_dane_enable(ssl, d->base) <= 0 ||
	    (strcasecmp(d->base, domain) != 0 &&
	     SSL_add1_host(ssl, domain) != 1)) {
		ERR_clear_error();
		return 0;
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* RFC 7671 §5.1: a DANE-EE(3) record binds the key to the service
	 * itself; the certificate's names (a self-signed one may have none)
	 * are not checked. Usages 0-2 keep the name checks. */
	SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	size_t usable = 0;
	for (size_t i = 0; i < d->nrecs; i++) {
		const struct resolve_tlsa_record *t = &d->recs[i];
		/* 0: a usage, selector or matching type OpenSSL does not
		 * know; < 0: malformed (a digest of the wrong length). RFC
		 * 6698 §4.1: either way the record is unusable. */
		if (SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype,
				      t->data, t->len) > 0)
			usable++;
		else
			ERR_clear_error();
	}
	return usable;
}

SSL *tls_new_client(size_t host_idx, const char *domain, bool direct,
		    const struct tls_dane *dane, bool *dane_r)
{
	SSL *ssl = client_ssl(host_idx, domain, direct);
	*dane_r = false;
	if (dane == NULL || dane->nrecs == 0)
		return ssl;
	if (dane_setup(ssl, domain, dane) > 0) {
		*dane_r = true;
		return ssl;
	}
	/* None usable: as without TLSA records, and without the DANE
	 * reference names, which would replace the domain's in PKIX. */
	SSL_free(ssl);
	return client_ssl(host_idx, domain, direct);
}

bool tls_dane_verified(SSL *ssl, const char **why_r, int *usage_r)
{
	uint8_t usage = 0, selector, mtype;
	if (SSL_get0_peer_certificate(ssl) == NULL) {
		*why_r = "no certificate";
		return false;
	}
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK) {
		*why_r = X509_verify_cert_error_string(v);
		return false;
	}
	if (SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, NULL, NULL) <
	    0) {
		*why_r = "no TLSA record matched";
		return false;
	}
	*usage_r = usage;
	return true;
}

void tls_want_peer_cert(SSL *ssl)
{
	SSL_set_verify(ssl, SSL_VERIFY_PEER, accept_any);
}

bool tls_peer_verified(SSL *ssl, const char *domain, const char **why_r)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	long v = SSL_get_verify_result(ssl);
	if (cert == NULL) {
		*why_r = "no certificate";
		return false;
	}
	if (v != X509_V_OK) {
		*why_r = X509_verify_cert_error_string(v);
		return false;
	}
	/* RFC 6125 DNS-ID (a wildcard only as the whole leftmost label) */
	if (X509_check_host(cert, domain, 0,
			    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
		*why_r = "the certificate is not for this domain";
		return false;
	}
	return true;
}

SSL *tls_new_server(size_t host_idx)
{
	BUG_ON(host_ctx == NULL || host_idx >= nctx);
	SSL *ssl = SSL_new(host_ctx[host_idx]);
	BUG_ON(ssl == NULL);
	SSL_set_accept_state(ssl);
	return ssl;
}

bool tls_is_13(const SSL *ssl)
{
	return SSL_version(ssl) >= TLS1_3_VERSION;
}

int tls_cb_exporter(SSL *ssl, unsigned char *out, size_t *len_r)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	if (!tls_is_13(ssl))
		return -1;
	if (SSL_export_keying_material(ssl, out, TLS_CB_EXPORTER_LEN, label,
				       sizeof(label) - 1, NULL, 0, 0) != 1)
		return -1;
	*len_r = TLS_CB_EXPORTER_LEN;
	return 0;
}

/* RFC 5929 §4.1: the hash of the server certificate, using its signature
 * hash, with MD5 and SHA-1 replaced by SHA-256. */
static int end_point_hash(X509 *cert, unsigned char *out, size_t *len_r)
{
	int md_nid;
	if (!X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL))
		return -1;
	const EVP_MD *md = NULL;
	if (md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
		md = EVP_sha256();
	else
		md = EVP_get_digestbynid(md_nid);
	unsigned n = 0;
	if (md == NULL || X509_digest(cert, md, out, &n) != 1)
		return -1;
	*len_r = n;
	return 0;
}

/*
 * The hash depends on the certificate only: each context keeps its
 * certificate's (ex_data), so a login does not encode and hash the
 * certificate again. Taken only while the connection still uses that
 * certificate.
 */
struct end_point {
	X509 *cert; /* not a reference: the context holds it */
	size_t len;
	unsigned char hash[TLS_CB_MAX];
};

static int end_point_idx = -1;
static pthread_once_t end_point_once = PTHREAD_ONCE_INIT;

static void end_point_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			   int idx, long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	free(ptr);
}

static void end_point_init(void)
{
	end_point_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
						 end_point_free);
}

static void end_point_cache(SSL_CTX *ctx)
{
	BUG_ON(pthread_once(&end_point_once, end_point_init) != 0);
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	if (end_point_idx < 0 || cert == NULL)
		return;
	struct end_point *e = xcalloc(1, sizeof(*e));
	e->cert = cert;
	if (end_point_hash(cert, e->hash, &e->len) < 0 ||
	    SSL_CTX_set_ex_data(ctx, end_point_idx, e) != 1)
		free(e);
}

int tls_cb_server_end_point(SSL *ssl, unsigned char *out, size_t *len_r)
{
	X509 *cert = SSL_get_certificate(ssl);
	if (cert == NULL)
		return -1;
	const struct end_point *e =
		end_point_idx < 0 ? NULL
				  : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
							end_point_idx);
	if (e != NULL && e->cert == cert) {
		memcpy(out, e->hash, e->len);
		*len_r = e->len;
		return 0;
	}
	return end_point_hash(cert, out, len_r);
}

/* RFC 5929 §3: the first Finished message of the handshake; on the server
 * side of a full handshake that is the client's (the peer's). */
int tls_cb_unique(SSL *ssl, unsigned char *out, size_t *len_r)
{
	if (tls_is_13(ssl))
		return -1;
	size_t n = SSL_session_reused(ssl)
			   ? SSL_get_finished(ssl, out, TLS_CB_MAX)
			   : SSL_get_peer_finished(ssl, out, TLS_CB_MAX);
	if (n == 0 || n > TLS_CB_MAX)
		return -1;
	*len_r = n;
	return 0;
}
