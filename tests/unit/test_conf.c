/*
 * test_conf.c - the YAML configuration loader (src/core/conf.c): values,
 * defaults, every error class with its line number, units and bounds, path
 * resolution, and that docs/config.md and stanzad.example.yml (read from
 * $SRCDIR, the project root) agree with the option table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/conf.h"

#define LISTENER "listeners: [{ type: c2s, address: 127.0.0.1, port: 5222 }]\n"
#define MINIMAL "hosts: [localhost]\n" LISTENER

static struct config *load_ok(const char *yaml)
{
	struct config *c = NULL;
	char *err = NULL;
	if (conf_load_string("test.yml", yaml, strlen(yaml), &c, &err) != 0)
		fail_msg("refused: %s\n---\n%s", err, yaml);
	assert_null(err);
	assert_non_null(c);
	return c;
}

/* Expects the error "test.yml:<line>: ...want...". */
static void load_err(const char *yaml, unsigned line, const char *want)
{
	struct config *c = (struct config *)1;
	char *err = NULL;
	char prefix[32];
	if (conf_load_string("test.yml", yaml, strlen(yaml), &c, &err) == 0)
		fail_msg("accepted, wanted \"%s\"\n---\n%s", want, yaml);
	assert_null(c);
	assert_non_null(err);
	snprintf(prefix, sizeof(prefix), "test.yml:%u: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 ||
	    strstr(err, want) == NULL)
		fail_msg("error \"%s\", wanted \"%s...%s\"\n---\n%s", err,
			 prefix, want, yaml);
	free(err);
}

/* MINIMAL with extra lines appended (they start on line 3). */
static char *with(const char *extra)
{
	size_t n = strlen(MINIMAL) + strlen(extra) + 1;
	char *p = malloc(n);
	assert_non_null(p);
	snprintf(p, n, "%s%s", MINIMAL, extra);
	return p;
}

static void load_err_with(const char *extra, unsigned line, const char *want)
{
	char *yaml = with(extra);
	load_err(yaml, line, want);
	free(yaml);
}

static struct config *load_ok_with(const char *extra)
{
	char *yaml = with(extra);
	struct config *c = load_ok(yaml);
	free(yaml);
	return c;
}

static void check_defaults(const struct config *c)
{
	assert_string_equal(c->data_dir, "data");
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	assert_int_equal(c->shards, 0);
	assert_int_equal(c->scram_iterations, 10000);
	assert_false(c->registration);
	assert_int_equal(c->limits.max_stanza_size, 256 * 1024);
	assert_int_equal(c->limits.max_depth, 32);
	assert_int_equal(c->limits.max_attrs, 64);
	assert_int_equal(c->limits.auth_timeout_ms, 30000);
	assert_int_equal(c->limits.max_conns_per_ip, 32);
	assert_int_equal(c->limits.max_sasl_attempts, 3);
	assert_int_equal(c->limits.max_output, 1024 * 1024);
	assert_int_equal(c->limits.max_connections, 10000);
	assert_int_equal(c->limits.max_offline_messages, 1000);
	assert_null(c->pubsub.subdomain);
	assert_int_equal(c->pubsub.max_items, 256);
	assert_int_equal(c->pubsub.max_nodes, 256);
	assert_true(c->mam.enabled);
	assert_int_equal(c->mam.retention_ms, 0);
	assert_int_equal(c->mam.queue_high, 20000);
}

static void test_defaults(void **state)
{
	(void)state;
	struct config *c = load_ok(MINIMAL);
	assert_string_equal(c->path, "test.yml");
	assert_int_equal(c->nhosts, 1);
	assert_string_equal(c->hosts[0], "localhost");
	assert_string_equal(c->host_confs[0].name, "localhost");
	assert_null(c->host_confs[0].cert_file);
	assert_null(c->host_confs[0].key_file);
	assert_int_equal(c->nlisteners, 1);
	assert_int_equal(c->listeners[0].type, LISTENER_C2S);
	assert_string_equal(c->listeners[0].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 5222);
	check_defaults(c);
	conf_free(c);
	/* an empty limits mapping gives the same defaults */
	c = load_ok_with("limits: {}\n");
	check_defaults(c);
	conf_free(c);
}

static const char example[] =
	"hosts:                      # list\n"
	"  - localhost\n"
	"  - name: example.org\n"
	"    tls: { cert: certs/example.org.pem, key: certs/example.org.key }\n"
	"data_dir: data\n"
	"listeners:\n"
	"  - { type: c2s, address: 127.0.0.1, port: 5222 }      # STARTTLS\n"
	"  - { type: c2s_tls, address: 127.0.0.1, port: 5223 }  # direct TLS\n"
	"log_level: info\n"
	"shards: 0\n"
	"scram_iterations: 10000\n"
	"registration: false\n"
	"limits:\n"
	"  max_stanza_size: 256KiB\n"
	"  max_depth: 32\n"
	"  max_attrs: 64\n"
	"  auth_timeout: 30s\n"
	"  max_conns_per_ip: 32\n"
	"  max_sasl_attempts: 3\n"
	"  max_output: 1MiB\n"
	"  max_connections: 10000\n";

static void test_example(void **state)
{
	(void)state;
	struct config *c = load_ok(example);
	assert_int_equal(c->nhosts, 2);
	assert_string_equal(c->hosts[0], "localhost");
	assert_string_equal(c->hosts[1], "example.org");
	assert_null(c->host_confs[0].cert_file);
	assert_string_equal(c->host_confs[1].name, "example.org");
	assert_string_equal(c->host_confs[1].cert_file,
			    "certs/example.org.pem");
	assert_string_equal(c->host_confs[1].key_file,
			    "certs/example.org.key");
	assert_int_equal(c->nlisteners, 2);
	assert_int_equal(c->listeners[0].type, LISTENER_C2S);
	assert_int_equal(c->listeners[1].type, LISTENER_C2S_TLS);
	assert_string_equal(c->listeners[1].address, "127.0.0.1");
	assert_int_equal(c->listeners[0].port, 5222);
	assert_int_equal(c->listeners[1].port, 5223);
	check_defaults(c);
	conf_free(c);
}

static void test_values(void **state)
{
	(void)state;
	struct config *c = load_ok(
		"hosts:\n"
		"  - Example.ORG.\n"
		"  - name: \"\\u00c4\\u00d6.example\"\n"
		"  - { name: '[::1]' }\n"
		"listeners:\n"
		"  - type: c2s_tls\n"
		"    address: 0:0::1\n"
		"    port: 65535\n"
		"  - { type: c2s, address: 0.0.0.0, port: 1 }\n"
		"data_dir: /var/lib/stanzad\n"
		"log_level: debug\n"
		"shards: 64\n"
		"scram_iterations: 1000000\n"
		"registration: true\n"
		"limits: { max_stanza_size: 16MiB, max_depth: 256,\n"
		"  max_attrs: 1024, auth_timeout: 1h,\n"
		"  max_conns_per_ip: 100000,\n"
		"  max_sasl_attempts: 10, max_output: 256MiB,\n"
		"  max_connections: 1000000 }\n");
	assert_int_equal(c->nhosts, 3);
	assert_string_equal(c->hosts[0], "example.org");
	assert_string_equal(c->hosts[1], "\xc3\xa4\xc3\xb6.example");
	assert_string_equal(c->hosts[2], "[::1]");
	assert_string_equal(c->listeners[0].address, "::1");
	assert_int_equal(c->listeners[0].port, 65535);
	assert_int_equal(c->listeners[0].type, LISTENER_C2S_TLS);
	assert_string_equal(c->listeners[1].address, "0.0.0.0");
	assert_int_equal(c->listeners[1].port, 1);
	assert_string_equal(c->data_dir, "/var/lib/stanzad");
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(c->shards, 64);
	assert_int_equal(c->scram_iterations, 1000000);
	assert_true(c->registration);
	assert_int_equal(c->limits.max_stanza_size, 16 * 1024 * 1024);
	assert_int_equal(c->limits.max_depth, 256);
	assert_int_equal(c->limits.max_attrs, 1024);
	assert_int_equal(c->limits.auth_timeout_ms, 3600 * 1000);
	assert_int_equal(c->limits.max_conns_per_ip, 100000);
	assert_int_equal(c->limits.max_sasl_attempts, 10);
	assert_int_equal(c->limits.max_output, 256 * 1024 * 1024);
	assert_int_equal(c->limits.max_connections, 1000000);
	conf_free(c);

	const char *levels[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < 4; i++) {
		char line[64];
		snprintf(line, sizeof(line), "log_level: %s\n", levels[i]);
		c = load_ok_with(line);
		assert_int_equal(c->log_level, i);
		conf_free(c);
	}
}

static void test_unknown_key(void **state)
{
	(void)state;
	load_err_with("shard: 1\n", 3, "unknown key 'shard'");
	load_err_with("limits:\n  max_depth: 8\n  max_dpeth: 8\n", 5,
		      "unknown key 'limits.max_dpeth'");
	load_err("hosts: [localhost]\n"
		 "listeners:\n"
		 "  - type: c2s\n"
		 "    address: 127.0.0.1\n"
		 "    port: 5222\n"
		 "    backlog: 5\n", 6, "unknown key 'listeners[].backlog'");
	load_err("hosts:\n"
		 "  - name: a.example\n"
		 "    tls: { cert: a.pem, key: a.key, chain: c.pem }\n"
		 LISTENER, 3, "unknown key 'hosts[].tls.chain'");
	load_err("hosts:\n  - { name: a.example, alias: b }\n" LISTENER, 2,
		 "unknown key 'hosts[].alias'");
	/* keys are case-sensitive */
	load_err_with("Shards: 1\n", 3, "unknown key 'Shards'");
	/* YAML merge keys are not supported: they are unknown keys */
	load_err_with("<<: {shards: 1}\n", 3, "unknown key '<<'");
	load_err_with("[a]: 1\n", 3, "keys must be plain names");
}

static void test_wrong_type(void **state)
{
	(void)state;
	load_err("hosts: localhost\n" LISTENER, 1,
		 "hosts: expected a list, got a scalar");
	load_err("hosts: { name: a }\n" LISTENER, 1,
		 "hosts: expected a list, got a mapping");
	load_err("hosts:\n  - [a]\n" LISTENER, 2,
		 "hosts: an entry is a domain or a mapping, got a list");
	load_err("hosts: [localhost]\nlisteners: [5222]\n", 2,
		 "listeners: an entry is a mapping");
	load_err_with("limits: 5\n", 3, "limits: expected a mapping");
	load_err_with("limits: [1]\n", 3, "limits: expected a mapping");
	load_err_with("shards: [1]\n", 3, "shards: expected a single value");
	load_err_with("data_dir: { a: b }\n", 3,
		      "data_dir: expected a single value");
	load_err_with("registration: yes\n", 3,
		      "registration: expected true or false, got 'yes'");
	load_err_with("registration: 1\n", 3, "expected true or false");
	load_err_with("registration: True\n", 3, "expected true or false");
	load_err_with("log_level: verbose\n", 3,
		      "log_level: expected one of error, warn, info, debug, "
		      "got 'verbose'");
	load_err_with("log_level: INFO\n", 3, "expected one of");
	const char *not_uint[] = {
		"abc", "-1", "+1", "1.5", "0x10", "1e3", "1_000", "010", "' 1'",
		"'1 '", "1KiB",
	};
	for (size_t i = 0; i < sizeof(not_uint) / sizeof(*not_uint); i++) {
		char line[64];
		snprintf(line, sizeof(line), "shards: %s\n", not_uint[i]);
		load_err_with(line, 3, "shards: expected an unsigned integer");
	}
	load_err("hosts: [localhost]\n"
		 "listeners:\n"
		 "  - { type: c2s, address: 127.0.0.1,\n"
		 "      port: http }\n", 4,
		 "listeners[].port: expected an unsigned integer");
	load_err("hosts: [localhost]\n"
		 "listeners: [{ type: xmpp, address: 127.0.0.1, port: 5269 }]\n",
		 2, "listeners[].type: expected one of c2s, c2s_tls, component, "
		    "s2s, s2s_tls");
	load_err("- hosts\n", 1, "the configuration must be a mapping");
	load_err("just a string\n", 1, "the configuration must be a mapping");
}

static void test_null_values(void **state)
{
	(void)state;
	load_err_with("data_dir:\n", 3, "data_dir: no value");
	load_err_with("shards: ~\n", 3, "shards: no value");
	load_err_with("limits: null\n", 3, "limits: no value");
	load_err_with("data_dir: ''\n", 3, "data_dir: empty value");
	load_err("hosts:\nlisteners: []\n", 1, "hosts: no value");
	load_err("hosts:\n  -\n" LISTENER, 2, "hosts: an entry is a domain");
	/* a quoted null is a string */
	struct config *c = load_ok_with("data_dir: 'null'\n");
	assert_string_equal(c->data_dir, "null");
	conf_free(c);
	/* "\0" is valid YAML but cannot be a path */
	load_err_with("data_dir: \"a\\0b\"\n", 3, "NUL character");
	load_err("hosts: [\"a\\0b\"]\n" LISTENER, 1, "NUL character");
}

struct bound_case {
	const char *key, *value;
	uint64_t want; /* 0: refused as out of range */
};

static uint64_t limit_value(const struct config *c, const char *key)
{
	const struct limits_conf *l = &c->limits;
	if (strcmp(key, "max_stanza_size") == 0)
		return l->max_stanza_size;
	if (strcmp(key, "max_depth") == 0)
		return l->max_depth;
	if (strcmp(key, "max_attrs") == 0)
		return l->max_attrs;
	if (strcmp(key, "auth_timeout") == 0)
		return l->auth_timeout_ms;
	if (strcmp(key, "max_conns_per_ip") == 0)
		return l->max_conns_per_ip;
	if (strcmp(key, "max_sasl_attempts") == 0)
		return l->max_sasl_attempts;
	if (strcmp(key, "max_output") == 0)
		return l->max_output;
	if (strcmp(key, "max_connections") == 0)
		return l->max_connections;
	fail_msg("no limit %s", key);
	return 0;
}

static void check_bound_cases(const struct bound_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char extra[128];
		snprintf(extra, sizeof(extra), "limits:\n  %s: %s\n",
			 cases[i].key, cases[i].value);
		if (cases[i].want == 0) {
			load_err_with(extra, 4, "is out of range");
			continue;
		}
		struct config *c = load_ok_with(extra);
		if (limit_value(c, cases[i].key) != cases[i].want)
			fail_msg("%s: %s gave %llu", cases[i].key,
				 cases[i].value, (unsigned long long)
				 limit_value(c, cases[i].key));
		conf_free(c);
	}
}

static void test_limit_bounds(void **state)
{
	(void)state;
	static const struct bound_case cases[] = {
		{ "max_depth", "4", 4 }, { "max_depth", "3", 0 },
		{ "max_depth", "256", 256 }, { "max_depth", "257", 0 },
		{ "max_attrs", "4", 4 }, { "max_attrs", "3", 0 },
		{ "max_attrs", "1024", 1024 }, { "max_attrs", "1025", 0 },
		{ "max_conns_per_ip", "1", 1 }, { "max_conns_per_ip", "0", 0 },
		{ "max_conns_per_ip", "100000", 100000 },
		{ "max_conns_per_ip", "100001", 0 },
		{ "max_sasl_attempts", "1", 1 },
		{ "max_sasl_attempts", "0", 0 },
		{ "max_sasl_attempts", "10", 10 },
		{ "max_sasl_attempts", "11", 0 },
		{ "max_connections", "1", 1 }, { "max_connections", "0", 0 },
		{ "max_connections", "1000000", 1000000 },
		{ "max_connections", "1000001", 0 },
		/* no wrap-around on overflow */
		{ "max_connections", "18446744073709551617", 0 },
		{ "max_connections", "99999999999999999999999", 0 },
	};
	check_bound_cases(cases, sizeof(cases) / sizeof(cases[0]));
	load_err_with("shards: 65\n", 3,
		      "shards: '65' is out of range (0..64)");
	load_err_with("scram_iterations: 4095\n", 3,
		      "'4095' is out of range (4096..1000000)");
	load_err_with("scram_iterations: 1000001\n", 3, "is out of range");
	struct config *c = load_ok_with("scram_iterations: 4096\n");
	assert_int_equal(c->scram_iterations, 4096);
	conf_free(c);
	load_err("hosts: [localhost]\n"
		 "listeners: [{ type: c2s, address: 127.0.0.1, port: 0 }]\n",
		 2, "listeners[].port: '0' is out of range (1..65535)");
	load_err("hosts: [localhost]\n"
		 "listeners: [{ type: c2s, address: '::1', port: 65536 }]\n",
		 2, "is out of range");
}

static void test_sizes(void **state)
{
	(void)state;
	static const struct bound_case cases[] = {
		{ "max_stanza_size", "1024", 1024 },
		{ "max_stanza_size", "1024B", 1024 },
		{ "max_stanza_size", "1KiB", 1024 },
		{ "max_stanza_size", "1 KiB", 1024 },
		{ "max_stanza_size", "1023", 0 },
		{ "max_stanza_size", "1023B", 0 },
		{ "max_stanza_size", "0KiB", 0 },
		{ "max_stanza_size", "100000", 100000 },
		{ "max_stanza_size", "300KiB", 300 * 1024 },
		{ "max_stanza_size", "16MiB", 16 << 20 },
		{ "max_stanza_size", "16384KiB", 16 << 20 },
		{ "max_stanza_size", "16385KiB", 0 },
		{ "max_stanza_size", "16777217", 0 },
		{ "max_stanza_size", "1GiB", 0 },
		{ "max_stanza_size", "18014398509481984KiB", 0 },
		{ "max_stanza_size", "99999999999999999999GiB", 0 },
		{ "max_output", "64KiB", 64 << 10 },
		{ "max_output", "65535", 0 },
		{ "max_output", "256MiB", 256 << 20 },
		{ "max_output", "262144KiB", 256 << 20 },
		{ "max_output", "268435457B", 0 },
		{ "max_output", "1GiB", 0 },
		{ "max_output", "0GiB", 0 },
	};
	check_bound_cases(cases, sizeof(cases) / sizeof(cases[0]));
	load_err_with("limits: { max_stanza_size: 16385KiB }\n", 3,
		      "limits.max_stanza_size: '16385KiB' is out of range "
		      "(1KiB..16MiB)");
	const char *bad[] = {
		"256KB", "256kib", "256K", "256k", "2MB", "256 KiBs",
		"256KiB B", "1.5MiB",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char extra[128];
		snprintf(extra, sizeof(extra), "limits:\n  max_output: %s\n",
			 bad[i]);
		load_err_with(extra, 4, "limits.max_output: bad unit");
	}
	load_err_with("limits: {max_output: MiB}\n", 3,
		      "limits.max_output: expected a size like 1MiB");
	load_err_with("limits: {max_output: -1MiB}\n", 3, "expected a size");
	load_err_with("limits: {max_output: 01MiB}\n", 3, "expected a size");
}

static void test_durations(void **state)
{
	(void)state;
	static const struct bound_case cases[] = {
		{ "auth_timeout", "1s", 1000 },
		{ "auth_timeout", "1000ms", 1000 },
		{ "auth_timeout", "1500ms", 1500 },
		{ "auth_timeout", "999ms", 0 },
		{ "auth_timeout", "0s", 0 },
		{ "auth_timeout", "90s", 90000 },
		{ "auth_timeout", "5m", 300000 },
		{ "auth_timeout", "5 m", 300000 },
		{ "auth_timeout", "1h", 3600000 },
		{ "auth_timeout", "60m", 3600000 },
		{ "auth_timeout", "3600s", 3600000 },
		{ "auth_timeout", "3601s", 0 },
		{ "auth_timeout", "61m", 0 },
		{ "auth_timeout", "2h", 0 },
		{ "auth_timeout", "3600001ms", 0 },
		{ "auth_timeout", "99999999999999999999h", 0 },
	};
	check_bound_cases(cases, sizeof(cases) / sizeof(cases[0]));
	load_err_with("limits:\n  auth_timeout: 30\n", 4,
		      "limits.auth_timeout: bad or missing unit '' in '30' "
		      "(use ms, s, m, h or d)");
	const char *bad[] = { "30sec", "30S", "1h30m", "30 s s", "30w",
			      "30us" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char extra[128];
		snprintf(extra, sizeof(extra), "limits:\n  auth_timeout: %s\n",
			 bad[i]);
		load_err_with(extra, 4, "bad or missing unit");
	}
	load_err_with("limits: {auth_timeout: s}\n", 3,
		      "expected a duration like 30s");
}

static void test_missing_required(void **state)
{
	(void)state;
	load_err(LISTENER, 1, "missing required key 'hosts'");
	load_err("# comment\n\nhosts: [a]\n", 3,
		 "missing required key 'listeners'");
	load_err("", 1, "empty configuration");
	load_err("# only a comment\n", 1, "empty configuration");
	load_err("hosts: []\n" LISTENER, 1, "hosts: needs at least 1 entry");
	load_err("hosts: [a]\nlisteners: []\n", 2,
		 "listeners: needs at least 1 entry");
	load_err("hosts: [localhost]\n"
		 "listeners:\n"
		 "  - type: c2s\n"
		 "    address: 127.0.0.1\n", 3,
		 "missing required key 'listeners[].port'");
	load_err("hosts: [localhost]\n"
		 "listeners:\n"
		 "  - { type: c2s, port: 5222 }\n", 3,
		 "missing required key 'listeners[].address'");
	load_err("hosts: [localhost]\n"
		 "listeners:\n"
		 "  - { address: 127.0.0.1, port: 5222 }\n", 3,
		 "missing required key 'listeners[].type'");
	load_err("hosts:\n  - a.example\n  - tls: { cert: c, key: k }\n"
		 LISTENER, 3, "missing required key 'hosts[].name'");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	load_err_with("shards: 1\nlog_level: info\nshards: 2\n", 5,
		      "duplicate key 'shards'");
	load_err("hosts: [a]\n" LISTENER "hosts: [b]\n", 3,
		 "duplicate key 'hosts'");
	load_err_with("limits:\n  max_depth: 8\n  max_depth: 8\n", 5,
		      "duplicate key 'limits.max_depth'");
	load_err_with("limits: {}\nlimits: {}\n", 4, "duplicate key 'limits'");
	load_err("hosts: [a]\n"
		 "listeners:\n"
		 "  - { type: c2s, address: 127.0.0.1, port: 1,\n"
		 "      port: 2 }\n", 4, "duplicate key 'listeners[].port'");
	load_err("hosts:\n  - name: a\n    name: b\n" LISTENER, 3,
		 "duplicate key 'hosts[].name'");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	load_err("hosts: [localhost\n" LISTENER, 2, "YAML syntax error");
	load_err("hosts: [a]\nshards: 1: 2\n", 2, "YAML syntax error");
	load_err("hosts:\n\t- a\n", 2, "YAML syntax error");
	load_err("hosts:\n  - a\n - b\n", 3, "YAML syntax error");
	load_err(MINIMAL "limits:\n  max_depth: 8\n   max_attrs: 8\n", 5,
		 "YAML syntax error");
	/* the problem is at the end; the message says where it began */
	load_err(MINIMAL "data_dir: \"unterminated\n", 4,
		 "YAML syntax error: found unexpected end of stream while "
		 "scanning a quoted scalar at line 3");
	load_err(MINIMAL "shards: *undefined\n", 3, "YAML syntax error");
	load_err(MINIMAL "---\n" MINIMAL, 4, "more than one YAML document");
	load_err("hosts: [a]\n\xff\n", 2, "YAML syntax error");
}

static void test_hosts(void **state)
{
	(void)state;
	load_err("hosts:\n  - localhost\n  - example.org\n  - LocalHost.\n"
		 LISTENER, 4, "hosts: duplicate host 'localhost'");
	load_err("hosts:\n  - a.example\n  - { name: A.EXAMPLE }\n" LISTENER,
		 3, "duplicate host 'a.example'");
	load_err("hosts:\n  - exa mple.org\n" LISTENER, 2,
		 "hosts: invalid host name 'exa mple.org': invalid domain");
	load_err("hosts:\n  - a@b\n" LISTENER, 2, "invalid host name");
	load_err("hosts:\n  - { name: '-a.org' }\n" LISTENER, 2,
		 "invalid host name");
	load_err("hosts:\n  - name: a.org\n    tls: { cert: a.pem }\n"
		 LISTENER, 3,
		 "hosts[].tls: give both cert and key, or neither");
	load_err("hosts:\n  - name: a.org\n    tls:\n      key: a.key\n"
		 LISTENER, 4, "give both cert and key");
	load_err("hosts:\n  - name: a.org\n    tls:\n" LISTENER, 3,
		 "tls: no value");
	/* an empty tls mapping gives neither file */
	struct config *c = load_ok("hosts:\n  - name: a.org\n    tls: {}\n"
				   LISTENER);
	assert_null(c->host_confs[0].cert_file);
	assert_null(c->host_confs[0].key_file);
	conf_free(c);
	c = load_ok("hosts:\n  - name: a.org\n    tls: { cert: "
				   "/etc/a.pem, key: k/a.key }\n" LISTENER);
	assert_string_equal(c->host_confs[0].cert_file, "/etc/a.pem");
	assert_string_equal(c->host_confs[0].key_file, "k/a.key");
	conf_free(c);
}

static void test_listeners(void **state)
{
	(void)state;
	load_err("hosts: [a]\n"
		 "listeners: [{ type: c2s, address: localhost, port: 5222 }]\n",
		 2, "'localhost' is not a numeric IPv4 or IPv6 address");
	load_err("hosts: [a]\n"
		 "listeners: [{ type: c2s, address: '[::1]', port: 5222 }]\n",
		 2, "not a numeric");
	load_err("hosts: [a]\n"
		 "listeners: [{ type: c2s, address: 1.2.3, port: 5222 }]\n",
		 2, "not a numeric");
	load_err("hosts: [a]\n"
		 "listeners:\n"
		 "  - { type: c2s, address: 127.0.0.1, port: 5222 }\n"
		 "  - { type: c2s, address: 127.0.0.1, port: 5223 }\n"
		 "  - { type: c2s_tls, address: 127.0.0.1, port: 5222 }\n", 5,
		 "listeners: duplicate address and port 127.0.0.1 port 5222");
	load_err("hosts: [a]\n"
		 "listeners:\n"
		 "  - { type: c2s, address: '::1', port: 5222 }\n"
		 "  - { type: c2s, address: '0:0:0::1', port: 5222 }\n", 4,
		 "duplicate address and port ::1 port 5222");
	struct config *c = load_ok(
		"hosts: [a]\n"
		"listeners:\n"
		"  - { type: c2s, address: 127.0.0.1, port: 5222 }\n"
		"  - { type: c2s, address: '::', port: 5222 }\n"
		"  - { type: c2s, address: 0.0.0.0, port: 5222 }\n");
	assert_int_equal(c->nlisteners, 3);
	assert_string_equal(c->listeners[1].address, "::");
	conf_free(c);
}

static void test_listener_type_name(void **state)
{
	(void)state;
	assert_string_equal(listener_type_name(LISTENER_C2S), "c2s");
	assert_string_equal(listener_type_name(LISTENER_C2S_TLS), "c2s_tls");
	assert_string_equal(listener_type_name(LISTENER_COMPONENT),
			    "component");
	assert_string_equal(listener_type_name((enum listener_type)7), "?");
}

static void test_components(void **state)
{
	(void)state;
	struct config *c = load_ok(
		"hosts: [localhost]\n"
		"listeners:\n"
		"  - { type: component, address: 127.0.0.1, port: 5347 }\n"
		"components:\n"
		"  - { domain: GW.Localhost, secret: s3cret }\n"
		"  - domain: other.example\n"
		"    secret: \"two words\"\n");
	assert_int_equal(c->listeners[0].type, LISTENER_COMPONENT);
	assert_int_equal(c->ncomponents, 2);
	/* nameprep'd like hosts */
	assert_string_equal(c->components[0].domain, "gw.localhost");
	assert_string_equal(c->components[0].secret, "s3cret");
	assert_string_equal(c->components[1].domain, "other.example");
	assert_string_equal(c->components[1].secret, "two words");
	assert_int_equal(conf_find_component(c, "gw.localhost", 12), 0);
	assert_int_equal(conf_find_component(c, "other.example", 13), 1);
	assert_int_equal(conf_find_component(c, "gw.localhos", 11), -1);
	assert_int_equal(conf_find_component(c, "localhost", 9), -1);
	/* s2s's domains: the hosts, then the components */
	assert_int_equal(conf_ndomains(c), 3);
	assert_int_equal(conf_find_domain(c, "localhost", 9), 0);
	assert_int_equal(conf_find_domain(c, "gw.localhost", 12), 1);
	assert_int_equal(conf_find_domain(c, "other.example", 13), 2);
	assert_int_equal(conf_find_domain(c, "nowhere.example", 15), -1);
	assert_string_equal(conf_domain_name(c, 0), "localhost");
	assert_string_equal(conf_domain_name(c, 1), "gw.localhost");
	assert_string_equal(conf_domain_name(c, 2), "other.example");
	conf_free(c);

	/* none by default; an empty list is fine */
	c = load_ok(MINIMAL);
	assert_int_equal(c->ncomponents, 0);
	assert_null(c->components);
	conf_free(c);
	c = load_ok_with("components: []\n");
	assert_int_equal(c->ncomponents, 0);
	conf_free(c);

	load_err_with("components:\n  - { domain: a.example }\n", 4,
		      "missing required key 'components[].secret'");
	load_err_with("components:\n  - { secret: x }\n", 4,
		      "missing required key 'components[].domain'");
	load_err_with("components:\n  - { domain: a.example, secret: '' }\n",
		      4, "components[].secret: empty value");
	load_err_with("components:\n  - { domain: a.example, secret: }\n",
		      4, "components[].secret: no value");
	load_err_with("components:\n  - { domain: 'a b', secret: x }\n", 4,
		      "components: invalid domain 'a b'");
	load_err_with("components:\n  - { domain: a@b, secret: x }\n", 4,
		      "components: invalid domain");
	load_err_with("components:\n  - { domain: a.example, secret: x,"
		      " port: 1 }\n", 4, "unknown key 'components[].port'");
	load_err_with("components: [a.example]\n", 3,
		      "components: an entry is a mapping");
	load_err_with("components:\n"
		      "  - { domain: a.example, secret: x }\n"
		      "  - { domain: A.Example, secret: y }\n",
		      5, "components: duplicate domain 'a.example'");
	/* a host cannot be a component, whichever list comes first */
	load_err_with("components:\n  - { domain: LocalHost, secret: x }\n",
		      4, "'localhost' is both a host and a component");
	load_err("components:\n  - { domain: b.example, secret: x }\n"
		 "hosts: [a.example, B.example]\n" LISTENER, 3,
		 "'b.example' is both a host and a component");
}

static void test_find_host(void **state)
{
	(void)state;
	struct config *c = load_ok("hosts: [localhost, Example.org, b.c]\n"
				   LISTENER);
	assert_int_equal(conf_find_host(c, "localhost", 9), 0);
	assert_int_equal(conf_find_host(c, "example.org", 11), 1);
	assert_int_equal(conf_find_host(c, "b.c", 3), 2);
	assert_int_equal(conf_find_host(c, "Example.org", 11), -1);
	assert_int_equal(conf_find_host(c, "local", 5), -1);
	assert_int_equal(conf_find_host(c, "b.cd", 4), -1);
	/* the length counts, not a NUL */
	assert_int_equal(conf_find_host(c, "b.c.d", 3), 2);
	assert_int_equal(conf_find_host(c, "", 0), -1);
	conf_free(c);
}

static char *write_file(const char *dir, const char *name, const char *text)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *path = malloc(n);
	assert_non_null(path);
	snprintf(path, n, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void check_path(const char *got, const char *dir, const char *rel)
{
	char want[4096];
	snprintf(want, sizeof(want), "%s/%s", dir, rel);
	assert_string_equal(got, want);
}

static void test_paths(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_conf.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = write_file(dir, "s.yml",
		"hosts:\n"
		"  - name: a.org\n"
		"    tls: { cert: certs/a.pem, key: /abs/a.key }\n"
		"  - b.org\n" LISTENER);
	struct config *c = NULL;
	char *err = NULL;
	if (conf_load(path, &c, &err) != 0)
		fail_msg("%s", err);
	assert_string_equal(c->path, path);
	check_path(c->data_dir, dir, "data"); /* the default, too */
	check_path(c->host_confs[0].cert_file, dir, "certs/a.pem");
	assert_string_equal(c->host_confs[0].key_file, "/abs/a.key");
	conf_free(c);
	free(path);

	/* a relative config path gives relative paths */
	path = write_file(dir, "r.yml", MINIMAL "data_dir: var/db\n");
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/tmp"), 0);
	const char *rel = strrchr(dir, '/') + 1;
	char relpath[256];
	snprintf(relpath, sizeof(relpath), "%s/r.yml", rel);
	assert_int_equal(conf_load(relpath, &c, &err), 0);
	check_path(c->data_dir, rel, "var/db");
	conf_free(c);
	/* no directory at all: as given (like conf_load_string) */
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(conf_load("r.yml", &c, &err), 0);
	assert_string_equal(c->data_dir, "var/db");
	conf_free(c);
	assert_int_equal(chdir(cwd), 0);
	unlink(path);
	free(path);

	/* errors in a file name the file */
	path = write_file(dir, "bad.yml", MINIMAL "shards: 99\n");
	assert_int_equal(conf_load(path, &c, &err), -1);
	assert_null(c);
	char want[4096];
	snprintf(want, sizeof(want), "%s:3: shards: '99' is out of range",
		 path);
	assert_int_equal(strncmp(err, want, strlen(want)), 0);
	free(err);
	unlink(path);
	free(path);

	path = write_file(dir, "missing.yml", "");
	unlink(path);
	assert_int_equal(conf_load(path, &c, &err), -1);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	free(err);
	free(path);
	path = write_file(dir, "s.yml", "");
	unlink(path);
	free(path);
	assert_int_equal(rmdir(dir), 0);
}

/* Reads $SRCDIR/rel into a malloc'ed string. */
static char *read_srcdir_file(const char *rel)
{
	const char *srcdir = getenv("SRCDIR");
	if (srcdir == NULL)
		fail_msg("SRCDIR is not set (run through meson test)");
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", srcdir, rel);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	char *data = malloc(1 << 20);
	assert_non_null(data);
	size_t n = fread(data, 1, (1 << 20) - 1, f);
	fclose(f);
	data[n] = '\0';
	return data;
}

static char *reference(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	conf_write_reference(f);
	fclose(f);
	return text;
}

static void test_reference_is_docs(void **state)
{
	(void)state;
	char *docs = read_srcdir_file("docs/config.md");
	char *ref = reference();
	if (strcmp(docs, ref) != 0)
		fail_msg("docs/config.md is stale: regenerate it with "
			 "`stanzad --config-reference > docs/config.md`");
	/* a sanity check that the reference is the one of the table */
	assert_non_null(strstr(ref, "| `limits.auth_timeout` | duration | "
				    "`30s` | 1s..1h |"));
	assert_non_null(strstr(ref, "do not edit"));
	free(docs);
	free(ref);
}

/* mam.retention: a duration in days too; up to 100 years. */
static void test_mam_retention(void **state)
{
	(void)state;
	struct config *c = load_ok_with("mam:\n  retention: 30d\n");
	assert_int_equal(c->mam.retention_ms, 30ull * 24 * 3600 * 1000);
	conf_free(c);
	c = load_ok_with("mam:\n  retention: 90m\n");
	assert_int_equal(c->mam.retention_ms, 90ull * 60 * 1000);
	conf_free(c);
	load_err_with("mam:\n  retention: 36501d\n", 4, "out of range");
	load_err_with("mam:\n  retention: 30\n", 4, "bad or missing unit");
	load_err_with("mam:\n  keep: 30d\n", 4, "mam.keep");
	c = load_ok_with("mam:\n  queue_high: 20\n");
	assert_int_equal(c->mam.queue_high, 20);
	conf_free(c);
	load_err_with("mam:\n  queue_high: 1\n", 4, "out of range");
	c = load_ok_with("mam:\n  enabled: false\n");
	assert_false(c->mam.enabled);
	conf_free(c);
}

static void test_example_file(void **state)
{
	(void)state;
	char *text = read_srcdir_file("stanzad.example.yml");
	struct config *c = NULL;
	char *err = NULL;
	if (conf_load_string("stanzad.example.yml", text, strlen(text), &c,
			     &err) != 0)
		fail_msg("%s", err);
	check_defaults(c);
	/* scripts/run starts the server with this file as it is: only hosts
	 * that need no files of their own. */
	assert_int_equal(c->nhosts, 1);
	assert_string_equal(c->hosts[0], "localhost");
	assert_null(c->host_confs[0].cert_file);
	assert_true(c->nlisteners >= 2);
	conf_free(c);

	/* and through conf_load: data_dir is next to the file */
	char path[4096];
	snprintf(path, sizeof(path), "%s/stanzad.example.yml",
		 getenv("SRCDIR"));
	assert_int_equal(conf_load(path, &c, &err), 0);
	check_path(c->data_dir, getenv("SRCDIR"), "data");
	conf_free(c);

	/* every key of the reference appears in the example */
	char *ref = reference();
	for (char *p = ref; (p = strstr(p, "\n| `")) != NULL; p++) {
		char *key = p + 4, *end = strchr(key, '`');
		char *dot = memrchr(key, '.', (size_t)(end - key));
		char name[64];
		snprintf(name, sizeof(name), "%.*s:",
			 (int)(end - (dot ? dot + 1 : key)),
			 dot ? dot + 1 : key);
		if (strstr(text, name) == NULL)
			fail_msg("stanzad.example.yml does not show %s", name);
	}
	free(ref);
	free(text);
}

static void test_s2s(void **state)
{
	(void)state;
	struct config *c = load_ok(MINIMAL);
	assert_true(c->s2s.dialback);
	assert_true(c->s2s.bidi);
	conf_free(c);
	c = load_ok_with("s2s: { bidi: false, dialback: false }\n");
	assert_false(c->s2s.bidi);
	assert_false(c->s2s.dialback);
	conf_free(c);
	load_err_with("s2s: { bidi: 1 }\n", 3, "s2s.bidi");
}

static void test_pubsub(void **state)
{
	(void)state;
	struct config *c = load_ok_with("pubsub:\n"
					"  subdomain: pubsub.x-1\n"
					"  max_items: 10\n"
					"  max_nodes: 3\n");
	assert_string_equal(c->pubsub.subdomain, "pubsub.x-1");
	assert_int_equal(c->pubsub.max_items, 10);
	assert_int_equal(c->pubsub.max_nodes, 3);
	conf_free(c);
	static const char *const bad[] = { "Pubsub", "a..b", ".a", "a.",
					   "a b", "a/b" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char yaml[128];
		snprintf(yaml, sizeof(yaml), "pubsub:\n  subdomain: %s\n",
			 bad[i]);
		load_err_with(yaml, 4, "pubsub: subdomain");
	}
	load_err_with("pubsub:\n  subdomain: \"\"\n", 4, "empty value");
	load_err_with("pubsub:\n  max_items: 0\n", 4, "max_items");
	load_err_with("pubsub:\n  max_items: 10001\n", 4, "max_items");
}

static void test_dns(void **state)
{
	(void)state;
	struct config *c = load_ok(MINIMAL);
	assert_null(c->dns.hosts_file);
	assert_int_equal(c->dns.nupstreams, 0);
	assert_null(c->dns.trust_anchor_file);
	assert_int_equal(c->dns.timeout_ms, 10000);
	conf_free(c);
	c = load_ok_with("dns:\n"
			 "  upstream: [ 127.0.0.1, \"127.0.0.1@5353\", "
			 "\"::1@53\", 2001:db8::53 ]\n"
			 "  timeout: 250ms\n"
			 "  hosts: /etc/hosts\n"
			 "  trust_anchor_file: /var/lib/unbound/root.key\n");
	assert_int_equal(c->dns.nupstreams, 4);
	assert_string_equal(c->dns.upstreams[0], "127.0.0.1");
	assert_string_equal(c->dns.upstreams[1], "127.0.0.1@5353");
	assert_string_equal(c->dns.upstreams[2], "::1@53");
	assert_string_equal(c->dns.upstreams[3], "2001:db8::53");
	assert_int_equal(c->dns.timeout_ms, 250);
	assert_string_equal(c->dns.hosts_file, "/etc/hosts");
	assert_string_equal(c->dns.trust_anchor_file,
			    "/var/lib/unbound/root.key");
	conf_free(c);
	static const char *const bad[] = {
		"resolver.example", "127.0.0.1@", "127.0.0.1@0",
		"127.0.0.1@65536", "127.0.0.1@053", "127.0.0.1@53x",
		"127.0.0.1:53", "@53", "::1@99999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[128];
		snprintf(line, sizeof(line), "dns: { upstream: [ \"%s\" ] }\n",
			 bad[i]);
		load_err_with(line, 3, "is not a numeric address");
	}
	load_err_with("dns: { upstream: [] }\n", 3, "needs at least 1");
	load_err_with("dns: { upstream: [ [a] ] }\n", 3,
		      "dns.upstream: an entry is an address");
	load_err_with("dns: { timeout: 10ms }\n", 3, "out of range");
	load_err_with("dns: { hosts: \"\" }\n", 3, "empty value");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_null_values),
		cmocka_unit_test(test_limit_bounds),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_listeners),
		cmocka_unit_test(test_listener_type_name),
		cmocka_unit_test(test_components),
		cmocka_unit_test(test_find_host),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_reference_is_docs),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_s2s),
		cmocka_unit_test(test_pubsub),
		cmocka_unit_test(test_mam_retention),
		cmocka_unit_test(test_example_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
