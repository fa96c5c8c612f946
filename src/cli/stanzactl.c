/*
 * stanzactl.c - the administration tool: account management.
 *
 * Commands are one table of { words, arguments, help, handler } (HAProxy
 * cli_kws, OpenSMTPD smtpctl), so `stanzactl help` is generated from it and
 * no command goes undocumented. stanzactl opens the server's SQLite
 * database directly: WAL mode lets it write while stanzad runs, and works
 * the same when stanzad is stopped. Passwords not given as arguments are
 * read from standard input, without echo on a terminal, so they stay out of
 * `ps` and shell history. `stanzactl dns` runs the server's resolver
 * (ctl_dns.c). It registers the server's list of schemas before
 * opening the store, so it migrates the same tables and `user del` removes
 * all of a user's data with the account (store_user_purge).
 *
 * What needs the running server (status, metrics, kicking sessions, and
 * ending a deleted user's sessions) goes through its control socket
 * (ctl_server.c). `config check` and `cert check` run the server's loading
 * code on the files (ctl_check.c).
 *
 * Exit status: 0 on success, 1 on any error, 3 for `status` when the
 * server is not running (as LSB init scripts and systemctl do).
 */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../auth/scram_creds.h"
#include "../core/arena.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/xmalloc.h"
#include "../mod/module.h"
#include "../store/accounts.h"
#include "../store/shapes.h"
#include "../store/store.h"
#include "../xml/parser.h"
#include "../xmpp/jid.h"
#include "ctl_check.h"
#include "ctl_dns.h"
#include "ctl_server.h"

#define CTL_DEFAULT_CONF "stanzad.yaml"
#define CTL_MAX_WORDS 3

/* What every handler may need; conf and st are opened on first use. */
struct ctl {
	const char *conf_path;
	struct config *conf;
	struct store *st;
	struct arena *arena; /* prepared JID parts */
};

/* An account named on the command line, prepared. */
struct ctl_account {
	const char *user; /* nodeprep'd, in ctl->arena */
	const char *host; /* nameprep'd, in ctl->arena */
};

typedef int ctl_handler_fn(struct ctl *ctl, int argc, char **argv);

struct ctl_cmd {
	const char *words[CTL_MAX_WORDS]; /* NULL-terminated if shorter */
	const char *args;                 /* for usage lines */
	int min_args, max_args;
	const char *help;
	ctl_handler_fn *handler;
};

static const struct ctl_cmd ctl_cmds[];

static void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ctl_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("stanzactl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Loads the configuration and opens the store, once. */
static int ctl_open(struct ctl *ctl)
{
	if (ctl->st != NULL)
		return 0;
	char *error = NULL;
	if (conf_load(ctl->conf_path, &ctl->conf, &error) < 0) {
		ctl_err("%s", error);
		free(error);
		return -1;
	}
	if (store_open(ctl->conf->data_dir, &ctl->st, &error) < 0) {
		ctl_err("%s", error);
		free(error);
		return -1;
	}
	return 0;
}

/* Nameprep's host and checks that the configuration serves it. */
static int ctl_host(struct ctl *ctl, struct str in, const char **host_r)
{
	struct str host;
	const char *error;
	if (jid_nameprep(ctl->arena, in, &host, &error) < 0) {
		ctl_err("bad host '%.*s': %s", STR_FMT(in), error);
		return -1;
	}
	if (conf_find_host(ctl->conf, host.p, host.len) < 0) {
		ctl_err("unknown host %s (not in %s)", host.p, ctl->conf_path);
		return -1;
	}
	*host_r = host.p;
	return 0;
}

/* Parses user@host: a bare JID with a localpart, on a configured host. */
static int ctl_account(struct ctl *ctl, const char *arg,
		       struct ctl_account *acc_r)
{
	struct jid j;
	const char *error;
	if (jid_parse(ctl->arena, str_c(arg), &j, &error) < 0) {
		ctl_err("bad JID '%s': %s", arg, error);
		return -1;
	}
	if (j.node.len == 0 || !jid_is_bare(&j)) {
		ctl_err("bad JID '%s': expected user@host", arg);
		return -1;
	}
	if (ctl_open(ctl) < 0 || ctl_host(ctl, j.domain, &acc_r->host) < 0)
		return -1;
	acc_r->user = j.node.p;
	return 0;
}

/* The terminal as it was, for the signal handler to put back. */
static struct termios ctl_saved_tty;
static volatile sig_atomic_t ctl_tty_changed;

static void ctl_restore_tty_signal(int sig)
{
	if (ctl_tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Turns echo off (on) on the terminal; signals restore it on the way out. */
static void ctl_tty_echo(bool on)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };
	if (on) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_tty);
		ctl_tty_changed = 0;
		for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
			signal(sigs[i], SIG_DFL);
		return;
	}
	if (tcgetattr(STDIN_FILENO, &ctl_saved_tty) < 0)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], ctl_restore_tty_signal);
	struct termios t = ctl_saved_tty;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	ctl_tty_changed = 1;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
}

/* Reads one line from stdin, the newline (and a CR before it) removed.
 * Returns a malloc'ed string, or NULL on a read error. */
static char *ctl_read_line(const char *prompt)
{
	bool tty = isatty(STDIN_FILENO);
	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		ctl_tty_echo(false);
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	int saved = errno;
	if (tty) {
		ctl_tty_echo(true);
		fputc('\n', stderr);
	}
	if (n < 0 && ferror(stdin)) {
		ctl_err("reading the password: %s", strerror(saved));
		free(line);
		return NULL;
	}
	if (n < 0)
		n = 0; /* EOF: the empty password, refused later */
	if (line == NULL)
		line = xcalloc(1, 1);
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	return line;
}

static void ctl_free_password(char *pw)
{
	if (pw != NULL)
		explicit_bzero(pw, strlen(pw));
	free(pw);
}

/* The password argument, or one read from stdin (asked twice on a tty). */
static char *ctl_password(int argc, char **argv, int idx)
{
	if (argc > idx) {
		/* Blank the argument so /proc/PID/cmdline stops showing it
		 * (ps may have seen it already: stdin is the safe way). */
		char *pw = xstrdup(argv[idx]);
		explicit_bzero(argv[idx], strlen(argv[idx]));
		return pw;
	}
	char *pw = ctl_read_line("Password: ");
	if (pw == NULL || !isatty(STDIN_FILENO) || pw[0] == '\0')
		return pw;
	char *again = ctl_read_line("Retype password: ");
	bool same = again != NULL && strcmp(pw, again) == 0;
	ctl_free_password(again);
	if (!same) {
		ctl_err("passwords do not match");
		ctl_free_password(pw);
		return NULL;
	}
	return pw;
}

/* Derives credentials for the password argument or stdin. */
static int ctl_derive(struct ctl *ctl, int argc, char **argv, int idx,
		      struct scram_creds *creds_r)
{
	char *pw = ctl_password(argc, argv, idx);
	if (pw == NULL)
		return -1;
	const char *error = NULL;
	int rc = scram_creds_derive(pw, ctl->conf->scram_iterations, creds_r,
				    &error);
	ctl_free_password(pw);
	if (rc < 0)
		ctl_err("%s", error);
	return rc;
}

/* Returns 0 if the account exists, 1 if not, -1 (reported) on error. */
static int ctl_exists(struct ctl *ctl, const struct ctl_account *a)
{
	struct scram_creds c;
	int rc = accounts_get(ctl->st, a->host, a->user, &c);
	if (rc < 0)
		ctl_err("cannot read the accounts database");
	return rc;
}

static int ctl_user_add(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_account a;
	struct scram_creds c;
	if (ctl_account(ctl, argv[0], &a) < 0)
		return -1;
	/* Ask no password for an account that exists; create() decides. */
	int rc = ctl_exists(ctl, &a);
	if (rc == 0)
		ctl_err("user %s@%s already exists", a.user, a.host);
	if (rc <= 0 || ctl_derive(ctl, argc, argv, 1, &c) < 0)
		return -1;
	rc = accounts_create(ctl->st, a.host, a.user, &c);
	if (rc != 0) {
		ctl_err(rc > 0 ? "user %s@%s already exists"
			       : "cannot create user %s@%s",
			a.user, a.host);
		return -1;
	}
	printf("stanzactl: user %s@%s created\n", a.user, a.host);
	return 0;
}

static int ctl_user_passwd(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_account a;
	struct scram_creds c;
	if (ctl_account(ctl, argv[0], &a) < 0)
		return -1;
	int rc = ctl_exists(ctl, &a);
	if (rc > 0)
		ctl_err("no such user %s@%s", a.user, a.host);
	if (rc != 0 || ctl_derive(ctl, argc, argv, 1, &c) < 0)
		return -1;
	rc = accounts_set(ctl->st, a.host, a.user, &c);
	if (rc != 0) {
		ctl_err(rc > 0 ? "no such user %s@%s"
			       : "cannot change the password of %s@%s",
			a.user, a.host);
		return -1;
	}
	printf("stanzactl: password of %s@%s changed\n", a.user, a.host);
	return 0;
}

static int ctl_conf(struct ctl *ctl);

/*
 * The account is deleted first, then the running server is told, which
 * ends the account's sessions and refuses to bind any session whose login
 * began before it was told (sessions_revoke): a login that read the
 * credentials just before they were deleted cannot bind after the kick.
 * Logins that begin later find no credentials.
 */
static int ctl_user_del(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_account a;
	if (ctl_account(ctl, argv[0], &a) < 0)
		return -1;
	/* All of the user's data goes with the account (XEP-0077 §3.2). */
	int rc = store_user_purge(ctl->st, a.host, a.user);
	if (rc != 0) {
		ctl_err(rc > 0 ? "no such user %s@%s"
			       : "cannot delete user %s@%s",
			a.user, a.host);
		return -1;
	}
	printf("stanzactl: user %s@%s deleted\n", a.user, a.host);
	char req[1200], *body = NULL;
	snprintf(req, sizeof(req), "user-deleted %s@%s", a.user, a.host);
	rc = ctl_server_request(ctl->conf, req, &body);
	if (rc == 0)
		printf("stanzactl: %s", body);
	else if (rc == 1)
		ctl_err("the server did not end the sessions: %s", body);
	else if (rc != CTL_NOT_RUNNING)
		ctl_err("could not tell the server to end the sessions");
	free(body);
	return rc == 0 || rc == CTL_NOT_RUNNING ? 0 : -1;
}

/* A request to the running server; not running is an error here. */
static int ctl_ask(struct ctl *ctl, const char *req, char **body_r)
{
	if (ctl_conf(ctl) < 0)
		return -1;
	int rc = ctl_server_request(ctl->conf, req, body_r);
	if (rc == CTL_NOT_RUNNING)
		ctl_err("stanzad is not running");
	else if (rc == 1)
		ctl_err("%s", *body_r);
	if (rc == 0)
		return 0;
	free(*body_r);
	*body_r = NULL;
	return -1;
}

static int ctl_user_kick(struct ctl *ctl, int argc, char **argv)
{
	char req[1200], *body = NULL;
	if (strlen(argv[0]) > 1000 || strpbrk(argv[0], " \r\n") != NULL) {
		ctl_err("bad JID '%s'", argv[0]);
		return -1;
	}
	snprintf(req, sizeof(req), "kick %s", argv[0]);
	if (ctl_ask(ctl, req, &body) < 0)
		return -1;
	printf("stanzactl: %s: %s", argv[0], body);
	free(body);
	return 0;
}

/* One username per line: the host is the command's argument already. */
static void ctl_print_user(const char *user, void *ud)
{
	(void)ud;
	printf("%s\n", user);
}

static int ctl_user_list(struct ctl *ctl, int argc, char **argv)
{
	const char *host;
	if (ctl_open(ctl) < 0 || ctl_host(ctl, str_c(argv[0]), &host) < 0)
		return -1;
	if (accounts_list(ctl->st, host, ctl_print_user, (void *)host) < 0) {
		ctl_err("cannot read the accounts database");
		return -1;
	}
	return 0;
}

/* roster list: one contact per line, "jid subscription [ask] name". The
 * stored items are XML (mod_roster); this reads their attributes. */
static int ctl_print_roster_item(const char *key, const void *value,
				 size_t len, void *ud)
{
	struct ctl *ctl = ud;
	struct xml_elem *it = xml_parse_elem(ctl->arena, STR(value, len),
					     STR_LIT("jabber:iq:roster"));
	if (it == NULL || str_eq_c(xml_attr_get(it, "in-roster"), "false"))
		return 0;
	struct str sub = xml_attr_get(it, "subscription");
	struct str ask = xml_attr_get(it, "ask");
	struct str name = xml_attr_get(it, "name");
	printf("%s\t%.*s%s%.*s\t%.*s\n", key, STR_FMT(sub),
	       ask.p ? "+ask-" : "", STR_FMT(ask),
	       name.p ? (int)name.len : 0, name.p ? name.p : "");
	return 0;
}

static int ctl_roster_list(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_account acc;
	if (ctl_account(ctl, argv[0], &acc) < 0)
		return -1;
	if (store_map_all(ctl->st, "roster", acc.host, acc.user,
			  ctl_print_roster_item, ctl) < 0) {
		ctl_err("cannot read the roster");
		return -1;
	}
	return 0;
}

/* offline list: one stored message per line: "id time from bytes". */
static int ctl_print_offline(const struct store_item *it, void *ud)
{
	(void)ud;
	time_t t = (time_t)(it->ts_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%" PRId64 "\t%s\t%s\t%zu bytes\n", it->id, when, it->with,
	       it->len);
	return 0;
}

static int ctl_offline_list(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_account acc;
	if (ctl_account(ctl, argv[0], &acc) < 0)
		return -1;
	if (store_archive_list(ctl->st, "offline", acc.host, acc.user, 0,
			       SIZE_MAX, ctl_print_offline, NULL) < 0) {
		ctl_err("cannot read the offline messages");
		return -1;
	}
	return 0;
}

/* The configuration alone (for the resolver: no store). */
static int ctl_conf(struct ctl *ctl)
{
	char *error = NULL;
	if (ctl->conf != NULL)
		return 0;
	if (conf_load(ctl->conf_path, &ctl->conf, &error) == 0)
		return 0;
	ctl_err("%s", error);
	free(error);
	return -1;
}

static int ctl_status(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_conf(ctl) < 0)
		return -1;
	char *body = NULL;
	int rc = ctl_server_request(ctl->conf, "status", &body);
	if (rc == CTL_NOT_RUNNING) {
		printf("stanzad is not running (nothing listens on its control "
		       "socket)\n");
	} else if (rc == 0) {
		printf("stanzad is running\n%s", body);
	} else if (rc == 1) {
		ctl_err("%s", body);
		rc = -1;
	}
	free(body);
	return rc;
}

static int ctl_metrics(struct ctl *ctl, int argc, char **argv)
{
	char *body = NULL;
	if (ctl_ask(ctl, "metrics", &body) < 0)
		return -1;
	fputs(body, stdout);
	free(body);
	return 0;
}

/* config check [--config FILE | -c FILE]: the global -c works too. */
static int ctl_config_check_cmd(struct ctl *ctl, int argc, char **argv)
{
	const char *path = ctl->conf_path;
	if (argc == 2 && (strcmp(argv[0], "--config") == 0 ||
			  strcmp(argv[0], "-c") == 0)) {
		path = argv[1];
	} else if (argc == 1 && strncmp(argv[0], "--config=", 9) == 0) {
		path = argv[0] + 9;
	} else if (argc != 0) {
		ctl_err("usage: stanzactl config check [--config FILE]");
		return -1;
	}
	return ctl_config_check(path, stdout);
}

static int ctl_cert_check_cmd(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_conf(ctl) < 0)
		return -1;
	return ctl_cert_check(ctl->conf, stdout);
}

static int ctl_dns(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_conf(ctl) < 0)
		return -1;
	return ctl_dns_server(ctl->conf, argv[0], stdout);
}

static int ctl_dns_tlsa_cmd(struct ctl *ctl, int argc, char **argv)
{
	char *end;
	unsigned long port = strtoul(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || port == 0 || port > 65535) {
		ctl_err("bad port '%s'", argv[1]);
		return -1;
	}
	if (ctl_conf(ctl) < 0)
		return -1;
	return ctl_dns_tlsa(ctl->conf, argv[0], (uint16_t)port, stdout);
}

static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: stanzactl [-c FILE] COMMAND [ARGUMENTS]\n"
		"       stanzactl --help | --version\n\n"
		"options:\n"
		"  -c, --config FILE  server configuration (default %s)\n"
		"  -h, --help         show this help\n"
		"  -V, --version      show the version\n\n"
		"commands:\n",
		CTL_DEFAULT_CONF);
	for (const struct ctl_cmd *c = ctl_cmds; c->handler != NULL; c++) {
		char line[80] = "";
		for (size_t i = 0; i < CTL_MAX_WORDS && c->words[i]; i++)
			snprintf(line + strlen(line),
				 sizeof(line) - strlen(line), "%s ",
				 c->words[i]);
		snprintf(line + strlen(line), sizeof(line) - strlen(line),
			 "%s", c->args);
		fprintf(out, "  %-28s %s\n", line, c->help);
	}
	fputs("\nA PASSWORD left out is read as one line from standard input "
	      "(not echoed on a\nterminal), so it does not show in ps.\n",
	      out);
}

static int ctl_help(struct ctl *ctl, int argc, char **argv)
{
	ctl_usage(stdout);
	return 0;
}

static const struct ctl_cmd ctl_cmds[] = {
	{ { "user", "add" }, "JID [PASSWORD]", 1, 2,
	  "create an account", ctl_user_add },
	{ { "user", "passwd" }, "JID [PASSWORD]", 1, 2,
	  "set an account's password", ctl_user_passwd },
	{ { "user", "del" }, "JID", 1, 1,
	  "delete an account and all its data", ctl_user_del },
	{ { "user", "kick" }, "JID[/RESOURCE]", 1, 1,
	  "end a session, or all of an account's (running server)",
	  ctl_user_kick },
	{ { "user", "list" }, "HOST", 1, 1,
	  "list the accounts of a host", ctl_user_list },
	{ { "roster", "list" }, "JID", 1, 1,
	  "list an account's contacts: jid, subscription, name",
	  ctl_roster_list },
	{ { "offline", "list" }, "JID", 1, 1,
	  "list an account's offline messages: id, time, sender, size",
	  ctl_offline_list },
	{ { "dns", "tlsa" }, "HOST PORT", 2, 2,
	  "show the TLSA (DANE) records of _PORT._tcp.HOST",
	  ctl_dns_tlsa_cmd },
	{ { "dns" }, "DOMAIN", 1, 1,
	  "show how DOMAIN's servers are found (SRV, DNSSEC)", ctl_dns },
	{ { "status" }, "", 0, 0,
	  "whether stanzad runs; its sessions, connections, load (exit 3: "
	  "not running)", ctl_status },
	{ { "metrics" }, "", 0, 0,
	  "the server's counters in Prometheus text format", ctl_metrics },
	{ { "config", "check" }, "[--config FILE]", 0, 2,
	  "check the configuration as stanzad would; warn about unsafe "
	  "settings", ctl_config_check_cmd },
	{ { "cert", "check" }, "", 0, 0,
	  "check every host's certificate: names, key, chain, expiry",
	  ctl_cert_check_cmd },
	{ { "help" }, "", 0, 0, "show this help", ctl_help },
	{ { NULL }, NULL, 0, 0, NULL, NULL },
};

/* The number of leading words of argv that name c, or 0. */
static int ctl_match(const struct ctl_cmd *c, int argc, char **argv)
{
	int n = 0;
	for (; n < CTL_MAX_WORDS && c->words[n] != NULL; n++)
		if (n >= argc || strcmp(argv[n], c->words[n]) != 0)
			return 0;
	return n;
}

static int ctl_run(struct ctl *ctl, int argc, char **argv)
{
	for (const struct ctl_cmd *c = ctl_cmds; c->handler != NULL; c++) {
		int n = ctl_match(c, argc, argv);
		if (n == 0)
			continue;
		int nargs = argc - n;
		if (nargs < c->min_args || nargs > c->max_args) {
			fputs("usage: stanzactl [-c FILE]", stderr);
			for (int i = 0; i < n; i++)
				fprintf(stderr, " %s", c->words[i]);
			fprintf(stderr, " %s\n", c->args);
			return -1;
		}
		return c->handler(ctl, nargs, argv + n);
	}
	ctl_err("unknown command; try 'stanzactl help'");
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .conf_path = CTL_DEFAULT_CONF };
	int opt;
	/* '+': options end at the command, so its arguments may start
	 * with '-' (a password, say). */
	while ((opt = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			ctl.conf_path = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		case 'V':
			printf("stanzactl %s\n", STANZAD_VERSION);
			return 0;
		default:
			ctl_usage(stderr);
			return 1;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return 1;
	}
	/* Store errors carry their own detail; schema notices are noise. */
	log_set_level(LOG_LEVEL_WARN);
	/* The same tables as the server, whichever of the two opens the
	 * database first. */
	store_register_schemas(module_schemas());
	ctl.arena = arena_new(0);
	int rc = ctl_run(&ctl, argc - optind, argv + optind);
	store_close(ctl.st);
	if (ctl.conf != NULL)
		conf_free(ctl.conf);
	arena_destroy(&ctl.arena);
	return rc < 0 ? 1 : rc;
}
