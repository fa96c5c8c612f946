/*
 * test_roster.c - roster storage with versioning (mod/roster/roster_store.c,
 * RFC 6121 §2.6): version strings, per-item versions, tombstones of
 * removals and their bound, the history floor, and rows written before
 * versioning (the schema at its second migration) loading and migrating.
 *
 * Every test runs on a fresh database in a directory under /tmp, removed
 * afterwards; changes go through store_begin/commit as the server's do.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "mod/roster/roster-private.h"
#include "store/shapes.h"
#include "store/store.h"
#include "xml/parser.h"

#define HOST "localhost"
#define USER "alice"

/* The roster schema as builds before versioning had it: its first two
 * migrations, copied, so a database can be made the old way. */
static const char *const old_migrations[] = {
	"CREATE TABLE roster (host TEXT NOT NULL, user TEXT NOT NULL, "
	"key TEXT NOT NULL, value BLOB NOT NULL, "
	"PRIMARY KEY (host, user, key))",
	"CREATE TABLE roster_version (host TEXT NOT NULL, user TEXT NOT NULL, "
	"value BLOB NOT NULL, PRIMARY KEY (host, user))",
	NULL,
};
static const struct store_schema old_schema = {
	.name = "roster",
	.migrations = old_migrations,
	.user_tables = (const char *const[]){ "roster", "roster_version",
					      NULL },
};
static const struct store_schema *const old_schemas[] = { &old_schema, NULL };
static const struct store_schema *const new_schemas[] = { &roster_schema,
							  NULL };

/* ---- fixture ---- */

struct fx {
	char root[64];
	char data[96];
	struct store *st;
	struct arena *a;
};

static struct store *open_ok(const char *data)
{
	struct store *st = NULL;
	char *error = NULL;
	if (store_open(data, &st, &error) != 0)
		fail_msg("store_open: %s", error ? error : "(no message)");
	return st;
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/test_roster.XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->data, sizeof(f->data), "%s/data", f->root);
	f->a = arena_new(0);
	*state = f;
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	if (f->st != NULL)
		store_close(f->st);
	store_register_schemas(NULL);
	arena_destroy(&f->a);
	int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

static void open_new(struct fx *f)
{
	store_register_schemas(new_schemas);
	f->st = open_ok(f->data);
}

/* ---- helpers: one change, as the server makes it ---- */

static uint64_t set_item(struct fx *f, const char *jid, const char *name,
			 enum sub_state state)
{
	assert_int_equal(store_begin(f->st), 0);
	struct xml_elem *it;
	int rc = roster_item_load(f->st, HOST, USER, jid, f->a, &it);
	assert_true(rc == 0 || rc == 1);
	if (it == NULL)
		it = roster_item_new(f->a, str_c(jid));
	xml_attr_set(f->a, it, "name", name ? str_c(name) : STR_NULL);
	roster_item_set_state(f->a, it, (struct sub_item){
		.state = state, .in_roster = true });
	assert_int_equal(roster_item_save(f->st, HOST, USER, jid, it), 0);
	uint64_t ver;
	assert_int_equal(roster_version_bump(f->st, HOST, USER, &ver), 0);
	assert_int_equal(store_commit(f->st), 0);
	return ver;
}

static uint64_t remove_item(struct fx *f, const char *jid)
{
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(roster_item_save(f->st, HOST, USER, jid, NULL), 0);
	uint64_t ver;
	assert_int_equal(roster_version_bump(f->st, HOST, USER, &ver), 0);
	assert_int_equal(store_commit(f->st), 0);
	return ver;
}

static int changes(struct fx *f, uint64_t since, struct roster_change **ch,
		   size_t *n)
{
	return roster_changes_since(f->st, HOST, USER, since, f->a, ch, n);
}

static void assert_change(const struct roster_change *c, uint64_t ver,
			  const char *jid, const char *sub)
{
	assert_int_equal(c->ver, ver);
	assert_true(str_eq_c(xml_attr_get(c->item, "jid"), jid));
	assert_true(str_eq_c(xml_attr_get(c->item, "subscription"), sub));
	/* client form: none of the internal attributes */
	assert_null(xml_attr_get(c->item, "ver").p);
	assert_null(xml_attr_get(c->item, "pending-in").p);
	assert_null(xml_attr_get(c->item, "in-roster").p);
}

static int count_one(const char *key, const void *value, size_t len,
		     void *ud)
{
	(void)key; (void)value; (void)len;
	++*(size_t *)ud;
	return 0;
}

static size_t tomb_count(struct fx *f)
{
	size_t n = 0;
	assert_int_equal(store_map_all(f->st, "roster_tomb", HOST, USER,
				       count_one, &n), 0);
	return n;
}

/* ---- tests ---- */

static void test_ver_parse(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int rc;
		uint64_t v;
	} cases[] = {
		{ "0", 0, 0 }, { "7", 0, 7 }, { "1234567890", 0, 1234567890 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -1, 0 },
		{ "99999999999999999999", -1, 0 },
		{ "123456789012345678901", -1, 0 },
		{ "", -1, 0 }, { "007", -1, 0 }, { "00", -1, 0 },
		{ "+7", -1, 0 }, { "-1", -1, 0 }, { " 7", -1, 0 },
		{ "7 ", -1, 0 }, { "7a", -1, 0 }, { "0x10", -1, 0 },
		{ "ver14", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 4242;
		int rc = roster_ver_parse(str_c(cases[i].s), &v);
		if (rc != cases[i].rc)
			fail_msg("'%s': %d", cases[i].s, rc);
		if (rc == 0)
			assert_int_equal(v, cases[i].v);
		else
			assert_int_equal(v, 4242);
	}
	uint64_t v;
	assert_int_equal(roster_ver_parse(STR_NULL, &v), -1);
	/* not NUL-terminated: only len bytes count */
	assert_int_equal(roster_ver_parse(STR("129", 2), &v), 0);
	assert_int_equal(v, 12);
}

static struct str serialize(struct arena *a, const struct xml_elem *e)
{
	struct buf b = { .max = 64 * 1024 };
	assert_int_equal(xml_serialize(&b, e, STR_LIT(NS_ROSTER)), 0);
	struct str s = arena_strdup(a, buf_str(&b));
	buf_reset(&b);
	return s;
}

/* A kept request: its children are kept (those that fit in
 * ROSTER_REQUEST_MAX, in order), survive a store round trip, are never
 * shown to clients, and go when the request is answered. */
static void test_kept_request(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct str big = str_c(arena_printf(a, "<presence xmlns='jabber:client' "
		"type='subscribe'><status>please</status><x xmlns='ext'>%0*d"
		"</x><nick xmlns='http://jabber.org/protocol/nick'>Leo</nick>"
		"</presence>", ROSTER_REQUEST_MAX, 0));
	struct xml_elem *sub = xml_parse_elem(a, big, STR_LIT("jabber:client"));
	assert_non_null(sub);
	struct xml_elem *it = roster_item_new(a, STR_LIT("leo@example.org"));
	struct sub_item pending = { .state = SUB_NONE_PENDING_IN };
	roster_item_set_state(a, it, pending);
	roster_item_keep_request(a, it, sub);

	struct xml_elem *back = xml_parse_elem(a, serialize(a, it),
					       STR_LIT(NS_ROSTER));
	const struct xml_elem *req = roster_item_request(back);
	assert_non_null(req);
	assert_int_equal(xml_child_count(req), 2); /* <x/> did not fit */
	struct xml_elem *status = xml_first_child_elem(req);
	assert_true(str_eq_c(status->name, "status"));
	assert_true(str_eq_c(status->ns, "jabber:client"));
	assert_true(str_eq_c(xml_next_elem(status)->name, "nick"));
	assert_true(roster_item_state(back).state == SUB_NONE_PENDING_IN);

	struct str client = serialize(a, roster_item_client(a, back));
	assert_null(memmem(client.p, client.len, "request", 7));
	assert_null(memmem(client.p, client.len, "please", 6));

	roster_item_set_state(a, back, (struct sub_item){ .state = SUB_FROM });
	assert_null(roster_item_request(back));
	arena_destroy(&a);
}

/* Rows of a database written before versioning load, keep their
 * meaning, and the history starts at the version they had. */
static void test_old_rows(void **state)
{
	struct fx *f = *state;
	store_register_schemas(old_schemas);
	struct store *old = open_ok(f->data);
	/* What the old build stored: serialized in jabber:iq:roster, no
	 * ver, internal attributes for a pending request. */
	static const char a[] = "<item jid='a@x' subscription='both' "
				"name='A'><group>G</group></item>";
	static const char p[] = "<item jid='p@x' subscription='none' "
				"pending-in='true' in-roster='false'/>";
	assert_int_equal(store_map_set(old, "roster", HOST, USER, "a@x", a,
				       strlen(a)), 0);
	assert_int_equal(store_map_set(old, "roster", HOST, USER, "p@x", p,
				       strlen(p)), 0);
	assert_int_equal(store_kv_set(old, "roster_version", HOST, USER, "7",
				      1), 0);
	store_close(old);

	open_new(f);
	struct xml_elem *it;
	assert_int_equal(roster_item_load(f->st, HOST, USER, "a@x", f->a, &it),
			 0);
	assert_int_equal(roster_item_state(it).state, SUB_BOTH);
	assert_true(roster_item_visible(it));
	assert_int_equal(roster_item_ver(it), 0);
	assert_true(str_eq_c(xml_attr_get(it, "name"), "A"));
	assert_int_equal(roster_item_load(f->st, HOST, USER, "p@x", f->a, &it),
			 0);
	assert_false(roster_item_visible(it));
	assert_int_equal(roster_item_state(it).state, SUB_NONE_PENDING_IN);
	uint64_t ver;
	assert_int_equal(roster_version_load(f->st, HOST, USER, &ver), 0);
	assert_int_equal(ver, 7);

	struct roster_change *ch;
	size_t n;
	/* Before the migration nothing says what changed when. */
	assert_int_equal(changes(f, 6, &ch, &n), 1);
	assert_int_equal(changes(f, 0, &ch, &n), 1);
	assert_int_equal(changes(f, 7, &ch, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(changes(f, 8, &ch, &n), 1); /* never given */

	/* From there on, it does. */
	assert_int_equal(set_item(f, "a@x", "A2", SUB_BOTH), 8);
	assert_int_equal(remove_item(f, "a@x"), 9);
	assert_int_equal(set_item(f, "n@x", NULL, SUB_NONE), 10);
	assert_int_equal(changes(f, 7, &ch, &n), 0);
	assert_int_equal(n, 2);
	assert_change(&ch[0], 9, "a@x", "remove");
	assert_change(&ch[1], 10, "n@x", "none");
	assert_int_equal(changes(f, 9, &ch, &n), 0);
	assert_int_equal(n, 1);
	assert_change(&ch[0], 10, "n@x", "none");
}

/* Each change stamps the item; only the latest state of an item is
 * reported; a change clients cannot see (pending-in) is none. */
static void test_item_versions(void **state)
{
	struct fx *f = *state;
	open_new(f);
	assert_int_equal(set_item(f, "b@x", "B", SUB_NONE), 1);
	assert_int_equal(set_item(f, "c@x", "C", SUB_NONE), 2);
	assert_int_equal(set_item(f, "b@x", "B2", SUB_NONE), 3);

	struct roster_change *ch;
	size_t n;
	assert_int_equal(changes(f, 0, &ch, &n), 0);
	assert_int_equal(n, 2);
	assert_change(&ch[0], 2, "c@x", "none");
	assert_change(&ch[1], 3, "b@x", "none");
	assert_true(str_eq_c(xml_attr_get(ch[1].item, "name"), "B2"));

	/* c asks to subscribe: saved, no push, no bump (mod_presence). */
	assert_int_equal(store_begin(f->st), 0);
	struct xml_elem *it;
	assert_int_equal(roster_item_load(f->st, HOST, USER, "c@x", f->a, &it),
			 0);
	roster_item_set_state(f->a, it, (struct sub_item){
		.state = SUB_NONE_PENDING_IN, .in_roster = true });
	assert_int_equal(roster_item_save(f->st, HOST, USER, "c@x", it), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(roster_item_load(f->st, HOST, USER, "c@x", f->a, &it),
			 0);
	assert_int_equal(roster_item_ver(it), 2);
	assert_int_equal(changes(f, 3, &ch, &n), 0);
	assert_int_equal(n, 0);

	/* A contact known only by its request is no roster item. */
	assert_int_equal(store_begin(f->st), 0);
	it = roster_item_new(f->a, STR_LIT("q@x"));
	roster_item_set_state(f->a, it, (struct sub_item){
		.state = SUB_NONE_PENDING_IN, .in_roster = false });
	assert_int_equal(roster_item_save(f->st, HOST, USER, "q@x", it), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(changes(f, 0, &ch, &n), 0);
	assert_int_equal(n, 2);
	/* and its going away leaves no tombstone */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(roster_item_save(f->st, HOST, USER, "q@x", NULL), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(tomb_count(f), 0);

	/* A change of subscription is one. */
	assert_int_equal(set_item(f, "c@x", "C", SUB_TO), 4);
	assert_int_equal(changes(f, 3, &ch, &n), 0);
	assert_int_equal(n, 1);
	assert_change(&ch[0], 4, "c@x", "to");
}

/* A removal is reported until the contact comes back; then only the
 * new item is. */
static void test_remove_and_readd(void **state)
{
	struct fx *f = *state;
	open_new(f);
	set_item(f, "d@x", "D", SUB_NONE);            /* 1 */
	assert_int_equal(remove_item(f, "d@x"), 2);
	assert_int_equal(tomb_count(f), 1);
	struct roster_change *ch;
	size_t n;
	assert_int_equal(changes(f, 1, &ch, &n), 0);
	assert_int_equal(n, 1);
	assert_change(&ch[0], 2, "d@x", "remove");
	assert_int_equal(set_item(f, "d@x", "D again", SUB_NONE), 3);
	assert_int_equal(tomb_count(f), 0);
	assert_int_equal(changes(f, 1, &ch, &n), 0);
	assert_int_equal(n, 1);
	assert_change(&ch[0], 3, "d@x", "none");

	/* A rolled back removal leaves nothing behind. */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(roster_item_save(f->st, HOST, USER, "d@x", NULL), 0);
	store_rollback(f->st);
	assert_int_equal(tomb_count(f), 0);
	struct xml_elem *it;
	assert_int_equal(roster_item_load(f->st, HOST, USER, "d@x", f->a, &it),
			 0);

	/* Account removal takes the versioning tables too. */
	assert_int_equal(remove_item(f, "d@x"), 4);
	assert_int_equal(tomb_count(f), 1);
	assert_int_equal(store_user_purge(f->st, HOST, USER), 1);
	assert_int_equal(tomb_count(f), 0);
	uint64_t ver;
	assert_int_equal(roster_version_load(f->st, HOST, USER, &ver), 0);
	assert_int_equal(ver, 0);
}

/* Tombstones stay bounded; the oldest go, and versions before them then
 * get the full roster. */
static void test_tomb_bound(void **state)
{
	struct fx *f = *state;
	open_new(f);
	enum { N = ROSTER_TOMB_MAX + 44 };
	char jid[32];
	for (int i = 0; i < N; i++) {
		snprintf(jid, sizeof(jid), "c%03d@x", i);
		set_item(f, jid, NULL, SUB_NONE);     /* versions 1..N */
	}
	for (int i = 0; i < N; i++) {
		snprintf(jid, sizeof(jid), "c%03d@x", i);
		assert_int_equal(remove_item(f, jid), (uint64_t)(N + 1 + i));
		assert_true(tomb_count(f) <= ROSTER_TOMB_MAX);
	}
	assert_int_equal(tomb_count(f), ROSTER_TOMB_MAX);
	/* Kept: the removals at N+45 .. 2N; forgotten up to N+44. */
	uint64_t first_kept = 2 * N - ROSTER_TOMB_MAX + 1;
	struct roster_change *ch;
	size_t n;
	assert_int_equal(changes(f, first_kept - 2, &ch, &n), 1);
	assert_int_equal(changes(f, 1, &ch, &n), 1);
	assert_int_equal(changes(f, first_kept - 1, &ch, &n), 0);
	assert_int_equal(n, ROSTER_TOMB_MAX);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ch[i].ver, first_kept + i);
		snprintf(jid, sizeof(jid), "c%03zu@x",
			 (size_t)(first_kept - N - 1) + i);
		assert_change(&ch[i], first_kept + i, jid, "remove");
	}
	assert_int_equal(changes(f, 2 * N, &ch, &n), 0);
	assert_int_equal(n, 0);
}

/* A damaged version counter is an error, never a version going back. */
static void test_damaged_counter(void **state)
{
	struct fx *f = *state;
	open_new(f);
	set_item(f, "e@x", NULL, SUB_NONE);
	assert_int_equal(store_kv_set(f->st, "roster_version", HOST, USER,
				      "x1", 2), 0);
	uint64_t ver;
	assert_int_equal(roster_version_load(f->st, HOST, USER, &ver), -1);
	struct roster_change *ch;
	size_t n;
	assert_int_equal(changes(f, 0, &ch, &n), -1);
	/* A damaged item is skipped, and replaced by the next save. */
	assert_int_equal(store_kv_set(f->st, "roster_version", HOST, USER,
				      "1", 1), 0);
	assert_int_equal(store_map_set(f->st, "roster", HOST, USER, "e@x",
				       "<item", 5), 0);
	assert_int_equal(changes(f, 0, &ch, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_begin(f->st), 0);
	struct xml_elem *it;
	assert_int_equal(roster_item_load(f->st, HOST, USER, "e@x", f->a, &it),
			 -1);
	it = roster_item_new(f->a, STR_LIT("e@x"));
	assert_int_equal(roster_item_save(f->st, HOST, USER, "e@x", it), 0);
	assert_int_equal(roster_version_bump(f->st, HOST, USER, &ver), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(ver, 2);
	assert_int_equal(changes(f, 0, &ch, &n), 0);
	assert_int_equal(n, 1);
	assert_change(&ch[0], 2, "e@x", "none");
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ver_parse),
		cmocka_unit_test(test_kept_request),
		FX_TEST(test_old_rows),
		FX_TEST(test_item_versions),
		FX_TEST(test_remove_and_readd),
		FX_TEST(test_tomb_bound),
		FX_TEST(test_damaged_counter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
