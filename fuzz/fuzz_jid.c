/*
 * fuzz_jid.c - libFuzzer target for jid_parse() and the single-part
 * preparation functions (src/xmpp/jid.c).
 *
 * Besides memory errors it aborts on two logic errors: the ASCII fast path
 * disagreeing with libidn (jid_fast_path off), and a normalised JID that is
 * not a fixed point: parse(format(parse(x))) must equal parse(x).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "xmpp/jid.h"

extern bool jid_fast_path;

typedef int prep_fn(struct arena *, struct str, struct str *,
		    const char **);

static _Noreturn void mismatch(const char *what, struct str in)
{
	fprintf(stderr, "fuzz_jid: %s on \"%.*s\"\n", what, STR_FMT(in));
	abort();
}

/* Runs f on in with the fast path on and off; both must agree. */
static int prep_both(prep_fn *f, struct arena *a, struct str in,
		     struct str *out_r)
{
	struct str slow;
	const char *err;
	jid_fast_path = false;
	int r2 = f(a, in, &slow, &err);
	jid_fast_path = true;
	int r1 = f(a, in, out_r, &err);
	if (r1 != r2 || (r1 == 0 && !str_eq(*out_r, slow)))
		mismatch("fast path differs from libidn (prep)", in);
	return r1;
}

static void check_prep(prep_fn *f, struct arena *a, struct str in)
{
	struct str once, twice;
	if (prep_both(f, a, in, &once) < 0)
		return;
	if (prep_both(f, a, once, &twice) < 0 || !str_eq(once, twice))
		mismatch("preparation is not idempotent", in);
}

static int parse_both(struct arena *a, struct str in, struct jid *j)
{
	struct jid slow;
	const char *err;
	jid_fast_path = false;
	int r2 = jid_parse(a, in, &slow, &err);
	jid_fast_path = true;
	int r1 = jid_parse(a, in, j, &err);
	if (r1 != r2 || (r1 == 0 && !jid_eq(j, &slow)))
		mismatch("fast path differs from libidn (jid_parse)", in);
	return r1;
}

FUZZ_TARGET(jid)
{
	struct str in = STR(data, size);
	struct jid j, again;

	check_prep(jid_nodeprep, fuzz_arena, in);
	check_prep(jid_nameprep, fuzz_arena, in);
	check_prep(jid_resourceprep, fuzz_arena, in);
	if (parse_both(fuzz_arena, in, &j) < 0)
		return;
	struct str full = jid_to_str(fuzz_arena, &j, false);
	if (parse_both(fuzz_arena, full, &again) < 0 || !jid_eq(&j, &again))
		mismatch("full JID is not a fixed point", in);
	struct str bare = jid_to_str(fuzz_arena, &j, true);
	if (parse_both(fuzz_arena, bare, &again) < 0 ||
	    !jid_bare_eq(&j, &again) || !jid_is_bare(&again))
		mismatch("bare JID is not a fixed point", in);
	struct buf b = { 0 };
	if (jid_to_buf(&b, &j, false) < 0 || !str_eq(buf_str(&b), full))
		mismatch("jid_to_buf differs from jid_to_str", in);
	buf_reset(&b);
}
