/*
 * sc_msg.c - the load generator's 1:1 messaging scenario (RFC 6121 §5).
 * Pair p is session 2p (sender) and 2p+1 (receiver); messages go to the
 * receiver's full JID with body "lg:PAIR:SEQ:T[ padding]". Closed loop:
 * each pair keeps --window messages in flight, the next leaving when the
 * receiver got one. Fixed rate: --rate messages/s in total, stamped with
 * their scheduled time so a stalled server cannot hide latency
 * (coordinated omission). Every sequence number is tracked in a bitmap
 * per pair: a message is lost unless it arrived by the end plus --grace,
 * duplicated if it arrived twice, out of order if after a later one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

struct msg_pair {
	char *to_jid, *from_jid;  /* receiver's, sender's full JIDs */
	uint32_t next_seq, max_seen, inflight;
	uint64_t received, dup, ooo;
	uint8_t *seen;            /* bit per sequence number */
	size_t seen_cap;          /* bytes */
};

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	struct msg_pair *pairs;
	int npairs, rr;
	char *padding;
	bool sending, reported;
	uint64_t sent, received, dup, ooo, errors, unexpected, bogus;
	uint64_t not_online;
	struct lg_counts error_conds;
	struct lg_hist hist;
	uv_timer_t tick, end;
	uint64_t t_start, t_stop, t_last;
	uint64_t received_at_stop;   /* received within the CPU window */
} msg;

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

static void msg_send(int p, uint64_t stamp)
{
	struct msg_pair *mp = &msg.pairs[p];
	struct lg_conn *s = msg.pool.conns[2 * p];
	if (!s || !mp->to_jid) {
		msg.not_online++;
		return;
	}
	uint32_t seq = mp->next_seq++;
	struct lg_sbuf b = { 0 };
	lg_sbuf_adds(&b, "<message type='chat' to='");
	lg_sbuf_add_xml(&b, mp->to_jid);
	lg_sbuf_printf(&b, "'><body>lg:%d:%u:%llu%s</body></message>", p, seq,
		       (unsigned long long)stamp, msg.padding);
	lg_conn_send(s, b.p, b.len);
	lg_sbuf_free(&b);
	mp->inflight++;
	msg.sent++;
}

/* Marks `seq` seen; returns false if it already was. */
static bool msg_mark(struct msg_pair *mp, uint32_t seq)
{
	size_t byte = seq / 8;
	if (byte >= mp->seen_cap) {
		size_t cap = mp->seen_cap ? mp->seen_cap : 64;
		while (cap <= byte)
			cap *= 2;
		mp->seen = lg_xrealloc(mp->seen, cap);
		memset(mp->seen + mp->seen_cap, 0, cap - mp->seen_cap);
		mp->seen_cap = cap;
	}
	uint8_t bit = (uint8_t)(1u << (seq % 8));
	if (mp->seen[byte] & bit)
		return false;
	mp->seen[byte] |= bit;
	return true;
}

static void msg_error(struct lg_elem *st)
{
	msg.errors++;
	lg_counts_add(&msg.error_conds,
		      lg_condition(lg_child(st, NULL, "error"),
				   "urn:ietf:params:xml:ns:xmpp-stanzas"), 1);
}

/* Accounts for one received message on receiver slot `slot`. */
static void msg_receive(int slot, struct lg_elem *st)
{
	int p;
	uint32_t seq;
	unsigned long long t;
	int used = 0;
	const char *body = lg_text(lg_child(st, NULL, "body"));
	const char *from = lg_attr(st, "from");
	if (sscanf(body, "lg:%d:%u:%llu%n", &p, &seq, &t, &used) != 3 ||
	    (body[used] != '\0' && body[used] != ' ') || p != slot / 2 ||
	    !from || !msg.pairs[p].from_jid ||
	    strcmp(from, msg.pairs[p].from_jid) != 0) {
		msg.unexpected++;
		return;
	}
	struct msg_pair *mp = &msg.pairs[p];
	if (seq >= mp->next_seq) {
		msg.bogus++; /* never sent */
		return;
	}
	if (!msg_mark(mp, seq)) {
		mp->dup++;
		msg.dup++;
		return;
	}
	uint64_t now = lg_now_ns();
	mp->received++;
	msg.received++;
	msg.t_last = now;
	mp->inflight--;
	if (seq + 1 < mp->max_seen) {
		mp->ooo++;
		msg.ooo++;
	} else {
		mp->max_seen = seq + 1;
	}
	lg_hist_add(&msg.hist, now > t ? (now - t) / 1000 : 0);
	if (msg.sending && msg.run->o.rate == 0)
		msg_send(p, lg_now_ns());
}

static void msg_stanza(struct lg_pool *pool, struct lg_conn *c,
		       struct lg_elem *st)
{
	const char *type = lg_attr(st, "type");
	if (strcmp(st->name, "message") != 0)
		return;
	if (type && !strcmp(type, "error"))
		msg_error(st);
	else if (c->slot % 2 == 1 && c->slot / 2 < msg.npairs)
		msg_receive(c->slot, st);
	else
		msg.unexpected++;
}

static void msg_up(struct lg_pool *pool, struct lg_conn *c,
		   struct lg_elem *roster)
{
	int p = c->slot / 2;
	if (p >= msg.npairs)
		return;
	char **jid = c->slot % 2 ? &msg.pairs[p].to_jid :
				   &msg.pairs[p].from_jid;
	free(*jid);
	*jid = lg_xstrdup(c->jid);
}

static void msg_tick(uv_timer_t *t)
{
	double rate = msg.run->o.rate;
	uint64_t now = lg_now_ns();
	uint64_t due = (uint64_t)(rate * (now - msg.t_start) / 1e9);
	/* Bounded bursts keep the loop responsive if we fall behind. */
	for (int n = 0; msg.sending && msg.sent < due && n < 10000; n++) {
		uint64_t stamp = msg.t_start +
				 (uint64_t)((msg.sent + 1) * 1e9 / rate);
		msg_send(msg.rr, stamp);
		msg.rr = (msg.rr + 1) % msg.npairs;
	}
}

static void msg_report(void)
{
	struct lg_run *run = msg.run;
	uint64_t lost = msg.sent - msg.received;
	double secs = (msg.t_last > msg.t_start ? msg.t_last : msg.t_stop) -
		      msg.t_start;
	double per_s = secs > 0 ? msg.received / (secs / 1e9) : 0;
	printf("msg: %d pairs, %s: %llu sent, %llu received (%.1f/s), %llu "
	       "lost, %llu duplicated, %llu out of order, %llu errors; "
	       "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", msg.npairs,
	       run->o.rate > 0 ? "fixed rate" : "closed loop",
	       (unsigned long long)msg.sent, (unsigned long long)msg.received,
	       per_s, (unsigned long long)lost, (unsigned long long)msg.dup,
	       (unsigned long long)msg.ooo, (unsigned long long)msg.errors,
	       lg_hist_quantile(&msg.hist, 0.5) / 1000.0,
	       lg_hist_quantile(&msg.hist, 0.99) / 1000.0,
	       msg.hist.max_us / 1000.0);
	lg_result_begin(run);
	lg_pool_print(&msg.pool);
	printf(" pairs=%d mode=%s window=%d rate=%g size=%d sent=%llu "
	       "received=%llu lost=%llu duplicated=%llu out_of_order=%llu "
	       "errors=%llu unexpected=%llu bogus=%llu not_online=%llu "
	       "msgs_per_s=%.1f", msg.npairs,
	       run->o.rate > 0 ? "rate" : "closed", run->o.window,
	       run->o.rate, run->o.size, (unsigned long long)msg.sent,
	       (unsigned long long)msg.received, (unsigned long long)lost,
	       (unsigned long long)msg.dup, (unsigned long long)msg.ooo,
	       (unsigned long long)msg.errors,
	       (unsigned long long)msg.unexpected,
	       (unsigned long long)msg.bogus,
	       (unsigned long long)msg.not_online, per_s);
	lg_counts_print(&msg.error_conds, "err_");
	lg_hist_print(&msg.hist, "lat");
	/* CPU from the first send to the end of sending, per message
	 * received in that time (the grace period is left out). */
	lg_window_print(&run->window, (double)msg.received_at_stop, "msg");
	lg_result_end(run);
	*msg.status_r = lost || msg.dup || msg.ooo || msg.errors ||
			msg.unexpected || msg.bogus || msg.not_online ||
			!msg.received || run->fails.len;
}

static void msg_all_closed(struct lg_pool *pool)
{
	msg_report();
	for (int p = 0; p < msg.npairs; p++) {
		free(msg.pairs[p].to_jid);
		free(msg.pairs[p].from_jid);
		free(msg.pairs[p].seen);
	}
	free(msg.pairs);
	free(msg.padding);
	lg_counts_free(&msg.error_conds);
	lg_pool_free(pool);
	close_timer(&msg.tick);
	close_timer(&msg.end);
}

/* After sending stops: done when everything arrived, or after --grace
 * (whatever is missing then is lost). */
static void msg_grace(uv_timer_t *t)
{
	uint64_t waited = lg_now_ns() - msg.t_stop;
	if (msg.received >= msg.sent || waited >= msg.run->o.grace * 1e9) {
		uv_timer_stop(&msg.end);
		lg_pool_close(&msg.pool);
	}
}

static void msg_end(uv_timer_t *t)
{
	msg.sending = false;
	msg.t_stop = lg_now_ns();
	lg_window_end(&msg.run->window, msg.run->o.server_pid);
	msg.received_at_stop = msg.received;
	uv_timer_stop(&msg.tick);
	uv_timer_start(&msg.end, msg_grace, 10, 10);
}

static void msg_all_up(struct lg_pool *pool)
{
	msg.sending = true;
	lg_window_begin(&msg.run->window, msg.run->o.server_pid);
	msg.t_start = lg_now_ns();
	uv_timer_start(&msg.end, msg_end,
		       (uint64_t)(msg.run->o.duration * 1e3), 0);
	if (msg.run->o.rate > 0) {
		uv_timer_start(&msg.tick, msg_tick, 1, 1);
		return;
	}
	for (int p = 0; p < msg.npairs; p++)
		for (int w = 0; w < msg.run->o.window; w++)
			msg_send(p, lg_now_ns());
}

static const struct lg_pool_ops msg_ops = {
	.up = msg_up,
	.stanza = msg_stanza,
	.all_up = msg_all_up,
	.all_closed = msg_all_closed,
};

void lg_scenario_msg(struct lg_run *run, int *status_r)
{
	msg.run = run;
	msg.status_r = status_r;
	msg.npairs = run->o.pairs ? run->o.pairs : run->nusers / 2;
	if (msg.npairs < 1) {
		fputs("loadgen: msg needs --pairs >= 1 (or --count >= 2)\n",
		      stderr);
		exit(2);
	}
	msg.pairs = lg_xcalloc((size_t)msg.npairs, sizeof(*msg.pairs));
	/* Padding to reach --size bytes of body, after a space. */
	int pad = run->o.size > 40 ? run->o.size - 40 : 0;
	msg.padding = lg_xcalloc((size_t)pad + 2, 1);
	if (pad) {
		msg.padding[0] = ' ';
		memset(msg.padding + 1, 'x', (size_t)pad - 1);
	}
	uv_timer_init(run->loop, &msg.tick);
	uv_timer_init(run->loop, &msg.end);
	lg_pool_start(&msg.pool, run, 2 * msg.npairs, LG_WANT_PRESENCE,
		      &msg_ops, NULL);
}
