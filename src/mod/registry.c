/*
 * registry.c - the table of compiled-in modules (from modules.def) and iq
 * handler lookup.
 */
#include <stddef.h>

#include "module.h"

const struct module *const modules[] = {
#define MODULE(name) &mod_##name,
#include "modules.def"
#undef MODULE
	NULL,
};

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
