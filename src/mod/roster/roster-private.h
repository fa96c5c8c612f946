/*
 * roster-private.h - roster storage shared by mod_roster.c (RFC 6121 §2)
 * and mod_presence.c (§3, §4). Storage functions are synchronous: call
 * them from thread-pool work; the roster_push functions run on a shard.
 *
 * A stored item is <item xmlns='jabber:iq:roster'> with the client
 * attributes (jid, name, subscription, ask, approved), its <group/>s, and
 * three internal attributes: pending-in='true' (a subscription request
 * waits for the user's answer), in-roster='false' (a contact known only by
 * such a request, RFC 6121 Appendix A.1 state 3) and ver='N' (the roster
 * version of the item's last change clients can see, RFC 6121 §2.6;
 * absent in items written before versioning, read as 0).
 *
 * Versioning invariant: a change is saved (roster_item_save) and then the
 * version bumped (roster_version_bump), in one transaction; the save
 * stamps the item, or the tombstone of a removed item, with the version
 * the bump is about to produce. See docs/internals/roster.md.
 */
#ifndef STANZAD_MOD_ROSTER_PRIVATE_H
#define STANZAD_MOD_ROSTER_PRIVATE_H

#include <stdint.h>

#include "../../core/arena.h"
#include "../../store/store.h"
#include "../../xml/stanza.h"
#include "../../xmpp/jid.h"
#include "subscription.h"

#define NS_ROSTER "jabber:iq:roster"
#define ROSTER_CLIENT_MAX 4000  /* bytes of an item as clients see it */
#define ROSTER_REQUEST_MAX 2048 /* of a stored request's extensions */
/* Bytes of one stored item: the client's part, internal attributes and
 * the stored subscription request. */
#define ROSTER_ITEM_MAX 8192
#define NS_ROSTER_INTERNAL "urn:stanzad:roster"
/* Removals remembered per account for incremental roster gets; past it
 * the oldest is forgotten and older versions get the full roster. */
#define ROSTER_TOMB_MAX 256

/* The tables of the roster (mod_roster's struct module refers to it). */
extern const struct store_schema roster_schema;

/* A new item for contact (a bare JID), state None, in the roster. */
struct xml_elem *roster_item_new(struct arena *a, struct str contact);
/* The subscription state an item records; NULL is a blank contact. */
struct sub_item roster_item_state(const struct xml_elem *it);
/* Writes s into the item's attributes. */
void roster_item_set_state(struct arena *a, struct xml_elem *it,
			   struct sub_item s);
/* Keeps the children of an inbound subscribe (status, nick, ...) in the
 * item, to be delivered again with the request (RFC 6121 §3.1.3 rule 4);
 * children beyond ROSTER_REQUEST_MAX bytes are left out. */
void roster_item_keep_request(struct arena *a, struct xml_elem *it,
			      const struct xml_elem *subscribe);
/* The kept request (its children are the subscribe's), or NULL. */
const struct xml_elem *roster_item_request(const struct xml_elem *it);
/* A copy as clients see it (internal attributes and request removed). */
struct xml_elem *roster_item_client(struct arena *a,
				    const struct xml_elem *it);
/* Is it a roster item clients see (stored and in the roster)? */
bool roster_item_visible(const struct xml_elem *it);
/* The version an item was last changed at (0 if it does not say). */
uint64_t roster_item_ver(const struct xml_elem *it);

/* 0 and *it_r (in a), 1 if there is no record, -1 on storage error. */
int roster_item_load(struct store *st, const char *host, const char *user,
		     const char *contact, struct arena *a,
		     struct xml_elem **it_r);
/* Saves it, or deletes the record when it is NULL or a blank contact
 * (outside the roster, None, no pre-approval, nothing pending). A change
 * clients can see stamps the item (or, for a removal, a tombstone) with
 * the next version: call inside store_begin/commit, before
 * roster_version_bump(). */
int roster_item_save(struct store *st, const char *host, const char *user,
		     const char *contact, const struct xml_elem *it);
int roster_version_load(struct store *st, const char *host, const char *user,
			uint64_t *ver_r);
int roster_version_bump(struct store *st, const char *host, const char *user,
			uint64_t *ver_r);
/* Calls fn for every stored item (in the arena); fn returns 0 to go on. */
typedef int roster_each_fn(struct xml_elem *it, void *ud);
int roster_each(struct store *st, const char *host, const char *user,
		struct arena *a, roster_each_fn *fn, void *ud);

/* A version string as this server writes them: decimal, no sign, no
 * leading zero, fits 64 bits. 0 and *ver_r, or -1. */
int roster_ver_parse(struct str s, uint64_t *ver_r);

/* One change a client at an older version has not seen: the item in
 * client form, or <item jid='..' subscription='remove'/> for a removal. */
struct roster_change {
	uint64_t ver;
	struct xml_elem *item;
};
/* The changes after version since, in version order (in a). Returns 0,
 * 1 if the history kept does not reach back to since (pruned tombstones,
 * items older than versioning, a since ahead of the stored version: send
 * the full roster), -1 on storage error. */
int roster_changes_since(struct store *st, const char *host, const char *user,
			 uint64_t since, struct arena *a,
			 struct roster_change **ch_r, size_t *n_r);

/* Pushes item (client form) with version ver to every interested resource
 * of user, those that requested the roster (RFC 6121 §2.1.6). On a
 * shard. */
void roster_push(const struct jid *user, const struct xml_elem *item,
		 uint64_t ver);
/* Pushes item with version ver to the one resource of the full JID user
 * (the interim pushes of RFC 6121 §2.6.3), if it is still bound. */
void roster_push_to(const struct jid *user, const struct xml_elem *item,
		    uint64_t ver);

/* RFC 6121 §2.5.2: the user removed contact (which had state old) from
 * the roster: cancel and refuse subscriptions. On a shard. */
void roster_removed(const struct jid *user, struct str contact,
		    struct sub_item old);

#endif
