/*
 * component.c - external components (XEP-0114, jabber:component:accept);
 * see component.h.
 *
 * The stream: the component's header names its domain (host-unknown if
 * it is not configured), we answer with our header and a fresh stream id,
 * the component sends <handshake>hex(SHA1(id + secret))</handshake>,
 * checked in constant time (not-authorized when wrong), we answer with an
 * empty <handshake/>. A second stream for a domain that is connected
 * already is refused with <conflict/> once its handshake is right, and
 * the first one stays (docs/internals/s2s.md says why). XEP-0114 has no
 * TLS: the listener belongs on loopback or a private network.
 *
 * After the handshake the component's stanzas are checked (both 'to' and
 * 'from' present, else improper-addressing; 'from' in the component's
 * domain, else invalid-from), moved from jabber:component:accept into
 * jabber:client, the namespace stanzas have everywhere else in the server,
 * and routed. Stanzas routed to it are written with jabber:client as the
 * namespace in scope, i.e. unprefixed, which the component reads in its
 * stream's default namespace.
 */
#include <stdio.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../router/components.h"
#include "../router/route.h"
#include "../router/sessions.h"
#include "../xmpp/jid.h"
#include "../xmpp/ns.h"
#include "component.h"
#include "stream.h"

/* A fixed id (fuzzing) longer than this is cut. */
#define ID_MAX 64

struct component_stream {
	struct xml_stream *xs;
	const struct config *conf;
	const struct component_stream_ops *ops;
	void *ud;
	struct buf *scratch;
	int idx; /* in conf->components; -1 until a known header */
	bool header_sent, authed, ended;
	char id[ID_MAX + 1];
};

/* ---- the handshake ---- */

void component_digest(const char *id, const char *secret,
		      char out[COMPONENT_DIGEST_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	BUG_ON(ctx == NULL);
	BUG_ON(EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
	       EVP_DigestUpdate(ctx, id, strlen(id)) != 1 ||
	       EVP_DigestUpdate(ctx, secret, strlen(secret)) != 1 ||
	       EVP_DigestFinal_ex(ctx, md, &n) != 1);
	EVP_MD_CTX_free(ctx);
	BUG_ON(n * 2 != COMPONENT_DIGEST_LEN);
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[COMPONENT_DIGEST_LEN] = '\0';
}

bool component_handshake_ok(const char *id, const char *secret,
			    struct str given)
{
	/* The length is no secret: every right answer has 40 digits. */
	if (given.len != COMPONENT_DIGEST_LEN)
		return false;
	char want[COMPONENT_DIGEST_LEN + 1], got[COMPONENT_DIGEST_LEN];
	component_digest(id, secret, want);
	/* XEP-0114 asks for lower case; upper case is accepted as Prosody
	 * does, folded without branching on the digits. */
	for (size_t i = 0; i < COMPONENT_DIGEST_LEN; i++)
		got[i] = (char)tolower((unsigned char)given.p[i]);
	bool ok = CRYPTO_memcmp(want, got, COMPONENT_DIGEST_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

/* ---- output ---- */

static const char *domain(const struct component_stream *cs)
{
	return cs->conf->components[cs->idx].domain;
}

static void end(struct component_stream *cs, enum stream_err err,
		const char *text)
{
	if (cs->ended)
		return;
	cs->ended = true;
	cs->ops->close(cs->ud, err, text);
}

static void out(struct component_stream *cs, const char *p, size_t len)
{
	if (!cs->ended && cs->ops->write(cs->ud, p, len) < 0)
		end(cs, STREAM_ERR_POLICY_VIOLATION, "output limit reached");
}

static void out_buf(struct component_stream *cs, struct buf *b)
{
	out(cs, b->data, b->len);
	buf_reset(b);
}

static void send_header(struct component_stream *cs)
{
	struct buf b = { 0 };
	buf_append_c(&b, "<?xml version='1.0'?><stream:stream xmlns:stream='"
			 NS_STREAMS "' xmlns='" NS_COMPONENT_ACCEPT "'");
	if (cs->idx >= 0) {
		buf_append_c(&b, " from='");
		buf_append_xml_escaped(&b, str_c(domain(cs)), true);
		buf_append_c(&b, "'");
	}
	buf_append_c(&b, " id='");
	buf_append_xml_escaped(&b, str_c(cs->id), true);
	buf_append_c(&b, "'>");
	out_buf(cs, &b);
	cs->header_sent = true;
}

void component_stream_fail(struct component_stream *cs, enum stream_err err,
			   const char *text)
{
	if (cs->ended)
		return;
	if (!cs->header_sent)
		send_header(cs);
	struct buf b = { 0 };
	stream_error_append(&b, err, text);
	out_buf(cs, &b);
	end(cs, err, text);
}

void component_stream_send(struct component_stream *cs,
			   const struct xml_elem *x)
{
	if (cs->ended || !cs->authed)
		return;
	struct buf *b = cs->scratch;
	b->len = 0;
	if (xml_serialize(b, x, STR_LIT(NS_CLIENT)) < 0)
		end(cs, STREAM_ERR_POLICY_VIOLATION, "stanza too big");
	else
		out(cs, b->data, b->len);
	/* Don't let one huge stanza pin a big buffer. */
	if (b->cap > 64 * 1024)
		buf_reset(b);
}

/* ---- input ---- */

static enum xml_cb_ret on_stream_open(void *ud, const struct xml_elem *hdr,
				      struct str default_ns, struct str prefix)
{
	(void)prefix;
	struct component_stream *cs = ud;
	if (cs->ended)
		return XML_PAUSE;
	struct str to = xml_attr_get(hdr, "to");
	if (to.p != NULL) {
		struct arena *a = arena_new(0);
		struct str prepped;
		const char *why;
		if (jid_nameprep(a, to, &prepped, &why) == 0)
			cs->idx = conf_find_component(cs->conf, prepped.p,
						      prepped.len);
		arena_destroy(&a);
	}
	if (!str_eq_c(hdr->ns, NS_STREAMS) || !str_eq_c(hdr->name, "stream"))
		component_stream_fail(cs, STREAM_ERR_INVALID_NAMESPACE,
				      "not an XMPP stream");
	else if (!str_eq_c(default_ns, NS_COMPONENT_ACCEPT))
		component_stream_fail(cs, STREAM_ERR_INVALID_NAMESPACE,
				      "default namespace must be "
				      NS_COMPONENT_ACCEPT);
	else if (cs->idx < 0)
		component_stream_fail(cs, STREAM_ERR_HOST_UNKNOWN,
				      "no component of that domain");
	else
		send_header(cs);
	return cs->ended ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret on_stream_close(void *ud)
{
	struct component_stream *cs = ud;
	out(cs, "</stream:stream>", strlen("</stream:stream>"));
	end(cs, STREAM_ERR_NONE, NULL);
	return XML_PAUSE;
}

static void on_handshake(struct component_stream *cs, struct xml_elem *x,
			 struct arena *a)
{
	BUG_ON(cs->idx < 0); /* no stanzas before a known header */
	bool ok = component_handshake_ok(cs->id,
					 cs->conf->components[cs->idx].secret,
					 xml_text(a, x));
	arena_destroy(&a);
	if (!ok) {
		component_stream_fail(cs, STREAM_ERR_NOT_AUTHORIZED,
				      "handshake failed");
	} else if (cs->ops->attach(cs->ud, (size_t)cs->idx) < 0) {
		component_stream_fail(cs, STREAM_ERR_CONFLICT,
				      "the component is connected already");
	} else {
		cs->authed = true;
		out(cs, "<handshake/>", strlen("<handshake/>"));
	}
}

/* Stanzas of the component's stream are in its default namespace; in the
 * server they are jabber:client like every other. */
static void to_client_ns(struct xml_elem *e)
{
	if (str_eq_c(e->ns, NS_COMPONENT_ACCEPT))
		e->ns = STR_LIT(NS_CLIENT);
	xml_foreach_child(c, e)
		to_client_ns(c);
}

/* Answers x (consumed with a) with error err, to the component. */
static void reply_error(struct component_stream *cs, struct xml_elem *x,
			struct arena *a, enum stanza_err err)
{
	struct str from = xml_attr_get(x, "from");
	struct str to = xml_attr_get(x, "to");
	xml_attr_set(a, x, "from", to);
	xml_attr_set(a, x, "to", from);
	stanza_set_error(a, x, err, NULL);
	component_stream_send(cs, x);
	arena_destroy(&a);
}

static void on_stanza(struct component_stream *cs, struct xml_elem *x,
		      struct arena *a)
{
	to_client_ns(x);
	struct str from = xml_attr_get(x, "from");
	struct str to = xml_attr_get(x, "to");
	struct jid j;
	const char *why;
	if (from.p == NULL || to.p == NULL) {
		arena_destroy(&a);
		component_stream_fail(cs, STREAM_ERR_IMPROPER_ADDRESSING,
				      "a stanza needs 'from' and 'to'");
		return;
	}
	/* XEP-0114 §3: any address in the component's domain. */
	if (jid_parse(a, from, &j, &why) < 0 ||
	    !str_eq_c(j.domain, domain(cs))) {
		arena_destroy(&a);
		component_stream_fail(cs, STREAM_ERR_INVALID_FROM,
				      "'from' is not in the component's "
				      "domain");
		return;
	}
	struct str type = xml_attr_get(x, "type");
	bool error = str_eq_c(type, "error");
	if (str_eq_c(x->name, "iq") && !stanza_iq_well_formed(x, type)) {
		if (error)
			arena_destroy(&a);
		else
			reply_error(cs, x, a, STANZA_ERR_BAD_REQUEST);
		return;
	}
	/* The normalised address, as recipients compare it. */
	if (xml_attr_set(a, x, "from", jid_to_str(a, &j, false)) < 0) {
		arena_destroy(&a);
		component_stream_fail(cs, STREAM_ERR_POLICY_VIOLATION,
				      "stanza too big");
		return;
	}
	enum stanza_err err;
	struct stanza *st = stanza_wrap(a, x, &j, &err);
	if (st == NULL) {
		if (error)
			arena_destroy(&a);
		else
			reply_error(cs, x, a, err);
		return;
	}
	cs->ops->stanza(cs->ud, st);
}

static bool is_stanza(const struct xml_elem *x)
{
	return str_eq_c(x->name, "message") || str_eq_c(x->name, "presence") ||
	       str_eq_c(x->name, "iq");
}

static enum xml_cb_ret on_xml_stanza(void *ud, struct xml_elem *x,
				     struct arena *a)
{
	struct component_stream *cs = ud;
	bool ours = str_eq_c(x->ns, NS_COMPONENT_ACCEPT);
	if (cs->ended) {
		arena_destroy(&a);
	} else if (!cs->authed) {
		if (ours && str_eq_c(x->name, "handshake")) {
			on_handshake(cs, x, a);
		} else {
			arena_destroy(&a);
			component_stream_fail(cs, STREAM_ERR_NOT_AUTHORIZED,
					      "handshake first");
		}
	} else if (ours && is_stanza(x)) {
		on_stanza(cs, x, a);
	} else {
		bool other_ns = str_eq_c(x->ns, NS_CLIENT) ||
				str_eq_c(x->ns, NS_SERVER);
		arena_destroy(&a);
		if (other_ns)
			component_stream_fail(cs, STREAM_ERR_INVALID_NAMESPACE,
					      "stanzas of a component stream "
					      "are " NS_COMPONENT_ACCEPT);
		else
			component_stream_fail(
				cs, STREAM_ERR_UNSUPPORTED_STANZA_TYPE,
				"unknown first-level element");
	}
	return cs->ended ? XML_PAUSE : XML_CONTINUE;
}

static const struct xml_stream_cbs xml_cbs = {
	.stream_open = on_stream_open,
	.stanza = on_xml_stanza,
	.stream_close = on_stream_close,
};

/* ---- the stream object ---- */

struct component_stream *component_stream_new(
	const struct config *conf, const struct xml_limits *lim,
	const struct component_stream_ops *ops, void *ud, const char *id,
	struct buf *scratch)
{
	struct component_stream *cs = xcalloc(1, sizeof(*cs));
	cs->conf = conf;
	cs->ops = ops;
	cs->ud = ud;
	cs->scratch = scratch;
	cs->idx = -1;
	if (id != NULL)
		snprintf(cs->id, sizeof(cs->id), "%s", id);
	else
		stream_new_id(cs->id);
	cs->xs = xml_stream_new(lim, &xml_cbs, cs);
	return cs;
}

void component_stream_free(struct component_stream *cs)
{
	if (cs == NULL)
		return;
	xml_stream_free(cs->xs);
	free(cs);
}

void component_stream_feed(struct component_stream *cs, const char *p,
			   size_t len)
{
	if (cs->ended)
		return;
	enum stream_err err;
	const char *why;
	if (xml_stream_feed(cs->xs, p, len, NULL, &err, &why) < 0)
		component_stream_fail(cs, err, why);
}

bool component_stream_authed(const struct component_stream *cs)
{
	return cs->authed;
}

int component_stream_index(const struct component_stream *cs)
{
	return cs->idx;
}

/* ---- the connection ---- */

struct component {
	struct conn conn; /* first: the conn callbacks cast back */
	struct component_stream *cs;
	bool attached;
	size_t idx;
};

static struct xml_limits xml_limits;

static int comp_write(void *ud, const char *p, size_t len)
{
	struct component *c = ud;
	return conn_write(&c->conn, p, len);
}

static void comp_close(void *ud, enum stream_err err, const char *text)
{
	struct component *c = ud;
	if (err != STREAM_ERR_NONE)
		conn_log(LOG_LEVEL_INFO, &c->conn, "stream error %s: %s",
			 stream_err_name(err), text ? text : "");
	else
		conn_debug(&c->conn, "stream closed by peer");
	conn_close(&c->conn);
}

static int comp_attach(void *ud, size_t idx)
{
	struct component *c = ud;
	const char *name = server.conf->components[idx].domain;
	struct sess_ref ref = {
		.shard = c->conn.shard->id,
		.conn_id = c->conn.id,
	};
	if (components_attach(idx, &ref) < 0) {
		conn_log(LOG_LEVEL_WARN, &c->conn, "component %s is connected "
			 "already: refused", name);
		return -1;
	}
	c->attached = true;
	c->idx = idx;
	conn_set_timer(&c->conn, 0);
	conn_log(LOG_LEVEL_INFO, &c->conn, "component %s connected from %s",
		 name, c->conn.ip);
	return 0;
}

static void comp_stanza(void *ud, struct stanza *st)
{
	(void)ud;
	route(st);
}

static const struct component_stream_ops stream_ops = {
	.write = comp_write,
	.close = comp_close,
	.attach = comp_attach,
	.stanza = comp_stanza,
};

static void comp_data(struct conn *conn, const char *p, size_t len)
{
	component_stream_feed(((struct component *)conn)->cs, p, len);
}

static void comp_timeout(struct conn *conn)
{
	component_stream_fail(((struct component *)conn)->cs,
			      STREAM_ERR_CONNECTION_TIMEOUT,
			      "handshake took too long");
}

static void comp_deliver(struct conn *conn, struct stanza *st)
{
	struct component *c = (struct component *)conn;
	/* Presence requests (STANZA_OP_PRESENCE_TO...) are for client
	 * sessions; a component keeps its own presence. */
	if (st->op == STANZA_OP_DELIVER && !conn_closing(conn))
		component_stream_send(c->cs, st->x);
	stanza_free(&st);
}

static void comp_kick(struct conn *conn, enum stream_err err,
		      const char *text)
{
	component_stream_fail(((struct component *)conn)->cs, err, text);
}

static void comp_destroy(struct conn *conn)
{
	struct component *c = (struct component *)conn;
	if (c->attached) {
		components_detach(c->idx, conn->id);
		conn_log(LOG_LEVEL_INFO, conn, "component %s disconnected",
			 server.conf->components[c->idx].domain);
	}
	conn_debug(conn, "closed");
	component_stream_free(c->cs);
	free(c);
}

static void comp_describe(const struct conn *conn, struct conn_info *ci)
{
	const struct component *c = (const struct component *)conn;
	ci->kind = CONN_KIND_COMPONENT;
	ci->ready = c->attached;
	if (c->attached)
		snprintf(ci->peer, sizeof(ci->peer), "%s",
			 server.conf->components[c->idx].domain);
}

static const struct conn_ops conn_ops = {
	.data = comp_data,
	.timeout = comp_timeout,
	.destroy = comp_destroy,
	.deliver = comp_deliver,
	.kick = comp_kick,
	.describe = comp_describe,
};

void component_init(void)
{
	stream_xml_limits(&xml_limits);
	components_init();
}

void component_fini(void)
{
	components_fini();
}

void component_accept(struct shard *s, int fd, const struct sockaddr *peer,
		      const struct listener_conf *lc)
{
	const struct limits_conf *lim = &server.conf->limits;
	struct component *c = xcalloc(1, sizeof(*c));
	c->cs = component_stream_new(server.conf, &xml_limits, &stream_ops, c,
				     NULL, &s->scratch);
	if (conn_accept(&c->conn, s, fd, peer, &conn_ops, lim->max_output) < 0)
		return;
	unsigned n = conn_ip_acquire(&c->conn);
	conn_debug(&c->conn, "accepted from %s on %s port %u", c->conn.ip,
		   listener_type_name(lc->type), lc->port);
	if (n > lim->max_conns_per_ip || conn_count() > lim->max_connections) {
		component_stream_fail(c->cs, STREAM_ERR_POLICY_VIOLATION,
				      "too many connections");
		return;
	}
	conn_set_timer(&c->conn, lim->auth_timeout_ms);
}
