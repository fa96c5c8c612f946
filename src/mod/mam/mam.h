/*
 * mam.h - the archive machinery of src/mod/mam/ as other archives use it
 * (XEP-0313 archives of group chat rooms, src/mod/muc/archive.c): the id
 * source, the writer's queue, and reading a query's page and building
 * its results. An archive is named by (host, user): an account's is its
 * vhost and localpart, a room's its service domain and localpart; the
 * two never meet, since a service domain is never a vhost.
 * docs/internals/mam.md describes the design.
 */
#ifndef STANZAD_MOD_MAM_H
#define STANZAD_MOD_MAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../core/buf.h"
#include "../../store/store.h"
#include "request.h"

#define NS_MAM_EXTENDED "urn:xmpp:mam:2#extended"

/* Whether archiving is on (mam.enabled) and the archive's ids can be
 * handed out (the module started: its key is loaded). */
bool mam_active(void);

/* The next archive id (strictly increasing, server-wide); the oldest
 * id still kept (mam.retention), or 0. */
int64_t mam_next_id(void);
int64_t mam_retention_floor(void);

/* Queues x (serialized with jabber:client as the default namespace) for
 * the archive (host, user) under id, with `with` as its contact (bare
 * JID and resource, or "" for none). Written in order with everything
 * else queued, in the writer's next batch; subject to back-pressure
 * like the accounts' copies. */
void mam_archive_elem(const struct xml_elem *x, struct str host,
		      struct str user, struct str with, struct str with_res,
		      int64_t id);

/* Writes everything queued so far; pool threads (or the main thread
 * before and after the shards). */
void mam_flush(struct store *st);

/* ---- one page of an archive (pool job, then its done) ---- */

struct mam_result {
	int64_t id;
	size_t off, len; /* in mam_page.values */
};

struct mam_page {
	struct mam_request req; /* parsed by mam_request_parse */
	const char *host, *user; /* the archive */
	int64_t uid;
	struct buf values;       /* the stored messages, back to back */
	struct mam_result *res;  /* nres results, in the order read */
	size_t nres, cap;
	bool more;
	size_t count;
	bool missing;            /* a named id is not in the archive */
	int64_t first, last;     /* metadata */
	bool empty;
};

/* Pool: writes what is queued, checks the ids the query names, reads
 * its page. 0, or -1 on a storage error. */
int mam_page_read(struct store *st, struct mam_page *p);
/* Pool: the archive's first and last ids (metadata, §5). */
int mam_page_bounds(struct store *st, struct mam_page *p);

/* The results, in the order the client asked for: for each, a message
 * from `from` to `to` with <result><forwarded><delay/>MESSAGE, which
 * send gets (and owns) with the stored message in it (orig: it may
 * still change it). */
typedef void mam_send_fn(struct stanza *m, struct xml_elem *orig, void *ud);
void mam_page_send(const struct mam_page *p, const struct jid *from,
		   const struct jid *to, mam_send_fn *send, void *ud);
/* The <fin/> of the page, in a. */
struct xml_elem *mam_page_fin(struct arena *a, const struct mam_page *p);
/* The <metadata/> answer, in a. */
struct xml_elem *mam_page_metadata(struct arena *a, const struct mam_page *p);
void mam_page_free(struct mam_page *p);

/* The <query/> with the form of the fields a query may use (§4.1.5),
 * in a; NULL when a is full. */
struct xml_elem *mam_form_new(struct arena *a);

#endif
