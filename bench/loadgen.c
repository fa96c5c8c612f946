/*
 * loadgen.c - the XMPP load generator's command line and run set-up:
 * options, the account table, source addresses, TLS context, the global
 * timeout, and the RESULT line. Scenarios live in sc_*.c, the client in
 * xconn.c. It speaks only standard XMPP (RFC 6120/6121, XEP-0077) so the
 * same run can be pointed at stanzad, Prosody or ejabberd. Invariant:
 * every run ends, at the latest when --timeout fires (exit status 2).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>

#include "loadgen-private.h"

static const char usage_text[] =
	"usage: loadgen SCENARIO [options]\n"
	"scenarios: register login idle roster msg burst fanout muc mam\n"
	"  --host ADDR        server address (127.0.0.1)\n"
	"  --port N           c2s STARTTLS port (5222)\n"
	"  --domain D         XMPP domain (localhost)\n"
	"  --users PREFIX     accounts PREFIX1..PREFIXN (bench)\n"
	"  --count N          number of accounts (10)\n"
	"  --password PW      password, or a pattern with one %d (secret)\n"
	"  --duration S       length of the measured phase (10)\n"
	"  --rate R           login: logins/s; msg: messages/s in total;\n"
	"                     roster: subscribes/s; fanout: toggles/s;\n"
	"                     muc: room messages/s (10)\n"
	"  --concurrency C    handshakes (or logins) in flight (50)\n"
	"  --sessions N       idle: sessions to open (count)\n"
	"  --pairs N          msg, burst: sender/receiver pairs (count/2)\n"
	"  --window W         msg: messages in flight per pair (1);\n"
	"                     mam: per contact while filling\n"
	"  --size B           msg, burst: body size in bytes (minimum used)\n"
	"  --messages M       burst: messages per pair (1000)\n"
	"  --quiet-ms T       burst: the window ends after T ms without\n"
	"                     input, at the last byte (1000)\n"
	"  --max-mem-mb N     burst: refuse bursts needing more buffers (4096)\n"
	"  --chunk-kb K       burst: size of the chunks input is kept in (1024)\n"
	"  --contacts K       roster/fanout: contacts per user (10)\n"
	"  --togglers M       fanout: users changing presence (count/10)\n"
	"  --hold S           idle: seconds to hold after READY (0)\n"
	"  --server-pid PID   the server's CPU time over the measured phase;\n"
	"                     idle: also its RSS/PSS\n"
	"  --threads N        login: N threads, each with its own loop and\n"
	"                     share of accounts, concurrency and rate (1)\n"
	"  --warmup           login: log every account in once before the\n"
	"                     measured phase (not counted)\n"
	"  --fill N           mam: messages to archive first (100000)\n"
	"  --queries R        mam: rounds of the four page queries (200)\n"
	"  --page P           mam: items per page (50)\n"
	"  --grace S          wait for late messages/broadcasts (5)\n"
	"  --settle S         fanout: quiet time before toggling (1)\n"
	"  --timeout S        abort the whole run after S seconds\n"
	"  --tls-verify on|off  check the server certificate (on)\n"
	"  --ca-file FILE     CA certificates for --tls-verify on\n"
	"  --src-range A-B|none  source addresses (127.0.1.1-127.0.255.254)\n"
	"  --mechanism M      force SCRAM-SHA-256 or SCRAM-SHA-1 (default:\n"
	"                     SCRAM-SHA-256 if offered, else SCRAM-SHA-1)\n";

static void usage_exit(const char *msg)
{
	if (msg)
		fprintf(stderr, "loadgen: %s\n", msg);
	fputs(usage_text, stderr);
	exit(2);
}

/* ---- options ---- */

enum {
	OPT_HOST = 256, OPT_PORT, OPT_DOMAIN, OPT_USERS, OPT_COUNT,
	OPT_PASSWORD, OPT_DURATION, OPT_RATE, OPT_CONCURRENCY, OPT_SESSIONS,
	OPT_PAIRS, OPT_WINDOW, OPT_SIZE, OPT_CONTACTS, OPT_TOGGLERS,
	OPT_HOLD, OPT_SERVER_PID, OPT_GRACE, OPT_SETTLE, OPT_TIMEOUT,
	OPT_TLS_VERIFY, OPT_CA_FILE, OPT_SRC_RANGE, OPT_MECHANISM, OPT_THREADS,
	OPT_FILL, OPT_QUERIES, OPT_PAGE, OPT_MESSAGES, OPT_QUIET_MS,
	OPT_MAX_MEM_MB, OPT_CHUNK_KB, OPT_WARMUP, OPT_HELP,
};

static const struct option long_opts[] = {
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "domain", required_argument, NULL, OPT_DOMAIN },
	{ "users", required_argument, NULL, OPT_USERS },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "password", required_argument, NULL, OPT_PASSWORD },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "sessions", required_argument, NULL, OPT_SESSIONS },
	{ "pairs", required_argument, NULL, OPT_PAIRS },
	{ "window", required_argument, NULL, OPT_WINDOW },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "contacts", required_argument, NULL, OPT_CONTACTS },
	{ "togglers", required_argument, NULL, OPT_TOGGLERS },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "server-pid", required_argument, NULL, OPT_SERVER_PID },
	{ "grace", required_argument, NULL, OPT_GRACE },
	{ "settle", required_argument, NULL, OPT_SETTLE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "tls-verify", required_argument, NULL, OPT_TLS_VERIFY },
	{ "ca-file", required_argument, NULL, OPT_CA_FILE },
	{ "src-range", required_argument, NULL, OPT_SRC_RANGE },
	{ "mechanism", required_argument, NULL, OPT_MECHANISM },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "fill", required_argument, NULL, OPT_FILL },
	{ "queries", required_argument, NULL, OPT_QUERIES },
	{ "page", required_argument, NULL, OPT_PAGE },
	{ "messages", required_argument, NULL, OPT_MESSAGES },
	{ "quiet-ms", required_argument, NULL, OPT_QUIET_MS },
	{ "max-mem-mb", required_argument, NULL, OPT_MAX_MEM_MB },
	{ "chunk-kb", required_argument, NULL, OPT_CHUNK_KB },
	{ "warmup", no_argument, NULL, OPT_WARMUP },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int parse_int(const char *s, int lo, int hi, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "loadgen: %s: want an integer in %d..%d, "
			"got '%s'\n", what, lo, hi, s);
		exit(2);
	}
	return (int)v;
}

static double parse_num(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(v >= 0) || v > 1e9) {
		fprintf(stderr, "loadgen: %s: want a number >= 0, got '%s'\n",
			what, s);
		exit(2);
	}
	return v;
}

/* "A-B" with IPv4 addresses in 127.0.0.0/8, or "none". */
static void parse_src_range(struct lg_opts *o, const char *s)
{
	if (strcmp(s, "none") == 0) {
		o->src_lo = o->src_hi = 0;
		return;
	}
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", s);
	char *dash = strchr(buf, '-');
	struct in_addr lo, hi;
	if (!dash)
		usage_exit("--src-range: want A-B or none");
	*dash = '\0';
	if (inet_pton(AF_INET, buf, &lo) != 1 ||
	    inet_pton(AF_INET, dash + 1, &hi) != 1)
		usage_exit("--src-range: bad address");
	o->src_lo = ntohl(lo.s_addr);
	o->src_hi = ntohl(hi.s_addr);
	if ((o->src_lo >> 24) != 127 || (o->src_hi >> 24) != 127 ||
	    o->src_lo > o->src_hi)
		usage_exit("--src-range: want an ascending range in 127/8");
}

static void set_opt(struct lg_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case OPT_HOST: o->host = arg; break;
	case OPT_PORT: o->port = parse_int(arg, 1, 65535, "--port"); break;
	case OPT_DOMAIN: o->domain = arg; break;
	case OPT_USERS: o->prefix = arg; break;
	case OPT_COUNT: o->count = parse_int(arg, 1, 10000000, "--count");
		break;
	case OPT_PASSWORD: o->password = arg; break;
	case OPT_DURATION: o->duration = parse_num(arg, "--duration"); break;
	case OPT_RATE: o->rate = parse_num(arg, "--rate"); break;
	case OPT_CONCURRENCY:
		o->concurrency = parse_int(arg, 1, 1000000, "--concurrency");
		break;
	case OPT_SESSIONS:
		o->sessions = parse_int(arg, 1, 10000000, "--sessions");
		break;
	case OPT_PAIRS: o->pairs = parse_int(arg, 1, 5000000, "--pairs");
		break;
	case OPT_WINDOW: o->window = parse_int(arg, 1, 100000, "--window");
		break;
	case OPT_SIZE: o->size = parse_int(arg, 0, 1 << 20, "--size"); break;
	case OPT_CONTACTS:
		o->contacts = parse_int(arg, 1, 100000, "--contacts");
		break;
	case OPT_TOGGLERS:
		o->togglers = parse_int(arg, 1, 10000000, "--togglers");
		break;
	case OPT_HOLD: o->hold = parse_num(arg, "--hold"); break;
	case OPT_SERVER_PID:
		o->server_pid = parse_int(arg, 1, 1 << 30, "--server-pid");
		break;
	case OPT_GRACE: o->grace = parse_num(arg, "--grace"); break;
	case OPT_SETTLE: o->settle = parse_num(arg, "--settle"); break;
	case OPT_TIMEOUT: o->timeout = parse_num(arg, "--timeout"); break;
	case OPT_TLS_VERIFY:
		if (strcmp(arg, "on") && strcmp(arg, "off"))
			usage_exit("--tls-verify: on or off");
		o->tls_verify = strcmp(arg, "on") == 0;
		break;
	case OPT_CA_FILE: o->ca_file = arg; break;
	case OPT_SRC_RANGE: parse_src_range(o, arg); break;
	case OPT_MECHANISM:
		if (strcmp(arg, "SCRAM-SHA-256") && strcmp(arg, "SCRAM-SHA-1"))
			usage_exit("--mechanism: SCRAM-SHA-256 or SCRAM-SHA-1");
		o->mechanism = arg;
		break;
	case OPT_THREADS:
		o->threads = parse_int(arg, 1, 64, "--threads");
		break;
	case OPT_FILL: o->fill = parse_int(arg, 1, 10000000, "--fill"); break;
	case OPT_QUERIES:
		o->queries = parse_int(arg, 1, 1000000, "--queries");
		break;
	case OPT_PAGE: o->page = parse_int(arg, 1, 1000, "--page"); break;
	case OPT_MESSAGES:
		o->messages = parse_int(arg, 1, 100000000, "--messages");
		break;
	case OPT_QUIET_MS:
		o->quiet_ms = parse_int(arg, 1, 600000, "--quiet-ms");
		break;
	case OPT_MAX_MEM_MB:
		o->max_mem_mb = parse_int(arg, 1, 1 << 20, "--max-mem-mb");
		break;
	case OPT_CHUNK_KB:
		o->chunk_kb = parse_int(arg, 1, 1 << 20, "--chunk-kb");
		break;
	case OPT_WARMUP: o->warmup = true; break;
	case OPT_HELP: fputs(usage_text, stdout); exit(0);
	default: usage_exit(NULL);
	}
}

static void parse_opts(struct lg_opts *o, int argc, char **argv)
{
	*o = (struct lg_opts){
		.host = "127.0.0.1", .port = 5222, .domain = "localhost",
		.prefix = "bench", .password = "secret", .count = 10,
		.duration = 10, .concurrency = 50, .window = 1,
		.contacts = 10, .grace = 5, .settle = 1, .tls_verify = true,
		.threads = 1,
		.fill = 100000, .queries = 200, .page = 50,
		.messages = 1000, .quiet_ms = 1000, .max_mem_mb = 4096,
		.chunk_kb = 1024,
		.src_lo = 0x7f000101, .src_hi = 0x7f00fffe,
	};
	if (argc < 2 || argv[1][0] == '-')
		usage_exit(argc >= 2 && !strcmp(argv[1], "--help") ? NULL :
			   "no scenario given");
	o->scenario = argv[1];
	int opt;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1)
		set_opt(o, opt, optarg);
	if (optind != argc)
		usage_exit("unexpected argument");
	if (!o->sessions)
		o->sessions = o->count;
	if (!o->timeout)
		o->timeout = o->duration + o->hold + o->grace + o->settle + 120;
	if (o->threads > 1 && strcmp(o->scenario, "login") != 0)
		usage_exit("--threads: only the login scenario has threads");
	if (o->warmup && strcmp(o->scenario, "login") != 0)
		usage_exit("--warmup: only the login scenario warms up");
	if (o->threads > o->count || o->threads > o->concurrency)
		usage_exit("--threads: at most --count and --concurrency");
}

/* ---- accounts ---- */

/* A password pattern may hold one %d (the account number), nothing else
 * printf would interpret. */
static bool password_pattern_ok(const char *p)
{
	const char *pct = strchr(p, '%');
	return !pct || (pct[1] == 'd' && !strchr(pct + 2, '%'));
}

static void make_users(struct lg_run *run)
{
	const struct lg_opts *o = &run->o;
	if (!password_pattern_ok(o->password))
		usage_exit("--password: at most one %d and no other %");
	run->nusers = o->count;
	run->users = lg_xcalloc((size_t)o->count, sizeof(*run->users));
	for (int i = 0; i < o->count; i++) {
		struct lg_user *u = &run->users[i];
		u->name = lg_xasprintf("%s%d", o->prefix, i + 1);
		u->bare = lg_xasprintf("%s@%s", u->name, o->domain);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		u->password = lg_xasprintf(o->password, i + 1);
#pragma GCC diagnostic pop
		u->cache.hash = -1;
	}
}

static void free_users(struct lg_run *run)
{
	for (int i = 0; i < run->nusers; i++) {
		free(run->users[i].name);
		free(run->users[i].bare);
		free(run->users[i].password);
		lg_scram_cache_free(&run->users[i].cache);
	}
	free(run->users);
}

int lg_user_index(const struct lg_run *run, const char *jid)
{
	size_t plen = strlen(run->o.prefix);
	if (!jid || strncmp(jid, run->o.prefix, plen) != 0)
		return -1;
	const char *p = jid + plen;
	if (*p < '1' || *p > '9')
		return -1; /* no leading zeros: one name per account */
	long v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > run->nusers)
			return -1;
	}
	return *p == '@' ? (int)v - 1 : -1;
}

/* ---- network set-up ---- */

bool lg_next_source(struct lg_run *run, struct sockaddr_in *sa)
{
	const struct lg_opts *o = &run->o;
	if (!o->src_lo || run->dst.ss_family != AF_INET)
		return false;
	/* Skip .0 and .255 (valid on lo, but confusing in logs) when the
	 * range is wide enough to have other addresses. */
	bool skip = o->src_hi - o->src_lo >= 255;
	uint32_t a;
	do {
		if (run->src_next < o->src_lo || run->src_next > o->src_hi)
			run->src_next = o->src_lo;
		a = run->src_next++;
	} while (skip && ((a & 0xff) == 0 || (a & 0xff) == 255));
	*sa = (struct sockaddr_in){ .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(a) };
	return true;
}

static void resolve(struct lg_run *run)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", run->o.port);
	int r = getaddrinfo(run->o.host, port, &hints, &ai);
	if (r != 0) {
		fprintf(stderr, "loadgen: %s: %s\n", run->o.host,
			gai_strerror(r));
		exit(2);
	}
	memcpy(&run->dst, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("loadgen: setrlimit(RLIMIT_NOFILE)");
	}
}

static SSL_CTX *make_ssl_ctx(const struct lg_opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fputs("loadgen: cannot create a TLS context\n", stderr);
		exit(2);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (!o->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int ok = o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file,
							    NULL) :
			      SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		fprintf(stderr, "loadgen: cannot load CA certificates%s%s\n",
			o->ca_file ? " from " : "",
			o->ca_file ? o->ca_file : "");
		exit(2);
	}
	return ctx;
}

/* ---- results ---- */

void lg_result_begin(const struct lg_run *run)
{
	printf("RESULT scenario=%s", run->o.scenario);
}

void lg_result_end(const struct lg_run *run)
{
	printf(" conn_failures=%llu",
	       (unsigned long long)lg_counts_total(&run->fails));
	lg_counts_print(&run->fails, "fail_");
	printf(" elapsed_s=%.3f\n", (lg_now_ns() - run->t0) / 1e9);
	fflush(stdout);
}

static void print_failures(const struct lg_run *run)
{
	for (size_t i = 0; i < run->fails.len; i++)
		printf("  connection failure %-40s %llu\n",
		       run->fails.items[i].name,
		       (unsigned long long)run->fails.items[i].n);
}

/* The hard bound on a run: report what is known and leave at once. */
static void on_global_timeout(uv_timer_t *t)
{
	static atomic_flag fired = ATOMIC_FLAG_INIT;
	struct lg_run *run = t->data;
	if (atomic_flag_test_and_set(&fired))
		return; /* another thread's timer: it is leaving already */
	fflush(stdout);
	fprintf(stderr, "loadgen: timeout: scenario %s did not finish within "
		"%.1f s (%u connections still open)\n", run->o.scenario,
		run->o.timeout, run->live);
	print_failures(run);
	printf("RESULT scenario=%s status=timeout live=%u\n", run->o.scenario,
	       run->live);
	fflush(stdout);
	_exit(2); /* skip teardown of a loop still full of connections */
}

static const struct {
	const char *name;
	void (*start)(struct lg_run *run, int *status_r);
} scenarios[] = {
	{ "register", lg_scenario_register },
	{ "login", lg_scenario_login },
	{ "idle", lg_scenario_idle },
	{ "roster", lg_scenario_roster },
	{ "msg", lg_scenario_msg },
	{ "burst", lg_scenario_burst },
	{ "fanout", lg_scenario_fanout },
	{ "muc", lg_scenario_muc },
	{ "mam", lg_scenario_mam },
};

/* Runs `start` on run->loop until the loop has nothing left, with the
 * global timeout armed (unreferenced: the scenario keeps the loop
 * alive), then closes the loop. */
static void run_loop(struct lg_run *run,
		     void (*start)(struct lg_run *run, int *status_r),
		     int *status_r)
{
	uv_timer_t timeout;
	uv_timer_init(run->loop, &timeout);
	timeout.data = run;
	uv_timer_start(&timeout, on_global_timeout,
		       (uint64_t)(run->o.timeout * 1000), 0);
	uv_unref((uv_handle_t *)&timeout);
	start(run, status_r);
	uv_run(run->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&timeout, NULL);
	uv_run(run->loop, UV_RUN_DEFAULT);
	uv_loop_close(run->loop);
}

static void *login_thread(void *arg)
{
	struct lg_run *run = arg;
	int unused;
	run_loop(run, lg_scenario_login, &unused);
	return NULL;
}

/* Runs login_thread on each of runs[0..n-1] (runs[0] on this thread) on
 * fresh loops, and waits for all. */
static void login_threads(struct lg_run *runs, uv_loop_t *loops, int n)
{
	pthread_t *tids = lg_xcalloc((size_t)n, sizeof(*tids));
	for (int t = 0; t < n; t++) {
		runs[t].loop = &loops[t];
		if (uv_loop_init(runs[t].loop) != 0) {
			fputs("loadgen: cannot create an event loop\n", stderr);
			exit(2);
		}
	}
	for (int t = 1; t < n; t++) {
		if (pthread_create(&tids[t], NULL, login_thread, &runs[t])) {
			fputs("loadgen: cannot start a thread\n", stderr);
			exit(2);
		}
	}
	login_thread(&runs[0]);
	for (int t = 1; t < n; t++)
		pthread_join(tids[t], NULL);
	free(tids);
}

/* --warmup: every thread logs each of its accounts in once, so that the
 * measured phase has no first logins in it: the generator's PBKDF2 per
 * account (its SCRAM cache, scram.c) and whatever a server does only at
 * an account's first login. Returns the logins that failed. */
static uint64_t login_warmup(struct lg_run *runs, uv_loop_t *loops, int n)
{
	for (int t = 0; t < n; t++)
		runs[t].warmup = true;
	login_threads(runs, loops, n);
	uint64_t failed = 0;
	for (int t = 0; t < n; t++) {
		failed += lg_login_forget(&runs[t]);
		runs[t].warmup = false;
		runs[t].live = 0;
	}
	return failed;
}

/* The login scenario on --threads loops, one per thread (the first on
 * this thread), each a copy of `base` with its own loop and counters;
 * then one RESULT for all. The source addresses of thread t start at
 * its part of --src-range, so threads do not walk the same addresses in
 * step. */
static void run_login(struct lg_run *base, int *status_r)
{
	int n = base->o.threads;
	struct lg_run *runs = lg_xcalloc((size_t)n, sizeof(*runs));
	uv_loop_t *loops = lg_xcalloc((size_t)n, sizeof(*loops));
	uint32_t span = base->o.src_hi - base->o.src_lo + 1;
	for (int t = 0; t < n; t++) {
		struct lg_run *r = &runs[t];
		*r = *base;
		r->fails = (struct lg_counts){ 0 };
		r->thread = t;
		r->nthreads = n;
		r->src_next = base->o.src_lo + (uint32_t)((uint64_t)span * t / n);
	}
	uint64_t warm_failed = 0;
	if (base->o.warmup)
		warm_failed = login_warmup(runs, loops, n);
	lg_window_begin(&base->window, base->o.server_pid);
	login_threads(runs, loops, n);
	lg_window_end(&base->window, base->o.server_pid);
	for (int t = 0; t < n; t++) {
		for (size_t i = 0; i < runs[t].fails.len; i++)
			lg_counts_add(&base->fails, runs[t].fails.items[i].name,
				      runs[t].fails.items[i].n);
		lg_counts_free(&runs[t].fails);
	}
	lg_login_report(base, runs, n, warm_failed, status_r);
	free(loops);
	free(runs);
}

static void run_scenario(struct lg_run *run, int *status_r)
{
	if (strcmp(run->o.scenario, "login") == 0) {
		run_login(run, status_r);
		return;
	}
	for (size_t i = 0; i < LG_ARRAY_SIZE(scenarios); i++) {
		if (strcmp(scenarios[i].name, run->o.scenario) == 0) {
			run->loop = uv_default_loop();
			run_loop(run, scenarios[i].start, status_r);
			return;
		}
	}
	usage_exit("unknown scenario");
}

int main(int argc, char **argv)
{
	static struct lg_run run;
	parse_opts(&run.o, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	resolve(&run);
	make_users(&run);
	lg_scram_init();
	lg_pubkey_fast_decode();
	run.ssl_ctx = make_ssl_ctx(&run.o);
	run.nthreads = 1;
	run.t0 = lg_now_ns();
	int status = 1;
	run_scenario(&run, &status);
	print_failures(&run);
	SSL_CTX_free(run.ssl_ctx);
	free_users(&run);
	lg_counts_free(&run.fails);
	return status;
}
