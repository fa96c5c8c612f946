/*
 * mod_time.c - XEP-0202: Entity Time. The server answers in UTC: tzo
 * +00:00 and a XEP-0082 date-time with milliseconds.
 */
#include "../xmpp/datetime.h"
#include "../xmpp/ns.h"
#include "module.h"

static enum hook_ret time_handle(struct iq_ctx *ctx)
{
	char utc[XEP82_DATETIME_LEN];
	xep82_now(utc);
	struct arena *a = ctx->st->a;
	struct xml_elem *t = iq_payload_new(ctx, NS_TIME, "time");
	xml_add_text(a, xml_add_child(a, t, STR_LIT(NS_TIME), STR_LIT("tzo")),
		     STR_LIT("+00:00"));
	xml_add_text(a, xml_add_child(a, t, STR_LIT(NS_TIME), STR_LIT("utc")),
		     str_c(utc));
	return iq_reply_result(ctx, t);
}

static const struct iq_route time_iq[] = {
	{ IQ_GET, TO_HOST, NS_TIME, "time", time_handle },
	{ 0 },
};

const struct module mod_time = {
	.name = "time",
	.spec = "XEP-0202",
	.iq = time_iq,
	.features = (const char *const[]){ NS_TIME, NULL },
};
