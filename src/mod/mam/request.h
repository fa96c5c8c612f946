/*
 * request.h - reading a XEP-0313 archive query (urn:xmpp:mam:2): the
 * XEP-0004 filter form (with, start, end, before-id, after-id, ids) and
 * the XEP-0059 result set (max, before, after), into the exclusive id
 * range the archive is read with (src/store/mam.h).
 *
 * Archive ids are integers inside (microseconds since the epoch, see
 * mod_mam.c) and opaque outside: the wire form is the id and a check
 * block encrypted with the server's archive key (AES-128, one block, in
 * hex), so ids are unpredictable (XEP-0313 §3) while order and ranges
 * stay integer work. A text that does not decrypt to an id with its
 * check cannot be in the archive, so it reads as "unknown"
 * (item-not-found), not as a bad form.
 */
#ifndef STANZAD_MOD_MAM_REQUEST_H
#define STANZAD_MOD_MAM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../core/arena.h"
#include "../../xml/stanza.h"
#include "../../xmpp/errors.h"
#include "../../xmpp/jid.h"

#define NS_MAM "urn:xmpp:mam:2"
#define NS_RSM "http://jabber.org/protocol/rsm"

#define MAM_PAGE_DEFAULT 50  /* items per page without <max/> */
#define MAM_PAGE_MAX 250     /* larger <max/> is cut to this (XEP-0059 §2.1) */
#define MAM_IDS_MAX 250      /* ids in one `ids` field */

struct mam_request {
	struct str queryid;   /* STR_NULL when absent */
	bool has_with;
	struct jid with;      /* normalised; resource empty for a bare JID */
	int64_t lo, hi;       /* exclusive id bounds from start, end,
				 after-id, before-id, RSM after and before */
	int64_t *ids;         /* nids ids of the `ids` field, sorted, unique */
	size_t nids;
	int64_t check[4];     /* ids that must exist in the archive */
	size_t ncheck;
	size_t max;           /* page size, capped */
	bool count_only;      /* <max>0</max>: the count only (XEP-0059
				 §2.7) */
	bool backward;        /* RSM <before/>: the page at the end */
	bool flip;            /* <flip-page/>: send the page newest first */
	bool unknown_id;      /* a named id can be no archive id */
};

/* Parses query (an <query xmlns='urn:xmpp:mam:2'/>) into *r, allocating in
 * a. Returns 0, or -1 with *err_r: <bad-request/> for a malformed form,
 * RSM set or date, <feature-not-implemented/> for a field or RSM element
 * this server does not know (XEP-0313 §4.1.5), <policy-violation/> for
 * more ids than MAM_IDS_MAX, <jid-malformed/> for a bad `with`. */
int mam_request_parse(struct arena *a, const struct xml_elem *query,
		      struct mam_request *r, enum stanza_err *err_r);

/* The archive key, 16 bytes; set once before ids are formatted or
 * parsed (at start-up, before the shards run). */
#define MAM_ID_KEY_LEN 16
void mam_id_key(const unsigned char key[MAM_ID_KEY_LEN]);
/* An archive id as its wire text (32 hex digits), and back (-1: not one
 * of ours). */
#define MAM_ID_LEN 33
void mam_id_format(int64_t id, char out[MAM_ID_LEN]);
int mam_id_parse(struct str s, int64_t *id_r);

#endif
