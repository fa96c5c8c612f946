/*
 * sc_muc.c - the load generator's group chat scenario (XEP-0045).
 *
 * Every session (--count) joins one room, conference.DOMAIN, one after
 * the other: the next join leaves when the previous one completed (its
 * subject message, the last thing a join sends, arrived), so each join's
 * time is measured against a room of all the earlier occupants; the time
 * of the last join is reported on its own. Then messages go to the room
 * at --rate per second in total (senders in turn) for --duration; every
 * occupant must get every message once. A message's body carries its
 * sequence number and scheduled send time, so the latency histogram is of
 * deliveries (one sample per occupant per message), coordinated omission
 * included. Lost = deliveries expected but not seen by the end of
 * --grace.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loadgen-private.h"

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	char *room;          /* room@conference.DOMAIN */
	int n, joined;       /* sessions; joins completed */
	uint64_t t_join;     /* when the current join was sent */
	uint64_t last_join_us;
	struct lg_hist join_hist, hist;
	uint8_t **seen;      /* per session: bit per sequence number */
	size_t seen_cap;     /* bytes per session */
	bool sending;
	uint64_t sent, received, dup, errors, unexpected;
	struct lg_counts error_conds;
	uv_timer_t tick, end;
	uint64_t t_start, t_stop;
} muc;

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

static void muc_join_next(void)
{
	struct lg_conn *c = muc.pool.conns[muc.joined];
	if (c == NULL) {
		/* A session that never came up cannot join: the run fails
		 * (conn_failures), and the rest still measures. */
		muc.joined++;
		if (muc.joined < muc.n)
			muc_join_next();
		return;
	}
	char *x = lg_xasprintf("<presence to='%s/u%d'/>", muc.room,
			       muc.joined);
	muc.t_join = lg_now_ns();
	lg_conn_sends(c, x);
	free(x);
}

static void muc_send(uint64_t stamp)
{
	int from = (int)(muc.sent % (uint64_t)muc.n);
	struct lg_conn *c = muc.pool.conns[from];
	uint64_t seq = muc.sent++;
	if (c == NULL)
		return; /* counted as lost by everyone */
	char *x = lg_xasprintf("<message to='%s' type='groupchat'><body>"
			       "lg:%llu:%llu</body></message>", muc.room,
			       (unsigned long long)seq,
			       (unsigned long long)stamp);
	lg_conn_sends(c, x);
	free(x);
}

static void muc_tick(uv_timer_t *t)
{
	uint64_t now = lg_now_ns();
	uint64_t due = (uint64_t)(muc.run->o.rate * (now - muc.t_start) /
				  1e9);
	for (int k = 0; muc.sending && muc.sent < due && k < 1000; k++)
		muc_send(muc.t_start +
			 (uint64_t)((muc.sent + 1) * 1e9 / muc.run->o.rate));
}

static void muc_grace(uv_timer_t *t)
{
	uint64_t waited = lg_now_ns() - muc.t_stop;
	if (muc.received >= muc.sent * (uint64_t)muc.n ||
	    waited >= muc.run->o.grace * 1e9) {
		uv_timer_stop(&muc.end);
		lg_pool_close(&muc.pool);
	}
}

static void muc_end(uv_timer_t *t)
{
	muc.sending = false;
	muc.t_stop = lg_now_ns();
	uv_timer_stop(&muc.tick);
	uv_timer_start(&muc.end, muc_grace, 10, 10);
}

static void muc_start_sending(void)
{
	muc.sending = true;
	muc.t_start = lg_now_ns();
	size_t need = (size_t)(muc.run->o.rate * muc.run->o.duration) / 8 +
		      64;
	muc.seen_cap = need;
	muc.seen = lg_xcalloc((size_t)muc.n, sizeof(*muc.seen));
	for (int i = 0; i < muc.n; i++)
		muc.seen[i] = lg_xcalloc(need, 1);
	uv_timer_start(&muc.end, muc_end,
		       (uint64_t)(muc.run->o.duration * 1e3), 0);
	uv_timer_start(&muc.tick, muc_tick, 1, 1);
}

static void muc_message(struct lg_conn *c, struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	if (type && strcmp(type, "error") == 0) {
		muc.errors++;
		lg_counts_add(&muc.error_conds,
			      lg_condition(lg_child(st, NULL, "error"),
					   "urn:ietf:params:xml:ns:"
					   "xmpp-stanzas"), 1);
		return;
	}
	if (lg_child(st, NULL, "subject") != NULL) {
		/* The end of a join. */
		if (c->slot != muc.joined)
			return;
		uint64_t us = (lg_now_ns() - muc.t_join) / 1000;
		lg_hist_add(&muc.join_hist, us);
		muc.last_join_us = us;
		if (++muc.joined < muc.n)
			muc_join_next();
		else
			muc_start_sending();
		return;
	}
	unsigned long long seq, t;
	int used = 0;
	const char *body = lg_text(lg_child(st, NULL, "body"));
	if (!muc.sending && muc.seen == NULL)
		return;
	if (sscanf(body, "lg:%llu:%llu%n", &seq, &t, &used) != 2 ||
	    body[used] != '\0' || seq >= muc.sent) {
		muc.unexpected++;
		return;
	}
	size_t byte = (size_t)(seq / 8);
	uint8_t bit = (uint8_t)(1u << (seq % 8));
	if (byte >= muc.seen_cap) {
		muc.unexpected++;
		return;
	}
	if (muc.seen[c->slot][byte] & bit) {
		muc.dup++;
		return;
	}
	muc.seen[c->slot][byte] |= bit;
	muc.received++;
	uint64_t now = lg_now_ns();
	lg_hist_add(&muc.hist, now > t ? (now - t) / 1000 : 0);
}

static void muc_stanza(struct lg_pool *pool, struct lg_conn *c,
		       struct lg_elem *st)
{
	if (strcmp(st->name, "message") == 0) {
		muc_message(c, st);
	} else if (strcmp(st->name, "presence") == 0) {
		const char *type = lg_attr(st, "type");
		if (type && strcmp(type, "error") == 0) {
			muc.errors++;
			lg_counts_add(&muc.error_conds, "join", 1);
		}
	}
}

static void muc_all_up(struct lg_pool *pool)
{
	muc_join_next();
}

static void muc_report(void)
{
	struct lg_run *run = muc.run;
	uint64_t want = muc.sent * (uint64_t)muc.n;
	uint64_t lost = want > muc.received ? want - muc.received : 0;
	printf("muc: %d occupants, %llu messages, %llu deliveries of %llu, "
	       "%llu lost, %llu duplicated, %llu errors; last join %.2f ms; "
	       "delivery p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", muc.n,
	       (unsigned long long)muc.sent,
	       (unsigned long long)muc.received, (unsigned long long)want,
	       (unsigned long long)lost, (unsigned long long)muc.dup,
	       (unsigned long long)muc.errors, muc.last_join_us / 1000.0,
	       lg_hist_quantile(&muc.hist, 0.5) / 1000.0,
	       lg_hist_quantile(&muc.hist, 0.99) / 1000.0,
	       muc.hist.max_us / 1000.0);
	lg_result_begin(run);
	lg_pool_print(&muc.pool);
	printf(" occupants=%d joined=%d rate=%g sent=%llu deliveries=%llu "
	       "lost=%llu duplicated=%llu errors=%llu unexpected=%llu "
	       "last_join_ms=%.2f", muc.n, muc.joined, run->o.rate,
	       (unsigned long long)muc.sent,
	       (unsigned long long)muc.received, (unsigned long long)lost,
	       (unsigned long long)muc.dup, (unsigned long long)muc.errors,
	       (unsigned long long)muc.unexpected, muc.last_join_us / 1000.0);
	lg_counts_print(&muc.error_conds, "err_");
	lg_hist_print(&muc.join_hist, "join");
	lg_hist_print(&muc.hist, "lat");
	lg_result_end(run);
	*muc.status_r = lost || muc.dup || muc.errors || muc.unexpected ||
			muc.joined < muc.n || !muc.received || run->fails.len;
}

static void muc_all_closed(struct lg_pool *pool)
{
	muc_report();
	for (int i = 0; muc.seen != NULL && i < muc.n; i++)
		free(muc.seen[i]);
	free(muc.seen);
	free(muc.room);
	lg_counts_free(&muc.error_conds);
	lg_pool_free(pool);
	close_timer(&muc.tick);
	close_timer(&muc.end);
}

static const struct lg_pool_ops muc_ops = {
	.stanza = muc_stanza,
	.all_up = muc_all_up,
	.all_closed = muc_all_closed,
};

void lg_scenario_muc(struct lg_run *run, int *status_r)
{
	muc.run = run;
	muc.status_r = status_r;
	muc.n = run->nusers;
	if (run->o.rate <= 0)
		run->o.rate = 10;
	/* A room of its own per run, so runs against one server do not
	 * meet. */
	muc.room = lg_xasprintf("lg%ld@conference.%s", (long)getpid(),
				run->o.domain);
	uv_timer_init(run->loop, &muc.tick);
	uv_timer_init(run->loop, &muc.end);
	lg_pool_start(&muc.pool, run, muc.n, LG_WANT_PRESENCE, &muc_ops,
		      NULL);
}
