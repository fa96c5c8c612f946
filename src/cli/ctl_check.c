/*
 * ctl_check.c - `stanzactl config check` and `stanzactl cert check`: what
 * the server would say about its configuration and certificates at start,
 * said before starting it, plus warnings about what would work but is
 * unsafe or about to break.
 *
 * Both run the server's own code: conf_load (every key, with its path and
 * line), resolve_check_config (the dns section), tls_ctx_new (the
 * certificate chain and key loaded as a host's context). The certificate
 * details (names, chain, expiry, key) are read with OpenSSL from the same
 * files.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../admin/ctlproto.h"
#include "../core/conf.h"
#include "../net/resolve.h"
#include "../net/tls.h"
#include "ctl_check.h"

/* Days before expiry below which a certificate is a warning. */
#define CERT_WARN_DAYS 14

struct report {
	FILE *out;
	unsigned errors, warnings;
};

static void say(struct report *r, const char *level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* level: "error", "warning" or "ok"; counts the first two. */
static void say(struct report *r, const char *level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(r->out, "  %s: ", level);
	vfprintf(r->out, fmt, ap);
	fputc('\n', r->out);
	va_end(ap);
	r->errors += strcmp(level, "error") == 0;
	r->warnings += strcmp(level, "warning") == 0;
}

/* ---- config check ---- */

static bool loopback(const char *address)
{
	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET, address, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, address, &a6) == 1 &&
	       IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Settings that work but weaken security. TLS is always required on
 * client and server streams and no mechanism is offered before it, so
 * there is no "TLS optional" or "plaintext authentication" setting to
 * warn about; what is left is below. */
static void config_warnings(struct report *r, const struct config *c)
{
	if (c->registration && c->limits.registration_interval_ms == 0)
		say(r, "warning", "registration: open to anyone without a "
		    "rate limit (limits.registration_interval is 0)");
	else if (c->registration)
		say(r, "warning", "registration: anyone can create accounts "
		    "(in-band registration is on)");
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct listener_conf *l = &c->listeners[i];
		if (l->type == LISTENER_COMPONENT && !loopback(l->address))
			say(r, "warning", "listeners[%zu]: component listener "
			    "on %s: the component protocol is plaintext "
			    "(secrets and stanzas); bind it to a loopback "
			    "address", i, l->address);
	}
	for (size_t i = 0; i < c->nhosts; i++)
		if (c->host_confs[i].cert_file == NULL)
			say(r, "warning", "hosts[%zu].tls: %s has no "
			    "certificate: a self-signed one is used, which "
			    "clients and servers cannot verify", i,
			    c->hosts[i]);
}

/* What the server checks at start besides the file itself. */
static void config_runtime(struct report *r, const struct config *c)
{
	char *err = NULL;
	if (resolve_check_config(c, &err) < 0) {
		say(r, "error", "dns: %s", err);
		free(err);
	}
	char *path = control_path(c);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		say(r, "error", "control_socket: path too long for a Unix "
		    "socket: %s", path);
	free(path);
	for (size_t i = 0; i < c->nhosts; i++) {
		if (c->host_confs[i].cert_file == NULL)
			continue;
		SSL_CTX *ctx = tls_ctx_new(c->host_confs[i].cert_file,
					   c->host_confs[i].key_file, &err);
		if (ctx == NULL) {
			say(r, "error", "hosts[%zu].tls: %s", i, err);
			free(err);
		}
		SSL_CTX_free(ctx);
	}
}

int ctl_config_check(const char *path, FILE *out)
{
	struct report r = { .out = out };
	struct config *c = NULL;
	char *err = NULL;
	fprintf(out, "%s:\n", path);
	if (conf_load(path, &c, &err) < 0) {
		say(&r, "error", "%s", err);
		free(err);
	} else {
		config_runtime(&r, c);
		config_warnings(&r, c);
		conf_free(c);
	}
	fprintf(out, "%s: %u error(s), %u warning(s)\n",
		r.errors ? "configuration has errors" : "configuration ok",
		r.errors, r.warnings);
	return r.errors ? -1 : 0;
}

/* ---- cert check ---- */

/* The first OpenSSL error, for messages. */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	return e ? ERR_reason_error_string(e) : "unknown error";
}

/* The certificates of a PEM file, leaf first; NULL if none. */
static STACK_OF(X509) *load_chain(const char *path)
{
	BIO *in = BIO_new_file(path, "r");
	if (in == NULL)
		return NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *x;
	while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL)
		sk_X509_push(chain, x);
	ERR_clear_error(); /* the end of the file */
	BIO_free(in);
	if (sk_X509_num(chain) == 0) {
		sk_X509_free(chain);
		return NULL;
	}
	return chain;
}

/* Appends one otherName of the SAN as "SRV:..." or "XMPP:...". */
static bool other_name(const OTHERNAME *on, const char *host, FILE *out)
{
	static const char srv_oid[] = "1.3.6.1.5.5.7.8.7";  /* RFC 4985 */
	static const char xmpp_oid[] = "1.3.6.1.5.5.7.8.5"; /* RFC 6120 */
	char oid[64];
	OBJ_obj2txt(oid, sizeof(oid), on->type_id, 1);
	bool srv = strcmp(oid, srv_oid) == 0;
	bool xmpp = strcmp(oid, xmpp_oid) == 0;
	const ASN1_TYPE *v = on->value;
	if ((!srv && !xmpp) || v == NULL ||
	    (v->type != V_ASN1_IA5STRING && v->type != V_ASN1_UTF8STRING))
		return false;
	const ASN1_STRING *s = v->value.asn1_string;
	const char *p = (const char *)ASN1_STRING_get0_data(s);
	int len = ASN1_STRING_length(s);
	fprintf(out, " %s:%.*s", srv ? "SRV" : "XMPP", len, p);
	if (xmpp)
		return (size_t)len == strlen(host) &&
		       strncasecmp(p, host, (size_t)len) == 0;
	/* SRV-ID: _xmpp-client.HOST or _xmpp-server.HOST (RFC 6125) */
	const char *dot = memchr(p, '.', (size_t)len);
	return dot != NULL && (size_t)(p + len - dot - 1) == strlen(host) &&
	       strncasecmp(dot + 1, host, strlen(host)) == 0 &&
	       (strncmp(p, "_xmpp-client.", 13) == 0 ||
		strncmp(p, "_xmpp-server.", 13) == 0);
}

/* Lists the SAN names and says whether one of them is host. */
static void check_names(struct report *r, X509 *leaf, const char *host)
{
	GENERAL_NAMES *names =
		X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	bool other = false;
	fputs("  names:", r->out);
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		if (g->type == GEN_DNS)
			fprintf(r->out, " DNS:%.*s",
				ASN1_STRING_length(g->d.dNSName),
				ASN1_STRING_get0_data(g->d.dNSName));
		else if (g->type == GEN_OTHERNAME)
			other |= other_name(g->d.otherName, host, r->out);
	}
	fputc('\n', r->out);
	GENERAL_NAMES_free(names);
	/* DNS-ID as the server's peers check it (tls_peer_verified). */
	bool dns = X509_check_host(leaf, host, 0,
				   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
				   NULL) == 1;
	if (dns || other)
		say(r, "ok", "the certificate names %s", host);
	else
		say(r, "error", "the certificate does not name %s (no "
		    "matching DNS, SRV or xmppAddr name)", host);
}

static void check_key(struct report *r, X509 *leaf, const char *key_path)
{
	BIO *in = BIO_new_file(key_path, "r");
	EVP_PKEY *key = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL)
			   : NULL;
	BIO_free(in);
	if (key == NULL) {
		say(r, "error", "cannot read the key %s: %s", key_path,
		    ssl_reason());
		return;
	}
	int bits = EVP_PKEY_get_bits(key);
	const char *type = EVP_PKEY_get0_type_name(key);
	fprintf(r->out, "  key: %s, %d bits\n", type ? type : "?", bits);
	if (EVP_PKEY_is_a(key, "RSA") && bits < 2048)
		say(r, "warning", "RSA key shorter than 2048 bits");
	if (X509_check_private_key(leaf, key) == 1)
		say(r, "ok", "the key matches the certificate");
	else
		say(r, "error", "the key %s does not match the certificate",
		    key_path);
	ERR_clear_error();
	EVP_PKEY_free(key);
}

static void check_chain(struct report *r, STACK_OF(X509) *chain)
{
	X509 *leaf = sk_X509_value(chain, 0);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_STORE_set_default_paths(store);
	STACK_OF(X509) *rest = sk_X509_dup(chain);
	(void)sk_X509_shift(rest);
	X509_STORE_CTX_init(ctx, store, leaf, rest);
	int ok = X509_verify_cert(ctx);
	int err = X509_STORE_CTX_get_error(ctx);
	if (ok == 1)
		say(r, "ok", "the chain verifies against the system's "
		    "authorities");
	else if (err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
		 err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
		say(r, "warning", "self-signed: clients and servers cannot "
		    "verify it");
	else if (err != X509_V_ERR_CERT_HAS_EXPIRED)
		/* expiry has its own line below */
		say(r, "error", "the chain does not verify: %s",
		    X509_verify_cert_error_string(err));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_free(rest);
	ERR_clear_error();
}

static void check_dates(struct report *r, X509 *leaf)
{
	int days = 0, secs = 0;
	const ASN1_TIME *nb = X509_get0_notBefore(leaf);
	const ASN1_TIME *na = X509_get0_notAfter(leaf);
	if (ASN1_TIME_diff(&days, &secs, NULL, nb) && (days > 0 || secs > 0))
		say(r, "error", "not valid yet (for %d more days)", days);
	if (!ASN1_TIME_diff(&days, &secs, NULL, na)) {
		say(r, "error", "unreadable expiry date");
		return;
	}
	struct tm tm;
	char when[32] = "?";
	if (ASN1_TIME_to_tm(na, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d", &tm);
	if (days < 0 || (days == 0 && secs <= 0))
		say(r, "error", "expired on %s (%d days ago)", when, -days);
	else if (days < CERT_WARN_DAYS)
		say(r, "warning", "expires on %s, in %d days", when, days);
	else
		say(r, "ok", "expires on %s, in %d days", when, days);
}

static void check_host(struct report *r, const struct config *c, size_t i)
{
	char *cert, *key, *err = NULL;
	bool generated;
	tls_host_paths(c, i, &cert, &key, &generated);
	fprintf(r->out, "%s: %s\n", c->hosts[i], cert);
	if (generated && access(cert, F_OK) != 0) {
		say(r, "warning", "no certificate yet: stanzad creates a "
		    "self-signed one at start");
		goto out;
	}
	/* Exactly what the server does with the files. */
	SSL_CTX *ctx = tls_ctx_new(cert, key, &err);
	if (ctx == NULL) {
		say(r, "error", "the server cannot load it: %s", err);
		free(err);
	}
	SSL_CTX_free(ctx);
	STACK_OF(X509) *chain = load_chain(cert);
	if (chain == NULL) {
		say(r, "error", "no certificate in %s", cert);
		goto out;
	}
	X509 *leaf = sk_X509_value(chain, 0);
	check_names(r, leaf, c->hosts[i]);
	check_key(r, leaf, key);
	check_chain(r, chain);
	check_dates(r, leaf);
	sk_X509_pop_free(chain, X509_free);
out:
	free(cert);
	free(key);
}

/* Listeners have no certificates of their own: a TLS connection gets
 * the certificate of the host its client names (SNI, or the stream's
 * 'to' for STARTTLS), and direct TLS without SNI the first host's. */
static void check_listeners(struct report *r, const struct config *c)
{
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct listener_conf *l = &c->listeners[i];
		if (l->type == LISTENER_COMPONENT)
			continue;
		fprintf(r->out, "listener %s %s port %u: the certificate of "
			"the host asked for; without SNI, %s's\n",
			listener_type_name(l->type), l->address, l->port,
			c->hosts[0]);
	}
	if (c->s2s.ca_file == NULL)
		return;
	X509_STORE *s = X509_STORE_new();
	fprintf(r->out, "s2s.ca_file: %s\n", c->s2s.ca_file);
	if (X509_STORE_load_file(s, c->s2s.ca_file) != 1)
		say(r, "error", "cannot load the trusted certificates: %s",
		    ssl_reason());
	else
		say(r, "ok", "trusted certificates loaded");
	X509_STORE_free(s);
}

int ctl_cert_check(const struct config *c, FILE *out)
{
	struct report r = { .out = out };
	for (size_t i = 0; i < c->nhosts; i++)
		check_host(&r, c, i);
	check_listeners(&r, c);
	fprintf(out, "%s: %u error(s), %u warning(s)\n",
		r.errors ? "certificates have errors" : "certificates ok",
		r.errors, r.warnings);
	return r.errors ? -1 : 0;
}
