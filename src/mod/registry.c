/*
 * registry.c - the table of compiled-in modules (from modules.def) and iq
 * handler lookup.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>

#include "../core/bug.h"

#include <uv.h>

#include "../core/conf.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../router/services.h"
#include "module.h"

const struct module *const modules[] = {
#define MODULE(name) &mod_##name,
#include "modules.def"
#undef MODULE
	NULL,
};

const struct store_schema *const *module_schemas(void)
{
	static const struct store_schema *list[ARRAY_SIZE(modules)];
	static bool done;
	if (!done) {
		/* Filled once on the main thread before any shard starts. */
		size_t n = 0;
		for (const struct module *const *m = modules; *m; m++)
			if ((*m)->store != NULL)
				list[n++] = (*m)->store;
		list[n] = NULL;
		done = true;
	}
	return list;
}

bool module_advertised(const struct module *m)
{
	return m->advertised == NULL || m->advertised();
}

const char *const *module_features(const struct module *m)
{
	return module_advertised(m) ? m->features : NULL;
}

int modules_start(struct store *st, char **error_r)
{
	for (const struct module *const *m = modules; *m; m++)
		if ((*m)->start != NULL && (*m)->start(st, error_r) < 0)
			return -1;
	return 0;
}

void module_stream_features(struct buf *b, enum feature_phase phase,
			    size_t host_idx)
{
	for (const struct module *const *m = modules; *m; m++)
		if ((*m)->stream_features != NULL)
			(*m)->stream_features(b, phase, host_idx);
}

enum hook_ret module_preauth_iq(struct preauth_iq *q)
{
	for (const struct module *const *m = modules; *m; m++)
		if ((*m)->preauth_iq != NULL &&
		    (*m)->preauth_iq(q) == HOOK_STOP)
			return HOOK_STOP;
	return HOOK_PASS;
}

static void service_stanza(struct stanza *st, size_t host_idx,
			   const void *ud)
{
	const struct module_service *svc = ud;
	bool request = str_eq_c(st->type, "get") || str_eq_c(st->type, "set");
	if (st->kind == STANZA_IQ && st->to.node.len == 0 &&
	    st->to.resource.len == 0) {
		if (request)
			iq_dispatch_routes(st, host_idx, TO_SERVICE, svc->iq);
		else if (!iq_response(st))
			stanza_free(&st);
		return;
	}
	if (svc->stanza != NULL)
		svc->stanza(st, host_idx);
	else if (st->kind == STANZA_IQ)
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE, NULL);
	else
		stanza_free(&st);
}

int module_services_start(const char **why_r)
{
	const struct config *conf = server.conf;
	for (const struct module *const *m = modules; *m; m++) {
		const struct module_service *svc = (*m)->service;
		const char *label = svc != NULL ? svc->label() : NULL;
		for (size_t h = 0; label != NULL && h < conf->nhosts; h++) {
			char *d = NULL;
			BUG_ON(asprintf(&d, "%s.%s", label, conf->hosts[h]) < 0);
			int rc = services_add(d, h, service_stanza, svc);
			if (rc == 0)
				log_info("%s: serving %s", (*m)->name, d);
			free(d);
			if (rc < 0) {
				*why_r = "a subdomain service's domain is "
					 "also a host, a component or another "
					 "service";
				return -1;
			}
		}
		if (label != NULL && svc->start != NULL &&
		    svc->start(why_r) < 0)
			return -1;
	}
	return 0;
}

void modules_fini(void)
{
	/* Waiting requests are told first: their callbacks may use what
	 * the modules' fini frees. */
	iq_requests_fini();
	for (const struct module *const *m = modules; *m; m++)
		if ((*m)->fini != NULL)
			(*m)->fini();
	services_fini();
}

const struct iq_route *module_find_iq(enum iq_type type,
				      enum iq_target target, struct str ns,
				      struct str name)
{
	for (const struct module *const *m = modules; *m; m++)
		for (const struct iq_route *r = (*m)->iq; r && r->fn; r++)
			if ((r->types & type) && (r->targets & target) &&
			    str_eq_c(ns, r->ns) && str_eq_c(name, r->name))
				return r;
	return NULL;
}

/* Hooks sorted by (event, priority) once, on first use from the main
 * thread (module_schemas() time) or any shard: guarded by uv_once. */
struct hook_slot {
	const struct hook *hooks[32];
	size_t n;
};
static struct hook_slot hook_table[EV_COUNT];
static uv_once_t hook_once = UV_ONCE_INIT;

static void hooks_build(void)
{
	for (const struct module *const *m = modules; *m; m++)
		for (const struct hook *h = (*m)->hooks; h && h->fn; h++) {
			struct hook_slot *s = &hook_table[h->ev];
			BUG_ON(s->n == ARRAY_SIZE(s->hooks));
			size_t i = s->n++;
			while (i > 0 && s->hooks[i - 1]->priority > h->priority) {
				s->hooks[i] = s->hooks[i - 1];
				i--;
			}
			s->hooks[i] = h;
		}
}

enum hook_ret hooks_run(struct hook_ctx *ctx)
{
	uv_once(&hook_once, hooks_build);
	const struct hook_slot *s = &hook_table[ctx->ev];
	for (size_t i = 0; i < s->n; i++)
		if (s->hooks[i]->fn(ctx) == HOOK_STOP)
			return HOOK_STOP;
	return HOOK_PASS;
}

const char *hook_event_name(enum hook_event ev)
{
	static const char *const names[] = {
		[EV_PRESENCE_OUT] = "presence-out",
		[EV_MESSAGE_OUT] = "message-out",
		[EV_IQ_OUT] = "iq-out",
		[EV_PRESENCE_IN] = "presence-in",
		[EV_MESSAGE_IN] = "message-in",
		[EV_IQ_IN] = "iq-in",
		[EV_MESSAGE_OFFLINE] = "message-offline",
		[EV_MESSAGE_DELIVER] = "message-deliver",
		[EV_SESSION_BOUND] = "session-bound",
		[EV_SESSION_END] = "session-end",
	};
	return (unsigned)ev < EV_COUNT ? names[ev] : "?";
}
