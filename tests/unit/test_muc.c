/*
 * test_muc.c - the parts of group chat that do not need a running
 * server: shared serialized stanzas (the splice point of 'to', the
 * escaped attribute, reference counts), the room configuration form
 * (XEP-0045 §10.2), the history a join asks for (§7.2.15), and the
 * stored record of a persistent room.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/conf.h"
#include "core/server.h"
#include "mod/muc/muc.h"
#include "router/fanout.h"
#include "xml/dataform.h"
#include "xml/parser.h"
#include "xmpp/ns.h"

static struct config conf = {
	.muc = { .max_occupants = 300, .max_history = 10 },
};

static struct xml_elem *parse(struct arena *a, const char *xml)
{
	struct xml_elem *x = xml_parse_elem(a, str_c(xml),
					    STR_LIT(NS_CLIENT));
	assert_non_null(x);
	return x;
}

static void test_shared_splice(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct xml_elem *m = parse(a, "<message from='r@c.h/n' "
				      "type='groupchat'><body>hi</body>"
				      "</message>");
	struct shared_bytes *b = shared_from_elem(m);
	assert_non_null(b);
	assert_int_equal(b->at, strlen("<message"));
	char *to = shared_to_attr(STR_LIT("o'b&c@h/x"));
	assert_string_equal(to, " to='o&apos;b&amp;c@h/x'");
	/* Spliced, the bytes parse back with that 'to'. */
	char out[512];
	snprintf(out, sizeof(out), "%.*s%s%s", (int)b->at, b->data, to,
		 b->data + b->at);
	struct xml_elem *back = parse(a, out);
	assert_true(str_eq_c(xml_attr_get(back, "to"), "o'b&c@h/x"));
	assert_true(str_eq_c(xml_attr_get(back, "from"), "r@c.h/n"));
	struct shared_bytes *b2 = shared_ref(b);
	shared_unref(&b);
	assert_null(b);
	assert_string_equal(b2->data + b2->len - strlen("</message>"),
			    "</message>");
	shared_unref(&b2);
	free(to);
	arena_destroy(&a);
}

static int apply(const char *fields, struct room_cfg *cfg)
{
	struct arena *a = arena_new(0);
	char *xml = NULL;
	assert_true(asprintf(&xml, "<x xmlns='jabber:x:data' type='submit'>"
			     "<field var='FORM_TYPE'><value>"
			     NS_MUC_ROOMCONFIG "</value></field>%s</x>",
			     fields) > 0);
	struct dataform f;
	assert_int_equal(dataform_parse(a, parse(a, xml), &f), 0);
	int rc = muc_config_apply(&f, cfg);
	free(xml);
	arena_destroy(&a);
	return rc;
}

#define F(var, val) "<field var='muc#roomconfig_" var "'><value>" val \
		    "</value></field>"

static void test_config_apply(void **state)
{
	(void)state;
	server.conf = &conf;
	struct room_cfg c = { .max_users = 100 };
	assert_int_equal(apply(F("roomname", "Lobby") F("persistentroom", "1")
			       F("membersonly", "true")
			       F("moderatedroom", "0") F("maxusers", "300")
			       F("whois", "anyone") F("unknownfield", "x"),
			       &c), 0);
	assert_string_equal(c.name, "Lobby");
	assert_true(c.persistent && c.members_only && c.whois_anyone);
	assert_false(c.moderated);
	assert_int_equal(c.max_users, 300);
	/* Refused: above muc.max_occupants, not a number, zero, a whois
	 * that is neither, a boolean that is not one, protection without
	 * a password. */
	assert_int_equal(apply(F("maxusers", "301"), &c), -1);
	assert_int_equal(apply(F("maxusers", "ten"), &c), -1);
	assert_int_equal(apply(F("maxusers", "0"), &c), -1);
	assert_int_equal(apply(F("whois", "nobody"), &c), -1);
	assert_int_equal(apply(F("membersonly", "yes"), &c), -1);
	struct room_cfg p = { .max_users = 10 };
	assert_int_equal(apply(F("passwordprotectedroom", "1"), &p), -1);
	muc_cfg_free(&p);
	memset(&p, 0, sizeof(p));
	assert_int_equal(apply(F("passwordprotectedroom", "1")
			       F("roomsecret", "s3cret"), &p), 0);
	assert_string_equal(p.password, "s3cret");
	/* An empty name clears it. */
	assert_int_equal(apply(F("roomname", ""), &c), 0);
	assert_null(c.name);
	muc_cfg_free(&c);
	muc_cfg_free(&p);
}

static size_t hist_first(struct room *r, const char *h, int64_t now)
{
	struct arena *a = arena_new(0);
	size_t n = muc_history_first(r, h ? parse(a, h) : NULL, now);
	arena_destroy(&a);
	return n;
}

static void test_history(void **state)
{
	(void)state;
	/* Five kept messages, a minute apart, the newest a minute ago,
	 * bodies of 10, 20, ... 50 characters, in a ring that wraps. */
	struct hist kept[5];
	struct room r = { .hist = kept, .hist_n = 5, .hist_cap = 5,
			  .hist_head = 3 };
	int64_t now = 1700000000; /* 2023-11-14T22:13:20Z */
	for (size_t i = 0; i < 5; i++) {
		struct hist *e = &kept[(r.hist_head + i) % 5];
		e->ts = now - (int64_t)(5 - i) * 60;
		e->chars = 10 * (i + 1);
	}
	assert_int_equal(hist_first(&r, NULL, now), 0);
	assert_int_equal(hist_first(&r, "<history/>", now), 0);
	assert_int_equal(hist_first(&r, "<history maxstanzas='2'/>", now), 3);
	assert_int_equal(hist_first(&r, "<history maxstanzas='0'/>", now), 5);
	assert_int_equal(hist_first(&r, "<history maxstanzas='x'/>", now), 0);
	assert_int_equal(hist_first(&r, "<history seconds='150'/>", now), 3);
	/* maxchars counts from the newest: 50 + 40 fit in 95. */
	assert_int_equal(hist_first(&r, "<history maxchars='95'/>", now), 3);
	assert_int_equal(hist_first(&r, "<history maxchars='0'/>", now), 5);
	assert_int_equal(hist_first(&r, "<history since="
				    "'2023-11-14T22:10:20Z'/>", now), 2);
	assert_int_equal(hist_first(&r, "<history since='garbage'/>", now),
			 0);
	/* The tightest limit wins. */
	assert_int_equal(hist_first(&r, "<history maxstanzas='4' "
				    "seconds='130'/>", now), 3);
}

static void test_record_round_trip(void **state)
{
	(void)state;
	server.conf = &conf;
	struct room r = { .node = "lobby", .jid = "lobby@c.h",
			  .domain = "c.h" };
	r.cfg.name = strdup("The <Lobby> & 'co'");
	r.cfg.password = strdup("pw");
	r.cfg.persistent = r.cfg.members_only = r.cfg.password_protected =
		true;
	r.cfg.max_users = 42;
	r.subject = strdup("Topic");
	r.subject_nick = strdup("Al");
	for (size_t i = 0; i < sizeof(r.secret); i++)
		r.secret[i] = (unsigned char)(i * 7);
	muc_aff_set(&r, "a@h", AFF_OWNER);
	muc_aff_set(&r, "b@h", AFF_MEMBER);
	muc_aff_set(&r, "c@h", AFF_OUTCAST);
	size_t n;
	char *rec = muc_room_record(&r, &n);
	struct room b = { .node = "lobby", .jid = "lobby@c.h",
			  .domain = "c.h" };
	assert_int_equal(muc_room_from_record(&b, rec, n), 0);
	assert_string_equal(b.cfg.name, r.cfg.name);
	assert_string_equal(b.cfg.password, "pw");
	assert_null(b.cfg.desc);
	assert_true(b.cfg.persistent && b.cfg.members_only &&
		    b.cfg.password_protected);
	assert_false(b.cfg.moderated || b.cfg.whois_anyone);
	assert_int_equal(b.cfg.max_users, 42);
	assert_string_equal(b.subject, "Topic");
	assert_memory_equal(b.secret, r.secret, sizeof(r.secret));
	assert_int_equal(muc_aff_of(&b, "a@h"), AFF_OWNER);
	assert_int_equal(muc_aff_of(&b, "b@h"), AFF_MEMBER);
	assert_int_equal(muc_aff_of(&b, "c@h"), AFF_OUTCAST);
	assert_int_equal(muc_aff_of(&b, "d@h"), AFF_NONE);
	assert_int_equal(muc_room_from_record(&b, "<nope/>", 7), -1);
	free(rec);
	muc_cfg_free(&r.cfg);
	muc_cfg_free(&b.cfg);
	free(r.subject);
	free(r.subject_nick);
	free(b.subject);
	free(b.subject_nick);
	hmap_clear(&r.affs);
	hmap_clear(&b.affs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shared_splice),
		cmocka_unit_test(test_config_apply),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_record_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
