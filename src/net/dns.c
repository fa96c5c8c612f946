/*
 * dns.c - DNS names, SRV and TLSA record data, RFC 2782 order; see dns.h.
 */
#include <string.h>

#include "dns.h"

#define LABEL_MAX 63
#define WIRE_NAME_MAX 255

static bool host_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static char lower(uint8_t c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

int dns_name_from_wire(const uint8_t *p, size_t len, char *out)
{
	size_t i = 0, o = 0;
	for (;;) {
		if (i >= len)
			return -1;
		uint8_t n = p[i++];
		if (n == 0)
			break;
		/* 0xc0: a compression pointer, which libunbound has already
		 * expanded; 0x40, 0x80: extended label types (RFC 6891). */
		if (n > LABEL_MAX || n > len - i)
			return -1;
		/* Wire length so far plus this label and the final root. */
		if (i + n + 1 > WIRE_NAME_MAX)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t k = 0; k < n; k++) {
			if (!host_char(p[i + k]))
				return -1;
			out[o++] = lower(p[i + k]);
		}
		i += n;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return (int)i;
}

int dns_name_check(const char *text)
{
	size_t len = strlen(text);
	if (len > 0 && text[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_TEXT_MAX - 1)
		return -1;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (!host_char((uint8_t)text[i]) || ++label > LABEL_MAX) {
			return -1;
		}
	}
	return label == 0 ? -1 : 0;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int dns_srv_parse(const uint8_t *rd, size_t len, struct dns_srv *srv_r)
{
	if (len < 7)
		return -1;
	srv_r->priority = get16(rd);
	srv_r->weight = get16(rd + 2);
	srv_r->port = get16(rd + 4);
	srv_r->direct_tls = false;
	int used = dns_name_from_wire(rd + 6, len - 6, srv_r->target);
	if (used < 0 || (size_t)used != len - 6)
		return -1;
	return 0;
}

int dns_tlsa_parse(const uint8_t *rd, size_t len, struct dns_tlsa *tlsa_r)
{
	if (len < 4)
		return -1;
	tlsa_r->usage = rd[0];
	tlsa_r->selector = rd[1];
	tlsa_r->mtype = rd[2];
	tlsa_r->data = rd + 3;
	tlsa_r->len = len - 3;
	return 0;
}

uint64_t dns_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Stable insertion sort by key; n is small (resolve.c bounds it). */
static void sort_by(struct dns_srv *recs, size_t n,
		    unsigned (*key)(const struct dns_srv *))
{
	for (size_t i = 1; i < n; i++) {
		struct dns_srv tmp = recs[i];
		size_t j = i;
		for (; j > 0 && key(&recs[j - 1]) > key(&tmp); j--)
			recs[j] = recs[j - 1];
		recs[j] = tmp;
	}
}

static unsigned by_priority(const struct dns_srv *r)
{
	return r->priority;
}

static unsigned zero_weight_first(const struct dns_srv *r)
{
	return r->weight != 0;
}

/* RFC 2782: "compute the sum of the weights of those RRs, and with each RR
 * associate the running sum in the selected order. Then choose a uniform
 * random number between 0 and the sum computed (inclusive), and select the
 * RR whose running sum value is the first in the selected order which is
 * greater than or equal to the random number selected." */
static void order_group(struct dns_srv *recs, size_t n, uint64_t *rng)
{
	/* "arrange all SRV RRs (that have not been ordered yet) in any
	 * order, except that all those with weight 0 are placed at the
	 * beginning": shuffled, or the first of several weight-0 records
	 * would always win (the draw of 0 picks it). */
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(dns_random(rng) % i);
		struct dns_srv tmp = recs[i - 1];
		recs[i - 1] = recs[j];
		recs[j] = tmp;
	}
	sort_by(recs, n, zero_weight_first);
	for (size_t done = 0; done + 1 < n; done++) {
		uint64_t sum = 0;
		for (size_t i = done; i < n; i++)
			sum += recs[i].weight;
		uint64_t pick = dns_random(rng) % (sum + 1), run = 0;
		size_t i = done;
		for (; i < n; i++) {
			run += recs[i].weight;
			if (run >= pick)
				break;
		}
		/* Move the pick to the front, keeping the others' order. */
		struct dns_srv tmp = recs[i];
		memmove(&recs[done + 1], &recs[done],
			(i - done) * sizeof(*recs));
		recs[done] = tmp;
	}
}

void dns_srv_order(struct dns_srv *recs, size_t n, uint64_t *rng)
{
	sort_by(recs, n, by_priority);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && recs[j].priority == recs[i].priority)
			j++;
		order_group(recs + i, j - i, rng);
		i = j;
	}
}
