/*
 * services.h - services the server runs itself on a subdomain of a host
 * ("pubsub.example.org"; group chat next): every stanza addressed to the
 * domain, or to any JID in it, goes to the in-process handler registered
 * for it, on the shard that routes it. route() asks this table after its
 * own hosts and before external components and s2s.
 *
 * The table is filled at start-up, before any shard runs, and read-only
 * afterwards, so lookups take no lock.
 */
#ifndef STANZAD_ROUTER_SERVICES_H
#define STANZAD_ROUTER_SERVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/str.h"

struct stanza;

/* Takes st (consumed) addressed to the service's domain. host_idx is the
 * host the domain is a subdomain of; ud is what services_add was given. */
typedef void service_fn(struct stanza *st, size_t host_idx, const void *ud);

/* Registers domain (nameprep'd, copied) as a subdomain service of host
 * host_idx. Returns 0, or -1 when the domain is taken (a host, a
 * component or another service): the caller reports it. Main thread,
 * before the shards start. */
int services_add(const char *domain, size_t host_idx, service_fn *fn,
		 const void *ud);
void services_fini(void);

/* For route(): takes st when its 'to' domain is a service's. */
bool service_route(struct stanza *st);
/* The index of domain among the services, or -1. */
int service_find(struct str domain);
/* The domain of service i (static for the process), and its host. */
const char *service_domain(size_t i, size_t *host_idx_r);
size_t services_count(void);

#endif
