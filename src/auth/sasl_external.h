/*
 * sasl_external.h - SASL EXTERNAL between servers (RFC 6120 §6, XEP-0178)
 * through GNU SASL.
 *
 * The certificate check is the caller's (tls_peer_verified): these only run
 * the exchange, whose one datum is the authorization identity, the
 * initiating server's domain or empty (then the stream's 'from'). Neither
 * blocks; both run on a shard.
 */
#ifndef STANZAD_AUTH_SASL_EXTERNAL_H
#define STANZAD_AUTH_SASL_EXTERNAL_H

#include <stdbool.h>

int sasl_external_init(const char **error_r);
void sasl_external_fini(void);

/* Receiving side. in is the <auth/> text (base64, "=" for empty). Returns
 * true when the identity is empty or equals domain, the domain the
 * certificate was verified for; else false with *cond_r (RFC 6120 §6.5). */
bool sasl_external_server(const char *in, const char *domain,
			  const char **cond_r);

/* Initiating side: the <auth/> text for our domain (malloc'ed), or NULL. */
char *sasl_external_client(const char *domain);

#endif
