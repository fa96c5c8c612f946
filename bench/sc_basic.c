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

static struct {
	struct lg_run *run;
	int *status_r;
	uv_timer_t tick, end;
	bool launching;
	int inflight, next_user;
	uint64_t started, ok, failed, close_failed;
	uint64_t t_start;
	struct lg_hist hist;
} lgn;

static void login_launch(void);

static void login_online(struct lg_conn *c, struct lg_elem *roster)
{
	lg_hist_add(&lgn.hist, (c->t_online - c->t_start) / 1000);
	lgn.ok++;
	lg_conn_close(c);
}

static void login_report(void)
{
	struct lg_run *run = lgn.run;
	double secs = (lg_now_ns() - lgn.t_start) / 1e9;
	double per_s = secs > 0 ? lgn.ok / secs : 0;
	printf("login: %llu logins in %.2f s (%.1f/s), %llu failed; latency "
	       "p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       (unsigned long long)lgn.ok, secs, per_s,
	       (unsigned long long)lgn.failed,
	       lg_hist_quantile(&lgn.hist, 0.5) / 1000.0,
	       lg_hist_quantile(&lgn.hist, 0.99) / 1000.0,
	       lgn.hist.max_us / 1000.0);
	lg_result_begin(run);
	printf(" started=%llu ok=%llu failed=%llu close_failed=%llu "
	       "logins_per_s=%.1f concurrency=%d rate=%g",
	       (unsigned long long)lgn.started, (unsigned long long)lgn.ok,
	       (unsigned long long)lgn.failed,
	       (unsigned long long)lgn.close_failed, per_s,
	       run->o.concurrency, run->o.rate);
	lg_hist_print(&lgn.hist, "lat");
	lg_result_end(run);
	*lgn.status_r = lgn.failed || lgn.close_failed || !lgn.ok ? 1 : 0;
}

static void login_closed(struct lg_conn *c)
{
	lgn.inflight--;
	if (!c->t_online)
		lgn.failed++;
	else if (c->fail)
		lgn.close_failed++;
	if (lgn.launching && lgn.run->o.rate == 0)
		login_launch();
	if (!lgn.launching && lgn.inflight == 0)
		login_report();
}

static const struct lg_conn_ops login_ops = {
	.online = login_online,
	.closed = login_closed,
};

static void login_start_one(void)
{
	struct lg_run *run = lgn.run;
	int user = lgn.next_user++ % run->nusers;
	lgn.inflight++;
	lgn.started++;
	lg_conn_open(run, user, LG_WANT_ROSTER | LG_WANT_PRESENCE, &login_ops,
		     NULL, user);
}

/* Closed loop: keep --concurrency logins in flight. With --rate: start
 * logins on schedule, as many as are due, within --concurrency. */
static void login_launch(void)
{
	struct lg_run *run = lgn.run;
	double rate = run->o.rate;
	uint64_t due = UINT64_MAX;
	if (rate > 0)
		due = (uint64_t)(rate * (lg_now_ns() - lgn.t_start) / 1e9);
	while (lgn.launching && lgn.inflight < run->o.concurrency &&
	       lgn.started < due)
		login_start_one();
}

static void login_tick(uv_timer_t *t)
{
	login_launch();
}

static void login_end(uv_timer_t *t)
{
	lgn.launching = false;
	close_timer(&lgn.tick);
	close_timer(&lgn.end);
	if (lgn.inflight == 0)
		login_report();
}

void lg_scenario_login(struct lg_run *run, int *status_r)
{
	lgn.run = run;
	lgn.status_r = status_r;
	lgn.launching = true;
	lgn.t_start = lg_now_ns();
	uv_timer_init(run->loop, &lgn.tick);
	uv_timer_init(run->loop, &lgn.end);
	uv_timer_start(&lgn.end, login_end, (uint64_t)(run->o.duration * 1e3),
		       0);
	if (run->o.rate > 0)
		uv_timer_start(&lgn.tick, login_tick, 1, 1);
	login_launch();
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
	lg_pool_start(&idl.pool, run, run->o.sessions,
		      LG_WANT_ROSTER | LG_WANT_PRESENCE, &idle_ops, NULL);
}
