/*
 * archive.c - XEP-0313 archives of group chat rooms, on the machinery of
 * the account archive (src/mod/mam/mam.h): the same id source, writer
 * queue (and its back-pressure), query parser, pages and results. A
 * room's archive is the archive (service domain, room localpart) of the
 * same tables; docs/internals/muc.md ("Archive") describes it.
 *
 * - What: groupchat messages with a <body/> and subject changes
 *   (XEP-0313 §6.1.2), as the occupants got them (from the sender's
 *   occupant JID, with the room's stanza-id and the occupant id), plus
 *   the sender's real JID in a muc#user <x/>, shown in results only to
 *   whoever may see real JIDs. `with` is the occupant JID.
 * - Ids: the room's stanza-id of an archived message is its archive id,
 *   in the same opaque wire form, so clients dedupe live and archived
 *   copies; messages the room does not archive keep random ids.
 * - Queries: iq sets to the room's bare JID, answered by a keyed job of
 *   the room (results and the <fin/> sent from the room's shard).
 * - Moderation (XEP-0425): the stored message becomes its tombstone.
 * - Destruction: the archive goes, in order behind its last messages.
 *
 * All of it runs on the room's shard, except the pool jobs' work.
 */
#include <stdlib.h>
#include <string.h>

#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/xmalloc.h"
#include "../../router/route.h"
#include "../../store/mam.h"
#include "../../xml/parser.h"
#include "../../xmpp/datetime.h"
#include "../../xmpp/ns.h"
#include "../disco.h"
#include "../mam/mam.h"
#include "../module.h"
#include "muc.h"

#define NS_HINTS "urn:xmpp:hints"

bool muc_archive_on(const struct room *r)
{
	return mam_active() && !r->cfg.no_archive;
}

/* XEP-0313 §6.1.2: messages with a body and subject changes; XEP-0334
 * hints are honoured as in the account archive. */
static bool archivable(const struct xml_elem *msg)
{
	if (xml_child(msg, NS_HINTS, "no-store") != NULL ||
	    xml_child(msg, NS_HINTS, "no-permanent-store") != NULL)
		return false;
	return xml_child(msg, NS_CLIENT, "body") != NULL ||
	       xml_child(msg, NS_CLIENT, "subject") != NULL;
}

int64_t muc_archive_id(const struct room *r, const struct xml_elem *msg,
		       char sid[MAM_ID_LEN])
{
	if (!muc_archive_on(r) || !archivable(msg))
		return 0;
	int64_t id = mam_next_id();
	mam_id_format(id, sid);
	return id;
}

void muc_archive_message(const struct room *r, const struct occupant *o,
			 const char *real, const struct xml_elem *m,
			 int64_t id)
{
	struct arena *a = arena_new(0);
	struct xml_elem *c = xml_copy(a, m);
	/* §6.1.2 and §10: a muc#user <x/> the sender put in is not the
	 * room's; the room's own says who sent it. */
	struct xml_elem *x;
	while (c != NULL && (x = xml_child(c, NS_MUC_USER, "x")) != NULL)
		xml_remove_child(x);
	x = c ? xml_add_child(a, c, STR_LIT(NS_MUC_USER), STR_LIT("x")) : NULL;
	struct xml_elem *it =
		x ? xml_add_child(a, x, STR_LIT(NS_MUC_USER), STR_LIT("item"))
		  : NULL;
	if (it != NULL) {
		xml_attr_set(a, it, "jid", str_c(real));
		mam_archive_elem(c, str_c(r->domain), str_c(r->node),
				 str_c(r->jid), str_c(o->nick), id);
	}
	arena_destroy(&a);
}

/* ---- jobs of the room: tombstones, removal ---- */

struct edit_job {
	char *domain, *node;
	int64_t id;       /* tombstone: the message; drop: up to this id */
	char *retracted;  /* the <retracted/> (serialized), or NULL: drop */
	size_t len;
};

/*
 * XEP-0425 §"Tombstones": the stored message keeps what says who sent
 * it and where it is (its attributes, occupant id, stanza-id, the
 * room's muc#user <x/>); everything else (the body and whatever might
 * leak it) gives way to <retracted/>.
 */
static int tombstone(struct store *st, struct edit_job *j, int64_t uid)
{
	struct buf b = { 0 };
	int rc = mam_store_get(st, uid, j->id, &b);
	if (rc != 0) {
		buf_reset(&b);
		return rc < 0 ? -1 : 0;
	}
	struct arena *a = arena_new(0);
	struct xml_elem *m = xml_parse_elem(a, STR(b.data, b.len),
					    STR_LIT(NS_CLIENT));
	struct xml_elem *t = xml_parse_elem(a, STR(j->retracted, j->len),
					    STR_LIT(NS_CLIENT));
	buf_reset(&b);
	rc = -1;
	if (m != NULL && t != NULL) {
		struct xml_elem *c = xml_first_child_elem(m);
		while (c != NULL) {
			struct xml_elem *next = xml_next_elem(c);
			if (!str_eq_c(c->ns, NS_OCCUPANT_ID) &&
			    !str_eq_c(c->ns, NS_SID) &&
			    !str_eq_c(c->ns, NS_MUC_USER))
				xml_remove_child(c);
			c = next;
		}
		xml_append_elem(m, t);
		if (xml_serialize(&b, m, STR_LIT(NS_CLIENT)) == 0)
			rc = mam_store_replace(st, uid, j->id, b.data, b.len);
		buf_reset(&b);
	}
	arena_destroy(&a);
	return rc < 0 ? -1 : 0;
}

static int edit_work(struct store *st, void *ud)
{
	struct edit_job *j = ud;
	/* What the room queued before (the message itself, or its last
	 * messages) is written first. */
	mam_flush(st);
	int64_t uid;
	int rc = mam_store_user(st, j->domain, j->node, false, &uid);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (j->retracted != NULL)
		return tombstone(st, j, uid);
	return mam_store_drop(st, uid, j->id);
}

static void edit_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct edit_job *j = ud;
	if (status < 0 && status != UV_ECANCELED)
		log_warnx("muc: archive of %s@%s: %s failed", j->node,
			  j->domain, j->retracted ? "a tombstone" : "removal");
	free(j->domain);
	free(j->node);
	free(j->retracted);
	free(j);
}

static void edit_queue(const struct room *r, struct edit_job *j)
{
	j->domain = xstrdup(r->domain);
	j->node = xstrdup(r->node);
	store_queue_keyed(server.store, str_c(r->jid), edit_work, edit_done,
			  j);
}

void muc_archive_retract(const struct room *r, struct str sid,
			 const struct xml_elem *moderated, struct str reason)
{
	int64_t id;
	if (!mam_active() || mam_id_parse(sid, &id) < 0)
		return; /* not an archive id: nothing stored under it */
	struct arena *a = arena_new(0);
	char stamp[XEP82_DATETIME_LEN];
	xep82_now(stamp);
	struct xml_elem *t = xml_elem_new(a, STR_LIT(NS_RETRACT),
					  STR_LIT("retracted"));
	xml_attr_set(a, t, "stamp", str_c(stamp));
	xml_append_elem(t, xml_copy(a, moderated));
	if (reason.p != NULL)
		xml_add_text(a, xml_add_child(a, t, STR_LIT(NS_RETRACT),
					      STR_LIT("reason")),
			     reason);
	struct buf b = { 0 };
	if (xml_serialize(&b, t, STR_LIT(NS_CLIENT)) == 0) {
		struct edit_job *j = xcalloc(1, sizeof(*j));
		j->id = id;
		j->retracted = b.data;
		j->len = b.len;
		edit_queue(r, j);
	} else {
		buf_reset(&b);
	}
	arena_destroy(&a);
}

void muc_archive_drop(const struct room *r)
{
	if (!mam_active())
		return;
	/* Up to now: a room made again under the same name meanwhile keeps
	 * what it archives from here on. */
	struct edit_job *j = xcalloc(1, sizeof(*j));
	j->id = mam_next_id();
	edit_queue(r, j);
}

struct sweep {
	struct store *st;
	bool (*kept)(const char *node, void *ud);
	void *ud;
	int64_t *gone;
	size_t n, cap;
};

static int sweep_one(int64_t uid, const char *user, void *ud)
{
	struct sweep *w = ud;
	if (w->kept(user, w->ud))
		return 0;
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 16;
		w->gone = xrealloc(w->gone, w->cap * sizeof(*w->gone));
	}
	w->gone[w->n++] = uid;
	return 0;
}

int muc_archive_sweep(struct store *st, const char *domain,
		      bool (*kept)(const char *node, void *ud), void *ud)
{
	struct sweep w = { st, kept, ud, NULL, 0, 0 };
	int rc = mam_store_archives(st, domain, sweep_one, &w);
	for (size_t i = 0; rc == 0 && i < w.n; i++)
		rc = mam_store_drop(st, w.gone[i], INT64_MAX);
	if (rc == 0 && w.n > 0)
		log_info("muc: %zu archive(s) of rooms gone from %s removed",
			 w.n, domain);
	free(w.gone);
	return rc;
}

/* ---- queries (XEP-0313 §4, §5) ---- */

void muc_archive_features(const struct room *r, struct arena *a,
			  struct xml_elem *q)
{
	if (!muc_archive_on(r))
		return;
	disco_add_feature(a, q, NS_MAM);
	disco_add_feature(a, q, NS_MAM_EXTENDED);
}

struct room_query {
	struct mam_page page;
	struct stanza *st;
	struct jid room;
	bool show_jid; /* the querier may see real JIDs */
	bool metadata;
};

static int query_work(struct store *st, void *ud)
{
	struct room_query *q = ud;
	return q->metadata ? mam_page_bounds(st, &q->page)
			   : mam_page_read(st, &q->page);
}

/* §6.1.2: the real JID only to whoever may see it in the room now. */
static void send_result(struct stanza *m, struct xml_elem *orig, void *ud)
{
	struct room_query *q = ud;
	struct xml_elem *x;
	while (!q->show_jid &&
	       (x = xml_child(orig, NS_MUC_USER, "x")) != NULL)
		xml_remove_child(x);
	route(m);
}

static void query_done(struct store *st, void *ud, int status)
{
	(void)st;
	struct room_query *q = ud; /* in the request's arena */
	struct stanza *req = q->st;
	if (status == UV_ECANCELED) {
		mam_page_free(&q->page);
		stanza_free(&req);
		return;
	}
	if (status < 0 || q->page.missing) {
		mam_page_free(&q->page);
		muc_iq_reply(req, NULL,
			     status < 0 ? STANZA_ERR_INTERNAL_SERVER_ERROR
					: STANZA_ERR_ITEM_NOT_FOUND);
		return;
	}
	struct xml_elem *res;
	if (q->metadata) {
		res = mam_page_metadata(req->a, &q->page);
	} else {
		mam_page_send(&q->page, &q->room, &req->from, send_result, q);
		res = mam_page_fin(req->a, &q->page);
	}
	mam_page_free(&q->page);
	muc_iq_reply(req, res, STANZA_ERR_NONE);
}

/*
 * §6.1.2 lets a room limit who reads its archive: here its occupants,
 * and in a members-only room its members, admins and owners even when
 * they are not in it (they may enter it at any time); outcasts never.
 */
static bool may_read(const struct room *r, const struct stanza *st,
		     bool *show_jid_r)
{
	struct str full = jid_to_str(st->a, &st->from, false);
	const struct occupant *o = hmap_get(&r->by_jid, full);
	enum muc_aff aff = muc_aff_of(r, jid_to_str(st->a, &st->from, true).p);
	*show_jid_r = r->cfg.whois_anyone || aff >= AFF_ADMIN ||
		      (o != NULL && o->role == ROLE_MODERATOR);
	if (aff == AFF_OUTCAST)
		return false;
	return o != NULL || (r->cfg.members_only && aff >= AFF_MEMBER);
}

bool muc_archive_iq(const struct room *r, struct stanza *st,
		    const struct xml_elem *q)
{
	if (!str_eq_c(q->ns, NS_MAM) || !muc_archive_on(r))
		return false;
	bool get = str_eq_c(st->type, "get");
	bool query = str_eq_c(q->name, "query");
	bool metadata = get && str_eq_c(q->name, "metadata");
	if (!query && !metadata)
		return false;
	bool show_jid;
	if (!may_read(r, st, &show_jid)) {
		muc_iq_reply(st, NULL, STANZA_ERR_FORBIDDEN);
		return true;
	}
	if (get && query) {
		struct xml_elem *form = mam_form_new(st->a);
		muc_iq_reply(st, form, form ? STANZA_ERR_NONE
					    : STANZA_ERR_RESOURCE_CONSTRAINT);
		return true;
	}
	struct room_query *rq = arena_zalloc(st->a, sizeof(*rq));
	if (rq == NULL) {
		muc_iq_reply(st, NULL, STANZA_ERR_RESOURCE_CONSTRAINT);
		return true;
	}
	enum stanza_err err = STANZA_ERR_NONE;
	if (query && mam_request_parse(st->a, q, &rq->page.req, &err) < 0) {
		muc_iq_reply(st, NULL, err);
		return true;
	}
	if (query && rq->page.req.unknown_id) {
		muc_iq_reply(st, NULL, STANZA_ERR_ITEM_NOT_FOUND);
		return true;
	}
	rq->st = st;
	rq->metadata = metadata;
	rq->show_jid = show_jid;
	rq->room = (struct jid){ .node = arena_strdup(st->a, str_c(r->node)),
				 .domain = arena_strdup(st->a,
							str_c(r->domain)) };
	rq->page.host = rq->room.domain.p;
	rq->page.user = rq->room.node.p;
	store_queue_keyed(server.store, str_c(r->jid), query_work, query_done,
			  rq);
	return true;
}
