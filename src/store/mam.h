/*
 * mam.h - the message archive of user accounts (XEP-0313): its tables and
 * their synchronous API (src/mod/mod_mam.c calls it from pool jobs).
 *
 *   mam_users(uid INTEGER PRIMARY KEY, host, user): an integer key per
 *   account that has an archive, made at its first archived message.
 *   mam(id INTEGER PRIMARY KEY, uid, with_jid, with_res, value)
 *
 * One row per archived message per account. The id is the archive id
 * clients see (XEP-0359 stanza-id, RSM first/last) and the time the
 * message was archived, in microseconds since the epoch: the server hands
 * out strictly increasing ids (mod_mam.c), so id order is arrival order,
 * start/end filters are id ranges, and the retention purge is a range of
 * the rowid. with_jid is the other party's bare JID, with_res its
 * resource ("" when none). Indexes: (uid, id) for paging, (uid, with_jid,
 * id) for the `with` filter; integer account keys keep their entries
 * small. mam.uid references mam_users ON DELETE CASCADE: account removal
 * (store_user_purge) deletes the mam_users row and with it the archive.
 *
 *   mam_prefs(host, user, value): the keyval shape (shapes.h), the
 *   account's XEP-0441 <prefs/> serialized.
 *   mam_meta(key, value): "high" = the highest id ever handed out, so ids
 *   are never reused after a restart even if the clock went back;
 *   "idkey" = the key that makes ids opaque on the wire (mod/mam/request.h).
 *
 * Return values as in shapes.h: 0 done/found, 1 not found, -1 storage
 * error (logged).
 */
#ifndef STANZAD_STORE_MAM_H
#define STANZAD_STORE_MAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "store.h"

#define MAM_PREFS_TABLE "mam_prefs"

extern const struct store_schema mam_schema;

/* The account's key: 0 and *uid_r, 1 if it has none (and create is
 * false). With create, a missing key is made. */
int mam_store_user(struct store *st, const char *host, const char *user,
		   bool create, int64_t *uid_r);

/* Appends one message of account uid with the given id (from mam's id
 * source, larger than any before it). with_res may be "" or NULL. */
int mam_store_append(struct store *st, int64_t uid, int64_t id,
		     const char *with, const char *with_res,
		     const void *value, size_t len);

/* 0 if account uid has a message with this id, 1 if not. */
int mam_store_exists(struct store *st, int64_t uid, int64_t id);

struct mam_store_query {
	int64_t uid;
	const char *with;     /* bare JID, or NULL: any */
	const char *with_res; /* with a full JID: its resource, else NULL */
	int64_t lo, hi;       /* exclusive bounds: lo < id < hi */
	const int64_t *ids;   /* nids ids: only these (other bounds apply) */
	size_t nids;
	size_t max;           /* items wanted */
	bool backward;        /* the newest max items of the range */
};

struct mam_store_item {
	int64_t id;
	const void *value;
	size_t len;
};
/* Called in chronological order when forward, newest first when
 * backward; with the connection's mutex held (keep it short); *item
 * lasts the call. Returns 0 to go on. */
typedef int mam_item_fn(const struct mam_store_item *item, void *ud);

/* Calls fn for up to q->max matching items; *more_r tells whether more
 * matched beyond them (in the direction of the query). */
int mam_store_query(struct store *st, const struct mam_store_query *q,
		    mam_item_fn *fn, void *ud, bool *more_r);

/* How many messages of the range match (RSM <max>0</max>). */
int mam_store_count(struct store *st, const struct mam_store_query *q,
		    size_t *count_r);

/* The oldest and newest ids of the account's archive after lo
 * (exclusive); 1 when there is none. */
int mam_store_bounds(struct store *st, int64_t uid, int64_t lo,
		     int64_t *first_r, int64_t *last_r);

/* Deletes every message with id < before, of every account (retention).
 * *deleted_r gets the count. */
int mam_store_purge(struct store *st, int64_t before, size_t *deleted_r);

/* The highest id ever stored (0 for none). */
int mam_store_high(struct store *st, int64_t *high_r);
/* Records that ids up to high were handed out. */
int mam_store_set_high(struct store *st, int64_t high);

/* The archive key (len bytes into key_r): fresh, if there was none yet,
 * is stored and returned; else the stored one. A stored key of another
 * length is -1. */
int mam_store_key(struct store *st, const unsigned char *fresh, size_t len,
		  unsigned char *key_r);

/* The stored message id of archive uid, appended to *out; 1: none. */
int mam_store_get(struct store *st, int64_t uid, int64_t id, struct buf *out);
/* Replaces the stored message id of archive uid (a moderated message's
 * tombstone); 1: none. */
int mam_store_replace(struct store *st, int64_t uid, int64_t id,
		      const void *value, size_t len);
/* Deletes archive uid's messages up to id upto (inclusive), and its key
 * once no message is left (a destroyed room). */
int mam_store_drop(struct store *st, int64_t uid, int64_t upto);
/* Calls fn for every archive of host (a room service's rooms). */
typedef int mam_archive_fn(int64_t uid, const char *user, void *ud);
int mam_store_archives(struct store *st, const char *host,
		       mam_archive_fn *fn, void *ud);

/* Calls fn for every row of mam_prefs (start-up load). */
typedef int mam_prefs_fn(const char *host, const char *user,
			 const void *value, size_t len, void *ud);
int mam_store_prefs_all(struct store *st, mam_prefs_fn *fn, void *ud);

#endif
