/*
 * mod_version.c - XEP-0092: Software Version of the server. The operating
 * system is not disclosed (XEP-0092 §5: it helps attackers).
 */
#include "../xmpp/ns.h"
#include "module.h"

static void add_text_child(struct iq_ctx *ctx, struct xml_elem *parent,
			   const char *name, const char *text)
{
	struct xml_elem *e = xml_add_child(ctx->st->a, parent,
					   STR_LIT(NS_VERSION), str_c(name));
	xml_add_text(ctx->st->a, e, str_c(text));
}

static enum hook_ret version_handle(struct iq_ctx *ctx)
{
	struct xml_elem *q = iq_payload_new(ctx, NS_VERSION, "query");
	add_text_child(ctx, q, "name", "stanzad");
	add_text_child(ctx, q, "version", STANZAD_VERSION);
	return iq_reply_result(ctx, q);
}

static const struct iq_route version_iq[] = {
	{ IQ_GET, TO_HOST, NS_VERSION, "query", version_handle },
	{ 0 },
};

const struct module mod_version = {
	.name = "version",
	.spec = "XEP-0092",
	.iq = version_iq,
	.features = (const char *const[]){ NS_VERSION, NULL },
};
