/*
 * sasl_external.c - SASL EXTERNAL for server-to-server; see
 * sasl_external.h.
 */
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>

#include "../core/xmalloc.h"
#include "sasl_external.h"

static Gsasl *ext_ctx;

/* What the exchange in progress checks against or offers (one exchange at
 * a time per thread; the property is read inside gsasl_step64). */
static _Thread_local const char *ext_domain;

static int on_gsasl(Gsasl *ctx, Gsasl_session *gs, Gsasl_property prop)
{
	(void)ctx;
	switch (prop) {
	case GSASL_AUTHZID: /* client: the identity to assert */
		gsasl_property_set(gs, GSASL_AUTHZID, ext_domain);
		return GSASL_OK;
	case GSASL_VALIDATE_EXTERNAL: {
		/* server: the certificate was checked for ext_domain; the
		 * authorization identity must be empty or that domain
		 * (XEP-0178 §3) */
		const char *authzid = gsasl_property_fast(gs, GSASL_AUTHZID);
		if (authzid == NULL || *authzid == '\0' ||
		    strcmp(authzid, ext_domain) == 0)
			return GSASL_OK;
		return GSASL_AUTHENTICATION_ERROR;
	}
	default:
		return GSASL_NO_CALLBACK;
	}
}

int sasl_external_init(const char **error_r)
{
	if (gsasl_init(&ext_ctx) != GSASL_OK) {
		*error_r = "cannot initialise GNU SASL";
		return -1;
	}
	gsasl_callback_set(ext_ctx, on_gsasl);
	if (!gsasl_server_support_p(ext_ctx, "EXTERNAL") ||
	    !gsasl_client_support_p(ext_ctx, "EXTERNAL")) {
		*error_r = "GNU SASL lacks EXTERNAL";
		sasl_external_fini();
		return -1;
	}
	return 0;
}

void sasl_external_fini(void)
{
	if (ext_ctx != NULL)
		gsasl_done(ext_ctx);
	ext_ctx = NULL;
}

bool sasl_external_server(const char *in, const char *domain,
			  const char **cond_r)
{
	Gsasl_session *gs;
	*cond_r = "temporary-auth-failure";
	if (gsasl_server_start(ext_ctx, "EXTERNAL", &gs) != GSASL_OK)
		return false;
	ext_domain = domain;
	char *out = NULL;
	/* "=" is an empty response (RFC 6120 §6.4.2) */
	int rc = gsasl_step64(gs, strcmp(in, "=") == 0 ? "" : in, &out);
	ext_domain = NULL;
	gsasl_free(out);
	gsasl_finish(gs);
	if (rc == GSASL_OK)
		return true;
	*cond_r = rc == GSASL_BASE64_ERROR ? "incorrect-encoding"
					   : "invalid-authzid";
	return false;
}

char *sasl_external_client(const char *domain)
{
	Gsasl_session *gs;
	if (gsasl_client_start(ext_ctx, "EXTERNAL", &gs) != GSASL_OK)
		return NULL;
	ext_domain = domain;
	char *out = NULL;
	int rc = gsasl_step64(gs, "", &out);
	ext_domain = NULL;
	gsasl_finish(gs);
	char *r = NULL;
	if (rc == GSASL_OK && out != NULL)
		r = xstrdup(*out ? out : "=");
	gsasl_free(out);
	return r;
}
