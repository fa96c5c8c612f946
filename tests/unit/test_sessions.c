/*
 * test_sessions.c - the session table's revocation of deleted accounts
 * (sessions_revoke, and sessions_bind refusing a login older than it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "router/sessions.h"

static int setup(void **state)
{
	(void)state;
	sessions_init(2);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sessions_fini();
	return 0;
}

static int bind_at(const char *bare, const char *res, uint64_t conn_id,
		   uint64_t authed_at)
{
	struct sess_ref old, ref = { .conn_id = conn_id,
				     .authed_at = authed_at };
	return sessions_bind(str_c(bare), str_c(res), ref, &old);
}

static void revoke_returns_the_bindings(void **state)
{
	(void)state;
	assert_int_equal(bind_at("a@x", "one", 1, 100), 0);
	assert_int_equal(bind_at("a@x", "two", 2, 100), 0);
	assert_int_equal(bind_at("b@x", "one", 3, 100), 0);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n = sessions_revoke(str_c("a@x"), 200, refs, 64);
	assert_int_equal(n, 2);
	assert_true((refs[0].conn_id == 1 && refs[1].conn_id == 2) ||
		    (refs[0].conn_id == 2 && refs[1].conn_id == 1));
	/* the table is not changed: the kicked sessions unbind themselves */
	assert_int_equal(sessions_count(), 3);
	assert_int_equal(sessions_revoke(str_c("nobody@x"), 200, refs, 64),
			 0);
}

static void older_logins_cannot_bind(void **state)
{
	(void)state;
	struct sess_ref refs[4];
	sessions_revoke(str_c("a@x"), 1000, refs, 4);
	/* began before (or at) the revocation: refused */
	assert_int_equal(bind_at("a@x", "r", 1, 999), -2);
	assert_int_equal(bind_at("a@x", "r", 1, 1000), -2);
	assert_int_equal(bind_at("a@x", "r", 1, 0), -2);
	assert_false(sessions_has(str_c("a@x"), str_c("r")));
	/* began after: the account was made again, it binds */
	assert_int_equal(bind_at("a@x", "r", 2, 1001), 0);
	assert_true(sessions_has(str_c("a@x"), str_c("r")));
	/* other accounts are not affected */
	assert_int_equal(bind_at("b@x", "r", 3, 5), 0);
	/* a later revocation counts from its own time */
	sessions_revoke(str_c("a@x"), 2000, refs, 4);
	assert_int_equal(bind_at("a@x", "s", 4, 1500), -2);
	assert_int_equal(bind_at("a@x", "s", 4, 2500), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(revoke_returns_the_bindings,
						setup, teardown),
		cmocka_unit_test_setup_teardown(older_logins_cannot_bind,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
