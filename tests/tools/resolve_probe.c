/*
 * resolve_probe.c - drives src/net/resolve.c through the lifecycles that
 * `stanzactl dns` cannot show: cancelling, many requests at once, and a
 * shard stopping with requests pending. Run by
 * tests/integration/test_dns.py (also under ASan: nothing may call back
 * into freed memory or leak).
 *
 *   resolve_probe CONFIG cancel DOMAIN    three requests; the second is
 *       cancelled at once, the first or third from the callback of the
 *       other: exactly one callback runs
 *   resolve_probe CONFIG many N DOMAIN    N requests at once, all answered
 *   resolve_probe CONFIG shutdown DOMAIN  a server and a TLSA request,
 *       then the shard stops after 300 ms: both end with ESHUTDOWN, and
 *       a request made after the stop too
 *
 * Prints one line per callback ("cb NAME STATUS") and "ok" at the end;
 * exits 1 on any unexpected callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/server.h"
#include "core/shard.h"
#include "core/xmalloc.h"
#include "net/resolve.h"

static struct shard *shard;
static struct resolve_req *reqs[3];
static int calls[3];
static int failures;
static int answered, expected;

static void expect(int cond, const char *what)
{
	if (!cond) {
		printf("FAIL %s\n", what);
		failures++;
	}
}

static void on_cancel_cb(void *arg, const struct resolve_result *r)
{
	int i = (int)(intptr_t)arg;
	calls[i]++;
	printf("cb %d %s\n", i, resolve_strerror(r->status));
	/* Its own request is gone now; the other one still running is
	 * cancelled from here (the first and third race). */
	resolve_cancel(reqs[i == 0 ? 2 : 0]);
	uv_stop(&shard->loop);
}

static void on_many_cb(void *arg, const struct resolve_result *r)
{
	expect(r->status == RESOLVE_OK && r->ntargets > 0, "many: ok");
	if (++answered == expected)
		uv_stop(&shard->loop);
}

static void on_shutdown_cb(void *arg, const struct resolve_result *r)
{
	printf("cb %s %s\n", (const char *)arg, resolve_strerror(r->status));
	expect(r->status == RESOLVE_ESHUTDOWN, "shutdown: ESHUTDOWN");
	answered++;
}

static void on_shutdown_tlsa(void *arg, const struct resolve_tlsa_result *r)
{
	printf("cb %s %s\n", (const char *)arg, resolve_strerror(r->status));
	expect(r->status == RESOLVE_ESHUTDOWN, "shutdown tlsa: ESHUTDOWN");
	answered++;
}

static void stop_now(uv_timer_t *t)
{
	/* What the shard's stop hook does. */
	shard->stopped_hook_ran = true;
	resolve_shard_stop(shard);
	resolve_server(shard, "late.example", on_shutdown_cb, "late");
	uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: resolve_probe CONFIG cancel|many N|"
			"shutdown DOMAIN\n");
		return 2;
	}
	struct config *conf;
	char *err;
	if (conf_load(argv[1], &conf, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return 2;
	}
	server.conf = conf;
	shard = xcalloc(1, sizeof(*shard));
	uv_loop_init(&shard->loop);
	shard->loop.data = shard;
	shard_self = shard;
	const char *mode = argv[2];
	uv_timer_t stopper;
	if (strcmp(mode, "cancel") == 0) {
		for (int i = 0; i < 3; i++)
			reqs[i] = resolve_server(shard, argv[3], on_cancel_cb,
						 (void *)(intptr_t)i);
		resolve_cancel(reqs[1]);
		uv_run(&shard->loop, UV_RUN_DEFAULT);
		expect(calls[0] + calls[2] == 1 && calls[1] == 0,
		       "cancel: only one callback ran");
	} else if (strcmp(mode, "many") == 0 && argc == 5) {
		expected = atoi(argv[3]);
		for (int i = 0; i < expected; i++)
			resolve_server(shard, argv[4], on_many_cb, NULL);
		uv_run(&shard->loop, UV_RUN_DEFAULT);
		expect(answered == expected, "many: all answered");
	} else if (strcmp(mode, "shutdown") == 0) {
		expected = 3;
		resolve_server(shard, argv[3], on_shutdown_cb, "server");
		resolve_tlsa(shard, argv[3], 5269, on_shutdown_tlsa, "tlsa");
		uv_timer_init(&shard->loop, &stopper);
		uv_timer_start(&stopper, stop_now, 300, 0);
	} else {
		fprintf(stderr, "resolve_probe: unknown mode %s\n", mode);
		return 2;
	}
	if (!shard->stopped_hook_ran)
		resolve_shard_stop(shard);
	/* Runs until every handle is closed: the loop must end by itself. */
	uv_run(&shard->loop, UV_RUN_DEFAULT);
	if (strcmp(mode, "shutdown") == 0)
		expect(answered == expected, "shutdown: every callback ran");
	expect(uv_loop_close(&shard->loop) == 0, "loop closed cleanly");
	free(shard);
	conf_free(conf);
	printf("%s\n", failures ? "failed" : "ok");
	return failures ? 1 : 0;
}
