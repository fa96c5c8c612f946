/*
 * sc_mam.c - the load generator's message archive scenario (XEP-0313).
 *
 * Session 0 (PREFIX1) owns the archive; sessions 1..N-1 are its contacts.
 * Fill: the contacts send --fill chat messages in total to PREFIX1's bare
 * JID, closed loop with --window in flight each, and PREFIX1 keeps the
 * XEP-0359 stanza-id of every message it gets (by its bare JID: the
 * archive id). Query: then PREFIX1 sends --queries rounds of four queries,
 * one at a time, pages of --page items:
 *
 *   first   the oldest page (RSM <max/> only)
 *   last    the newest page (RSM <before/>, empty)
 *   middle  the page after a random archived id (form after-id)
 *   with    the page of one random contact after a random archived id
 *           (form with + after-id)
 *
 * A query's latency runs from sending the iq to its result (after every
 * result message of the page). A page must not come back short unless
 * the server marks it complete (nothing more matched), nor hold results
 * of another query; an error or a short page fails the run. So does a stall: no
 * message or page for --grace seconds ends the run with what it has.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

#define NS_MAM "urn:xmpp:mam:2"
#define NS_SID "urn:xmpp:sid:0"

enum { Q_FIRST, Q_LAST, Q_MIDDLE, Q_WITH, Q_KINDS };
static const char *const kind_names[Q_KINDS] = { "first", "last", "middle",
						 "with" };

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	int ncontacts;
	uint64_t fill, sent, received, errors, unexpected;
	char **ids;                 /* stanza-ids received, in order */
	uint64_t nids;
	bool filling, querying, reported;
	/* the query in flight */
	int round, kind;
	char qid[32];
	uint64_t t_query, results, short_pages, foreign;
	uint64_t pages[Q_KINDS];
	struct lg_hist hist[Q_KINDS], all;
	struct lg_counts error_conds;
	uint64_t t_fill, t_filled;
	uint32_t rng;
	uv_timer_t watch;           /* progress check, once a second */
	uint64_t progress, seen_progress, t_progress;
	bool stalled;
} mam;

static uint32_t rnd(void)
{
	/* xorshift32: the same queries for the same seed, run after run */
	uint32_t x = mam.rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return mam.rng = x;
}

static struct lg_conn *owner(void)
{
	return mam.pool.conns[0];
}

/* Sends the next fill message from contact slot, or the next contact
 * online after it (a contact gone does not shrink the window). */
static void mam_send_one(int slot)
{
	struct lg_conn *c = NULL;
	for (int k = 0; k < mam.ncontacts && !c; k++) {
		c = mam.pool.conns[slot];
		slot = slot % mam.ncontacts + 1; /* 1..ncontacts */
	}
	if (!c || mam.sent >= mam.fill)
		return;
	struct lg_sbuf b = { 0 };
	lg_sbuf_adds(&b, "<message type='chat' to='");
	lg_sbuf_add_xml(&b, mam.run->users[0].bare);
	lg_sbuf_printf(&b, "'><body>mam fill %llu from contact %d: a line "
		       "of an ordinary conversation</body></message>",
		       (unsigned long long)mam.sent, slot);
	lg_conn_send(c, b.p, b.len);
	lg_sbuf_free(&b);
	mam.sent++;
}

static void query_next(void);

static void query_send(void)
{
	struct lg_conn *c = owner();
	int page = mam.run->o.page;
	snprintf(mam.qid, sizeof(mam.qid), "q%d-%d", mam.round, mam.kind);
	struct lg_sbuf b = { 0 };
	lg_sbuf_printf(&b, "<iq type='set' id='%s'><query xmlns='" NS_MAM
		       "' queryid='%s'>", mam.qid, mam.qid);
	if (mam.kind == Q_MIDDLE || mam.kind == Q_WITH) {
		/* an id with at least a page after it */
		uint64_t span = mam.nids > (uint64_t)page ? mam.nids - page : 1;
		const char *after = mam.ids[rnd() % span];
		lg_sbuf_adds(&b, "<x xmlns='jabber:x:data' type='submit'>"
			     "<field var='FORM_TYPE' type='hidden'><value>"
			     NS_MAM "</value></field>");
		if (mam.kind == Q_WITH) {
			int k = 1 + (int)(rnd() % (uint32_t)mam.ncontacts);
			lg_sbuf_adds(&b, "<field var='with'><value>");
			lg_sbuf_add_xml(&b, mam.run->users[k].bare);
			lg_sbuf_adds(&b, "</value></field>");
		}
		lg_sbuf_adds(&b, "<field var='after-id'><value>");
		lg_sbuf_add_xml(&b, after);
		lg_sbuf_adds(&b, "</value></field></x>");
	}
	lg_sbuf_printf(&b, "<set xmlns='http://jabber.org/protocol/rsm'>"
		       "<max>%d</max>%s</set></query></iq>", page,
		       mam.kind == Q_LAST ? "<before/>" : "");
	mam.results = 0;
	mam.t_query = lg_now_ns();
	lg_conn_send(c, b.p, b.len);
	lg_sbuf_free(&b);
}

static void mam_finish(void)
{
	mam.querying = false;
	mam.filling = false;
	uv_timer_stop(&mam.watch);
	lg_pool_close(&mam.pool);
}

/* No message delivered and no page answered for --grace seconds: say
 * where it stopped and end the run (it fails) rather than wait for the
 * global timeout. */
static void mam_watch(uv_timer_t *t)
{
	(void)t;
	uint64_t now = lg_now_ns();
	if (mam.progress != mam.seen_progress) {
		mam.seen_progress = mam.progress;
		mam.t_progress = now;
		return;
	}
	if (now - mam.t_progress < mam.run->o.grace * 1e9)
		return;
	fprintf(stderr, "loadgen: mam: stalled while %s: %llu of %llu "
		"messages sent, %llu delivered with an archive id, %llu "
		"errors, %llu unexpected; round %d query %s, %llu results\n",
		mam.filling ? "filling" : "querying",
		(unsigned long long)mam.sent, (unsigned long long)mam.fill,
		(unsigned long long)mam.received,
		(unsigned long long)mam.errors,
		(unsigned long long)mam.unexpected, mam.round,
		kind_names[mam.kind], (unsigned long long)mam.results);
	mam.stalled = true;
	mam_finish();
}

static void query_done(struct lg_elem *iq)
{
	uint64_t us = (lg_now_ns() - mam.t_query) / 1000;
	const char *type = lg_attr(iq, "type");
	if (type && !strcmp(type, "error")) {
		mam.errors++;
		lg_counts_add(&mam.error_conds,
			      lg_condition(lg_child(iq, NULL, "error"),
					   "urn:ietf:params:xml:ns:"
					   "xmpp-stanzas"), 1);
	} else {
		lg_hist_add(&mam.hist[mam.kind], us);
		lg_hist_add(&mam.all, us);
		mam.pages[mam.kind]++;
		/* A page may be short only at the end of what matched: the
		 * server says so with complete='true' (a contact's messages
		 * after a random id; an id received late, as when a message
		 * went through offline storage, near the archive's end). */
		struct lg_elem *fin = lg_child(iq, NS_MAM, "fin");
		const char *complete = fin ? lg_attr(fin, "complete") : NULL;
		if (mam.results < (uint64_t)mam.run->o.page &&
		    !(complete && !strcmp(complete, "true")))
			mam.short_pages++;
	}
	query_next();
}

static void query_next(void)
{
	if (++mam.kind == Q_KINDS) {
		mam.kind = 0;
		mam.round++;
	}
	if (mam.round == mam.run->o.queries || !owner()) {
		mam_finish();
		return;
	}
	query_send();
}

/* A message for the owner: a filled one (keep its archive id) or a
 * result of the query in flight. */
static void owner_message(struct lg_elem *st)
{
	struct lg_elem *res = lg_child(st, NS_MAM, "result");
	if (res) {
		const char *qid = lg_attr(res, "queryid");
		if (mam.querying && qid && !strcmp(qid, mam.qid))
			mam.results++;
		else
			mam.foreign++;
		return;
	}
	if (!lg_child(st, NULL, "body")) {
		mam.unexpected++;
		return;
	}
	const char *id = NULL;
	for (struct lg_elem *e = st->child; e; e = e->next) {
		const char *by = lg_attr(e, "by");
		if (!strcmp(e->ns, NS_SID) && !strcmp(e->name, "stanza-id") &&
		    by && !strcmp(by, mam.run->users[0].bare))
			id = lg_attr(e, "id");
	}
	if (!id) {
		mam.unexpected++; /* not archived: no archive id */
		return;
	}
	mam.ids[mam.nids++] = lg_xstrdup(id);
	mam.received++;
	if (mam.received == mam.fill && mam.filling) {
		mam.filling = false;
		mam.t_filled = lg_now_ns();
		mam.querying = true;
		mam.round = 0;
		mam.kind = 0;
		query_send();
	}
}

static void mam_stanza(struct lg_pool *pool, struct lg_conn *c,
		       struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	mam.progress++;
	if (c->slot != 0) {
		if (!strcmp(st->name, "message") && type &&
		    !strcmp(type, "error"))
			mam.errors++;
		return;
	}
	if (!strcmp(st->name, "message")) {
		if (type && !strcmp(type, "error"))
			mam.errors++;
		else if (mam.nids < mam.fill)
			owner_message(st);
		else if (lg_child(st, NS_MAM, "result"))
			owner_message(st);
		else
			mam.unexpected++;
		if (mam.filling && !(type && !strcmp(type, "error")))
			mam_send_one(1 + (int)(mam.received %
					       (uint64_t)mam.ncontacts));
		return;
	}
	const char *id = lg_attr(st, "id");
	if (!strcmp(st->name, "iq") && mam.querying && id &&
	    !strcmp(id, mam.qid))
		query_done(st);
}

static void mam_all_up(struct lg_pool *pool)
{
	if (!owner()) {
		fputs("loadgen: mam: the archive owner is not online\n",
		      stderr);
		mam_finish();
		return;
	}
	mam.filling = true;
	mam.t_fill = mam.t_progress = lg_now_ns();
	uv_timer_start(&mam.watch, mam_watch, 1000, 1000);
	for (int w = 0; w < mam.run->o.window; w++)
		for (int k = 1; k <= mam.ncontacts; k++)
			mam_send_one(k);
}

static void mam_report(void)
{
	struct lg_run *run = mam.run;
	double fill_s = mam.t_filled > mam.t_fill
				? (mam.t_filled - mam.t_fill) / 1e9
				: 0;
	printf("mam: %llu messages delivered with archive ids in %.2f s "
	       "(%.0f/s), %d contacts; %d rounds of %d-item pages:\n",
	       (unsigned long long)mam.received, fill_s,
	       fill_s > 0 ? mam.received / fill_s : 0, mam.ncontacts,
	       run->o.queries, run->o.page);
	for (int k = 0; k < Q_KINDS; k++)
		printf("  %-7s %6llu pages  p50 %7.2f ms  p99 %7.2f ms  max "
		       "%7.2f ms\n", kind_names[k],
		       (unsigned long long)mam.pages[k],
		       lg_hist_quantile(&mam.hist[k], 0.5) / 1000.0,
		       lg_hist_quantile(&mam.hist[k], 0.99) / 1000.0,
		       mam.hist[k].max_us / 1000.0);
	printf("  %llu errors, %llu short pages, %llu stray results, %llu "
	       "unexpected stanzas\n", (unsigned long long)mam.errors,
	       (unsigned long long)mam.short_pages,
	       (unsigned long long)mam.foreign,
	       (unsigned long long)mam.unexpected);
	lg_result_begin(run);
	lg_pool_print(&mam.pool);
	printf(" fill=%llu archived=%llu fill_s=%.2f contacts=%d page=%d "
	       "rounds=%d errors=%llu short_pages=%llu stray=%llu "
	       "unexpected=%llu stalled=%d", (unsigned long long)mam.fill,
	       (unsigned long long)mam.received, fill_s, mam.ncontacts,
	       run->o.page, run->o.queries, (unsigned long long)mam.errors,
	       (unsigned long long)mam.short_pages,
	       (unsigned long long)mam.foreign,
	       (unsigned long long)mam.unexpected, mam.stalled);
	lg_counts_print(&mam.error_conds, "err_");
	for (int k = 0; k < Q_KINDS; k++)
		lg_hist_print(&mam.hist[k], kind_names[k]);
	lg_hist_print(&mam.all, "all");
	lg_result_end(run);
	*mam.status_r = mam.stalled || mam.errors || mam.short_pages ||
			mam.foreign ||
			mam.unexpected || mam.received < mam.fill ||
			mam.all.n < (uint64_t)run->o.queries * Q_KINDS ||
			run->fails.len;
}

static void mam_all_closed(struct lg_pool *pool)
{
	mam_report();
	for (uint64_t i = 0; i < mam.nids; i++)
		free(mam.ids[i]);
	free(mam.ids);
	lg_counts_free(&mam.error_conds);
	lg_pool_free(pool);
	if (!uv_is_closing((uv_handle_t *)&mam.watch))
		uv_close((uv_handle_t *)&mam.watch, NULL);
}

static const struct lg_pool_ops mam_ops = {
	.stanza = mam_stanza,
	.all_up = mam_all_up,
	.all_closed = mam_all_closed,
};

void lg_scenario_mam(struct lg_run *run, int *status_r)
{
	mam.run = run;
	mam.status_r = status_r;
	mam.ncontacts = run->nusers - 1;
	if (mam.ncontacts < 1 || run->o.fill < 1) {
		fputs("loadgen: mam needs --count >= 2 and --fill >= 1\n",
		      stderr);
		exit(2);
	}
	mam.fill = (uint64_t)run->o.fill;
	mam.ids = lg_xcalloc(mam.fill, sizeof(*mam.ids));
	mam.rng = 2463534242u;
	uv_timer_init(run->loop, &mam.watch);
	lg_pool_start(&mam.pool, run, run->nusers, LG_WANT_PRESENCE, &mam_ops,
		      NULL);
}
