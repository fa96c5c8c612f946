/*
 * sc_msg.c - the load generator's 1:1 messaging scenario (RFC 6121 §5).
 * Pair p is session 2p (sender) and 2p+1 (receiver); messages go to the
 * receiver's full JID with body "lg:PAIR:SEQ:T[ padding]". Closed loop:
 * each pair keeps --window messages in flight, the next leaving when the
 * receiver got one. Fixed rate: --rate messages/s in total, stamped with
 * their scheduled time so a stalled server cannot hide latency
 * (coordinated omission). Every sequence number is tracked in a bitmap
 * per pair (msgcheck.c, shared with burst): a message is lost unless it
 * arrived by the end plus --grace, duplicated if it arrived twice, out
 * of order if after a later one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	struct lg_msgcheck mc;
	int rr;
	bool sending;
	uint64_t not_online;
	struct lg_hist hist;
	uv_timer_t tick, end;
	uint64_t t_start, t_stop, t_last;
	uint64_t received_at_stop;   /* received within the CPU window */
	struct lg_sbuf out;          /* the message being sent */
} msg;

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

static void msg_send(int p, uint64_t stamp)
{
	struct lg_conn *s = msg.pool.conns[2 * p];
	if (!s || !msg.mc.pairs[p].to_jid) {
		msg.not_online++;
		return;
	}
	msg.out.len = 0;
	lg_msgcheck_build(&msg.mc, p, stamp, &msg.out);
	lg_conn_send(s, msg.out.p, msg.out.len);
}

static void msg_stanza(struct lg_pool *pool, struct lg_conn *c,
		       struct lg_elem *st)
{
	uint64_t t = 0;
	int p = lg_msgcheck_stanza(&msg.mc, c, st, &t);
	if (p < 0)
		return;
	uint64_t now = lg_now_ns();
	msg.t_last = now;
	lg_hist_add(&msg.hist, now > t ? (now - t) / 1000 : 0);
	if (msg.sending && msg.run->o.rate == 0)
		msg_send(p, lg_now_ns());
}

static void msg_up(struct lg_pool *pool, struct lg_conn *c,
		   struct lg_elem *roster)
{
	lg_msgcheck_up(&msg.mc, c);
}

static void msg_tick(uv_timer_t *t)
{
	double rate = msg.run->o.rate;
	uint64_t now = lg_now_ns();
	uint64_t due = (uint64_t)(rate * (now - msg.t_start) / 1e9);
	/* Bounded bursts keep the loop responsive if we fall behind. */
	for (int n = 0; msg.sending && msg.mc.sent < due && n < 10000; n++) {
		uint64_t stamp = msg.t_start +
				 (uint64_t)((msg.mc.sent + 1) * 1e9 / rate);
		msg_send(msg.rr, stamp);
		msg.rr = (msg.rr + 1) % msg.mc.npairs;
	}
}

static void msg_report(void)
{
	struct lg_run *run = msg.run;
	const struct lg_msgcheck *mc = &msg.mc;
	double secs = (msg.t_last > msg.t_start ? msg.t_last : msg.t_stop) -
		      msg.t_start;
	double per_s = secs > 0 ? mc->received / (secs / 1e9) : 0;
	printf("msg: %d pairs, %s: %llu sent, %llu received (%.1f/s), %llu "
	       "lost, %llu duplicated, %llu out of order, %llu errors; "
	       "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", mc->npairs,
	       run->o.rate > 0 ? "fixed rate" : "closed loop",
	       (unsigned long long)mc->sent, (unsigned long long)mc->received,
	       per_s, (unsigned long long)(mc->sent - mc->received),
	       (unsigned long long)mc->dup, (unsigned long long)mc->ooo,
	       (unsigned long long)mc->errors,
	       lg_hist_quantile(&msg.hist, 0.5) / 1000.0,
	       lg_hist_quantile(&msg.hist, 0.99) / 1000.0,
	       msg.hist.max_us / 1000.0);
	lg_result_begin(run);
	lg_pool_print(&msg.pool);
	printf(" pairs=%d mode=%s window=%d rate=%g size=%d", mc->npairs,
	       run->o.rate > 0 ? "rate" : "closed", run->o.window,
	       run->o.rate, run->o.size);
	lg_msgcheck_print(mc, "received");
	printf(" not_online=%llu msgs_per_s=%.1f",
	       (unsigned long long)msg.not_online, per_s);
	lg_hist_print(&msg.hist, "lat");
	/* CPU from the first send to the end of sending, per message
	 * received in that time (the grace period is left out). */
	lg_window_print(&run->window, (double)msg.received_at_stop, "msg");
	lg_result_end(run);
	*msg.status_r = lg_msgcheck_failed(mc) || msg.not_online ||
			run->fails.len;
}

static void msg_all_closed(struct lg_pool *pool)
{
	msg_report();
	lg_msgcheck_free(&msg.mc);
	lg_sbuf_free(&msg.out);
	lg_pool_free(pool);
	close_timer(&msg.tick);
	close_timer(&msg.end);
}

/* After sending stops: done when everything arrived, or after --grace
 * (whatever is missing then is lost). */
static void msg_grace(uv_timer_t *t)
{
	uint64_t waited = lg_now_ns() - msg.t_stop;
	if (msg.mc.received >= msg.mc.sent ||
	    waited >= msg.run->o.grace * 1e9) {
		uv_timer_stop(&msg.end);
		lg_pool_close(&msg.pool);
	}
}

static void msg_end(uv_timer_t *t)
{
	msg.sending = false;
	msg.t_stop = lg_now_ns();
	lg_window_end(&msg.run->window, msg.run->o.server_pid);
	msg.received_at_stop = msg.mc.received;
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
	for (int p = 0; p < msg.mc.npairs; p++)
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
	lg_msgcheck_init(&msg.mc, run, "msg");
	uv_timer_init(run->loop, &msg.tick);
	uv_timer_init(run->loop, &msg.end);
	lg_pool_start(&msg.pool, run, 2 * msg.mc.npairs, LG_WANT_PRESENCE,
		      &msg_ops, NULL);
}
