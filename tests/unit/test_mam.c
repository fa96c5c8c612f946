/*
 * test_mam.c - the message archive's pieces that need no server: XEP-0082
 * date-times (xmpp/datetime.c), archive ids and the reading of XEP-0313
 * query forms and XEP-0059 sets (mod/mam/request.c), and the archive tables
 * (store/mam.c) on a fresh database.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/xmalloc.h"
#include "core/log.h"
#include "mod/mam/request.h"
#include "store/mam.h"
#include "store/shapes.h"
#include "store/store.h"
#include "xml/parser.h"
#include "xmpp/datetime.h"
#include "tmpstore.h"

/* ---- date-times ---- */

static void test_datetime_parse(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t us;
	} ok[] = {
		{ "1970-01-01T00:00:00Z", 0 },
		{ "2010-07-10T23:08:25Z", 1278803305000000 },
		{ "2010-07-10T23:08:25.5Z", 1278803305500000 },
		{ "2010-07-10T23:08:25.123456789Z", 1278803305123456 },
		{ "2010-07-11T01:08:25+02:00", 1278803305000000 },
		{ "2010-07-10T20:38:25-02:30", 1278803305000000 },
		{ "2000-02-29T00:00:00Z", 951782400000000 },
		{ "2016-12-31T23:59:60Z", 1483228799999999 },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		int64_t us = -1;
		assert_int_equal(xep82_parse_us(str_c(ok[i].s), &us), 0);
		assert_int_equal(us, ok[i].us);
	}
	static const char *const bad[] = {
		"", "2010-07-10", "2010-07-10T23:08:25", "2010-07-10 23:08:25Z",
		"2010-13-10T23:08:25Z", "2010-02-30T00:00:00Z",
		"2001-02-29T00:00:00Z", "2010-07-10T24:00:00Z",
		"2010-07-10T23:60:00Z", "2010-07-10T23:08:25.Z",
		"2010-07-10T23:08:25+0200", "2010-07-10T23:08:25Zjunk",
		"0000-01-01T00:00:00Z", "yesterday", "2010-7-10T23:08:25Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int64_t us;
		assert_int_equal(xep82_parse_us(str_c(bad[i]), &us), -1);
	}
}

static void test_datetime_format(void **state)
{
	(void)state;
	char s[XEP82_DATETIME_LEN];
	xep82_format_us(1278803305123456, s);
	assert_string_equal(s, "2010-07-10T23:08:25.123456Z");
	int64_t back;
	assert_int_equal(xep82_parse_us(str_c(s), &back), 0);
	assert_int_equal(back, 1278803305123456);
	xep82_format_us(0, s);
	assert_string_equal(s, "1970-01-01T00:00:00.000000Z");
}

static const unsigned char test_key[MAM_ID_KEY_LEN] = "0123456789abcdef";

static void test_ids(void **state)
{
	(void)state;
	mam_id_key(test_key);
	char s[MAM_ID_LEN], t[MAM_ID_LEN];
	mam_id_format(1795488262474006, s);
	/* the wire format, fixed: AES-128 of the id (big-endian) and eight
	 * zero bytes, in hex (here as `openssl enc -aes-128-ecb -nopad`
	 * gives it) */
	assert_string_equal(s, "c17975073a2dcd3e6562ad531d31c284");
	int64_t id;
	assert_int_equal(mam_id_parse(str_c(s), &id), 0);
	assert_int_equal(id, 1795488262474006);
	/* neighbours look unrelated: nothing to guess from */
	mam_id_format(1795488262474007, t);
	size_t same = 0;
	for (size_t i = 0; i < 32; i++)
		same += s[i] == t[i];
	assert_true(same < 16);
	/* another key reads neither */
	static const unsigned char other[MAM_ID_KEY_LEN] = "fedcba9876543210";
	mam_id_key(other);
	assert_int_equal(mam_id_parse(str_c(s), &id), -1);
	mam_id_key(test_key);
	/* one changed digit, case, length, the plain number */
	char u[MAM_ID_LEN];
	memcpy(u, s, sizeof(u));
	u[5] = u[5] == '0' ? '1' : '0';
	assert_int_equal(mam_id_parse(str_c(u), &id), -1);
	static const char *const bad[] = {
		"", "0", "1795488262474006", "abc",
		"0123456789abcdef0123456789abcde",
		"0123456789abcdef0123456789abcdef0",
		"0123456789ABCDEF0123456789ABCDEF",
		"zz23456789abcdef0123456789abcdef",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(mam_id_parse(str_c(bad[i]), &id), -1);
	/* the extremes */
	mam_id_format(1, s);
	assert_int_equal(mam_id_parse(str_c(s), &id), 0);
	assert_int_equal(id, 1);
	mam_id_format(INT64_MAX, s);
	assert_int_equal(mam_id_parse(str_c(s), &id), 0);
	assert_int_equal(id, INT64_MAX);
}

/* The wire form of id under test_key, for the query tests. */
static const char *wire(int64_t id)
{
	static char s[8][MAM_ID_LEN];
	static size_t next;
	char *out = s[next++ % 8];
	mam_id_key(test_key);
	mam_id_format(id, out);
	return out;
}

/* ---- queries ---- */

#define FORM_HEAD                                                  \
	"<x xmlns='jabber:x:data' type='submit'>"                  \
	"<field var='FORM_TYPE' type='hidden'>"                    \
	"<value>urn:xmpp:mam:2</value></field>"

static int parse(const char *inner, struct mam_request *r,
		 enum stanza_err *err, struct arena **ap)
{
	char xml[4096];
	snprintf(xml, sizeof(xml),
		 "<query xmlns='urn:xmpp:mam:2' queryid='q1'>%s</query>",
		 inner);
	*ap = arena_new(0);
	struct xml_elem *e = xml_parse_elem(*ap, str_c(xml),
					    STR_LIT("jabber:client"));
	assert_non_null(e);
	*err = STANZA_ERR_NONE;
	return mam_request_parse(*ap, e, r, err);
}

static void test_query_empty(void **state)
{
	(void)state;
	struct mam_request r;
	enum stanza_err err;
	struct arena *a;
	assert_int_equal(parse("", &r, &err, &a), 0);
	assert_true(str_eq_c(r.queryid, "q1"));
	assert_int_equal(r.lo, 0);
	assert_int_equal(r.hi, INT64_MAX);
	assert_int_equal(r.max, MAM_PAGE_DEFAULT);
	assert_false(r.backward);
	assert_false(r.flip);
	assert_false(r.has_with);
	assert_int_equal(r.nids, 0);
	assert_int_equal(r.ncheck, 0);
	arena_destroy(&a);
}

static void test_query_form(void **state)
{
	(void)state;
	struct mam_request r;
	enum stanza_err err;
	struct arena *a;
	char buf[2048];
	snprintf(buf, sizeof(buf),
		 FORM_HEAD "<field var='with'><value>Juliet@Capulet.lit/Balcony"
			   "</value></field>"
			   "<field var='start'><value>2010-07-10T23:08:25Z"
			   "</value></field>"
			   "<field var='end'><value>2010-07-10T23:08:26Z</value>"
			   "</field>"
			   "<field var='after-id'><value>%s</value></field>"
			   "<field var='before-id'><value>%s</value></field></x>"
			   "<flip-page/>",
		 wire(1278803305000100), wire(1278803305900000));
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_true(r.has_with);
	assert_true(str_eq_c(r.with.node, "juliet"));
	assert_true(str_eq_c(r.with.resource, "Balcony"));
	/* after-id is above start - 1; before-id below end + 1 */
	assert_int_equal(r.lo, 1278803305000100);
	assert_int_equal(r.hi, 1278803305900000);
	assert_int_equal(r.ncheck, 2);
	assert_true(r.flip);
	arena_destroy(&a);
	/* start and end alone: inclusive */
	assert_int_equal(parse(FORM_HEAD
			       "<field var='start'><value>2010-07-10T23:08:25Z"
			       "</value></field><field var='end'><value>"
			       "2010-07-10T23:08:26Z</value></field></x>",
			       &r, &err, &a),
			 0);
	assert_int_equal(r.lo, 1278803305000000 - 1);
	assert_int_equal(r.hi, 1278803306000000 + 1);
	arena_destroy(&a);
	/* ids: sorted, duplicates dropped; an id that is none of ours */
	snprintf(buf, sizeof(buf),
		 FORM_HEAD "<field var='ids'><value>%s</value><value>%s</value>"
			   "<value>%s</value><value>%s</value></field></x>",
		 wire(30), wire(10), wire(30), wire(20));
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_int_equal(r.nids, 3);
	assert_int_equal(r.ids[0], 10);
	assert_int_equal(r.ids[1], 20);
	assert_int_equal(r.ids[2], 30);
	assert_false(r.unknown_id);
	arena_destroy(&a);
	assert_int_equal(parse(FORM_HEAD "<field var='ids'><value>x</value>"
				       "</field></x>",
			       &r, &err, &a),
			 0);
	assert_true(r.unknown_id);
	arena_destroy(&a);
	/* empty fields filter nothing; no FORM_TYPE is fine */
	assert_int_equal(parse("<x xmlns='jabber:x:data' type='submit'>"
			       "<field var='with'/><field var='start'>"
			       "<value/></field></x>",
			       &r, &err, &a),
			 0);
	assert_false(r.has_with);
	assert_int_equal(r.lo, 0);
	arena_destroy(&a);
}

static void test_query_rsm(void **state)
{
	(void)state;
	struct mam_request r;
	enum stanza_err err;
	struct arena *a;
	const char *set = "<set xmlns='http://jabber.org/protocol/rsm'>";
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s<max>10</max><after>%s</after></set>",
		 set, wire(100));
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_int_equal(r.max, 10);
	assert_int_equal(r.lo, 100);
	assert_false(r.backward);
	assert_int_equal(r.ncheck, 1);
	assert_int_equal(r.check[0], 100);
	arena_destroy(&a);
	snprintf(buf, sizeof(buf), "%s<max>5</max><before/></set>", set);
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_true(r.backward);
	assert_int_equal(r.hi, INT64_MAX);
	assert_int_equal(r.ncheck, 0);
	arena_destroy(&a);
	snprintf(buf, sizeof(buf), "%s<before>%s</before></set>", set,
		 wire(200));
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_true(r.backward);
	assert_int_equal(r.hi, 200);
	arena_destroy(&a);
	snprintf(buf, sizeof(buf), "%s<max>100000</max></set>", set);
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_int_equal(r.max, MAM_PAGE_MAX);
	arena_destroy(&a);
	snprintf(buf, sizeof(buf), "%s<max>0</max></set>", set);
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_true(r.count_only);
	arena_destroy(&a);
	snprintf(buf, sizeof(buf), "%s<after>nope</after></set>", set);
	assert_int_equal(parse(buf, &r, &err, &a), 0);
	assert_true(r.unknown_id);
	arena_destroy(&a);
}

static void test_query_errors(void **state)
{
	(void)state;
	static const struct {
		const char *inner;
		enum stanza_err err;
	} cases[] = {
		{ "<x xmlns='jabber:x:data' type='form'/>",
		  STANZA_ERR_BAD_REQUEST },
		{ "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'"
		  " type='hidden'><value>urn:xmpp:mam:1</value></field></x>",
		  STANZA_ERR_BAD_REQUEST },
		{ FORM_HEAD "<field var='start'><value>yesterday</value>"
			    "</field></x>",
		  STANZA_ERR_BAD_REQUEST },
		{ FORM_HEAD "<field var='with'><value>a@b@c</value></field>"
			    "</x>",
		  STANZA_ERR_JID_MALFORMED },
		{ FORM_HEAD "<field var='with'><value>a@b</value><value>c@d"
			    "</value></field></x>",
		  STANZA_ERR_BAD_REQUEST },
		{ FORM_HEAD "<field var='include-groupchat'><value>1</value>"
			    "</field></x>",
		  STANZA_ERR_FEATURE_NOT_IMPLEMENTED },
		{ FORM_HEAD "</x>" FORM_HEAD "</x>", STANZA_ERR_BAD_REQUEST },
		{ "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max>"
		  "</set>",
		  STANZA_ERR_BAD_REQUEST },
		{ "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max>"
		  "<max>2</max></set>",
		  STANZA_ERR_BAD_REQUEST },
		{ "<set xmlns='http://jabber.org/protocol/rsm'><after/></set>",
		  STANZA_ERR_BAD_REQUEST },
		{ "<set xmlns='http://jabber.org/protocol/rsm'><index>3</index>"
		  "</set>",
		  STANZA_ERR_FEATURE_NOT_IMPLEMENTED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct mam_request r;
		enum stanza_err err;
		struct arena *a;
		assert_int_equal(parse(cases[i].inner, &r, &err, &a), -1);
		assert_int_equal(err, cases[i].err);
		arena_destroy(&a);
	}
	/* more ids than allowed */
	char *big = xmalloc(MAM_IDS_MAX * 24 + 512);
	strcpy(big, FORM_HEAD "<field var='ids'>");
	for (int i = 0; i <= MAM_IDS_MAX; i++)
		sprintf(big + strlen(big), "<value>%d</value>", i + 1);
	strcat(big, "</field></x>");
	struct mam_request r;
	enum stanza_err err;
	struct arena *a = arena_new(0);
	char *xml = xmalloc(strlen(big) + 64);
	sprintf(xml, "<query xmlns='urn:xmpp:mam:2'>%s</query>", big);
	struct xml_elem *e = xml_parse_elem(a, str_c(xml),
					    STR_LIT("jabber:client"));
	assert_non_null(e);
	assert_int_equal(mam_request_parse(a, e, &r, &err), -1);
	assert_int_equal(err, STANZA_ERR_POLICY_VIOLATION);
	arena_destroy(&a);
	free(xml);
	free(big);
	/* pubsub archives (XEP-0442) are not ours */
	a = arena_new(0);
	e = xml_parse_elem(a, STR_LIT("<query xmlns='urn:xmpp:mam:2' "
				      "node='n'/>"),
			   STR_LIT("jabber:client"));
	assert_int_equal(mam_request_parse(a, e, &r, &err), -1);
	assert_int_equal(err, STANZA_ERR_FEATURE_NOT_IMPLEMENTED);
	arena_destroy(&a);
}

/* ---- the tables ---- */

static struct tmpstore db;
static struct store *st;

static const struct store_schema *const schemas[] = { &mam_schema, NULL };

static int db_setup(void **state)
{
	(void)state;
	assert_int_equal(tmpstore_open(&db, "test_mam", schemas, &st), 0);
	return 0;
}

static int db_teardown(void **state)
{
	(void)state;
	tmpstore_close(&db, &st);
	return 0;
}

struct got {
	int64_t ids[64];
	size_t n;
};

static int collect(const struct mam_store_item *it, void *ud)
{
	struct got *g = ud;
	char want[64];
	snprintf(want, sizeof(want), "<m n='%lld'/>", (long long)it->id);
	assert_int_equal(it->len, strlen(want));
	assert_memory_equal(it->value, want, it->len);
	g->ids[g->n++] = it->id;
	return 0;
}

static int64_t uid_of(const char *user)
{
	int64_t uid;
	assert_int_equal(mam_store_user(st, "h", user, true, &uid), 0);
	return uid;
}

static void append(const char *user, int64_t id, const char *with,
		   const char *res)
{
	char v[64];
	snprintf(v, sizeof(v), "<m n='%lld'/>", (long long)id);
	assert_int_equal(mam_store_append(st, uid_of(user), id, with, res, v,
					  strlen(v)),
			 0);
}

static void test_store_query(void **state)
{
	(void)state;
	/* alice: 1..20, odd ids with bob/phone, even with carol */
	for (int64_t id = 1; id <= 20; id++)
		append("alice", id, id % 2 ? "bob@h" : "carol@h",
		       id % 2 ? "phone" : "");
	append("zed", 21, "bob@h", "");
	int64_t alice = uid_of("alice"), zed = uid_of("zed"), u;
	assert_int_not_equal(alice, zed);
	assert_int_equal(mam_store_user(st, "h", "alice", false, &u), 0);
	assert_int_equal(u, alice);
	assert_int_equal(mam_store_user(st, "h", "nobody", false, &u), 1);
	assert_int_equal(mam_store_user(st, "other", "alice", false, &u), 1);
	struct mam_store_query q = { .uid = alice, .lo = 0, .hi = INT64_MAX,
				     .max = 5 };
	struct got g = { 0 };
	bool more;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 5);
	assert_int_equal(g.ids[0], 1);
	assert_int_equal(g.ids[4], 5);
	assert_true(more);
	/* backward: the newest first */
	q.backward = true;
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.ids[0], 20);
	assert_int_equal(g.ids[4], 16);
	assert_true(more);
	/* a range, exclusive */
	q = (struct mam_store_query){ .uid = alice, .lo = 15,
				      .hi = 19, .max = 50 };
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.ids[0], 16);
	assert_false(more);
	/* with, bare and full */
	q = (struct mam_store_query){ .uid = alice, .lo = 0,
				      .hi = INT64_MAX, .max = 50,
				      .with = "carol@h" };
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 10);
	for (size_t i = 0; i < g.n; i++)
		assert_int_equal(g.ids[i] % 2, 0);
	q.with = "bob@h";
	q.with_res = "phone";
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 10);
	q.with_res = "laptop";
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 0);
	/* count */
	size_t n;
	q = (struct mam_store_query){ .uid = alice, .lo = 4,
				      .hi = INT64_MAX, .with = "bob@h" };
	assert_int_equal(mam_store_count(st, &q, &n), 0);
	assert_int_equal(n, 8);
	/* ids: all must exist in this archive; filters still apply */
	int64_t ids[] = { 3, 4, 9 };
	q = (struct mam_store_query){ .uid = alice, .lo = 0,
				      .hi = INT64_MAX, .max = 50, .ids = ids,
				      .nids = 3, .with = "bob@h" };
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.ids[0], 3);
	assert_int_equal(g.ids[1], 9);
	int64_t other[] = { 3, 21 };
	q.ids = other;
	q.nids = 2;
	g.n = 0;
	assert_int_equal(mam_store_query(st, &q, collect, &g, &more), 1);
	assert_int_equal(g.n, 0);
	/* exists, bounds */
	assert_int_equal(mam_store_exists(st, alice, 7), 0);
	assert_int_equal(mam_store_exists(st, alice, 21), 1);
	int64_t first, last;
	assert_int_equal(mam_store_bounds(st, alice, 0, &first, &last), 0);
	assert_int_equal(first, 1);
	assert_int_equal(last, 20);
	assert_int_equal(mam_store_bounds(st, uid_of("bob"), 0, &first,
					  &last),
			 1);
	/* an id is used once */
	assert_int_equal(mam_store_append(st, uid_of("bob"), 7, "x", "", "v",
					  1),
			 -1);
	/* retention: every account */
	assert_int_equal(mam_store_purge(st, 11, &n), 0);
	assert_int_equal(n, 10);
	assert_int_equal(mam_store_bounds(st, alice, 0, &first, &last), 0);
	assert_int_equal(first, 11);
	/* the high-water mark outlives the rows */
	int64_t high;
	assert_int_equal(mam_store_high(st, &high), 0);
	assert_int_equal(high, 21);
	assert_int_equal(mam_store_set_high(st, 50), 0);
	assert_int_equal(mam_store_set_high(st, 40), 0);
	assert_int_equal(store_user_purge(st, "h", "zed"), 1);
	assert_int_equal(store_user_purge(st, "h", "alice"), 1);
	assert_int_equal(mam_store_high(st, &high), 0);
	assert_int_equal(high, 50);
	/* account removal took the archive (ON DELETE CASCADE) */
	assert_int_equal(mam_store_user(st, "h", "alice", false, &u), 1);
	assert_int_equal(mam_store_exists(st, alice, 15), 1);
	assert_int_equal(mam_store_bounds(st, alice, 0, &first, &last), 1);
	q = (struct mam_store_query){ .uid = alice, .lo = 0, .hi = INT64_MAX };
	assert_int_equal(mam_store_count(st, &q, &n), 0);
	assert_int_equal(n, 0);
}

static int prefs_seen;

static int count_prefs(const char *host, const char *user, const void *v,
		       size_t len, void *ud)
{
	(void)ud;
	assert_string_equal(host, "h");
	assert_string_equal(user, "bob");
	assert_int_equal(len, 3);
	assert_memory_equal(v, "abc", 3);
	prefs_seen++;
	return 0;
}

static void test_store_prefs(void **state)
{
	(void)state;
	assert_int_equal(store_kv_set(st, MAM_PREFS_TABLE, "h", "bob", "abc",
				      3),
			 0);
	assert_int_equal(mam_store_prefs_all(st, count_prefs, NULL), 0);
	assert_int_equal(prefs_seen, 1);
	assert_int_equal(store_user_purge(st, "h", "bob"), 1);
	prefs_seen = 0;
	assert_int_equal(mam_store_prefs_all(st, count_prefs, NULL), 0);
	assert_int_equal(prefs_seen, 0);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_datetime_parse),
		cmocka_unit_test(test_datetime_format),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_query_empty),
		cmocka_unit_test(test_query_form),
		cmocka_unit_test(test_query_rsm),
		cmocka_unit_test(test_query_errors),
		cmocka_unit_test_setup_teardown(test_store_query, db_setup,
						db_teardown),
		cmocka_unit_test_setup_teardown(test_store_prefs, db_setup,
						db_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
