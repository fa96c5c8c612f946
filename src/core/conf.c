/*
 * conf.c - the YAML configuration loader (libyaml document API); see
 * conf.h, docs/config.md and stanzad.example.yml.
 *
 * One typed option table, opts[], drives parsing, defaults, bounds and the
 * Markdown reference (conf_write_reference). Every problem is an error
 * "file:line: message" with the line of the offending node; nothing is
 * guessed. A failed load frees everything it allocated (conf_free on the
 * partial struct config, whose counts always cover what was allocated).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../xmpp/jid.h"
#include "arena.h"
#include "bug.h"
#include "conf.h"
#include "xmalloc.h"

/* A configuration file is small; this only bounds a mistaken path. */
#define CONF_FILE_MAX (1024 * 1024)
#define KIB 1024ull
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define SEC 1000ull
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

enum opt_type {
	OPT_STRING,
	OPT_PATH,     /* a string; relative to the config file's directory */
	OPT_BOOL,
	OPT_UINT,
	OPT_SIZE,     /* bytes, with a unit: 256KiB */
	OPT_DURATION, /* milliseconds, with a unit: 30s */
	OPT_ENUM,
	OPT_LIST,     /* a sequence, each entry parsed by opt->item */
	OPT_SECTION,  /* a mapping whose keys have this key as scope */
};

struct conf_ctx {
	const char *name;   /* the file name in messages */
	const char *dir;    /* relative paths are joined to it; NULL: as is */
	yaml_document_t *doc;
	struct config *conf;
	char *error;        /* the first error, malloc'ed */
};

/*
 * One configuration key. scope is the full key of the enclosing mapping:
 * "" for the top level, "limits", "hosts[]" for the entries of the hosts
 * list. Sections share the base struct of their scope; list entries get
 * a base of their own from opt->item. offset and size locate the field.
 */
struct opt {
	const char *scope;
	const char *name;
	enum opt_type type;
	size_t offset, size;
	const char *def;       /* the default in file syntax; NULL: none */
	bool required;
	uint64_t min, max;     /* numbers; for lists, min is the entry count */
	const char *const *names; /* OPT_ENUM: value i is names[i] */
	size_t nnames;
	int (*item)(struct conf_ctx *c, yaml_node_t *n); /* OPT_LIST */
	/* Runs after the value is stored; validates or normalises it. */
	int (*check)(struct conf_ctx *c, void *base, unsigned line);
	const char *doc;
};

#define FIELD(type, member) \
	.offset = offsetof(type, member), .size = sizeof(((type *)0)->member)
#define CONF(member) FIELD(struct config, member)
#define HOST(member) FIELD(struct host_conf, member)
#define LISTENER(member) FIELD(struct listener_conf, member)
#define COMPONENT(member) FIELD(struct component_conf, member)
#define NAMES(a) .names = (a), .nnames = ARRAY_SIZE(a)

static const char *const log_level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const char *const listener_type_names[] = {
	[LISTENER_C2S] = "c2s",
	[LISTENER_C2S_TLS] = "c2s_tls",
	[LISTENER_COMPONENT] = "component",
	[LISTENER_S2S] = "s2s",
	[LISTENER_S2S_TLS] = "s2s_tls",
};

static int hosts_item(struct conf_ctx *c, yaml_node_t *n);
static int listeners_item(struct conf_ctx *c, yaml_node_t *n);
static int upstream_item(struct conf_ctx *c, yaml_node_t *n);
static int components_item(struct conf_ctx *c, yaml_node_t *n);
static int check_component_domain(struct conf_ctx *c, void *base,
				  unsigned line);
static int check_host_name(struct conf_ctx *c, void *base, unsigned line);
static int check_pubsub_subdomain(struct conf_ctx *c, void *base,
				  unsigned line);
static int check_muc_subdomain(struct conf_ctx *c, void *base,
			       unsigned line);
static int check_tls(struct conf_ctx *c, void *base, unsigned line);
static int check_address(struct conf_ctx *c, void *base, unsigned line);

static const struct opt opts[] = {
	{ "", "hosts", OPT_LIST, .required = true, .min = 1,
	  .item = hosts_item,
	  .doc = "The domains served; the first is the default host." },
	{ "", "data_dir", OPT_PATH, CONF(data_dir), .def = "data",
	  .doc = "Directory of the database and generated certificates." },
	{ "", "control_socket", OPT_PATH, CONF(control_socket),
	  .doc = "Unix socket of `stanzactl status`, `metrics` and `user "
		 "kick` (mode 0600); none: `stanzad.ctl` in `data_dir`." },
	{ "", "listeners", OPT_LIST, .required = true, .min = 1,
	  .item = listeners_item,
	  .doc = "Sockets to accept client and component connections on." },
	{ "", "components", OPT_LIST, .item = components_item,
	  .doc = "External components (XEP-0114): the domains they serve "
		 "and their secrets." },
	{ "", "log_level", OPT_ENUM, CONF(log_level), .def = "info",
	  NAMES(log_level_names), .doc = "Least severe level logged." },
	{ "", "shards", OPT_UINT, CONF(shards), .def = "0", .max = 64,
	  .doc = "Worker threads; 0 means one per CPU core." },
	{ "", "scram_iterations", OPT_UINT, CONF(scram_iterations),
	  .def = "10000", .min = 4096, .max = 1000000,
	  .doc = "PBKDF2 iterations for newly set passwords (SCRAM)." },
	{ "", "registration", OPT_BOOL, CONF(registration), .def = "false",
	  .doc = "Allow in-band account registration (XEP-0077)." },
	{ "", "limits", OPT_SECTION,
	  .doc = "Resource limits; see below." },
	{ "limits", "max_stanza_size", OPT_SIZE, CONF(limits.max_stanza_size),
	  .def = "256KiB", .min = KIB, .max = 16 * MIB,
	  .doc = "Largest stanza accepted from a client." },
	{ "limits", "max_depth", OPT_UINT, CONF(limits.max_depth),
	  .def = "32", .min = 4, .max = 256,
	  .doc = "Deepest element nesting in a stanza." },
	{ "limits", "max_attrs", OPT_UINT, CONF(limits.max_attrs),
	  .def = "64", .min = 4, .max = 1024,
	  .doc = "Most attributes on one element." },
	{ "limits", "auth_timeout", OPT_DURATION, CONF(limits.auth_timeout_ms),
	  .def = "30s", .min = SEC, .max = HOUR,
	  .doc = "Time a connection may stay unauthenticated." },
	{ "limits", "max_conns_per_ip", OPT_UINT,
	  CONF(limits.max_conns_per_ip), .def = "32", .min = 1,
	  .max = 100000, .doc = "Concurrent connections from one address." },
	{ "limits", "max_sasl_attempts", OPT_UINT,
	  CONF(limits.max_sasl_attempts), .def = "3", .min = 1, .max = 10,
	  .doc = "Failed authentications before the stream is closed." },
	{ "limits", "max_output", OPT_SIZE, CONF(limits.max_output),
	  .def = "1MiB", .min = 64 * KIB, .max = 256 * MIB,
	  .doc = "Output queued for a slow client before it is dropped." },
	{ "limits", "max_connections", OPT_UINT,
	  CONF(limits.max_connections), .def = "10000", .min = 1,
	  .max = 1000000, .doc = "Concurrent connections in total." },
	{ "limits", "max_offline_messages", OPT_UINT,
	  CONF(limits.max_offline_messages), .def = "1000", .min = 0,
	  .max = 1000000,
	  .doc = "Messages kept for an offline account (XEP-0160); beyond it "
		 "senders get `<service-unavailable/>`. 0 turns storage off." },
	{ "limits", "registration_interval", OPT_DURATION,
	  CONF(limits.registration_interval_ms), .def = "60s", .min = 0,
	  .max = 24 * HOUR,
	  .doc = "Least time between two in-band registrations (XEP-0077) "
		 "from one address; 0 turns the limit off." },
	{ "limits", "c2s_rate", OPT_SIZE, CONF(limits.c2s_rate),
	  .def = "32KiB", .min = 0, .max = 1024 * MIB,
	  .doc = "Bytes per second an authenticated client stream may send "
		 "on average; past it the server stops reading it until it "
		 "is back under (the client's TCP connection waits). 0 turns "
		 "the limit off." },
	{ "limits", "c2s_burst", OPT_SIZE, CONF(limits.c2s_burst),
	  .def = "512KiB", .min = 16 * KIB, .max = 1024 * MIB,
	  .doc = "Bytes a client stream may send at once above "
		 "`limits.c2s_rate` (a photo, a burst of messages after "
		 "being offline)." },
	{ "", "store", OPT_SECTION,
	  .doc = "The database; see below." },
	{ "store", "busy_timeout", OPT_DURATION,
	  CONF(store.busy_timeout_ms), .def = "5s", .min = 0,
	  .max = MIN,
	  .doc = "How long a write waits for another program (stanzactl, a "
		 "backup) holding the database's write lock before the client "
		 "gets `<resource-constraint/>`; the server's other storage "
		 "work waits meanwhile. 0: fail at once." },
	{ "", "dns", OPT_SECTION,
	  .doc = "The resolver that finds other servers; see below." },
	{ "dns", "hosts", OPT_PATH, CONF(dns.hosts_file),
	  .doc = "A hosts file whose addresses are used before DNS; none: "
		 "`/etc/hosts`." },
	{ "dns", "upstream", OPT_LIST, .min = 1, .item = upstream_item,
	  .doc = "Servers to send every query to, `address` or "
		 "`address@port`; none: those of `/etc/resolv.conf`." },
	{ "dns", "trust_anchor_file", OPT_PATH, CONF(dns.trust_anchor_file),
	  .doc = "DNSSEC trust anchors (zone file format, DS or DNSKEY); "
		 "none: answers are never secure, so no DANE." },
	{ "dns", "timeout", OPT_DURATION, CONF(dns.timeout_ms), .def = "10s",
	  .min = 100, .max = 5 * MIN,
	  .doc = "How long one lookup (SRV, then addresses) may take." },
	{ "", "s2s", OPT_SECTION,
	  .doc = "Server-to-server (federation); see below." },
	{ "s2s", "ca_file", OPT_PATH, CONF(s2s.ca_file),
	  .doc = "PEM file of the certificate authorities trusted for other "
		 "servers' certificates; without it, the system's store." },
	{ "s2s", "dialback", OPT_BOOL, CONF(s2s.dialback), .def = "true",
	  .doc = "Authenticate with Server Dialback (XEP-0220, over TLS "
		 "only) when a certificate does not verify. `false`: only "
		 "servers with valid certificates (SASL EXTERNAL) federate." },
	{ "s2s", "bidi", OPT_BOOL, CONF(s2s.bidi), .def = "true",
	  .doc = "Bidirectional server streams (XEP-0288): one connection "
		 "carries stanzas both ways with a server that supports them. "
		 "`false`: each direction opens its own connection." },
	{ "s2s", "connect_timeout", OPT_DURATION,
	  CONF(s2s.connect_timeout_ms), .def = "10s", .min = SEC,
	  .max = 10 * MIN,
	  .doc = "Time to resolve, connect, secure and authenticate an "
		 "outgoing connection; queued stanzas then bounce with "
		 "`<remote-server-timeout/>`." },
	{ "s2s", "idle_timeout", OPT_DURATION, CONF(s2s.idle_timeout_ms),
	  .def = "10m", .min = SEC, .max = 24 * HOUR,
	  .doc = "A server connection with no stanza either way for this "
		 "long is closed." },
	{ "s2s", "max_queue", OPT_UINT, CONF(s2s.max_queue), .def = "1000",
	  .min = 1, .max = 1000000,
	  .doc = "Stanzas held for a domain while its connection is set up; "
		 "beyond it they bounce with `<resource-constraint/>`." },
	{ "", "pubsub", OPT_SECTION,
	  .doc = "Publish-subscribe: PEP on every account and the optional "
		 "service on a subdomain; see below." },
	{ "pubsub", "subdomain", OPT_STRING, CONF(pubsub.subdomain),
	  .check = check_pubsub_subdomain,
	  .doc = "Run a pubsub service (XEP-0060) on this label under "
		 "every host: `pubsub` serves `pubsub.example.org`. None: no "
		 "service (PEP works either way)." },
	{ "pubsub", "max_items", OPT_UINT, CONF(pubsub.max_items),
	  .def = "256", .min = 1, .max = 10000,
	  .doc = "Most items one node keeps (the largest "
		 "`pubsub#max_items` a node may be configured with)." },
	{ "pubsub", "max_nodes", OPT_UINT, CONF(pubsub.max_nodes),
	  .def = "256", .min = 1, .max = 100000,
	  .doc = "Most nodes one account (PEP), or the service of one "
		 "host, may have." },
	{ "", "muc", OPT_SECTION,
	  .doc = "Group chat (XEP-0045) on a subdomain of every host; "
		 "see below." },
	{ "muc", "enabled", OPT_BOOL, CONF(muc.enabled), .def = "true",
	  .doc = "Serve group chat rooms. On by default: most clients "
		 "expect a conference service next to the host." },
	{ "muc", "subdomain", OPT_STRING, CONF(muc.subdomain),
	  .def = "conference", .check = check_muc_subdomain,
	  .doc = "The label of the service under every host: `conference` "
		 "serves `conference.example.org`." },
	{ "muc", "max_occupants", OPT_UINT, CONF(muc.max_occupants),
	  .def = "5000", .min = 2, .max = 100000,
	  .doc = "Most occupants one room may hold (the largest "
		 "`muc#roomconfig_maxusers`; rooms start at 1000 or this, "
		 "whichever is smaller)." },
	{ "muc", "max_history", OPT_UINT, CONF(muc.max_history),
	  .def = "50", .min = 0, .max = 1000,
	  .doc = "Messages a room keeps in memory for the history sent on "
		 "join." },
	{ "muc", "max_rooms", OPT_UINT, CONF(muc.max_rooms),
	  .def = "10000", .min = 1, .max = 10000000,
	  .doc = "Most rooms one service (one host) may have at a time." },
	{ "", "mam", OPT_SECTION,
	  .doc = "The message archive of accounts and group chat rooms "
		 "(XEP-0313); see below." },
	{ "mam", "enabled", OPT_BOOL, CONF(mam.enabled), .def = "true",
	  .doc = "Archive messages of accounts. Off: nothing new is archived, "
		 "no XEP-0359 stanza-ids are added and the archive is not "
		 "advertised; what was archived stays queryable. Rooms "
		 "(docs/internals/muc.md) stop archiving, advertising and "
		 "answering archive queries." },
	{ "mam", "retention", OPT_DURATION, CONF(mam.retention_ms),
	  .def = "0s", .min = 0, .max = 100 * 365 * DAY,
	  .doc = "How long archived messages are kept; older ones are "
		 "deleted (at start-up and then at most hourly) and never "
		 "returned. 0: kept until the account (or room) is removed. "
		 "Applies to rooms' archives too." },
	{ "mam", "queue_high", OPT_UINT, CONF(mam.queue_high),
	  .def = "20000", .min = 2, .max = 10000000,
	  .doc = "Messages waiting for the archive's writer at which the "
		 "streams that send more stop reading until it is down to "
		 "half (back-pressure: every delivered message is "
		 "archived)." },
	{ "hosts[]", "name", OPT_STRING, HOST(name), .required = true,
	  .check = check_host_name,
	  .doc = "The domain; case-folded (nameprep), must be unique." },
	{ "hosts[]", "tls", OPT_SECTION, .check = check_tls,
	  .doc = "Certificate for this host; without it a self-signed one "
		 "is made in `data_dir`." },
	{ "hosts[].tls", "cert", OPT_PATH, HOST(cert_file),
	  .doc = "PEM certificate chain; needs `key`." },
	{ "hosts[].tls", "key", OPT_PATH, HOST(key_file),
	  .doc = "PEM private key; needs `cert`." },
	{ "listeners[]", "type", OPT_ENUM, LISTENER(type), .required = true,
	  NAMES(listener_type_names),
	  .doc = "`c2s`: clients, STARTTLS (RFC 6120); `c2s_tls`: clients, "
		 "direct TLS (XEP-0368); `s2s`: servers, STARTTLS; `s2s_tls`: "
		 "servers, direct TLS; `component`: external components "
		 "(XEP-0114), plain TCP: bind it to a loopback or private "
		 "address." },
	{ "listeners[]", "address", OPT_STRING, LISTENER(address),
	  .required = true, .check = check_address,
	  .doc = "Numeric IPv4 or IPv6 address to bind." },
	{ "listeners[]", "port", OPT_UINT, LISTENER(port), .required = true,
	  .min = 1, .max = 65535,
	  .doc = "TCP port; address and port must be unique." },
	{ "components[]", "domain", OPT_STRING, COMPONENT(domain),
	  .required = true, .check = check_component_domain,
	  .doc = "The component's domain; case-folded (nameprep), unique, "
		 "not one of `hosts`." },
	{ "components[]", "secret", OPT_STRING, COMPONENT(secret),
	  .required = true,
	  .doc = "The shared secret of the component's handshake." },
};

/* The scopes in the order of the reference, with their introductions. */
static const struct {
	const char *scope, *title, *intro;
} scopes[] = {
	{ "", "Top level", NULL },
	{ "limits", "`limits`",
	  "Bounds on what one peer can make the server hold or do." },
	{ "store", "`store`", NULL },
	{ "dns", "`dns`",
	  "How other servers are found: SRV, A and AAAA lookups through "
	  "libunbound, DNSSEC-validated when trust anchors are given." },
	{ "s2s", "`s2s`", NULL },
	{ "pubsub", "`pubsub`",
	  "Personal eventing (XEP-0163) is always on; these bound it and "
	  "switch the shared service on." },
	{ "muc", "`muc`",
	  "Rooms are created by accounts of the host below the service; "
	  "docs/internals/muc.md." },
	{ "mam", "`mam`", NULL },
	{ "hosts[]", "`hosts` entries",
	  "Each entry is a domain (`- example.org`) or a mapping with these "
	  "keys." },
	{ "hosts[].tls", "`hosts[].tls`",
	  "Give both files or neither." },
	{ "listeners[]", "`listeners` entries",
	  "Each entry is a mapping; `{ type: c2s, address: 127.0.0.1, "
	  "port: 5222 }`." },
	{ "components[]", "`components` entries",
	  "Each entry is a mapping; `{ domain: gateway.example.org, "
	  "secret: \"...\" }`. Stanzas to the domain, or to any address "
	  "in it, go to the component connected as that domain." },
};

const char *listener_type_name(enum listener_type t)
{
	return (size_t)t < ARRAY_SIZE(listener_type_names) ?
		       listener_type_names[t] : "?";
}

/* --- errors and small helpers --- */

static int conf_error(struct conf_ctx *c, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the first error as "name:line: message"; always returns -1. */
static int conf_error(struct conf_ctx *c, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->error != NULL)
		return -1;
	size_t n = strlen(c->name) + strlen(msg) + 16;
	c->error = xmalloc(n);
	if (line > 0)
		snprintf(c->error, n, "%s:%u: %s", c->name, line, msg);
	else
		snprintf(c->error, n, "%s: %s", c->name, msg);
	return -1;
}

static unsigned node_line(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* The full key of an option, e.g. "limits.max_depth". */
static const char *opt_key(const struct opt *o, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s", o->scope, o->scope[0] ? "." : "",
		 o->name);
	return buf;
}

static const struct opt *find_opt(const char *scope, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (strcmp(opts[i].scope, scope) == 0 &&
		    strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

/* The scope of the keys under o: "limits", "hosts[]". */
static const char *sub_scope(const struct opt *o, char *buf, size_t size)
{
	opt_key(o, buf, size);
	if (o->type == OPT_LIST)
		strncat(buf, "[]", size - strlen(buf) - 1);
	return buf;
}

/* YAML null: an empty plain value, "~" or "null". No key may be null:
 * leave a key out to get its default. */
static bool is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
		if (strcmp(scalar(n), nulls[i]) == 0)
			return true;
	return false;
}

/* libyaml strings are NUL-terminated, but "\0" is valid YAML: refuse it
 * rather than silently cut the value short. */
static int check_scalar(struct conf_ctx *c, const yaml_node_t *n,
			const char *key)
{
	if (strlen(scalar(n)) == n->data.scalar.length)
		return 0;
	return conf_error(c, node_line(n), "%s: NUL character in value", key);
}

static void *field(void *base, const struct opt *o)
{
	return (char *)base + o->offset;
}

static void store_uint(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1:
		BUG_ON(v > UINT8_MAX);
		*(uint8_t *)p = (uint8_t)v;
		break;
	case 2:
		BUG_ON(v > UINT16_MAX);
		*(uint16_t *)p = (uint16_t)v;
		break;
	case 4:
		BUG_ON(v > UINT32_MAX);
		*(uint32_t *)p = (uint32_t)v;
		break;
	case 8:
		*(uint64_t *)p = v;
		break;
	default:
		bug_abort(__FILE__, __LINE__, "unsupported field size");
	}
}

static void store_string(void *p, char *s)
{
	char **sp = p;
	free(*sp);
	*sp = s;
}

/* --- scalar values --- */

/* Parses the decimal digits at *sp into *v_r and advances *sp. Leading
 * zeros are refused: YAML 1.1 would read them as octal. */
static int parse_digits(const char **sp, uint64_t *v_r, bool *overflow_r)
{
	const char *s = *sp;
	uint64_t v = 0;
	*overflow_r = false;
	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			*overflow_r = true;
		else
			v = v * 10 + (uint64_t)(*s - '0');
	}
	*sp = s;
	*v_r = v;
	return 0;
}

struct unit {
	const char *name;
	uint64_t scale;
};

static const struct unit size_units[] = {
	{ "", 1 }, { "B", 1 }, { "KiB", KIB }, { "MiB", MIB }, { "GiB", GIB },
};

static const struct unit duration_units[] = {
	{ "ms", 1 }, { "s", SEC }, { "m", MIN }, { "h", HOUR },
	{ "d", DAY },
};

/* A number with a unit from units (spaces between them allowed). */
static int parse_unit_value(struct conf_ctx *c, const struct opt *o,
			    const char *key, const char *s, unsigned line,
			    uint64_t *v_r)
{
	const struct unit *units = o->type == OPT_SIZE ? size_units :
							 duration_units;
	size_t nunits = o->type == OPT_SIZE ? ARRAY_SIZE(size_units) :
					      ARRAY_SIZE(duration_units);
	const char *p = s;
	bool overflow;
	if (parse_digits(&p, v_r, &overflow) < 0)
		return conf_error(c, line, "%s: expected a %s like %s, got "
				  "'%.64s'", key, o->type == OPT_SIZE ?
				  "size" : "duration", o->def, s);
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(p, units[i].name) != 0)
			continue;
		if (overflow || *v_r > UINT64_MAX / units[i].scale)
			*v_r = UINT64_MAX;
		else
			*v_r *= units[i].scale;
		return 0;
	}
	if (o->type == OPT_SIZE)
		return conf_error(c, line, "%s: bad unit '%.16s' in '%.64s' "
				  "(use B, KiB, MiB or GiB)", key, p, s);
	return conf_error(c, line, "%s: bad or missing unit '%.16s' in "
			  "'%.64s' (use ms, s, m, h or d)", key, p, s);
}

static void format_value(const struct opt *o, uint64_t v, char *buf,
			 size_t size)
{
	const struct unit *u = NULL;
	if (o->type == OPT_SIZE) {
		for (size_t i = ARRAY_SIZE(size_units); i-- > 1 && !u;)
			if (v % size_units[i].scale == 0)
				u = &size_units[i];
	} else if (o->type == OPT_DURATION) {
		for (size_t i = ARRAY_SIZE(duration_units); i-- > 0 && !u;)
			if (v % duration_units[i].scale == 0)
				u = &duration_units[i];
	}
	if (u == NULL || v == 0)
		snprintf(buf, size, "%" PRIu64, v);
	else
		snprintf(buf, size, "%" PRIu64 "%s", v / u->scale, u->name);
}

static int parse_number(struct conf_ctx *c, const struct opt *o,
			const char *key, const char *s, unsigned line,
			uint64_t *v_r)
{
	if (o->type != OPT_UINT) {
		if (parse_unit_value(c, o, key, s, line, v_r) < 0)
			return -1;
	} else {
		const char *p = s;
		bool overflow;
		if (parse_digits(&p, v_r, &overflow) < 0 || *p != '\0')
			return conf_error(c, line, "%s: expected an unsigned "
					  "integer, got '%.64s'", key, s);
		if (overflow)
			*v_r = UINT64_MAX;
	}
	if (*v_r < o->min || *v_r > o->max) {
		char lo[32], hi[32];
		format_value(o, o->min, lo, sizeof(lo));
		format_value(o, o->max, hi, sizeof(hi));
		return conf_error(c, line, "%s: '%.64s' is out of range "
				  "(%s..%s)", key, s, lo, hi);
	}
	return 0;
}

static int parse_enum(struct conf_ctx *c, const struct opt *o,
		      const char *key, const char *s, unsigned line,
		      uint64_t *v_r)
{
	char list[128] = "";
	for (size_t i = 0; i < o->nnames; i++) {
		if (strcmp(s, o->names[i]) == 0) {
			*v_r = i;
			return 0;
		}
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, o->names[i], sizeof(list) - strlen(list) - 1);
	}
	return conf_error(c, line, "%s: expected one of %s, got '%.64s'", key,
			  list, s);
}

/* Joins a relative path to the config file's directory. */
static char *resolve_path(const struct conf_ctx *c, const char *s)
{
	if (s[0] == '/' || c->dir == NULL)
		return xstrdup(s);
	size_t dlen = strlen(c->dir);
	bool slash = dlen > 0 && c->dir[dlen - 1] == '/';
	char *p = xmalloc(dlen + strlen(s) + 2);
	sprintf(p, "%s%s%s", c->dir, slash ? "" : "/", s);
	return p;
}

/* Stores the scalar s (from the file, or a default) into base. */
static int set_scalar(struct conf_ctx *c, const struct opt *o, void *base,
		      const char *s, unsigned line)
{
	char key[64];
	uint64_t v = 0;
	opt_key(o, key, sizeof(key));
	switch (o->type) {
	case OPT_STRING:
	case OPT_PATH:
		if (s[0] == '\0')
			return conf_error(c, line, "%s: empty value", key);
		store_string(field(base, o), o->type == OPT_PATH ?
				     resolve_path(c, s) : xstrdup(s));
		break;
	case OPT_BOOL:
		if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
			return conf_error(c, line, "%s: expected true or "
					  "false, got '%.64s'", key, s);
		BUG_ON(o->size != sizeof(bool));
		*(bool *)field(base, o) = s[0] == 't';
		break;
	case OPT_ENUM:
		if (parse_enum(c, o, key, s, line, &v) < 0)
			return -1;
		store_uint(field(base, o), o->size, v);
		break;
	default:
		if (parse_number(c, o, key, s, line, &v) < 0)
			return -1;
		store_uint(field(base, o), o->size, v);
		break;
	}
	return o->check ? o->check(c, base, line) : 0;
}

/* --- mappings, sequences, sections --- */

static int parse_mapping(struct conf_ctx *c, yaml_node_t *map,
			 const char *scope, void *base, unsigned line);

static const char *node_kind(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE ? "a mapping" :
	       n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static int parse_list(struct conf_ctx *c, const struct opt *o,
		      yaml_node_t *n, const char *key)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return conf_error(c, node_line(n), "%s: expected a list, got "
				  "%s", key, node_kind(n));
	yaml_node_item_t *it = n->data.sequence.items.start;
	yaml_node_item_t *end = n->data.sequence.items.top;
	if ((uint64_t)(end - it) < o->min)
		return conf_error(c, node_line(n), "%s: needs at least "
				  "%" PRIu64 " entry", key, o->min);
	for (; it < end; it++)
		if (o->item(c, yaml_document_get_node(c->doc, *it)) < 0)
			return -1;
	return 0;
}

/* Parses the value node n of key o into base. */
static int set_value(struct conf_ctx *c, const struct opt *o, void *base,
		     yaml_node_t *n)
{
	char key[64], scope[64];
	opt_key(o, key, sizeof(key));
	if (is_null(n))
		return conf_error(c, node_line(n), "%s: no value (leave the "
				  "key out for its default)", key);
	if (o->type == OPT_LIST)
		return parse_list(c, o, n, key);
	if (o->type == OPT_SECTION) {
		if (n->type != YAML_MAPPING_NODE)
			return conf_error(c, node_line(n), "%s: expected a "
					  "mapping, got %s", key, node_kind(n));
		if (parse_mapping(c, n, sub_scope(o, scope, sizeof(scope)),
				  base, node_line(n)) < 0)
			return -1;
		return o->check ? o->check(c, base, node_line(n)) : 0;
	}
	if (n->type != YAML_SCALAR_NODE)
		return conf_error(c, node_line(n), "%s: expected a single "
				  "value, got %s", key, node_kind(n));
	if (check_scalar(c, n, key) < 0)
		return -1;
	return set_scalar(c, o, base, scalar(n), node_line(n));
}

/* A key that was not given: its default, or an error if required. */
static int set_missing(struct conf_ctx *c, const struct opt *o, void *base,
		       unsigned line)
{
	char key[64], sub[64];
	if (o->required)
		return conf_error(c, line, "missing required key '%s'",
				  opt_key(o, key, sizeof(key)));
	if (o->type == OPT_SECTION)
		return parse_mapping(c, NULL, sub_scope(o, sub, sizeof(sub)),
				     base, line);
	/* A bad default is a bug of the table; test_conf loads them all. */
	if (o->def != NULL && set_scalar(c, o, base, o->def, line) < 0)
		bug_abort(__FILE__, __LINE__, "invalid default in opts[]");
	return 0;
}

static int parse_pair(struct conf_ctx *c, yaml_node_pair_t *pair,
		      const char *scope, void *base, bool *seen)
{
	yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
	yaml_node_t *v = yaml_document_get_node(c->doc, pair->value);
	const char *dot = scope[0] ? "." : "";
	if (k->type != YAML_SCALAR_NODE)
		return conf_error(c, node_line(k), "keys must be plain names, "
				  "got %s", node_kind(k));
	if (check_scalar(c, k, "key") < 0)
		return -1;
	const struct opt *o = find_opt(scope, scalar(k));
	if (o == NULL)
		return conf_error(c, node_line(k), "unknown key '%s%s%.64s'",
				  scope, dot, scalar(k));
	if (seen[o - opts])
		return conf_error(c, node_line(k), "duplicate key '%s%s%s'",
				  scope, dot, o->name);
	seen[o - opts] = true;
	return set_value(c, o, base, v);
}

/* Parses the keys of scope from map, then fills in the missing ones. map
 * NULL: the whole mapping was left out (line is its parent's). */
static int parse_mapping(struct conf_ctx *c, yaml_node_t *map,
			 const char *scope, void *base, unsigned line)
{
	bool seen[ARRAY_SIZE(opts)] = { false };
	if (map != NULL) {
		yaml_node_pair_t *p = map->data.mapping.pairs.start;
		for (; p < map->data.mapping.pairs.top; p++)
			if (parse_pair(c, p, scope, base, seen) < 0)
				return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (!seen[i] && strcmp(opts[i].scope, scope) == 0 &&
		    set_missing(c, &opts[i], base, line) < 0)
			return -1;
	return 0;
}

/* --- list entries and checks --- */

/* A host's stanzas go to its accounts, so no component may serve it.
 * Checked by whichever of the two lists comes second in the file. */
static int check_not_both(struct conf_ctx *c, const char *domain,
			  unsigned line)
{
	const struct config *conf = c->conf;
	bool host = false, component = false;
	for (size_t i = 0; i < conf->nhosts; i++)
		host |= conf->host_confs[i].name != NULL &&
			strcmp(conf->host_confs[i].name, domain) == 0;
	for (size_t i = 0; i < conf->ncomponents; i++)
		component |= conf->components[i].domain != NULL &&
			     strcmp(conf->components[i].domain, domain) == 0;
	if (host && component)
		return conf_error(c, line, "'%s' is both a host and a "
				  "component", domain);
	return 0;
}

static int hosts_item(struct conf_ctx *c, yaml_node_t *n)
{
	struct config *conf = c->conf;
	unsigned line = node_line(n);
	conf->host_confs = xreallocarray(conf->host_confs, conf->nhosts + 1,
					 sizeof(*conf->host_confs));
	struct host_conf *h = &conf->host_confs[conf->nhosts++];
	memset(h, 0, sizeof(*h));
	int rc;
	if (n->type == YAML_MAPPING_NODE)
		rc = parse_mapping(c, n, "hosts[]", h, line);
	else if (n->type == YAML_SCALAR_NODE && !is_null(n))
		rc = check_scalar(c, n, "hosts") < 0 ? -1 :
		     set_scalar(c, find_opt("hosts[]", "name"), h, scalar(n),
				line);
	else
		return conf_error(c, line, "hosts: an entry is a domain or a "
				  "mapping, got %s", node_kind(n));
	if (rc < 0)
		return -1;
	for (size_t i = 0; i + 1 < conf->nhosts; i++)
		if (strcmp(conf->host_confs[i].name, h->name) == 0)
			return conf_error(c, line, "hosts: duplicate host "
					  "'%s'", h->name);
	return check_not_both(c, h->name, line);
}

static int listeners_item(struct conf_ctx *c, yaml_node_t *n)
{
	struct config *conf = c->conf;
	unsigned line = node_line(n);
	if (n->type != YAML_MAPPING_NODE)
		return conf_error(c, line, "listeners: an entry is a mapping, "
				  "got %s", node_kind(n));
	conf->listeners = xreallocarray(conf->listeners, conf->nlisteners + 1,
					sizeof(*conf->listeners));
	struct listener_conf *l = &conf->listeners[conf->nlisteners++];
	memset(l, 0, sizeof(*l));
	if (parse_mapping(c, n, "listeners[]", l, line) < 0)
		return -1;
	for (size_t i = 0; i + 1 < conf->nlisteners; i++) {
		struct listener_conf *o = &conf->listeners[i];
		if (o->port == l->port && strcmp(o->address, l->address) == 0)
			return conf_error(c, line, "listeners: duplicate "
					  "address and port %s port %u",
					  l->address, l->port);
	}
	return 0;
}

/* An upstream DNS server: a numeric address, optionally @port. */
static int upstream_item(struct conf_ctx *c, yaml_node_t *n)
{
	struct dns_conf *d = &c->conf->dns;
	unsigned line = node_line(n);
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return conf_error(c, line, "dns.upstream: an entry is an "
				  "address, got %s", node_kind(n));
	if (check_scalar(c, n, "dns.upstream") < 0)
		return -1;
	const char *s = scalar(n), *at = strchr(s, '@');
	char addr[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	size_t alen = at ? (size_t)(at - s) : strlen(s);
	bool ok = alen < sizeof(addr);
	if (ok) {
		memcpy(addr, s, alen);
		addr[alen] = '\0';
		ok = inet_pton(strchr(addr, ':') ? AF_INET6 : AF_INET, addr,
			       bin) == 1;
	}
	if (ok && at != NULL) {
		const char *p = at + 1;
		uint64_t port;
		bool overflow;
		ok = parse_digits(&p, &port, &overflow) == 0 && *p == '\0' &&
		     !overflow && port >= 1 && port <= 65535;
	}
	if (!ok)
		return conf_error(c, line, "dns.upstream: '%.64s' is not a "
				  "numeric address with an optional @port", s);
	d->upstreams = xreallocarray(d->upstreams, d->nupstreams + 1,
				     sizeof(*d->upstreams));
	d->upstreams[d->nupstreams++] = xstrdup(s);
	return 0;
}

static int components_item(struct conf_ctx *c, yaml_node_t *n)
{
	struct config *conf = c->conf;
	unsigned line = node_line(n);
	if (n->type != YAML_MAPPING_NODE)
		return conf_error(c, line, "components: an entry is a mapping, "
				  "got %s", node_kind(n));
	conf->components = xreallocarray(conf->components,
					 conf->ncomponents + 1,
					 sizeof(*conf->components));
	struct component_conf *k = &conf->components[conf->ncomponents++];
	memset(k, 0, sizeof(*k));
	if (parse_mapping(c, n, "components[]", k, line) < 0)
		return -1;
	for (size_t i = 0; i + 1 < conf->ncomponents; i++)
		if (strcmp(conf->components[i].domain, k->domain) == 0)
			return conf_error(c, line, "components: duplicate "
					  "domain '%s'", k->domain);
	return check_not_both(c, k->domain, line);
}

/* Domains are compared as JID domains, so they are nameprep'd. */
static int nameprep_domain(struct conf_ctx *c, char **name, unsigned line,
			   const char *what)
{
	struct arena *a = arena_new(0);
	struct str out;
	const char *err;
	int rc = jid_nameprep(a, str_c(*name), &out, &err);
	if (rc < 0)
		conf_error(c, line, "%s '%.64s': %s", what, *name, err);
	else
		store_string(name, str_xdup(out));
	arena_destroy(&a);
	return rc;
}

static int check_host_name(struct conf_ctx *c, void *base, unsigned line)
{
	return nameprep_domain(c, &((struct host_conf *)base)->name, line,
			       "hosts: invalid host name");
}

/* One or more DNS labels, made of what nameprep keeps as it is, so that
 * "label.host" is a valid domain for every host. */
static int check_label(struct conf_ctx *c, const char *s, unsigned line,
		       const char *what)
{
	bool ok = *s != '\0' && *s != '.' && s[strlen(s) - 1] != '.' &&
		  strstr(s, "..") == NULL;
	for (const char *p = s; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		     *p == '-' || *p == '.';
	if (!ok)
		return conf_error(c, line, "%s: subdomain '%.64s': "
				  "lower-case letters, digits, '-' and "
				  "inner dots only", what, s);
	return 0;
}

static int check_pubsub_subdomain(struct conf_ctx *c, void *base,
				  unsigned line)
{
	return check_label(c, ((struct config *)base)->pubsub.subdomain, line,
			   "pubsub");
}

static int check_muc_subdomain(struct conf_ctx *c, void *base,
			       unsigned line)
{
	return check_label(c, ((struct config *)base)->muc.subdomain, line,
			   "muc");
}

static int check_component_domain(struct conf_ctx *c, void *base,
				  unsigned line)
{
	return nameprep_domain(c, &((struct component_conf *)base)->domain,
			       line, "components: invalid domain");
}

static int check_tls(struct conf_ctx *c, void *base, unsigned line)
{
	struct host_conf *h = base;
	if ((h->cert_file == NULL) != (h->key_file == NULL))
		return conf_error(c, line, "hosts[].tls: give both cert and "
				  "key, or neither");
	return 0;
}

/* Stores the canonical text so that duplicates compare equal. */
static int check_address(struct conf_ctx *c, void *base, unsigned line)
{
	struct listener_conf *l = base;
	unsigned char addr[sizeof(struct in6_addr)];
	char text[INET6_ADDRSTRLEN];
	int af = strchr(l->address, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(af, l->address, addr) != 1)
		return conf_error(c, line, "listeners[].address: '%.64s' is "
				  "not a numeric IPv4 or IPv6 address",
				  l->address);
	BUG_ON(inet_ntop(af, addr, text, sizeof(text)) == NULL);
	store_string(&l->address, xstrdup(text));
	return 0;
}

/* --- loading --- */

/* libyaml's problem is where it gave up; its context (e.g. "while
 * scanning a quoted scalar") says where the broken construct began.
 * Reader errors (bad UTF-8) have a byte offset instead of a mark. */
static void syntax_error(struct conf_ctx *c, const yaml_parser_t *p,
			 const char *yaml, size_t len)
{
	const char *problem = p->problem ? p->problem : "invalid input";
	unsigned line = (unsigned)p->problem_mark.line + 1;
	if (p->error == YAML_READER_ERROR) {
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++)
			line += yaml[i] == '\n';
	}
	if (p->context != NULL)
		conf_error(c, line, "YAML syntax error: %s %s at line %u",
			   problem, p->context,
			   (unsigned)p->context_mark.line + 1);
	else
		conf_error(c, line, "YAML syntax error: %s", problem);
}

static int load_document(struct conf_ctx *c, const char *yaml, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	int rc = -1;
	BUG_ON(!yaml_parser_initialize(&parser));
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml,
				     len);
	if (!yaml_parser_load(&parser, c->doc)) {
		syntax_error(c, &parser, yaml, len);
		yaml_parser_delete(&parser);
		return -1;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		syntax_error(c, &parser, yaml, len);
	} else {
		yaml_node_t *root = yaml_document_get_root_node(&extra);
		if (root != NULL)
			conf_error(c, node_line(root), "more than one YAML "
				   "document");
		else
			rc = 0;
		yaml_document_delete(&extra);
	}
	if (rc < 0)
		yaml_document_delete(c->doc);
	yaml_parser_delete(&parser);
	return rc;
}

static int load_config(struct conf_ctx *c)
{
	yaml_node_t *root = yaml_document_get_root_node(c->doc);
	if (root == NULL)
		return conf_error(c, 1, "empty configuration (hosts and "
				  "listeners are required)");
	if (root->type != YAML_MAPPING_NODE)
		return conf_error(c, node_line(root), "the configuration must "
				  "be a mapping, got %s", node_kind(root));
	if (parse_mapping(c, root, "", c->conf, node_line(root)) < 0)
		return -1;
	struct config *conf = c->conf;
	conf->hosts = xcalloc(conf->nhosts, sizeof(*conf->hosts));
	for (size_t i = 0; i < conf->nhosts; i++)
		conf->hosts[i] = conf->host_confs[i].name;
	return 0;
}

static int conf_load_dir(const char *name, const char *dir, const char *yaml,
			 size_t len, struct config **conf_r, char **error_r)
{
	yaml_document_t doc;
	struct conf_ctx c = {
		.name = name,
		.dir = dir,
		.doc = &doc,
		.conf = xcalloc(1, sizeof(struct config)),
	};
	c.conf->path = xstrdup(name);
	int rc = load_document(&c, yaml, len);
	if (rc == 0) {
		rc = load_config(&c);
		yaml_document_delete(&doc);
	}
	if (rc < 0) {
		conf_free(c.conf);
		*conf_r = NULL;
		*error_r = c.error;
		return -1;
	}
	*conf_r = c.conf;
	*error_r = NULL;
	return 0;
}

int conf_load_string(const char *name, const char *yaml, size_t len,
		     struct config **conf_r, char **error_r)
{
	return conf_load_dir(name, NULL, yaml, len, conf_r, error_r);
}

static char *read_file(const char *path, size_t *len_r, char **error_r)
{
	FILE *f = fopen(path, "rb");
	char *data = xmalloc(CONF_FILE_MAX + 1);
	size_t n = f ? fread(data, 1, CONF_FILE_MAX + 1, f) : 0;
	const char *err = f == NULL || ferror(f) ? strerror(errno) :
			  n > CONF_FILE_MAX ? "file larger than 1 MiB" : NULL;
	if (f != NULL)
		fclose(f);
	if (err != NULL) {
		size_t size = strlen(path) + strlen(err) + 3;
		*error_r = xmalloc(size);
		snprintf(*error_r, size, "%s: %s", path, err);
		free(data);
		return NULL;
	}
	*len_r = n;
	return data;
}

int conf_load(const char *path, struct config **conf_r, char **error_r)
{
	size_t len;
	*conf_r = NULL;
	char *yaml = read_file(path, &len, error_r);
	if (yaml == NULL)
		return -1;
	/* Relative paths in the file are relative to its directory. */
	const char *slash = strrchr(path, '/');
	char *dir = slash ? str_xdup(STR(path, slash == path ? 1 :
					 (size_t)(slash - path))) : NULL;
	int rc = conf_load_dir(path, dir, yaml, len, conf_r, error_r);
	free(dir);
	free(yaml);
	return rc;
}

void conf_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nhosts; i++) {
		free(c->host_confs[i].name); /* c->hosts[i] is the same */
		free(c->host_confs[i].cert_file);
		free(c->host_confs[i].key_file);
	}
	free(c->host_confs);
	free(c->hosts);
	for (size_t i = 0; i < c->nlisteners; i++)
		free(c->listeners[i].address);
	free(c->listeners);
	for (size_t i = 0; i < c->dns.nupstreams; i++)
		free(c->dns.upstreams[i]);
	free(c->dns.upstreams);
	free(c->dns.hosts_file);
	free(c->dns.trust_anchor_file);
	for (size_t i = 0; i < c->ncomponents; i++) {
		free(c->components[i].domain);
		/* a credential: not left behind in freed memory */
		if (c->components[i].secret != NULL)
			explicit_bzero(c->components[i].secret,
				       strlen(c->components[i].secret));
		free(c->components[i].secret);
	}
	free(c->components);
	free(c->data_dir);
	free(c->control_socket);
	free(c->s2s.ca_file);
	free(c->pubsub.subdomain);
	free(c->muc.subdomain);
	for (size_t i = 0; i < c->nservices; i++)
		free(c->services[i]);
	free(c->services);
	free(c->path);
	free(c);
}

int conf_find_host(const struct config *c, const char *host, size_t len)
{
	for (size_t i = 0; i < c->nhosts; i++)
		if (strlen(c->hosts[i]) == len &&
		    memcmp(c->hosts[i], host, len) == 0)
			return (int)i;
	return -1;
}

int conf_find_component(const struct config *c, const char *domain,
			size_t len)
{
	for (size_t i = 0; i < c->ncomponents; i++)
		if (strlen(c->components[i].domain) == len &&
		    memcmp(c->components[i].domain, domain, len) == 0)
			return (int)i;
	return -1;
}

int conf_find_domain(const struct config *c, const char *domain, size_t len)
{
	int i = conf_find_host(c, domain, len);
	if (i >= 0)
		return i;
	i = conf_find_component(c, domain, len);
	if (i >= 0)
		return (int)c->nhosts + i;
	for (size_t k = 0; k < c->nservices; k++)
		if (strlen(c->services[k]) == len &&
		    memcmp(c->services[k], domain, len) == 0)
			return (int)(c->nhosts + c->ncomponents + k);
	return -1;
}

const char *conf_domain_name(const struct config *c, size_t idx)
{
	if (idx < c->nhosts)
		return c->hosts[idx];
	if (idx < c->nhosts + c->ncomponents)
		return c->components[idx - c->nhosts].domain;
	return c->services[idx - c->nhosts - c->ncomponents];
}

void conf_add_service(struct config *c, const char *domain)
{
	c->services = xreallocarray(c->services, c->nservices + 1,
				    sizeof(*c->services));
	c->services[c->nservices++] = xstrdup(domain);
}

/* --- the reference --- */

static void write_type(FILE *out, const struct opt *o)
{
	static const char *const names[] = {
		[OPT_STRING] = "string", [OPT_PATH] = "path",
		[OPT_BOOL] = "`true` \\| `false`", [OPT_UINT] = "integer",
		[OPT_SIZE] = "size", [OPT_DURATION] = "duration",
		[OPT_LIST] = "list", [OPT_SECTION] = "mapping",
	};
	if (o->type != OPT_ENUM) {
		fputs(names[o->type], out);
		return;
	}
	for (size_t i = 0; i < o->nnames; i++)
		fprintf(out, "%s`%s`", i ? " \\| " : "", o->names[i]);
}

static void write_range(FILE *out, const struct opt *o)
{
	char lo[32], hi[32];
	switch (o->type) {
	case OPT_UINT:
	case OPT_SIZE:
	case OPT_DURATION:
		format_value(o, o->min, lo, sizeof(lo));
		format_value(o, o->max, hi, sizeof(hi));
		fprintf(out, "%s..%s", lo, hi);
		break;
	case OPT_LIST:
		if (o->min > 0)
			fprintf(out, "at least %" PRIu64 " entry", o->min);
		break;
	default:
		break;
	}
}

static void write_scope(FILE *out, size_t s)
{
	char key[64];
	fprintf(out, "\n## %s\n\n", scopes[s].title);
	if (scopes[s].intro)
		fprintf(out, "%s\n\n", scopes[s].intro);
	fputs("| Key | Type | Default | Range | Description |\n"
	      "| --- | --- | --- | --- | --- |\n", out);
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		const struct opt *o = &opts[i];
		if (strcmp(o->scope, scopes[s].scope) != 0)
			continue;
		fprintf(out, "| `%s` | ", opt_key(o, key, sizeof(key)));
		write_type(out, o);
		if (o->type == OPT_SECTION)
			fputs(" |  | ", out); /* its keys have defaults */
		else if (o->required)
			fputs(" | required | ", out);
		else if (o->def)
			fprintf(out, " | `%s` | ", o->def);
		else
			fputs(" | none | ", out);
		write_range(out, o);
		fprintf(out, " | %s |\n", o->doc);
	}
}

void conf_write_reference(FILE *out)
{
	fputs("# Configuration reference\n\n"
	      "Generated by `stanzad --config-reference` from the option "
	      "table in\n`src/core/conf.c`; do not edit.\n\n"
	      "The configuration is one YAML file; `stanzad.example.yml` "
	      "shows every key\nwith its default. Unknown keys, duplicate "
	      "keys, wrong types, values out of\nrange and missing required "
	      "keys are errors, reported as `file:line: message`.\nLeave a "
	      "key out to get its default; a key without a value is an "
	      "error.\n\n"
	      "- Relative paths are relative to the directory of the "
	      "configuration file.\n"
	      "- Sizes are a whole number with a unit: `B` (or none), `KiB`, "
	      "`MiB`, `GiB`.\n"
	      "- Durations are a whole number with a unit: `ms`, `s`, `m`, "
	      "`h`.\n"
	      "- Integers are decimal, without sign or leading zeros.\n",
	      out);
	for (size_t s = 0; s < ARRAY_SIZE(scopes); s++)
		write_scope(out, s);
}
