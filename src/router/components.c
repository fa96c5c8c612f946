/*
 * components.c - the table of connected external components; see
 * components.h.
 *
 * The configured components are few and fixed, so the table is an array
 * parallel to server.conf->components behind a read-write lock: every
 * stanza for a component reads it, a component's connection and
 * disconnection write it.
 */
#include <stdlib.h>

#include <uv.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/server.h"
#include "../core/xmalloc.h"
#include "components.h"
#include "route.h"
#include "sessions.h"

struct slot {
	bool connected;
	struct sess_ref ref;
};

static uv_rwlock_t lock;
static struct slot *slots;
static size_t nslots;

void components_init(void)
{
	BUG_ON(uv_rwlock_init(&lock) != 0);
	nslots = server.conf->ncomponents;
	slots = nslots ? xcalloc(nslots, sizeof(*slots)) : NULL;
}

void components_fini(void)
{
	free(slots);
	slots = NULL;
	nslots = 0;
	uv_rwlock_destroy(&lock);
}

int components_attach(size_t idx, const struct sess_ref *ref)
{
	BUG_ON(idx >= nslots);
	int rc = -1;
	uv_rwlock_wrlock(&lock);
	if (!slots[idx].connected) {
		slots[idx].connected = true;
		slots[idx].ref = *ref;
		rc = 0;
	}
	uv_rwlock_wrunlock(&lock);
	return rc;
}

void components_detach(size_t idx, uint64_t conn_id)
{
	BUG_ON(idx >= nslots);
	uv_rwlock_wrlock(&lock);
	if (slots[idx].connected && slots[idx].ref.conn_id == conn_id)
		slots[idx].connected = false;
	uv_rwlock_wrunlock(&lock);
}

bool component_route(struct stanza *st)
{
	int idx = conf_find_component(server.conf, st->to.domain.p,
				      st->to.domain.len);
	if (idx < 0)
		return false;
	struct slot s;
	uv_rwlock_rdlock(&lock);
	s = slots[idx];
	uv_rwlock_rdunlock(&lock);
	if (s.connected)
		route_deliver(&s.ref, st);
	else
		route_bounce(st, STANZA_ERR_SERVICE_UNAVAILABLE,
			     "the component is not connected");
	return true;
}
