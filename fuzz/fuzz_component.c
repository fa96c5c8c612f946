/*
 * fuzz_component.c - libFuzzer target for the component stream (XEP-0114,
 * src/stream/component.c) without a socket: the bytes a component sends go
 * into struct component_stream through fake ops, with the fixed stream id
 * "fuzz" so that inputs can carry a right handshake (the corpus has them:
 * SHA1("fuzz" + "sesame") for gw.example).
 *
 * The first byte chooses whether registering the component fails (a
 * second stream: conflict) and where the input is cut in two feeds; the
 * rest is the stream. Besides memory errors it aborts on logic errors:
 *  - a stanza handed on before the handshake succeeded, or whose 'from' is
 *    not in the component's domain, without 'to', or with elements left in
 *    jabber:component:accept;
 *  - anything written after the stream was closed, or a second close;
 *  - output that is not a well-formed XML stream (every stanza handed on
 *    is also written back, as one routed to the component would be).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "core/conf.h"
#include "router/route.h"
#include "stream/component.h"
#include "xml/parser.h"
#include "xmpp/ns.h"

static const struct xml_limits fuzz_limits = {
	.max_stanza = 2048,
	.max_depth = 8,
	.max_attrs = 8,
};

/* Our output re-parsed: escaping may grow it, errors add a level. */
static const struct xml_limits out_limits = {
	.max_stanza = 64 * 1024,
	.max_depth = 16,
	.max_attrs = 32,
};

struct fake {
	struct component_stream *cs;
	struct buf out, scratch;
	bool closed, attach_fails, attached;
	unsigned stanzas;
};

static _Noreturn void fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_component: %s\n", what);
	abort();
}

static int fake_write(void *ud, const char *p, size_t len)
{
	struct fake *f = ud;
	if (f->closed)
		fuzz_fail("output after the stream was closed");
	return buf_append(&f->out, p, len);
}

static void fake_close(void *ud, enum stream_err err, const char *text)
{
	(void)err, (void)text;
	struct fake *f = ud;
	if (f->closed)
		fuzz_fail("closed twice");
	f->closed = true;
}

static int fake_attach(void *ud, size_t idx)
{
	(void)idx;
	struct fake *f = ud;
	if (f->attached)
		fuzz_fail("attached twice");
	if (f->attach_fails)
		return -1;
	f->attached = true;
	return 0;
}

static bool has_component_ns(const struct xml_elem *e)
{
	if (str_eq_c(e->ns, NS_COMPONENT_ACCEPT))
		return true;
	xml_foreach_child(c, e)
		if (has_component_ns(c))
			return true;
	return false;
}

static const struct config *conf;

static void fake_stanza(void *ud, struct stanza *st)
{
	struct fake *f = ud;
	if (!f->attached || !component_stream_authed(f->cs))
		fuzz_fail("a stanza before the handshake");
	int idx = component_stream_index(f->cs);
	if (!str_eq_c(st->from.domain, conf->components[idx].domain))
		fuzz_fail("a stanza from outside the component's domain");
	if (st->to.domain.len == 0)
		fuzz_fail("a stanza without 'to'");
	if (has_component_ns(st->x))
		fuzz_fail("a stanza still in jabber:component:accept");
	f->stanzas++;
	component_stream_send(f->cs, st->x);
	stanza_free(&st);
}

static const struct component_stream_ops fake_ops = {
	fake_write, fake_close, fake_attach, fake_stanza,
};

static enum xml_cb_ret out_open(void *ud, const struct xml_elem *hdr,
				struct str dns, struct str prefix)
{
	(void)ud, (void)hdr, (void)prefix;
	if (!str_eq_c(dns, NS_COMPONENT_ACCEPT))
		fuzz_fail("our header is not jabber:component:accept");
	return XML_CONTINUE;
}

static enum xml_cb_ret out_stanza(void *ud, struct xml_elem *e,
				  struct arena *a)
{
	(void)ud, (void)e;
	arena_destroy(&a);
	return XML_CONTINUE;
}

static enum xml_cb_ret out_close(void *ud)
{
	(void)ud;
	return XML_CONTINUE;
}

static const struct xml_stream_cbs out_cbs = { out_open, out_stanza,
					       out_close };

static void check_output(const struct buf *out)
{
	if (out->len == 0)
		return;
	struct xml_stream *xs = xml_stream_new(&out_limits, &out_cbs, NULL);
	enum stream_err err;
	const char *text;
	if (xml_stream_feed(xs, out->data, out->len, NULL, &err, &text) < 0) {
		fprintf(stderr, "%.*s\n", (int)out->len, out->data);
		fuzz_fail(text);
	}
	xml_stream_free(xs);
}

static void load_conf(void)
{
	static const char yaml[] =
		"hosts: [localhost]\n"
		"listeners: [{ type: component, address: 127.0.0.1, "
		"port: 5347 }]\n"
		"components:\n"
		"  - { domain: a.example, secret: first }\n"
		"  - { domain: gw.example, secret: sesame }\n";
	struct config *c;
	char *err;
	if (conf_load_string("fuzz.yml", yaml, strlen(yaml), &c, &err) < 0)
		fuzz_fail(err);
	conf = c; /* kept for the process */
}

FUZZ_TARGET(component)
{
	(void)fuzz_arena;
	if (conf == NULL)
		load_conf();
	if (size < 1)
		return;
	struct fake f = { .attach_fails = data[0] & 1 };
	size_t cut = (size - 1) * (data[0] >> 1) / 127;
	data++;
	size--;
	f.cs = component_stream_new(conf, &fuzz_limits, &fake_ops, &f, "fuzz",
				    &f.scratch);
	component_stream_feed(f.cs, (const char *)data, cut);
	component_stream_feed(f.cs, (const char *)data + cut, size - cut);
	if (f.stanzas > 0 && f.attach_fails)
		fuzz_fail("stanzas after a refused handshake");
	check_output(&f.out);
	component_stream_free(f.cs);
	buf_reset(&f.out);
	buf_reset(&f.scratch);
}
