/*
 * test_xml.c - unit tests for the streaming XML parser, the element tree API
 * and the serializer (src/xml/).
 *
 * Realistic streams are fed whole, a byte at a time and in random splits
 * (fixed seeds) and must give identical event logs, which are also checked
 * against hand-written expectations. Every stanza is serialized, parsed
 * again and compared node by node (round trip). Each error class asserts
 * its exact stream error; limits are tried at the limit and one past it.
 * After every feed a stream at a stanza boundary must hold no expat parser
 * (parked), so all of the above also runs across park and resume: with
 * the parser taken back from the thread's, and (half the split runs) with
 * a new one primed after every feed. Streams sharing the thread's parsers
 * are tested with interleaved feeds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/bug.h"
#include "core/xmalloc.h"
#include "xml/dataform.h"
#include "xml/parser.h"
#include "xml/stanza.h"
#include "xmpp/errors.h"
#include "xmpp/ns.h"

#define HDR_BARE                                                        \
	"<stream:stream to='example.com' xmlns='jabber:client' "         \
	"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
#define HDR "<?xml version='1.0'?>" HDR_BARE
#define HDR_LOG                                                          \
	"OPEN {http://etherx.jabber.org/streams}stream prefix=stream "   \
	"dns=jabber:client to=example.com version=1.0\n"

static const struct xml_limits test_limits = {
	.max_stanza = 1000,
	.max_depth = 5,
	.max_attrs = 4,
};

/* ---- helpers: comparison, round trip -------------------------------- */

static bool xml_equal(const struct xml_elem *a, const struct xml_elem *b);

static bool attrs_equal(const struct xml_attr *a, const struct xml_attr *b)
{
	for (; a && b; a = a->next, b = b->next)
		if (!str_eq(a->ns, b->ns) || !str_eq(a->name, b->name) ||
		    !str_eq(a->value, b->value))
			return false;
	return a == NULL && b == NULL;
}

static bool nodes_equal(const struct xml_node *a, const struct xml_node *b)
{
	if (a->type != b->type)
		return false;
	if (a->type == XML_NODE_TEXT)
		return str_eq(((const struct xml_text *)a)->text,
			      ((const struct xml_text *)b)->text);
	return xml_equal((const struct xml_elem *)a,
			 (const struct xml_elem *)b);
}

static bool xml_equal(const struct xml_elem *a, const struct xml_elem *b)
{
	if (!str_eq(a->ns, b->ns) || !str_eq(a->name, b->name) ||
	    !attrs_equal(a->attrs, b->attrs))
		return false;
	const struct xml_node *x = a->children, *y = b->children;
	for (; x && y; x = x->next, y = y->next)
		if (!nodes_equal(x, y) || x->parent != a || y->parent != b)
			return false;
	return x == NULL && y == NULL;
}

struct grab {
	struct xml_elem *e;
	struct arena *a;
	int stanzas;
};

static enum xml_cb_ret grab_open(void *ud, const struct xml_elem *hdr,
				 struct str dns, struct str prefix)
{
	(void)ud, (void)hdr, (void)dns, (void)prefix;
	return XML_CONTINUE;
}

static enum xml_cb_ret grab_stanza(void *ud, struct xml_elem *e,
				   struct arena *a)
{
	struct grab *g = ud;
	g->stanzas++;
	if (g->e == NULL) {
		g->e = e;
		g->a = a;
	} else {
		arena_destroy(&a);
	}
	return XML_CONTINUE;
}

static enum xml_cb_ret grab_close(void *ud)
{
	(void)ud;
	return XML_CONTINUE;
}

static const struct xml_stream_cbs grab_cbs = {
	grab_open, grab_stanza, grab_close,
};

/* Parses one element written in a stream whose default namespace is dns.
 * Returns its tree (caller destroys *a_r), or NULL on error. */
static struct xml_elem *parse_one(struct str xml, struct str dns,
				  struct arena **a_r)
{
	static const struct xml_limits big = { 1 << 20, 100, 100 };
	struct grab g = { 0 };
	struct xml_stream *xs = xml_stream_new(&big, &grab_cbs, &g);
	struct buf in = { 0 };
	buf_append_c(&in, "<stream:stream xmlns:stream='" NS_STREAMS
			  "' xmlns='");
	xml_escape(&in, dns, true);
	buf_append_c(&in, "'>");
	buf_append_str(&in, xml);
	enum stream_err err;
	const char *text;
	int rc = xml_stream_feed(xs, in.data, in.len, NULL, &err, &text);
	xml_stream_free(xs);
	buf_reset(&in);
	if (rc != 0 || g.stanzas != 1) {
		arena_destroy(&g.a);
		return NULL;
	}
	*a_r = g.a;
	return g.e;
}

/* Serializes e, parses it back, checks the trees are equal and that the
 * second serialization is the same text. Appends the text to out. */
static void round_trip(const struct xml_elem *e, struct str dns,
		       struct buf *out)
{
	struct buf s1 = { 0 }, s2 = { 0 };
	assert_int_equal(xml_serialize(&s1, e, dns), 0);
	struct arena *a = NULL;
	struct xml_elem *back = parse_one(buf_str(&s1), dns, &a);
	if (back == NULL)
		fail_msg("serialization does not parse: %.*s",
			 STR_FMT(buf_str(&s1)));
	assert_true(xml_equal(e, back));
	assert_int_equal(xml_serialize(&s2, back, dns), 0);
	assert_true(str_eq(buf_str(&s1), buf_str(&s2)));
	if (out)
		buf_append_str(out, buf_str(&s1));
	arena_destroy(&a);
	buf_reset(&s1);
	buf_reset(&s2);
}

/* ---- the event recorder --------------------------------------------- */

struct rec {
	struct buf log;
	struct buf dns;
	bool pause_stanzas;	/* pause after every stanza */
	bool pause_open, pause_close;
	const char *pause_name; /* pause after stanzas with this name */
	bool keep;		/* keep trees instead of destroying them */
	struct arena *kept_a[16];
	struct xml_elem *kept[16];
	int nkept;
	int opens, stanzas, closes;
};

static void log_attrs(struct buf *b, const struct xml_attr *at)
{
	for (; at; at = at->next) {
		buf_append_c(b, " ");
		if (at->ns.len)
			buf_printf(b, "{%.*s}", STR_FMT(at->ns));
		buf_printf(b, "%.*s=%.*s", STR_FMT(at->name),
			   STR_FMT(at->value));
	}
}

static enum xml_cb_ret rec_open(void *ud, const struct xml_elem *hdr,
				struct str dns, struct str prefix)
{
	struct rec *r = ud;
	r->opens++;
	r->dns.len = 0;
	buf_append_str(&r->dns, dns);
	buf_printf(&r->log, "OPEN {%.*s}%.*s prefix=%.*s dns=%.*s",
		   STR_FMT(hdr->ns), STR_FMT(hdr->name), STR_FMT(prefix),
		   STR_FMT(dns));
	log_attrs(&r->log, hdr->attrs);
	buf_append_c(&r->log, "\n");
	assert_null(hdr->children);
	return r->pause_open ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret rec_stanza(void *ud, struct xml_elem *e,
				  struct arena *a)
{
	struct rec *r = ud;
	r->stanzas++;
	assert_null(e->node.parent);
	buf_append_c(&r->log, "STANZA ");
	round_trip(e, buf_str(&r->dns), &r->log);
	buf_append_c(&r->log, "\n");
	bool pause = r->pause_stanzas ||
		     (r->pause_name && str_eq_c(e->name, r->pause_name));
	if (r->keep && r->nkept < 16) {
		r->kept[r->nkept] = e;
		r->kept_a[r->nkept++] = a;
	} else {
		arena_destroy(&a);
	}
	return pause ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret rec_close(void *ud)
{
	struct rec *r = ud;
	r->closes++;
	buf_append_c(&r->log, "CLOSE\n");
	return r->pause_close ? XML_PAUSE : XML_CONTINUE;
}

static const struct xml_stream_cbs rec_cbs = { rec_open, rec_stanza,
					       rec_close };

static void rec_free(struct rec *r)
{
	for (int i = 0; i < r->nkept; i++)
		arena_destroy(&r->kept_a[i]);
	buf_reset(&r->log);
	buf_reset(&r->dns);
}

/* ---- feeding in pieces ---------------------------------------------- */

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

static uint32_t rnd(uint32_t *s)
{
	/* xorshift32: fixed seeds give the same splits everywhere */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static size_t piece_len(enum split mode, uint32_t *seed, size_t left)
{
	switch (mode) {
	case SPLIT_WHOLE:
		return left;
	case SPLIT_BYTES:
		return 1;
	case SPLIT_RANDOM:
		break;
	}
	size_t n = 1 + rnd(seed) % (rnd(seed) % 4 == 0 ? 300 : 12);
	return n < left ? n : left;
}

struct result {
	int rc;		     /* 0, or -1 for a stream error */
	enum stream_err err;
	size_t err_at;	     /* input offset past the failing piece */
	char *log;
};

/* When set, run() frees the thread's parsers after every feed, so the
 * next feed primes a new one. */
static bool free_parsers;

/* Feeds in (in pieces) to a new stream. On a pause the unconsumed rest is
 * fed again, after xml_stream_reset() when reset_on_pause. */
static struct result run(const struct xml_limits *lim, struct rec *r,
			 struct str in, enum split mode, uint32_t seed,
			 bool reset_on_pause)
{
	struct result res = { 0 };
	struct xml_stream *xs = xml_stream_new(lim, &rec_cbs, r);
	size_t off = 0;
	while (off < in.len) {
		size_t n = piece_len(mode, &seed, in.len - off), done = 99;
		const char *text = NULL;
		int rc = xml_stream_feed(xs, in.p + off, n, &done, &res.err,
					 &text);
		if (rc < 0) {
			assert_non_null(text);
			res.rc = -1;
			res.err_at = off + n;
			/* a broken stream stays broken */
			assert_false(xml_stream_idle(xs));
			enum stream_err again;
			assert_int_equal(xml_stream_feed(xs, " ", 1, NULL,
							 &again, &text),
					 -1);
			assert_int_equal(again, res.err);
			break;
		}
		if (rc == 1) {
			assert_true(done <= n);
			assert_true(xml_stream_idle(xs));
			if (reset_on_pause)
				xml_stream_reset(xs);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(done, n);
		}
		/* idle after a feed means parked: no parser, no buffers */
		struct xml_stream_stats st;
		xml_stream_get_stats(xs, &st);
		assert_int_equal(st.parked, xml_stream_idle(xs));
		if (free_parsers)
			xml_thread_parsers_free();
		off += done;
	}
	xml_stream_free(xs);
	buf_append(&r->log, "", 1);
	res.log = xstrdup(r->log.data);
	return res;
}

static struct result run_str(const struct xml_limits *lim, const char *in,
			     enum split mode, uint32_t seed)
{
	struct rec r = { 0 };
	struct result res = run(lim, &r, str_c(in), mode, seed, false);
	rec_free(&r);
	return res;
}

static void assert_same(const struct result *a, struct result b)
{
	assert_string_equal(a->log, b.log);
	assert_int_equal(a->rc, b.rc);
	assert_int_equal(a->err, b.err);
	free(b.log);
}

/* Runs in whole, bytewise and in 200 random splits, each split both with
 * parsers kept and freed between feeds (odd seeds free them): all must
 * agree with the whole run, which is returned. */
static struct result run_all_splits(const struct xml_limits *lim,
				    const char *in)
{
	struct result whole = run_str(lim, in, SPLIT_WHOLE, 0);
	assert_same(&whole, run_str(lim, in, SPLIT_BYTES, 0));
	free_parsers = true;
	assert_same(&whole, run_str(lim, in, SPLIT_BYTES, 0));
	for (uint32_t seed = 1; seed <= 200; seed++) {
		free_parsers = seed % 2 == 1;
		assert_same(&whole,
			    run_str(lim, in, SPLIT_RANDOM, seed * 7919));
	}
	free_parsers = false;
	return whole;
}

/* ---- realistic streams ---------------------------------------------- */

static const char c2s_in[] =
	"<?xml version='1.0'?>\n"
	"<stream:stream to='example.com' xmlns='jabber:client' "
	"xmlns:stream='http://etherx.jabber.org/streams' version='1.0' "
	"xml:lang='en'>\n"
	"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
	"<required/></starttls><mechanisms "
	"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
	"<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\n"
	"<message to='juliet@example.com' from='romeo@example.net/orchard' "
	"type='chat' xml:lang='en' id='m1'><body>Wherefore art thou, "
	"Romeo?</body><body xml:lang='fr'>O\xc3\xb9 es-tu, Rom\xc3\xa9o ? "
	"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x8e\x89</body></message>"
	"<iq type=\"get\" id=\"q1\"><query "
	"xmlns='http://jabber.org/protocol/disco#info' node='n'><x:item "
	"xmlns:x='urn:x' x:attr='v' attr='w'><deep><deeper>t</deeper></deep>"
	"</x:item></query></iq>"
	"<presence><show>away</show><status>&lt;&amp;&gt;&quot;&apos; "
	"&#x41;&#66;&#x1F600;</status><priority>5</priority></presence>"
	"<message type='chat'><body><![CDATA[<not a tag> & stuff]]> "
	"after</body></message>\r\n  \t"
	"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
	"<resource>balcony</resource></bind></iq>"
	"<message xmlns='jabber:server' xmlns:foo='urn:foo' foo:bar='1'>"
	"<body xmlns=''>no ns</body><x xmlns='urn:x'>a&#13;b&#10;c</x>"
	"</message>"
	"<presence to='a&#9;b&#10;c d' from='x\ty'/>"
	"</stream:stream>\n";

static const char c2s_log[] =
	"OPEN {http://etherx.jabber.org/streams}stream prefix=stream "
	"dns=jabber:client to=example.com version=1.0 "
	"{http://www.w3.org/XML/1998/namespace}lang=en\n"
	"STANZA <features xmlns='http://etherx.jabber.org/streams'><starttls "
	"xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
	"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
	"PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
	"</features>\n"
	"STANZA <message to='juliet@example.com' "
	"from='romeo@example.net/orchard' type='chat' xml:lang='en' id='m1'>"
	"<body>Wherefore art thou, Romeo?</body><body xml:lang='fr'>"
	"O\xc3\xb9 es-tu, Rom\xc3\xa9o ? \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
	"\xf0\x9f\x8e\x89</body></message>\n"
	"STANZA <iq type='get' id='q1'><query "
	"xmlns='http://jabber.org/protocol/disco#info' node='n'><item "
	"xmlns='urn:x' xmlns:ns0='urn:x' ns0:attr='v' attr='w'><deep "
	"xmlns='http://jabber.org/protocol/disco#info'><deeper>t</deeper>"
	"</deep></item></query></iq>\n"
	"STANZA <presence><show>away</show><status>&lt;&amp;&gt;\"' AB"
	"\xf0\x9f\x98\x80</status><priority>5</priority></presence>\n"
	"STANZA <message type='chat'><body>&lt;not a tag&gt; &amp; stuff "
	"after</body></message>\n"
	"STANZA <iq type='set' id='b'><bind "
	"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony"
	"</resource></bind></iq>\n"
	"STANZA <message xmlns='jabber:server' xmlns:ns0='urn:foo' "
	"ns0:bar='1'><body xmlns=''>no ns</body><x xmlns='urn:x'>a&#13;b\nc"
	"</x></message>\n"
	"STANZA <presence to='a&#9;b&#10;c d' from='x y'/>\n"
	"CLOSE\n";

static const char s2s_in[] =
	"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
	"xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
	"from='a.example' to='b.example' id='abc' version='1.0'>"
	"<db:result from='a.example' to='b.example'>deadbeef</db:result> "
	"<stream:error><host-unknown "
	"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text "
	"xmlns='urn:ietf:params:xml:ns:xmpp-streams' "
	"xml:lang='en'>bye</text></stream:error></stream:stream>";

static const char s2s_log[] =
	"OPEN {http://etherx.jabber.org/streams}stream prefix=stream "
	"dns=jabber:server from=a.example to=b.example id=abc version=1.0\n"
	"STANZA <result xmlns='jabber:server:dialback' from='a.example' "
	"to='b.example'>deadbeef</result>\n"
	"STANZA <error xmlns='http://etherx.jabber.org/streams'><host-unknown "
	"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text "
	"xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>bye</text>"
	"</error>\n"
	"CLOSE\n";

static const struct xml_limits roomy = { 4096, 10, 10 };

static void test_stream_c2s(void **state)
{
	(void)state;
	struct result r = run_all_splits(&roomy, c2s_in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.log, c2s_log);
	free(r.log);
}

static void test_stream_s2s(void **state)
{
	(void)state;
	struct result r = run_all_splits(&roomy, s2s_in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.log, s2s_log);
	free(r.log);
}

/* The trees themselves: namespaces inherited from the root, xml:lang,
 * unescaped text, merged text nodes, parent links. */
static void test_stream_trees(void **state)
{
	(void)state;
	struct rec r = { .keep = true };
	struct result res =
		run(&roomy, &r, str_c(c2s_in), SPLIT_BYTES, 0, false);
	assert_int_equal(res.rc, 0);
	assert_int_equal(r.nkept, 8);
	struct xml_elem *feat = r.kept[0], *msg = r.kept[1], *pres = r.kept[3];
	assert_true(str_eq_c(feat->ns, NS_STREAMS));
	assert_true(str_eq_c(feat->name, "features"));
	assert_non_null(xml_child(feat, NS_TLS, "starttls"));
	assert_true(str_eq_c(msg->ns, NS_CLIENT));
	assert_true(str_eq_c(xml_attr_get_ns(msg, NS_XML, "lang"), "en"));
	assert_true(str_is_null(xml_attr_get(msg, "lang")));
	assert_true(str_eq_c(xml_attr_get(msg, "to"), "juliet@example.com"));
	struct xml_elem *body = xml_child(msg, NS_CLIENT, "body");
	assert_non_null(body);
	assert_true(body->node.parent == msg);
	assert_true(str_eq_c(xml_text(r.kept_a[1], body),
			     "Wherefore art thou, Romeo?"));
	struct xml_elem *status = xml_child(pres, NULL, "status");
	assert_non_null(status);
	/* many expat pieces (refs, bytes), one text node, NUL-terminated */
	assert_non_null(status->children);
	assert_ptr_equal(status->children, status->last_child);
	struct str t = ((struct xml_text *)status->children)->text;
	assert_string_equal(t.p, "<&>\"' AB\xf0\x9f\x98\x80");
	struct xml_elem *cdata = xml_child(r.kept[4], NULL, "body");
	assert_ptr_equal(cdata->children, cdata->last_child);
	struct xml_elem *m7 = r.kept[6];
	assert_true(str_eq_c(m7->ns, NS_SERVER));
	assert_true(str_eq_c(xml_attr_get_ns(m7, "urn:foo", "bar"), "1"));
	struct xml_elem *nons = xml_child(m7, "", "body");
	assert_non_null(nons);
	assert_int_equal(nons->ns.len, 0);
	assert_string_equal(xml_child(m7, "urn:x", "x")->ns.p, "urn:x");
	rec_free(&r);
	free(res.log);
}

/* ---- errors --------------------------------------------------------- */

struct err_case {
	const char *name;
	const char *in;
	enum stream_err err;
	size_t len; /* 0: strlen(in); set for inputs holding NULs */
};

static const struct err_case err_cases[] = {
	{ "doctype", "<?xml version='1.0'?><!DOCTYPE stream>" HDR,
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "internal subset",
	  "<!DOCTYPE s [<!ENTITY a 'x'>]><s>&a;</s>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "billion laughs",
	  "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
	  "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
	  "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>"
	  "<lolz>&lol3;</lolz>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "comment in prolog", "<!-- hi -->" HDR, STREAM_ERR_RESTRICTED_XML,
	  0 },
	{ "comment between stanzas", HDR "<!-- hi --><message/>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "comment in stanza", HDR "<message><!-- hi --></message>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "processing instruction", HDR "<?php echo 1; ?>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "pi in stanza", HDR "<message><?foo bar?></message>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "undefined entity in text", HDR "<message><body>&foo;</body>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "undefined entity in attr", HDR "<message to='&foo;'/>",
	  STREAM_ERR_RESTRICTED_XML, 0 },
	{ "latin-1 declaration",
	  "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>",
	  STREAM_ERR_UNSUPPORTED_ENCODING, 0 },
	{ "utf-16 declaration", "<?xml version='1.0' encoding='UTF-16'?>",
	  STREAM_ERR_UNSUPPORTED_ENCODING, 0 },
	{ "utf-16 le bom", "\xff\xfe<\0s\0", STREAM_ERR_UNSUPPORTED_ENCODING,
	  6 },
	{ "utf-16 be bom", "\xfe\xff\0<", STREAM_ERR_UNSUPPORTED_ENCODING, 4 },
	{ "utf-16 no bom", "<\0s\0>\0", STREAM_ERR_UNSUPPORTED_ENCODING, 6 },
	{ "mismatched tag", HDR "<message></iq>", STREAM_ERR_NOT_WELL_FORMED,
	  0 },
	{ "duplicate attribute", HDR "<message to='a' to='b'/>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "duplicate expanded attribute",
	  HDR "<message xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "bad utf-8", HDR "<message><body>\xc3\x28</body></message>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "nul char ref", HDR "<message><body>&#0;</body></message>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "cdata end in text", HDR "<message><body>]]></body></message>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "lt in attribute", HDR "<message to='<'/>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "garbage before header", "hello" HDR, STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "misplaced xml decl", HDR "<?xml version='1.0'?>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "newline in namespace", HDR "<message xmlns='a&#10;b'/>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "text between stanzas", HDR "<message/>hello",
	  STREAM_ERR_BAD_FORMAT, 0 },
	{ "escaped text between stanzas", HDR "&amp;",
	  STREAM_ERR_BAD_FORMAT, 0 },
	{ "cdata between stanzas", HDR "<![CDATA[x]]>",
	  STREAM_ERR_BAD_FORMAT, 0 },
	{ "unbound element prefix", HDR "<foo:message/>",
	  STREAM_ERR_BAD_NAMESPACE_PREFIX, 0 },
	{ "unbound attribute prefix", HDR "<message foo:to='x'/>",
	  STREAM_ERR_BAD_NAMESPACE_PREFIX, 0 },
	{ "unbound root prefix", "<stream:stream xmlns='jabber:client'>",
	  STREAM_ERR_BAD_NAMESPACE_PREFIX, 0 },
	{ "data after close", HDR "</stream:stream>\n <message/>",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
	{ "data after empty root", "<stream:stream xmlns:stream='s'/>x",
	  STREAM_ERR_NOT_WELL_FORMED, 0 },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
		const struct err_case *c = &err_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		for (int mode = SPLIT_WHOLE; mode <= SPLIT_RANDOM; mode++) {
			struct rec r = { 0 };
			struct result res = run(&roomy, &r, STR(c->in, len),
						(enum split)mode, 99, false);
			if (res.rc != -1 || res.err != c->err)
				fail_msg("%s (mode %d): rc %d err %s",
					 c->name, mode, res.rc,
					 stream_err_name(res.err));
			rec_free(&r);
			free(res.log);
		}
	}
}

/* Nothing is delivered after the error. */
static void test_error_no_callbacks_after(void **state)
{
	(void)state;
	struct rec r = { 0 };
	struct result res = run(&roomy, &r, str_c(HDR "<a/><!-- x --><b/>"),
				SPLIT_WHOLE, 0, false);
	assert_int_equal(res.err, STREAM_ERR_RESTRICTED_XML);
	assert_int_equal(r.stanzas, 1);
	rec_free(&r);
	free(res.log);
}

static void test_accepted_variants(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"<?xml version='1.0' encoding='utf-8'?>" HDR_BARE
		"</stream:stream>",
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone='yes'?>"
		HDR_BARE "</stream:stream>",
		"\xef\xbb\xbf" HDR "</stream:stream>",
		"<stream:stream xmlns:stream='" NS_STREAMS "'></stream:stream>",
		HDR "<message><body>&#x10FFFF;&#9;</body></message>"
		"</stream:stream> \n",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct result r = run_all_splits(&roomy, ok[i]);
		if (r.rc != 0)
			fail_msg("case %zu: %s", i, stream_err_name(r.err));
		assert_non_null(strstr(r.log, "CLOSE\n"));
		free(r.log);
	}
}

/* ---- limits --------------------------------------------------------- */

/* <message><body>xxx</body></message> of exactly len bytes. */
static char *stanza_of(size_t len)
{
	static const char head[] = "<message><body>";
	static const char tail[] = "</body></message>";
	size_t fixed = sizeof(head) - 1 + sizeof(tail) - 1;
	assert_true(len >= fixed);
	char *s = xmalloc(len + 1);
	memcpy(s, head, sizeof(head) - 1);
	memset(s + sizeof(head) - 1, 'x', len - fixed);
	memcpy(s + len - (sizeof(tail) - 1), tail, sizeof(tail));
	return s;
}

/* <message to='xxx'/>: a stanza that is one start tag. */
static char *tag_of(size_t len)
{
	static const char head[] = "<message to='", tail[] = "'/>";
	size_t fixed = sizeof(head) - 1 + sizeof(tail) - 1;
	char *s = xmalloc(len + 1);
	memcpy(s, head, sizeof(head) - 1);
	memset(s + sizeof(head) - 1, 'x', len - fixed);
	memcpy(s + len - (sizeof(tail) - 1), tail, sizeof(tail));
	return s;
}

static char *concat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *s = xmalloc(la + lb + lc + 1);
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	memcpy(s + la + lb, c, lc + 1);
	return s;
}

static void expect_limit(const char *in, bool ok)
{
	for (int mode = SPLIT_WHOLE; mode <= SPLIT_RANDOM; mode++) {
		struct result r =
			run_str(&test_limits, in, (enum split)mode, 5);
		if (ok && r.rc != 0)
			fail_msg("refused (mode %d): %s", mode,
				 stream_err_name(r.err));
		if (!ok && (r.rc != -1 ||
			    r.err != STREAM_ERR_POLICY_VIOLATION))
			fail_msg("not refused (mode %d): rc %d %s", mode, r.rc,
				 stream_err_name(r.err));
		free(r.log);
	}
}

static void test_limit_stanza_size(void **state)
{
	(void)state;
	size_t max = test_limits.max_stanza;
	char *(*makers[])(size_t) = { stanza_of, tag_of };
	for (size_t m = 0; m < 2; m++) {
		char *at = makers[m](max), *past = makers[m](max + 1);
		/* the gap whitespace before a stanza is not part of it */
		char *in_ok = concat3(HDR "\n  ", at, "\n<a/></stream:stream>");
		char *in_bad = concat3(HDR "\n  ", past, "</stream:stream>");
		expect_limit(in_ok, true);
		expect_limit(in_bad, false);
		free(at), free(past), free(in_ok), free(in_bad);
	}
}

/* The stream header counts against max_stanza too. */
static void test_limit_header(void **state)
{
	(void)state;
	size_t max = test_limits.max_stanza;
	for (size_t len = max; len <= max + 1; len++) {
		struct buf hdr = { 0 };
		buf_append_c(&hdr, "<stream:stream xmlns:stream='s' to='");
		while (hdr.len < len - 2)
			buf_append(&hdr, "h", 1);
		buf_append(&hdr, "'>", 3);
		assert_int_equal(strlen(hdr.data), len);
		expect_limit(hdr.data, len == max);
		buf_reset(&hdr);
	}
}

/* An unterminated stanza is refused as soon as its max_stanza + 1st byte
 * arrives, not when it ends. */
static void test_limit_stanza_as_bytes_arrive(void **state)
{
	(void)state;
	size_t max = test_limits.max_stanza;
	char *big = stanza_of(max + 100);
	char *in = concat3(HDR, big, "");
	size_t refuse_at = strlen(HDR) + max + 1;
	struct result r = run_str(&test_limits, in, SPLIT_BYTES, 0);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err, STREAM_ERR_POLICY_VIOLATION);
	assert_int_equal(r.err_at, refuse_at);
	free(r.log);
	/* the same when a start tag never ends */
	char *tag = tag_of(max + 100);
	char *in2 = concat3(HDR, tag, "");
	r = run_str(&test_limits, in2, SPLIT_BYTES, 0);
	assert_int_equal(r.err, STREAM_ERR_POLICY_VIOLATION);
	assert_int_equal(r.err_at, refuse_at);
	free(r.log);
	/* one big feed is sliced: same error, nothing delivered */
	struct rec rc = { 0 };
	r = run(&test_limits, &rc, str_c(in), SPLIT_WHOLE, 0, false);
	assert_int_equal(r.err, STREAM_ERR_POLICY_VIOLATION);
	assert_int_equal(rc.stanzas, 0);
	rec_free(&rc);
	free(r.log);
	free(big), free(in), free(tag), free(in2);
}

/* Expat's reparse deferral must not hold back a complete stanza: a big
 * start tag fed a byte at a time is delivered when its last byte is. */
static void test_no_stall(void **state)
{
	(void)state;
	size_t sizes[] = { 20, 300, 999, 1000 };
	for (size_t i = 0; i < 4; i++) {
		char *tag = tag_of(sizes[i]);
		char *body = stanza_of(sizes[i] < 40 ? 40 : sizes[i]);
		char *in = concat3(HDR, body, tag);
		struct rec r = { 0 };
		struct xml_stream *xs = xml_stream_new(&test_limits, &rec_cbs,
						       &r);
		enum stream_err err;
		const char *text;
		size_t len = strlen(in), body_end = strlen(HDR) + strlen(body);
		for (size_t off = 0; off < len; off++) {
			assert_int_equal(xml_stream_feed(xs, in + off, 1, NULL,
							 &err, &text),
					 0);
			/* stanzas arrive exactly with their last byte */
			int expect = off + 1 >= len ? 2 : off + 1 >= body_end;
			assert_int_equal(r.stanzas, expect);
		}
		xml_stream_free(xs);
		rec_free(&r);
		free(tag), free(body), free(in);
	}
}

/* A big tag whose every '>' (legal in attribute values) comes in its own
 * piece would make expat rescan it each time: refused past a budget. */
static void test_rescan_budget(void **state)
{
	(void)state;
	char *tag = tag_of(test_limits.max_stanza);
	for (char *c = strchr(tag, '\'') + 1; *c == 'x'; c++)
		*c = '>';
	char *in = concat3(HDR, tag, "</stream:stream>");
	struct result whole = run_str(&test_limits, in, SPLIT_WHOLE, 0);
	assert_int_equal(whole.rc, 0);
	assert_non_null(strstr(whole.log, "STANZA <message to='&gt;&gt;"));
	struct result bytes = run_str(&test_limits, in, SPLIT_BYTES, 0);
	assert_int_equal(bytes.rc, -1);
	assert_int_equal(bytes.err, STREAM_ERR_POLICY_VIOLATION);
	free(whole.log), free(bytes.log), free(tag), free(in);
}

static void test_limit_gap(void **state)
{
	(void)state;
	size_t max = test_limits.max_stanza;
	char *ws = xmalloc(max + 2);
	memset(ws, ' ', max + 1);
	ws[max] = '\0';
	char *in_ok = concat3(HDR "<a/>", ws, "<b/></stream:stream>");
	ws[max] = ' ';
	ws[max + 1] = '\0';
	char *in_bad = concat3(HDR "<a/>", ws, "<b/></stream:stream>");
	expect_limit(in_ok, true);
	expect_limit(in_bad, false);
	free(ws), free(in_ok), free(in_bad);
}

static void test_limit_depth(void **state)
{
	(void)state;
	/* max_depth 5: the stanza is level 1 */
	expect_limit(HDR "<a><b><c><d><e/></d></c></b></a></stream:stream>",
		     true);
	expect_limit(HDR "<a><b><c><d><e><f/></e></d></c></b></a>", false);
	expect_limit(HDR "<a><b><c><d><e>text<f>", false);
}

static void test_limit_attrs(void **state)
{
	(void)state;
	/* max_attrs 4; namespace declarations do not count */
	expect_limit(HDR "<a xmlns='urn:a' xmlns:p='urn:p' w='1' x='2' "
			 "p:y='3' xml:lang='en'/></stream:stream>",
		     true);
	expect_limit(HDR "<a xmlns='urn:a' w='1' x='2' y='3' z='4' v='5'/>",
		     false);
	expect_limit(HDR "<a><b w='1' x='2' y='3' z='4' v='5'/></a>", false);
	expect_limit("<stream:stream xmlns:stream='s' a='1' b='2' c='3' "
		     "d='4'></stream:stream>",
		     true);
	expect_limit("<stream:stream xmlns:stream='s' a='1' b='2' c='3' "
		     "d='4' e='5'>",
		     false);
}

/* The tree of a stanza is capped (4 x max_stanza + 16 KiB): elements so
 * dense that the tree passes it are refused even under max_stanza. */
static void test_limit_tree_memory(void **state)
{
	(void)state;
	struct buf b = { 0 };
	buf_append_c(&b, HDR "<m>");
	for (int i = 0; i < 100; i++)
		buf_append_c(&b, "<a/>");
	buf_append_c(&b, "</m></stream:stream>");
	buf_append(&b, "", 1);
	expect_limit(b.data, true);
	buf_reset(&b);
	buf_append_c(&b, HDR "<m>");
	for (int i = 0; i < 248; i++)
		buf_append_c(&b, "<a/>");
	buf_append_c(&b, "</m></stream:stream>");
	buf_append(&b, "", 1);
	assert_true(b.len - strlen(HDR) < test_limits.max_stanza + 30);
	expect_limit(b.data, false);
	buf_reset(&b);
}

/* ---- pausing -------------------------------------------------------- */

static const char sasl_in[] =
	HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
	"mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"
	"<stream:stream to='example.com' xmlns='jabber:client' "
	"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
	"<iq type='set' id='b1'/></stream:stream>";

static void test_pause_reset(void **state)
{
	(void)state;
	struct rec r = { .pause_name = "auth" };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	size_t done = 0;
	enum stream_err err;
	const char *text;
	size_t len = strlen(sasl_in);
	int rc = xml_stream_feed(xs, sasl_in, len, &done, &err, &text);
	assert_int_equal(rc, 1);
	const char *end = strstr(sasl_in, "</auth>") + strlen("</auth>");
	assert_int_equal(done, (size_t)(end - sasl_in));
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.stanzas, 1);
	assert_true(xml_stream_idle(xs));
	xml_stream_reset(xs);
	rc = xml_stream_feed(xs, sasl_in + done, len - done, &done, &err,
			     &text);
	assert_int_equal(rc, 0);
	assert_int_equal(r.opens, 2);
	assert_int_equal(r.stanzas, 2);
	assert_int_equal(r.closes, 1);
	xml_stream_free(xs);
	rec_free(&r);
}

/* The same with any split of the input: the driver resets on each pause
 * and feeds the rest again. */
static void test_pause_reset_splits(void **state)
{
	(void)state;
	struct rec r0 = { .pause_name = "auth" };
	struct result whole =
		run(&roomy, &r0, str_c(sasl_in), SPLIT_WHOLE, 0, true);
	assert_int_equal(whole.rc, 0);
	assert_int_equal(r0.opens, 2);
	for (uint32_t seed = 0; seed < 100; seed++) {
		struct rec r = { .pause_name = "auth" };
		enum split mode = seed == 0 ? SPLIT_BYTES : SPLIT_RANDOM;
		struct result res = run(&roomy, &r, str_c(sasl_in), mode,
					seed * 31, true);
		assert_int_equal(res.rc, 0);
		assert_string_equal(res.log, whole.log);
		free(res.log);
		rec_free(&r);
	}
	free(whole.log);
	rec_free(&r0);
}

/* Pausing on every event and feeding the rest to the same parser (no
 * reset) changes nothing in what is parsed. */
static void test_pause_continue(void **state)
{
	(void)state;
	struct result plain = run_str(&roomy, c2s_in, SPLIT_WHOLE, 0);
	for (uint32_t seed = 0; seed < 60; seed++) {
		struct rec r = { .pause_stanzas = true, .pause_open = true,
				 .pause_close = true };
		enum split mode = seed == 0 ? SPLIT_WHOLE :
				  seed == 1 ? SPLIT_BYTES : SPLIT_RANDOM;
		struct result res = run(&roomy, &r, str_c(c2s_in), mode,
					seed * 13, false);
		assert_int_equal(res.rc, 0);
		assert_string_equal(res.log, plain.log);
		free(res.log);
		rec_free(&r);
	}
	free(plain.log);
}

static void test_pause_open_and_close(void **state)
{
	(void)state;
	struct rec r = { .pause_open = true, .pause_close = true };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	const char in[] = HDR "<a/></stream:stream>  ";
	size_t done;
	enum stream_err err;
	const char *text;
	assert_int_equal(xml_stream_feed(xs, in, sizeof(in) - 1, &done, &err,
					 &text),
			 1);
	assert_int_equal(done, strlen(HDR));
	assert_int_equal(r.stanzas, 0);
	size_t off = done;
	assert_int_equal(xml_stream_feed(xs, in + off, sizeof(in) - 1 - off,
					 &done, &err, &text),
			 1);
	assert_int_equal(done, strlen("<a/></stream:stream>"));
	assert_int_equal(r.stanzas, 1);
	assert_int_equal(r.closes, 1);
	off += done;
	assert_int_equal(xml_stream_feed(xs, in + off, sizeof(in) - 1 - off,
					 &done, &err, &text),
			 0);
	assert_int_equal(done, 2);
	xml_stream_free(xs);
	rec_free(&r);

	/* an empty root paused on its start closes within the same feed:
	 * open and close are one tag */
	struct rec r2 = { .pause_open = true };
	xs = xml_stream_new(&roomy, &rec_cbs, &r2);
	const char empty[] = "<s:s xmlns:s='" NS_STREAMS "'/>";
	assert_int_equal(xml_stream_feed(xs, empty, sizeof(empty) - 1, &done,
					 &err, &text),
			 1);
	assert_int_equal(done, sizeof(empty) - 1);
	assert_int_equal(r2.opens, 1);
	assert_int_equal(r2.closes, 1);
	assert_true(xml_stream_idle(xs));
	assert_int_equal(xml_stream_feed(xs, " x", 2, &done, &err, &text), -1);
	assert_int_equal(err, STREAM_ERR_NOT_WELL_FORMED);
	xml_stream_free(xs);
	rec_free(&r2);
}

static void test_idle(void **state)
{
	(void)state;
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	enum stream_err err;
	const char *text;
	assert_true(xml_stream_idle(xs));
	assert_int_equal(xml_stream_feed(xs, "<stream:stream", 14, NULL, &err,
					 &text),
			 0);
	assert_false(xml_stream_idle(xs));
	const char *hdr = " xmlns:stream='" NS_STREAMS "'>";
	assert_int_equal(xml_stream_feed(xs, hdr, strlen(hdr), NULL, &err,
					 &text),
			 0);
	assert_true(xml_stream_idle(xs));
	assert_int_equal(xml_stream_feed(xs, "<a>x", 4, NULL, &err, &text), 0);
	assert_false(xml_stream_idle(xs));
	assert_int_equal(xml_stream_feed(xs, "</a>  ", 6, NULL, &err, &text),
			 0);
	assert_true(xml_stream_idle(xs));
	assert_int_equal(xml_stream_feed(xs, "<b", 2, NULL, &err, &text), 0);
	assert_false(xml_stream_idle(xs));
	xml_stream_reset(xs);
	assert_true(xml_stream_idle(xs));
	assert_int_equal(r.stanzas, 1);
	xml_stream_free(xs);
	rec_free(&r);
}

/* A partial stanza is freed with the parser (ASan checks the leak). */
static void test_free_partial(void **state)
{
	(void)state;
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	enum stream_err err;
	const char *text;
	const char in[] = HDR "<message><body>half";
	assert_int_equal(xml_stream_feed(xs, in, sizeof(in) - 1, NULL, &err,
					 &text),
			 0);
	xml_stream_reset(xs);
	assert_int_equal(xml_stream_feed(xs, in, sizeof(in) - 1, NULL, &err,
					 &text),
			 0);
	xml_stream_free(xs);
	xml_stream_free(NULL);
	assert_int_equal(r.opens, 2);
	rec_free(&r);
}

/* ---- parking between stanzas ---------------------------------------- */

static bool parked(const struct xml_stream *xs, unsigned long *parsers_r)
{
	struct xml_stream_stats st;
	xml_stream_get_stats(xs, &st);
	if (parsers_r)
		*parsers_r = st.parsers;
	if (st.parked) {
		/* the struct and the header's start tag, nothing else */
		assert_true(st.parked_bytes > 0 && st.parked_bytes < 512);
	} else {
		assert_int_equal(st.parked_bytes, 0);
	}
	return st.parked;
}

/* Between stanzas a stream keeps only its header's start tag: the parser
 * made for the next stanza has the root's prefix and namespace bindings,
 * and the close tag must match the root's prefixed name. */
static void test_park_resume(void **state)
{
	(void)state;
	static const char *const pieces[] = {
		"<s:stream xmlns:s='" NS_STREAMS "' xmlns='jabber:client' ",
		"xmlns:p='urn:p'>",
		"<message><p:x p:a='1'>t",
		"</p:x></message>",
		"\n  <p:y/>",
		"</s:stream>",
	};
	static const bool expect_parked[] = { false, true, false,
					      true,  true, true };
	static const unsigned long expect_parsers[] = { 1, 1, 2, 2, 3, 4 };
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	unsigned long n;
	assert_true(parked(xs, &n));
	assert_int_equal(n, 0);
	for (size_t i = 0; i < ARRAY_SIZE(pieces); i++) {
		enum stream_err err;
		const char *text;
		assert_int_equal(xml_stream_feed(xs, pieces[i],
						 strlen(pieces[i]), NULL,
						 &err, &text),
				 0);
		assert_int_equal(parked(xs, &n), expect_parked[i]);
		assert_int_equal(n, expect_parsers[i]);
	}
	buf_append(&r.log, "", 1);
	assert_string_equal(
		r.log.data,
		"OPEN {http://etherx.jabber.org/streams}stream prefix=s "
		"dns=jabber:client\n"
		"STANZA <message><x xmlns='urn:p' xmlns:ns0='urn:p' "
		"ns0:a='1'>t</x></message>\n"
		"STANZA <y xmlns='urn:p'/>\n"
		"CLOSE\n");
	xml_stream_free(xs);
	rec_free(&r);
}

/* The resumed parser checks the close tag against the saved root name,
 * and an undeclared prefix is still refused. */
static void test_park_resume_errors(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		enum stream_err err;
	} cases[] = {
		{ "</stream>", STREAM_ERR_NOT_WELL_FORMED },
		{ "</t:stream>", STREAM_ERR_NOT_WELL_FORMED },
		{ "<q:x/>", STREAM_ERR_BAD_NAMESPACE_PREFIX },
		{ "<a></b>", STREAM_ERR_NOT_WELL_FORMED },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct rec r = { 0 };
		struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
		enum stream_err err;
		const char *text;
		const char hdr[] = "<s:stream xmlns:s='" NS_STREAMS "'><a/>";
		assert_int_equal(xml_stream_feed(xs, hdr, strlen(hdr), NULL,
						 &err, &text),
				 0);
		assert_true(parked(xs, NULL));
		assert_int_equal(xml_stream_feed(xs, cases[i].in,
						 strlen(cases[i].in), NULL,
						 &err, &text),
				 -1);
		assert_int_equal(err, cases[i].err);
		/* a failed stream holds no parser either */
		assert_true(parked(xs, NULL));
		xml_stream_free(xs);
		rec_free(&r);
	}
}

/* Whitespace between stanzas counts across parked feeds: max_stanza bytes
 * of it one at a time are fine, one more is not. */
static void test_park_gap_limit(void **state)
{
	(void)state;
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&test_limits, &rec_cbs, &r);
	enum stream_err err;
	const char *text;
	const char in[] = HDR "<a/>";
	assert_int_equal(xml_stream_feed(xs, in, strlen(in), NULL, &err,
					 &text),
			 0);
	for (size_t i = 0; i < test_limits.max_stanza; i++) {
		assert_int_equal(xml_stream_feed(xs, " ", 1, NULL, &err,
						 &text),
				 0);
		assert_true(parked(xs, NULL));
	}
	assert_int_equal(xml_stream_feed(xs, " ", 1, NULL, &err, &text), -1);
	assert_int_equal(err, STREAM_ERR_POLICY_VIOLATION);
	xml_stream_free(xs);
	rec_free(&r);
}

/* Expat keeps every distinct name it meets for as long as it lives, so a
 * parser is replaced at the first stanza boundary after max(max_stanza,
 * 4 KiB) bytes, inside one feed too. The events do not change. */
static void test_recycle(void **state)
{
	(void)state;
	struct buf in = { 0 }, expect = { 0 };
	buf_append_c(&in, HDR);
	buf_append_c(&expect, HDR_LOG);
	for (int i = 0; i < 400; i++) {
		buf_printf(&in, "<message id='%d'><x%d xmlns='urn:%d' a%d='v'/>"
				"</message>",
			   i, i, i, i);
		buf_printf(&expect, "STANZA <message id='%d'><x%d "
				    "xmlns='urn:%d' a%d='v'/></message>\n",
			   i, i, i, i);
	}
	size_t body = in.len;
	buf_append_c(&in, "</stream:stream>");
	buf_append_c(&expect, "CLOSE\n");
	buf_append(&in, "", 1);
	buf_append(&expect, "", 1);
	struct result whole = run_all_splits(&roomy, in.data);
	assert_int_equal(whole.rc, 0);
	assert_string_equal(whole.log, expect.data);
	free(whole.log);
	/* everything but the close tag in one feed: not parked at the end
	 * only if it ends inside a stanza, so cut the last one short */
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	enum stream_err err;
	const char *text;
	assert_int_equal(xml_stream_feed(xs, in.data, body - 3, NULL, &err,
					 &text),
			 0);
	unsigned long n;
	assert_false(parked(xs, &n));
	assert_true(n >= body / 4096);
	assert_int_equal(r.stanzas, 399);
	xml_stream_free(xs);
	rec_free(&r);
	buf_reset(&in);
	buf_reset(&expect);
}

/* ---- parsers shared between streams --------------------------------- */

static int feed_str(struct xml_stream *xs, const char *s)
{
	enum stream_err err;
	const char *text;
	return xml_stream_feed(xs, s, strlen(s), NULL, &err, &text);
}

static unsigned long primes_of(const struct xml_stream *xs)
{
	struct xml_stream_stats st;
	xml_stream_get_stats(xs, &st);
	return st.primes;
}

/* A stream with the root's prefix p bound to uri, and n stanzas using
 * it. Caller frees. */
static char *p_stream(const char *uri, int n)
{
	struct buf b = { 0 };
	buf_printf(&b, "<s:stream xmlns:s='" NS_STREAMS "' "
		       "xmlns='jabber:client' xmlns:p='%s'>", uri);
	for (int i = 0; i < n; i++)
		buf_printf(&b, "<message id='%d'><p:x p:a='%d'>t%d</p:x>"
			       "</message>\n",
			   i, i, i);
	buf_append_c(&b, "</s:stream>");
	buf_append(&b, "", 1);
	return b.data;
}

/* Streams of one thread with the same header take turns with one parser,
 * none priming its own; a stream whose header binds the prefix to another
 * namespace gets a parser of its own, and its stanzas resolve to it. */
static void test_shared_turns(void **state)
{
	(void)state;
	xml_thread_parsers_free();
	static const char *const hdr[] = {
		"<s:stream xmlns:s='" NS_STREAMS "' xmlns='jabber:client' "
		"xmlns:p='urn:p'>",
		"<s:stream xmlns:s='" NS_STREAMS "' xmlns='jabber:client' "
		"xmlns:p='urn:p'>",
		"<s:stream xmlns:s='" NS_STREAMS "' xmlns='jabber:client' "
		"xmlns:p='urn:q'>",
	};
	struct rec r[3] = { 0 };
	struct xml_stream *xs[3];
	for (int i = 0; i < 3; i++) {
		xs[i] = xml_stream_new(&roomy, &rec_cbs, &r[i]);
		assert_int_equal(feed_str(xs[i], hdr[i]), 0);
	}
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 3; i++) {
			char in[64];
			snprintf(in, sizeof(in), "<p:x n='%d'/>", round);
			assert_int_equal(feed_str(xs[i], in), 0);
			assert_true(parked(xs[i], NULL));
		}
	}
	for (int i = 0; i < 3; i++) {
		struct xml_stream_stats st;
		xml_stream_get_stats(xs[i], &st);
		assert_int_equal(st.parsers, 11);
		assert_int_equal(st.primes, 0);
	}
	/* while one stream holds the parser inside a stanza, another with
	 * its header primes one; both go on from where they were */
	assert_int_equal(feed_str(xs[0], "<p:x n='held'><p:y>"), 0);
	assert_false(parked(xs[0], NULL));
	assert_int_equal(feed_str(xs[1], "<p:x n='other'/>"), 0);
	assert_int_equal(primes_of(xs[1]), 1);
	assert_int_equal(feed_str(xs[0], "</p:y></p:x>"), 0);
	assert_true(parked(xs[0], NULL));
	assert_int_equal(feed_str(xs[1], "<p:x n='after'/>"), 0);
	assert_int_equal(primes_of(xs[1]), 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(feed_str(xs[i], "</s:stream>"), 0);
		xml_stream_free(xs[i]);
	}
	for (int i = 0; i < 3; i++) {
		buf_append(&r[i].log, "", 1);
		const char *ns = i == 2 ? "urn:q" : "urn:p";
		struct buf expect = { 0 };
		buf_printf(&expect, "OPEN {" NS_STREAMS "}stream prefix=s "
				    "dns=jabber:client\n");
		for (int round = 0; round < 10; round++)
			buf_printf(&expect, "STANZA <x xmlns='%s' n='%d'/>\n",
				   ns, round);
		if (i == 0)
			buf_printf(&expect, "STANZA <x xmlns='%s' n='held'>"
					    "<y/></x>\n", ns);
		if (i == 1)
			buf_printf(&expect, "STANZA <x xmlns='%s' n='other'/>"
					    "\nSTANZA <x xmlns='%s' "
					    "n='after'/>\n", ns, ns);
		buf_append_c(&expect, "CLOSE\n");
		buf_append(&expect, "", 1);
		assert_string_equal(r[i].log.data, expect.data);
		buf_reset(&expect);
		rec_free(&r[i]);
	}
}

/* Streams fed in random pieces, in random turns, the shared parser moving
 * between them at stanza boundaries (and being recycled on the way): each
 * gives the events it gives alone. Two have c2s_in's header, one binds p
 * to urn:p and one to urn:q. */
static void test_shared_interleaved(void **state)
{
	(void)state;
	char *pin = p_stream("urn:p", 60), *qin = p_stream("urn:q", 60);
	const char *const in[] = { c2s_in, c2s_in, pin, qin, pin };
	enum { N = ARRAY_SIZE(in) };
	char *solo[N];
	for (size_t i = 0; i < N; i++) {
		struct result res = run_str(&roomy, in[i], SPLIT_WHOLE, 0);
		assert_int_equal(res.rc, 0);
		solo[i] = res.log;
	}
	for (uint32_t seed = 1; seed <= 100; seed++) {
		uint32_t rs = seed * 2654435761u;
		struct rec r[N] = { 0 };
		struct xml_stream *xs[N];
		size_t off[N] = { 0 }, left = 0, primes = 0, parsers = 0;
		for (size_t i = 0; i < N; i++) {
			xs[i] = xml_stream_new(&roomy, &rec_cbs, &r[i]);
			left += strlen(in[i]);
		}
		while (left > 0) {
			size_t i = rnd(&rs) % N, len = strlen(in[i]);
			if (off[i] == len)
				continue;
			/* whole stanzas mostly, as clients send them */
			size_t n = piece_len(SPLIT_RANDOM, &rs, len - off[i]);
			enum stream_err err;
			const char *text;
			assert_int_equal(xml_stream_feed(xs[i], in[i] + off[i],
							 n, NULL, &err, &text),
					 0);
			off[i] += n;
			left -= n;
		}
		for (size_t i = 0; i < N; i++) {
			struct xml_stream_stats st;
			xml_stream_get_stats(xs[i], &st);
			primes += st.primes;
			parsers += st.parsers;
			xml_stream_free(xs[i]);
			buf_append(&r[i].log, "", 1);
			assert_string_equal(r[i].log.data, solo[i]);
			rec_free(&r[i]);
		}
		/* most busy spells took a parser another stream left */
		assert_true(primes * 2 < parsers);
	}
	for (size_t i = 0; i < N; i++)
		free(solo[i]);
	free(pin);
	free(qin);
}

/* A stream that breaks while it holds a shared parser takes it down with
 * it: the others with its header go on, through a new parser primed for
 * them, with their own positions and limits. */
static void test_shared_after_error(void **state)
{
	(void)state;
	xml_thread_parsers_free();
	struct rec r[2] = { 0 };
	struct xml_stream *xs[2];
	for (int i = 0; i < 2; i++) {
		xs[i] = xml_stream_new(&test_limits, &rec_cbs, &r[i]);
		assert_int_equal(feed_str(xs[i], HDR "<a/>"), 0);
	}
	/* xs[0] takes the shared parser and breaks inside a stanza */
	assert_int_equal(feed_str(xs[0], "<b><c></b>"), -1);
	assert_true(parked(xs[0], NULL));
	for (int n = 0; n < 3; n++)
		assert_int_equal(feed_str(xs[1], "<d/>"), 0);
	assert_int_equal(primes_of(xs[1]), 1);
	buf_append(&r[1].log, "", 1);
	assert_string_equal(r[1].log.data, HDR_LOG "STANZA <a/>\nSTANZA <d/>\n"
				       "STANZA <d/>\nSTANZA <d/>\n");
	/* its limits count from its own stanza's start: max_stanza bytes
	 * pass, one more does not */
	char *max = stanza_of(test_limits.max_stanza);
	char *big = stanza_of(test_limits.max_stanza + 1);
	assert_int_equal(feed_str(xs[1], max), 0);
	assert_int_equal(r[1].stanzas, 5);
	assert_int_equal(feed_str(xs[1], big), -1);
	free(max);
	free(big);
	for (int i = 0; i < 2; i++)
		xml_stream_free(xs[i]);
	rec_free(&r[0]);
	rec_free(&r[1]);
}

/* A thread's parsers are freed when it ends (the leak check of the
 * sanitizer build fails otherwise). */
static void *feed_on_thread(void *arg)
{
	(void)arg;
	struct rec r = { 0 };
	struct xml_stream *xs = xml_stream_new(&roomy, &rec_cbs, &r);
	assert_int_equal(feed_str(xs, HDR "<a/>"), 0);
	xml_stream_free(xs);
	assert_int_equal(r.stanzas, 1);
	rec_free(&r);
	return NULL;
}

static void test_thread_parsers_freed(void **state)
{
	(void)state;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, feed_on_thread, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- serializer and tree API ---------------------------------------- */

static char *ser(const struct xml_elem *e, const char *parent_ns)
{
	struct buf b = { 0 };
	assert_int_equal(xml_serialize(&b, e, str_c(parent_ns)), 0);
	buf_append(&b, "", 1);
	return b.data;
}

#define ASSERT_SER(e, pns, expect)                 \
	do {                                       \
		char *s_ = ser((e), (pns));        \
		assert_string_equal(s_, (expect)); \
		free(s_);                          \
	} while (0)

static void test_serialize_escaping(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *e = xml_elem_new(a, STR_LIT(NS_CLIENT),
					  STR_LIT("body"));
	assert_int_equal(xml_attr_set(a, e, "q", STR_LIT("'\"<&>\t\n\r ok")),
			 0);
	assert_int_equal(xml_add_text(a, e, STR_LIT("<&>\"' ]]>\r\n\tz")), 0);
	ASSERT_SER(e, NS_CLIENT,
		   "<body q='&apos;&quot;&lt;&amp;&gt;&#9;&#10;&#13; ok'>"
		   "&lt;&amp;&gt;\"' ]]&gt;&#13;\n\tz</body>");
	round_trip(e, STR_LIT(NS_CLIENT), NULL);

	struct buf b = { 0 };
	assert_int_equal(xml_escape(&b, STR_LIT("a\rb"), false), 0);
	assert_int_equal(xml_escape(&b, STR_LIT("\t'"), true), 0);
	assert_true(str_eq_c(buf_str(&b), "a&#13;b&#9;&apos;"));
	buf_reset(&b);
	arena_destroy(&a);
}

static void test_serialize_namespaces(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *iq = xml_elem_new(a, STR_LIT(NS_CLIENT),
					   STR_LIT("iq"));
	struct xml_elem *q = xml_add_child(a, iq, STR_LIT(NS_DISCO_INFO),
					   STR_LIT("query"));
	xml_add_child(a, q, STR_LIT(NS_DISCO_INFO), STR_LIT("feature"));
	struct xml_elem *n = xml_add_child(a, q, STR_NULL, STR_LIT("x"));
	xml_add_child(a, n, STR_NULL, STR_LIT("y"));
	assert_int_equal(xml_attr_set_ns(a, q, NS_XML, "lang",
					 STR_LIT("en")),
			 0);
	assert_int_equal(xml_attr_set_ns(a, n, "urn:a", "p", STR_LIT("1")), 0);
	assert_int_equal(xml_attr_set(a, n, "plain", STR_LIT("2")), 0);
	assert_int_equal(xml_attr_set_ns(a, n, "urn:b", "p", STR_LIT("3")), 0);
	assert_int_equal(xml_attr_set_ns(a, n, "urn:a", "r", STR_LIT("4")), 0);
	ASSERT_SER(iq, NS_CLIENT,
		   "<iq><query xmlns='" NS_DISCO_INFO "' xml:lang='en'>"
		   "<feature/><x xmlns='' xmlns:ns0='urn:a' ns0:p='1' "
		   "plain='2' xmlns:ns1='urn:b' ns1:p='3' ns0:r='4'><y/></x>"
		   "</query></iq>");
	ASSERT_SER(iq, NS_SERVER,
		   "<iq xmlns='jabber:client'><query xmlns='" NS_DISCO_INFO
		   "' xml:lang='en'><feature/><x xmlns='' xmlns:ns0='urn:a' "
		   "ns0:p='1' plain='2' xmlns:ns1='urn:b' ns1:p='3' "
		   "ns0:r='4'><y/></x></query></iq>");
	round_trip(iq, STR_LIT(NS_CLIENT), NULL);
	round_trip(iq, STR_LIT("urn:other"), NULL);

	/* the XML namespace has only its fixed prefix, elements included */
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_CLIENT), STR_LIT("m"));
	struct xml_elem *xl = xml_add_child(a, x, STR_LIT(NS_XML),
					    STR_LIT("n"));
	xml_add_child(a, xl, STR_LIT(NS_CLIENT), STR_LIT("o"));
	xml_add_child(a, xl, STR_LIT("urn:p"), STR_LIT("p"));
	ASSERT_SER(x, NS_CLIENT,
		   "<m><xml:n><o/><p xmlns='urn:p'/></xml:n></m>");
	round_trip(x, STR_LIT(NS_CLIENT), NULL);
	round_trip(xl, STR_LIT(NS_CLIENT), NULL);
	arena_destroy(&a);
}

/* xml_serialize fails cleanly at the buffer's max, at every length. */
static void test_serialize_max(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *e = xml_elem_new(a, STR_LIT("urn:x"), STR_LIT("m"));
	xml_attr_set_ns(a, e, "urn:y", "k", STR_LIT("v&"));
	xml_add_text(a, xml_add_child(a, e, STR_LIT("urn:x"), STR_LIT("b")),
		     STR_LIT("t<\r"));
	char *full = ser(e, NS_CLIENT);
	size_t len = strlen(full);
	for (size_t max = 1; max <= len; max++) {
		struct buf b = { .max = max };
		int rc = xml_serialize(&b, e, STR_LIT(NS_CLIENT));
		assert_int_equal(rc, max == len ? 0 : -1);
		assert_true(b.len <= max);
		if (rc == 0)
			assert_memory_equal(b.data, full, len);
		buf_reset(&b);
	}
	free(full);
	arena_destroy(&a);
}

static void test_tree_api(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *m = xml_elem_new(a, STR_LIT(NS_CLIENT),
					  STR_LIT("message"));
	assert_int_equal(xml_add_text(a, m, STR_LIT("a")), 0);
	assert_int_equal(xml_add_text(a, m, STR_LIT("b")), 0);
	assert_int_equal(xml_add_text(a, m, STR_NULL), 0);
	assert_ptr_equal(m->children, m->last_child);
	struct xml_elem *b1 = xml_add_child(a, m, STR_LIT(NS_CLIENT),
					    STR_LIT("body"));
	assert_ptr_equal(b1->ns.p, m->ns.p); /* shared, not copied */
	assert_int_equal(xml_add_text(a, m, STR_LIT("c")), 0);
	struct xml_elem *b2 = xml_add_child(a, m, STR_LIT("urn:x"),
					    STR_LIT("x"));
	struct xml_elem *b3 = xml_add_child(a, m, STR_LIT(NS_CLIENT),
					    STR_LIT("thread"));
	assert_true(str_eq_c(xml_text(a, m), "abc"));
	assert_int_equal(xml_child_count(m), 3);
	assert_ptr_equal(xml_first_child_elem(m), b1);
	assert_ptr_equal(xml_next_elem(b1), b2);
	assert_ptr_equal(xml_child(m, NS_CLIENT, "thread"), b3);
	assert_ptr_equal(xml_child(m, NULL, "x"), b2);
	assert_ptr_equal(xml_child(m, "urn:x", NULL), b2);
	assert_null(xml_child(m, "urn:y", NULL));
	assert_non_null(xml_text(a, b1).p);
	assert_int_equal(xml_text(a, b1).len, 0);

	/* attributes: order kept on replace, removal, namespaces apart */
	xml_attr_set(a, m, "to", STR_LIT("x"));
	xml_attr_set(a, m, "id", STR_LIT("1"));
	xml_attr_set_ns(a, m, "urn:z", "id", STR_LIT("2"));
	xml_attr_set(a, m, "to", STR_LIT("y"));
	assert_true(str_eq_c(m->attrs->value, "y"));
	assert_true(str_eq_c(xml_attr_get(m, "id"), "1"));
	assert_true(str_eq_c(xml_attr_get_ns(m, "urn:z", "id"), "2"));
	xml_attr_set(a, m, "id", STR_NULL);
	assert_true(str_is_null(xml_attr_get(m, "id")));
	assert_true(str_eq_c(xml_attr_get_ns(m, "urn:z", "id"), "2"));

	struct xml_elem *copy = xml_copy(a, m);
	assert_true(xml_equal(copy, m));
	assert_null(copy->node.parent);

	xml_remove_child(b2);
	assert_null(b2->node.parent);
	assert_ptr_equal(xml_next_elem(b1), b3);
	xml_remove_child(b3);
	assert_int_equal(m->last_child->type, XML_NODE_TEXT);
	xml_append_elem(m, b3);
	assert_ptr_equal(m->last_child, &b3->node);
	xml_remove_child(b1);
	xml_remove_child(b1); /* no parent: nothing to do */
	assert_int_equal(xml_child_count(m), 1);
	assert_false(xml_equal(copy, m));
	ASSERT_SER(copy, NS_CLIENT,
		   "<message to='y' xmlns:ns0='urn:z' ns0:id='2'>ab<body/>c"
		   "<x xmlns='urn:x'/><thread/></message>");
	arena_destroy(&a);
}

/* A capped arena makes the builders fail, never overflow. */
static void test_tree_cap(void **state)
{
	(void)state;
	struct arena *a = arena_new(512);
	struct xml_elem *e = xml_elem_new(a, STR_LIT("urn:long:namespace"),
					  STR_LIT("e"));
	assert_non_null(e);
	int fails = 0;
	for (int i = 0; i < 50; i++) {
		if (xml_add_child(a, e, STR_LIT("urn:other"), STR_LIT("c")) ==
		    NULL)
			fails++;
		if (xml_add_text(a, e, STR_LIT("some text")) < 0)
			fails++;
		if (xml_attr_set(a, e, "k", STR_LIT("value")) < 0)
			fails++;
	}
	assert_true(fails > 0);
	assert_true(a->used <= 512);
	assert_null(xml_copy(a, e));
	arena_destroy(&a);
}

/* XEP-0004 forms: what dataform_parse() takes and refuses. */
static struct xml_elem *form_tree(struct arena *a, const char *text)
{
	struct xml_elem *e = xml_parse_elem(a, str_c(text), STR_LIT(NS_CLIENT));
	assert_non_null(e);
	return e;
}

static void test_dataform_parse(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct dataform f;
	struct xml_elem *x = form_tree(a,
		"<x xmlns='jabber:x:data' type='submit'>"
		"<field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>"
		"<field type='fixed'><value>a label</value></field>"
		"<field var='with'><value>a@b</value></field>"
		"<field var='list' type='list-multi'><value>1</value>"
		"<value></value><value>x &amp; y</value></field>"
		"<field var='empty'/>"
		"</x>");
	assert_int_equal(dataform_parse(a, x, &f), 0);
	assert_int_equal(f.type, DATAFORM_SUBMIT);
	assert_true(str_eq_c(f.form_type, "urn:t"));
	assert_int_equal(f.nfields, 3);
	assert_true(str_eq_c(dataform_value(&f, "with"), "a@b"));
	const struct dataform_field *l = dataform_field(&f, "list");
	assert_non_null(l);
	assert_true(str_eq_c(l->type, "list-multi"));
	assert_int_equal(l->nvalues, 3);
	assert_true(str_eq_c(l->values[1], ""));
	assert_true(str_eq_c(l->values[2], "x & y"));
	assert_false(str_is_null(dataform_value(&f, "empty")));
	assert_int_equal(dataform_value(&f, "empty").len, 0);
	assert_true(str_is_null(dataform_value(&f, "nope")));
	assert_null(dataform_field(&f, "FORM_TYPE"));

	static const char *const bad[] = {
		"<x xmlns='jabber:x:data'/>",                      /* no type */
		"<x xmlns='jabber:x:data' type='maybe'/>",
		"<y xmlns='jabber:x:data' type='submit'/>",
		"<x xmlns='jabber:x:date' type='submit'/>",
		"<x xmlns='jabber:x:data' type='submit'><field/></x>",
		"<x xmlns='jabber:x:data' type='submit'><field var='a'/>"
		"<field var='a'/></x>",
		"<x xmlns='jabber:x:data' type='submit'>"
		"<field var='FORM_TYPE'/></x>",
		"<x xmlns='jabber:x:data' type='submit'><field var='a'>"
		"<value><b/></value></field></x>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (dataform_parse(a, form_tree(a, bad[i]), &f) != -1)
			fail_msg("accepted: %s", bad[i]);
	}
	bool b;
	assert_int_equal(dataform_bool(STR_LIT("true"), &b), 0);
	assert_true(b);
	assert_int_equal(dataform_bool(STR_LIT("0"), &b), 0);
	assert_false(b);
	assert_int_equal(dataform_bool(STR_LIT("yes"), &b), -1);
	arena_destroy(&a);
}

static void test_dataform_build(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *x = dataform_new(a, "form", "urn:t");
	assert_non_null(x);
	struct str vals[] = { STR_LIT("<v1>"), STR_LIT("v2") };
	struct xml_elem *fl = dataform_add_field(a, x, "f", "list-multi",
						 "A list", vals, 2);
	assert_non_null(fl);
	assert_int_equal(dataform_add_option(a, fl, "One", STR_LIT("<v1>")), 0);
	struct buf b = { 0 };
	assert_int_equal(xml_serialize(&b, x, STR_LIT(NS_CLIENT)), 0);
	assert_int_equal(buf_append(&b, "", 1), 0);
	assert_string_equal(b.data,
		"<x xmlns='jabber:x:data' type='form'>"
		"<field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>"
		"<field var='f' type='list-multi' label='A list'>"
		"<value>&lt;v1&gt;</value><value>v2</value>"
		"<option label='One'><value>&lt;v1&gt;</value></option></field>"
		"</x>");
	struct dataform f;
	assert_int_equal(dataform_parse(a, x, &f), 0);
	assert_int_equal(f.type, DATAFORM_FORM);
	assert_true(str_eq_c(f.form_type, "urn:t"));
	assert_int_equal(dataform_field(&f, "f")->nvalues, 2);
	buf_reset(&b);
	arena_destroy(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_c2s),
		cmocka_unit_test(test_stream_s2s),
		cmocka_unit_test(test_stream_trees),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_error_no_callbacks_after),
		cmocka_unit_test(test_accepted_variants),
		cmocka_unit_test(test_limit_stanza_size),
		cmocka_unit_test(test_limit_header),
		cmocka_unit_test(test_limit_stanza_as_bytes_arrive),
		cmocka_unit_test(test_no_stall),
		cmocka_unit_test(test_rescan_budget),
		cmocka_unit_test(test_limit_gap),
		cmocka_unit_test(test_limit_depth),
		cmocka_unit_test(test_limit_attrs),
		cmocka_unit_test(test_limit_tree_memory),
		cmocka_unit_test(test_pause_reset),
		cmocka_unit_test(test_pause_reset_splits),
		cmocka_unit_test(test_pause_continue),
		cmocka_unit_test(test_pause_open_and_close),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_free_partial),
		cmocka_unit_test(test_park_resume),
		cmocka_unit_test(test_park_resume_errors),
		cmocka_unit_test(test_park_gap_limit),
		cmocka_unit_test(test_recycle),
		cmocka_unit_test(test_shared_turns),
		cmocka_unit_test(test_shared_interleaved),
		cmocka_unit_test(test_shared_after_error),
		cmocka_unit_test(test_thread_parsers_freed),
		cmocka_unit_test(test_serialize_escaping),
		cmocka_unit_test(test_serialize_namespaces),
		cmocka_unit_test(test_serialize_max),
		cmocka_unit_test(test_tree_api),
		cmocka_unit_test(test_tree_cap),
		cmocka_unit_test(test_dataform_parse),
		cmocka_unit_test(test_dataform_build),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
