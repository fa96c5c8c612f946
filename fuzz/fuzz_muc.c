/*
 * fuzz_muc.c - libFuzzer target for what group chat reads from clients
 * beyond the XML parser: the room configuration form (muc_config_apply,
 * with the archive option, muc#roomconfig_enablearchiving or mam), a
 * join's <history/> request (muc_history_first), the nick registration
 * form (muc_register_form) and the voice request form
 * (muc_request_form), and, as a round trip, the stored record of a room
 * with its registered nicks.
 *
 * The input is one element, parsed as a stanza's payload would be. The
 * checks: nothing crashes or leaks; an accepted configuration has
 * maxusers within 1..muc.max_occupants and a password when it is
 * password protected; the history chosen is a suffix of what is kept,
 * honours maxstanzas, and grows when the limits are removed; a
 * registered nick is non-empty, stable under resourceprep and reserved
 * for its member only, also once the record is read back; a voice
 * answer names a nick; a room's record read back gives the same record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/server.h"
#include "core/xmalloc.h"
#include "fuzz.h"
#include "mod/muc/muc.h"
#include "xml/dataform.h"
#include "xml/parser.h"
#include "xmpp/jid.h"
#include "xmpp/ns.h"

static struct config conf = {
	.limits = { .max_stanza_size = 64 * 1024 },
	.muc = { .max_occupants = 500, .max_history = 20 },
};

static _Noreturn void broken(const char *what)
{
	fprintf(stderr, "fuzz_muc: %s\n", what);
	abort();
}

static void check_config(struct arena *a, const struct xml_elem *x)
{
	struct dataform f;
	if (x == NULL || dataform_parse(a, x, &f) < 0)
		return;
	struct room r = { .node = "room", .jid = "room@c.h",
			  .domain = "c.h" };
	r.cfg.max_users = 100;
	if (muc_config_apply(&f, &r.cfg) == 0) {
		if (r.cfg.max_users < 1 ||
		    r.cfg.max_users > conf.muc.max_occupants)
			broken("maxusers out of bounds accepted");
		if (r.cfg.password_protected && r.cfg.password == NULL)
			broken("password protection without a password");
		/* What was accepted survives storage. */
		muc_aff_set(&r, "a@h", AFF_OWNER);
		size_t n1, n2;
		char *rec1 = muc_room_record(&r, &n1);
		struct room back = { .node = "room", .jid = "room@c.h",
				     .domain = "c.h" };
		if (muc_room_from_record(&back, rec1, n1) < 0)
			broken("a room's record does not read back");
		char *rec2 = muc_room_record(&back, &n2);
		if (n1 != n2 || memcmp(rec1, rec2, n1) != 0)
			broken("a room's record changes when read back");
		free(rec1);
		free(rec2);
		muc_cfg_free(&back.cfg);
		free(back.subject);
		free(back.subject_nick);
		hmap_clear(&back.affs);
		hmap_clear(&r.affs);
	}
	muc_cfg_free(&r.cfg);
}

static void check_register(struct arena *a, const struct xml_elem *x)
{
	struct dataform f;
	struct str nick, again;
	const char *why;
	bool allow;
	if (x == NULL || dataform_parse(a, x, &f) < 0)
		return;
	int kind = muc_request_form(&f, &allow, &nick);
	if (kind == 1 && nick.len == 0)
		broken("a voice answer without a nick accepted");
	if (muc_register_form(a, &f, &nick) < 0)
		return;
	if (nick.len == 0 || strlen(nick.p) != nick.len)
		broken("an empty or embedded-NUL nick registered");
	if (jid_resourceprep(a, nick, &again, &why) < 0 ||
	    !str_eq(nick, again))
		broken("a registered nick changes under resourceprep");
	struct room r = { .node = "room", .jid = "room@c.h",
			  .domain = "c.h" };
	r.cfg.max_users = 100;
	muc_aff_set(&r, "a@h", AFF_OWNER);
	muc_aff_set(&r, "b@h", AFF_MEMBER);
	muc_nick_set(&r, "b@h", nick.p);
	size_t n1, n2;
	char *rec1 = muc_room_record(&r, &n1);
	struct room back = { .node = "room", .jid = "room@c.h",
			     .domain = "c.h" };
	if (muc_room_from_record(&back, rec1, n1) < 0)
		broken("a record with a nick does not read back");
	const char *owner = muc_nick_owner(&back, nick);
	if (owner == NULL || strcmp(owner, "b@h") != 0 ||
	    muc_nick_of(&back, STR_LIT("a@h")) != NULL)
		broken("a registered nick lost or moved in the record");
	char *rec2 = muc_room_record(&back, &n2);
	if (n1 != n2 || memcmp(rec1, rec2, n1) != 0)
		broken("a record with a nick changes when read back");
	/* A member who stops being one loses the nick. */
	muc_aff_set(&back, "b@h", AFF_NONE);
	if (muc_nick_owner(&back, nick) != NULL)
		broken("a nick outlived its membership");
	free(rec1);
	free(rec2);
	muc_cfg_free(&back.cfg);
	muc_nicks_clear(&back);
	hmap_clear(&back.affs);
	muc_nicks_clear(&r);
	hmap_clear(&r.affs);
}

static void check_history(const struct xml_elem *h)
{
	enum { KEPT = 8 };
	struct hist kept[KEPT];
	struct room r = { .hist = kept, .hist_n = KEPT, .hist_cap = KEPT,
			  .hist_head = 3 };
	int64_t now = 1700000000;
	for (size_t i = 0; i < KEPT; i++) {
		struct hist *e = &kept[(r.hist_head + i) % KEPT];
		e->b = NULL;
		e->ts = now - (int64_t)(KEPT - i) * 60;
		e->chars = 10 * (i + 1);
	}
	size_t first = muc_history_first(&r, h, now);
	if (first > KEPT)
		broken("history index past the end");
	struct str ms = xml_attr_get(h, "maxstanzas");
	if (ms.p != NULL) {
		char *end;
		long n = strtol(ms.p, &end, 10);
		if (*end == '\0' && n >= 0 && KEPT - first > (size_t)n)
			broken("more history than maxstanzas");
	}
	if (muc_history_first(&r, NULL, now) > first)
		broken("no limits gave less history");
}

FUZZ_TARGET(muc)
{
	struct arena *a = fuzz_arena;
	server.conf = &conf;
	struct xml_elem *e = xml_parse_elem(a, STR(data, size),
					    STR_LIT(NS_CLIENT));
	if (e == NULL)
		return;
	check_config(a, dataform_find(e));
	check_config(a, e);
	check_register(a, dataform_find(e));
	check_register(a, e);
	struct xml_elem *h = xml_child(e, NULL, "history");
	check_history(h ? h : e);
}
