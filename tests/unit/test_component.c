/*
 * test_component.c - XEP-0114 components (src/stream/component.c) without
 * a socket: the handshake digest against an independent SHA-1 (Python's
 * hashlib), its comparison, and the stream driven through
 * struct component_stream_ops: header, handshake, conflict, the checks on
 * what a component sends and the namespace it is routed in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/bug.h"
#include "core/conf.h"
#include "router/route.h"
#include "stream/component.h"
#include "xmpp/ns.h"

/* hashlib.sha1(b'3BF96D32sesame').hexdigest() */
#define SESAME "7a98dc4c9e92493d7fd66a25364c862637789c45"

static void test_digest(void **state)
{
	(void)state;
	char d[COMPONENT_DIGEST_LEN + 1];
	component_digest("3BF96D32", "sesame", d);
	assert_string_equal(d, SESAME);
	/* hashlib.sha1(b'').hexdigest() */
	component_digest("", "", d);
	assert_string_equal(d, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	/* non-ASCII secrets are hashed as their UTF-8 bytes:
	 * hashlib.sha1('abcgéhéim'.encode()).hexdigest() */
	component_digest("abc", "g\xc3\xa9h\xc3\xa9im", d);
	assert_string_equal(d, "06ab4d085a4d8cc42208dd7cad2994adfa93dc72");
}

static void test_handshake_ok(void **state)
{
	(void)state;
	assert_true(component_handshake_ok("3BF96D32", "sesame",
					   str_c(SESAME)));
	char upper[] = SESAME;
	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_true(component_handshake_ok("3BF96D32", "sesame",
					   str_c(upper)));
	assert_false(component_handshake_ok("3BF96D32", "sesam",
					    str_c(SESAME)));
	assert_false(component_handshake_ok("3BF96D33", "sesame",
					    str_c(SESAME)));
	char wrong[] = SESAME;
	wrong[39] = '4';
	assert_false(component_handshake_ok("3BF96D32", "sesame",
					    str_c(wrong)));
	assert_false(component_handshake_ok("3BF96D32", "sesame",
					    STR(SESAME, 39)));
	assert_false(component_handshake_ok("3BF96D32", "sesame",
					    str_c(SESAME "5")));
	assert_false(component_handshake_ok("3BF96D32", "sesame",
					    str_c("")));
	assert_false(component_handshake_ok("3BF96D32", "sesame",
					    str_c(" " SESAME)));
}

/* ---- the stream through fake ops ---- */

struct fake {
	struct buf out;
	struct buf scratch;
	int closed;
	enum stream_err err;
	int attached;
	int attach_result;
	size_t idx;
	struct stanza *st[4];
	size_t nst;
};

static int fake_write(void *ud, const char *p, size_t len)
{
	struct fake *f = ud;
	assert_int_equal(f->closed, 0); /* nothing after the end */
	return buf_append(&f->out, p, len);
}

static void fake_close(void *ud, enum stream_err err, const char *text)
{
	(void)text;
	struct fake *f = ud;
	f->closed++;
	f->err = err;
}

static int fake_attach(void *ud, size_t idx)
{
	struct fake *f = ud;
	f->attached++;
	f->idx = idx;
	return f->attach_result;
}

static void fake_stanza(void *ud, struct stanza *st)
{
	struct fake *f = ud;
	assert_true(f->nst < 4);
	f->st[f->nst++] = st;
}

static const struct component_stream_ops fake_ops = {
	fake_write, fake_close, fake_attach, fake_stanza,
};

static const struct xml_limits limits = { 4096, 16, 16 };

static struct config *conf;

static int setup(void **state)
{
	(void)state;
	static const char yaml[] =
		"hosts: [localhost]\n"
		"listeners: [{ type: component, address: 127.0.0.1, "
		"port: 5347 }]\n"
		"components:\n"
		"  - { domain: a.example, secret: first }\n"
		"  - { domain: gw.example, secret: sesame }\n";
	char *err = NULL;
	if (conf_load_string("t.yml", yaml, strlen(yaml), &conf, &err) < 0)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	conf_free(conf);
	return 0;
}

#define HEADER(to)                                                   \
	"<stream:stream xmlns='jabber:component:accept' xmlns:stream='" \
	NS_STREAMS "' to='" to "'>"

static struct component_stream *start(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	return component_stream_new(conf, &limits, &fake_ops, f, "3BF96D32",
				    &f->scratch);
}

static void feed(struct component_stream *cs, const char *s)
{
	component_stream_feed(cs, s, strlen(s));
}

static void finish(struct component_stream *cs, struct fake *f)
{
	component_stream_free(cs);
	for (size_t i = 0; i < f->nst; i++)
		stanza_free(&f->st[i]);
	buf_reset(&f->out);
	buf_reset(&f->scratch);
}

static bool out_has(struct fake *f, const char *s)
{
	buf_append(&f->out, "", 1);
	f->out.len--;
	return strstr(f->out.data, s) != NULL;
}

static void test_stream_handshake(void **state)
{
	(void)state;
	struct fake f;
	struct component_stream *cs = start(&f);
	feed(cs, HEADER("GW.example"));
	assert_int_equal(component_stream_index(cs), 1);
	assert_true(out_has(&f, "xmlns='jabber:component:accept'"));
	assert_true(out_has(&f, "from='gw.example' id='3BF96D32'>"));
	assert_false(component_stream_authed(cs));
	feed(cs, "<handshake>" SESAME "</handshake>");
	assert_int_equal(f.attached, 1);
	assert_int_equal(f.idx, 1);
	assert_true(component_stream_authed(cs));
	assert_true(out_has(&f, "<handshake/>"));
	assert_int_equal(f.closed, 0);

	/* a stanza from an address in the domain goes on, in jabber:client,
	 * with the address normalised */
	feed(cs, "<message from='U@GW.example/R' to='bob@localhost' "
		 "type='chat'><body>hi</body></message>");
	assert_int_equal(f.nst, 1);
	struct stanza *st = f.st[0];
	assert_int_equal(st->kind, STANZA_MESSAGE);
	assert_true(str_eq_c(st->x->ns, NS_CLIENT));
	assert_true(str_eq_c(xml_first_child_elem(st->x)->ns, NS_CLIENT));
	assert_true(str_eq_c(st->from.domain, "gw.example"));
	assert_true(str_eq_c(st->from.node, "u"));
	assert_true(str_eq_c(xml_attr_get(st->x, "from"), "u@gw.example/R"));
	assert_true(str_eq_c(st->to.node, "bob"));

	/* what is routed to it is written unprefixed: its default namespace */
	f.out.len = 0;
	component_stream_send(cs, st->x);
	assert_true(out_has(&f, "<message from='u@gw.example/R' "));
	assert_false(out_has(&f, "xmlns"));

	/* the stream ends when the component ends it */
	feed(cs, "</stream:stream>");
	assert_int_equal(f.closed, 1);
	assert_int_equal(f.err, STREAM_ERR_NONE);
	assert_true(out_has(&f, "</stream:stream>"));
	finish(cs, &f);
}

/* Runs a stream through the handshake, then input; expects err. */
static void expect_error(const char *to, bool handshake, int attach_result,
			 const char *input, enum stream_err err)
{
	struct fake f;
	struct component_stream *cs = start(&f);
	f.attach_result = attach_result;
	char header[256];
	snprintf(header, sizeof(header), HEADER("%s"), to);
	feed(cs, header);
	if (handshake)
		feed(cs, "<handshake>" SESAME "</handshake>");
	feed(cs, input);
	if (f.closed != 1 || f.err != err)
		fail_msg("%s: closed %d with %s, wanted %s", input, f.closed,
			 stream_err_name(f.err), stream_err_name(err));
	char cond[64];
	snprintf(cond, sizeof(cond), "<%s xmlns=", stream_err_name(err));
	assert_true(out_has(&f, cond));
	assert_true(out_has(&f, "</stream:error></stream:stream>"));
	assert_int_equal(f.nst, 0);
	/* more input changes nothing */
	feed(cs, "<message/>");
	assert_int_equal(f.closed, 1);
	finish(cs, &f);
}

static void test_stream_errors(void **state)
{
	(void)state;
	expect_error("nope.example", false, 0, "", STREAM_ERR_HOST_UNKNOWN);
	expect_error("localhost", false, 0, "", STREAM_ERR_HOST_UNKNOWN);
	expect_error("gw.example", false, 0,
		     "<handshake>" "7a98dc4c9e92493d7fd66a25364c862637789c46"
		     "</handshake>", STREAM_ERR_NOT_AUTHORIZED);
	expect_error("a.example", false, 0, "<handshake>" SESAME
		     "</handshake>", STREAM_ERR_NOT_AUTHORIZED);
	expect_error("gw.example", false, 0, "<message/>",
		     STREAM_ERR_NOT_AUTHORIZED);
	/* the domain is connected already */
	expect_error("gw.example", false, -1, "<handshake>" SESAME
		     "</handshake>", STREAM_ERR_CONFLICT);
	static const char *const forged[] = {
		"localhost", "a.example", "x.gw.example", "u@a.example",
		"gw.example.org", "@gw.example",
	};
	for (size_t i = 0; i < ARRAY_SIZE(forged); i++) {
		char m[128];
		snprintf(m, sizeof(m), "<message from='%s' to='b@localhost'/>",
			 forged[i]);
		expect_error("gw.example", true, 0, m, STREAM_ERR_INVALID_FROM);
	}
	expect_error("gw.example", true, 0, "<message to='b@localhost'/>",
		     STREAM_ERR_IMPROPER_ADDRESSING);
	expect_error("gw.example", true, 0, "<presence from='gw.example'/>",
		     STREAM_ERR_IMPROPER_ADDRESSING);
	expect_error("gw.example", true, 0,
		     "<message xmlns='jabber:client' from='gw.example' "
		     "to='b@localhost'/>", STREAM_ERR_INVALID_NAMESPACE);
	expect_error("gw.example", true, 0, "<handshake/>",
		     STREAM_ERR_UNSUPPORTED_STANZA_TYPE);
	expect_error("gw.example", true, 0, "<message></iq>",
		     STREAM_ERR_NOT_WELL_FORMED);
}

static void test_stanza_errors_answered(void **state)
{
	(void)state;
	struct fake f;
	struct component_stream *cs = start(&f);
	feed(cs, HEADER("gw.example") "<handshake>" SESAME "</handshake>");
	f.out.len = 0;
	/* an iq get without a child: bad-request, back to the component */
	feed(cs, "<iq type='get' id='i1' from='gw.example' to='localhost'/>");
	assert_true(out_has(&f, "<iq type='error' id='i1' from='localhost' "
				"to='gw.example'>"));
	assert_true(out_has(&f, "<bad-request xmlns="));
	f.out.len = 0;
	feed(cs, "<message id='m1' from='gw.example' to='a@b@c'/>");
	assert_true(out_has(&f, "<jid-malformed xmlns="));
	/* an error is never answered */
	f.out.len = 0;
	feed(cs, "<message type='error' from='gw.example' to='a@b@c'/>");
	assert_int_equal(f.out.len, 0);
	assert_int_equal(f.nst, 0);
	assert_int_equal(f.closed, 0);
	finish(cs, &f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_handshake_ok),
		cmocka_unit_test(test_stream_handshake),
		cmocka_unit_test(test_stream_errors),
		cmocka_unit_test(test_stanza_errors_answered),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
