/*
 * resolve.h - asynchronous DNS for federation: where a remote XMPP server
 * listens (SRV, XEP-0368, A/AAAA fallback) and its DANE records (TLSA).
 *
 * libunbound does the DNS and the DNSSEC validation, one context per shard,
 * made on the shard's first request; its answers arrive on a pipe that the
 * shard's loop watches. Everything here runs on one shard's thread.
 *
 * Contract (libuv's): a request's callback runs exactly once, on the same
 * shard, never from inside the call that started it, unless the request is
 * cancelled first with resolve_cancel(); after the callback or the cancel
 * the request is gone. A failure to start (bad name, the shard stopping)
 * also arrives through the callback. The result and everything it points to
 * is only valid during the callback. When the shard stops, requests still
 * pending end with RESOLVE_ESHUTDOWN.
 */
#ifndef STANZAD_NET_RESOLVE_H
#define STANZAD_NET_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;
struct shard;

/* RFC 6120 §3.2.2: no SRV record means the domain itself on this port. */
#define RESOLVE_DEFAULT_PORT 5269
/* At most this many SRV targets are resolved and returned, in order. */
#define RESOLVE_MAX_TARGETS 16
/* At most this many addresses per target (AAAA and A together). */
#define RESOLVE_MAX_ADDRS 16

enum resolve_status {
	RESOLVE_OK = 0,
	RESOLVE_ENOSERVICE = -1, /* SRV target ".": no XMPP service there */
	RESOLVE_ENOTFOUND = -2,  /* no address for the domain or targets */
	RESOLVE_EBOGUS = -3,     /* an answer failed DNSSEC validation */
	RESOLVE_ETIMEDOUT = -4,  /* dns.timeout passed */
	RESOLVE_EFAIL = -5,      /* the resolver failed (SERVFAIL, setup) */
	RESOLVE_EINVAL = -6,     /* not a name we can look up */
	RESOLVE_ESHUTDOWN = -7,  /* the shard is stopping */
};

/* A short phrase for logs ("DNSSEC validation failed"). */
const char *resolve_strerror(int status);

struct resolve_addr {
	struct sockaddr_storage sa; /* with the target's port */
	socklen_t len;
};

struct resolve_target {
	char *host;        /* SRV target, or the domain itself on fallback */
	uint16_t port;     /* from SRV, or 5269 on fallback */
	bool direct_tls;   /* from _xmpps-server._tcp (XEP-0368) */
	bool secure;       /* the SRV answers (or their denial, on fallback)
			      and this target's address answers were all
			      DNSSEC-validated: RFC 7673 §3.2, DANE applies */
	struct resolve_addr *addrs; /* AAAA then A; never 0 of them */
	size_t naddrs;
};

struct resolve_result {
	int status;        /* RESOLVE_OK or a RESOLVE_E* code */
	bool secure;       /* every answer used was DNSSEC-validated */
	struct resolve_target *targets; /* in try order */
	size_t ntargets;
};

struct resolve_tlsa_record {
	uint8_t usage, selector, mtype; /* RFC 6698 §2.1 */
	const uint8_t *data;
	size_t len;
};

struct resolve_tlsa_result {
	int status;        /* RESOLVE_OK (maybe with no records) or an error */
	bool secure;       /* the answer (or the proof of no answer) was
			      DNSSEC-validated: only then may DANE use it */
	struct resolve_tlsa_record *records;
	size_t nrecords;
};

struct resolve_req;

typedef void resolve_done_fn(void *arg, const struct resolve_result *r);
typedef void resolve_tlsa_fn(void *arg, const struct resolve_tlsa_result *r);

/*
 * Finds the servers of domain (UTF-8; IDNs are converted with libidn; an
 * IP address is used as is, on port 5269): _xmpps-server._tcp and
 * _xmpp-server._tcp SRV in parallel, merged and ordered as RFC 2782 and
 * XEP-0368 say, then AAAA and A of each target (at most
 * RESOLVE_MAX_TARGETS), or of the domain itself when there is no SRV
 * record. Targets without an address are left out. The returned request
 * belongs to the resolver; keep it only to cancel.
 */
struct resolve_req *resolve_server(struct shard *s, const char *domain,
				   resolve_done_fn *cb, void *arg);

/* Looks up the TLSA records of _PORT._tcp.HOST (RFC 6698 §3); no record
 * is RESOLVE_OK with nrecords 0. */
struct resolve_req *resolve_tlsa(struct shard *s, const char *host,
				 uint16_t port, resolve_tlsa_fn *cb,
				 void *arg);

/* Drops a pending request: its callback will not be called. Not after the
 * callback has run (the request is gone then). */
void resolve_cancel(struct resolve_req *r);

/* On shard s's thread, from its stop hook: ends the pending requests
 * (RESOLVE_ESHUTDOWN) and closes the resolver; later requests end with
 * RESOLVE_ESHUTDOWN too. The libunbound context is deleted once the loop
 * has closed its handle. */
void resolve_shard_stop(struct shard *s);

/* Checks conf's dns section by building a resolver context from it (the
 * hosts file is read, upstream addresses and the trust anchor file are
 * checked) before any shard starts. Returns 0 or -1 with *error_r
 * (malloc'ed). */
int resolve_check_config(const struct config *conf, char **error_r);

#endif
