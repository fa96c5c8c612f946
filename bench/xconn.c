/*
 * xconn.c - one XMPP client connection of the load generator: TCP (bound
 * to a cycling 127.x source address), STARTTLS (RFC 6120 §5) through
 * OpenSSL memory BIOs, SCRAM (§6), resource binding (§7), the legacy
 * session iq when advertised as required (RFC 3921 §3), roster get and
 * initial presence (RFC 6121 §2.2, §4.2), and XEP-0077 registration.
 * Every received stanza is parsed in full (expat, namespaces, limits on
 * depth and size) into a tree. Invariants: the struct is freed only after
 * both libuv handles are closed, so it is valid in every callback; a
 * stream restart (after <proceed/> and <success/>) happens only between
 * parser calls, and no byte may follow the restart point in that read.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <openssl/err.h>

#include "loadgen-private.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_CLIENT "jabber:client"
#define NS_ROSTER "jabber:iq:roster"
#define NS_REGISTER "jabber:iq:register"
#define NS_PING "urn:xmpp:ping"

#define LG_MAX_DEPTH 64
#define LG_MAX_STANZA (4u << 20)
#define LG_HANDSHAKE_MS 30000
#define LG_CLOSE_MS 5000

/* A piece of the raw input kept by lg_conn_capture. */
struct lg_chunk {
	struct lg_chunk *next;
	size_t len;
	char data[];
};

static void conn_dispatch(struct lg_conn *c, struct lg_elem *st);
static void conn_send_header(struct lg_conn *c);
static void xml_setup(struct lg_conn *c);

static const char *const phase_names[LG_PHASE_COUNT] = {
	[LG_CONNECTING] = "connect",
	[LG_FEATURES_PLAIN] = "features",
	[LG_STARTTLS] = "starttls",
	[LG_HANDSHAKE] = "tls-handshake",
	[LG_FEATURES_TLS] = "features-tls",
	[LG_REGISTER] = "register",
	[LG_SASL] = "sasl",
	[LG_FEATURES_AUTH] = "features-auth",
	[LG_BIND] = "bind",
	[LG_SESSION] = "session",
	[LG_ROSTER] = "roster",
	[LG_ONLINE] = "online",
	[LG_CLOSING] = "closing",
	[LG_CLOSED] = "closed",
};

const char *lg_phase_name(enum lg_phase p)
{
	return p < LG_PHASE_COUNT ? phase_names[p] : "?";
}

/* ---- received trees ---- */

const char *lg_attr(const struct lg_elem *e, const char *name)
{
	for (const char **a = e->attrs; a && a[0]; a += 2)
		if (strcmp(a[0], name) == 0)
			return a[1];
	return NULL;
}

struct lg_elem *lg_child(const struct lg_elem *e, const char *ns,
			 const char *name)
{
	for (struct lg_elem *k = e->child; k; k = k->next)
		if (strcmp(k->name, name) == 0 && (!ns || !strcmp(k->ns, ns)))
			return k;
	return NULL;
}

const char *lg_text(const struct lg_elem *e)
{
	return e && e->text ? e->text : "";
}

const char *lg_condition(const struct lg_elem *e, const char *ns)
{
	for (struct lg_elem *k = e ? e->child : NULL; k; k = k->next)
		if (strcmp(k->ns, ns) == 0 && strcmp(k->name, "text") != 0)
			return k->name;
	return "undefined-condition";
}

/* ---- lifetime ---- */

static void conn_free(struct lg_conn *c)
{
	struct lg_run *run = c->run;
	if (c->fail)
		lg_counts_add(&run->fails, c->fail, 1);
	c->ops->closed(c);
	if (c->ssl)
		SSL_free(c->ssl); /* frees both BIOs */
	if (c->xp)
		XML_ParserFree(c->xp);
	lg_arena_reset(&c->arena);
	lg_sbuf_free(&c->text);
	lg_sbuf_free(&c->out);
	lg_scram_clear(&c->scram);
	while (c->cap_head) {
		struct lg_chunk *k = c->cap_head;
		c->cap_head = k->next;
		free(k);
	}
	free(c->jid);
	free(c->fail_owned);
	free(c);
	run->live--;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct lg_conn *c = h->data;
	if (--c->handles == 0)
		conn_free(c);
}

/* Closes the handles; pending writes are cancelled (their callbacks run
 * before the close callbacks). */
static void conn_finish(struct lg_conn *c)
{
	if (c->phase == LG_CLOSED)
		return;
	c->phase = LG_CLOSED;
	if (c->in_parse)
		XML_StopParser(c->xp, XML_FALSE);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (c->tcp_inited && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void lg_conn_fail(struct lg_conn *c, const char *reason)
{
	if (c->phase == LG_CLOSED)
		return;
	free(c->fail_owned);
	c->fail_owned = lg_xasprintf("%s@%s", reason, lg_phase_name(c->phase));
	c->fail = c->fail_owned;
	ERR_clear_error();
	conn_finish(c);
}

static void on_timer(uv_timer_t *t)
{
	struct lg_conn *c = t->data;
	lg_conn_fail(c, c->phase == LG_CLOSING ? "close-timeout" : "timeout");
}

/* ---- output ---- */

struct lg_write {
	uv_write_t req;
	struct lg_conn *c;
	char data[];
};

static void on_write(uv_write_t *req, int status)
{
	struct lg_write *w = (struct lg_write *)req;
	struct lg_conn *c = w->c;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		lg_conn_fail(c, "write-error");
}

static void tcp_write(struct lg_conn *c, const void *data, size_t len)
{
	if (c->phase == LG_CLOSED || len == 0)
		return;
	if (c->corked) {
		lg_sbuf_add(&c->out, data, len);
		return;
	}
	/* Straight to the socket when nothing is queued (libuv refuses
	 * with UV_EAGAIN while earlier writes wait, which keeps the order):
	 * no request to allocate, and no poll-for-writable round trip
	 * through epoll_ctl for a write that the kernel takes at once. */
	uv_buf_t direct = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &direct, 1);
	if (n == (int)len)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		lg_conn_fail(c, "write-error");
		return;
	}
	if (n > 0) {
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	struct lg_write *w = lg_xmalloc(sizeof(*w) + len);
	w->c = c;
	memcpy(w->data, data, len);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (r < 0) {
		free(w);
		lg_conn_fail(c, "write-error");
	}
}

/* Sends what was written while the connection was corked, in one write:
 * the answers to one read (such as TLS Finished and the new stream
 * header, or presence and </stream:stream>) share a segment, as they
 * would from a client that writes once per event. */
static void conn_uncork(struct lg_conn *c)
{
	c->corked = false;
	if (c->out.len)
		tcp_write(c, c->out.p, c->out.len);
	c->out.len = 0;
}

/* Moves what OpenSSL produced to the socket. */
static void tls_flush(struct lg_conn *c)
{
	char tmp[16384];
	int n;
	while (c->ssl && (n = BIO_read(c->net_out, tmp, sizeof(tmp))) > 0)
		tcp_write(c, tmp, (size_t)n);
}

void lg_conn_send(struct lg_conn *c, const char *xml, size_t len)
{
	if (c->phase == LG_CLOSED || len == 0)
		return;
	if (!c->ssl) {
		tcp_write(c, xml, len);
		return;
	}
	/* Memory BIOs never block: SSL_write takes everything or fails. */
	if (SSL_write(c->ssl, xml, (int)len) <= 0) {
		lg_conn_fail(c, "tls-write");
		return;
	}
	tls_flush(c);
}

void lg_conn_sends(struct lg_conn *c, const char *xml)
{
	lg_conn_send(c, xml, strlen(xml));
}

const char *lg_conn_next_id(struct lg_conn *c, char *buf, size_t size)
{
	snprintf(buf, size, "lg%u", ++c->id_seq);
	return buf;
}

static void conn_send_header(struct lg_conn *c)
{
	char *h = lg_xasprintf("<?xml version='1.0'?><stream:stream xmlns='"
			       NS_CLIENT "' xmlns:stream='" NS_STREAMS
			       "' to='%s' version='1.0' xml:lang='en'>",
			       c->run->o.domain);
	lg_conn_sends(c, h);
	free(h);
}

/* ---- clean close ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
	conn_finish(req->data);
}

/* The server ended its stream after ours: close_notify, then FIN. */
static void conn_close_transport(struct lg_conn *c)
{
	if (c->ssl && c->tls_done) {
		SSL_shutdown(c->ssl);
		tls_flush(c);
	}
	if (c->phase == LG_CLOSED)
		return;
	conn_uncork(c); /* the FIN after everything */
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
			on_shutdown) < 0)
		conn_finish(c);
}

void lg_conn_close(struct lg_conn *c)
{
	if (c->phase >= LG_CLOSING)
		return;
	if (c->phase == LG_CONNECTING || c->phase == LG_HANDSHAKE) {
		lg_conn_fail(c, "aborted");
		return;
	}
	lg_conn_sends(c, "</stream:stream>");
	if (c->phase == LG_CLOSED)
		return;
	c->phase = LG_CLOSING;
	/* From now, not from the loop's cached time: a caller may have run
	 * long (burst replays seconds of captured input before closing),
	 * and the next iteration runs due timers before it reads the
	 * server's answers. */
	uv_update_time(c->timer.loop);
	uv_timer_start(&c->timer, on_timer, LG_CLOSE_MS, 0);
}

/* ---- XML input ---- */

/* Appends the pending character data to the current element. */
static bool xml_flush_text(struct lg_conn *c)
{
	struct lg_elem *e = c->cur;
	if (!e || c->text.len == 0)
		return true;
	char *t = lg_arena_alloc(&c->arena, e->text_len + c->text.len + 1);
	if (!t)
		return false;
	if (e->text_len)
		memcpy(t, e->text, e->text_len);
	memcpy(t + e->text_len, c->text.p, c->text.len);
	e->text_len += c->text.len;
	t[e->text_len] = '\0';
	e->text = t;
	c->text.len = 0;
	return true;
}

static char *arena_strdup(struct lg_arena *a, const char *s, size_t n)
{
	char *p = lg_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* Builds an element from expat's "ns local" name and attributes. */
static struct lg_elem *xml_new_elem(struct lg_conn *c, const char *name,
				    const char **atts)
{
	struct lg_arena *a = &c->arena;
	struct lg_elem *e = lg_arena_alloc(a, sizeof(*e));
	if (!e)
		return NULL;
	*e = (struct lg_elem){ 0 };
	const char *sp = strrchr(name, ' ');
	e->ns = sp ? arena_strdup(a, name, (size_t)(sp - name)) : "";
	const char *local = sp ? sp + 1 : name;
	e->name = arena_strdup(a, local, strlen(local));
	size_t n = 0;
	while (atts[n])
		n++;
	e->attrs = lg_arena_alloc(a, (n + 1) * sizeof(*e->attrs));
	if (!e->ns || !e->name || !e->attrs)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(e->attrs[i] = arena_strdup(a, atts[i], strlen(atts[i]))))
			return NULL;
	e->attrs[n] = NULL;
	return e;
}

static bool xml_ignoring(struct lg_conn *c)
{
	return c->phase == LG_CLOSED || c->restart;
}

static void xml_stream_start(struct lg_conn *c, const char *name)
{
	if (strcmp(name, NS_STREAMS " stream") != 0)
		lg_conn_fail(c, "bad-stream-header");
}

static void xml_start(void *ud, const char *name, const char **atts)
{
	struct lg_conn *c = ud;
	if (xml_ignoring(c))
		return;
	if (++c->depth == 1) {
		xml_stream_start(c, name);
		return;
	}
	if (c->depth > LG_MAX_DEPTH) {
		lg_conn_fail(c, "xml-too-deep");
		return;
	}
	struct lg_elem *e = NULL;
	if (xml_flush_text(c))
		e = xml_new_elem(c, name, atts);
	if (!e) {
		lg_conn_fail(c, "stanza-too-large");
		return;
	}
	e->parent = c->cur;
	if (c->cur) {
		if (c->cur->last)
			c->cur->last->next = e;
		else
			c->cur->child = e;
		c->cur->last = e;
	}
	c->cur = e;
}

/* Marks where the stream restarts (just after the current element). */
static void xml_mark_restart(struct lg_conn *c)
{
	c->restart = true;
	c->restart_at = (long)XML_GetCurrentByteIndex(c->xp) +
			XML_GetCurrentByteCount(c->xp);
	XML_StopParser(c->xp, XML_FALSE);
}

static void xml_end(void *ud, const char *name)
{
	struct lg_conn *c = ud;
	if (xml_ignoring(c))
		return;
	if (c->depth == 1) {
		c->depth = 0;
		c->server_ended = true;
		if (c->phase == LG_CLOSING)
			conn_close_transport(c);
		else
			lg_conn_fail(c, "server-ended-stream");
		return;
	}
	if (!xml_flush_text(c)) {
		lg_conn_fail(c, "stanza-too-large");
		return;
	}
	struct lg_elem *e = c->cur;
	c->cur = e->parent;
	if (--c->depth > 1)
		return;
	conn_dispatch(c, e);
	c->cur = NULL;
	lg_arena_reset(&c->arena);
}

static void xml_text(void *ud, const char *s, int len)
{
	struct lg_conn *c = ud;
	if (xml_ignoring(c) || c->depth < 2)
		return; /* whitespace between stanzas */
	if (c->text.len + (size_t)len > LG_MAX_STANZA) {
		lg_conn_fail(c, "stanza-too-large");
		return;
	}
	lg_sbuf_add(&c->text, s, (size_t)len);
}

/* RFC 6120 §11.1: no DTD in XMPP (and none for entity bombs). */
static void xml_doctype(void *ud, const char *name, const char *sysid,
			const char *pubid, int has_internal)
{
	struct lg_conn *c = ud;
	if (!xml_ignoring(c))
		lg_conn_fail(c, "xml-doctype");
}

static void xml_setup(struct lg_conn *c)
{
	if (!c->xp)
		c->xp = XML_ParserCreateNS(NULL, ' ');
	else
		XML_ParserReset(c->xp, NULL);
	if (!c->xp) {
		fputs("loadgen: out of memory\n", stderr);
		abort();
	}
	XML_SetUserData(c->xp, c);
	XML_SetElementHandler(c->xp, xml_start, xml_end);
	XML_SetCharacterDataHandler(c->xp, xml_text);
	XML_SetStartDoctypeDeclHandler(c->xp, xml_doctype);
	c->depth = 0;
	c->fed = 0;
	c->cur = NULL;
	c->text.len = 0;
	lg_arena_reset(&c->arena);
}

static void tls_start(struct lg_conn *c);

/* After <proceed/> or <success/>: a fresh parser, then TLS or the new
 * stream header. */
static void conn_restart(struct lg_conn *c, long total)
{
	c->restart = false;
	/* RFC 6120 §5.4.3.3 / §6.4.6: the server sends nothing more until
	 * our new stream header; bytes here would be injected plaintext. */
	if (total > c->restart_at) {
		lg_conn_fail(c, "data-after-restart");
		return;
	}
	xml_setup(c);
	if (c->phase == LG_HANDSHAKE)
		tls_start(c);
	else
		conn_send_header(c);
}

static void xml_input(struct lg_conn *c, const char *data, size_t len)
{
	if (c->phase == LG_CLOSED)
		return;
	c->in_parse = true;
	enum XML_Status st = XML_Parse(c->xp, data, (int)len, XML_FALSE);
	c->in_parse = false;
	c->fed += (long)len;
	if (c->phase == LG_CLOSED)
		return;
	if (c->restart)
		conn_restart(c, c->fed);
	else if (st != XML_STATUS_OK)
		lg_conn_fail(c, "xml-error");
}

/* ---- TLS ---- */

static void tls_handshake(struct lg_conn *c)
{
	int r = SSL_do_handshake(c->ssl);
	tls_flush(c);
	if (r == 1) {
		c->tls_done = true;
		c->phase = LG_FEATURES_TLS;
		conn_send_header(c);
		return;
	}
	int err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return;
	long v = SSL_get_verify_result(c->ssl);
	lg_conn_fail(c, v != X509_V_OK ? "tls-verify" : "tls-handshake");
}

static void tls_start(struct lg_conn *c)
{
	struct lg_run *run = c->run;
	c->ssl = SSL_new(run->ssl_ctx);
	c->net_in = BIO_new(BIO_s_mem());
	c->net_out = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->net_in || !c->net_out) {
		fputs("loadgen: out of memory (TLS)\n", stderr);
		abort();
	}
	BIO_set_mem_eof_return(c->net_in, -1);
	SSL_set_bio(c->ssl, c->net_in, c->net_out);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, run->o.domain);
	if (run->o.tls_verify)
		SSL_set1_host(c->ssl, run->o.domain);
	tls_handshake(c);
}

static void tls_input(struct lg_conn *c, const char *data, size_t len)
{
	if (BIO_write(c->net_in, data, (int)len) != (int)len) {
		lg_conn_fail(c, "tls-bio");
		return;
	}
	if (!c->tls_done) {
		tls_handshake(c);
		if (!c->tls_done)
			return;
	}
	static _Thread_local char plain[16384];
	int r = 0;
	while (c->phase != LG_CLOSED &&
	       (r = SSL_read(c->ssl, plain, sizeof(plain))) > 0)
		xml_input(c, plain, (size_t)r);
	if (c->phase == LG_CLOSED)
		return;
	int err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_ZERO_RETURN) {
		/* close_notify after the server's </stream:stream> is the
		 * normal end; our shutdown callback finishes the close. */
		if (!c->server_ended)
			lg_conn_fail(c, "tls-closed");
	} else if (err != SSL_ERROR_WANT_READ)
		lg_conn_fail(c, "tls-read");
	else
		tls_flush(c);
}

/* ---- TCP ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	/* One buffer per loop thread; each read is consumed before the next. */
	static _Thread_local char rbuf[65536];
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct lg_conn *c = s->data;
	if (n == 0 || c->phase == LG_CLOSED)
		return;
	if (n < 0) {
		if (c->server_ended || c->phase == LG_CLOSING)
			conn_finish(c);
		else
			lg_conn_fail(c, n == UV_EOF ? "eof" : "read-error");
		return;
	}
	c->corked = true;
	if (c->ssl)
		tls_input(c, buf->base, (size_t)n);
	else
		xml_input(c, buf->base, (size_t)n);
	conn_uncork(c);
}

/* ---- pre-encrypted traffic and raw capture (the burst scenario) ---- */

bool lg_conn_seal(struct lg_conn *c, const char *xml, size_t len,
		  struct lg_sbuf *out)
{
	if (c->phase != LG_ONLINE || !c->ssl || len == 0)
		return false;
	if (SSL_write(c->ssl, xml, (int)len) <= 0) {
		lg_conn_fail(c, "tls-write");
		return false;
	}
	char tmp[16384];
	int n;
	while ((n = BIO_read(c->net_out, tmp, sizeof(tmp))) > 0)
		lg_sbuf_add(out, tmp, (size_t)n);
	return true;
}

int lg_conn_write_raw(struct lg_conn *c, uv_write_t *req, const char *data,
		      size_t len, uv_write_cb cb)
{
	/* Anything held back would carry earlier TLS sequence numbers. */
	if (c->phase == LG_CLOSED || c->corked || c->out.len)
		return UV_EINVAL;
	if (len > UINT_MAX)
		return UV_E2BIG; /* a uv_buf_t's length */
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	return uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, cb);
}

uint64_t lg_conn_unsent(struct lg_conn *c)
{
	uv_os_fd_t fd;
	int n = 0;
	if (c->phase == LG_CLOSED ||
	    uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
	    ioctl(fd, SIOCOUTQ, &n) != 0)
		return 0;
	return c->tcp.write_queue_size + (uint64_t)(n > 0 ? n : 0);
}

/* The free tail of the newest chunk, or a new chunk: the kernel copies
 * straight into the store, nothing is moved afterwards. */
static void on_capture_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lg_conn *c = h->data;
	struct lg_chunk *k = c->cap_tail;
	if (!k || k->len == c->cap_chunk) {
		k = lg_xmalloc(sizeof(*k) + c->cap_chunk);
		k->next = NULL;
		k->len = 0;
		if (c->cap_tail)
			c->cap_tail->next = k;
		else
			c->cap_head = k;
		c->cap_tail = k;
	}
	*buf = uv_buf_init(k->data + k->len, (unsigned)(c->cap_chunk - k->len));
}

static void on_capture_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct lg_conn *c = s->data;
	if (n == 0 || c->phase == LG_CLOSED)
		return;
	if (n < 0) {
		/* Handled in order at the replay, after the bytes before it. */
		c->cap_end = (int)n;
		uv_read_stop(s);
		return;
	}
	c->cap_tail->len += (size_t)n;
	c->cap_bytes += (uint64_t)n;
	c->cap_last = lg_now_ns();
}

void lg_conn_capture(struct lg_conn *c, size_t chunk)
{
	if (c->phase == LG_CLOSED || c->cap_chunk)
		return;
	c->cap_chunk = chunk;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_capture_alloc,
			  on_capture_read) < 0)
		lg_conn_fail(c, "read-start");
}

void lg_conn_replay(struct lg_conn *c)
{
	if (!c->cap_chunk)
		return;
	c->cap_chunk = 0;
	if (c->phase != LG_CLOSED)
		uv_read_stop((uv_stream_t *)&c->tcp);
	struct lg_chunk *k;
	while ((k = c->cap_head)) {
		c->cap_head = k->next;
		if (k->len && c->phase != LG_CLOSED) {
			uv_buf_t b = uv_buf_init(k->data, (unsigned)k->len);
			on_read((uv_stream_t *)&c->tcp, (ssize_t)k->len, &b);
		}
		free(k);
	}
	c->cap_tail = NULL;
	if (c->phase == LG_CLOSED)
		return;
	if (c->cap_end) {
		on_read((uv_stream_t *)&c->tcp, c->cap_end, NULL);
		return;
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
		lg_conn_fail(c, "read-start");
}

static void on_connect(uv_connect_t *req, int status)
{
	struct lg_conn *c = req->data;
	if (c->phase == LG_CLOSED)
		return;
	if (status < 0) {
		lg_conn_fail(c, uv_err_name(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
		lg_conn_fail(c, "read-start");
		return;
	}
	c->phase = LG_FEATURES_PLAIN;
	conn_send_header(c);
}

/* Socket, source address, connect. Returns 0 or a libuv error. */
static int tcp_open(struct lg_conn *c)
{
	struct lg_run *run = c->run;
	int r = uv_tcp_init_ex(run->loop, &c->tcp, run->dst.ss_family);
	if (r < 0)
		return r;
	c->tcp_inited = true;
	c->handles++;
	c->tcp.data = c;
	struct sockaddr_in src;
	if (lg_next_source(run, &src)) {
		/* Bind the address only, so the kernel picks the port at
		 * connect time per 4-tuple: each source address then has
		 * its own ~28k ports towards the server. */
		uv_os_fd_t fd;
		int one = 1;
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
				   &one, sizeof(one));
		r = uv_tcp_bind(&c->tcp, (struct sockaddr *)&src, 0);
		if (r < 0)
			return r;
	}
	c->connect_req.data = c;
	return uv_tcp_connect(&c->connect_req, &c->tcp,
			      (struct sockaddr *)&run->dst, on_connect);
}

struct lg_conn *lg_conn_open(struct lg_run *run, int user, unsigned flags,
			     const struct lg_conn_ops *ops, void *owner,
			     int slot)
{
	struct lg_conn *c = lg_xcalloc(1, sizeof(*c));
	c->run = run;
	c->ops = ops;
	c->owner = owner;
	c->user = user;
	c->slot = slot;
	c->flags = flags;
	c->t_start = lg_now_ns();
	c->arena.max = LG_MAX_STANZA;
	c->phase = LG_CONNECTING;
	run->live++;
	uv_timer_init(run->loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	xml_setup(c);
	int r = tcp_open(c);
	if (r < 0) {
		lg_conn_fail(c, uv_err_name(r));
		return c;
	}
	uv_timer_start(&c->timer, on_timer, LG_HANDSHAKE_MS, 0);
	return c;
}

/* ---- the stream negotiation, one small handler per phase ---- */

static bool is_iq_reply(const struct lg_elem *st, const char *id)
{
	const char *type = lg_attr(st, "type");
	const char *sid = lg_attr(st, "id");
	return strcmp(st->name, "iq") == 0 && sid && strcmp(sid, id) == 0 &&
	       type && (!strcmp(type, "result") || !strcmp(type, "error"));
}

static bool is_result(const struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	return type && strcmp(type, "result") == 0;
}

static void fail_cond(struct lg_conn *c, const char *what,
		      const struct lg_elem *err, const char *ns)
{
	char *r = lg_xasprintf("%s:%s", what, lg_condition(err, ns));
	lg_conn_fail(c, r);
	free(r);
}

static void on_features_plain(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->name, "features") || strcmp(st->ns, NS_STREAMS)) {
		lg_conn_fail(c, "expected-features");
		return;
	}
	if (!lg_child(st, NS_TLS, "starttls")) {
		lg_conn_fail(c, "no-starttls");
		return;
	}
	lg_conn_sends(c, "<starttls xmlns='" NS_TLS "'/>");
	c->phase = LG_STARTTLS;
}

static void on_starttls_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->ns, NS_TLS) || strcmp(st->name, "proceed")) {
		lg_conn_fail(c, "starttls-refused");
		return;
	}
	c->phase = LG_HANDSHAKE;
	xml_mark_restart(c);
}

static void send_register(struct lg_conn *c)
{
	const struct lg_user *u = &c->run->users[c->user];
	struct lg_sbuf b = { 0 };
	lg_sbuf_adds(&b, "<iq type='set' id='reg'><query xmlns='" NS_REGISTER
			 "'><username>");
	lg_sbuf_add_xml(&b, u->name);
	lg_sbuf_adds(&b, "</username><password>");
	lg_sbuf_add_xml(&b, u->password);
	lg_sbuf_adds(&b, "</password></query></iq>");
	lg_conn_send(c, b.p, b.len);
	lg_sbuf_free(&b);
	c->phase = LG_REGISTER;
}

/* SCRAM-SHA-256 if offered, else SCRAM-SHA-1, or only the one forced
 * with --mechanism; -1 if none fits. */
static int pick_mechanism(const struct lg_conn *c,
			  const struct lg_elem *features)
{
	const char *forced = c->run->o.mechanism;
	struct lg_elem *m = lg_child(features, NS_SASL, "mechanisms");
	bool sha1 = false, sha256 = false;
	for (struct lg_elem *k = m ? m->child : NULL; k; k = k->next) {
		if (strcmp(k->name, "mechanism") != 0)
			continue;
		sha256 |= !strcmp(lg_text(k), "SCRAM-SHA-256");
		sha1 |= !strcmp(lg_text(k), "SCRAM-SHA-1");
	}
	if (forced && strcmp(forced, "SCRAM-SHA-1") == 0)
		sha256 = false;
	else if (forced)
		sha1 = false;
	return sha256 ? LG_SCRAM_SHA256 : sha1 ? LG_SCRAM_SHA1 : -1;
}

static void on_features_tls(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->name, "features") || strcmp(st->ns, NS_STREAMS)) {
		lg_conn_fail(c, "expected-features");
		return;
	}
	if (c->flags & LG_DO_REGISTER) {
		send_register(c);
		return;
	}
	int mech = pick_mechanism(c, st);
	if (mech < 0) {
		lg_conn_fail(c, "no-scram-mechanism");
		return;
	}
	const struct lg_user *u = &c->run->users[c->user];
	char *first = lg_scram_first(&c->scram, (enum lg_scram_hash)mech,
				     u->name);
	char *b64 = lg_b64_encode(first, strlen(first));
	char *xml = lg_xasprintf("<auth xmlns='" NS_SASL "' mechanism='%s'>"
				 "%s</auth>", lg_scram_mech(c->scram.hash),
				 b64);
	lg_conn_sends(c, xml);
	free(xml);
	free(b64);
	free(first);
	c->sasl_step = 1;
	c->phase = LG_SASL;
}

static void on_register_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (!is_iq_reply(st, "reg"))
		return; /* nothing else matters before authentication */
	const char *cond = is_result(st) ? NULL :
			   lg_condition(lg_child(st, NULL, "error"),
					NS_STANZAS);
	if (c->ops->registered)
		c->ops->registered(c, cond);
	lg_conn_close(c);
}

/* Decodes the base64 payload of a SASL element ("=" means empty). */
static unsigned char *sasl_payload(const struct lg_elem *st, size_t *len_r)
{
	const char *t = lg_text(st);
	if (strcmp(t, "=") == 0)
		t = "";
	return lg_b64_decode(t, strlen(t), len_r);
}

static void sasl_challenge(struct lg_conn *c, const char *in, size_t len)
{
	if (c->sasl_step == 2) {
		/* Servers that send the server-final-message as a challenge
		 * (before RFC 6120) want an empty response. */
		if (!lg_scram_verify(&c->scram, in, len)) {
			lg_conn_fail(c, "scram-bad-server-signature");
			return;
		}
		c->sasl_step = 3;
		lg_conn_sends(c, "<response xmlns='" NS_SASL "'/>");
		return;
	}
	if (c->sasl_step != 1) {
		lg_conn_fail(c, "sasl-unexpected-challenge");
		return;
	}
	const char *error = NULL;
	struct lg_user *u = &c->run->users[c->user];
	char *final = lg_scram_final(&c->scram, in, len, u->password,
				     &u->cache, &error);
	if (!final) {
		lg_conn_fail(c, error);
		return;
	}
	char *b64 = lg_b64_encode(final, strlen(final));
	char *xml = lg_xasprintf("<response xmlns='" NS_SASL "'>%s</response>",
				 b64);
	lg_conn_sends(c, xml);
	free(xml);
	free(b64);
	free(final);
	c->sasl_step = 2;
}

static void sasl_success(struct lg_conn *c, const char *in, size_t len)
{
	bool ok = len ? lg_scram_verify(&c->scram, in, len) :
			c->sasl_step == 3;
	if (!ok) {
		lg_conn_fail(c, "scram-bad-server-signature");
		return;
	}
	c->phase = LG_FEATURES_AUTH;
	xml_mark_restart(c);
}

static void on_sasl_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->ns, NS_SASL) != 0) {
		lg_conn_fail(c, "sasl-unexpected");
		return;
	}
	if (strcmp(st->name, "failure") == 0) {
		fail_cond(c, "sasl", st, NS_SASL);
		return;
	}
	size_t len = 0;
	unsigned char *in = sasl_payload(st, &len);
	if (!in) {
		lg_conn_fail(c, "sasl-bad-base64");
		return;
	}
	if (strcmp(st->name, "challenge") == 0)
		sasl_challenge(c, (const char *)in, len);
	else if (strcmp(st->name, "success") == 0)
		sasl_success(c, (const char *)in, len);
	else
		lg_conn_fail(c, "sasl-unexpected");
	free(in);
}

static void on_features_auth(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->name, "features") || strcmp(st->ns, NS_STREAMS)) {
		lg_conn_fail(c, "expected-features");
		return;
	}
	if (!lg_child(st, NS_BIND, "bind")) {
		lg_conn_fail(c, "no-bind");
		return;
	}
	/* RFC 6121 Appendix E: the session iq is needed only when the server
	 * does not mark it <optional/>. */
	struct lg_elem *sess = lg_child(st, NS_SESSION, "session");
	c->session_required = sess && !lg_child(sess, NS_SESSION, "optional");
	lg_conn_sends(c, "<iq type='set' id='bind'><bind xmlns='" NS_BIND
			 "'/></iq>");
	c->phase = LG_BIND;
}

static void go_online(struct lg_conn *c, struct lg_elem *roster)
{
	if (c->flags & LG_WANT_PRESENCE)
		lg_conn_sends(c, "<presence/>");
	if (c->phase == LG_CLOSED)
		return;
	c->phase = LG_ONLINE;
	c->t_online = lg_now_ns();
	uv_timer_stop(&c->timer);
	if (c->ops->online)
		c->ops->online(c, roster);
}

static void after_session(struct lg_conn *c)
{
	if (!(c->flags & LG_WANT_ROSTER)) {
		go_online(c, NULL);
		return;
	}
	lg_conn_sends(c, "<iq type='get' id='roster'><query xmlns='"
			 NS_ROSTER "'/></iq>");
	c->phase = LG_ROSTER;
}

static void on_online_stanza(struct lg_conn *c, struct lg_elem *st);

static void on_bind_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (!is_iq_reply(st, "bind")) {
		on_online_stanza(c, st);
		return;
	}
	struct lg_elem *b = lg_child(st, NS_BIND, "bind");
	const char *jid = lg_text(b ? lg_child(b, NS_BIND, "jid") : NULL);
	if (!is_result(st) || !strchr(jid, '@') || !strchr(jid, '/')) {
		fail_cond(c, "bind", lg_child(st, NULL, "error"), NS_STANZAS);
		return;
	}
	c->jid = lg_xstrdup(jid);
	if (!c->session_required) {
		after_session(c);
		return;
	}
	char *xml = lg_xasprintf("<iq type='set' id='sess' to='%s'><session "
				 "xmlns='" NS_SESSION "'/></iq>",
				 c->run->o.domain);
	lg_conn_sends(c, xml);
	free(xml);
	c->phase = LG_SESSION;
}

static void on_session_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (!is_iq_reply(st, "sess")) {
		on_online_stanza(c, st);
	} else if (!is_result(st)) {
		fail_cond(c, "session", lg_child(st, NULL, "error"),
			  NS_STANZAS);
	} else {
		after_session(c);
	}
}

static void on_roster_reply(struct lg_conn *c, struct lg_elem *st)
{
	if (!is_iq_reply(st, "roster")) {
		on_online_stanza(c, st);
		return;
	}
	struct lg_elem *q = lg_child(st, NS_ROSTER, "query");
	if (!is_result(st) || !q) {
		fail_cond(c, "roster", lg_child(st, NULL, "error"), NS_STANZAS);
		return;
	}
	go_online(c, q);
}

/* Answers an iq get/set addressed to us: result for roster pushes (RFC
 * 6121 §2.1.6) and pings (XEP-0199), service-unavailable otherwise
 * (RFC 6120 §8.4). */
static void answer_iq(struct lg_conn *c, struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	const char *id = lg_attr(st, "id");
	const char *from = lg_attr(st, "from");
	if (!type || (strcmp(type, "get") && strcmp(type, "set")) || !id)
		return;
	bool ok = (!strcmp(type, "set") && lg_child(st, NS_ROSTER, "query")) ||
		  (!strcmp(type, "get") && lg_child(st, NS_PING, "ping"));
	struct lg_sbuf b = { 0 };
	lg_sbuf_printf(&b, "<iq type='%s' id='", ok ? "result" : "error");
	lg_sbuf_add_xml(&b, id);
	if (from) {
		lg_sbuf_adds(&b, "' to='");
		lg_sbuf_add_xml(&b, from);
	}
	lg_sbuf_adds(&b, ok ? "'/>" : "'><error type='cancel'>"
		     "<service-unavailable xmlns='" NS_STANZAS "'/>"
		     "</error></iq>");
	lg_conn_send(c, b.p, b.len);
	lg_sbuf_free(&b);
}

static void on_online_stanza(struct lg_conn *c, struct lg_elem *st)
{
	if (strcmp(st->ns, NS_CLIENT) != 0) {
		lg_conn_fail(c, "unexpected-element");
		return;
	}
	if (c->ops->stanza)
		c->ops->stanza(c, st);
	/* Nothing may follow our </stream:stream>. */
	if (c->phase < LG_CLOSING && strcmp(st->name, "iq") == 0)
		answer_iq(c, st);
}

typedef void lg_phase_fn(struct lg_conn *c, struct lg_elem *st);

static lg_phase_fn *const phase_handlers[LG_PHASE_COUNT] = {
	[LG_FEATURES_PLAIN] = on_features_plain,
	[LG_STARTTLS] = on_starttls_reply,
	[LG_FEATURES_TLS] = on_features_tls,
	[LG_REGISTER] = on_register_reply,
	[LG_SASL] = on_sasl_reply,
	[LG_FEATURES_AUTH] = on_features_auth,
	[LG_BIND] = on_bind_reply,
	[LG_SESSION] = on_session_reply,
	[LG_ROSTER] = on_roster_reply,
	[LG_ONLINE] = on_online_stanza,
	[LG_CLOSING] = on_online_stanza,
};

static void conn_dispatch(struct lg_conn *c, struct lg_elem *st)
{
	if (!strcmp(st->ns, NS_STREAMS) && !strcmp(st->name, "error")) {
		fail_cond(c, "stream-error", st, NS_STREAM_ERR);
		return;
	}
	lg_phase_fn *fn = phase_handlers[c->phase];
	if (!fn) {
		lg_conn_fail(c, "unexpected-element");
		return;
	}
	fn(c, st);
}
