/*
 * dns.h - the pure parts of the resolver (src/net/resolve.c): DNS names in
 * wire and text form, SRV and TLSA record data, RFC 2782 target order.
 *
 * libunbound hands over each answer record as raw RDATA (ub_result->data),
 * with any name in it already decompressed, so what comes from the network
 * is parsed here: every function takes untrusted bytes and a length, and
 * none of them allocates (fuzz/fuzz_dns.c).
 */
#ifndef STANZAD_NET_DNS_H
#define STANZAD_NET_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33
#define DNS_TYPE_TLSA 52
#define DNS_CLASS_IN 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3

/* A host name as text, without the final dot: at most 253 characters
 * (255 octets in wire form), and its NUL. */
#define DNS_NAME_TEXT_MAX 254

struct dns_srv {
	uint16_t priority, weight, port;
	bool direct_tls;   /* set by the caller: from _xmpps-server */
	/* lower-case, without the final dot; "." for the root (RFC 2782:
	 * "the service is decidedly not available at this domain") */
	char target[DNS_NAME_TEXT_MAX];
};

struct dns_tlsa {
	uint8_t usage, selector, mtype; /* RFC 6698 §2.1 */
	const uint8_t *data;            /* points into the parsed RDATA */
	size_t len;
};

/* Converts the uncompressed wire-form name at the start of p (len bytes)
 * into text in out (DNS_NAME_TEXT_MAX bytes): lower-case labels joined by
 * dots, "." for the root. Only host-name characters are accepted (letters,
 * digits, '-', '_' for service labels): a name that could need escaping is
 * no host we would connect to. Returns the wire length used, or -1. */
int dns_name_from_wire(const uint8_t *p, size_t len, char *out);

/* Checks that text is a host name we can look up: at most 253 characters,
 * labels of 1..63 host-name characters (as above), an optional final dot.
 * Returns 0 or -1. */
int dns_name_check(const char *text);

/* Parses SRV RDATA (RFC 2782): priority, weight, port, target. Returns 0
 * or -1 (truncated, trailing bytes, or a target dns_name_from_wire
 * refuses). */
int dns_srv_parse(const uint8_t *rd, size_t len, struct dns_srv *srv_r);

/* Parses TLSA RDATA (RFC 6698 §2.1); tlsa_r->data points into rd. Returns
 * 0 or -1 (shorter than the three fields, or no association data). */
int dns_tlsa_parse(const uint8_t *rd, size_t len, struct dns_tlsa *tlsa_r);

/* A small seeded generator (splitmix64), enough to spread load over SRV
 * targets; *state is the seed and is advanced. */
uint64_t dns_random(uint64_t *state);

/* Sorts recs into the order to try them (RFC 2782, "Usage rules"): by
 * priority, and within a priority by the weighted random selection over a
 * shuffled list with the weight-0 records first in the running sum, so
 * that they have a small chance when others weigh more, and equal chances
 * among themselves. */
void dns_srv_order(struct dns_srv *recs, size_t n, uint64_t *rng);

#endif
