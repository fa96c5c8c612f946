/*
 * fuzz_ctlproto.c - libFuzzer target for the control socket's request
 * parser (src/admin/ctlproto.c).
 *
 * The input is split into lines as the server splits its input. Besides
 * memory errors it aborts when an accepted request breaks what the server
 * relies on: a known verb, arguments inside the line, non-empty, without
 * spaces or control bytes, and parsing the words joined again gives the
 * same request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/ctlproto.h"
#include "core/buf.h"
#include "fuzz.h"

static _Noreturn void fail(const char *what, struct str line)
{
	fprintf(stderr, "fuzz_ctlproto: %s on \"%.*s\"\n", what,
		STR_FMT(line));
	abort();
}

static void check_words(const struct ctl_req *req, struct str line)
{
	for (size_t i = 0; i < req->nargs; i++) {
		struct str a = req->args[i];
		if (a.len == 0 || a.p < line.p ||
		    a.p + a.len > line.p + line.len)
			fail("argument outside the line", line);
		for (size_t j = 0; j < a.len; j++)
			if ((unsigned char)a.p[j] <= 0x20 || a.p[j] == 0x7f)
				fail("separator or control byte in argument",
				     line);
	}
}

static void check_line(struct str line)
{
	struct ctl_req req, again;
	const char *why;
	if (ctl_req_parse(line, &req, &why) < 0) {
		if (why == NULL || why[0] == '\0')
			fail("refused without a reason", line);
		return;
	}
	if (req.verb >= CTL_VERB_COUNT || req.nargs > CTL_ARGS_MAX)
		fail("bad verb or argument count", line);
	check_words(&req, line);
	struct buf b = { 0 };
	buf_append_c(&b, ctl_verb_name(req.verb));
	for (size_t i = 0; i < req.nargs; i++) {
		buf_append_c(&b, " ");
		buf_append_str(&b, req.args[i]);
	}
	if (ctl_req_parse(buf_str(&b), &again, &why) < 0 ||
	    again.verb != req.verb || again.nargs != req.nargs)
		fail("the normalised request parses differently", line);
	for (size_t i = 0; i < req.nargs; i++)
		if (!str_eq(again.args[i], req.args[i]))
			fail("arguments differ after normalising", line);
	buf_reset(&b);
}

FUZZ_TARGET(ctlproto)
{
	(void)fuzz_arena;
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n = lf ? (size_t)(lf - p) : (size_t)(end - p);
		check_line(STR(p, n));
		p += n + (lf != NULL);
	}
}
