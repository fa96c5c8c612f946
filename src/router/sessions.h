/*
 * sessions.h - the global session table: bare JID -> bound resources.
 *
 * Each entry says where a resource lives (shard, connection id); the
 * connection itself belongs to that shard alone. The table is shared by all
 * shards behind a read-write lock: lookups (every routed stanza) take it
 * shared, bind/unbind take it exclusive. Returned data are copies.
 */
#ifndef STANZAD_ROUTER_SESSIONS_H
#define STANZAD_ROUTER_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/str.h"

struct sess_ref {
	unsigned shard;
	uint64_t conn_id;
	int priority;   /* of the last broadcast presence, -128..127 */
	bool available; /* sent available broadcast presence, not unavailable */
	bool interested; /* requested the roster (RFC 6121 §2.1.6) */
	bool carbons;    /* enabled message carbons (XEP-0280) */
	uint64_t authed_at; /* uv_hrtime() when the SASL exchange that
			       authenticated the session began (for
			       sessions_revoke); 0: unknown, treated as
			       older than any revocation */
};

#define SESS_MAX_RESOURCES 64

/* For nshards shard threads (the lock has a reader slot per shard). */
void sessions_init(unsigned nshards);
void sessions_fini(void);

/* Binds bare/resource to (shard, conn_id). Returns 0, 1 if it replaced
 * another connection's binding (*old_r says which: RFC 6120 §7.7.2.2, the
 * old one is to be ended with <conflict/>), -1 if the account already
 * has SESS_MAX_RESOURCES resources, or -2 if the account was revoked
 * (sessions_revoke) at or after ref.authed_at: its authentication predates
 * the account's deletion. */
int sessions_bind(struct str bare, struct str resource, struct sess_ref ref,
		  struct sess_ref *old_r);
/* Records the session's broadcast presence (RFC 6121 §4.2, §4.4): whether
 * it is available and its priority. No-op if the binding is not conn_id's.
 * Returns whether it was available before. */
bool sessions_set_presence(struct str bare, struct str resource,
			   uint64_t conn_id, bool available, int priority);
/* Marks bare/resource as an interested resource: it requested the roster,
 * so it gets roster pushes from now on (RFC 6121 §2.1.6). */
void sessions_set_interested(struct str bare, struct str resource);
/* Switches message carbons (XEP-0280) on or off for bare/resource. Returns
 * false if it is not bound. */
bool sessions_set_carbons(struct str bare, struct str resource, bool on);
/* Removes the binding if it still belongs to conn_id. */
void sessions_unbind(struct str bare, struct str resource, uint64_t conn_id);
/* True if bare/resource is bound (and fills *ref_r). */
bool sessions_find(struct str bare, struct str resource,
		   struct sess_ref *ref_r);
/* Copies up to max bindings of bare into refs; returns how many. */
size_t sessions_find_all(struct str bare, struct sess_ref *refs, size_t max);
/* Whether the resource is taken (for generated resources). */
bool sessions_has(struct str bare, struct str resource);
/* Total bound resources. */
size_t sessions_count(void);

/*
 * The account bare was deleted (stanzactl user del) at time now
 * (uv_hrtime()). Under the table's write lock: records the revocation, so
 * that a session whose SASL exchange began before it cannot bind (a login
 * that loaded the credentials just before they were deleted), and copies
 * up to max of the account's current bindings into refs (to be ended).
 * Returns how many. Since the check and the copy hold the same lock, every
 * session of the account is either copied here or refused at bind.
 * Revocations are kept until the end of the process (one small entry per
 * deleted account).
 */
size_t sessions_revoke(struct str bare, uint64_t now, struct sess_ref *refs,
		       size_t max);

#endif
