/*
 * test_jid.c - JID parsing, stringprep normalisation, limits, formatting
 * and comparison (src/xmpp/jid.c; RFC 6122 §2, RFC 7622 §3).
 *
 * The fast ASCII path is compared with libidn over exhaustive short and
 * generated ASCII inputs by flipping jid_fast_path (a test-only hook).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp/jid.h"

extern bool jid_fast_path;

static struct arena *arena;

static int setup(void **state)
{
	(void)state;
	arena = arena_new(0);
	jid_fast_path = true;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	arena_destroy(&arena);
	jid_fast_path = true;
	return 0;
}

/* Parses in (len bytes) and checks each normalised part. */
static void check_jid_n(const char *in, size_t len, const char *node,
			const char *domain, const char *resource)
{
	struct jid j;
	const char *err = NULL;
	int rc = jid_parse(arena, STR(in, len), &j, &err);
	if (rc != 0)
		fail_msg("\"%s\" refused: %s", in, err);
	assert_string_equal(j.node.p, node);
	assert_int_equal(j.node.len, strlen(node));
	assert_string_equal(j.domain.p, domain);
	assert_int_equal(j.domain.len, strlen(domain));
	assert_string_equal(j.resource.p, resource);
	assert_int_equal(j.resource.len, strlen(resource));
}

static void check_jid(const char *in, const char *node, const char *domain,
		      const char *resource)
{
	check_jid_n(in, strlen(in), node, domain, resource);
}

/* Expects in to be refused with an error containing want. */
static void check_bad_n(const char *in, size_t len, const char *want)
{
	struct jid j;
	const char *err = NULL;
	if (jid_parse(arena, STR(in, len), &j, &err) == 0)
		fail_msg("\"%.*s\" accepted as %s@%s/%s", (int)len, in,
			 j.node.p, j.domain.p, j.resource.p);
	assert_non_null(err);
	if (strstr(err, want) == NULL)
		fail_msg("\"%.*s\": error \"%s\", wanted \"%s\"", (int)len, in,
			 err, want);
	assert_int_equal(j.domain.len, 0);
}

static void check_bad(const char *in, const char *want)
{
	check_bad_n(in, strlen(in), want);
}

typedef int prep_fn(struct arena *, struct str, struct str *,
		    const char **);

static void check_prep(prep_fn *fn, const char *in, const char *want)
{
	struct str out;
	const char *err = NULL;
	if (fn(arena, str_c(in), &out, &err) != 0)
		fail_msg("\"%s\" refused: %s", in, err);
	assert_string_equal(out.p, want);
	assert_int_equal(out.len, strlen(want));
}

static void check_prep_bad_n(prep_fn *fn, const char *in, size_t len)
{
	struct str out;
	const char *err = NULL;
	if (fn(arena, STR(in, len), &out, &err) == 0)
		fail_msg("\"%.*s\" accepted as \"%s\"", (int)len, in, out.p);
	assert_non_null(err);
	assert_null(out.p);
}

static void check_prep_bad(prep_fn *fn, const char *in)
{
	check_prep_bad_n(fn, in, strlen(in));
}

static char *repeat(const char *s, size_t n)
{
	size_t len = strlen(s);
	char *p = malloc(len * n + 1);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		memcpy(p + i * len, s, len);
	p[len * n] = '\0';
	return p;
}

static void test_shapes(void **state)
{
	(void)state;
	check_jid("example.com", "", "example.com", "");
	check_jid("user@example.com", "user", "example.com", "");
	check_jid("example.com/res", "", "example.com", "res");
	check_jid("user@example.com/res", "user", "example.com", "res");
	check_jid("localhost", "", "localhost", "");
	check_jid("a@b", "a", "b", "");
	/* the resource may hold '@' and '/'; the node ends at the last '@'
	 * before the first '/' */
	check_jid("a@b/c@d/e", "a", "b", "c@d/e");
	check_jid("b/c@d", "", "b", "c@d");
	check_jid("user@example.com//", "user", "example.com", "/");
	check_jid("user@example.com/a resource", "user", "example.com",
		  "a resource");
	check_jid("user@example.com/ ", "user", "example.com", " ");
	check_jid("user@127.0.0.1", "user", "127.0.0.1", "");
	check_jid("user@[::1]/r", "user", "[::1]", "r");
	check_jid("[0:0:0::1]", "", "[::1]", "");
	check_jid("[2001:DB8::A]", "", "[2001:db8::a]", "");
	check_jid("[::FFFF:1.2.3.4]", "", "[::ffff:1.2.3.4]", "");
	check_jid("x-1.example-2.com", "", "x-1.example-2.com", "");
	check_jid("n!#$%()*+,-.;=?[\\]^_`{|}~@example.com",
		  "n!#$%()*+,-.;=?[\\]^_`{|}~", "example.com", "");
}

static void test_case_folding(void **state)
{
	(void)state;
	check_jid("User@Example.COM/Res", "user", "example.com", "Res");
	check_jid("ALL@CAPS.ORG/ALL", "all", "caps.org", "ALL");
	check_jid("[::1]/Res", "", "[::1]", "Res");
}

static void test_trailing_dot(void **state)
{
	(void)state;
	check_jid("user@example.com./r", "user", "example.com", "r");
	check_jid("example.com.", "", "example.com", "");
	check_jid("[::1].", "", "[::1]", "");
	check_bad("example.com..", "invalid domain");
	check_bad("user@./r", "empty domainpart");
	check_bad(".", "empty domainpart");
}

static void test_unicode(void **state)
{
	(void)state;
	/* Greek capital psi folds to small psi; the resource keeps case */
	check_jid("\xce\xa8@example.com/\xce\xa8", "\xcf\x88",
		  "example.com", "\xce\xa8");
	/* fullwidth letters (NFKC) and folding */
	check_jid("\xef\xbc\xb5\xef\xbc\xb3\xef\xbc\xa5\xef\xbc\xb2"
		  "@example.com", "user", "example.com", "");
	/* the fi ligature is a compatibility character */
	check_jid("\xef\xac\x81@example.com", "fi", "example.com", "");
	/* sharp s case-folds to ss (B.2) */
	check_jid("Stra\xc3\x9f" "e@example.com", "strasse", "example.com", "");
	/* soft hyphen maps to nothing (B.1), in every part */
	check_jid("us\xc2\xad" "er@exa\xc2\xadmple.com/r\xc2\xad" "es",
		  "user", "example.com", "res");
	/* resourceprep: NFKC but no case folding */
	check_jid("example.com/\xef\xbc\xb2\xef\xbd\x85\xef\xbd\x93",
		  "", "example.com", "Res");
	/* internationalised domains: case folded, kept as U-labels */
	check_jid("\xc3\x84\xc3\x96.EXAMPLE", "", "\xc3\xa4\xc3\xb6.example",
		  "");
	check_jid("\xe4\xbe\x8b\xe3\x81\x88.JP", "",
		  "\xe4\xbe\x8b\xe3\x81\x88.jp", "");
	/* fullwidth digits in a domain become an ASCII name */
	check_jid("\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1", "",
		  "127.0.0.1", "");
	/* ideographic and fullwidth full stops are dots (RFC 3490 §3.1) */
	check_jid("example\xe3\x80\x82" "com", "", "example.com", "");
	check_jid("\xc3\xa4\xef\xbc\x8e" "com\xef\xbd\xa1", "",
		  "\xc3\xa4.com", "");
	/* Hebrew alone is fine, mixed with Latin it breaks the bidi rule */
	check_jid("\xd7\x90\xd7\x91@example.com", "\xd7\x90\xd7\x91",
		  "example.com", "");
	check_bad("\xd7\x90" "a@example.com", "bidirectional");
	check_bad("example.com/\xd7\x90" "a", "bidirectional");
	/* Unicode PR #29: libidn's NFKC of these is not idempotent */
	check_bad("\xe1\x84\x80\xcc\x80\xe1\x85\xa1\xcc\xa3@example.com",
		  "unstable normalisation of localpart");
	check_bad("example.com/\xe0\xad\x87\xcc\x80\xe0\xac\xbe\xcc\xa3",
		  "unstable normalisation of resourcepart");
	check_prep_bad(jid_nameprep,
		       "\xe1\x84\x80\xcc\x80\xe1\x85\xa1\xcc\xa3");
	/* without the last mark the result is stable and accepted */
	check_jid("\xe1\x84\x80\xcc\x80\xe1\x85\xa1@example.com",
		  "\xea\xb0\x80\xcc\x80", "example.com", "");
}

static void test_prohibited_node(void **state)
{
	(void)state;
	const char *bad = " \"&'/:<>@";
	char in[32];
	for (const char *c = bad; *c; c++) {
		snprintf(in, sizeof(in), "a%cb", *c);
		check_prep_bad(jid_nodeprep, in);
		if (*c == '/' || *c == '@')
			continue; /* separators, not node characters */
		snprintf(in, sizeof(in), "a%cb@example.com", *c);
		check_bad(in, "prohibited character in localpart");
	}
	for (int c = 1; c < 0x20; c++) {
		snprintf(in, sizeof(in), "a%cb@example.com", c);
		check_bad(in, "prohibited character in localpart");
	}
	check_bad("a\x7f" "b@example.com", "prohibited character in localpart");
	/* non-ASCII space (C.1.2), private use (C.3), non-character (C.4) */
	check_bad("a\xc2\xa0" "b@example.com", "prohibited");
	check_bad("a\xee\x80\x80" "b@example.com", "prohibited");
	check_bad("a\xef\xbf\xbe" "b@example.com", "prohibited");
	/* fullwidth '@' is NFKC-mapped to a prohibited '@' */
	check_prep_bad(jid_nodeprep, "a\xef\xbc\xa0" "b");
	/* every other printable ASCII character is allowed */
	check_prep(jid_nodeprep, "!#$%()*+,-.;=?[\\]^_`{|}~",
		   "!#$%()*+,-.;=?[\\]^_`{|}~");
}

static void test_prohibited_resource(void **state)
{
	(void)state;
	char in[32];
	for (int c = 1; c < 0x20; c++) {
		snprintf(in, sizeof(in), "example.com/a%cb", c);
		check_bad(in, "prohibited character in resourcepart");
	}
	check_bad("example.com/a\x7f", "prohibited character in resourcepart");
	check_bad("example.com/a\xee\x80\x80", "prohibited");
	/* U+2028 (C.2.2); U+00A0 is NFKC-mapped to an allowed space */
	check_bad("example.com/\xe2\x80\xa8", "prohibited");
	check_prep(jid_resourceprep, "a\xc2\xa0" "b", "a b");
	check_prep(jid_resourceprep, " \"&'/:<>@ Aa", " \"&'/:<>@ Aa");
}

static void test_bad_domains(void **state)
{
	(void)state;
	const char *bad[] = {
		"exa mple.com", "a..b", ".a", "-a.com", "a-.com", "a.-b",
		"a_b.com", "a@b@", "a,b", "a\x01" "b", "a\x7f", "[::1",
		"[zz]", "[]", "[", "[1.2.3.4]", "[::1]x", "x[::1]",
		"example\xef\xbc\x8f" "com", /* fullwidth '/' */
		"\xe2\x80\xa4", /* one dot leader: NFKC "." */
		"\xc2\xa0.com", "a\xe3\x80\x82\xe3\x80\x82" "b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_prep_bad(jid_nameprep, bad[i]);
	check_bad("user@exa mple.com", "invalid domain name");
	check_bad("user@[zz]/r", "invalid IP literal");
	/* labels of 63 bytes are fine, 64 are not (RFC 1034) */
	char *l63 = repeat("a", 63), *l64 = repeat("a", 64);
	char in[200];
	snprintf(in, sizeof(in), "%s.com", l63);
	check_prep(jid_nameprep, in, in);
	snprintf(in, sizeof(in), "%s.com", l64);
	check_prep_bad(jid_nameprep, in);
	free(l63);
	free(l64);
}

static void test_empty_parts(void **state)
{
	(void)state;
	check_bad("", "empty domainpart");
	check_bad("@", "empty localpart");
	check_bad("/", "empty domainpart");
	check_bad("@/", "empty localpart");
	check_bad("@example.com", "empty localpart");
	check_bad("user@", "empty domainpart");
	check_bad("user@/res", "empty domainpart");
	check_bad("example.com/", "empty resourcepart");
	check_bad("user@example.com/", "empty resourcepart");
	/* parts that prepare to nothing are just as empty */
	check_bad("\xc2\xad@example.com", "empty localpart");
	check_bad("example.com/\xe2\x80\x8b", "empty resourcepart");
	check_bad("user@\xc2\xad", "empty domainpart");
	check_prep_bad(jid_nodeprep, "");
	check_prep_bad(jid_nodeprep, "\xc2\xad");
	check_prep_bad(jid_nameprep, "\xc2\xad");
	check_prep_bad(jid_resourceprep, "\xc2\xad");
	check_prep_bad(jid_nameprep, "");
	check_prep_bad(jid_resourceprep, "");
}

/* A domain of exactly len bytes in labels of at most 63. */
static char *long_domain(size_t len)
{
	char *p = repeat("a", len);
	for (size_t i = 63; i < len - 1; i += 64)
		p[i] = '.';
	return p;
}

static void test_part_limits(void **state)
{
	(void)state;
	char *p1023 = repeat("a", 1023), *p1024 = repeat("a", 1024);
	char *d1023 = long_domain(1023), *d1024 = long_domain(1024);
	char in[4000];

	snprintf(in, sizeof(in), "%s@example.com", p1023);
	check_jid(in, p1023, "example.com", "");
	snprintf(in, sizeof(in), "%s@example.com", p1024);
	check_bad(in, "localpart longer than 1023 bytes");
	snprintf(in, sizeof(in), "example.com/%s", p1023);
	check_jid(in, "", "example.com", p1023);
	snprintf(in, sizeof(in), "example.com/%s", p1024);
	check_bad(in, "resourcepart longer than 1023 bytes");
	check_jid(d1023, "", d1023, "");
	check_bad(d1024, "domainpart longer than 1023 bytes");
	/* all three at the limit: 3071 bytes, the largest JID */
	snprintf(in, sizeof(in), "%s@%s/%s", p1023, d1023, p1023);
	assert_int_equal(strlen(in), 3071);
	check_jid(in, p1023, d1023, p1023);
	/* ... with the trailing dot that is stripped */
	snprintf(in, sizeof(in), "%s@%s./%s", p1023, d1023, p1023);
	check_jid(in, p1023, d1023, p1023);
	snprintf(in, sizeof(in), "%s@%s/%s", p1024, d1023, p1023);
	check_bad(in, "localpart longer");
	/* the raw input may be up to 3073 bytes: here the node's soft
	 * hyphen is mapped out and every part fits */
	snprintf(in, sizeof(in), "\xc2\xad%s@%s./%s", p1023 + 1, d1023,
		 p1023);
	assert_int_equal(strlen(in), 3073);
	check_jid(in, p1023 + 1, d1023, p1023);
	snprintf(in, sizeof(in), "\xc2\xad\xc2\xad%s@%s./%s", p1023 + 2,
		 d1023, p1023);
	assert_int_equal(strlen(in), 3074);
	check_bad(in, "JID too long");
	snprintf(in, sizeof(in), "%s@%s/%s", p1024, d1024, p1024);
	check_bad(in, "JID too long");
	free(p1023);
	free(p1024);
	free(d1023);
	free(d1024);
}

/* The limit applies after preparation, on the libidn path too. */
static void test_limits_after_prep(void **state)
{
	(void)state;
	char in[4000];
	/* U+0149 (2 bytes) case-folds to U+02BC U+006E (3 bytes) */
	char *grow341 = repeat("\xc5\x89", 341);
	char *grow342 = repeat("\xc5\x89", 342);
	char *want = repeat("\xca\xbcn", 341);
	snprintf(in, sizeof(in), "%s@example.com", grow341);
	check_jid(in, want, "example.com", "");
	snprintf(in, sizeof(in), "%s@example.com", grow342);
	check_bad(in, "localpart longer than 1023 bytes");
	/* soft hyphens vanish, so 1023 letters + 40 of them is fine */
	char *p1023 = repeat("a", 1023), *shy = repeat("\xc2\xad", 40);
	snprintf(in, sizeof(in), "%s%s@example.com", shy, p1023);
	check_jid(in, p1023, "example.com", "");
	snprintf(in, sizeof(in), "example.com/%s%s", p1023, shy);
	check_jid(in, "", "example.com", p1023);
	/* 2-byte characters: 511 psi + 'a' is 1023, + "aa" is 1024 */
	char *psi = repeat("\xcf\x88", 511);
	snprintf(in, sizeof(in), "%sa@example.com", psi);
	assert_int_equal(jid_parse(arena, str_c(in), &(struct jid){ 0 },
				   &(const char *){ NULL }), 0);
	snprintf(in, sizeof(in), "%saa@example.com", psi);
	check_bad(in, "localpart longer than 1023 bytes");
	snprintf(in, sizeof(in), "example.com/%saa", psi);
	check_bad(in, "resourcepart longer than 1023 bytes");
	free(grow341);
	free(grow342);
	free(want);
	free(p1023);
	free(shy);
	free(psi);
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	const char *bad[] = {
		"\xff@example.com",        /* never valid */
		"a@\xc0\x80",              /* overlong NUL */
		"\xc1\xbf@example.com",    /* overlong */
		"\xe0\x80\xaf@example.com", /* overlong '/' */
		"example.com/\xed\xa0\x80", /* surrogate */
		"example.com/\xf4\x90\x80\x80", /* > U+10FFFF */
		"example.com/\xe2\x82",    /* truncated */
		"\x80@example.com",        /* lone continuation */
		"example.com/\xf8\x88\x80\x80\x80", /* 5-byte form */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		check_bad(bad[i], "invalid UTF-8");
		check_prep_bad(jid_resourceprep, bad[i]);
	}
	check_prep_bad(jid_nodeprep, "\xe2\x82");
	check_prep_bad(jid_nameprep, "a\xc3");
	/* 4-byte characters are fine: U+1D400 is NFKC "A"; U+10FFFD is
	 * valid UTF-8 but private use, so stringprep refuses it */
	check_jid("example.com/\xf0\x9d\x90\x80" "x", "", "example.com",
		  "Ax");
	check_bad("example.com/\xf4\x8f\xbf\xbd", "prohibited");
}

static void test_embedded_nul(void **state)
{
	(void)state;
	check_bad_n("us\0er@example.com", 17, "NUL byte");
	check_bad_n("user@example.com\0", 17, "NUL byte");
	check_bad_n("user@example.com/r\0es", 21, "NUL byte");
	check_prep_bad_n(jid_nodeprep, "a\0", 2);
	check_prep_bad_n(jid_nameprep, "a\0.com", 6);
	check_prep_bad_n(jid_resourceprep, "\0", 1);
}

static void test_formatting(void **state)
{
	(void)state;
	struct jid j;
	const char *err;
	assert_int_equal(jid_parse(arena, STR_LIT("User@Example.com/Res"), &j,
				   &err), 0);
	struct str s = jid_to_str(arena, &j, false);
	assert_string_equal(s.p, "user@example.com/Res");
	assert_int_equal(s.len, 20);
	s = jid_to_str(arena, &j, true);
	assert_string_equal(s.p, "user@example.com");
	assert_false(jid_is_bare(&j));

	struct buf b = { 0 };
	assert_int_equal(jid_to_buf(&b, &j, false), 0);
	assert_int_equal(jid_to_buf(&b, &j, true), 0);
	assert_int_equal(b.len, 36);
	assert_memory_equal(b.data, "user@example.com/Resuser@example.com", 36);
	buf_reset(&b);

	/* a full buffer is left unchanged */
	struct buf small = { .max = 19 };
	assert_int_equal(jid_to_buf(&small, &j, false), -1);
	assert_int_equal(small.len, 0);
	assert_int_equal(jid_to_buf(&small, &j, true), 0);
	assert_int_equal(jid_to_buf(&small, &j, true), -1);
	assert_int_equal(small.len, 16);
	buf_reset(&small);

	assert_int_equal(jid_parse(arena, STR_LIT("example.com"), &j, &err), 0);
	assert_true(jid_is_bare(&j));
	assert_string_equal(jid_to_str(arena, &j, false).p, "example.com");
	assert_int_equal(jid_parse(arena, STR_LIT("Example.com/R"), &j, &err),
			 0);
	assert_string_equal(jid_to_str(arena, &j, false).p, "example.com/R");
	assert_string_equal(jid_to_str(arena, &j, true).p, "example.com");

	/* formatting into a capped arena that is full gives STR_NULL */
	struct arena *capped = arena_new(16);
	assert_non_null(arena_alloc(capped, 16));
	assert_true(str_is_null(jid_to_str(capped, &j, false)));
	arena_destroy(&capped);

	/* jid_to_text: the same strings, in the caller's buffer */
	char buf[JID_TEXT_MAX];
	s = jid_to_text(&j, false, buf);
	assert_ptr_equal(s.p, buf);
	assert_string_equal(buf, "example.com/R");
	assert_int_equal(s.len, 13);
	assert_string_equal(jid_to_text(&j, true, buf).p, "example.com");
	assert_int_equal(jid_parse(arena, STR_LIT("User@Example.com/Res"), &j,
				   &err), 0);
	assert_string_equal(jid_to_text(&j, true, buf).p, "user@example.com");
	/* the longest JID jid_parse takes fits */
	char *in = arena_alloc(arena, 1023 * 3 + 3);
	memset(in, 'n', 1023);
	in[1023] = '@';
	for (int i = 0; i < 1023; i += 2) /* labels of one letter */
		in[1024 + i] = 'd', in[1024 + i + 1] = '.';
	in[1024 + 1022] = 'd';
	in[2047] = '/';
	memset(in + 2048, 'r', 1023);
	in[3071] = '\0';
	assert_int_equal(jid_parse(arena, str_c(in), &j, &err), 0);
	s = jid_to_text(&j, false, buf);
	assert_int_equal(s.len, 3071);
	assert_string_equal(buf, in);
}

static struct jid parse(const char *in)
{
	struct jid j;
	const char *err;
	if (jid_parse(arena, str_c(in), &j, &err) != 0)
		fail_msg("\"%s\" refused: %s", in, err);
	return j;
}

static void test_eq(void **state)
{
	(void)state;
	struct jid a = parse("User@Example.com/Res");
	struct jid b = parse("user@EXAMPLE.COM./Res");
	struct jid c = parse("user@example.com/res");
	struct jid d = parse("user@example.com");
	struct jid e = parse("other@example.com/Res");
	struct jid f = parse("example.com/Res");
	struct jid g = parse("user@example.org/Res");
	assert_true(jid_eq(&a, &b));
	assert_true(jid_bare_eq(&a, &b));
	assert_false(jid_eq(&a, &c));
	assert_true(jid_bare_eq(&a, &c));
	assert_false(jid_eq(&a, &d));
	assert_true(jid_bare_eq(&a, &d));
	assert_false(jid_eq(&a, &e));
	assert_false(jid_bare_eq(&a, &e));
	assert_false(jid_bare_eq(&a, &f));
	assert_false(jid_bare_eq(&a, &g));
	assert_true(jid_eq(&d, &d));
	struct jid h = parse("\xef\xbc\xb5\xef\xbc\xb3\xef\xbc\xa5\xef\xbc\xb2"
			     "@example.com");
	assert_true(jid_eq(&h, &d));
}

static void test_arena_cap(void **state)
{
	(void)state;
	struct arena *capped = arena_new(16);
	struct jid j;
	const char *err = NULL;
	assert_int_equal(jid_parse(capped, STR_LIT("user@example.com/res"), &j,
				   &err), -1);
	assert_non_null(strstr(err, "arena cap"));
	arena_destroy(&capped);
}

/* Compares the fast path with libidn on one input for every entry point.
 * Returns 1 if the input was accepted. */
static int compare_paths(const char *in, size_t len)
{
	static prep_fn *const fns[] = {
		jid_nodeprep, jid_nameprep, jid_resourceprep,
	};
	int accepted = 0;
	for (size_t k = 0; k < 3; k++) {
		struct str o1, o2;
		const char *e;
		jid_fast_path = true;
		int r1 = fns[k](arena, STR(in, len), &o1, &e);
		jid_fast_path = false;
		int r2 = fns[k](arena, STR(in, len), &o2, &e);
		jid_fast_path = true;
		if (r1 != r2 || (r1 == 0 && !str_eq(o1, o2)))
			fail_msg("prep %zu differs on \"%.*s\": %d \"%s\" / "
				 "%d \"%s\"", k, (int)len, in, r1,
				 r1 ? "" : o1.p, r2, r2 ? "" : o2.p);
		accepted |= r1 == 0;
	}
	struct jid j1, j2;
	const char *e;
	jid_fast_path = true;
	int r1 = jid_parse(arena, STR(in, len), &j1, &e);
	jid_fast_path = false;
	int r2 = jid_parse(arena, STR(in, len), &j2, &e);
	jid_fast_path = true;
	if (r1 != r2 || (r1 == 0 && !jid_eq(&j1, &j2)))
		fail_msg("jid_parse differs on \"%.*s\"", (int)len, in);
	return accepted | (r1 == 0) << 1;
}

/* Every ASCII string of one and two bytes (NUL excluded: it is refused
 * before either path, see test_embedded_nul). */
static void test_fast_path_exhaustive(void **state)
{
	(void)state;
	int seen = 0;
	char in[2];
	for (int c = 1; c < 0x80; c++) {
		in[0] = (char)c;
		seen |= compare_paths(in, 1);
		for (int d = 1; d < 0x80; d++) {
			in[1] = (char)d;
			seen |= compare_paths(in, 2);
		}
		/* the arena only grows: start afresh now and then */
		arena_destroy(&arena);
		arena = arena_new(0);
	}
	assert_int_equal(seen, 3);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* Random ASCII strings biased towards separators and the characters the
 * profiles treat specially, at lengths around the label and part limits. */
static void test_fast_path_random(void **state)
{
	(void)state;
	static const char special[] = "..--@@//[]::  \"&'<>_AZaz09\x01\x1f\x7f";
	static const size_t lens[] = { 8, 24, 70, 200, 1030 };
	char in[1100];
	int accepted = 0, refused = 0;
	for (int n = 0; n < 30000; n++) {
		size_t len = 1 + rng() % lens[rng() % 5];
		unsigned pick = rng() % 4;
		for (size_t i = 0; i < len; i++) {
			uint32_t r = rng();
			if (pick == 0 || r % 3 == 0)
				in[i] = special[r % (sizeof(special) - 1)];
			else if (r % 3 == 1)
				in[i] = (char)(1 + r % 0x7f);
			else
				in[i] = "abcXYZ019"[r % 9];
		}
		int r = compare_paths(in, len);
		accepted += (r & 2) != 0;
		refused += (r & 2) == 0;
		if (n % 500 == 0) {
			arena_destroy(&arena);
			arena = arena_new(0);
		}
	}
	/* make sure both outcomes were explored */
	assert_true(accepted > 1000);
	assert_true(refused > 1000);
}

/* Normalisation is idempotent: parse(format(parse(x))) == parse(x). */
static void test_idempotent(void **state)
{
	(void)state;
	const char *in[] = {
		"User@Example.COM/Res",
		"\xce\xa8@\xc3\x84.example./\xce\xa8",
		"\xef\xac\x81@\xe4\xbe\x8b\xe3\x80\x82jp/\xef\xbc\xb2",
		"Stra\xc3\x9f" "e@[::FFFF:1.2.3.4]/a@b/c",
		"\xc5\x89\xc2\xad@x/ y ",
	};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		for (int fast = 0; fast < 2; fast++) {
			jid_fast_path = fast;
			struct jid a = parse(in[i]);
			for (int bare = 0; bare < 2; bare++) {
				struct str s = jid_to_str(arena, &a, bare);
				struct jid b = parse(s.p);
				assert_true(bare ? jid_bare_eq(&a, &b) &&
						   jid_is_bare(&b)
						 : jid_eq(&a, &b));
			}
		}
	}
	jid_fast_path = true;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_case_folding, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_trailing_dot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unicode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prohibited_node, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prohibited_resource, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_domains, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_parts, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_part_limits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits_after_prep, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_invalid_utf8, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_embedded_nul, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_formatting, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arena_cap, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fast_path_exhaustive,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fast_path_random, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_idempotent, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
