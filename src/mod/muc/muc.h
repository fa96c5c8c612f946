/*
 * muc.h - group chat (XEP-0045) internals shared by the files of
 * src/mod/muc/. docs/internals/muc.md explains the design.
 */
#ifndef STANZAD_MOD_MUC_H
#define STANZAD_MOD_MUC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../core/hmap.h"
#include "../../router/fanout.h"

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER NS_MUC "#user"
#define NS_MUC_ADMIN NS_MUC "#admin"
#define NS_MUC_OWNER NS_MUC "#owner"
#define NS_MUC_ROOMCONFIG NS_MUC "#roomconfig"
#define NS_MUC_ROOMINFO NS_MUC "#roominfo"
#define NS_MUC_REQUEST NS_MUC "#request"
#define NS_MUC_REGISTER NS_MUC "#register"
#define NS_REGISTER "jabber:iq:register"
#define NS_VCARD_TEMP "vcard-temp"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
#define NS_SID "urn:xmpp:sid:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_MUC_STORE "urn:stanzad:muc"
#define NS_MODERATE "urn:xmpp:message-moderate:1"
#define NS_RETRACT "urn:xmpp:message-retract:1"
/* XEP-0425 0.2 (XEP-0422 fastening around XEP-0424 0.3), what Gajim 1.7
 * and older Converse.js send and read: answered and announced too. */
#define NS_MODERATE_0 "urn:xmpp:message-moderate:0"
#define NS_RETRACT_0 "urn:xmpp:message-retract:0"
#define NS_FASTEN "urn:xmpp:fasten:0"

enum muc_aff { AFF_NONE, AFF_OUTCAST, AFF_MEMBER, AFF_ADMIN, AFF_OWNER };
enum muc_role { ROLE_NONE, ROLE_VISITOR, ROLE_PARTICIPANT, ROLE_MODERATOR };

struct room_cfg {
	char *name, *desc, *password;
	bool persistent, public_, members_only, moderated, password_protected,
		whois_anyone, change_subject;
	bool no_archive; /* muc#roomconfig_enablearchiving off */
	unsigned max_users;
};

/* One session (full JID) in an occupant: several sessions of one
 * account may share a nick (docs/internals/muc.md). */
struct occ_sess {
	char *jid;        /* the real full JID */
	char *to_attr;    /* " to='JID'", escaped, for fan-out */
	char *payload;    /* its presence, serialized, without our
			     additions: what the room rebuilds from */
	bool local;       /* a session of ours: fan-out by connection */
	unsigned shard;
	uint64_t conn_id;
};

struct occupant {
	char *nick;       /* resourceprep'd */
	char *bare;       /* the real bare JID of every session */
	struct occ_sess *s; /* s[0]: the session whose presence the room
			       shows (the latest to send one) */
	size_t ns;
	char occupant_id[48]; /* XEP-0421 */
	enum muc_role role;
	size_t idx;       /* in room->occ */
	/* The presence every other occupant sees: [0] without the real
	 * JID, [1] with it. Shared by every delivery of it. */
	struct shared_bytes *pres[2];
};

/* An iq forwarded to an occupant (§17.4 of XEP-0045's business
 * rules), waiting for its answer: the room's id -> the sender's. */
struct iq_fwd {
	char id[33];      /* the id the room gave it; "" for a free slot */
	char *target;     /* the JID the room sent it to */
	char *target_nick;
	char *from;       /* the sender's real full JID */
	char *orig_id;
};
#define MUC_IQ_FWD_MAX 64

struct hist {
	struct shared_bytes *b; /* with <delay/>, 'to' spliced */
	int64_t ts;             /* seconds */
	size_t chars;
	char sid[33];           /* its XEP-0359 stanza id */
};

struct room {
	char *node;   /* the localpart */
	char *jid;    /* room@service */
	char *domain; /* the service */
	size_t host_idx;
	struct room_cfg cfg;
	bool locked; /* created, not yet configured (XEP-0045 §10.1) */
	struct hmap by_nick, by_jid; /* -> struct occupant */
	struct hmap affs;            /* bare JID -> (uintptr_t)aff */
	/* Registered nicks (§7.10), of members and above only: bare JID
	 * -> nick and nick -> bare JID, both malloc'ed. */
	struct hmap nick_of, nick_owner;
	struct iq_fwd *fwd; /* MUC_IQ_FWD_MAX, a ring, made on first use */
	size_t fwd_next;
	struct occupant **occ;
	size_t nocc, cap;
	struct hist *hist;
	size_t hist_n, hist_head, hist_cap;
	char *subject, *subject_nick;
	unsigned char secret[32]; /* keys the occupant ids */
};

/* muc_store.c: the persistent rooms, one row each in muc_rooms. */
extern const struct store_schema muc_schema;
/* Serializes the room's configuration and affiliations (malloc'ed). */
char *muc_room_record(const struct room *r, size_t *len_r);
/* Fills r (node, jid, domain, host_idx set) from a record; 0 or -1. */
int muc_room_from_record(struct room *r, const void *p, size_t len);
/* Writes (or with del, deletes) r's row, as a keyed job of the room. */
void muc_store_save(struct room *r, bool del);

/* mod_muc.c */
struct arena;
struct dataform;
struct xml_elem;
struct stanza;
/* Answers the iq st (consumed) from the room: with payload (or none)
 * when err is STANZA_ERR_NONE, else with the error. */
void muc_iq_reply(struct stanza *st, struct xml_elem *payload, int err);
/* Applies a submitted muc#roomconfig form to cfg; -1 for a value the
 * room refuses (the caller answers <not-acceptable/>; cfg may be half
 * changed then). server.conf->muc bounds maxusers. */
int muc_config_apply(const struct dataform *f, struct room_cfg *cfg);
void muc_cfg_free(struct room_cfg *c);
/* The index (0..hist_n) of the oldest kept message a join's <history/>
 * h asks for; hist_n: none. */
size_t muc_history_first(const struct room *r, const struct xml_elem *h,
			 int64_t now);
const char *muc_aff_name(enum muc_aff a);
int muc_aff_parse(const char *s, enum muc_aff *a_r);
enum muc_aff muc_aff_of(const struct room *r, const char *bare);
/* Also drops the registered nick of an affiliation below member. */
void muc_aff_set(struct room *r, const char *bare, enum muc_aff a);
/* The nick bare registered, or NULL; who registered nick, or NULL. */
const char *muc_nick_of(const struct room *r, struct str bare);
const char *muc_nick_owner(const struct room *r, struct str nick);
/* Registers nick for bare (NULL: removes its registration). */
void muc_nick_set(struct room *r, const char *bare, const char *nick);
/* Frees every registration of r. */
void muc_nicks_clear(struct room *r);
/* A submitted muc#register form (§7.10): 0 and the nick asked for,
 * resourceprep'd, in a; -1 for a form the room refuses (bad-request). */
int muc_register_form(struct arena *a, const struct dataform *f,
		      struct str *nick_r);
/* A submitted muc#request form (§7.13, §8.6): 0 for a visitor's
 * request for voice, 1 for a moderator's answer (*allow_r, *nick_r the
 * visitor's nick), -1 for anything else (bad-request). */
int muc_request_form(const struct dataform *f, bool *allow_r,
		     struct str *nick_r);

/* archive.c: the room's XEP-0313 archive (docs/internals/muc.md). */
struct arena;
struct store;
/* Whether the room archives (mam.enabled, and the room's option). */
bool muc_archive_on(const struct room *r);
/* For a groupchat message msg the room is about to send: its archive id
 * (and its wire form in sid, the room's stanza-id), or 0 when it is not
 * archived (sid untouched). */
int64_t muc_archive_id(const struct room *r, const struct xml_elem *msg,
		       char sid[33]);
/* Archives m (as the occupants got it, without 'to'), sent by o from its
 * session real (a full JID), under id (from muc_archive_id). */
void muc_archive_message(const struct room *r, const struct occupant *o,
			 const char *real, const struct xml_elem *m,
			 int64_t id);
/* XEP-0425: the message with stanza-id sid becomes its tombstone
 * (<retracted/> with a copy of moderated, and the reason if any). */
void muc_archive_retract(const struct room *r, struct str sid,
			 const struct xml_elem *moderated, struct str reason);
/* The room is gone: so is its archive. */
void muc_archive_drop(const struct room *r);
/* Start-up: removes the archives of domain's rooms that kept() says are
 * gone (temporary rooms of an earlier run). */
int muc_archive_sweep(struct store *st, const char *domain,
		      bool (*kept)(const char *node, void *ud), void *ud);
/* The archive's disco#info features, when the room archives. */
void muc_archive_features(const struct room *r, struct arena *a,
			  struct xml_elem *q);
/* Takes st if q is an archive request (urn:xmpp:mam:2) the room
 * answers; false: not one (st untouched). */
bool muc_archive_iq(const struct room *r, struct stanza *st,
		    const struct xml_elem *q);

#endif
