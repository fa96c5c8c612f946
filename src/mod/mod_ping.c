/*
 * mod_ping.c - XEP-0199: XMPP Ping. Answers pings to the server and to an
 * account's bare JID (RFC 6121 §8.5.1: the server answers for the account).
 */
#include "../xmpp/ns.h"
#include "module.h"

static enum hook_ret ping_handle(struct iq_ctx *ctx)
{
	return iq_reply_result(ctx, NULL);
}

static const struct iq_route ping_iq[] = {
	{ IQ_GET, TO_HOST | TO_BARE, NS_PING, "ping", ping_handle },
	{ 0 },
};

const struct module mod_ping = {
	.name = "ping",
	.spec = "XEP-0199",
	.iq = ping_iq,
	.features = (const char *const[]){ NS_PING, NULL },
};
