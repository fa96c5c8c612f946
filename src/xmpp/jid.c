/*
 * jid.c - XMPP address parsing and normalisation (RFC 6122 §2, RFC 7622
 * §3.2-3.4 part limits) with libidn stringprep: nodeprep, nameprep and
 * resourceprep; see jid.h and docs/internals/jid.md.
 *
 * Invariants: input is valid UTF-8 without NUL before libidn sees it; every
 * part of a parsed JID is 1..JID_PART_MAX bytes after preparation; a domain
 * is an IP literal or a name whose labels obey the STD3 rules (RFC 3490).
 * The ASCII fast path gives byte for byte what libidn gives (checked by
 * tests/unit/test_jid.c and fuzz/fuzz_jid.c through jid_fast_path).
 */
#include <arpa/inet.h>
#include <idna.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#include "../core/bug.h"
#include "jid.h"

/*
 * Coarse bound on raw input, checked before any work: RFC 6122 §2.1's 3071
 * bytes (three full parts and two separators) plus two bytes of slack, as
 * the domain's trailing dot is stripped before the part limits apply. The
 * exact limits are the per-part ones, checked after preparation.
 */
#define JID_INPUT_MAX (3 * JID_PART_MAX + 2 + 2)
/* A DNS label, RFC 1034 §3.1 (IDNA ToASCII step 8 checks the same). */
#define JID_LABEL_MAX 63

/*
 * Test hook, deliberately not in jid.h: false sends every part through
 * libidn so that tests and the fuzzer can compare the two paths. Only
 * tests/unit/test_jid.c and fuzz/fuzz_jid.c may change it.
 */
extern bool jid_fast_path;
bool jid_fast_path = true;

/* One stringprep profile with its ASCII fast path and error texts. */
struct jid_prep {
	const Stringprep_profile *profile;
	/* Returns true if c may pass the fast path (then only A-Z changes). */
	bool (*ascii_ok)(unsigned char c);
	bool fold;
	const char *e_empty, *e_long, *e_prohibited, *e_bidi, *e_unstable;
};

static bool node_ascii_ok(unsigned char c)
{
	/* RFC 3920 Appendix A.5: nodeprep prohibits C.1.1 (space), C.2.1
	 * (ASCII controls) and " & ' / : < > @. */
	return c > 0x20 && c < 0x7f && strchr("\"&'/:<>@", c) == NULL;
}

static bool resource_ascii_ok(unsigned char c)
{
	/* Resourceprep prohibits C.2.1 but not C.1.1: spaces are fine. */
	return c >= 0x20 && c < 0x7f;
}

static bool name_ascii_ok(unsigned char c)
{
	/* Nameprep prohibits no ASCII at all (IDNA's STD3 rules do that,
	 * see domain_valid()); NUL never gets here. */
	return c != 0 && c < 0x80;
}

static const struct jid_prep prep_node = {
	.profile = stringprep_xmpp_nodeprep,
	.ascii_ok = node_ascii_ok,
	.fold = true,
	.e_empty = "empty localpart",
	.e_long = "localpart longer than 1023 bytes",
	.e_prohibited = "prohibited character in localpart",
	.e_bidi = "invalid bidirectional text in localpart",
	.e_unstable = "unstable normalisation of localpart",
};

static const struct jid_prep prep_name = {
	.profile = stringprep_nameprep,
	.ascii_ok = name_ascii_ok,
	.fold = true,
	.e_empty = "empty domainpart",
	.e_long = "domainpart longer than 1023 bytes",
	.e_prohibited = "prohibited character in domainpart",
	.e_bidi = "invalid bidirectional text in domainpart",
	.e_unstable = "unstable normalisation of domainpart",
};

static const struct jid_prep prep_resource = {
	.profile = stringprep_xmpp_resourceprep,
	.ascii_ok = resource_ascii_ok,
	.fold = false,
	.e_empty = "empty resourcepart",
	.e_long = "resourcepart longer than 1023 bytes",
	.e_prohibited = "prohibited character in resourcepart",
	.e_bidi = "invalid bidirectional text in resourcepart",
	.e_unstable = "unstable normalisation of resourcepart",
};

static const char e_cap[] = "JID does not fit in the arena cap";

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or > U+10FFFF. */
static bool utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			lo = c == 0xe0 ? 0xa0 : 0x80;
			hi = c == 0xed ? 0x9f : 0xbf;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			lo = c == 0xf0 ? 0x90 : 0x80;
			hi = c == 0xf4 ? 0x8f : 0xbf;
		} else {
			return false;
		}
		if (len - i - 1 < n || p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return false;
		i += n + 1;
	}
	return true;
}

/* NUL would silently truncate the string libidn sees. */
static const char *check_bytes(struct str in)
{
	/* an absent attribute is STR_NULL: memchr must not see NULL */
	if (in.len > 0 && memchr(in.p, '\0', in.len) != NULL)
		return "NUL byte in JID";
	if (!utf8_valid((const unsigned char *)in.p, in.len))
		return "invalid UTF-8 in JID";
	return NULL;
}

static bool is_ascii(struct str s)
{
	for (size_t i = 0; i < s.len; i++)
		if ((unsigned char)s.p[i] >= 0x80)
			return false;
	return true;
}

/* The fast path: in is ASCII, so NFKC, the B.1 map and bidi change
 * nothing and B.2 case folding is exactly A-Z -> a-z. */
static int prep_ascii(struct arena *a, const struct jid_prep *prep,
		      struct str in, struct str *out_r, const char **error_r)
{
	if (in.len > JID_PART_MAX) {
		*error_r = prep->e_long;
		return -1;
	}
	char *out = arena_alloc(a, in.len + 1);
	if (out == NULL) {
		*error_r = e_cap;
		return -1;
	}
	for (size_t i = 0; i < in.len; i++) {
		unsigned char c = (unsigned char)in.p[i];
		if (!prep->ascii_ok(c)) {
			*error_r = prep->e_prohibited;
			return -1;
		}
		if (prep->fold && c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		out[i] = (char)c;
	}
	out[in.len] = '\0';
	*out_r = STR(out, in.len);
	return 0;
}

static const char *prep_error(const struct jid_prep *prep, int rc)
{
	switch (rc) {
	case STRINGPREP_CONTAINS_PROHIBITED:
	case STRINGPREP_CONTAINS_UNASSIGNED:
		return prep->e_prohibited;
	case STRINGPREP_BIDI_BOTH_L_AND_RAL:
	case STRINGPREP_BIDI_LEADTRAIL_NOT_RAL:
	case STRINGPREP_BIDI_CONTAINS_PROHIBITED:
		return prep->e_bidi;
	case STRINGPREP_TOO_SMALL_BUFFER:
		return prep->e_long;
	default:
		return "stringprep failed";
	}
}

/*
 * libidn implements Unicode 3.2 NFKC with the flaw of Public Review Issue
 * #29: some sequences (U+1100 U+0300 U+1161 U+0323) prepare to a string
 * that prepares differently again. A JID must be a fixed point, or equal
 * addresses would compare unequal after a round trip; such rare strings
 * are refused. out is a prepared part of len <= JID_PART_MAX bytes.
 */
static bool prep_stable(const struct jid_prep *prep, const char *out,
			size_t len)
{
	char again[JID_PART_MAX + 1];
	memcpy(again, out, len + 1);
	if (stringprep(again, sizeof(again), 0, prep->profile) != 0)
		return false;
	return strcmp(again, out) == 0;
}

/* The general path: libidn in place on a stack copy (stringprep() wants a
 * NUL-terminated string and a buffer that can hold the result). */
static int prep_libidn(struct arena *a, const struct jid_prep *prep,
		       struct str in, struct str *out_r, const char **error_r)
{
	char tmp[JID_INPUT_MAX + 1];
	if (in.len >= sizeof(tmp)) {
		*error_r = prep->e_long;
		return -1;
	}
	memcpy(tmp, in.p, in.len);
	tmp[in.len] = '\0';
	int rc = stringprep(tmp, sizeof(tmp), 0, prep->profile);
	if (rc != STRINGPREP_OK) {
		*error_r = prep_error(prep, rc);
		return -1;
	}
	size_t len = strlen(tmp);
	if (len > JID_PART_MAX) {
		*error_r = prep->e_long;
		return -1;
	}
	if (!prep_stable(prep, tmp, len)) {
		*error_r = prep->e_unstable;
		return -1;
	}
	*out_r = arena_strdup(a, STR(tmp, len));
	if (out_r->p == NULL) {
		*error_r = e_cap;
		return -1;
	}
	return 0;
}

/* Prepares one part whose bytes check_bytes() accepted. A part that maps
 * to nothing (e.g. only U+00AD) is as empty as one that was. */
static int prep_part(struct arena *a, const struct jid_prep *prep,
		     struct str in, struct str *out_r, const char **error_r)
{
	int rc;
	if (in.len == 0) {
		*error_r = prep->e_empty;
		return -1;
	}
	if (jid_fast_path && is_ascii(in))
		rc = prep_ascii(a, prep, in, out_r, error_r);
	else
		rc = prep_libidn(a, prep, in, out_r, error_r);
	if (rc == 0 && out_r->len == 0) {
		*out_r = STR_NULL;
		*error_r = prep->e_empty;
		return -1;
	}
	return rc;
}

/* STD3 host name rules on an ASCII name: letters, digits and hyphens,
 * no hyphen at either end of a label, labels of 1..63 bytes. */
static bool ldh_valid(struct str s)
{
	size_t label = 0;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c == '.') {
			if (label == 0 || s.p[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');
		if (!alnum && (c != '-' || label == 0))
			return false;
		if (++label > JID_LABEL_MAX)
			return false;
	}
	return label > 0 && s.p[s.len - 1] != '-';
}

/* libidn's ToASCII enforces STD3 on every label and the label length after
 * Punycode; it accepts a trailing empty label (the root), which a JID
 * domain cannot have once its trailing dot is stripped. */
static bool idna_valid(struct str s)
{
	if (s.len == 0 || s.p[0] == '.' || s.p[s.len - 1] == '.')
		return false;
	char *ace = NULL;
	int rc = idna_to_ascii_8z(s.p, &ace,
				  IDNA_ALLOW_UNASSIGNED |
				  IDNA_USE_STD3_ASCII_RULES);
	free(ace);
	return rc == IDNA_SUCCESS;
}

/* s is the nameprep'd domain, NUL-terminated. */
static bool domain_valid(struct str s)
{
	if (jid_fast_path && is_ascii(s))
		return ldh_valid(s);
	return idna_valid(s);
}

/* RFC 7622 §3.2 allows IP-literal (RFC 3986) as a domainpart: "[v6]".
 * The address is stored in inet_ntop's canonical form so that equal
 * addresses compare equal. */
static int prep_ip_literal(struct arena *a, struct str in,
			   struct str *out_r, const char **error_r)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned char addr[sizeof(struct in6_addr)];
	*error_r = "invalid IP literal in domainpart";
	if (in.len < 3 || in.p[in.len - 1] != ']' ||
	    in.len - 2 >= sizeof(tmp))
		return -1;
	size_t n = in.len - 2;
	memcpy(tmp, in.p + 1, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET6, tmp, addr) != 1)
		return -1;
	BUG_ON(inet_ntop(AF_INET6, addr, tmp, sizeof(tmp)) == NULL);
	char *out = arena_printf(a, "[%s]", tmp);
	if (out == NULL) {
		*error_r = e_cap;
		return -1;
	}
	*out_r = str_c(out);
	return 0;
}

/* RFC 3490 §3.1: U+3002, U+FF0E and U+FF61 are dots too. Mapping them
 * before the trailing dot is stripped keeps "a.b" and "a。b" one domain.
 * Writes at most in.len bytes to out. */
static size_t map_dots(const char *in, size_t len, char *out)
{
	static const char *const dots[] = {
		"\xe3\x80\x82", "\xef\xbc\x8e", "\xef\xbd\xa1",
	};
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		bool dot = false;
		for (size_t k = 0; k < ARRAY_SIZE(dots) && !dot; k++)
			dot = len - i >= 3 && memcmp(in + i, dots[k], 3) == 0;
		if (dot) {
			out[o++] = '.';
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	return o;
}

/* The domainpart of RFC 7622 §3.2 on bytes check_bytes() accepted. */
static int prep_domain(struct arena *a, struct str in, struct str *out_r,
		       const char **error_r)
{
	char tmp[JID_INPUT_MAX];
	if (in.len > sizeof(tmp)) {
		*error_r = prep_name.e_long;
		return -1;
	}
	if (!is_ascii(in))
		in = STR(tmp, map_dots(in.p, in.len, tmp));
	/* Stripped before anything else (RFC 7622 §3.2). */
	if (in.len > 0 && in.p[in.len - 1] == '.')
		in.len--;
	if (in.len > 0 && in.p[0] == '[')
		return prep_ip_literal(a, in, out_r, error_r);
	if (prep_part(a, &prep_name, in, out_r, error_r) < 0)
		return -1;
	if (!domain_valid(*out_r)) {
		*out_r = STR_NULL;
		*error_r = "invalid domain name";
		return -1;
	}
	return 0;
}

static int check_input(struct str in, const char **error_r)
{
	if (in.len > JID_INPUT_MAX) {
		*error_r = "JID too long";
		return -1;
	}
	*error_r = check_bytes(in);
	return *error_r != NULL ? -1 : 0;
}

int jid_parse(struct arena *a, struct str in, struct jid *jid_r,
	      const char **error_r)
{
	struct jid j = { STR_NULL, STR_NULL, STR_NULL };
	memset(jid_r, 0, sizeof(*jid_r));
	if (check_input(in, error_r) < 0)
		return -1;
	/* RFC 7622 §3.1: the resource starts at the first '/', the node
	 * ends at the last '@' before that. */
	const char *end = in.p + in.len;
	const char *slash = memchr(in.p, '/', in.len);
	const char *dend = slash ? slash : end;
	const char *at = memrchr(in.p, '@', (size_t)(dend - in.p));
	const char *dstart = at ? at + 1 : in.p;
	if (at && prep_part(a, &prep_node, STR(in.p, (size_t)(at - in.p)),
			    &j.node, error_r) < 0)
		return -1;
	if (prep_domain(a, STR(dstart, (size_t)(dend - dstart)), &j.domain,
			error_r) < 0)
		return -1;
	if (slash && prep_part(a, &prep_resource,
			       STR(slash + 1, (size_t)(end - slash - 1)),
			       &j.resource, error_r) < 0)
		return -1;
	if (j.node.p == NULL)
		j.node = STR("", 0);
	if (j.resource.p == NULL)
		j.resource = STR("", 0);
	*jid_r = j;
	return 0;
}

int jid_nodeprep(struct arena *a, struct str in, struct str *out_r,
		 const char **error_r)
{
	*out_r = STR_NULL;
	if (check_input(in, error_r) < 0)
		return -1;
	return prep_part(a, &prep_node, in, out_r, error_r);
}

int jid_nameprep(struct arena *a, struct str in, struct str *out_r,
		 const char **error_r)
{
	*out_r = STR_NULL;
	if (check_input(in, error_r) < 0)
		return -1;
	return prep_domain(a, in, out_r, error_r);
}

int jid_resourceprep(struct arena *a, struct str in, struct str *out_r,
		     const char **error_r)
{
	*out_r = STR_NULL;
	if (check_input(in, error_r) < 0)
		return -1;
	return prep_part(a, &prep_resource, in, out_r, error_r);
}

static size_t jid_format_len(const struct jid *j, bool bare)
{
	size_t n = j->domain.len;
	if (j->node.len)
		n += j->node.len + 1;
	if (!bare && j->resource.len)
		n += j->resource.len + 1;
	return n;
}

/* Writes the formatted JID to out, which has jid_format_len() bytes. */
static void jid_format(char *out, const struct jid *j, bool bare)
{
	if (j->node.len) {
		memcpy(out, j->node.p, j->node.len);
		out += j->node.len;
		*out++ = '@';
	}
	memcpy(out, j->domain.p, j->domain.len);
	out += j->domain.len;
	if (!bare && j->resource.len) {
		*out++ = '/';
		memcpy(out, j->resource.p, j->resource.len);
	}
}

int jid_to_buf(struct buf *b, const struct jid *j, bool bare)
{
	size_t n = jid_format_len(j, bare);
	/* Checked up front so that a full buffer is left unchanged. */
	if (b->max && (n > b->max || b->len > b->max - n))
		return -1;
	if (j->node.len) {
		buf_append_str(b, j->node);
		buf_append(b, "@", 1);
	}
	buf_append_str(b, j->domain);
	if (!bare && j->resource.len) {
		buf_append(b, "/", 1);
		buf_append_str(b, j->resource);
	}
	return 0;
}

struct str jid_to_str(struct arena *a, const struct jid *j, bool bare)
{
	size_t n = jid_format_len(j, bare);
	char *p = arena_alloc(a, n + 1);
	if (p == NULL)
		return STR_NULL;
	jid_format(p, j, bare);
	p[n] = '\0';
	return STR(p, n);
}

struct str jid_to_text(const struct jid *j, bool bare,
		       char buf[JID_TEXT_MAX])
{
	size_t n = jid_format_len(j, bare);
	BUG_ON(n >= JID_TEXT_MAX);
	jid_format(buf, j, bare);
	buf[n] = '\0';
	return STR(buf, n);
}

bool jid_eq(const struct jid *a, const struct jid *b)
{
	return jid_bare_eq(a, b) && str_eq(a->resource, b->resource);
}

bool jid_bare_eq(const struct jid *a, const struct jid *b)
{
	return str_eq(a->node, b->node) && str_eq(a->domain, b->domain);
}
