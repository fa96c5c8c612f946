/*
 * stanzad.c - the server's main(): load the configuration, open the store,
 * set up TLS, bind the listeners, run the shards until SIGTERM or SIGINT,
 * then take everything down in reverse order.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "admin/control.h"
#include "auth/sasl.h"
#include "core/bug.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/server.h"
#include "core/shard.h"
#include "mod/module.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/resolve.h"
#include "net/tls.h"
#include "router/route.h"
#include "router/services.h"
#include "router/sessions.h"
#include "store/store.h"
#include "stream/c2s.h"
#include "stream/component.h"
#include "stream/s2s.h"


static void usage(FILE *f)
{
	fprintf(f, "usage: stanzad -c FILE\n"
		   "       stanzad --version\n"
		   "       stanzad --config-reference\n");
}

/* New connections go to the stream of their listener's type. */
static void accept_conn(struct shard *s, int fd, const struct sockaddr *peer,
			const struct listener_conf *lc)
{
	switch (lc->type) {
	case LISTENER_C2S:
	case LISTENER_C2S_TLS:
		c2s_accept(s, fd, peer, lc);
		return;
	case LISTENER_S2S:
	case LISTENER_S2S_TLS:
		s2s_accept(s, fd, peer, lc);
		return;
	case LISTENER_COMPONENT:
		component_accept(s, fd, peer, lc);
		return;
	}
}

static void shard_start(struct shard *s)
{
	listeners_start(s, server.conf, accept_conn);
}

static void kick_conn(struct str key, void *value, void *ud)
{
	(void)key, (void)ud;
	struct conn *c = value;
	c->ops->kick(c, STREAM_ERR_SYSTEM_SHUTDOWN, "server shutting down");
}

static void shard_stop(struct shard *s)
{
	listeners_stop(s);
	s2s_shard_stop(s);
	hmap_foreach(&s->conns, kick_conn, NULL);
	resolve_shard_stop(s);
}

/* Reads first: what their done callbacks write leaves in this flush. */
static void shard_tick(struct shard *s)
{
	store_reads_run();
	conn_flush_dirty(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	log_info("received signal %d, shutting down", signum);
	uv_stop(h->loop);
}

static unsigned shard_count(const struct config *conf)
{
	unsigned n = conf->shards ? conf->shards : uv_available_parallelism();
	if (n == 0)
		n = 1;
	return n > SHARDS_MAX ? SHARDS_MAX : n;
}

static void run(void)
{
	uv_loop_t *loop = uv_default_loop();
	uv_signal_t sigterm, sigint;
	uv_signal_init(loop, &sigterm);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	server.shards = shards_start(server.nshards, shard_start, shard_stop,
				     shard_tick);
	log_info("stanzad %s ready: %zu host(s), %u shard(s)", STANZAD_VERSION,
		 server.conf->nhosts, server.nshards);
	uv_run(loop, UV_RUN_DEFAULT);
	shards_stop(server.shards, server.nshards);
	control_close();
	server.shards = NULL;
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
}

static int start(const char *path)
{
	struct config *conf;
	char *err = NULL;
	if (conf_load(path, &conf, &err) < 0) {
		fprintf(stderr, "stanzad: %s\n", err);
		free(err);
		return 1;
	}
	log_set_level(conf->log_level);
	server.conf = conf;
	server.nshards = shard_count(conf);
	server.started = time(NULL);
	const char *why;
	int rc = 1;
	bool modules_done = false;
	if (sasl_init(&why) < 0) {
		log_errx("%s", why);
		goto out_conf;
	}
	store_register_schemas(module_schemas());
	if (store_open(conf->data_dir, &server.store, &err) < 0)
		goto out_sasl;
	store_set_busy_timeout(server.store, conf->store.busy_timeout_ms);
	/* Before any port is taken: a second server on this data_dir stops
	 * here (its socket answers), a crashed one's socket is replaced. */
	if (control_open(uv_default_loop(), conf, &err) < 0)
		goto out_store;
	/* The subdomain services first: their domains are local domains for
	 * server-to-server, each with a TLS context (indexed by domain). */
	if (module_services_start(&why) < 0) {
		log_errx("%s", why);
		goto out_modules;
	}
	for (size_t i = 0; i < services_count(); i++)
		conf_add_service(conf, service_domain(i, NULL));
	if (modules_start(server.store, &err) < 0)
		goto out_modules;
	if (resolve_check_config(conf, &err) < 0)
		goto out_modules;
	if (tls_init(conf, &err) < 0)
		goto out_modules;
	if (listeners_bind(conf, server.nshards, &err) < 0)
		goto out_tls;
	conn_ip_init();
	sessions_init(server.nshards);
	c2s_init();
	component_init();
	if (s2s_init(&why) < 0) {
		log_errx("%s", why);
	} else {
		route_set_remote(s2s_route);
		run();
		s2s_fini();
		rc = 0;
	}
	component_fini();
	modules_fini();
	modules_done = true;
	store_keyed_fini();
	sessions_fini();
	conn_ip_fini();
	log_info("stopped");
	listeners_free();
out_tls:
	tls_fini();
out_modules:
	if (!modules_done)
		modules_fini();
	control_close(); /* at once if run() did not */
out_store:
	store_close(server.store);
out_sasl:
	sasl_fini();
out_conf:
	if (err != NULL) {
		log_errx("%s", err);
		free(err);
	}
	conf_free(conf);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "config-reference", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL;
	int ch;
	tls_mem_init(); /* before anything of OpenSSL */
	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'V':
			printf("stanzad %s\n", STANZAD_VERSION);
			return 0;
		case 'R':
			conf_write_reference(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Past RLIMIT_FSIZE the kernel would kill us with SIGXFSZ; ignored,
	 * the write fails with EFBIG instead and the store reports a full
	 * disk (the client gets an error) while the server goes on. */
	signal(SIGXFSZ, SIG_IGN);
	/* Store jobs are the only work on libuv's thread pool, and each
	 * takes the one SQLite connection's mutex: a second pool thread
	 * could only wait for it, and its wake-ups and that waiting cost
	 * logins CPU (docs/internals/performance.md, "How the benchmark's
	 * processes share two cores, and one pool thread").
	 * libuv reads this when the pool first starts; an administrator's
	 * own setting is kept. */
	setenv("UV_THREADPOOL_SIZE", "1", 0);
	return start(path);
}
