/*
 * test_muc_archive.c - what the archives of group chat rooms add: the
 * room option that turns archiving off and on (both field names, kept in
 * the room's record), and the table calls rooms use beyond the account
 * archive's (a stored message read and replaced by its tombstone, an
 * archive dropped up to an id, the archives of a service listed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/conf.h"
#include "core/server.h"
#include "mod/muc/muc.h"
#include "store/mam.h"
#include "xml/dataform.h"
#include "xml/parser.h"
#include "xmpp/ns.h"
#include "tmpstore.h"

static struct config conf = {
	.muc = { .max_occupants = 300, .max_history = 10 },
};

static int apply(const char *var, const char *value, struct room_cfg *cfg)
{
	struct arena *a = arena_new(0);
	char *xml = NULL;
	assert_true(asprintf(&xml, "<x xmlns='jabber:x:data' type='submit'>"
			     "<field var='%s'><value>%s</value></field></x>",
			     var, value) > 0);
	struct xml_elem *x = xml_parse_elem(a, str_c(xml), STR_LIT(NS_CLIENT));
	struct dataform f;
	assert_non_null(x);
	assert_int_equal(dataform_parse(a, x, &f), 0);
	int rc = muc_config_apply(&f, cfg);
	free(xml);
	arena_destroy(&a);
	return rc;
}

static void test_option(void **state)
{
	(void)state;
	server.conf = &conf;
	struct room_cfg c = { .max_users = 10 };
	assert_false(c.no_archive); /* on unless turned off */
	assert_int_equal(apply("muc#roomconfig_enablearchiving", "0", &c), 0);
	assert_true(c.no_archive);
	assert_int_equal(apply("mam", "true", &c), 0); /* ejabberd's name */
	assert_false(c.no_archive);
	assert_int_equal(apply("mam", "false", &c), 0);
	assert_true(c.no_archive);
	assert_int_equal(apply("muc#roomconfig_enablearchiving", "1", &c), 0);
	assert_false(c.no_archive);
	assert_int_equal(apply("muc#roomconfig_enablearchiving", "sometimes",
			       &c), -1);
	muc_cfg_free(&c);
}

static void record_keeps(bool no_archive)
{
	struct room r = { .node = "lobby", .jid = "lobby@c.h",
			  .domain = "c.h" };
	r.cfg.persistent = true;
	r.cfg.no_archive = no_archive;
	size_t n;
	char *rec = muc_room_record(&r, &n);
	struct room b = { .node = "lobby", .jid = "lobby@c.h",
			  .domain = "c.h" };
	assert_int_equal(muc_room_from_record(&b, rec, n), 0);
	assert_true(b.cfg.no_archive == no_archive);
	assert_true(b.cfg.persistent);
	free(rec);
	muc_cfg_free(&b.cfg);
	hmap_clear(&b.affs);
}

static void test_record(void **state)
{
	(void)state;
	server.conf = &conf;
	record_keeps(true);
	record_keeps(false);
	/* A record from before the option: archiving on. */
	struct room b = { .node = "old", .jid = "old@c.h", .domain = "c.h" };
	const char *old = "<room xmlns='urn:stanzad:muc' max='5' flags='p'/>";
	assert_int_equal(muc_room_from_record(&b, old, strlen(old)), 0);
	assert_false(b.cfg.no_archive);
	muc_cfg_free(&b.cfg);
}

/* ---- the tables ---- */

static struct tmpstore db;
static struct store *st;

static int open_db(void **state)
{
	(void)state;
	static const struct store_schema *const schemas[] = { &mam_schema,
							      NULL };
	assert_int_equal(tmpstore_open(&db, "test_muc_archive", schemas, &st), 0);
	return 0;
}

static int close_db(void **state)
{
	(void)state;
	tmpstore_close(&db, &st);
	return 0;
}

static int64_t room(const char *node)
{
	int64_t uid;
	assert_int_equal(mam_store_user(st, "conf.h", node, true, &uid), 0);
	return uid;
}

static void append(int64_t uid, int64_t id, const char *v)
{
	assert_int_equal(mam_store_append(st, uid, id, "r@conf.h", "nick", v,
					  strlen(v)),
			 0);
}

static void assert_value(int64_t uid, int64_t id, const char *want)
{
	struct buf b = { 0 };
	assert_int_equal(mam_store_get(st, uid, id, &b), 0);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data, want, b.len);
	buf_reset(&b);
}

static void test_get_replace(void **state)
{
	(void)state;
	int64_t a = room("a"), b = room("b");
	append(a, 10, "<message><body>secret</body></message>");
	append(b, 11, "<message><body>other</body></message>");
	assert_value(a, 10, "<message><body>secret</body></message>");
	struct buf none = { 0 };
	/* An id of another archive is not this one's. */
	assert_int_equal(mam_store_get(st, a, 11, &none), 1);
	assert_int_equal(none.len, 0);
	const char *t = "<message><retracted/></message>";
	assert_int_equal(mam_store_replace(st, a, 10, t, strlen(t)), 0);
	assert_value(a, 10, t);
	assert_int_equal(mam_store_replace(st, a, 11, t, strlen(t)), 1);
	assert_value(b, 11, "<message><body>other</body></message>");
}

struct listed {
	char names[8][16];
	size_t n;
};

static int list(int64_t uid, const char *user, void *ud)
{
	(void)uid;
	struct listed *l = ud;
	snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", user);
	return 0;
}

static void test_drop_and_list(void **state)
{
	(void)state;
	int64_t c = room("c"), d = room("d");
	append(c, 20, "<m/>");
	append(c, 21, "<m/>");
	append(c, 30, "<m/>"); /* after the drop's id: a new room's */
	append(d, 22, "<m/>");
	struct listed l = { 0 };
	assert_int_equal(mam_store_archives(st, "conf.h", list, &l), 0);
	assert_int_equal(l.n, 4); /* a, b, c, d */
	assert_int_equal(mam_store_drop(st, c, 25), 0);
	assert_int_equal(mam_store_exists(st, c, 20), 1);
	assert_int_equal(mam_store_exists(st, c, 21), 1);
	assert_int_equal(mam_store_exists(st, c, 30), 0);
	assert_int_equal(mam_store_exists(st, d, 22), 0);
	int64_t uid;
	assert_int_equal(mam_store_user(st, "conf.h", "c", false, &uid), 0);
	/* Everything: the key goes too. */
	assert_int_equal(mam_store_drop(st, c, INT64_MAX), 0);
	assert_int_equal(mam_store_user(st, "conf.h", "c", false, &uid), 1);
	memset(&l, 0, sizeof(l));
	assert_int_equal(mam_store_archives(st, "conf.h", list, &l), 0);
	assert_int_equal(l.n, 3);
	for (size_t i = 0; i < l.n; i++)
		assert_string_not_equal(l.names[i], "c");
	memset(&l, 0, sizeof(l));
	assert_int_equal(mam_store_archives(st, "elsewhere", list, &l), 0);
	assert_int_equal(l.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option),
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_get_replace),
		cmocka_unit_test(test_drop_and_list),
	};
	return cmocka_run_group_tests(tests, open_db, close_db);
}
