/*
 * fuzz_xml_stream.c - libFuzzer target for the streaming XML parser and the
 * serializer (src/xml/).
 *
 * The first three bytes choose two split points and the pausing mode; the
 * rest is a stream fed in up to three pieces to a parser with small limits.
 * Besides memory errors it aborts on logic errors:
 *  - a stanza whose serialization does not parse back to a stanza that
 *    serializes to the same text (the round trip of stanza.h);
 *  - events that depend on how the input was split or paused: the split
 *    run must see the same events as one whole feed (up to the point where
 *    either run stops at an error or with bytes expat still holds);
 *  - a pause that consumes more than it was given or leaves a partial
 *    stanza behind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "xml/parser.h"
#include "xmpp/ns.h"

enum {
	F_PAUSE_STANZA = 1, /* pause after every other stanza */
	F_PAUSE_OPEN = 2,
	F_PAUSE_CLOSE = 4,
	F_RESET = 8, /* reset the stream on a pause (else feed on) */
};

static const struct xml_limits fuzz_limits = {
	.max_stanza = 1024,
	.max_depth = 8,
	.max_attrs = 8,
};

/* Serializations can be up to 6 times their input (escaping). */
static const struct xml_limits reparse_limits = {
	.max_stanza = 64 * 1024,
	.max_depth = 16,
	.max_attrs = 16,
};

struct run {
	unsigned flags;
	unsigned nstanza;
	struct buf log; /* the events, for comparing runs */
	struct buf dns; /* default namespace of the current stream */
};

static _Noreturn void fuzz_fail(const char *what, struct str s)
{
	fprintf(stderr, "fuzz_xml_stream: %s: \"%.*s\"\n", what, STR_FMT(s));
	abort();
}

struct one {
	struct buf ser;
	int stanzas;
};

static enum xml_cb_ret one_open(void *ud, const struct xml_elem *hdr,
				struct str dns, struct str prefix)
{
	(void)ud, (void)hdr, (void)dns, (void)prefix;
	return XML_CONTINUE;
}

static enum xml_cb_ret one_stanza(void *ud, struct xml_elem *e,
				  struct arena *a)
{
	struct one *o = ud;
	if (o->stanzas++ == 0 && xml_serialize(&o->ser, e, STR_NULL) < 0)
		abort();
	arena_destroy(&a);
	return XML_CONTINUE;
}

static enum xml_cb_ret one_close(void *ud)
{
	(void)ud;
	return XML_CONTINUE;
}

static const struct xml_stream_cbs one_cbs = { one_open, one_stanza,
					       one_close };

/* Parses ser (written with dns in scope) in a fresh stream and checks that
 * it gives exactly one stanza serializing to the same text. The second
 * serialization is done with no namespace in scope, as is the reference. */
static void check_round_trip(const struct xml_elem *e, struct str dns,
			     struct str ser)
{
	struct buf in = { 0 }, ref = { 0 };
	buf_append_c(&in, "<s:s xmlns:s='" NS_STREAMS "' xmlns='");
	xml_escape(&in, dns, true);
	buf_append_c(&in, "'>");
	buf_append_str(&in, ser);
	struct one o = { 0 };
	struct xml_stream *xs = xml_stream_new(&reparse_limits, &one_cbs, &o);
	enum stream_err err;
	const char *text;
	if (xml_stream_feed(xs, in.data, in.len, NULL, &err, &text) != 0)
		fuzz_fail("serialization does not parse", ser);
	if (o.stanzas != 1 || !xml_stream_idle(xs))
		fuzz_fail("serialization is not one element", ser);
	if (xml_serialize(&ref, e, STR_NULL) < 0)
		abort();
	if (!str_eq(buf_str(&ref), buf_str(&o.ser)))
		fuzz_fail("round trip changed the stanza", ser);
	xml_stream_free(xs);
	buf_reset(&in);
	buf_reset(&ref);
	buf_reset(&o.ser);
}

static enum xml_cb_ret run_open(void *ud, const struct xml_elem *hdr,
				struct str dns, struct str prefix)
{
	struct run *r = ud;
	r->dns.len = 0;
	buf_append_str(&r->dns, dns);
	buf_append_c(&r->log, "O ");
	buf_append_str(&r->log, prefix);
	if (xml_serialize(&r->log, hdr, dns) < 0)
		abort();
	buf_append_c(&r->log, "\n");
	return r->flags & F_PAUSE_OPEN ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret run_stanza(void *ud, struct xml_elem *e,
				  struct arena *a)
{
	struct run *r = ud;
	size_t start = r->log.len + 2;
	buf_append_c(&r->log, "S ");
	if (xml_serialize(&r->log, e, buf_str(&r->dns)) < 0)
		abort();
	check_round_trip(e, buf_str(&r->dns),
			 STR(r->log.data + start, r->log.len - start));
	buf_append_c(&r->log, "\n");
	arena_destroy(&a);
	bool pause = (r->flags & F_PAUSE_STANZA) && r->nstanza++ % 2 == 0;
	return pause ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret run_close(void *ud)
{
	struct run *r = ud;
	buf_append_c(&r->log, "C\n");
	return r->flags & F_PAUSE_CLOSE ? XML_PAUSE : XML_CONTINUE;
}

static const struct xml_stream_cbs run_cbs = { run_open, run_stanza,
					       run_close };

/* Feeds one piece, feeding the rest again after each pause. Returns false
 * once the stream is broken. */
static bool feed_piece(struct xml_stream *xs, struct run *r,
		       const uint8_t *p, size_t len)
{
	while (len > 0) {
		size_t done = 0;
		enum stream_err err;
		const char *text;
		int rc = xml_stream_feed(xs, (const char *)p, len, &done, &err,
					 &text);
		if (rc < 0) {
			if (err == STREAM_ERR_NONE || text == NULL)
				abort();
			return false;
		}
		if (rc == 0) {
			if (done != len)
				abort();
			return true;
		}
		/* paused: at a stanza boundary, after the '>' of the event,
		 * which was in this piece */
		if (done == 0 || done > len || !xml_stream_idle(xs))
			abort();
		if (r->flags & F_RESET)
			xml_stream_reset(xs);
		p += done;
		len -= done;
	}
	return true;
}

/* Runs data through a stream cut at cut[0..n-1]; returns whether it ended
 * with no error, and with *idle_r whether expat held no bytes at the end. */
static bool run_stream(struct run *r, const uint8_t *data, size_t size,
		       const size_t *cut, size_t n, bool *idle_r)
{
	struct xml_stream *xs = xml_stream_new(&fuzz_limits, &run_cbs, r);
	size_t from = 0;
	bool ok = true;
	for (size_t i = 0; i <= n && ok; i++) {
		size_t to = i < n ? cut[i] : size;
		ok = feed_piece(xs, r, data + from, to - from);
		from = to;
	}
	*idle_r = ok && xml_stream_idle(xs);
	xml_stream_free(xs);
	return ok;
}

static bool is_prefix(struct str a, struct str b)
{
	return a.len <= b.len && memcmp(a.p, b.p, a.len) == 0;
}

/* Events may only differ in where a run stopped: one log must be a prefix
 * of the other, and the shorter run must have stopped at an error or with
 * a partial token expat deferred. */
static void compare_runs(const struct run *whole, bool whole_ok,
			 bool whole_idle, const struct run *split,
			 bool split_ok, bool split_idle)
{
	struct str w = buf_str(&whole->log), s = buf_str(&split->log);
	if (str_eq(w, s))
		return;
	if (is_prefix(w, s) && (!whole_ok || !whole_idle))
		return;
	if (is_prefix(s, w) && (!split_ok || !split_idle))
		return;
	fprintf(stderr, "whole:\n%.*s\nsplit:\n%.*s\n", STR_FMT(w),
		STR_FMT(s));
	abort();
}

FUZZ_TARGET(xml_stream)
{
	(void)fuzz_arena;
	if (size < 3)
		return;
	unsigned c1 = data[0], c2 = data[1], flags = data[2] & 15;
	data += 3;
	size -= 3;
	size_t cut[2] = { size * c1 / 255, size * c2 / 255 };
	if (cut[0] > cut[1]) {
		size_t t = cut[0];
		cut[0] = cut[1];
		cut[1] = t;
	}
	struct run whole = { 0 }, split = { .flags = flags };
	bool whole_idle, split_idle;
	bool whole_ok = run_stream(&whole, data, size, NULL, 0, &whole_idle);
	bool split_ok = run_stream(&split, data, size, cut, 2, &split_idle);
	/* after a reset the rest is another stream: nothing to compare */
	if (!(flags & F_RESET))
		compare_runs(&whole, whole_ok, whole_idle, &split, split_ok,
			     split_idle);
	buf_reset(&whole.log);
	buf_reset(&whole.dns);
	buf_reset(&split.log);
	buf_reset(&split.dns);
}
