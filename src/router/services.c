/*
 * services.c - the table of in-process subdomain services; see
 * services.h and docs/internals/services.md.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/conf.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "route.h"
#include "services.h"

struct service {
	char *domain;
	size_t host_idx;
	service_fn *fn;
	const void *ud;
};

static struct service *services;
static size_t nservices;

int service_find(struct str domain)
{
	for (size_t i = 0; i < nservices; i++)
		if (str_eq_c(domain, services[i].domain))
			return (int)i;
	return -1;
}

int services_add(const char *domain, size_t host_idx, service_fn *fn,
		 const void *ud)
{
	size_t len = strlen(domain);
	if (service_find(str_c(domain)) >= 0 ||
	    conf_find_host(server.conf, domain, len) >= 0 ||
	    conf_find_component(server.conf, domain, len) >= 0)
		return -1;
	services = xreallocarray(services, nservices + 1, sizeof(*services));
	services[nservices++] = (struct service){
		.domain = xstrdup(domain),
		.host_idx = host_idx,
		.fn = fn,
		.ud = ud,
	};
	return 0;
}

void services_fini(void)
{
	for (size_t i = 0; i < nservices; i++)
		free(services[i].domain);
	free(services);
	services = NULL;
	nservices = 0;
}

bool service_route(struct stanza *st)
{
	int i = service_find(st->to.domain);
	if (i < 0)
		return false;
	services[i].fn(st, services[i].host_idx, services[i].ud);
	return true;
}

const char *service_domain(size_t i, size_t *host_idx_r)
{
	if (host_idx_r != NULL)
		*host_idx_r = services[i].host_idx;
	return services[i].domain;
}

size_t services_count(void)
{
	return nservices;
}
