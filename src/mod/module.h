/*
 * module.h - the module API: what a feature (a XEP) registers.
 *
 * A module is a const record compiled in and listed once in modules.def.
 * It registers iq handlers, disco features and identities; the core knows
 * nothing about any XEP. Handlers return HOOK_PASS or HOOK_STOP only.
 */
#ifndef STANZAD_MOD_MODULE_H
#define STANZAD_MOD_MODULE_H

#include "../router/hooks.h"
#include "../router/iq.h"
#include "../store/store.h"

struct iq_route {
	unsigned types;   /* IQ_GET | IQ_SET */
	unsigned targets; /* TO_HOST | TO_BARE */
	const char *ns;   /* payload namespace */
	const char *name; /* payload element */
	iq_handler_fn *fn;
};

struct disco_identity {
	const char *category, *type, *name;
};

/* When stream features are being sent on a client stream. */
enum feature_phase {
	FEATURES_PRE_TLS,  /* before STARTTLS */
	FEATURES_PRE_AUTH, /* encrypted, before SASL */
	FEATURES_BOUND,    /* authenticated, before resource binding */
};

/* Appends a module's stream feature elements for this phase and host to b
 * (escaped XML). */
typedef void stream_features_fn(struct buf *b, enum feature_phase phase,
				size_t host_idx);

struct module {
	const char *name; /* "ping" */
	const char *spec; /* "XEP-0199" */
	const struct iq_route *iq;                  /* { 0 }-terminated */
	const char *const *features;                /* NULL-terminated */
	const struct disco_identity *identities;    /* { 0 }-terminated */
	const struct store_schema *store;           /* its tables, or NULL */
	stream_features_fn *stream_features;        /* or NULL */
	const struct hook *hooks;                   /* { 0 }-terminated */
};

#define MODULE(name) extern const struct module mod_##name;
#include "modules.def"
#undef MODULE

/* Every compiled-in module, NULL-terminated, in modules.def order. */
extern const struct module *const modules[];

/* The schemas of every module that has one, NULL-terminated, for
 * store_register_schemas(). */
const struct store_schema *const *module_schemas(void);

/* Calls every module's stream_features. */
void module_stream_features(struct buf *b, enum feature_phase phase,
			    size_t host_idx);

/* The first handler registered for this iq, or NULL. */
const struct iq_route *module_find_iq(enum iq_type type,
				      enum iq_target target, struct str ns,
				      struct str name);

#endif
