/*
 * c2s.c - client-to-server streams: negotiation and the stanza path.
 *
 * RFC 6120: stream headers (§4.7), STARTTLS (§5), SASL (§6), resource
 * binding (§7), the legacy session element (RFC 3921 §3, still sent by
 * old clients), stanza checks before routing (§8.1) and stream errors
 * (§4.9). TLS is required before authentication, stanzas before binding
 * end the stream with <not-authorized/>.
 *
 * Each phase has a table of the first-level elements it accepts; an
 * element no entry takes ends the stream with the phase's error. A SASL
 * step that loads credentials (later SCRAM steps run here), or a module's
 * pre-authentication iq job (XEP-0077 registration, through struct
 * module.preauth_iq), runs on the thread pool: meanwhile the connection
 * does not read, input that had already arrived is held, and the object
 * is freed only after the job returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "../auth/sasl.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/stats.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../mod/module.h"
#include "../net/tls.h"
#include "../router/hooks.h"
#include "../router/fanout.h"
#include "../router/route.h"
#include "../router/sessions.h"
#include "../store/store.h"
#include "../xml/parser.h"
#include "../xmpp/jid.h"
#include "../xmpp/ns.h"
#include "c2s.h"
#include "stream.h"

enum c2s_phase {
	PHASE_TLS,     /* STARTTLS required */
	PHASE_AUTH,    /* SASL */
	PHASE_BIND,    /* authenticated, no resource yet */
	PHASE_SESSION, /* bound: stanzas flow */
};

struct c2s {
	struct conn conn; /* first: the conn callbacks cast back */
	struct xml_stream *xs;
	const struct listener_conf *lc;
	enum c2s_phase phase;
	size_t host_idx;
	bool header_sent;  /* our stream header for the current stream */
	bool discard_rest; /* after <starttls/>: drop pipelined plaintext */
	bool reset_pending;
	bool busy;         /* a job (SASL step, pre-auth iq) runs on the
			      thread pool */
	bool dead;         /* destroyed while busy: free when it ends */
	bool over_limit;   /* too many connections: refuse at the header */
	bool exporter_pending; /* cb->exporter not derived yet */
	unsigned sasl_failures;
	struct sasl *sasl;
	struct sasl_cb *cb;
	char *sasl_in, *sasl_out;
	const char *sasl_cond;
	enum sasl_status sasl_status;
	uint64_t auth_started; /* uv_hrtime() at the last <auth>: the bind
				  check against deleted accounts */
	struct buf held; /* input received while busy */
	char *user;      /* after SASL: nodeprep'd */
	char *last_presence; /* last available broadcast presence, serialized
				without from/to; NULL while unavailable */
	char **directed;     /* JIDs sent directed available presence */
	size_t ndirected;
	char *jid_str;   /* after binding: user@host/resource */
	struct jid jid;  /* views into jid_str */
	struct str bare; /* user@host, view into jid_str */
};

typedef void c2s_handler_fn(struct c2s *c, struct xml_elem *x,
			    struct arena *a);

struct c2s_handler {
	const char *ns, *name;
	c2s_handler_fn *fn;
};

static const struct conn_ops c2s_ops;
static const struct xml_stream_cbs c2s_xml_cbs;
static struct xml_limits xml_limits;

static const struct limits_conf *limits(void)
{
	return &server.conf->limits;
}

static const char *host(const struct c2s *c)
{
	return server.conf->hosts[c->host_idx];
}

/* ---- output ---- */

static void write_str(struct c2s *c, const char *s)
{
	if (conn_write_str(&c->conn, s) < 0)
		conn_abort(&c->conn);
}

static void write_buf(struct c2s *c, const struct buf *b)
{
	if (conn_write(&c->conn, b->data, b->len) < 0)
		conn_abort(&c->conn);
}

static void send_header(struct c2s *c)
{
	char id[STREAM_ID_LEN + 1];
	stream_new_id(id);
	struct buf b = { 0 };
	buf_printf(&b,
		   "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT
		   "' xmlns:stream='" NS_STREAMS "' id='%s' from='",
		   id);
	buf_append_xml_escaped(&b, str_c(host(c)), true);
	buf_append_c(&b, "' version='1.0' xml:lang='en'>");
	write_buf(c, &b);
	buf_reset(&b);
	c->header_sent = true;
}

/* Ends the stream with a stream error (RFC 6120 §4.9.1): our header first
 * if we had not sent one, then the error, then the close tag. */
static void stream_fail(struct c2s *c, enum stream_err err, const char *text)
{
	if (conn_closing(&c->conn))
		return;
	conn_log(LOG_LEVEL_INFO, &c->conn, "stream error %s: %s",
		 stream_err_name(err), text ? text : "");
	if (!c->header_sent)
		send_header(c);
	struct buf b = { 0 };
	stream_error_append(&b, err, text);
	write_buf(c, &b);
	buf_reset(&b);
	conn_close(&c->conn);
}

/* The connection's channel bindings, for the features (XEP-0440, -PLUS
 * mechanisms) and SASL. tls-exporter is a key derivation that only a
 * -PLUS exchange uses: here it is only marked as existing (TLS 1.3),
 * derived by bindings_for() when such an exchange starts. */
static struct sasl_cb *channel_bindings(struct c2s *c)
{
	if (c->cb != NULL || c->conn.ssl == NULL)
		return c->cb;
	struct sasl_cb *cb = xcalloc(1, sizeof(*cb));
	if (tls_is_13(c->conn.ssl)) {
		cb->exporter_len = TLS_CB_EXPORTER_LEN;
		c->exporter_pending = true;
	}
	if (tls_cb_server_end_point(c->conn.ssl, cb->tsep, &cb->tsep_len) < 0)
		cb->tsep_len = 0;
	if (tls_cb_unique(c->conn.ssl, cb->unique, &cb->unique_len) < 0)
		cb->unique_len = 0;
	c->cb = cb;
	return cb;
}

/* The bindings for an exchange of mech: with tls-exporter's data for a
 * -PLUS one; without tls-exporter for the others, which sasl.c gives no
 * exporter data anyway (*tmp holds that copy). */
static const struct sasl_cb *bindings_for(struct c2s *c, const char *mech,
					  struct sasl_cb *tmp)
{
	struct sasl_cb *cb = channel_bindings(c);
	if (cb == NULL || !c->exporter_pending)
		return cb;
	size_t n = strlen(mech);
	if (n < 5 || strcmp(mech + n - 5, "-PLUS") != 0) {
		*tmp = *cb;
		tmp->exporter_len = 0;
		return tmp;
	}
	if (tls_cb_exporter(c->conn.ssl, cb->exporter, &cb->exporter_len) < 0)
		cb->exporter_len = 0;
	c->exporter_pending = false;
	return cb;
}

static void send_features(struct c2s *c)
{
	struct buf b = { 0 };
	buf_append_c(&b, "<stream:features>");
	switch (c->phase) {
	case PHASE_TLS:
		buf_append_c(&b, "<starttls xmlns='" NS_TLS
				 "'><required/></starttls>");
		break;
	case PHASE_AUTH: {
		const char *names[8];
		const struct sasl_cb *cb = channel_bindings(c);
		size_t n = sasl_mechanisms(cb, names, ARRAY_SIZE(names));
		buf_append_c(&b, "<mechanisms xmlns='" NS_SASL "'>");
		for (size_t i = 0; i < n; i++)
			buf_printf(&b, "<mechanism>%s</mechanism>", names[i]);
		buf_append_c(&b, "</mechanisms>");
		n = sasl_cb_types(cb, names, ARRAY_SIZE(names));
		if (n > 0) {
			buf_append_c(&b, "<sasl-channel-binding xmlns='" NS_SASL_CB
					 "'>");
			for (size_t i = 0; i < n; i++)
				buf_printf(&b, "<channel-binding type='%s'/>",
					   names[i]);
			buf_append_c(&b, "</sasl-channel-binding>");
		}
		break;
	}
	case PHASE_BIND:
		buf_append_c(&b, "<bind xmlns='" NS_BIND "'/><session xmlns='" NS_SESSION
				 "'><optional/></session>");
		break;
	case PHASE_SESSION:
		break;
	}
	static const enum feature_phase phases[] = {
		[PHASE_TLS] = FEATURES_PRE_TLS,
		[PHASE_AUTH] = FEATURES_PRE_AUTH,
		[PHASE_BIND] = FEATURES_BOUND,
		[PHASE_SESSION] = FEATURES_BOUND,
	};
	module_stream_features(&b, phases[c->phase], c->host_idx);
	buf_append_c(&b, "</stream:features>");
	write_buf(c, &b);
	buf_reset(&b);
}

/* Serializes x as a first-level element of our stream. */
static void send_elem(struct c2s *c, const struct xml_elem *x)
{
	struct buf *scratch = &c->conn.shard->scratch;
	scratch->len = 0;
	if (xml_serialize(scratch, x, STR_LIT(NS_CLIENT)) < 0 ||
	    conn_write(&c->conn, scratch->data, scratch->len) < 0) {
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION,
			    "output limit reached");
	}
	/* Don't let one huge stanza pin a big buffer in every shard. */
	if (scratch->cap > 64 * 1024)
		buf_reset(scratch);
}

/* ---- the stream header ---- */

static enum xml_cb_ret on_stream_open(void *ud, const struct xml_elem *hdr,
				      struct str default_ns, struct str prefix)
{
	(void)prefix;
	struct c2s *c = ud;
	struct str to = xml_attr_get(hdr, "to");
	int h = to.p ? conf_find_host(server.conf, to.p, to.len) : -1;
	if (h < 0 && to.p != NULL) {
		/* Compare normalised: clients may send upper case. */
		struct arena *a = arena_new(0);
		struct str prepped;
		const char *why;
		if (jid_nameprep(a, to, &prepped, &why) == 0)
			h = conf_find_host(server.conf, prepped.p, prepped.len);
		arena_destroy(&a);
	}
	if (h >= 0)
		c->host_idx = (size_t)h;
	c->header_sent = false;
	if (c->over_limit) {
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION,
			    "too many connections");
	} else if (!str_eq_c(hdr->ns, NS_STREAMS) ||
		   !str_eq_c(hdr->name, "stream")) {
		stream_fail(c, STREAM_ERR_INVALID_NAMESPACE,
			    "not an XMPP stream");
	} else if (!str_eq_c(default_ns, NS_CLIENT)) {
		stream_fail(c, STREAM_ERR_INVALID_NAMESPACE,
			    "default namespace must be jabber:client");
	} else if (h < 0) {
		stream_fail(c, STREAM_ERR_HOST_UNKNOWN, "unknown host");
	} else {
		struct str v = xml_attr_get(hdr, "version");
		/* RFC 6120 §4.7.5: major version 1 only; no version means
		 * pre-1.0, which we do not speak. */
		if (v.p == NULL || v.len < 2 || v.p[0] != '1' || v.p[1] != '.') {
			stream_fail(c, STREAM_ERR_UNSUPPORTED_VERSION,
				    "version 1.0 required");
		} else {
			send_header(c);
			send_features(c);
		}
	}
	return conn_closing(&c->conn) ? XML_PAUSE : XML_CONTINUE;
}

static enum xml_cb_ret on_stream_close(void *ud)
{
	struct c2s *c = ud;
	conn_debug(&c->conn, "stream closed by peer");
	write_str(c, "</stream:stream>");
	conn_close(&c->conn);
	return XML_PAUSE;
}

/* ---- STARTTLS (RFC 6120 §5.4) ---- */

static void on_starttls(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	(void)x;
	arena_destroy(&a);
	write_str(c, "<proceed xmlns='" NS_TLS "'/>");
	conn_start_tls(&c->conn, c->host_idx);
	c->phase = PHASE_AUTH;
	/* §5.4.3.3: a new stream over TLS; plaintext sent after <starttls/>
	 * is discarded rather than trusted. */
	c->reset_pending = true;
	c->discard_rest = true;
	c->header_sent = false;
}

static void on_auth_before_tls(struct c2s *c, struct xml_elem *x,
			       struct arena *a)
{
	(void)x;
	arena_destroy(&a);
	write_str(c, "<failure xmlns='" NS_SASL
		     "'><encryption-required/></failure>");
}

/* ---- SASL (RFC 6120 §6.4) ---- */

static void feed(struct c2s *c, const char *p, size_t len);
static void c2s_free(struct c2s *c);

static void sasl_end(struct c2s *c)
{
	sasl_free(c->sasl);
	c->sasl = NULL;
}

static void sasl_fail(struct c2s *c, const char *cond)
{
	struct buf b = { 0 };
	buf_printf(&b, "<failure xmlns='" NS_SASL "'><%s/></failure>", cond);
	write_buf(c, &b);
	buf_reset(&b);
	sasl_end(c);
	if (strcmp(cond, "aborted") == 0 ||
	    strcmp(cond, "invalid-mechanism") == 0)
		return;
	STATS_ADD(logins_failed, 1);
	/* §6.4.5: a few retries, then a stream error. */
	if (++c->sasl_failures >= limits()->max_sasl_attempts)
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION,
			    "too many authentication failures");
}

static void sasl_succeeded(struct c2s *c)
{
	c->user = xstrdup(sasl_username(c->sasl));
	STATS_ADD(logins_ok, 1);
	conn_log(LOG_LEVEL_INFO, &c->conn, "authenticated %s@%s (%s)",
		 c->user, host(c), sasl_mech(c->sasl));
	sasl_end(c);
	free(c->cb);
	c->cb = NULL;
	c->phase = PHASE_BIND;
	c->reset_pending = true; /* §6.4.6: a new stream follows */
	c->header_sent = false;
	conn_set_timer(&c->conn, 0);
	/* From now on the timer is the rate limit's. */
	conn_set_rate(&c->conn, (uint32_t)limits()->c2s_rate,
		      (uint32_t)limits()->c2s_burst);
}

static int sasl_work(struct store *st, void *ud)
{
	struct c2s *c = ud;
	c->sasl_status = sasl_step(c->sasl, st, c->sasl_in, &c->sasl_out,
				   &c->sasl_cond);
	return 0;
}

/* After a pool job: the parser reset that SASL success asked for, then
 * the input that arrived meanwhile, then reading again. */
static void resume_input(struct c2s *c)
{
	if (c->reset_pending && !conn_closing(&c->conn)) {
		xml_stream_reset(c->xs);
		c->reset_pending = false;
	}
	struct buf held = c->held;
	memset(&c->held, 0, sizeof(c->held));
	if (held.len > 0)
		feed(c, held.data, held.len);
	buf_reset(&held);
	if (!c->busy)
		conn_resume(&c->conn);
}

/* Answers the step that just ran: status is the pool job's (0 when the
 * step ran here). */
static void sasl_reply(struct c2s *c, int status)
{
	free(c->sasl_in);
	c->sasl_in = NULL;
	if (status < 0) {
		free(c->sasl_out);
		c->sasl_out = NULL;
		sasl_fail(c, "temporary-auth-failure");
	} else if (c->sasl_status == SASL_FAILURE) {
		sasl_fail(c, c->sasl_cond);
	} else {
		bool ok = c->sasl_status == SASL_SUCCESS;
		const char *el = ok ? "success" : "challenge";
		struct buf b = { 0 };
		buf_printf(&b, "<%s xmlns='" NS_SASL "'>%s</%s>", el,
			   c->sasl_out ? c->sasl_out : (ok ? "" : "="), el);
		write_buf(c, &b);
		buf_reset(&b);
		if (ok)
			sasl_succeeded(c);
	}
	free(c->sasl_out);
	c->sasl_out = NULL;
}

static void sasl_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct c2s *c = ud;
	c->busy = false;
	if (c->dead) {
		free(c->sasl_in);
		c->sasl_in = NULL;
		c2s_free(c);
		return;
	}
	sasl_reply(c, status);
	resume_input(c);
}

static void sasl_run(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	struct str text = xml_text(a, x);
	c->sasl_in = text.len > 0 ? str_xdup(text) : NULL;
	arena_destroy(&a);
	/* A SCRAM step after the first needs no store: a few HMACs, cheaper
	 * than the round trip to the pool. The parser pauses after this
	 * element if it succeeded (reset_pending), as after a pool job. */
	if (!sasl_step_blocks(c->sasl)) {
		c->sasl_status = sasl_step(c->sasl, NULL, c->sasl_in,
					   &c->sasl_out, &c->sasl_cond);
		sasl_reply(c, 0);
		return;
	}
	/* The first SCRAM step reads the credentials: on the shard. */
	if ((sasl_step_only_reads(c->sasl) ? store_queue_read
					   : store_queue_work)(
		    &c->conn.shard->loop, server.store, sasl_work, sasl_done,
		    c) < 0) {
		free(c->sasl_in);
		c->sasl_in = NULL;
		sasl_fail(c, "temporary-auth-failure");
		return;
	}
	c->busy = true;
	conn_pause(&c->conn);
}

static void on_auth(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	sasl_end(c);
	struct str mech = xml_attr_get(x, "mechanism");
	char name[32];
	if (mech.p == NULL || mech.len >= sizeof(name)) {
		arena_destroy(&a);
		sasl_fail(c, "invalid-mechanism");
		return;
	}
	memcpy(name, mech.p, mech.len);
	name[mech.len] = '\0';
	struct sasl_cb tmp;
	/* Before any credentials are loaded: see sessions_revoke. */
	c->auth_started = uv_hrtime();
	c->sasl = sasl_start(name, host(c), bindings_for(c, name, &tmp),
			     server.conf->scram_iterations);
	if (c->sasl == NULL) {
		arena_destroy(&a);
		sasl_fail(c, "invalid-mechanism");
		return;
	}
	sasl_run(c, x, a);
}

static void on_response(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	if (c->sasl == NULL) {
		arena_destroy(&a);
		sasl_fail(c, "malformed-request");
		return;
	}
	sasl_run(c, x, a);
}

static void on_abort(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	(void)x;
	arena_destroy(&a);
	sasl_fail(c, "aborted");
}

static void on_starttls_again(struct c2s *c, struct xml_elem *x,
			      struct arena *a)
{
	(void)x;
	arena_destroy(&a);
	stream_fail(c, STREAM_ERR_POLICY_VIOLATION, "TLS is already on");
}

/* ---- resource binding (RFC 6120 §7) ---- */

/* Answers the iq x (consumed with a) from the server directly: error when
 * cond is set, else result with payload (allocated in a, may be NULL). */
static void reply_iq(struct c2s *c, struct xml_elem *x, struct arena *a,
		     enum stanza_err cond, struct xml_elem *payload)
{
	struct xml_elem *r = xml_elem_new(a, STR_LIT(NS_CLIENT), STR_LIT("iq"));
	struct str id = xml_attr_get(x, "id");
	if (id.p != NULL)
		xml_attr_set(a, r, "id", id);
	if (c->jid_str != NULL)
		xml_attr_set(a, r, "to", str_c(c->jid_str));
	if (cond == STANZA_ERR_NONE) {
		xml_attr_set(a, r, "type", STR_LIT("result"));
		if (payload != NULL)
			xml_append_elem(r, payload);
	} else {
		stanza_set_error(a, r, cond, NULL);
	}
	send_elem(c, r);
	arena_destroy(&a);
}


static void session_event(struct c2s *c, enum hook_event ev)
{
	struct hook_ctx h = {
		.ev = ev,
		.user = &c->jid,
		.conn_id = c->conn.id,
		.shard = c->conn.shard->id,
		.host_idx = c->host_idx,
	};
	hooks_run(&h);
}

static void make_resource(struct c2s *c, char *out, size_t n)
{
	unsigned char rnd[8];
	do {
		stream_random_bytes(rnd, sizeof(rnd));
		for (size_t i = 0; i < sizeof(rnd) && 2 * i + 2 < n; i++)
			snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	} while (c->bare.p != NULL && sessions_has(c->bare, str_c(out)));
}

static void do_bind(struct c2s *c, struct xml_elem *x, struct arena *a,
		    struct xml_elem *bind)
{
	struct xml_elem *res = xml_child(bind, NS_BIND, "resource");
	struct str resource = res ? xml_text(a, res) : STR_LIT("");
	char gen[20];
	if (resource.len == 0) {
		make_resource(c, gen, sizeof(gen));
		resource = str_c(gen);
	} else {
		const char *why;
		if (jid_resourceprep(a, resource, &resource, &why) < 0) {
			reply_iq(c, x, a, STANZA_ERR_BAD_REQUEST, NULL);
			return;
		}
	}
	struct buf b = { 0 };
	buf_printf(&b, "%s@%s", c->user, host(c));
	size_t bare_len = b.len;
	buf_append_c(&b, "/");
	buf_append_str(&b, resource);
	buf_append(&b, "", 1);
	/* NUL-terminated, owned; trimmed: it lives as long as the session */
	char *jid = xrealloc(b.data, b.len);
	struct sess_ref old, me = { .shard = c->conn.shard->id,
				     .conn_id = c->conn.id,
				     .authed_at = c->auth_started };
	int r = sessions_bind(STR(jid, bare_len), resource, me, &old);
	if (r == -2) {
		/* Authenticated just before the account was deleted. */
		free(jid);
		arena_destroy(&a);
		stream_fail(c, STREAM_ERR_NOT_AUTHORIZED, "account deleted");
		return;
	}
	if (r < 0) {
		free(jid);
		reply_iq(c, x, a, STANZA_ERR_RESOURCE_CONSTRAINT, NULL);
		return;
	}
	if (r == 1) /* §7.7.2.2: the new session wins. */
		route_kick(&old, STREAM_ERR_CONFLICT,
			   "replaced by a new connection");
	c->jid_str = jid;
	c->bare = STR(jid, bare_len);
	c->jid.node = str_c(c->user);
	c->jid.domain = str_c(host(c));
	c->jid.resource = STR(jid + bare_len + 1, resource.len);
	c->phase = PHASE_SESSION;
	conn_log(LOG_LEVEL_INFO, &c->conn, "bound %s on shard %u", jid,
		 c->conn.shard->id);
	session_event(c, EV_SESSION_BOUND);
	struct xml_elem *p = xml_elem_new(a, STR_LIT(NS_BIND), STR_LIT("bind"));
	xml_add_text(a, xml_add_child(a, p, STR_LIT(NS_BIND), STR_LIT("jid")),
		     str_c(jid));
	reply_iq(c, x, a, STANZA_ERR_NONE, p);
}

/* iq before binding: only bind and the legacy session are allowed. */
static void on_iq_prebind(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	struct xml_elem *bind = xml_child(x, NS_BIND, "bind");
	struct xml_elem *sess = xml_child(x, NS_SESSION, "session");
	bool set = str_eq_c(xml_attr_get(x, "type"), "set");
	if (set && bind != NULL) {
		do_bind(c, x, a, bind);
	} else if (set && sess != NULL) {
		reply_iq(c, x, a, STANZA_ERR_NONE, NULL);
	} else {
		arena_destroy(&a);
		stream_fail(c, STREAM_ERR_NOT_AUTHORIZED,
			    "bind a resource first");
	}
}

/* ---- stanzas of a bound session (RFC 6120 §8) ---- */

/* §8.1.2.1: a client's 'from', if present, must be its own full or bare
 * JID; the server stamps the full JID. */
static bool from_ok(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	struct str from = xml_attr_get(x, "from");
	if (from.p == NULL)
		return true;
	struct jid j;
	const char *why;
	if (jid_parse(a, from, &j, &why) < 0)
		return false;
	return jid_eq(&j, &c->jid) ||
	       (j.resource.len == 0 && jid_bare_eq(&j, &c->jid));
}

/* RFC 6121 §4.7.2.3: -128..127, 0 when absent; a bad value counts as 0. */
static int presence_priority(struct arena *a, const struct xml_elem *x)
{
	struct xml_elem *p = xml_child(x, NS_CLIENT, "priority");
	if (p == NULL)
		return 0;
	struct str t = xml_text(a, p);
	char *end;
	long v = strtol(t.p, &end, 10);
	if (t.len == 0 || *end != '\0' || v < -128 || v > 127)
		return 0;
	return (int)v;
}

#define DIRECTED_MAX 128

/* RFC 6121 §4.6: remember who got directed presence, to tell them when
 * the session becomes unavailable. */
static void track_directed(struct c2s *c, struct str to, bool available)
{
	for (size_t i = 0; i < c->ndirected; i++)
		if (str_eq_c(to, c->directed[i])) {
			if (!available) {
				free(c->directed[i]);
				c->directed[i] = c->directed[--c->ndirected];
			}
			return;
		}
	if (available && c->ndirected < DIRECTED_MAX) {
		c->directed = xreallocarray(c->directed, c->ndirected + 1,
					    sizeof(*c->directed));
		c->directed[c->ndirected++] = str_xdup(to);
	}
}

/* Broadcast presence (no 'to', RFC 6121 §4.2, §4.4, §4.5) sets the
 * session's availability and priority, which message delivery to the bare
 * JID follows (§8.5.2), and is kept to answer probes. Returns true for the
 * session's initial presence. */
static bool track_presence(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	struct str type = xml_attr_get(x, "type");
	struct str to = xml_attr_get(x, "to");
	if (to.p != NULL) {
		if (type.p == NULL || str_eq_c(type, "unavailable"))
			track_directed(c, to, type.p == NULL);
		return false;
	}
	if (type.p == NULL) {
		bool was = sessions_set_presence(c->bare, c->jid.resource,
						 c->conn.id, true,
						 presence_priority(a, x));
		struct buf b = { .max = limits()->max_stanza_size };
		struct xml_elem *copy = xml_copy(a, x);
		xml_attr_set(a, copy, "from", STR_NULL);
		if (copy && xml_serialize(&b, copy, STR_LIT(NS_CLIENT)) == 0 &&
		    buf_append(&b, "", 1) == 0) {
			free(c->last_presence);
			/* trimmed: kept for the whole session */
			c->last_presence = xrealloc(b.data, b.len);
		} else {
			buf_reset(&b);
		}
		return !was;
	}
	if (str_eq_c(type, "unavailable")) {
		sessions_set_presence(c->bare, c->jid.resource, c->conn.id,
				      false, 0);
		free(c->last_presence);
		c->last_presence = NULL;
	}
	return false;
}

static void on_stanza(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	if (!from_ok(c, x, a)) {
		arena_destroy(&a);
		stream_fail(c, STREAM_ERR_INVALID_FROM, "not your address");
		return;
	}
	if (str_eq_c(x->name, "iq") &&
	    !stanza_iq_well_formed(x, xml_attr_get(x, "type"))) {
		reply_iq(c, x, a, STANZA_ERR_BAD_REQUEST, NULL);
		return;
	}
	if (xml_attr_set(a, x, "from", str_c(c->jid_str)) < 0) {
		arena_destroy(&a);
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION, "stanza too big");
		return;
	}
	enum stanza_err err;
	struct stanza *st = stanza_wrap(a, x, &c->jid, &err);
	if (st == NULL) {
		if (str_eq_c(xml_attr_get(x, "type"), "error")) {
			arena_destroy(&a);
			return;
		}
		/* Answer locally: the stanza cannot be routed. */
		xml_attr_set(a, x, "to", str_c(c->jid_str));
		xml_attr_set(a, x, "from", str_c(host(c)));
		stanza_set_error(a, x, err, NULL);
		send_elem(c, x);
		arena_destroy(&a);
		return;
	}
	bool initial = st->kind == STANZA_PRESENCE && track_presence(c, x, a);
	struct hook_ctx h = {
		.initial = initial,
		.ev = hook_event_of(st->kind, true),
		.st = st,
		.user = &c->jid,
		.conn_id = c->conn.id,
		.shard = c->conn.shard->id,
		.host_idx = c->host_idx,
	};
	if (hooks_run(&h) == HOOK_STOP)
		return;
	route(st);
}

/* ---- pre-authentication iqs (struct module.preauth_iq) ---- */

static void unexpected(struct c2s *c, const struct xml_elem *x);

/* One pre-authentication iq handed to the modules. Freed by whoever ran
 * it: on_iq_preauth if it was answered at once, preauth_done if not. */
struct c2s_preauth {
	struct preauth_iq q;
	struct c2s *c;
	preauth_work_fn *work;
	preauth_done_fn *done;
	bool deferred, replied;
};

static void preauth_reply(struct preauth_iq *q, enum stanza_err err,
			  struct xml_elem *payload)
{
	struct c2s_preauth *p = q->stream;
	BUG_ON(p->replied);
	p->replied = true;
	if (!p->c->dead && !conn_closing(&p->c->conn))
		reply_iq(p->c, q->x, q->a, err, payload);
	else
		arena_destroy(&q->a);
	q->a = NULL;
	q->x = q->payload = NULL;
}

static int preauth_work(struct store *st, void *ud)
{
	struct c2s_preauth *p = ud;
	return p->work(st, &p->q);
}

static void preauth_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct c2s_preauth *p = ud;
	struct c2s *c = p->c;
	c->busy = false;
	p->done(&p->q, status); /* answers, or only frees if c is dead */
	BUG_ON(!p->replied);
	free(p);
	if (c->dead)
		c2s_free(c);
	else
		resume_input(c);
}

static void preauth_defer(struct preauth_iq *q, preauth_work_fn *work,
			  preauth_done_fn *done)
{
	struct c2s_preauth *p = q->stream;
	struct c2s *c = p->c;
	p->work = work;
	p->done = done;
	int rc = store_queue_work(&c->conn.shard->loop, server.store,
				  preauth_work, preauth_done, p);
	if (rc < 0) {
		done(q, rc);
		return;
	}
	p->deferred = true;
	c->busy = true;
	conn_pause(&c->conn);
}

/* An iq after TLS, before SASL: a module may take it (RFC 6120 has none;
 * XEP-0077 registration does). Anything else, and anything no module
 * takes, ends the stream as before authentication. */
static void on_iq_preauth(struct c2s *c, struct xml_elem *x, struct arena *a)
{
	struct str type = xml_attr_get(x, "type");
	bool get = str_eq_c(type, "get");
	if ((!get && !str_eq_c(type, "set")) || !stanza_iq_well_formed(x, type)) {
		unexpected(c, x);
		arena_destroy(&a);
		return;
	}
	struct c2s_preauth *p = xcalloc(1, sizeof(*p));
	p->c = c;
	p->q = (struct preauth_iq){
		.x = x,
		.payload = xml_first_child_elem(x),
		.a = a,
		.type = get ? IQ_GET : IQ_SET,
		.host_idx = c->host_idx,
		.ip = c->conn.ip,
		.reply = preauth_reply,
		.defer = preauth_defer,
		.stream = p,
	};
	if (module_preauth_iq(&p->q) == HOOK_PASS) {
		unexpected(c, x);
		arena_destroy(&a);
		free(p);
		return;
	}
	if (!p->deferred) {
		BUG_ON(!p->replied); /* a module took it and must answer */
		free(p);
	}
}

/* ---- dispatch by phase ---- */

static const struct c2s_handler tls_handlers[] = {
	{ NS_TLS, "starttls", on_starttls },
	{ NS_SASL, "auth", on_auth_before_tls },
	{ 0 },
};

static const struct c2s_handler auth_handlers[] = {
	{ NS_SASL, "auth", on_auth },
	{ NS_SASL, "response", on_response },
	{ NS_SASL, "abort", on_abort },
	{ NS_TLS, "starttls", on_starttls_again },
	{ NS_CLIENT, "iq", on_iq_preauth },
	{ 0 },
};

static const struct c2s_handler bind_handlers[] = {
	{ NS_CLIENT, "iq", on_iq_prebind },
	{ 0 },
};

static const struct c2s_handler session_handlers[] = {
	{ NS_CLIENT, "message", on_stanza },
	{ NS_CLIENT, "presence", on_stanza },
	{ NS_CLIENT, "iq", on_stanza },
	{ 0 },
};

static const struct c2s_handler *const phase_handlers[] = {
	[PHASE_TLS] = tls_handlers,
	[PHASE_AUTH] = auth_handlers,
	[PHASE_BIND] = bind_handlers,
	[PHASE_SESSION] = session_handlers,
};

static void unexpected(struct c2s *c, const struct xml_elem *x)
{
	if (str_eq_c(x->ns, NS_SERVER))
		stream_fail(c, STREAM_ERR_INVALID_NAMESPACE,
			    "jabber:server content on a client stream");
	else if (c->phase != PHASE_SESSION)
		stream_fail(c, STREAM_ERR_NOT_AUTHORIZED,
			    c->phase == PHASE_BIND ? "bind a resource first"
						   : "authenticate first");
	else
		stream_fail(c, STREAM_ERR_UNSUPPORTED_STANZA_TYPE,
			    "unknown first-level element");
}

static enum xml_cb_ret on_xml_stanza(void *ud, struct xml_elem *x,
				     struct arena *a)
{
	struct c2s *c = ud;
	if (conn_closing(&c->conn)) {
		arena_destroy(&a);
		return XML_PAUSE;
	}
	const struct c2s_handler *h = phase_handlers[c->phase];
	for (; h->fn != NULL; h++)
		if (str_eq_c(x->ns, h->ns) && str_eq_c(x->name, h->name))
			break;
	if (h->fn == NULL) {
		unexpected(c, x);
		arena_destroy(&a);
	} else {
		h->fn(c, x, a);
	}
	if (conn_closing(&c->conn) || c->reset_pending || c->busy)
		return XML_PAUSE;
	return XML_CONTINUE;
}

static const struct xml_stream_cbs c2s_xml_cbs = {
	.stream_open = on_stream_open,
	.stanza = on_xml_stanza,
	.stream_close = on_stream_close,
};

/* ---- connection callbacks ---- */

static void hold(struct c2s *c, const char *p, size_t len)
{
	c->held.max = limits()->max_stanza_size + SHARD_READ_BUF;
	if (buf_append(&c->held, p, len) < 0)
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION,
			    "too much input during authentication");
}

static void feed(struct c2s *c, const char *p, size_t len)
{
	while (len > 0 && !conn_closing(&c->conn)) {
		if (c->busy) {
			hold(c, p, len);
			return;
		}
		size_t used = 0;
		enum stream_err err;
		const char *why;
		int r = xml_stream_feed(c->xs, p, len, &used, &err, &why);
		if (r < 0) {
			stream_fail(c, err, why);
			return;
		}
		if (r == 0)
			return;
		p += used;
		len -= used;
		if (c->discard_rest) {
			c->discard_rest = false;
			len = 0;
		}
		if (c->reset_pending && !c->busy) {
			xml_stream_reset(c->xs);
			c->reset_pending = false;
		}
	}
}

static void c2s_data(struct conn *conn, const char *p, size_t len)
{
	feed((struct c2s *)conn, p, len);
}

static void c2s_timeout(struct conn *conn)
{
	stream_fail((struct c2s *)conn, STREAM_ERR_CONNECTION_TIMEOUT,
		    "authentication took too long");
}

/* Sends this session's presence (current, or unavailable) to `to`, on the
 * roster module's request (RFC 6121 §3.1.5, §4.3.2). */
static void presence_to(struct c2s *c, const struct jid *to, bool current)
{
	if (current && c->last_presence == NULL)
		return;
	struct stanza *st = stanza_new(STANZA_PRESENCE, &c->jid, to,
				       current ? NULL : "unavailable");
	if (current) {
		struct xml_elem *x = xml_parse_elem(
			st->a, str_c(c->last_presence), STR_LIT(NS_CLIENT));
		if (x == NULL) {
			stanza_free(&st);
			return;
		}
		xml_attr_set(st->a, x, "from", str_c(c->jid_str));
		xml_attr_set(st->a, x, "to", jid_to_str(st->a, to, false));
		st->x = x;
	}
	route(st);
}

static void c2s_deliver(struct conn *conn, struct stanza *st)
{
	struct c2s *c = (struct c2s *)conn;
	if (st->op != STANZA_OP_DELIVER) {
		if (c->phase == PHASE_SESSION)
			presence_to(c, &st->from,
				    st->op == STANZA_OP_PRESENCE_TO);
		stanza_free(&st);
		return;
	}
	if (c->phase == PHASE_SESSION && !conn_closing(conn)) {
		if (st->to_session)
			xml_attr_set(st->a, st->x, "to", str_c(c->jid_str));
		send_elem(c, st->x);
	}
	stanza_free(&st);
}

/* Group chat fan-out: the bytes are shared by every occupant; only 'to'
 * is ours. */
static void c2s_deliver_shared(struct conn *conn, const struct shared_bytes *b,
			       const char *to_attr)
{
	struct c2s *c = (struct c2s *)conn;
	if (c->phase != PHASE_SESSION || conn_closing(conn))
		return;
	int rc;
	if (b->at == SHARED_NO_SPLICE || to_attr == NULL) {
		rc = conn_write_bulk(conn, b->data, b->len);
	} else {
		rc = conn_write(conn, b->data, b->at);
		if (rc == 0)
			rc = conn_write_str(conn, to_attr);
		if (rc == 0)
			rc = conn_write(conn, b->data + b->at, b->len - b->at);
	}
	if (rc < 0)
		stream_fail(c, STREAM_ERR_POLICY_VIOLATION,
			    "output limit reached");
}

static void c2s_kick(struct conn *conn, enum stream_err err, const char *text)
{
	stream_fail((struct c2s *)conn, err, text);
}

/* RFC 6121 §4.5.2, §4.6.3: a session that ends while available is
 * treated as if it had sent unavailable presence: broadcast, and to every
 * JID that got directed presence. */
static void session_gone(struct c2s *c)
{
	if (c->last_presence != NULL) {
		struct stanza *st = stanza_new(STANZA_PRESENCE, &c->jid, NULL,
					       "unavailable");
		struct hook_ctx h = {
			.ev = EV_PRESENCE_OUT,
			.st = st,
			.user = &c->jid,
			.conn_id = c->conn.id,
			.shard = c->conn.shard->id,
			.host_idx = c->host_idx,
		};
		if (hooks_run(&h) == HOOK_PASS)
			stanza_free(&st);
	}
	struct arena *a = arena_new(0);
	for (size_t i = 0; i < c->ndirected; i++) {
		struct jid to;
		const char *why;
		if (jid_parse(a, str_c(c->directed[i]), &to, &why) == 0)
			route(stanza_new(STANZA_PRESENCE, &c->jid, &to,
					 "unavailable"));
	}
	arena_destroy(&a);
}

static void c2s_free(struct c2s *c)
{
	xml_stream_free(c->xs);
	sasl_free(c->sasl);
	free(c->cb);
	free(c->sasl_in);
	free(c->sasl_out);
	buf_reset(&c->held);
	free(c->user);
	free(c->jid_str);
	free(c->last_presence);
	for (size_t i = 0; i < c->ndirected; i++)
		free(c->directed[i]);
	free(c->directed);
	free(c);
}

static void c2s_destroy(struct conn *conn)
{
	struct c2s *c = (struct c2s *)conn;
	if (c->jid_str != NULL) {
		sessions_unbind(c->bare, c->jid.resource, conn->id);
		session_gone(c);
		session_event(c, EV_SESSION_END);
	}
	conn_debug(conn, "closed");
	if (c->busy) {
		c->dead = true; /* sasl_done frees it */
		return;
	}
	c2s_free(c);
}

static void c2s_describe(const struct conn *conn, struct conn_info *ci)
{
	const struct c2s *c = (const struct c2s *)conn;
	ci->kind = CONN_KIND_C2S;
	ci->ready = c->phase == PHASE_SESSION;
	ci->host_idx = c->host_idx;
}

static const struct conn_ops c2s_ops = {
	.data = c2s_data,
	.timeout = c2s_timeout,
	.destroy = c2s_destroy,
	.deliver = c2s_deliver,
	.deliver_shared = c2s_deliver_shared,
	.kick = c2s_kick,
	.describe = c2s_describe,
};

void c2s_init(void)
{
	stream_xml_limits(&xml_limits);
}

void c2s_accept(struct shard *s, int fd, const struct sockaddr *peer,
		const struct listener_conf *lc)
{
	const struct limits_conf *lim = limits();
	struct c2s *c = xcalloc(1, sizeof(*c));
	c->lc = lc;
	c->xs = xml_stream_new(&xml_limits, &c2s_xml_cbs, c);
	c->phase = lc->type == LISTENER_C2S_TLS ? PHASE_AUTH : PHASE_TLS;
	if (conn_accept(&c->conn, s, fd, peer, &c2s_ops, lim->max_output) < 0)
		return;
	unsigned n = conn_ip_acquire(&c->conn);
	c->over_limit = n > lim->max_conns_per_ip ||
			conn_count() > lim->max_connections;
	conn_debug(&c->conn, "accepted from %s on %s port %u", c->conn.ip,
		   listener_type_name(lc->type), lc->port);
	conn_set_timer(&c->conn, lim->auth_timeout_ms);
	if (lc->type == LISTENER_C2S_TLS)
		conn_start_tls(&c->conn, 0);
}

void c2s_sizes(struct c2s_sizes *r)
{
	r->c2s = sizeof(struct c2s);
	r->conn = sizeof(((struct c2s *)0)->conn);
}
