/*
 * mod_disco.c - XEP-0030: Service Discovery for the server itself.
 *
 * disco#info lists the server identity (server/im) and the features of
 * every module, gathered from the module table; disco#items lists the
 * external components (XEP-0114) whose domain is a subdomain of the host
 * asked, as Prosody does, and the server's own subdomain services, so clients find gateways under their server
 * without seeing another virtual host's. To an account's bare JID,
 * disco#info answers for the account (identity account/registered, RFC
 * 6121 §8.5.1, plus what modules list for accounts: PEP); its disco#items
 * are mod_pep's.
 */
#include <string.h>

#include "../core/conf.h"
#include "../core/server.h"
#include "../router/services.h"
#include "../xmpp/ns.h"
#include "caps.h"
#include "disco.h"
#include "module.h"

void disco_add_identity(struct arena *a, struct xml_elem *q,
			const char *category, const char *type,
			const char *name)
{
	struct xml_elem *e = xml_add_child(a, q, STR_LIT(NS_DISCO_INFO),
					   STR_LIT("identity"));
	xml_attr_set(a, e, "category", str_c(category));
	xml_attr_set(a, e, "type", str_c(type));
	if (name != NULL)
		xml_attr_set(a, e, "name", str_c(name));
}

void disco_add_feature(struct arena *a, struct xml_elem *q, const char *var)
{
	struct xml_elem *e = xml_add_child(a, q, STR_LIT(NS_DISCO_INFO),
					   STR_LIT("feature"));
	xml_attr_set(a, e, "var", str_c(var));
}

static void add_identity(struct iq_ctx *ctx, struct xml_elem *q,
			 const struct disco_identity *id)
{
	disco_add_identity(ctx->st->a, q, id->category, id->type, id->name);
}

static enum hook_ret info_handle(struct iq_ctx *ctx)
{
	struct str node = xml_attr_get(ctx->payload, "node");
	/* XEP-0115 §6.2: the caps node answers like the server itself. */
	bool caps = node.p != NULL && ctx->target == TO_HOST &&
		    caps_node_matches(node);
	if (node.p != NULL && !caps)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct xml_elem *q = iq_payload_new(ctx, NS_DISCO_INFO, "query");
	if (caps)
		xml_attr_set(ctx->st->a, q, "node", node);
	if (ctx->target == TO_BARE) {
		static const struct disco_identity account = {
			"account", "registered", NULL
		};
		add_identity(ctx, q, &account);
		for (const struct module *const *m = modules; *m; m++)
			for (const struct disco_identity *id =
				     (*m)->account_identities;
			     id && id->category; id++)
				add_identity(ctx, q, id);
		disco_add_feature(ctx->st->a, q, NS_DISCO_INFO);
		for (const struct module *const *m = modules; *m; m++)
			for (const char *const *f = (*m)->account_features;
			     f && *f && module_advertised(*m); f++)
				disco_add_feature(ctx->st->a, q, *f);
		return iq_reply_result(ctx, q);
	}
	for (const struct module *const *m = modules; *m; m++)
		for (const struct disco_identity *id = (*m)->identities;
		     id && id->category; id++)
			add_identity(ctx, q, id);
	for (const struct module *const *m = modules; *m; m++)
		for (const char *const *f = module_features(*m); f && *f; f++)
			disco_add_feature(ctx->st->a, q, *f);
	return iq_reply_result(ctx, q);
}

/* Whether sub is a subdomain of domain: "gw.example.org" of
 * "example.org" (not "badexample.org"). */
static bool subdomain_of(const char *sub, const char *domain)
{
	size_t n = strlen(sub), m = strlen(domain);
	return n > m + 1 && sub[n - m - 1] == '.' &&
	       memcmp(sub + n - m, domain, m) == 0;
}

static enum hook_ret items_handle(struct iq_ctx *ctx)
{
	struct str node = xml_attr_get(ctx->payload, "node");
	if (node.p != NULL)
		return iq_reply_error(ctx, STANZA_ERR_ITEM_NOT_FOUND);
	struct xml_elem *q = iq_payload_new(ctx, NS_DISCO_ITEMS, "query");
	const struct config *conf = server.conf;
	const char *host = conf->hosts[ctx->host_idx];
	for (size_t i = 0; ctx->target == TO_HOST && i < conf->ncomponents;
	     i++) {
		const char *d = conf->components[i].domain;
		if (!subdomain_of(d, host))
			continue;
		struct xml_elem *e = xml_add_child(ctx->st->a, q,
						   STR_LIT(NS_DISCO_ITEMS),
						   STR_LIT("item"));
		xml_attr_set(ctx->st->a, e, "jid", str_c(d));
	}
	/* The server's own subdomain services (services.h). */
	for (size_t i = 0; i < services_count(); i++) {
		size_t h;
		const char *d = service_domain(i, &h);
		if (h != ctx->host_idx)
			continue;
		struct xml_elem *e = xml_add_child(ctx->st->a, q,
						   STR_LIT(NS_DISCO_ITEMS),
						   STR_LIT("item"));
		xml_attr_set(ctx->st->a, e, "jid", str_c(d));
	}
	return iq_reply_result(ctx, q);
}

static const struct iq_route disco_iq[] = {
	{ IQ_GET, TO_HOST | TO_BARE, NS_DISCO_INFO, "query", info_handle },
	/* An account's items are its PEP nodes (mod_pep). */
	{ IQ_GET, TO_HOST, NS_DISCO_ITEMS, "query", items_handle },
	{ 0 },
};

const struct module mod_disco = {
	.name = "disco",
	.spec = "XEP-0030",
	.iq = disco_iq,
	.features = (const char *const[]){ NS_DISCO_INFO, NS_DISCO_ITEMS,
					   NULL },
	.identities = (const struct disco_identity[]){
		{ "server", "im", "stanzad" },
		{ 0 },
	},
};
