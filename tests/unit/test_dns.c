/*
 * test_dns.c - the pure parts of the resolver (src/net/dns.c): names in
 * wire and text form, SRV and TLSA RDATA, RFC 2782 ordering with a seeded
 * generator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/dns.h"

/* SRV RDATA for priority, weight, port and a wire-form target. */
static size_t srv_rdata(uint8_t *out, unsigned prio, unsigned weight,
			unsigned port, const char *wire, size_t wlen)
{
	uint8_t head[6] = { prio >> 8, prio & 0xff, weight >> 8,
			    weight & 0xff, port >> 8, port & 0xff };
	memcpy(out, head, 6);
	memcpy(out + 6, wire, wlen);
	return 6 + wlen;
}

#define WIRE(s) s, sizeof(s) - 1 /* a string literal with its NULs */

static void name_from_wire(void **state)
{
	(void)state;
	char out[DNS_NAME_TEXT_MAX];
	assert_int_equal(dns_name_from_wire(
		(const uint8_t *)"\4XMPP\7Example\3org\0", 18, out), 18);
	assert_string_equal(out, "xmpp.example.org");
	assert_int_equal(dns_name_from_wire((const uint8_t *)"\0", 1, out), 1);
	assert_string_equal(out, ".");
	/* trailing bytes are the caller's business: the length tells */
	assert_int_equal(dns_name_from_wire(
		(const uint8_t *)"\1a\0zz", 5, out), 3);
	assert_string_equal(out, "a");
	/* service labels */
	assert_int_equal(dns_name_from_wire(
		(const uint8_t *)"\14_xmpp-server\4_tcp\0", 19, out), 19);
	assert_string_equal(out, "_xmpp-server._tcp");
}

static void name_from_wire_refuses(void **state)
{
	(void)state;
	char out[DNS_NAME_TEXT_MAX];
	static const struct {
		const char *wire;
		size_t len;
	} bad[] = {
		{ WIRE("") },                /* empty */
		{ WIRE("\3abc") },           /* no root label */
		{ WIRE("\5abc\0") },         /* label past the end */
		{ WIRE("\300\14") },         /* compression pointer */
		{ WIRE("\100abc\0") },       /* extended label type */
		{ WIRE("\3a.c\0") },         /* a dot inside a label */
		{ WIRE("\3a c\0") },         /* not a host-name character */
		{ WIRE("\3a\0c\0") },        /* NUL inside a label */
		{ WIRE("\2\377\376\0") },    /* 8-bit */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dns_name_from_wire(
			(const uint8_t *)bad[i].wire, bad[i].len, out), -1);
	/* a 64-octet label */
	uint8_t wire[300];
	wire[0] = 64;
	memset(wire + 1, 'a', 64);
	wire[65] = 0;
	assert_int_equal(dns_name_from_wire(wire, 66, out), -1);
	wire[0] = 63;
	wire[64] = 0;
	assert_int_equal(dns_name_from_wire(wire, 65, out), 65);
	assert_int_equal(strlen(out), 63);
}

/* Names up to 255 octets in wire form (253 characters of text) pass;
 * 256 octets do not. */
static void name_length_limit(void **state)
{
	(void)state;
	char out[DNS_NAME_TEXT_MAX];
	uint8_t wire[300];
	size_t n = 0;
	/* 4 labels of 63 (+1 length) = 256 is too many; 3 * 64 + 62
	 * (label of 61) + root = 255 is the maximum */
	for (int i = 0; i < 3; i++) {
		wire[n++] = 63;
		memset(wire + n, 'a' + i, 63);
		n += 63;
	}
	wire[n++] = 61;
	memset(wire + n, 'z', 61);
	n += 61;
	wire[n++] = 0;
	assert_int_equal(n, 255);
	assert_int_equal(dns_name_from_wire(wire, n, out), 255);
	assert_int_equal(strlen(out), 253);
	assert_int_equal(dns_name_check(out), 0);
	/* one more octet in the last label */
	wire[3 * 64] = 62;
	memmove(wire + 3 * 64 + 1 + 62, wire + 3 * 64 + 1 + 61, 1);
	wire[3 * 64 + 62] = 'z';
	assert_int_equal(dns_name_from_wire(wire, n + 1, out), -1);
}

static void name_check(void **state)
{
	(void)state;
	assert_int_equal(dns_name_check("example.org"), 0);
	assert_int_equal(dns_name_check("example.org."), 0);
	assert_int_equal(dns_name_check("_5269._tcp.xmpp.example"), 0);
	assert_int_equal(dns_name_check("localhost"), 0);
	assert_int_equal(dns_name_check(""), -1);
	assert_int_equal(dns_name_check("."), -1);
	assert_int_equal(dns_name_check("a..b"), -1);
	assert_int_equal(dns_name_check(".a"), -1);
	assert_int_equal(dns_name_check("a b"), -1);
	assert_int_equal(dns_name_check("a\\046b"), -1);
	assert_int_equal(dns_name_check("b\xc3\xbc" "cher.example"), -1);
	char label[80];
	memset(label, 'x', 64);
	strcpy(label + 64, ".org");
	assert_int_equal(dns_name_check(label), -1);
	char big[300];
	memset(big, 'a', 254);
	big[254] = '\0';
	for (int i = 63; i < 254; i += 64)
		big[i] = '.';
	assert_int_equal(dns_name_check(big), -1); /* 254 characters */
	big[253] = '\0';
	assert_int_equal(dns_name_check(big), 0);
}

static void srv_parse(void **state)
{
	(void)state;
	uint8_t rd[300];
	struct dns_srv srv;
	size_t n = srv_rdata(rd, 10, 60, 5269, WIRE("\4xmpp\7example\0"));
	assert_int_equal(dns_srv_parse(rd, n, &srv), 0);
	assert_int_equal(srv.priority, 10);
	assert_int_equal(srv.weight, 60);
	assert_int_equal(srv.port, 5269);
	assert_false(srv.direct_tls);
	assert_string_equal(srv.target, "xmpp.example");
	n = srv_rdata(rd, 65535, 65535, 65535, WIRE("\0"));
	assert_int_equal(dns_srv_parse(rd, n, &srv), 0);
	assert_int_equal(srv.priority, 65535);
	assert_string_equal(srv.target, ".");
	/* truncated anywhere, or with trailing bytes */
	n = srv_rdata(rd, 1, 2, 3, WIRE("\4xmpp\0"));
	for (size_t len = 0; len < n; len++)
		assert_int_equal(dns_srv_parse(rd, len, &srv), -1);
	rd[n] = 0;
	assert_int_equal(dns_srv_parse(rd, n + 1, &srv), -1);
}

static void tlsa_parse(void **state)
{
	(void)state;
	struct dns_tlsa t;
	static const uint8_t rd[] = { 3, 1, 1, 0xab, 0xcd };
	assert_int_equal(dns_tlsa_parse(rd, sizeof(rd), &t), 0);
	assert_int_equal(t.usage, 3);
	assert_int_equal(t.selector, 1);
	assert_int_equal(t.mtype, 1);
	assert_int_equal(t.len, 2);
	assert_ptr_equal(t.data, rd + 3);
	assert_int_equal(dns_tlsa_parse(rd, 3, &t), -1);
	assert_int_equal(dns_tlsa_parse(rd, 0, &t), -1);
}

static struct dns_srv rec(unsigned prio, unsigned weight, const char *name)
{
	struct dns_srv r = { .priority = prio, .weight = weight };
	snprintf(r.target, sizeof(r.target), "%s", name);
	return r;
}

static void order_by_priority(void **state)
{
	(void)state;
	uint64_t rng = 1;
	struct dns_srv r[] = {
		rec(20, 0, "d"), rec(10, 5, "b"), rec(0, 0, "a"),
		rec(20, 0, "e"), rec(10, 5, "c"), rec(65535, 0, "z"),
	};
	dns_srv_order(r, 6, &rng);
	assert_string_equal(r[0].target, "a");
	assert_true(strcmp(r[1].target, "b") == 0 ||
		    strcmp(r[1].target, "c") == 0);
	assert_true(strcmp(r[3].target, "d") == 0 ||
		    strcmp(r[3].target, "e") == 0);
	assert_string_equal(r[5].target, "z");
	for (int i = 1; i < 6; i++)
		assert_true(r[i - 1].priority <= r[i].priority);
}

/* Over many seeds, the share of runs in which each record comes first
 * follows its weight (RFC 2782: weight / sum, plus the inclusive 0 that
 * gives weight 0 a chance: 1 / (sum + 1)). */
static void order_by_weight(void **state)
{
	(void)state;
	enum { RUNS = 20000 };
	unsigned first[3] = { 0 };
	for (uint64_t seed = 0; seed < RUNS; seed++) {
		uint64_t rng = seed;
		struct dns_srv r[] = {
			rec(1, 60, "sixty"), rec(1, 0, "zero"),
			rec(1, 40, "forty"),
		};
		dns_srv_order(r, 3, &rng);
		for (int i = 0; i < 3; i++)
			assert_int_equal(r[i].priority, 1);
		first[strcmp(r[0].target, "sixty") == 0 ? 0 :
		      strcmp(r[0].target, "zero") == 0 ? 1 : 2]++;
	}
	/* expected: sixty 60/101, zero 1/101, forty 40/101 */
	assert_in_range(first[0], RUNS * 55 / 100, RUNS * 64 / 100);
	assert_in_range(first[1], RUNS / 101 / 2, RUNS * 2 / 101);
	assert_in_range(first[2], RUNS * 35 / 100, RUNS * 44 / 100);
}

/* Zero weights only: every order is possible, each record once. */
static void order_all_zero(void **state)
{
	(void)state;
	unsigned seen_first[4] = { 0 };
	for (uint64_t seed = 0; seed < 400; seed++) {
		uint64_t rng = seed;
		struct dns_srv r[] = { rec(0, 0, "0"), rec(0, 0, "1"),
				       rec(0, 0, "2"), rec(0, 0, "3") };
		dns_srv_order(r, 4, &rng);
		unsigned mask = 0;
		for (int i = 0; i < 4; i++)
			mask |= 1u << (r[i].target[0] - '0');
		assert_int_equal(mask, 0xf);
		seen_first[r[0].target[0] - '0']++;
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen_first[i] > 50);
}

/* The same seed gives the same order (tests may rely on it). */
static void order_is_seeded(void **state)
{
	(void)state;
	struct dns_srv a[8], b[8];
	for (int i = 0; i < 8; i++)
		a[i] = b[i] = rec(i % 2, (unsigned)i * 10, (char[]){ 'a' + i, 0 });
	uint64_t s1 = 42, s2 = 42;
	dns_srv_order(a, 8, &s1);
	dns_srv_order(b, 8, &s2);
	for (int i = 0; i < 8; i++)
		assert_string_equal(a[i].target, b[i].target);
	assert_true(s1 == s2 && s1 != 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(name_from_wire),
		cmocka_unit_test(name_from_wire_refuses),
		cmocka_unit_test(name_length_limit),
		cmocka_unit_test(name_check),
		cmocka_unit_test(srv_parse),
		cmocka_unit_test(tlsa_parse),
		cmocka_unit_test(order_by_priority),
		cmocka_unit_test(order_by_weight),
		cmocka_unit_test(order_all_zero),
		cmocka_unit_test(order_is_seeded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
