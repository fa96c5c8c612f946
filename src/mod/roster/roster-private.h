/*
 * roster-private.h - roster storage shared by mod_roster.c (RFC 6121 §2)
 * and mod_presence.c (§3, §4). Storage functions are synchronous: call
 * them from thread-pool work; roster_push runs on a shard.
 *
 * A stored item is <item xmlns='jabber:iq:roster'> with the client
 * attributes (jid, name, subscription, ask, approved), its <group/>s, and
 * two internal attributes: pending-in='true' (a subscription request
 * waits for the user's answer) and in-roster='false' (a contact known
 * only by such a request, RFC 6121 Appendix A.1 state 3).
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
#define ROSTER_ITEM_MAX 4096 /* bytes of one stored item */

/* A new item for contact (a bare JID), state None, in the roster. */
struct xml_elem *roster_item_new(struct arena *a, struct str contact);
/* The subscription state an item records; NULL is a blank contact. */
struct sub_item roster_item_state(const struct xml_elem *it);
/* Writes s into the item's attributes. */
void roster_item_set_state(struct arena *a, struct xml_elem *it,
			   struct sub_item s);
/* A copy as clients see it (internal attributes removed). */
struct xml_elem *roster_item_client(struct arena *a,
				    const struct xml_elem *it);

/* 0 and *it_r (in a), 1 if there is no record, -1 on storage error. */
int roster_item_load(struct store *st, const char *host, const char *user,
		     const char *contact, struct arena *a,
		     struct xml_elem **it_r);
/* Saves it, or deletes the record when it is NULL or a blank contact
 * (outside the roster, None, no pre-approval, nothing pending). */
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

/* Pushes item (client form) with version ver to every interested resource
 * of user, those that requested the roster (RFC 6121 §2.1.6). On a
 * shard. */
void roster_push(const struct jid *user, const struct xml_elem *item,
		 uint64_t ver);

/* RFC 6121 §2.5.2: the user removed contact (which had state old) from
 * the roster: cancel and refuse subscriptions. On a shard. */
void roster_removed(const struct jid *user, struct str contact,
		    struct sub_item old);

#endif
