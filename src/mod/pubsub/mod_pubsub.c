/*
 * mod_pubsub.c - XEP-0060: a publish-subscribe service on a subdomain of
 * every host (pubsub.subdomain in the config; off without it), served in
 * the process through the subdomain service mechanism (services.h).
 *
 * Nodes live with the service domain as host and "" as user (no account
 * has that name, so account removal never touches them); requests are
 * keyed jobs of the domain, so they run in arrival order. Any account of
 * the host creates nodes and owns what it creates; owners and publishers
 * publish; subscriptions are explicit (subscribe/unsubscribe) and every
 * subscribed JID gets each notification.
 */
#include <string.h>

#include "../../core/conf.h"
#include "../../core/server.h"
#include "../../router/route.h"
#include "../../xmpp/ns.h"
#include "../disco.h"
#include "../module.h"
#include "pubsub-private.h"

static const char *const service_features[] = {
	NS_DISCO_INFO,
	NS_DISCO_ITEMS,
	NS_PUBSUB,
	NS_PUBSUB "#access-open",
	NS_PUBSUB "#access-whitelist",
	NS_PUBSUB "#auto-create",
	NS_PUBSUB "#config-node",
	NS_PUBSUB "#create-and-configure",
	NS_PUBSUB "#create-nodes",
	NS_PUBSUB "#delete-items",
	NS_PUBSUB "#delete-nodes",
	NS_PUBSUB "#instant-nodes",
	NS_PUBSUB "#manage-affiliations",
	NS_PUBSUB "#modify-affiliations",
	NS_PUBSUB "#outcast-affiliation",
	NS_PUBSUB "#persistent-items",
	NS_PUBSUB "#publish",
	NS_PUBSUB "#publish-options",
	NS_PUBSUB "#publisher-affiliation",
	NS_PUBSUB "#purge-nodes",
	NS_PUBSUB "#retract-items",
	NS_PUBSUB "#retrieve-affiliations",
	NS_PUBSUB "#retrieve-default",
	NS_PUBSUB "#retrieve-items",
	NS_PUBSUB "#retrieve-subscriptions",
	NS_PUBSUB "#subscribe",
	NULL,
};

static const char *pubsub_label(void)
{
	return server.conf->pubsub.subdomain;
}

static struct ps_req *req_new(struct iq_ctx *ctx)
{
	struct stanza *st = ctx->st;
	struct ps_req *r = arena_zalloc(st->a, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->owner.host = arena_strdup(st->a, st->to.domain).p;
	r->owner.user = "";
	r->owner.jid.domain = arena_strdup(st->a, st->to.domain);
	r->owner.service = true;
	r->from = st->from;
	r->from_bare = jid_to_str(st->a, &st->from, true);
	/* Accounts of the host below the service create nodes. */
	r->from_local = st->from.node.len > 0 &&
			str_eq_c(st->from.domain,
				 server.conf->hosts[ctx->host_idx]);
	return r;
}

static int svc_work(struct store *st, struct iq_ctx *ctx)
{
	return ps_run(st, ctx->st->a, ctx->ud);
}

static void svc_done(struct iq_ctx *ctx, int status)
{
	ps_answer(ctx, ctx->ud, status);
}

static enum hook_ret svc_handle(struct iq_ctx *ctx)
{
	struct ps_req *r = req_new(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	struct ps_error e = ps_parse(ctx, r);
	if (e.err != STANZA_ERR_NONE) {
		ps_reply_error(ctx, e);
		return HOOK_STOP;
	}
	ctx->ud = r;
	return iq_defer_keyed(ctx, ctx->st->to.domain, svc_work, svc_done);
}

static enum hook_ret svc_info(struct iq_ctx *ctx)
{
	if (xml_attr_get(ctx->payload, "node").p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct arena *a = ctx->st->a;
	struct xml_elem *q = iq_payload_new(ctx, NS_DISCO_INFO, "query");
	disco_add_identity(a, q, "pubsub", "service", "Publish-Subscribe");
	for (const char *const *f = service_features; *f; f++)
		disco_add_feature(a, q, *f);
	return iq_reply_result(ctx, q);
}

/* disco#items: every node, for anyone (names are not secret; items of
 * whitelist nodes are). */
static int items_work(struct store *st, struct iq_ctx *ctx)
{
	struct ps_req *r = ctx->ud;
	struct arena *a = ctx->st->a;
	struct ps_node **v;
	size_t n;
	if (ps_store_nodes(st, &r->owner, a, &v, &n) < 0)
		return -1;
	r->reply = iq_payload_new(ctx, NS_DISCO_ITEMS, "query");
	for (size_t i = 0; r->reply != NULL && i < n; i++) {
		struct xml_elem *it = xml_add_child(a, r->reply,
						    STR_LIT(NS_DISCO_ITEMS),
						    STR_LIT("item"));
		if (it == NULL)
			return -1;
		xml_attr_set(a, it, "jid", r->owner.jid.domain);
		xml_attr_set(a, it, "node", v[i]->name);
		if (v[i]->cfg.title.len > 0)
			xml_attr_set(a, it, "name", v[i]->cfg.title);
	}
	return r->reply != NULL ? 0 : -1;
}

static enum hook_ret svc_items(struct iq_ctx *ctx)
{
	if (xml_attr_get(ctx->payload, "node").p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct ps_req *r = req_new(ctx);
	if (r == NULL)
		return iq_reply_error(ctx, STANZA_ERR_RESOURCE_CONSTRAINT);
	ctx->ud = r;
	return iq_defer_keyed(ctx, ctx->st->to.domain, items_work, svc_done);
}

static const struct iq_route service_iq[] = {
	{ IQ_GET | IQ_SET, TO_SERVICE, NS_PUBSUB, "pubsub", svc_handle },
	{ IQ_GET | IQ_SET, TO_SERVICE, NS_PUBSUB_OWNER, "pubsub",
	  svc_handle },
	{ IQ_GET, TO_SERVICE, NS_DISCO_INFO, "query", svc_info },
	{ IQ_GET, TO_SERVICE, NS_DISCO_ITEMS, "query", svc_items },
	{ 0 },
};

const struct module mod_pubsub = {
	.name = "pubsub",
	.spec = "XEP-0060",
	.service = &(const struct module_service){
		.label = pubsub_label,
		.iq = service_iq,
	},
};
