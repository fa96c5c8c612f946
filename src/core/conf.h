/*
 * conf.h - the server configuration, loaded from YAML (libyaml).
 *
 * Every key is described once in a typed option table in conf.c (name, type,
 * target, default, bounds, one-line doc): the table drives parsing,
 * validation and docs/config.md (stanzad --config-reference). Unknown keys
 * and bad values are errors reported as "file:line: message".
 *
 * A loaded struct config is immutable and shared read-only by all shards.
 */
#ifndef STANZAD_CONF_H
#define STANZAD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

enum listener_type {
	LISTENER_C2S,     /* STARTTLS on a plain socket (RFC 6120 §5) */
	LISTENER_C2S_TLS, /* direct TLS (XEP-0368) */
	LISTENER_COMPONENT, /* external components, plain TCP (XEP-0114) */
	LISTENER_S2S,     /* server-to-server, STARTTLS (RFC 6120) */
	LISTENER_S2S_TLS, /* server-to-server, direct TLS (XEP-0368) */
};

const char *listener_type_name(enum listener_type t);

struct listener_conf {
	enum listener_type type;
	char *address; /* numeric IPv4 or IPv6 address */
	uint16_t port;
};

struct host_conf {
	char *name;      /* the domain, nameprep'd */
	char *cert_file; /* PEM; NULL: the self-signed certificate in data_dir */
	char *key_file;  /* PEM; NULL with cert_file NULL */
};

/* An external component (XEP-0114): the domain it serves and the secret
 * of its handshake. */
struct component_conf {
	char *domain; /* nameprep'd; never one of the hosts */
	char *secret; /* non-empty */
};

struct limits_conf {
	size_t max_stanza_size;       /* bytes; default 256 KiB */
	unsigned max_depth;           /* element nesting; default 32 */
	unsigned max_attrs;           /* attributes per element; default 64 */
	unsigned auth_timeout_ms;     /* unauthenticated connections; 30 s */
	unsigned max_conns_per_ip;    /* default 32 */
	unsigned max_sasl_attempts;   /* failures before the stream ends; 3 */
	size_t max_output;            /* pending output per session; 1 MiB */
	unsigned max_connections;     /* per process; default 10000 */
	unsigned max_offline_messages; /* per account (XEP-0160); 1000 */
	unsigned registration_interval_ms; /* XEP-0077, per address; 60 s */
	size_t c2s_rate;              /* bytes/s per client stream; 0: off */
	size_t c2s_burst;             /* bytes the rate lets through at once */
};

struct store_conf {
	unsigned busy_timeout_ms;     /* wait for another writer; 5 s */
};

/* The resolver for server-to-server (src/net/resolve.c). */
struct dns_conf {
	char *hosts_file;        /* NULL: /etc/hosts */
	char **upstreams;        /* "address" or "address@port"; none: the
				    servers of /etc/resolv.conf */
	size_t nupstreams;
	char *trust_anchor_file; /* NULL: no DNSSEC, nothing is secure */
	unsigned timeout_ms;     /* per lookup; default 10 s */
};

struct s2s_conf {
	char *ca_file;        /* PEM trust store; NULL: the system's */
	bool dialback;        /* XEP-0220 when certificates do not verify */
	bool bidi;            /* XEP-0288 bidirectional streams */
	unsigned connect_timeout_ms; /* DNS, connect, TLS and auth; 10 s */
	unsigned idle_timeout_ms;    /* no stanza either way; 10 min */
	unsigned max_queue;   /* stanzas held per domain while connecting */
};

/* Publish-subscribe: PEP on every account (XEP-0163) and the service on
 * a subdomain (XEP-0060). */
struct pubsub_conf {
	char *subdomain;      /* "pubsub": pubsub.HOST for each host; NULL:
				 no service */
	unsigned max_items;   /* most items a node may keep; 256 */
	unsigned max_nodes;   /* nodes per account or service host; 256 */
};

/* Group chat (XEP-0045) on a subdomain of every host. */
struct muc_conf {
	bool enabled;          /* default true */
	char *subdomain;       /* "conference": conference.HOST */
	unsigned max_occupants; /* most occupants a room may be configured
				   to hold (muc#roomconfig_maxusers) */
	unsigned max_history;  /* messages a room keeps for joiners */
	unsigned max_rooms;    /* rooms per service */
};

/* The message archive (XEP-0313, src/mod/mam/). */
struct mam_conf {
	bool enabled;            /* default true */
	uint64_t retention_ms;   /* messages older are deleted; 0: kept */
	unsigned queue_high;     /* copies queued for the writer at which
				    senders stop reading; half: resume */
};

struct config {
	char *path;     /* the file this was loaded from */
	char **hosts;   /* nhosts domains, nameprep'd, first is the default */
	size_t nhosts;
	struct host_conf *host_confs; /* nhosts entries, same order */
	char *data_dir;
	char *control_socket; /* NULL: data_dir/stanzad.ctl */
	struct listener_conf *listeners;
	size_t nlisteners;
	struct component_conf *components;
	size_t ncomponents;
	/* The domains of the server's own subdomain services (pubsub.HOST,
	 * conference.HOST), registered at start-up (conf_add_service). */
	char **services;
	size_t nservices;
	struct limits_conf limits;
	struct store_conf store;
	struct dns_conf dns;
	struct s2s_conf s2s;
	struct pubsub_conf pubsub;
	struct muc_conf muc;
	struct mam_conf mam;
	enum log_level log_level;
	unsigned shards;         /* 0: one per core */
	unsigned scram_iterations; /* for new passwords; default 10000 */
	bool registration;       /* XEP-0077 in-band registration */
};

/* Loads path. Returns 0 and *conf_r, or -1 and *error_r (malloc'ed,
 * "file:line: message", caller frees). */
int conf_load(const char *path, struct config **conf_r, char **error_r);
/* As conf_load, from a string (for tests); name is used in messages. */
int conf_load_string(const char *name, const char *yaml, size_t len,
		     struct config **conf_r, char **error_r);
void conf_free(struct config *c);
/* Index of host in c->hosts or -1; host must already be nameprep'd. */
int conf_find_host(const struct config *c, const char *host, size_t len);
/* Index of domain in c->components or -1; domain must be nameprep'd. */
int conf_find_component(const struct config *c, const char *domain,
			size_t len);
/* The domains we serve, for server-to-server: the hosts, then the
 * components (XEP-0114), then the subdomain services, whose stanzas all
 * federate like a host's. Index of domain (nameprep'd) in that list: a
 * host's index, nhosts + a component's index, nhosts + ncomponents + a
 * service's index, or -1. */
int conf_find_domain(const struct config *c, const char *domain, size_t len);
/* Number of such domains, and the name of one (idx below that number). */
static inline size_t conf_ndomains(const struct config *c)
{
	return c->nhosts + c->ncomponents + c->nservices;
}
/* Adds a subdomain service's domain (copied) to the list above. At
 * start-up, before the TLS contexts are made (they are indexed by it). */
void conf_add_service(struct config *c, const char *domain);
const char *conf_domain_name(const struct config *c, size_t idx);
/* Writes the Markdown reference of every key (docs/config.md). */
void conf_write_reference(FILE *out);

#endif
