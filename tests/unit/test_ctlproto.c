/*
 * test_ctlproto.c - the control socket's request parser (src/admin/
 * ctlproto.c): every verb, argument counts, separators and the bytes and
 * lengths it refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/ctlproto.h"
#include "core/conf.h"

static int parse(const char *line, struct ctl_req *req, const char **why)
{
	return ctl_req_parse(str_c(line), req, why);
}

static void verbs_without_arguments(void **state)
{
	(void)state;
	struct ctl_req req;
	const char *why;
	assert_int_equal(parse("ping", &req, &why), 0);
	assert_int_equal(req.verb, CTL_PING);
	assert_int_equal(req.nargs, 0);
	assert_int_equal(parse("status", &req, &why), 0);
	assert_int_equal(req.verb, CTL_STATUS);
	assert_int_equal(parse("metrics\r", &req, &why), 0);
	assert_int_equal(req.verb, CTL_METRICS);
	assert_string_equal(ctl_verb_name(CTL_METRICS), "metrics");
	assert_int_equal(parse("status now", &req, &why), -1);
	assert_string_equal(why, "wrong number of arguments");
}

static void verbs_with_a_jid(void **state)
{
	(void)state;
	struct ctl_req req;
	const char *why;
	assert_int_equal(parse("kick alice@example.org/phone", &req, &why),
			 0);
	assert_int_equal(req.verb, CTL_KICK);
	assert_int_equal(req.nargs, 1);
	assert_true(str_eq_c(req.args[0], "alice@example.org/phone"));
	/* repeated and trailing spaces separate, they are not arguments */
	assert_int_equal(parse("user-deleted   bob@example.org  ", &req,
			       &why), 0);
	assert_int_equal(req.verb, CTL_USER_DELETED);
	assert_true(str_eq_c(req.args[0], "bob@example.org"));
	/* UTF-8 is allowed in a word */
	assert_int_equal(parse("kick j\xc3\xbcrgen@example.org", &req, &why),
			 0);
	assert_int_equal(req.args[0].len, strlen("j\xc3\xbcrgen@example.org"));
	assert_int_equal(parse("kick", &req, &why), -1);
	assert_string_equal(why, "wrong number of arguments");
	assert_int_equal(parse("kick a b", &req, &why), -1);
	assert_string_equal(why, "wrong number of arguments");
	assert_int_equal(parse("kick a b c d", &req, &why), -1);
	assert_string_equal(why, "too many arguments");
}

static void refused(void **state)
{
	(void)state;
	struct ctl_req req;
	const char *why;
	assert_int_equal(parse("", &req, &why), -1);
	assert_string_equal(why, "empty request");
	assert_int_equal(parse("   \r", &req, &why), -1);
	assert_string_equal(why, "empty request");
	assert_int_equal(parse("STATUS", &req, &why), -1);
	assert_string_equal(why, "unknown request");
	assert_int_equal(parse("stat", &req, &why), -1);
	assert_int_equal(parse("statuss", &req, &why), -1);
	assert_int_equal(parse("status\t", &req, &why), -1);
	assert_string_equal(why, "control character in request");
	assert_int_equal(parse("kick a\x7f", &req, &why), -1);
	assert_int_equal(ctl_req_parse(STR("kick a\0b", 8), &req, &why), -1);
	assert_string_equal(why, "control character in request");
	/* a CR is only allowed last */
	assert_int_equal(parse("ping\r\r", &req, &why), -1);
}

static void length_limit(void **state)
{
	(void)state;
	struct ctl_req req;
	const char *why;
	char line[CTL_LINE_MAX + 2];
	memset(line, 'a', sizeof(line));
	memcpy(line, "kick ", 5);
	assert_int_equal(ctl_req_parse(STR(line, CTL_LINE_MAX - 1), &req,
				       &why), 0);
	assert_int_equal(req.args[0].len, CTL_LINE_MAX - 1 - 5);
	assert_int_equal(ctl_req_parse(STR(line, CTL_LINE_MAX), &req, &why),
			 -1);
	assert_string_equal(why, "request too long");
}

static void socket_path(void **state)
{
	(void)state;
	struct config c = { .data_dir = "/var/lib/stanzad" };
	char *p = control_path(&c);
	assert_string_equal(p, "/var/lib/stanzad/stanzad.ctl");
	free(p);
	c.control_socket = "/run/stanzad.sock";
	p = control_path(&c);
	assert_string_equal(p, "/run/stanzad.sock");
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(verbs_without_arguments),
		cmocka_unit_test(verbs_with_a_jid),
		cmocka_unit_test(refused),
		cmocka_unit_test(length_limit),
		cmocka_unit_test(socket_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
