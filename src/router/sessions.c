/*
 * sessions.c - the global session table; see sessions.h.
 *
 * Layout: a map from bare JID to a struct sess_user holding a small array
 * of resources. Accounts have few resources, so a linear scan beats a
 * second map.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../core/brlock.h"
#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/xmalloc.h"
#include "sessions.h"

struct sess_res {
	char *resource;
	size_t len;
	struct sess_ref ref;
};

struct sess_user {
	struct sess_res *res;
	size_t nres;
};

static struct brlock lock;
static struct hmap users;
static size_t total;
static struct hmap revoked; /* bare JID -> uint64_t * (uv_hrtime) */

void sessions_init(unsigned nshards)
{
	brlock_init(&lock, nshards);
}

static void free_user(struct str key, void *value, void *ud)
{
	struct sess_user *u = value;
	for (size_t i = 0; i < u->nres; i++)
		free(u->res[i].resource);
	free(u->res);
	free(u);
}

static void free_value(struct str key, void *value, void *ud)
{
	free(value);
}

void sessions_fini(void)
{
	hmap_foreach(&users, free_user, NULL);
	hmap_clear(&users);
	hmap_foreach(&revoked, free_value, NULL);
	hmap_clear(&revoked);
	brlock_destroy(&lock);
	total = 0;
}

static struct sess_res *find_res(struct sess_user *u, struct str resource)
{
	for (size_t i = 0; u && i < u->nres; i++)
		if (str_eq(STR(u->res[i].resource, u->res[i].len), resource))
			return &u->res[i];
	return NULL;
}

int sessions_bind(struct str bare, struct str resource, struct sess_ref ref,
		  struct sess_ref *old_r)
{
	brlock_wrlock(&lock);
	const uint64_t *gone = hmap_get(&revoked, bare);
	if (gone != NULL && *gone >= ref.authed_at) {
		brlock_wrunlock(&lock);
		return -2;
	}
	struct sess_user *u = hmap_get(&users, bare);
	if (u == NULL) {
		u = xcalloc(1, sizeof(*u));
		hmap_put(&users, bare, u);
	}
	struct sess_res *r = find_res(u, resource);
	int ret = 0;
	if (r != NULL) {
		*old_r = r->ref;
		r->ref = ref;
		ret = 1;
	} else if (u->nres >= SESS_MAX_RESOURCES) {
		ret = -1;
	} else {
		u->res = xreallocarray(u->res, u->nres + 1, sizeof(*u->res));
		r = &u->res[u->nres++];
		r->resource = str_xdup(resource);
		r->len = resource.len;
		r->ref = ref;
		total++;
	}
	brlock_wrunlock(&lock);
	return ret;
}

bool sessions_set_presence(struct str bare, struct str resource,
			   uint64_t conn_id, bool available, int priority)
{
	brlock_wrlock(&lock);
	struct sess_res *r = find_res(hmap_get(&users, bare), resource);
	bool was = false;
	if (r != NULL && r->ref.conn_id == conn_id) {
		was = r->ref.available;
		r->ref.available = available;
		r->ref.priority = priority;
	}
	brlock_wrunlock(&lock);
	return was;
}

/* Sets one bool of bare/resource's entry; false if it is not bound. */
static bool set_flag(struct str bare, struct str resource, size_t off,
		     bool on)
{
	brlock_wrlock(&lock);
	struct sess_res *r = find_res(hmap_get(&users, bare), resource);
	if (r != NULL)
		*(bool *)((char *)&r->ref + off) = on;
	brlock_wrunlock(&lock);
	return r != NULL;
}

void sessions_set_interested(struct str bare, struct str resource)
{
	set_flag(bare, resource, offsetof(struct sess_ref, interested), true);
}

bool sessions_set_carbons(struct str bare, struct str resource, bool on)
{
	return set_flag(bare, resource, offsetof(struct sess_ref, carbons),
			on);
}

void sessions_unbind(struct str bare, struct str resource, uint64_t conn_id)
{
	brlock_wrlock(&lock);
	struct sess_user *u = hmap_get(&users, bare);
	struct sess_res *r = find_res(u, resource);
	if (r != NULL && r->ref.conn_id == conn_id) {
		free(r->resource);
		*r = u->res[--u->nres];
		total--;
		if (u->nres == 0) {
			hmap_del(&users, bare);
			free(u->res);
			free(u);
		}
	}
	brlock_wrunlock(&lock);
}

bool sessions_find(struct str bare, struct str resource,
		   struct sess_ref *ref_r)
{
	brlock_rdlock(&lock);
	struct sess_res *r = find_res(hmap_get(&users, bare), resource);
	if (r != NULL)
		*ref_r = r->ref;
	brlock_rdunlock(&lock);
	return r != NULL;
}

bool sessions_has(struct str bare, struct str resource)
{
	struct sess_ref ref;
	return sessions_find(bare, resource, &ref);
}

size_t sessions_find_all(struct str bare, struct sess_ref *refs, size_t max)
{
	brlock_rdlock(&lock);
	struct sess_user *u = hmap_get(&users, bare);
	size_t n = 0;
	for (size_t i = 0; u && i < u->nres && n < max; i++)
		refs[n++] = u->res[i].ref;
	brlock_rdunlock(&lock);
	return n;
}

size_t sessions_count(void)
{
	brlock_rdlock(&lock);
	size_t n = total;
	brlock_rdunlock(&lock);
	return n;
}

size_t sessions_revoke(struct str bare, uint64_t now, struct sess_ref *refs,
		       size_t max)
{
	brlock_wrlock(&lock);
	uint64_t *t = hmap_get(&revoked, bare);
	if (t == NULL) {
		t = xmalloc(sizeof(*t));
		hmap_put(&revoked, bare, t);
	}
	*t = now;
	struct sess_user *u = hmap_get(&users, bare);
	size_t n = 0;
	for (size_t i = 0; u && i < u->nres && n < max; i++)
		refs[n++] = u->res[i].ref;
	brlock_wrunlock(&lock);
	return n;
}
