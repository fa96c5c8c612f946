/*
 * pep_sync.h - keeping PEP nodes and the older storage of the same data
 * consistent, inside the storage job that changes either side:
 *
 * - XEP-0398: the avatar (XEP-0084 nodes urn:xmpp:avatar:data and
 *   urn:xmpp:avatar:metadata) and the vCard's PHOTO (XEP-0054/0153);
 * - XEP-0402 §6: the bookmarks node urn:xmpp:bookmarks:1, XEP-0048
 *   bookmarks in private storage (XEP-0049) and in the XEP-0223 node
 *   storage:bookmarks.
 *
 * A change made by a conversion never triggers the reverse conversion:
 * the publishes and retracts it makes go through pubsub.c with no
 * pep_sync attached, and the vCard and private storage writes go
 * straight to their tables, not through their modules' handlers.
 *
 * Use: on the shard, before the job, pep_sync_new() (it takes the
 * snapshot of who is interested in the nodes a conversion may publish
 * to, as mod_pep does for a publish); in the job, within one
 * store_begin() transaction with the change itself, the conversion; back
 * on the shard, pep_sync_send() (the notifications of what the
 * conversion published, and the account's new avatar hash for its
 * presence). Every job that changes one side is keyed by the account's
 * bare JID, so conversions of one account never run concurrently.
 */
#ifndef STANZAD_MOD_PUBSUB_PEP_SYNC_H
#define STANZAD_MOD_PUBSUB_PEP_SYNC_H

#include "../../core/arena.h"
#include "../../store/store.h"
#include "../../xml/stanza.h"
#include "../../xmpp/jid.h"

#define NS_AVATAR_DATA "urn:xmpp:avatar:data"
#define NS_AVATAR_METADATA "urn:xmpp:avatar:metadata"
#define NS_PEP_VCARD_CONVERSION "urn:xmpp:pep-vcard-conversion:0"
#define NS_BOOKMARKS2 "urn:xmpp:bookmarks:1"
#define NS_BOOKMARKS_LEGACY "storage:bookmarks"

struct pep_sync;

/* On the shard: a conversion context for account (its bare JID is
 * used), in a (the request's arena, which must outlive the job). NULL
 * when a is full. */
struct pep_sync *pep_sync_new(struct arena *a, const struct jid *account);
/* On the shard, after the job: sends what the conversion collected. */
void pep_sync_send(struct pep_sync *s);

/* Thread pool, in the transaction that stores the account's vCard:
 * old is the vCard stored before (NULL: none), new the one stored now
 * (NULL: deleted). Publishes the avatar nodes when the PHOTO changed. */
int avatar_from_vcard(struct store *st, struct arena *a, struct pep_sync *s,
		      const struct xml_elem *old, const struct xml_elem *new);

/* Thread pool, in the transaction that stores the account's private
 * storage:bookmarks: storage is the <storage xmlns='storage:bookmarks'/>
 * stored (NULL: deleted). Updates the XEP-0402 items (only those that
 * changed) and the XEP-0223 node. */
int bookmarks_from_private(struct store *st, struct arena *a,
			   struct pep_sync *s, const struct xml_elem *storage);

#endif
