/*
 * fuzz_dns.c - libFuzzer target for the DNS record data parsers
 * (src/net/dns.c), which read what libunbound received from the network:
 * names in wire form, SRV and TLSA RDATA, and the RFC 2782 ordering of
 * what they produce.
 *
 * The first byte picks the parser; the rest is the RDATA. Besides memory
 * errors it aborts on logic errors: a name read from the wire that the
 * text check refuses or that is longer than a DNS name can be, and an
 * ordering that is not a permutation sorted by priority.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "net/dns.h"

static _Noreturn void fail(const char *what)
{
	fprintf(stderr, "fuzz_dns: %s\n", what);
	abort();
}

static void check_name(const char *text)
{
	size_t len = strlen(text);
	if (len > DNS_NAME_TEXT_MAX - 1)
		fail("name longer than 253 characters");
	if (strcmp(text, ".") != 0 && dns_name_check(text) < 0)
		fail("a name from the wire fails the text check");
}

/* Records of 4 bytes each (priority, weight) ordered with a seed. */
static void check_order(const uint8_t *data, size_t size)
{
	struct dns_srv recs[32];
	size_t n = size / 4 < 32 ? size / 4 : 32;
	unsigned sum_before = 0, sum_after = 0;
	for (size_t i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof(recs[i]));
		recs[i].priority = (uint16_t)(data[4 * i] << 8 | data[4 * i + 1]);
		recs[i].weight = (uint16_t)(data[4 * i + 2] << 8 |
					    data[4 * i + 3]);
		recs[i].port = (uint16_t)i; /* identifies the record */
		sum_before += 1u << (i % 16) ^ recs[i].weight;
	}
	uint64_t rng = n;
	dns_srv_order(recs, n, &rng);
	unsigned seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && recs[i - 1].priority > recs[i].priority)
			fail("order not sorted by priority");
		if (seen & (1u << recs[i].port))
			fail("order is not a permutation");
		seen |= 1u << recs[i].port;
		sum_after += 1u << (recs[i].port % 16) ^ recs[i].weight;
	}
	if (sum_before != sum_after)
		fail("order changed a record");
}

FUZZ_TARGET(dns)
{
	if (size == 0)
		return;
	const uint8_t *rd = data + 1;
	size_t len = size - 1;
	char text[DNS_NAME_TEXT_MAX];
	struct dns_srv srv;
	struct dns_tlsa tlsa;
	switch (data[0] % 4) {
	case 0: {
		int used = dns_name_from_wire(rd, len, text);
		if (used > (int)len || used > 255)
			fail("name used more than it was given");
		if (used >= 0)
			check_name(text);
		break;
	}
	case 1:
		if (dns_srv_parse(rd, len, &srv) == 0)
			check_name(srv.target);
		break;
	case 2:
		if (dns_tlsa_parse(rd, len, &tlsa) == 0 &&
		    (tlsa.data != rd + 3 || tlsa.len != len - 3))
			fail("TLSA data outside the record");
		break;
	default:
		check_order(rd, len);
		break;
	}
	(void)fuzz_arena;
}
