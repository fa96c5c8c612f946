/*
 * sc_basic.c - the load generator's connection-level scenarios:
 * `register` (XEP-0077 in-band registration of PREFIX1..PREFIXN; an
 * existing account, <conflict/>, counts as ok), `login` (full logins per
 * second: STARTTLS, SCRAM, bind, roster get, initial presence, clean
 * close) and `idle` (N sessions held open, with the server's RSS/PSS per
 * session from /proc/PID/smaps_rollup). One run per process, so the
 * scenario state is file-static; timers are closed before reporting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen-private.h"

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

/* ---- register ---- */

static struct {
	struct lg_run *run;
	int *status_r;
	int next, inflight, done;
	bool *answered;
	uint64_t created, existed, no_answer;
	struct lg_counts errors;
	uint64_t t_start;
} reg;

static void reg_launch(void);

static void reg_registered(struct lg_conn *c, const char *cond)
{
	reg.answered[c->user] = true;
	if (!cond)
		reg.created++;
	else if (strcmp(cond, "conflict") == 0)
		reg.existed++;
	else
		lg_counts_add(&reg.errors, cond, 1);
}

static void reg_report(void)
{
	struct lg_run *run = reg.run;
	uint64_t failed = lg_counts_total(&reg.errors) + reg.no_answer;
	double secs = (lg_now_ns() - reg.t_start) / 1e9;
	printf("register: %d accounts in %.2f s: %llu created, %llu existed, "
	       "%llu failed\n", run->nusers, secs,
	       (unsigned long long)reg.created,
	       (unsigned long long)reg.existed, (unsigned long long)failed);
	for (size_t i = 0; i < reg.errors.len; i++)
		printf("  error %-30s %llu\n", reg.errors.items[i].name,
		       (unsigned long long)reg.errors.items[i].n);
	lg_result_begin(run);
	printf(" accounts=%d ok=%llu created=%llu existed=%llu failed=%llu "
	       "no_answer=%llu", run->nusers,
	       (unsigned long long)(reg.created + reg.existed),
	       (unsigned long long)reg.created,
	       (unsigned long long)reg.existed, (unsigned long long)failed,
	       (unsigned long long)reg.no_answer);
	lg_counts_print(&reg.errors, "err_");
	printf(" per_s=%.1f", secs > 0 ? run->nusers / secs : 0);
	lg_result_end(run);
	*reg.status_r = failed || run->fails.len ? 1 : 0;
	lg_counts_free(&reg.errors);
	free(reg.answered);
}

static void reg_closed(struct lg_conn *c)
{
	if (!reg.answered[c->user])
		reg.no_answer++;
	reg.inflight--;
	reg.done++;
	reg_launch();
	if (reg.done == reg.run->nusers)
		reg_report();
}

static const struct lg_conn_ops reg_ops = {
	.registered = reg_registered,
	.closed = reg_closed,
};

static void reg_launch(void)
{
	while (reg.next < reg.run->nusers &&
	       reg.inflight < reg.run->o.concurrency) {
		reg.inflight++;
		lg_conn_open(reg.run, reg.next, LG_DO_REGISTER, &reg_ops, NULL,
			     reg.next);
		reg.next++;
	}
}

void lg_scenario_register(struct lg_run *run, int *status_r)
{
	reg.run = run;
	reg.status_r = status_r;
	reg.answered = lg_xcalloc((size_t)run->nusers, sizeof(bool));
	reg.t_start = lg_now_ns();
	reg_launch();
}

/* ---- login ---- */

/* One thread's logins (--threads: each thread has its own loop, its
 * share of --concurrency and --rate, and the accounts t, t+n, t+2n, ...
 * so that a SCRAM cache entry is only touched by its thread); summed up
 * by lg_login_report once every thread's loop has ended. */
struct login_state {
	struct lg_run *run;
	uv_timer_t tick, end;
	bool launching;
	int inflight, concurrency, share;
	uint64_t limit;          /* logins to start; 0: until the end timer */
	uint64_t next;
	double rate;
	uint64_t started, ok, failed, close_failed;
	uint64_t t_start, t_done;
	struct lg_hist hist;
};

static void login_launch(struct login_state *L);

static void login_online(struct lg_conn *c, struct lg_elem *roster)
{
	struct login_state *L = c->run->sc;
	lg_hist_add(&L->hist, (c->t_online - c->t_start) / 1000);
	L->ok++;
	lg_conn_close(c);
}

static void login_maybe_done(struct login_state *L)
{
	if (!L->launching && L->inflight == 0 && !L->t_done)
		L->t_done = lg_now_ns();
}

static void login_closed(struct lg_conn *c)
{
	struct login_state *L = c->run->sc;
	L->inflight--;
	if (!c->t_online)
		L->failed++;
	else if (c->fail)
		L->close_failed++;
	if (L->launching && L->rate == 0)
		login_launch(L);
	login_maybe_done(L);
}

static const struct lg_conn_ops login_ops = {
	.online = login_online,
	.closed = login_closed,
};

static void login_start_one(struct login_state *L)
{
	struct lg_run *run = L->run;
	int user = run->thread +
		   run->nthreads * (int)(L->next++ % (uint64_t)L->share);
	L->inflight++;
	L->started++;
	lg_conn_open(run, user, LG_WANT_ROSTER | LG_WANT_PRESENCE, &login_ops,
		     NULL, user);
}

/* Closed loop: keep the thread's share of --concurrency logins in
 * flight. With --rate: start logins on schedule, as many as are due,
 * within that share. */
static void login_launch(struct login_state *L)
{
	uint64_t due = UINT64_MAX;
	if (L->rate > 0)
		due = (uint64_t)(L->rate * (lg_now_ns() - L->t_start) / 1e9);
	if (L->limit != 0 && due > L->limit)
		due = L->limit;
	while (L->launching && L->inflight < L->concurrency &&
	       L->started < due)
		login_start_one(L);
	if (L->limit != 0 && L->started == L->limit) {
		L->launching = false; /* the warm-up's last ones are out */
		login_maybe_done(L);
	}
}

static void login_tick(uv_timer_t *t)
{
	login_launch(t->data);
}

static void login_end(uv_timer_t *t)
{
	struct login_state *L = t->data;
	L->launching = false;
	close_timer(&L->tick);
	close_timer(&L->end);
	login_maybe_done(L);
}

/* This thread's share of n: n / threads, the remainder to the first. */
static int thread_share(const struct lg_run *run, int n)
{
	return n / run->nthreads + (run->thread < n % run->nthreads);
}

void lg_scenario_login(struct lg_run *run, int *status_r)
{
	struct login_state *L = lg_xcalloc(1, sizeof(*L));
	run->sc = L;
	L->run = run;
	L->launching = true;
	L->concurrency = thread_share(run, run->o.concurrency);
	L->share = thread_share(run, run->nusers);
	L->rate = run->o.rate / run->nthreads;
	L->t_start = lg_now_ns();
	if (run->warmup) {
		/* Each of the thread's accounts once, closed loop, no timers:
		 * the loop ends with the last close. */
		L->rate = 0;
		L->limit = (uint64_t)L->share;
		login_launch(L);
		return;
	}
	uv_timer_init(run->loop, &L->tick);
	uv_timer_init(run->loop, &L->end);
	L->tick.data = L->end.data = L;
	uv_timer_start(&L->end, login_end, (uint64_t)(run->o.duration * 1e3),
		       0);
	if (L->rate > 0)
		uv_timer_start(&L->tick, login_tick, 1, 1);
	login_launch(L);
}

uint64_t lg_login_forget(struct lg_run *run)
{
	struct login_state *L = run->sc;
	uint64_t failed = L->failed + L->close_failed;
	free(L);
	run->sc = NULL;
	return failed;
}

/* Sums the threads' counts and histograms; the rate is over the span from
 * the first thread's start to the last one's end. */
void lg_login_report(struct lg_run *base, struct lg_run *runs, int n,
		     uint64_t warmup_failed, int *status_r)
{
	struct login_state sum = { 0 };
	uint64_t t_start = UINT64_MAX, t_done = 0;
	for (int t = 0; t < n; t++) {
		struct login_state *L = runs[t].sc;
		sum.started += L->started;
		sum.ok += L->ok;
		sum.failed += L->failed;
		sum.close_failed += L->close_failed;
		sum.hist.n += L->hist.n;
		sum.hist.sum_us += L->hist.sum_us;
		if (L->hist.max_us > sum.hist.max_us)
			sum.hist.max_us = L->hist.max_us;
		for (size_t b = 0; b < LG_HIST_BUCKETS; b++)
			sum.hist.bucket[b] += L->hist.bucket[b];
		if (L->t_start < t_start)
			t_start = L->t_start;
		uint64_t done = L->t_done ? L->t_done : lg_now_ns();
		if (done > t_done)
			t_done = done;
	}
	double secs = t_done > t_start ? (t_done - t_start) / 1e9 : 0;
	double per_s = secs > 0 ? sum.ok / secs : 0;
	printf("login: %llu logins in %.2f s (%.1f/s), %llu failed, %d "
	       "thread%s; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       (unsigned long long)sum.ok, secs, per_s,
	       (unsigned long long)sum.failed, n, n == 1 ? "" : "s",
	       lg_hist_quantile(&sum.hist, 0.5) / 1000.0,
	       lg_hist_quantile(&sum.hist, 0.99) / 1000.0,
	       sum.hist.max_us / 1000.0);
	lg_result_begin(base);
	printf(" started=%llu ok=%llu failed=%llu close_failed=%llu "
	       "logins_per_s=%.1f concurrency=%d rate=%g threads=%d",
	       (unsigned long long)sum.started, (unsigned long long)sum.ok,
	       (unsigned long long)sum.failed,
	       (unsigned long long)sum.close_failed, per_s,
	       base->o.concurrency, base->o.rate, n);
	/* Each thread's share, so that a stalled thread shows. */
	for (int t = 0; t < n; t++)
		printf("%s%llu", t ? "," : " ok_per_thread=",
		       (unsigned long long)((struct login_state *)runs[t].sc)->ok);
	if (base->o.warmup)
		printf(" warmup_failed=%llu", (unsigned long long)warmup_failed);
	lg_hist_print(&sum.hist, "lat");
	lg_window_print(&base->window, (double)sum.ok, "login");
	lg_result_end(base);
	*status_r = sum.failed || sum.close_failed || warmup_failed ||
		    !sum.ok ? 1 : 0;
	for (int t = 0; t < n; t++)
		free(runs[t].sc);
}

/* ---- idle ---- */

struct mem_sample {
	long rss_kb, pss_kb;   /* -1 when unknown */
};

/* Reads Rss and Pss of `pid` from smaps_rollup (Linux >= 4.14). */
static struct mem_sample read_smaps(int pid)
{
	struct mem_sample m = { -1, -1 };
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return m;
	}
	while (fgets(line, sizeof(line), f)) {
		long v;
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			m.rss_kb = v;
		else if (sscanf(line, "Pss: %ld kB", &v) == 1)
			m.pss_kb = v;
	}
	fclose(f);
	return m;
}

static struct {
	struct lg_run *run;
	int *status_r;
	struct lg_pool pool;
	uv_timer_t hold;
	struct mem_sample before, ready;
	int ready_n;
} idl;

static void idle_hold_done(uv_timer_t *t)
{
	close_timer(&idl.hold);
	lg_pool_close(&idl.pool);
}

static void idle_all_up(struct lg_pool *p)
{
	idl.ready_n = p->up - p->dropped;
	lg_window_end(&idl.run->window, idl.run->o.server_pid);
	if (idl.run->o.server_pid)
		idl.ready = read_smaps(idl.run->o.server_pid);
	/* The caller's script measures the server now: tell it at once. */
	printf("READY n=%d\n", idl.ready_n);
	fflush(stdout);
	uv_timer_start(&idl.hold, idle_hold_done,
		       (uint64_t)(idl.run->o.hold * 1e3), 0);
}

static void idle_print_mem(void)
{
	if (!idl.run->o.server_pid)
		return;
	long drss = idl.ready.rss_kb - idl.before.rss_kb;
	long dpss = idl.ready.pss_kb - idl.before.pss_kb;
	double n = idl.ready_n > 0 ? idl.ready_n : 1;
	printf(" rss_before_kb=%ld rss_ready_kb=%ld pss_before_kb=%ld "
	       "pss_ready_kb=%ld rss_per_session_kb=%.2f "
	       "pss_per_session_kb=%.2f", idl.before.rss_kb, idl.ready.rss_kb,
	       idl.before.pss_kb, idl.ready.pss_kb, drss / n, dpss / n);
}

static void idle_all_closed(struct lg_pool *p)
{
	struct lg_run *run = idl.run;
	printf("idle: %d of %d sessions up in %.2f s, %d failed to log in, "
	       "%d dropped while held\n", p->up, p->count,
	       (p->t_all_up - p->t_start) / 1e9, p->failed, p->dropped);
	if (run->o.server_pid && idl.ready_n > 0)
		printf("  server pid %d: %+ld kB RSS, %+ld kB PSS for %d "
		       "sessions\n", run->o.server_pid,
		       idl.ready.rss_kb - idl.before.rss_kb,
		       idl.ready.pss_kb - idl.before.pss_kb, idl.ready_n);
	lg_result_begin(run);
	lg_pool_print(p);
	printf(" ready=%d hold_s=%g", idl.ready_n, run->o.hold);
	idle_print_mem();
	/* CPU from the first connection to READY, per session set up. */
	lg_window_print(&run->window, (double)p->up, "session");
	lg_result_end(run);
	*idl.status_r = p->failed || p->dropped || run->fails.len ? 1 : 0;
	lg_pool_free(p);
}

static const struct lg_pool_ops idle_ops = {
	.all_up = idle_all_up,
	.all_closed = idle_all_closed,
};

void lg_scenario_idle(struct lg_run *run, int *status_r)
{
	idl.run = run;
	idl.status_r = status_r;
	uv_timer_init(run->loop, &idl.hold);
	if (run->o.server_pid)
		idl.before = read_smaps(run->o.server_pid);
	lg_window_begin(&run->window, run->o.server_pid);
	lg_pool_start(&idl.pool, run, run->o.sessions,
		      LG_WANT_ROSTER | LG_WANT_PRESENCE, &idle_ops, NULL);
}
