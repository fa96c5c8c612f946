/*
 * pubsub-private.h - publish-subscribe (XEP-0060) shared by PEP on every
 * account (mod_pep.c, XEP-0163) and the service on a subdomain
 * (mod_pubsub.c). See docs/internals/pubsub.md.
 *
 * A "pubsub owner" is where nodes live: an account (host, user) for PEP,
 * the service domain (host = the domain, user "") for the service. Nodes
 * and items are rows of two map tables; every request is one keyed
 * storage job of the owner (its bare JID, or the service domain), so the
 * requests on one owner's nodes run one at a time in arrival order.
 *
 * Storage functions (ps_store_*, ps_run) are synchronous: call them in
 * thread-pool work. The rest runs on a shard.
 */
#ifndef STANZAD_MOD_PUBSUB_PRIVATE_H
#define STANZAD_MOD_PUBSUB_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "../../core/arena.h"
#include "../../router/iq.h"
#include "../../store/store.h"
#include "../../xml/dataform.h"
#include "../../xml/stanza.h"
#include "../../xmpp/errors.h"
#include "../../xmpp/jid.h"

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER NS_PUBSUB "#owner"
#define NS_PUBSUB_EVENT NS_PUBSUB "#event"
#define NS_PUBSUB_ERRORS NS_PUBSUB "#errors"
#define NS_PUBSUB_NODE_CONFIG NS_PUBSUB "#node_config"
#define NS_PUBSUB_PUBLISH_OPTIONS NS_PUBSUB "#publish-options"
#define NS_PUBSUB_INTERNAL "urn:stanzad:pubsub"

#define PS_NODE_MAX_LEN 1024  /* bytes of a node name */
#define PS_ID_MAX_LEN 1024    /* bytes of an item id */
#define PS_MAX_AFFS 1024      /* affiliations and subscriptions per node */
#define PS_MAX_GROUPS 64      /* roster_groups_allowed */

enum ps_access {
	PS_ACCESS_OPEN,
	PS_ACCESS_PRESENCE,
	PS_ACCESS_ROSTER,
	PS_ACCESS_WHITELIST,
};
const char *ps_access_name(enum ps_access a);

enum ps_send_last {
	PS_SEND_LAST_NEVER,
	PS_SEND_LAST_ON_SUB,
	PS_SEND_LAST_ON_SUB_AND_PRESENCE,
};
const char *ps_send_last_name(enum ps_send_last s);

/* XEP-0060 §4.1, in increasing rights. */
enum ps_aff {
	PS_AFF_OUTCAST,
	PS_AFF_NONE,
	PS_AFF_MEMBER,
	PS_AFF_PUBLISHER,
	PS_AFF_OWNER,
};
const char *ps_aff_name(enum ps_aff a);
int ps_aff_parse(struct str s, enum ps_aff *a_r);

struct ps_config {
	enum ps_access access;
	unsigned max_items;
	bool persist;
	bool notify_retract;
	enum ps_send_last send_last;
	struct str title;
	struct str *groups; /* roster_groups_allowed */
	size_t ngroups;
};

struct ps_jid_aff {
	struct str jid; /* bare */
	enum ps_aff aff;
};

/* A node as loaded (all in one arena). */
struct ps_node {
	struct str name;
	struct ps_config cfg;
	uint64_t seq;                /* of the last item published */
	struct ps_jid_aff *affs;     /* whitelist members, service
					affiliations (none: PS_AFF_NONE) */
	size_t naffs;
	struct str *subs;            /* explicit subscribers (service) */
	size_t nsubs;
};

struct ps_item {
	struct str id;
	uint64_t seq;
	struct xml_elem *x; /* <item xmlns=NS_PUBSUB id='..'>payload</item> */
};

/* Where nodes live (see the top), and what a request may do there. */
struct ps_owner {
	const char *host, *user; /* storage: user "" for the service */
	struct jid jid;          /* the account's bare JID, or the service
				    domain: 'from' of notifications */
	bool service;
};

/* A stanza error with XEP-0060's application condition (NULL: none) and,
 * for <unsupported/>, its feature. */
struct ps_error {
	enum stanza_err err;
	const char *app;
	const char *feature;
};
#define PS_OK ((struct ps_error){ STANZA_ERR_NONE, NULL, NULL })

/* ---- nodes and items in storage (pubsub_store.c) ---- */

extern const struct store_schema pubsub_schema;

void ps_config_default(struct ps_config *c, bool service);
/* 0 and *n_r, 1 when there is no such node, -1 on a storage error. */
int ps_store_node_load(struct store *st, const struct ps_owner *o,
		       struct str name, struct arena *a, struct ps_node **n_r);
int ps_store_node_save(struct store *st, const struct ps_owner *o,
		       const struct ps_node *n);
/* Deletes the node and its items. */
int ps_store_node_delete(struct store *st, const struct ps_owner *o,
			 struct str name);
/* The owner's nodes, in name order. */
int ps_store_nodes(struct store *st, const struct ps_owner *o,
		   struct arena *a, struct ps_node ***v_r, size_t *n_r);
/* The node's items, newest first. */
int ps_store_items(struct store *st, const struct ps_owner *o,
		   struct str node, struct arena *a, struct ps_item **v_r,
		   size_t *n_r);
int ps_store_item_put(struct store *st, const struct ps_owner *o,
		      struct str node, const struct ps_item *it);
int ps_store_item_delete(struct store *st, const struct ps_owner *o,
			 struct str node, struct str id);
/* Keeps the newest max items of the node. */
int ps_store_trim(struct store *st, const struct ps_owner *o,
		  struct str node, unsigned max);

/* ---- configuration forms (pubsub_form.c) ---- */

/* The node_config form (type "form") of c, for a configure get. */
struct xml_elem *ps_config_form(struct arena *a, const struct ps_config *c,
				bool service);
/* Applies a submitted node_config form to c. PS_OK, or the error
 * (<not-acceptable/> for an unknown field or value). */
struct ps_error ps_config_apply(struct arena *a, const struct dataform *f,
				struct ps_config *c, bool service);
/* XEP-0060 §7.1.5: whether every field of a publish-options form holds
 * for c (an unknown field never does). */
bool ps_preconditions_met(const struct dataform *f,
			  const struct ps_config *c);

/* ---- requests (pubsub.c) ---- */

enum ps_op {
	PS_PUBLISH,
	PS_RETRACT,
	PS_ITEMS,
	PS_CREATE,
	PS_SUBSCRIBE,
	PS_UNSUBSCRIBE,
	PS_SUBSCRIPTIONS,   /* the requester's own */
	PS_AFFILIATIONS,    /* the requester's own */
	PS_CONFIGURE_GET,
	PS_CONFIGURE_SET,
	PS_DEFAULT,
	PS_DELETE,
	PS_PURGE,
	PS_OWNER_AFFS_GET,
	PS_OWNER_AFFS_SET,
};
const char *ps_op_name(enum ps_op op);

/* One request, in the iq's arena (ctx->ud). */
struct ps_req {
	struct ps_owner owner;
	struct jid from;        /* the requester, full */
	struct str from_bare;
	bool from_local;        /* the requester is an account of ours */
	enum ps_op op;
	struct xml_elem *el;    /* the operation's element */
	struct xml_elem *form;  /* publish-options' or configure's form */
	struct str node;
	/* PEP: the full JIDs interested in the node (caps +notify), taken
	 * on the shard when the request arrived. */
	struct str *cand;
	size_t ncand;
	/* PEP: the conversions a change to this node runs in the same job
	 * (pep_sync.h), or NULL (a request made by a conversion). */
	struct pep_sync *sync;
	/* outcome */
	struct ps_error e;
	struct xml_elem *reply;  /* the result's payload, or NULL */
	struct xml_elem *event;  /* a notification to send, or NULL */
	struct str *notify;      /* to these JIDs */
	size_t nnotify;
	size_t notify_cap;
};

/* Parses the request's payload (<pubsub/> of NS_PUBSUB or
 * NS_PUBSUB_OWNER) into r. PS_OK or the error to answer. */
struct ps_error ps_parse(struct iq_ctx *ctx, struct ps_req *r);
/* Carries r out (thread pool). Returns 0 (r->e says whether it was
 * refused) or -1 on a storage error. */
int ps_run(struct store *st, struct arena *a, struct ps_req *r);
/* Answers the iq of r (on the shard): the error or the result, then
 * sends r's notifications. */
void ps_answer(struct iq_ctx *ctx, struct ps_req *r, int status);

/* Whether jid (bare) may see the node's items: PS_OK, or the error of
 * XEP-0060 §6.5.9 (thread pool: reads the roster of a PEP owner). */
struct ps_error ps_may_read(struct store *st, struct arena *a,
			    const struct ps_owner *o, const struct ps_node *n,
			    struct str jid, int *rc_r);
/* A notification <event/> with <items node=''/> holding the items. */
struct xml_elem *ps_event_items(struct arena *a, struct str node,
				struct ps_item *const *items, size_t n);
/* Adds to to r's notification recipients. */
void ps_notify_add(struct arena *a, struct ps_req *r, struct str to);
/* Sends a headline <message/> from from to each of to[] holding a copy of
 * event. */
void ps_send_event(const struct jid *from, const struct xml_elem *event,
		   const struct str *to, size_t n);
/* Answers the iq with e (adding the application condition). */
void ps_reply_error(struct iq_ctx *ctx, struct ps_error e);

/* PEP (mod_pep.c): the server's own notes of who is interested. */
/* The full JIDs whose presence with caps NODE+notify reached owner (its
 * own resources included), copied into a. */
size_t pep_interested(struct arena *a, struct str owner, struct str node,
		      struct str **v_r);

/* ---- conversions to and from older storage (pep_sync.c) ---- */

struct pep_sync;

/* Whether a change to this PEP node is converted (pep_sync.h). */
bool pep_sync_node(struct str node);
/* After r (a PEP request with r->sync) succeeded, in its job and
 * transaction: the conversions of the change. */
int pep_sync_after(struct store *st, struct arena *a, struct ps_req *r);
/* For the conversions: publishes item (<item id=''>payload</item>, any
 * namespace) to node of s's account as the account would, creating the
 * node with create's configuration if it does not exist (create NULL:
 * the default), and keeps the notification for pep_sync_send(). A
 * refusal (precondition, size) is logged and skipped. */
int pep_sync_publish(struct store *st, struct arena *a, struct pep_sync *s,
		     const char *node, const struct xml_elem *item,
		     const struct ps_config *create);
int pep_sync_retract(struct store *st, struct arena *a, struct pep_sync *s,
		     const char *node, struct str id);
/* The newest item of the account's node, 0 and *it_r (NULL: none, or no
 * such node); the node itself in *n_r if n_r is not NULL (NULL: none). */
int pep_sync_last(struct store *st, struct arena *a, struct pep_sync *s,
		  const char *node, struct ps_node **n_r,
		  struct ps_item **it_r);
/* The account of s, as pubsub owner. */
const struct ps_owner *pep_sync_owner(const struct pep_sync *s);
/* Records the account's avatar hash (hex SHA-1; "" for none) for
 * pep_sync_send() to tell mod_avatar. */
void pep_sync_set_hash(struct arena *a, struct pep_sync *s, const char *hash);

/* mod_avatar.c, mod_bookmarks.c: the conversions of a PEP change. */
int avatar_from_pep(struct store *st, struct arena *a, struct pep_sync *s,
		    const struct xml_elem *metadata);
int bookmarks_from_pep2(struct store *st, struct arena *a,
			struct pep_sync *s, bool first);
int bookmarks_from_pep_legacy(struct store *st, struct arena *a,
			      struct pep_sync *s,
			      const struct xml_elem *storage);
/* mod_avatar.c: the avatar hash of a bare JID, for its presence. */
#define SHA1_HEX_LEN 40
struct avatar_photo {
	unsigned char *bytes;
	size_t len;
	char hash[SHA1_HEX_LEN + 1]; /* hex SHA-1 of bytes */
	struct str type;             /* MIME type, or empty */
};
/* Decodes base64 text (line breaks and spaces allowed) into p->bytes
 * (in a) and hashes it. False if it is not base64, or empty. */
bool avatar_photo_decode(struct arena *a, struct str b64,
			 struct avatar_photo *p);
/* p's bytes as base64, one line. */
struct str avatar_photo_b64(struct arena *a, const struct avatar_photo *p);
/* A MIME type for an image that has none, from its first bytes. */
struct str avatar_photo_sniff(const struct avatar_photo *p);
/* The vCard's PHOTO with inline bytes (its TYPE, else sniffed); false if
 * it has none (a PHOTO with only an EXTVAL URL is no avatar to convert). */
bool avatar_vcard_photo(struct arena *a, const struct xml_elem *vcard,
			struct avatar_photo *p);
/* mod_bookmarks.c: a XEP-0048 <conference/> as the XEP-0402 one, in
 * canonical form (two of the same bookmark serialize the same), and a
 * XEP-0402 <conference/> (jid: its item id) as XEP-0048. NULL when a is
 * full. bookmark_to_pep2(bookmark_to_legacy(x)) is x for any x that
 * bookmark_to_pep2 made. */
struct xml_elem *bookmark_to_pep2(struct arena *a, const struct xml_elem *c);
struct xml_elem *bookmark_to_legacy(struct arena *a, struct str jid,
				    const struct xml_elem *c);
void avatar_hash_update(struct str bare, const char *hash);

#endif
