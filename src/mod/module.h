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

/*
 * An iq a client sends after TLS but before authenticating (XEP-0077
 * in-band registration is the one use). The stream offers each such iq
 * (type get or set, an id, exactly one child element) to every module's
 * preauth_iq in modules.def order; the first that returns HOOK_STOP owns
 * it and must answer it, now or after defer, through reply. If none takes
 * it, the stream ends as for any other stanza before authentication.
 */
struct preauth_iq;
typedef int preauth_work_fn(struct store *st, struct preauth_iq *q);
typedef void preauth_done_fn(struct preauth_iq *q, int status);

struct preauth_iq {
	struct xml_elem *x;       /* the request, in a */
	struct xml_elem *payload; /* its child element */
	struct arena *a;          /* x's arena: allocate the reply in it */
	enum iq_type type;
	size_t host_idx;          /* the stream's host */
	const char *ip;           /* the client's address (for limits) */
	void *ud;                 /* free for the module across defer */
	/* Answers: an error if err != STANZA_ERR_NONE, else a result with
	 * payload (NULL: empty). Frees the request and a. Call once. */
	void (*reply)(struct preauth_iq *q, enum stanza_err err,
		      struct xml_elem *payload);
	/* Runs work(store, q) on the thread pool, then done(q, status) on the
	 * stream's shard with work's return value, or a negative libuv
	 * error (then work did not run). The stream reads nothing more
	 * meanwhile, so the client's next request sees the outcome. done
	 * must call reply (it only frees if the stream has gone). */
	void (*defer)(struct preauth_iq *q, preauth_work_fn *work,
		      preauth_done_fn *done);
	void *stream;             /* the stream's own */
};

typedef enum hook_ret preauth_iq_fn(struct preauth_iq *q);

/*
 * A service the module runs on a subdomain of every host (services.h,
 * docs/internals/services.md): label() gives the subdomain's label from
 * the config ("pubsub" for pubsub.HOST), or NULL while it is off. iq get
 * and set to the service's domain go to the handlers of iq (target
 * TO_SERVICE, ctx->host_idx the host below it), replies to the server's
 * own requests to iq_response(); everything else, iqs to JIDs in the
 * domain included, to stanza (NULL: iq requests get
 * <service-unavailable/>, the rest is dropped).
 */
struct module_service {
	const char *(*label)(void);
	const struct iq_route *iq;                  /* { 0 }-terminated */
	void (*stanza)(struct stanza *st, size_t host_idx);
	/* NULL, or called once on the main thread after the service's
	 * domains are registered and the store is open, before the shards
	 * start (group chat loads its persistent rooms). Returns 0, or -1
	 * with a static message in *why_r. */
	int (*start)(const char **why_r);
};

struct module {
	const char *name; /* "ping" */
	const char *spec; /* "XEP-0199" */
	const struct iq_route *iq;                  /* { 0 }-terminated */
	const char *const *features;                /* NULL-terminated */
	/* NULL, or false when the features (and account features) are not
	 * to be listed (the feature is switched off in the config); handlers
	 * still run. */
	bool (*advertised)(void);
	const struct disco_identity *identities;    /* { 0 }-terminated */
	/* What disco#info on an account's bare JID lists besides the
	 * account itself (RFC 6121 §8.5.1; XEP-0163's pubsub/pep). */
	const struct disco_identity *account_identities;
	const char *const *account_features;        /* NULL-terminated */
	const struct store_schema *store;           /* its tables, or NULL */
	stream_features_fn *stream_features;        /* or NULL */
	const struct hook *hooks;                   /* { 0 }-terminated */
	preauth_iq_fn *preauth_iq;                  /* or NULL */
	const struct module_service *service;       /* or NULL */
	/* On the main thread once the store is open and the services are
	 * registered, before any shard starts (loads what hooks need
	 * synchronously); -1 and *error_r (malloc'ed) stop start-up. NULL:
	 * nothing to do. */
	int (*start)(struct store *st, char **error_r);
	/* At shutdown, after the shards stopped and before the store
	 * closes: write what is still queued, free what the module keeps in
	 * memory. NULL: nothing. Called whether or not start ran. */
	void (*fini)(void);
};

#define MODULE(name) extern const struct module mod_##name;
#include "modules.def"
#undef MODULE

/* Every compiled-in module, NULL-terminated, in modules.def order. */
extern const struct module *const modules[];

/* The schemas of every module that has one, NULL-terminated, for
 * store_register_schemas(). */
const struct store_schema *const *module_schemas(void);

/* m's disco features (NULL when it lists none now): what disco#info
 * and the caps hash (XEP-0115) list. */
const char *const *module_features(const struct module *m);
/* Whether m's features are listed now (its advertised, or always). */
bool module_advertised(const struct module *m);

/* Calls every module's start, in modules.def order; -1 and *error_r at
 * the first failure. */
int modules_start(struct store *st, char **error_r);

/* Calls every module's stream_features. */
void module_stream_features(struct buf *b, enum feature_phase phase,
			    size_t host_idx);

/* Offers a pre-authentication iq to every module's preauth_iq; returns
 * HOOK_STOP once one took it, HOOK_PASS (q untouched) if none did. */
enum hook_ret module_preauth_iq(struct preauth_iq *q);

/* Registers the subdomain services of the modules that have one switched
 * on (services.h). Returns 0, or -1 with a static message in *why_r when
 * a service's domain is taken. Main thread, before the shards start. */
int module_services_start(const char **why_r);
/* Runs every module's fini, then forgets the services and the server's
 * waiting iq requests. After the shards stopped. */
void modules_fini(void);

/* The first handler registered for this iq, or NULL. */
const struct iq_route *module_find_iq(enum iq_type type,
				      enum iq_target target, struct str ns,
				      struct str name);

#endif
