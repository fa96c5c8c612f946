/*
 * sasl.c - SASL exchanges through GNU SASL; see sasl.h.
 *
 * GNU SASL asks for credentials through one global callback; the session
 * hook points back to our struct sasl. For SCRAM the first request
 * (GSASL_SCRAM_ITER, during the first step) loads everything at once:
 * iterations, salt, StoredKey and ServerKey of the mechanism's hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "../core/arena.h"
#include "../core/bug.h"
#include "../core/log.h"
#include "../core/xmalloc.h"
#include "../store/accounts.h"
#include "../xmpp/jid.h"
#include "sasl-private.h"

struct sasl {
	Gsasl_session *gs;      /* NULL when tsep runs the exchange */
	struct scram_tsep *tsep;
	const char *mech;       /* static name */
	char *host;
	char *user;             /* nodeprep'd, set once known */
	struct store *st;       /* valid during sasl_step */
	struct sasl_cb cb;
	unsigned iterations;
	enum scram_hash hash;
	bool plus, scram, first_step_done;
	bool creds_loaded;      /* SCRAM: the first step loaded them */
	int load_status;        /* of the SCRAM credential load */
};

static Gsasl *gsasl_ctx;
/* Keys the fake salts of unknown users, so they are stable per user but
 * reveal nothing. Fresh at every start. */
static unsigned char fake_secret[32];

static const struct {
	const char *name;
	enum scram_hash hash;
	bool plus, scram;
} mechs[] = {
	{ "SCRAM-SHA-256-PLUS", SCRAM_SHA256, true, true },
	{ "SCRAM-SHA-1-PLUS", SCRAM_SHA1, true, true },
	{ "SCRAM-SHA-256", SCRAM_SHA256, false, true },
	{ "SCRAM-SHA-1", SCRAM_SHA1, false, true },
	{ "PLAIN", SCRAM_SHA256, false, false },
};

static bool have_cb(const struct sasl_cb *cb)
{
	return cb->exporter_len || cb->tsep_len || cb->unique_len;
}

size_t sasl_mechanisms(const struct sasl_cb *cb, const char **names,
		       size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(mechs) && n < max; i++)
		if (!mechs[i].plus || have_cb(cb))
			names[n++] = mechs[i].name;
	return n;
}

size_t sasl_cb_types(const struct sasl_cb *cb, const char **names,
		     size_t max)
{
	size_t n = 0;
	if (cb->tsep_len && n < max)
		names[n++] = "tls-server-end-point";
	if (cb->exporter_len && n < max)
		names[n++] = "tls-exporter";
	if (cb->unique_len && n < max)
		names[n++] = "tls-unique";
	return n;
}

/* ---- credentials ---- */

static void fake_creds(const char *host, const char *user,
		       unsigned iterations, struct scram_creds *c)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	/* host NUL user; the user is the peer's and may be long. */
	size_t hl = strlen(host), ul = strlen(user);
	unsigned char *msg = xmalloc(hl + 1 + ul);
	memcpy(msg, host, hl);
	msg[hl] = '\0';
	memcpy(msg + hl + 1, user, ul);
	HMAC(EVP_sha256(), fake_secret, sizeof(fake_secret), msg, hl + 1 + ul,
	     mac, &len);
	free(msg);
	memset(c, 0, sizeof(*c));
	c->iterations = iterations;
	memcpy(c->salt, mac, sizeof(c->salt));
	/* Random keys: nothing can match them. */
	RAND_bytes(c->stored_sha1, sizeof(c->stored_sha1));
	RAND_bytes(c->stored_sha256, sizeof(c->stored_sha256));
	RAND_bytes(c->server_sha1, sizeof(c->server_sha1));
	RAND_bytes(c->server_sha256, sizeof(c->server_sha256));
}

int sasl_load_creds(struct store *st, const char *host, const char *user,
		    unsigned iterations, struct scram_creds *creds_r,
		    char **user_r)
{
	struct arena *a = arena_new(0);
	struct str prepped;
	const char *why;
	int r = 1;
	if (jid_nodeprep(a, str_c(user), &prepped, &why) == 0) {
		r = accounts_get(st, host, prepped.p, creds_r);
		if (r == 0)
			*user_r = xstrdup(prepped.p);
	}
	arena_destroy(&a);
	if (r == 1)
		fake_creds(host, user, iterations, creds_r);
	return r;
}

static void set_b64(Gsasl_session *gs, Gsasl_property p,
		    const unsigned char *data, size_t len)
{
	char *b64 = NULL;
	if (gsasl_base64_to((const char *)data, len, &b64, NULL) == GSASL_OK)
		gsasl_property_set(gs, p, b64);
	free(b64);
}

static int load_scram(struct sasl *s, Gsasl_session *gs)
{
	if (s->first_step_done)
		return s->load_status == 0 ? GSASL_OK : GSASL_NO_CALLBACK;
	s->first_step_done = true;
	const char *authid = gsasl_property_fast(gs, GSASL_AUTHID);
	if (authid == NULL)
		return GSASL_NO_AUTHID;
	struct scram_creds c;
	s->load_status = sasl_load_creds(s->st, s->host, authid,
					 s->iterations, &c, &s->user);
	if (s->load_status < 0)
		return GSASL_NO_CALLBACK;
	/* Real or fake, the exchange needs nothing more from the store. */
	s->creds_loaded = true;
	char iter[16];
	snprintf(iter, sizeof(iter), "%u", c.iterations);
	gsasl_property_set(gs, GSASL_SCRAM_ITER, iter);
	set_b64(gs, GSASL_SCRAM_SALT, c.salt, sizeof(c.salt));
	size_t len;
	const unsigned char *k = scram_creds_stored_key(&c, s->hash, &len);
	set_b64(gs, GSASL_SCRAM_STOREDKEY, k, len);
	k = scram_creds_server_key(&c, s->hash, &len);
	set_b64(gs, GSASL_SCRAM_SERVERKEY, k, len);
	OPENSSL_cleanse(&c, sizeof(c));
	return GSASL_OK;
}

static int validate_plain(struct sasl *s, Gsasl_session *gs)
{
	const char *authid = gsasl_property_fast(gs, GSASL_AUTHID);
	const char *password = gsasl_property_fast(gs, GSASL_PASSWORD);
	if (authid == NULL || password == NULL)
		return GSASL_AUTHENTICATION_ERROR;
	struct scram_creds c;
	int r = sasl_load_creds(s->st, s->host, authid, s->iterations, &c,
				&s->user);
	bool ok = r == 0 && scram_creds_check(&c, password);
	OPENSSL_cleanse(&c, sizeof(c));
	if (r < 0)
		return GSASL_NO_CALLBACK;
	return ok ? GSASL_OK : GSASL_AUTHENTICATION_ERROR;
}

static int on_gsasl(Gsasl *ctx, Gsasl_session *gs, Gsasl_property prop)
{
	(void)ctx;
	struct sasl *s = gsasl_session_hook_get(gs);
	switch (prop) {
	case GSASL_SCRAM_ITER:
	case GSASL_SCRAM_SALT:
	case GSASL_SCRAM_STOREDKEY:
	case GSASL_SCRAM_SERVERKEY:
		return load_scram(s, gs);
	case GSASL_VALIDATE_SIMPLE:
		return validate_plain(s, gs);
	default:
		return GSASL_NO_CALLBACK;
	}
}

/* ---- setup ---- */

int sasl_init(const char **error_r)
{
	if (gsasl_init(&gsasl_ctx) != GSASL_OK) {
		*error_r = "cannot initialise GNU SASL";
		return -1;
	}
	gsasl_callback_set(gsasl_ctx, on_gsasl);
	for (size_t i = 0; i < ARRAY_SIZE(mechs); i++)
		if (!gsasl_server_support_p(gsasl_ctx, mechs[i].name)) {
			*error_r = "GNU SASL lacks a required mechanism";
			gsasl_done(gsasl_ctx);
			gsasl_ctx = NULL;
			return -1;
		}
	RAND_bytes(fake_secret, sizeof(fake_secret));
	return 0;
}

void sasl_fini(void)
{
	if (gsasl_ctx != NULL)
		gsasl_done(gsasl_ctx);
	gsasl_ctx = NULL;
}

struct sasl *sasl_start(const char *mech, const char *host,
			const struct sasl_cb *cb, unsigned iterations)
{
	const char *names[8];
	size_t n = sasl_mechanisms(cb, names, ARRAY_SIZE(names));
	size_t i;
	for (i = 0; i < n; i++)
		if (strcmp(names[i], mech) == 0)
			break;
	if (i == n)
		return NULL;
	struct sasl *s = xcalloc(1, sizeof(*s));
	for (i = 0; i < ARRAY_SIZE(mechs); i++)
		if (strcmp(mechs[i].name, mech) == 0)
			break;
	s->mech = mechs[i].name;
	s->hash = mechs[i].hash;
	s->plus = mechs[i].plus;
	s->scram = mechs[i].scram;
	s->host = xstrdup(host);
	s->cb = *cb;
	s->iterations = iterations;
	return s;
}

void sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	if (s->gs != NULL)
		gsasl_finish(s->gs);
	scram_tsep_free(s->tsep);
	free(s->host);
	free(s->user);
	free(s);
}

const char *sasl_username(const struct sasl *s)
{
	return s->user;
}

const char *sasl_mech(const struct sasl *s)
{
	return s->mech;
}

bool sasl_step_blocks(const struct sasl *s)
{
	return !s->creds_loaded;
}

bool sasl_step_only_reads(const struct sasl *s)
{
	return s->scram && !s->creds_loaded;
}

/* ---- steps ---- */

static const char *gsasl_cond(int rc)
{
	switch (rc) {
	case GSASL_BASE64_ERROR:
		return "incorrect-encoding";
	case GSASL_MECHANISM_PARSE_ERROR:
		return "malformed-request";
	case GSASL_NO_CALLBACK:
		return "temporary-auth-failure";
	default:
		return "not-authorized";
	}
}

/* The first message of a -PLUS exchange decides who runs it: GNU SASL for
 * the bindings it knows, scram_tsep for tls-server-end-point. */
static bool wants_tsep(const struct sasl *s, const char *in)
{
	if (!s->plus || in == NULL)
		return false;
	char *raw = NULL;
	size_t len = 0;
	if (gsasl_base64_from(in, strlen(in), &raw, &len) != GSASL_OK)
		return false;
	static const char p[] = "p=tls-server-end-point,";
	bool r = len >= sizeof(p) - 1 && memcmp(raw, p, sizeof(p) - 1) == 0;
	gsasl_free(raw);
	return r;
}

static int start_gsasl(struct sasl *s)
{
	int rc = gsasl_server_start(gsasl_ctx, s->mech, &s->gs);
	if (rc != GSASL_OK)
		return rc;
	gsasl_session_hook_set(s->gs, s);
	gsasl_property_set(s->gs, GSASL_SERVICE, "xmpp");
	gsasl_property_set(s->gs, GSASL_HOSTNAME, s->host);
	/* GNU SASL fails a non-PLUS exchange whose gs2 flag is "y" (client
	 * could bind, thinks we cannot) whenever binding data is set. That is
	 * a downgrade signal only if we offered a binding the client could
	 * have used. Clients that predate XEP-0440 know only tls-unique, the
	 * RFC 5802 default, which does not exist on TLS 1.3 (slixmpp 1.8 is
	 * one): their "y" there says nothing, so non-PLUS exchanges get no
	 * tls-exporter data. On TLS 1.2 tls-unique is set and "y" fails. */
	if (s->cb.exporter_len && s->plus)
		set_b64(s->gs, GSASL_CB_TLS_EXPORTER, s->cb.exporter,
			s->cb.exporter_len);
	if (s->cb.unique_len)
		set_b64(s->gs, GSASL_CB_TLS_UNIQUE, s->cb.unique,
			s->cb.unique_len);
	return GSASL_OK;
}

static enum sasl_status step_tsep(struct sasl *s, struct store *st,
				  const char *in, char **out_r,
				  const char **cond_r)
{
	char *raw = NULL, *out = NULL;
	size_t rawlen = 0, outlen = 0;
	if (in != NULL && gsasl_base64_from(in, strlen(in), &raw, &rawlen) !=
				  GSASL_OK) {
		*cond_r = "incorrect-encoding";
		return SASL_FAILURE;
	}
	char *user = NULL;
	enum sasl_status r = scram_tsep_step(s->tsep, st, s->host,
					     s->iterations, &s->cb,
					     raw ? raw : "", rawlen, &out,
					     &outlen, &user, cond_r);
	gsasl_free(raw);
	/* scram_tsep challenges only after loading the credentials. */
	if (r == SASL_CHALLENGE)
		s->creds_loaded = true;
	if (user != NULL) {
		free(s->user);
		s->user = user;
	}
	*out_r = NULL;
	if (out != NULL && outlen > 0)
		gsasl_base64_to(out, outlen, out_r, NULL);
	free(out);
	return r;
}

/* RFC 6120 §6.3.8: an authzid, if any, must be the account itself. */
static bool authzid_ok(const struct sasl *s)
{
	const char *z = s->gs ? gsasl_property_fast(s->gs, GSASL_AUTHZID)
			      : NULL;
	/* GNU SASL's PLAIN reports the authcid as authzid when none was
	 * sent. */
	if (z == NULL || *z == '\0' || strcmp(z, s->user) == 0)
		return true;
	char want[2100];
	snprintf(want, sizeof(want), "%s@%s", s->user, s->host);
	return strcmp(z, want) == 0;
}

enum sasl_status sasl_step(struct sasl *s, struct store *st, const char *in,
			   char **out_r, const char **cond_r)
{
	*out_r = NULL;
	s->st = st;
	if (s->gs == NULL && s->tsep == NULL) {
		if (wants_tsep(s, in)) {
			s->tsep = scram_tsep_new(s->hash);
		} else if (start_gsasl(s) != GSASL_OK) {
			*cond_r = "temporary-auth-failure";
			return SASL_FAILURE;
		}
	}
	if (s->tsep != NULL)
		return step_tsep(s, st, in, out_r, cond_r);
	/* XMPP's "=" is an empty response; no text is no initial response. */
	const char *b64 = in == NULL || strcmp(in, "=") == 0 ? "" : in;
	char *out = NULL;
	int rc = gsasl_step64(s->gs, b64, &out);
	s->st = NULL;
	if (rc == GSASL_NEEDS_MORE) {
		*out_r = out;
		return SASL_CHALLENGE;
	}
	if (rc == GSASL_OK && s->user != NULL && authzid_ok(s)) {
		*out_r = out && *out ? out : NULL;
		if (*out_r == NULL)
			free(out);
		return SASL_SUCCESS;
	}
	free(out);
	*cond_r = rc == GSASL_OK ? "invalid-authzid" : gsasl_cond(rc);
	if (rc == GSASL_OK && s->user == NULL)
		*cond_r = "not-authorized";
	return SASL_FAILURE;
}
