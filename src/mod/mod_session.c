/*
 * mod_session.c - the legacy session establishment of RFC 3921 §3, which
 * RFC 6120 dropped but old clients still send after binding: answer with
 * an empty result. The stream feature says it is optional
 * (draft-cridland-xmpp-session-01), so current clients skip it.
 */
#include "../xmpp/ns.h"
#include "module.h"

static enum hook_ret session_handle(struct iq_ctx *ctx)
{
	return iq_reply_result(ctx, NULL);
}

static const struct iq_route session_iq[] = {
	{ IQ_SET, TO_HOST | TO_BARE, NS_SESSION, "session", session_handle },
	{ 0 },
};

const struct module mod_session = {
	.name = "session",
	.spec = "RFC 3921",
	.iq = session_iq,
};
