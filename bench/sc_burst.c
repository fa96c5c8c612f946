/*
 * sc_burst.c - the load generator's pre-encrypted message burst: 1:1
 * messages (RFC 6121 §5) whose client-side cost is paid outside the
 * measured window, so that the server, not the generator, is what a
 * run measures even when both share a few cores (1 shard against 2 on
 * a 2-core machine).
 *
 * Sessions and messages are msg's (msgcheck.c: pair p is session 2p
 * sending to 2p+1's full JID, body "lg:PAIR:SEQ:0[ padding]"). Once all
 * are up: every connection stops decrypting and parsing and keeps what
 * arrives raw (lg_conn_capture), and each sender's --messages stanzas
 * are encrypted into one buffer (one TLS record each, as msg sends
 * them). The window: t0 just before the first write, every buffer
 * written at once; it ends at the last byte received on any connection,
 * once every write has completed and nothing arrived for --quiet-ms.
 * Then (not timed) the kept bytes go through TLS and the parser in
 * order and every message is accounted as msg does.
 *
 * Invariant: nothing is written on a connection between its sealed
 * records and their raw write (the records carry TLS sequence numbers),
 * so the burst starts from a timer, never from inside a read (whose
 * answers are held back until the read ends), and captured input is
 * only processed after the window.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

/* Check for the window's end this often (a few dozen wakeups/s). */
#define BURST_CHECK_MS 10

struct burst_out {
	struct lg_sbuf buf;   /* ciphertext of the pair's messages */
	uv_write_t req;
};

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	struct lg_msgcheck mc;
	struct burst_out *out;      /* per pair */
	uv_timer_t timer;
	uint64_t not_online, write_errors, writes_pending;
	uint64_t bytes_out, bytes_in;
	uint64_t t_prep, t0, t_written, t_end, t_checked;
	uint64_t quiet_from;        /* lg_now_ns since nothing happened */
	double quiet_cpu;           /* the server's CPU s then; < 0 unknown */
	bool window_ended;
} burst;

static void burst_up(struct lg_pool *pool, struct lg_conn *c,
		     struct lg_elem *roster)
{
	lg_msgcheck_up(&burst.mc, c);
}

static void burst_stanza(struct lg_pool *pool, struct lg_conn *c,
			 struct lg_elem *st)
{
	uint64_t stamp;
	lg_msgcheck_stanza(&burst.mc, c, st, &stamp);
}

/* Encrypts pair p's messages into its buffer; false if the sender is
 * not online (or its TLS failed: the connection failure says so). */
static bool burst_seal_pair(int p, size_t per_msg)
{
	struct lg_conn *s = burst.pool.conns[2 * p];
	int m = burst.run->o.messages;
	if (!s || !burst.mc.pairs[p].to_jid)
		return false;
	struct lg_sbuf *out = &burst.out[p].buf;
	/* Sized once: most of the burst's memory is these buffers. */
	out->cap = (size_t)m * per_msg + 1;
	out->p = lg_xmalloc(out->cap);
	out->p[0] = '\0';
	struct lg_sbuf st = { 0 };
	for (int i = 0; i < m; i++) {
		st.len = 0;
		lg_msgcheck_build(&burst.mc, p, 0, &st);
		if (!lg_conn_seal(s, st.p, st.len, out))
			break;
	}
	lg_sbuf_free(&st);
	return true;
}

/* An upper bound of a message stanza's size before the JIDs are known:
 * a server-made resource is taken as up to 40 bytes, the numbers as up
 * to 24. */
static size_t burst_stanza_size(const struct lg_run *run)
{
	size_t jid = strlen(run->users[run->nusers - 1].bare) + 40;
	return strlen("<message type='chat' to=''><body>lg:</body></message>") +
	       jid + 24 + strlen(burst.mc.padding);
}

static void burst_written(uv_write_t *req, int status)
{
	struct burst_out *o = req->data;
	if (status < 0)
		burst.write_errors++;
	lg_sbuf_free(&o->buf);
	if (--burst.writes_pending == 0)
		burst.t_written = lg_now_ns();
}

static void burst_close_all(void)
{
	uv_timer_stop(&burst.timer);
	lg_pool_close(&burst.pool);
}

/* After the window: the kept bytes through TLS and the parser. */
static void burst_check_all(void)
{
	uint64_t t = lg_now_ns();
	for (int i = 0; i < burst.pool.count; i++) {
		struct lg_conn *c = burst.pool.conns[i];
		if (c)
			lg_conn_replay(c);
	}
	burst.t_checked = lg_now_ns() - t;
	burst_close_all();
}

/* The latest arrival on any connection still up (dropped ones end the
 * run as failures anyway), the bytes kept so far and those written but
 * not yet read by the server. */
static uint64_t burst_last_arrival(uint64_t *bytes_r, uint64_t *unsent_r)
{
	uint64_t last = 0, bytes = 0, unsent = 0;
	for (int i = 0; i < burst.pool.count; i++) {
		struct lg_conn *c = burst.pool.conns[i];
		if (!c)
			continue;
		bytes += c->cap_bytes;
		if (c->cap_last > last)
			last = c->cap_last;
		if (i % 2 == 0)
			unsent += lg_conn_unsent(c);
	}
	*bytes_r = bytes;
	*unsent_r = unsent;
	return last;
}

static void burst_quiet_restart(uint64_t now)
{
	int pid = burst.run->o.server_pid;
	burst.quiet_from = now;
	burst.quiet_cpu = pid ? lg_proc_cpu_s(pid) : -1;
}

/* The window ends at the last byte received, once the server has had
 * everything and has been done for --quiet-ms: every write completed and
 * read by the server, nothing received since, and with --server-pid the
 * server (nearly) idle meanwhile. Silence alone is not enough: stanzad,
 * for one, reads every ready connection before it flushes the output of
 * a loop iteration, so under a burst it can work for a second or more
 * between two deliveries. */
static void burst_tick(uv_timer_t *t)
{
	struct lg_run *run = burst.run;
	uint64_t now = lg_now_ns(), bytes, unsent;
	uint64_t last = burst_last_arrival(&bytes, &unsent);
	if (burst.writes_pending || unsent || last > burst.quiet_from) {
		burst_quiet_restart(now);
		return;
	}
	double quiet_s = run->o.quiet_ms / 1e3;
	if (now - burst.quiet_from < quiet_s * 1e9)
		return;
	if (burst.quiet_cpu >= 0) {
		double cpu = lg_proc_cpu_s(run->o.server_pid);
		if (cpu >= 0 && cpu - burst.quiet_cpu > 0.1 * quiet_s) {
			burst_quiet_restart(now);
			return;
		}
	}
	/* The CPU readings include the quiet tail, where the server has
	 * nothing left to do; the window itself ends at the last byte. */
	lg_window_end(&run->window, run->o.server_pid);
	burst.t_end = last > burst.t0 ? last : burst.t_written;
	run->window.t1 = burst.t_end;
	burst.window_ended = true;
	burst.bytes_in = bytes;
	uv_timer_stop(&burst.timer);
	burst_check_all();
}

/* From a timer, not from the read that brought the last session up. */
static void burst_start(uv_timer_t *t)
{
	struct lg_run *run = burst.run;
	struct lg_msgcheck *mc = &burst.mc;
	burst.t_prep = lg_now_ns();
	for (int i = 0; i < burst.pool.count; i++)
		if (burst.pool.conns[i])
			lg_conn_capture(burst.pool.conns[i],
					(size_t)run->o.chunk_kb * 1024);
	/* A message's ciphertext: the stanza and 22 bytes of TLS 1.3
	 * record (header, content type, tag). */
	size_t per_msg = burst_stanza_size(run) + 22;
	for (int p = 0; p < mc->npairs; p++)
		if (!burst_seal_pair(p, per_msg))
			burst.not_online += (uint64_t)run->o.messages;
	burst.t_prep = lg_now_ns() - burst.t_prep;
	lg_window_begin(&run->window, run->o.server_pid);
	burst.t0 = lg_now_ns();
	for (int p = 0; p < mc->npairs; p++) {
		struct burst_out *o = &burst.out[p];
		struct lg_conn *s = burst.pool.conns[2 * p];
		if (!o->buf.len || !s)
			continue;
		o->req.data = o;
		burst.bytes_out += o->buf.len;
		if (lg_conn_write_raw(s, &o->req, o->buf.p, o->buf.len,
				      burst_written) < 0) {
			burst.write_errors++;
			lg_sbuf_free(&o->buf);
			continue;
		}
		burst.writes_pending++;
	}
	if (!burst.writes_pending)
		burst.t_written = lg_now_ns();
	burst_quiet_restart(lg_now_ns());
	uv_timer_start(&burst.timer, burst_tick, BURST_CHECK_MS,
		       BURST_CHECK_MS);
}

static void burst_all_up(struct lg_pool *pool)
{
	uv_timer_start(&burst.timer, burst_start, 0, 0);
}

static void burst_report(void)
{
	struct lg_run *run = burst.run;
	const struct lg_msgcheck *mc = &burst.mc;
	double secs = burst.t_end > burst.t0 ?
		      (burst.t_end - burst.t0) / 1e9 : 0;
	double per_s = secs > 0 ? mc->received / secs : 0;
	printf("burst: %d pairs x %d messages: %llu sent, %llu delivered "
	       "(%.1f/s over %.3f s), %llu lost, %llu duplicated, %llu out "
	       "of order, %llu errors; %.1f MB out, %.1f MB in; sealing "
	       "%.2f s, checking %.2f s\n", mc->npairs, run->o.messages,
	       (unsigned long long)mc->sent,
	       (unsigned long long)mc->received, per_s, secs,
	       (unsigned long long)(mc->sent - mc->received),
	       (unsigned long long)mc->dup, (unsigned long long)mc->ooo,
	       (unsigned long long)mc->errors, burst.bytes_out / 1e6,
	       burst.bytes_in / 1e6, burst.t_prep / 1e9,
	       burst.t_checked / 1e9);
	lg_result_begin(run);
	lg_pool_print(&burst.pool);
	printf(" pairs=%d messages=%d size=%d chunk_kb=%d quiet_ms=%d",
	       mc->npairs, run->o.messages, run->o.size, run->o.chunk_kb,
	       run->o.quiet_ms);
	lg_msgcheck_print(mc, "delivered");
	printf(" not_online=%llu write_errors=%llu msgs_per_s=%.1f "
	       "bytes_out=%llu bytes_in=%llu prep_s=%.3f check_s=%.3f",
	       (unsigned long long)burst.not_online,
	       (unsigned long long)burst.write_errors, per_s,
	       (unsigned long long)burst.bytes_out,
	       (unsigned long long)burst.bytes_in, burst.t_prep / 1e9,
	       burst.t_checked / 1e9);
	/* Every message delivered arrived in the window: it ends at the
	 * last byte. */
	lg_window_print(&run->window, (double)mc->received, "msg");
	bool failed = lg_msgcheck_failed(mc) || burst.not_online ||
		      burst.write_errors || run->fails.len ||
		      !burst.window_ended;
	printf(" status=%s", failed ? "failed" : "ok");
	lg_result_end(run);
	*burst.status_r = failed;
}

static void burst_all_closed(struct lg_pool *pool)
{
	burst_report();
	for (int p = 0; p < burst.mc.npairs; p++)
		lg_sbuf_free(&burst.out[p].buf);
	free(burst.out);
	lg_msgcheck_free(&burst.mc);
	lg_pool_free(pool);
	if (!uv_is_closing((uv_handle_t *)&burst.timer))
		uv_close((uv_handle_t *)&burst.timer, NULL);
}

static const struct lg_pool_ops burst_ops = {
	.up = burst_up,
	.stanza = burst_stanza,
	.all_up = burst_all_up,
	.all_closed = burst_all_closed,
};

/* Refuses a burst whose buffers would not fit --max-mem-mb: per message
 * the stanza leaves as ciphertext (its size plus 22 bytes) and arrives
 * with a from attribute (the sender's full JID) and the same overhead,
 * so about twice the stanza plus 100 bytes. */
static void burst_check_memory(const struct lg_run *run)
{
	size_t stanza = burst_stanza_size(run);
	double need = (double)burst.mc.npairs * run->o.messages *
		      (2.0 * stanza + 100);
	double have = run->o.max_mem_mb * 1048576.0;
	if (need > have) {
		fprintf(stderr, "loadgen: burst: %d pairs x %d messages need "
			"about %.0f MiB of buffers (2 x %zu + 100 bytes a "
			"message), over --max-mem-mb %d\n", burst.mc.npairs,
			run->o.messages, need / 1048576.0, stanza,
			run->o.max_mem_mb);
		exit(2);
	}
}

void lg_scenario_burst(struct lg_run *run, int *status_r)
{
	burst.run = run;
	burst.status_r = status_r;
	lg_msgcheck_init(&burst.mc, run, "burst");
	burst_check_memory(run);
	burst.out = lg_xcalloc((size_t)burst.mc.npairs, sizeof(*burst.out));
	uv_timer_init(run->loop, &burst.timer);
	lg_pool_start(&burst.pool, run, 2 * burst.mc.npairs,
		      LG_WANT_PRESENCE, &burst_ops, NULL);
}
