/*
 * registry.c - the table of compiled-in modules (from modules.def) and iq
 * handler lookup.
 */
#include <stdbool.h>
#include <stddef.h>

#include "../core/bug.h"

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

void module_stream_features(struct buf *b, enum feature_phase phase,
			    size_t host_idx)
{
	for (const struct module *const *m = modules; *m; m++)
		if ((*m)->stream_features != NULL)
			(*m)->stream_features(b, phase, host_idx);
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
