/*
 * tls.h - TLS contexts for the configured hosts (OpenSSL 3).
 *
 * One SSL_CTX per host, TLS 1.2 and later only, SSL_MODE_RELEASE_BUFFERS so
 * an idle connection holds no record buffers. The client's SNI picks the
 * host's context. Contexts are indexed by local domain (conf_find_domain):
 * the hosts, then the components, which other servers reach over s2s and
 * which present a host's certificate (the first whose certificate names
 * them, else their parent host's, else the default host's). A host
 * without configured files gets a self-signed ECDSA P-256 certificate
 * created on first start in DATA_DIR/certs/HOST.pem (+ HOST.key, mode
 * 0600) and reused afterwards.
 *
 * Channel bindings for SCRAM-*-PLUS: tls-exporter (RFC 9266, TLS 1.3 only),
 * tls-server-end-point (RFC 5929 §4) and tls-unique (RFC 5929 §3, TLS 1.2).
 */
#ifndef STANZAD_NET_TLS_H
#define STANZAD_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct config;
struct resolve_tlsa_record;

#define TLS_CB_MAX 64
#define TLS_CB_EXPORTER_LEN 32 /* RFC 9266 §2 */

/* Makes OpenSSL allocate through stanzad's functions, which keep freed
 * record buffers per thread (SSL_MODE_RELEASE_BUFFERS frees them after
 * every read and write). Call first in main, before anything of OpenSSL
 * (after it, OpenSSL keeps its own allocator). */
void tls_mem_init(void);

/* Creates the contexts (and any missing self-signed certificates). Returns 0
 * or -1 with *error_r (malloc'ed, caller frees). Call once at start-up. */
int tls_init(const struct config *conf, char **error_r);
void tls_fini(void);

/* A server context with stanzad's settings (TLS 1.2+, released buffers,
 * no session cache, SNI and ALPN callbacks) for a PEM certificate chain
 * and key; NULL with *error_r (malloc'ed) if they do not load. Exposed for
 * bench/sizes, which measures what such a context costs per connection. */
SSL_CTX *tls_ctx_new(const char *cert, const char *key, char **error_r);

/* A server-side SSL for a new connection, starting on the context of local
 * domain host_idx (the stream's 'to' for STARTTLS, the default host for
 * direct TLS; SNI may switch it). Never NULL. */
SSL *tls_new_server(size_t host_idx);

/* DANE for an outgoing connection (RFC 6698, RFC 7673): the TLSA records
 * of the server's host, from a DNSSEC-secure answer, and that host (the
 * SRV target, or the domain itself when it has no SRV record): the TLSA
 * base domain. */
struct tls_dane {
	const char *base;
	const struct resolve_tlsa_record *recs;
	size_t nrecs;
};

/* Server-to-server. An SSL for an outgoing connection from our local
 * domain host_idx to domain (SNI), offering its certificate (for SASL
 * EXTERNAL); direct: XEP-0368 direct TLS (ALPN xmpp-server). With dane
 * (may be NULL), the peer is authenticated by OpenSSL's DANE support
 * instead of PKIX alone; *dane_r tells whether any record was usable
 * (RFC 6698 §4.1: with none, the connection goes on as without TLSA
 * records). Never NULL. */
SSL *tls_new_client(size_t host_idx, const char *domain, bool direct,
		    const struct tls_dane *dane, bool *dane_r);
/* An incoming server connection: ask the peer for its certificate too. */
void tls_want_peer_cert(SSL *ssl);
/* After the handshake: true when the peer's certificate chains to a
 * trusted authority (s2s.ca_file or the system's) and names domain (RFC
 * 6125 DNS-ID); else false with *why_r (static). */
bool tls_peer_verified(SSL *ssl, const char *domain, const char **why_r);
/* After the handshake of a connection made with usable TLSA records: true
 * when a record matched and the checks its usage asks for (RFC 7671 §5:
 * the chain for PKIX-*, names for all but DANE-EE) held; else false with
 * *why_r (static). *usage_r is the usage of the matching record. */
bool tls_dane_verified(SSL *ssl, const char **why_r, int *usage_r);

/* Channel binding data. Each returns 0 and fills out (size TLS_CB_MAX) and
 * *len_r, or -1 when the binding is not available on this connection.
 * tls-exporter exists exactly on TLS 1.3 (tls_is_13) and costs a key
 * derivation; tls-server-end-point is the context's certificate hash,
 * computed once per context. */
int tls_cb_exporter(SSL *ssl, unsigned char *out, size_t *len_r);
int tls_cb_server_end_point(SSL *ssl, unsigned char *out, size_t *len_r);
int tls_cb_unique(SSL *ssl, unsigned char *out, size_t *len_r);

/* True when the negotiated protocol is TLS 1.3. */
bool tls_is_13(const SSL *ssl);

/* The certificate and key files of host i (malloc'ed): the configured
 * ones, or the self-signed pair in data_dir/certs (which may not exist
 * yet). *generated_r says which. */
void tls_host_paths(const struct config *conf, size_t i, char **cert_r,
		    char **key_r, bool *generated_r);

/* Writes a self-signed certificate and key for host. Returns 0 or -1 with
 * *error_r (static). Exposed for stanzactl. */
int tls_make_self_signed(const char *host, const char *cert_path,
			 const char *key_path, const char **error_r);

#endif
