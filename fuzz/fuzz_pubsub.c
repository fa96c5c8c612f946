/*
 * fuzz_pubsub.c - libFuzzer target for what publish-subscribe reads from
 * clients before any storage: the pubsub request of an iq (ps_parse), the
 * node configuration and publish-options forms it carries
 * (ps_config_apply, ps_preconditions_met), and, for XEP-0115, the
 * verification string of a disco#info answer (caps_compute).
 *
 * The input is one element, parsed as a stanza's payload would be. The
 * checks: nothing crashes or leaks; a configuration that was accepted
 * stays within the limits (max_items between 1 and the configured
 * maximum) and meets itself as a precondition; caps_compute gives the
 * same string twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/server.h"
#include "fuzz.h"
#include "mod/caps.h"
#include "mod/pubsub/pubsub-private.h"
#include "router/route.h"
#include "xml/parser.h"
#include "xmpp/ns.h"

static struct config conf = {
	.limits = { .max_stanza_size = 64 * 1024 },
	.pubsub = { .max_items = 100, .max_nodes = 10 },
};

static _Noreturn void broken(const char *what)
{
	fprintf(stderr, "fuzz_pubsub: %s\n", what);
	abort();
}

static void check_config(struct arena *a, const struct xml_elem *x,
			 bool service)
{
	struct dataform f;
	if (x == NULL || dataform_parse(a, x, &f) < 0)
		return;
	struct ps_config c;
	ps_config_default(&c, service);
	(void)ps_preconditions_met(&f, &c);
	if (ps_config_apply(a, &f, &c, service).err != STANZA_ERR_NONE)
		return;
	if (c.max_items < 1 || c.max_items > conf.pubsub.max_items)
		broken("max_items out of bounds accepted");
	if (service && c.access != PS_ACCESS_OPEN &&
	    c.access != PS_ACCESS_WHITELIST)
		broken("an access model the service cannot check accepted");
	/* What was applied holds as a precondition (a submit form of
	 * node_config fields only). */
	if (f.type == DATAFORM_SUBMIT && !service &&
	    !ps_preconditions_met(&f, &c))
		broken("an applied configuration does not meet itself");
}

static void check_request(struct arena *a, struct xml_elem *payload,
			  enum iq_type type, bool service)
{
	struct stanza *st = arena_zalloc(a, sizeof(*st));
	struct ps_req *r = arena_zalloc(a, sizeof(*r));
	st->a = a;
	st->kind = STANZA_IQ;
	st->x = xml_elem_new(a, STR_LIT(NS_CLIENT), STR_LIT("iq"));
	st->from = (struct jid){ STR_LIT("a"), STR_LIT("h"), STR_LIT("r") };
	st->to = (struct jid){ STR_LIT("a"), STR_LIT("h"), STR_NULL };
	r->owner = (struct ps_owner){ .host = "h", .user = "a",
				      .jid = st->to, .service = service };
	r->from = st->from;
	struct iq_ctx ctx = { .st = st, .payload = payload, .type = type,
			      .target = service ? TO_SERVICE : TO_BARE };
	if (ps_parse(&ctx, r).err != STANZA_ERR_NONE)
		return;
	if (r->node.p != NULL &&
	    (r->node.len == 0 || r->node.len > PS_NODE_MAX_LEN))
		broken("bad node name accepted");
	check_config(a, r->form, service);
}

FUZZ_TARGET(pubsub)
{
	struct arena *a = fuzz_arena;
	server.conf = &conf;
	struct xml_elem *e = xml_parse_elem(a, STR(data, size),
					    STR_LIT(NS_CLIENT));
	if (e == NULL)
		return;
	for (int service = 0; service < 2; service++) {
		check_request(a, e, IQ_GET, service);
		check_request(a, e, IQ_SET, service);
		check_config(a, dataform_find(e), service);
	}
	struct str v1, v2;
	if (caps_compute(a, e, STR_LIT("sha-1"), &v1) == 0) {
		if (caps_compute(a, e, STR_LIT("sha-1"), &v2) != 0 ||
		    !str_eq(v1, v2))
			broken("caps_compute is not stable");
	}
}
