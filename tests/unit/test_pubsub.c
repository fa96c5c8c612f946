/*
 * test_pubsub.c - the parts of publish-subscribe that read what clients
 * send: XEP-0115 verification strings of disco#info answers (the
 * examples of §5.2 and §5.3, and §5.4's refusals), the node configuration
 * and publish-options forms (XEP-0060 §8.2, §7.1.5), nodes and items
 * through the store (order, replacement, trimming, removal), and what the
 * conversions of XEP-0398 and XEP-0402 §6 read: vCard photos and
 * bookmarks.
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

#include "core/arena.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/server.h"
#include "mod/caps.h"
#include "mod/pubsub/pubsub-private.h"
#include "store/shapes.h"
#include "store/store.h"
#include "xml/parser.h"

static struct xml_elem *parse(struct arena *a, const char *xml)
{
	struct xml_elem *x = xml_parse_elem(a, str_c(xml), STR_LIT(""));
	assert_non_null(x);
	return x;
}

static void check_ver(const char *xml, const char *hash, const char *want)
{
	struct arena *a = arena_new(0);
	struct str ver;
	int rc = caps_compute(a, parse(a, xml), str_c(hash), &ver);
	if (want == NULL) {
		assert_int_equal(rc, -1);
	} else {
		assert_int_equal(rc, 0);
		assert_string_equal(ver.p, want);
	}
	arena_destroy(&a);
}

#define INFO "<query xmlns='http://jabber.org/protocol/disco#info'>"

/* XEP-0115 §5.2 */
static const char simple[] =
	INFO "<identity category='client' name='Exodus 0.9.1' type='pc'/>"
	"<feature var='http://jabber.org/protocol/caps'/>"
	"<feature var='http://jabber.org/protocol/disco#items'/>"
	"<feature var='http://jabber.org/protocol/disco#info'/>"
	"<feature var='http://jabber.org/protocol/muc'/></query>";

/* XEP-0115 §5.3 */
static const char complex_[] =
	INFO "<identity xml:lang='en' category='client' name='Psi 0.11' "
	"type='pc'/>"
	"<identity xml:lang='el' category='client' "
	"name='\xce\xa8 0.11' type='pc'/>"
	"<feature var='http://jabber.org/protocol/caps'/>"
	"<feature var='http://jabber.org/protocol/disco#info'/>"
	"<feature var='http://jabber.org/protocol/disco#items'/>"
	"<feature var='http://jabber.org/protocol/muc'/>"
	"<x xmlns='jabber:x:data' type='result'>"
	"<field var='FORM_TYPE' type='hidden'>"
	"<value>urn:xmpp:dataforms:softwareinfo</value></field>"
	"<field var='ip_version'><value>ipv4</value><value>ipv6</value>"
	"</field>"
	"<field var='os'><value>Mac</value></field>"
	"<field var='os_version'><value>10.5.1</value></field>"
	"<field var='software'><value>Psi</value></field>"
	"<field var='software_version'><value>0.11</value></field>"
	"</x></query>";

static void test_caps_examples(void **state)
{
	(void)state;
	check_ver(simple, "sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0=");
	check_ver(complex_, "sha-1", "q07IKJEyjvHSyhy//CH0CxmKi8w=");
	/* another digest gives another string; an unknown one none */
	check_ver(simple, "sha-256",
		  "Wr6IGEKhx6b9627gBmi/cCmpxXBc/GYq5zWuYfWGWoc=");
	check_ver(simple, "md5", NULL);
	check_ver(simple, "bogus", NULL);
}

static void test_caps_refusals(void **state)
{
	(void)state;
	/* §5.4 3.3: a feature twice; 3.4: an identity twice */
	check_ver(INFO "<identity category='client' type='pc'/>"
		  "<feature var='a'/><feature var='a'/></query>", "sha-1",
		  NULL);
	check_ver(INFO "<identity category='client' type='pc'/>"
		  "<identity category='client' type='pc'/></query>", "sha-1",
		  NULL);
	/* §5.4 3.5: two forms of one FORM_TYPE; 3.6: no FORM_TYPE is
	 * ignored */
	check_ver(INFO "<x xmlns='jabber:x:data' type='result'><field "
		  "var='FORM_TYPE'><value>t</value></field></x>"
		  "<x xmlns='jabber:x:data' type='result'><field "
		  "var='FORM_TYPE'><value>t</value></field></x></query>",
		  "sha-1", NULL);
	struct arena *a = arena_new(0);
	struct str with, without;
	assert_int_equal(caps_compute(a, parse(a, simple), STR_LIT("sha-1"),
				      &without), 0);
	char buf[2048];
	snprintf(buf, sizeof(buf), "%.*s<x xmlns='jabber:x:data' "
		 "type='result'><field var='a'><value>b</value></field></x>"
		 "</query>", (int)(strlen(simple) - strlen("</query>")),
		 simple);
	assert_int_equal(caps_compute(a, parse(a, buf), STR_LIT("sha-1"),
				      &with), 0);
	assert_string_equal(with.p, without.p);
	/* a feature without var; a broken form */
	check_ver(INFO "<feature/></query>", "sha-1", NULL);
	check_ver(INFO "<x xmlns='jabber:x:data' type='nonsense'/></query>",
		  "sha-1", NULL);
	arena_destroy(&a);
}

/* ---- forms ---- */

static struct config conf = {
	.limits = { .max_stanza_size = 64 * 1024 },
	.pubsub = { .max_items = 50, .max_nodes = 3 },
};

static struct dataform form(struct arena *a, const char *fields)
{
	char xml[2048];
	snprintf(xml, sizeof(xml), "<x xmlns='jabber:x:data' type='submit'>"
		 "<field var='FORM_TYPE'><value>"
		 "http://jabber.org/protocol/pubsub#node_config</value>"
		 "</field>%s</x>", fields);
	struct dataform f;
	assert_int_equal(dataform_parse(a, parse(a, xml), &f), 0);
	return f;
}

static void test_config_apply(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct ps_config c;
	ps_config_default(&c, false);
	assert_int_equal(c.access, PS_ACCESS_PRESENCE);
	assert_int_equal(c.max_items, 1);
	struct dataform f = form(a,
		"<field var='pubsub#access_model'><value>roster</value></field>"
		"<field var='pubsub#roster_groups_allowed'><value>a</value>"
		"<value>b</value></field>"
		"<field var='pubsub#max_items'><value>max</value></field>"
		"<field var='pubsub#persist_items'><value>false</value></field>"
		"<field var='pubsub#title'><value>T</value></field>");
	assert_int_equal(ps_config_apply(a, &f, &c, false).err,
			 STANZA_ERR_NONE);
	assert_int_equal(c.access, PS_ACCESS_ROSTER);
	assert_int_equal(c.ngroups, 2);
	assert_int_equal(c.max_items, 50);
	assert_false(c.persist);
	assert_true(str_eq_c(c.title, "T"));

	/* refused whole: nothing changes */
	static const char *const bad[] = {
		"<field var='pubsub#max_items'><value>51</value></field>",
		"<field var='pubsub#max_items'><value>0</value></field>",
		"<field var='pubsub#max_items'><value>1x</value></field>",
		"<field var='pubsub#access_model'><value>authorize</value>"
		"</field>",
		"<field var='pubsub#persist_items'><value>yes</value></field>",
		"<field var='pubsub#deliver_notifications'><value>0</value>"
		"</field>",
		"<field var='pubsub#whatever'><value>1</value></field>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct ps_config before = c;
		f = form(a, bad[i]);
		assert_int_equal(ps_config_apply(a, &f, &c, false).err,
				 STANZA_ERR_NOT_ACCEPTABLE);
		assert_memory_equal(&before, &c, sizeof(c));
	}
	/* the service has no roster */
	f = form(a, "<field var='pubsub#access_model'><value>presence</value>"
		 "</field>");
	ps_config_default(&c, true);
	assert_int_equal(ps_config_apply(a, &f, &c, true).err,
			 STANZA_ERR_NOT_ACCEPTABLE);
	arena_destroy(&a);
}

static void test_config_form_round_trip(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct ps_config c;
	ps_config_default(&c, false);
	c.access = PS_ACCESS_WHITELIST;
	c.max_items = 7;
	c.notify_retract = false;
	c.title = STR_LIT("x");
	struct xml_elem *x = ps_config_form(a, &c, false);
	assert_non_null(x);
	/* the form as a client would submit it back */
	xml_attr_set(a, x, "type", STR_LIT("submit"));
	struct dataform f;
	assert_int_equal(dataform_parse(a, x, &f), 0);
	struct ps_config d;
	ps_config_default(&d, false);
	assert_int_equal(ps_config_apply(a, &f, &d, false).err,
			 STANZA_ERR_NONE);
	assert_int_equal(d.access, PS_ACCESS_WHITELIST);
	assert_int_equal(d.max_items, 7);
	assert_false(d.notify_retract);
	assert_true(str_eq_c(d.title, "x"));
	/* and every field of it is a met precondition */
	assert_true(ps_preconditions_met(&f, &c));
	arena_destroy(&a);
}

static void test_preconditions(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct ps_config c;
	ps_config_default(&c, false);
	struct dataform f = form(a, "<field var='pubsub#access_model'>"
				 "<value>presence</value></field>");
	assert_true(ps_preconditions_met(&f, &c));
	f = form(a, "<field var='pubsub#access_model'><value>open</value>"
		 "</field>");
	assert_false(ps_preconditions_met(&f, &c));
	f = form(a, "<field var='pubsub#max_items'><value>1</value>"
		 "</field>");
	assert_true(ps_preconditions_met(&f, &c));
	f = form(a, "<field var='pubsub#max_items'><value>2</value>"
		 "</field>");
	assert_false(ps_preconditions_met(&f, &c));
	f = form(a, "<field var='pubsub#unknown'><value>2</value></field>");
	assert_false(ps_preconditions_met(&f, &c));
	f = form(a, "<field var='pubsub#access_model'><value>bogus</value>"
		 "</field>");
	assert_false(ps_preconditions_met(&f, &c));
	arena_destroy(&a);
}

/* ---- storage ---- */

struct fx {
	char dir[64];
	struct store *st;
};

static int rm_cb(const char *path, const struct stat *sb, int flag,
		 struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_pubsub.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	static const struct store_schema *const schemas[] = { &pubsub_schema,
							      NULL };
	store_register_schemas(schemas);
	char *err = NULL;
	assert_int_equal(store_open(f->dir, &f->st, &err), 0);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	nftw(f->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct ps_item item(struct arena *a, const char *id, uint64_t seq)
{
	char xml[256];
	snprintf(xml, sizeof(xml), "<item xmlns='%s' id='%s'><p xmlns='p'>"
		 "%s</p></item>", NS_PUBSUB, id, id);
	return (struct ps_item){ .id = str_c(id), .seq = seq,
				 .x = parse(a, xml) };
}

static void test_store(void **state)
{
	struct fx *f = *state;
	struct arena *a = arena_new(0);
	struct ps_owner o = { .host = "h", .user = "u" };
	struct ps_owner other = { .host = "h", .user = "v" };
	struct ps_node n = { .name = STR_LIT("n"), .seq = 3 };
	ps_config_default(&n.cfg, false);
	struct ps_jid_aff aff = { STR_LIT("m@h"), PS_AFF_MEMBER };
	n.affs = &aff;
	n.naffs = 1;
	assert_int_equal(ps_store_node_save(f->st, &o, &n), 0);
	struct ps_node n2 = { .name = STR_LIT("n2") };
	ps_config_default(&n2.cfg, false);
	assert_int_equal(ps_store_node_save(f->st, &o, &n2), 0);

	struct ps_node *back;
	assert_int_equal(ps_store_node_load(f->st, &o, STR_LIT("n"), a,
					    &back), 0);
	assert_int_equal(back->seq, 3);
	assert_int_equal(back->naffs, 1);
	assert_true(str_eq_c(back->affs[0].jid, "m@h"));
	assert_int_equal(back->affs[0].aff, PS_AFF_MEMBER);
	assert_int_equal(ps_store_node_load(f->st, &other, STR_LIT("n"), a,
					    &back), 1);

	/* items of n and of n2 (a name that n is a prefix of) */
	const char *ids[] = { "b", "a", "c" };
	for (size_t i = 0; i < 3; i++) {
		struct ps_item it = item(a, ids[i], i + 1);
		assert_int_equal(ps_store_item_put(f->st, &o, STR_LIT("n"),
						   &it), 0);
	}
	struct ps_item x = item(a, "x", 9);
	assert_int_equal(ps_store_item_put(f->st, &o, STR_LIT("n2"), &x), 0);
	struct ps_item *v;
	size_t nv;
	assert_int_equal(ps_store_items(f->st, &o, STR_LIT("n"), a, &v, &nv),
			 0);
	assert_int_equal(nv, 3);
	assert_true(str_eq_c(v[0].id, "c")); /* newest first */
	assert_true(str_eq_c(v[2].id, "b"));
	assert_null(xml_attr_get(v[0].x, "seq").p);
	/* replacing b makes it the newest */
	struct ps_item b = item(a, "b", 4);
	assert_int_equal(ps_store_item_put(f->st, &o, STR_LIT("n"), &b), 0);
	assert_int_equal(ps_store_trim(f->st, &o, STR_LIT("n"), 2), 0);
	assert_int_equal(ps_store_items(f->st, &o, STR_LIT("n"), a, &v, &nv),
			 0);
	assert_int_equal(nv, 2);
	assert_true(str_eq_c(v[0].id, "b"));
	assert_true(str_eq_c(v[1].id, "c"));

	struct ps_node **nodes;
	size_t nn;
	assert_int_equal(ps_store_nodes(f->st, &o, a, &nodes, &nn), 0);
	assert_int_equal(nn, 2);
	assert_true(str_eq_c(nodes[0]->name, "n"));
	assert_int_equal(ps_store_node_delete(f->st, &o, STR_LIT("n")), 0);
	assert_int_equal(ps_store_items(f->st, &o, STR_LIT("n"), a, &v, &nv),
			 0);
	assert_int_equal(nv, 0);
	assert_int_equal(ps_store_items(f->st, &o, STR_LIT("n2"), a, &v, &nv),
			 0);
	assert_int_equal(nv, 1);

	/* account removal takes both tables' rows */
	assert_int_equal(store_user_purge(f->st, "h", "u"), 1);
	assert_int_equal(ps_store_nodes(f->st, &o, a, &nodes, &nn), 0);
	assert_int_equal(nn, 0);
	assert_int_equal(ps_store_items(f->st, &o, STR_LIT("n2"), a, &v, &nv),
			 0);
	assert_int_equal(nv, 0);
	arena_destroy(&a);
}

static void test_photo(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct avatar_photo p;
	/* "hello world" with line breaks and spaces, as vCards fold it;
	 * its SHA-1 (echo -n 'hello world' | sha1sum). */
	assert_true(avatar_photo_decode(a, STR_LIT("aGVsbG8g\n d29y bGQ="),
					&p));
	assert_int_equal(p.len, 11);
	assert_memory_equal(p.bytes, "hello world", 11);
	assert_string_equal(p.hash,
			    "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
	struct str b64 = avatar_photo_b64(a, &p);
	assert_true(str_eq_c(b64, "aGVsbG8gd29ybGQ="));
	assert_true(str_eq_c(avatar_photo_sniff(&p),
			     "application/octet-stream"));
	assert_false(avatar_photo_decode(a, STR_LIT(""), &p));
	assert_false(avatar_photo_decode(a, STR_LIT("!!!not base64"), &p));
	assert_false(avatar_photo_decode(a, STR_LIT("===="), &p));

	/* The PHOTO of a vCard: TYPE kept, else sniffed; EXTVAL is none. */
	struct xml_elem *v = parse(a, "<vCard xmlns='vcard-temp'><PHOTO>"
				   "<BINVAL>iVBORw0KGgo=</BINVAL></PHOTO>"
				   "</vCard>");
	assert_true(avatar_vcard_photo(a, v, &p));
	assert_true(str_eq_c(p.type, "image/png"));
	v = parse(a, "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/x</TYPE>"
		  "<BINVAL>/9j/4A==</BINVAL></PHOTO></vCard>");
	assert_true(avatar_vcard_photo(a, v, &p));
	assert_true(str_eq_c(p.type, "image/x"));
	v = parse(a, "<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://x/"
		  "</EXTVAL></PHOTO></vCard>");
	assert_false(avatar_vcard_photo(a, v, &p));
	assert_false(avatar_vcard_photo(a, NULL, &p));
	arena_destroy(&a);
}

static char *serialized(const struct xml_elem *x)
{
	struct buf b = { .max = 64 * 1024 };
	assert_int_equal(xml_serialize(&b, x, STR_LIT("")), 0);
	char *s = malloc(b.len + 1);
	assert_non_null(s);
	memcpy(s, b.data, b.len);
	s[b.len] = '\0';
	buf_reset(&b);
	return s;
}

static void check_conversion(struct arena *a, const struct xml_elem *x,
			     const char *want)
{
	char *got = serialized(x);
	assert_string_equal(got, want);
	free(got);
}

static void test_bookmarks(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	/* XEP-0048 to XEP-0402: autojoin "1" is "true", other namespaces go
	 * into <extensions/>, an unknown legacy child is dropped. */
	struct xml_elem *legacy = parse(a,
		"<conference xmlns='storage:bookmarks' jid='c@muc' "
		"name='Coven' autojoin='1'><password>pw</password>"
		"<nick>Ali</nick><x xmlns='urn:e'>1</x><junk/></conference>");
	struct xml_elem *c2 = bookmark_to_pep2(a, legacy);
	check_conversion(a, c2,
		"<conference xmlns='urn:xmpp:bookmarks:1' name='Coven' "
		"autojoin='true'><nick>Ali</nick><password>pw</password>"
		"<extensions><x xmlns='urn:e'>1</x></extensions>"
		"</conference>");
	/* And back, the room from the item id. */
	struct xml_elem *back = bookmark_to_legacy(a, STR_LIT("c@muc"), c2);
	check_conversion(a, back,
		"<conference xmlns='storage:bookmarks' jid='c@muc' "
		"name='Coven' autojoin='true'><nick>Ali</nick>"
		"<password>pw</password><x xmlns='urn:e'>1</x>"
		"</conference>");
	/* Canonical after one step: an unchanged room compares equal. */
	char *s1 = serialized(c2);
	char *s2 = serialized(bookmark_to_pep2(a, back));
	assert_string_equal(s1, s2);
	free(s1);
	free(s2);
	/* autojoin false and an empty name are left out. */
	c2 = parse(a, "<conference xmlns='urn:xmpp:bookmarks:1' name='' "
		   "autojoin='false'/>");
	check_conversion(a, bookmark_to_legacy(a, STR_LIT("r@m"), c2),
			 "<conference xmlns='storage:bookmarks' jid='r@m'/>");
	arena_destroy(&a);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	server.conf = &conf;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_caps_examples),
		cmocka_unit_test(test_caps_refusals),
		cmocka_unit_test(test_config_apply),
		cmocka_unit_test(test_config_form_round_trip),
		cmocka_unit_test(test_preconditions),
		cmocka_unit_test(test_photo),
		cmocka_unit_test(test_bookmarks),
		cmocka_unit_test_setup_teardown(test_store, fx_setup,
						fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
