/*
 * sc_muc.c - the load generator's group chat scenario (XEP-0045).
 *
 * Every session (--count) joins one room, conference.DOMAIN, one after
 * the other: the next join leaves when the previous one completed (its
 * subject message, the last thing a join sends, arrived), so each join's
 * time is measured against a room of all the earlier occupants; the time
 * of the last join is reported on its own. A join is a MUC client's
 * (XEP-0045 7.2.2: <x xmlns=muc/>, asking for no history), so the first
 * one creates a room that stays locked until configured (10.1.1): when
 * its self-presence says 201 the creator accepts the default
 * configuration (an instant room, 10.1.2) and the next join waits for
 * that too. Every server gets the same exchange: Prosody creates rooms
 * only for MUC clients, and a groupchat 1.0 join would make an instant
 * room on some servers and none on others. Then messages go to the room
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
	int n, joined;       /* sessions; joins done with (the current one) */
	uint64_t t_join;     /* when the current join was sent */
	uint64_t last_join_us;
	bool got_subject;    /* the current join's subject arrived */
	bool configuring;    /* the instant-room iq is unanswered */
	double join_cpu0, join_cpu1; /* server CPU s around the joins */
	uint64_t join_t0, join_t1;
	uint64_t received_at_stop; /* deliveries in the CPU window */
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

static void muc_start_sending(void);

/* The server's CPU seconds (--server-pid), or -1. */
static double muc_server_cpu(void)
{
	int pid = muc.run->o.server_pid;
	return pid ? lg_proc_cpu_s(pid) : -1;
}

static void muc_join_next(void)
{
	if (muc.joined >= muc.n) {
		muc.join_t1 = lg_now_ns();
		muc.join_cpu1 = muc_server_cpu();
		muc_start_sending();
		return;
	}
	struct lg_conn *c = muc.pool.conns[muc.joined];
	if (c == NULL) {
		/* A session that never came up cannot join: the run fails
		 * (conn_failures), and the rest still measures. */
		muc.joined++;
		muc_join_next();
		return;
	}
	/* History is empty while the room fills (messages come after the
	 * last join); maxstanzas='0' says so on every server anyway. */
	char *x = lg_xasprintf("<presence to='%s/u%d'><x xmlns='"
			       "http://jabber.org/protocol/muc'><history "
			       "maxstanzas='0'/></x></presence>", muc.room,
			       muc.joined);
	muc.got_subject = false;
	muc.configuring = false;
	muc.t_join = lg_now_ns();
	lg_conn_sends(c, x);
	free(x);
}

/* The current join is complete once its subject arrived and, for the
 * room's creator, the room was configured. */
static void muc_join_check(void)
{
	if (!muc.got_subject || muc.configuring)
		return;
	uint64_t us = (lg_now_ns() - muc.t_join) / 1000;
	lg_hist_add(&muc.join_hist, us);
	muc.last_join_us = us;
	muc.joined++;
	muc_join_next();
}

/* A join the room refused: counted, and the next one goes. */
static void muc_join_failed(const char *cond)
{
	muc.errors++;
	lg_counts_add(&muc.error_conds, cond, 1);
	muc.joined++;
	muc_join_next();
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
	lg_window_end(&muc.run->window, muc.run->o.server_pid);
	muc.received_at_stop = muc.received;
	uv_timer_stop(&muc.tick);
	uv_timer_start(&muc.end, muc_grace, 10, 10);
}

static void muc_start_sending(void)
{
	muc.sending = true;
	lg_window_begin(&muc.run->window, muc.run->o.server_pid);
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
		if (c->slot != muc.joined || muc.got_subject)
			return;
		muc.got_subject = true;
		muc_join_check();
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

/* Does presence st carry <status code='CODE'/> in muc#user? */
static bool muc_has_status(struct lg_elem *st, const char *code)
{
	struct lg_elem *x = lg_child(st, "http://jabber.org/protocol/muc#user",
				     "x");
	for (struct lg_elem *e = x ? x->child : NULL; e != NULL; e = e->next) {
		const char *v = lg_attr(e, "code");
		if (strcmp(e->name, "status") == 0 && v && strcmp(v, code) == 0)
			return true;
	}
	return false;
}

static void muc_presence(struct lg_conn *c, struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	bool current = c->slot == muc.joined && muc.joined < muc.n &&
		       !muc.sending && muc.seen == NULL;
	if (type && strcmp(type, "error") == 0) {
		if (current)
			muc_join_failed("join");
		else {
			muc.errors++;
			lg_counts_add(&muc.error_conds, "presence", 1);
		}
		return;
	}
	/* 201: the join made the room; the creator takes the defaults. */
	if (!current || type != NULL || !muc_has_status(st, "110") ||
	    !muc_has_status(st, "201") || muc.configuring)
		return;
	muc.configuring = true;
	char *x = lg_xasprintf("<iq type='set' id='lg-instant' to='%s'>"
			       "<query xmlns='http://jabber.org/protocol/"
			       "muc#owner'><x xmlns='jabber:x:data' "
			       "type='submit'/></query></iq>", muc.room);
	lg_conn_sends(c, x);
	free(x);
}

static void muc_iq(struct lg_conn *c, struct lg_elem *st)
{
	const char *id = lg_attr(st, "id");
	const char *type = lg_attr(st, "type");
	if (!muc.configuring || c->slot != muc.joined || id == NULL ||
	    strcmp(id, "lg-instant") != 0 || type == NULL)
		return;
	if (strcmp(type, "error") == 0) {
		/* The room stays locked: the joins after this one fail and
		 * say so. */
		muc.errors++;
		lg_counts_add(&muc.error_conds, "configure", 1);
	} else if (strcmp(type, "result") != 0) {
		return;
	}
	muc.configuring = false;
	muc_join_check();
}

static void muc_stanza(struct lg_pool *pool, struct lg_conn *c,
		       struct lg_elem *st)
{
	if (strcmp(st->name, "message") == 0)
		muc_message(c, st);
	else if (strcmp(st->name, "presence") == 0)
		muc_presence(c, st);
	else if (strcmp(st->name, "iq") == 0)
		muc_iq(c, st);
}

static void muc_all_up(struct lg_pool *pool)
{
	muc.join_t0 = lg_now_ns();
	muc.join_cpu0 = muc_server_cpu();
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
	       "last_join_ms=%.2f", muc.n, (int)muc.join_hist.n, run->o.rate,
	       (unsigned long long)muc.sent,
	       (unsigned long long)muc.received, (unsigned long long)lost,
	       (unsigned long long)muc.dup, (unsigned long long)muc.errors,
	       (unsigned long long)muc.unexpected, muc.last_join_us / 1000.0);
	lg_counts_print(&muc.error_conds, "err_");
	lg_hist_print(&muc.join_hist, "join");
	/* The joins: from the first join to the last one's end, the
	 * server's CPU per completed join. */
	if (muc.join_t1) {
		printf(" join_window_s=%.6f",
		       (muc.join_t1 - muc.join_t0) / 1e9);
		double srv = muc.join_cpu1 - muc.join_cpu0;
		if (muc.join_cpu0 >= 0 && muc.join_cpu1 >= 0) {
			printf(" join_server_cpu_s=%.3f", srv);
			if (muc.join_hist.n > 0)
				printf(" server_cpu_ms_per_join=%.4g",
				       srv * 1e3 / (double)muc.join_hist.n);
		}
	}
	lg_hist_print(&muc.hist, "lat");
	/* Deliveries while sending (the grace is left out), per second of
	 * that window and per server CPU-second in it. */
	const struct lg_window *w = &run->window;
	if (w->t1 > w->t0)
		printf(" deliveries_per_s=%.1f", (double)muc.received_at_stop /
		       ((w->t1 - w->t0) / 1e9));
	lg_window_print(w, (double)muc.received_at_stop, "delivery");
	lg_result_end(run);
	*muc.status_r = lost || muc.dup || muc.errors || muc.unexpected ||
			muc.join_hist.n < (uint64_t)muc.n || !muc.received ||
			run->fails.len;
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
