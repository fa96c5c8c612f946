/*
 * mod_mam.c - XEP-0313 Message Archive Management for user accounts,
 * XEP-0359 stanza ids, XEP-0441 archiving preferences, XEP-0334 storage
 * hints. docs/internals/mam.md describes the design; in short:
 *
 * What: chat and normal messages with a <body/> (or a <store/> hint),
 * without <no-store/> or <no-permanent-store/>, are archived once per
 * account: for a local sender when its client sends the message
 * (EV_MESSAGE_OUT), for a local recipient where route() has chosen its
 * resources (EV_MESSAGE_DELIVER: once, whatever the number of resources,
 * and also when the message goes to offline storage). A message to
 * oneself is archived once, as received.
 *
 * Ids: one server-wide source of strictly increasing integers, the
 * current time in microseconds (or the last id + 1), so archive order is
 * arrival order and start/end are id ranges; clients see them encrypted
 * (request.c), opaque and unpredictable. The recipient's copy gets
 * <stanza-id by=bare JID id=ID/> before delivery (and before carbons copy
 * it, and before offline storage keeps it); incoming stanza-ids that
 * claim the account's `by` are removed first (XEP-0359 §3).
 *
 * Writes: the id is known on the shard, so delivery does not wait for the
 * disk. Archived copies are queued (one list for the process) and written
 * by a pool job in batches, one transaction and one fsync per batch
 * (group commit). A query first writes what is queued, under the same
 * writer lock, so a client always finds the messages it has been
 * delivered or has sent.
 *
 * Preferences: cached in memory for every account that has any (loaded at
 * start-up, changed by <prefs/> sets after they are stored). Routing
 * decides from the cache; only default='roster' for a contact on neither
 * list needs the roster: an incoming message is then held in the
 * account's keyed queue until the roster says, and routed on with the
 * answer; an outgoing copy is checked by the writer instead (it carries
 * no stanza-id).
 *
 * Queries (keyed jobs of the account, query.c): the form and RSM set are
 * read by request.c into one id range; results are sent to the querying
 * resource, then the <fin/> result.
 *
 * This file: the module, which messages are archived (the hooks) and the
 * archive ids; prefs.c, writer.c, query.c, request.c do the rest.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "../../core/conf.h"
#include "../../core/log.h"
#include "../../core/server.h"
#include "../../core/xmalloc.h"
#include "../../store/mam.h"
#include "../../xmpp/ns.h"
#include "../roster/roster-private.h"
#include "mam-private.h"
#include "request.h"

/* ---- archive ids ---- */

static _Atomic int64_t last_id;

int64_t mam_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The next id: the time in microseconds, or one more than the last id if
 * the clock has not moved past it (a burst, or a clock set back). */
int64_t mam_next_id(void)
{
	int64_t now = mam_now_us();
	int64_t last = atomic_load(&last_id);
	int64_t id;
	do
		id = now > last ? now : last + 1;
	while (!atomic_compare_exchange_weak(&last_id, &last, id));
	return id;
}

/* The oldest id still kept (retention), or 0. */
int64_t mam_retention_floor(void)
{
	uint64_t r = server.conf->mam.retention_ms;
	if (r == 0)
		return 0;
	int64_t f = mam_now_us() - (int64_t)r * 1000;
	return f > 0 ? f : 0;
}

/* ---- which messages ---- */

static bool mam_enabled(void)
{
	return server.conf->mam.enabled;
}

static bool started;

bool mam_active(void)
{
	return started && mam_enabled();
}

/* XEP-0313 §6.1.1 (user archives) and XEP-0334 hints; nothing while the
 * archive is switched off (mam.enabled). */
static bool archivable(const struct stanza *st)
{
	if (!mam_enabled() || st->kind != STANZA_MESSAGE ||
	    !(st->type.len == 0 || str_eq_c(st->type, "chat") ||
	      str_eq_c(st->type, "normal")))
		return false;
	const struct xml_elem *x = st->x;
	if (xml_child(x, NS_HINTS, "no-store") != NULL ||
	    xml_child(x, NS_HINTS, "no-permanent-store") != NULL)
		return false;
	return xml_child(x, NS_CLIENT, "body") != NULL ||
	       xml_child(x, NS_HINTS, "store") != NULL;
}

/* XEP-0359 §3: a stanza-id whose `by` is the archive's own JID can only
 * be forged; it goes before anything else sees the message. */
static void strip_ids(struct stanza *st, const struct jid *archive)
{
	struct xml_elem *c = xml_first_child_elem(st->x);
	while (c != NULL) {
		struct xml_elem *next = xml_next_elem(c);
		if (str_eq_c(c->name, "stanza-id") && str_eq_c(c->ns, NS_SID)) {
			struct jid by;
			const char *why;
			struct str s = xml_attr_get(c, "by");
			if (s.p != NULL &&
			    jid_parse(st->a, s, &by, &why) == 0 &&
			    jid_is_bare(&by) && jid_bare_eq(&by, archive))
				xml_remove_child(c);
		}
		c = next;
	}
}

/* ---- hooks ---- */

/* The roster answer for a held incoming message, for the second pass of
 * route() on this thread (resume.st is that message). */
static _Thread_local struct {
	const struct stanza *st;
	bool archive;
} resume;

struct held {
	struct stanza *st;
	const char *host, *user, *contact;
	bool in_roster;
};

static int held_work(struct store *store, void *ud)
{
	struct held *h = ud;
	struct arena *a = arena_new(0);
	struct xml_elem *it = NULL;
	int rc = roster_item_load(store, h->host, h->user, h->contact, a, &it);
	h->in_roster = rc == 0 && roster_item_visible(it);
	arena_destroy(&a);
	return rc < 0 ? -1 : 0;
}

static void held_done(struct store *store, void *ud, int status)
{
	(void)store;
	struct held *h = ud;
	struct stanza *st = h->st;
	if (status == UV_ECANCELED) {
		stanza_free(&st);
		return;
	}
	if (status < 0)
		log_warnx("mam: roster of %s@%s unreadable; a message from %s "
			  "is not archived", h->user, h->host, h->contact);
	resume.st = st;
	resume.archive = status >= 0 && h->in_roster;
	route(st); /* the hooks again; mam_deliver takes the answer */
	resume.st = NULL;
}

/* Incoming, before routing: forged ids go; with default='roster' and a
 * contact on neither list the message waits for the roster. */
static enum hook_ret mam_in(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->kind != STANZA_MESSAGE || resume.st == st)
		return HOOK_PASS;
	strip_ids(st, &st->to);
	if (!archivable(st) || st->from.domain.len == 0)
		return HOOK_PASS;
	struct str account = jid_to_str(st->a, &st->to, true);
	if (mam_decide(st->a, account, &st->from) != MAM_ASK_ROSTER)
		return HOOK_PASS;
	struct held *h = arena_zalloc(st->a, sizeof(*h));
	if (h == NULL)
		return HOOK_PASS; /* arena full: routed, not archived */
	h->st = st;
	h->host = arena_strdup(st->a, st->to.domain).p;
	h->user = arena_strdup(st->a, st->to.node).p;
	h->contact = jid_to_str(st->a, &st->from, true).p;
	store_queue_keyed(server.store, account, held_work, held_done, h);
	return HOOK_STOP;
}

/* Incoming, resources chosen (or none: offline storage next): the one
 * archived copy of the recipient, and its stanza-id on what is
 * delivered. */
static enum hook_ret mam_deliver(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (!archivable(st) || st->from.domain.len == 0)
		return HOOK_PASS;
	struct jid account = st->to;
	account.resource = STR_NULL;
	bool yes;
	if (resume.st == st) {
		yes = resume.archive;
	} else {
		struct str bare = jid_to_str(st->a, &account, true);
		/* MAM_ASK_ROSTER here: the preferences changed since mam_in;
		 * not archived rather than guessed. */
		yes = mam_decide(st->a, bare, &st->from) == MAM_ARCHIVE;
	}
	if (!yes)
		return HOOK_PASS;
	int64_t id = mam_next_id();
	char ids[MAM_ID_LEN];
	mam_id_format(id, ids);
	struct xml_elem *sid = xml_add_child(st->a, st->x, STR_LIT(NS_SID),
					     STR_LIT("stanza-id"));
	if (sid == NULL)
		return HOOK_PASS; /* arena full: delivered, not archived */
	xml_attr_set(st->a, sid, "by", jid_to_str(st->a, &account, true));
	xml_attr_set(st->a, sid, "id", str_c(ids));
	mam_archive(st, &account, &st->from, id, ctx->nrefs == 0, false);
	return HOOK_PASS;
}

/* Outgoing, from a local client: the sender's copy (without stanza-id:
 * XEP-0313 §3.5, it is not for the recipient). */
static enum hook_ret mam_out(struct hook_ctx *ctx)
{
	struct stanza *st = ctx->st;
	if (st->kind != STANZA_MESSAGE)
		return HOOK_PASS;
	struct jid account = *ctx->user;
	account.resource = STR_NULL;
	strip_ids(st, &account);
	if (!archivable(st) || st->to.domain.len == 0 ||
	    jid_bare_eq(&st->to, &account))
		return HOOK_PASS; /* to oneself: archived once, as received */
	enum mam_decision d =
		mam_decide(st->a, jid_to_str(st->a, &account, true), &st->to);
	if (d == MAM_SKIP)
		return HOOK_PASS;
	mam_archive(st, &account, &st->to, mam_next_id(), false,
		    d == MAM_ASK_ROSTER);
	return HOOK_PASS;
}

/* ---- start and stop ---- */

static int mam_start(struct store *store, char **error_r)
{
	started = true;
	mam_writer_start();
	int64_t high;
	unsigned char fresh[MAM_ID_KEY_LEN], key[MAM_ID_KEY_LEN];
	if (RAND_bytes(fresh, sizeof(fresh)) != 1) {
		*error_r = xstrdup("mam: no random bytes for the archive key");
		return -1;
	}
	if (mam_prefs_start(store) < 0 || mam_store_high(store, &high) < 0 ||
	    mam_store_key(store, fresh, sizeof(fresh), key) < 0) {
		*error_r = xstrdup("mam: cannot read the archive");
		return -1;
	}
	mam_id_key(key);
	atomic_store(&last_id, high);
	if (server.conf->mam.retention_ms > 0)
		mam_purge(store);
	return 0;
}

static void mam_fini(void)
{
	if (!started)
		return;
	started = false;
	mam_writer_stop(server.store);
	mam_prefs_stop();
}

static const struct iq_route mam_iq[] = {
	{ IQ_SET, TO_BARE, NS_MAM, "query", mam_query_set },
	{ IQ_GET, TO_BARE, NS_MAM, "query", mam_query_form },
	{ IQ_GET, TO_BARE, NS_MAM, "metadata", mam_metadata_get },
	{ IQ_GET, TO_BARE, NS_MAM, "prefs", mam_prefs_get },
	{ IQ_SET, TO_BARE, NS_MAM, "prefs", mam_prefs_set },
	{ 0 },
};

static const struct hook mam_hooks[] = {
	/* After blocking (5): a refused message is not archived. */
	{ EV_MESSAGE_IN, 10, mam_in },
	{ EV_MESSAGE_OUT, 10, mam_out },
	/* Before carbons (20): the copies carry the stanza-id. */
	{ EV_MESSAGE_DELIVER, 10, mam_deliver },
	{ 0 },
};

const struct module mod_mam = {
	.name = "mam",
	.spec = "XEP-0313, XEP-0359, XEP-0441, XEP-0334",
	.iq = mam_iq,
	.account_features = (const char *const[]){ NS_MAM, NS_MAM_EXTENDED,
						   NS_SID, NULL },
	.advertised = mam_enabled,
	.store = &mam_schema,
	.hooks = mam_hooks,
	.start = mam_start,
	.fini = mam_fini,
};

