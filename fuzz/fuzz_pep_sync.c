/*
 * fuzz_pep_sync.c - libFuzzer target for what the PEP conversions read
 * from clients (mod_avatar.c, mod_bookmarks.c): a vCard's PHOTO or an
 * avatar data item (base64 image bytes), and XEP-0048 / XEP-0402
 * bookmarks.
 *
 * The input is one element. The checks: nothing crashes or leaks; bytes
 * that decoded encode to base64 that decodes to the same bytes and hash;
 * the bookmark conversions reach their canonical form in one step, which
 * is what tells an unchanged room from a changed one (XEP-0402 §6.2):
 * XEP-0048 -> XEP-0402 -> XEP-0048 -> XEP-0402 gives the first XEP-0402
 * form again, from either side.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/server.h"
#include "fuzz.h"
#include "mod/pubsub/pubsub-private.h"
#include "xml/parser.h"

static _Noreturn void broken(const char *what)
{
	fprintf(stderr, "fuzz_pep_sync: %s\n", what);
	abort();
}

static bool same(const struct xml_elem *x, const struct xml_elem *y)
{
	struct buf bx = { .max = 1 << 20 }, by = { .max = 1 << 20 };
	bool eq = xml_serialize(&bx, x, STR_LIT("")) == 0 &&
		  xml_serialize(&by, y, STR_LIT("")) == 0 &&
		  bx.len == by.len && memcmp(bx.data, by.data, bx.len) == 0;
	buf_reset(&bx);
	buf_reset(&by);
	return eq;
}

static void check_photo(struct arena *a, struct str b64)
{
	struct avatar_photo p, q;
	if (!avatar_photo_decode(a, b64, &p))
		return;
	if (p.len == 0 || strlen(p.hash) != SHA1_HEX_LEN)
		broken("decoded photo without bytes or hash");
	struct str again = avatar_photo_b64(a, &p);
	if (again.p == NULL || !avatar_photo_decode(a, again, &q) ||
	    q.len != p.len || memcmp(q.bytes, p.bytes, p.len) != 0 ||
	    strcmp(q.hash, p.hash) != 0)
		broken("base64 round trip differs");
	(void)avatar_photo_sniff(&p);
}

/* From a XEP-0402 conference (jid: its id) or a legacy one. */
static void check_bookmark(struct arena *a, const struct xml_elem *c,
			   bool legacy)
{
	struct str jid = legacy ? xml_attr_get(c, "jid") : STR_LIT("r@h");
	if (jid.p == NULL)
		jid = STR_LIT("");
	struct xml_elem *p1 = legacy ? bookmark_to_pep2(a, c)
				     : bookmark_to_pep2(a,
					       bookmark_to_legacy(a, jid, c));
	if (p1 == NULL)
		broken("conversion failed in an uncapped arena");
	struct xml_elem *l = bookmark_to_legacy(a, jid, p1);
	struct xml_elem *p2 = l ? bookmark_to_pep2(a, l) : NULL;
	if (p2 == NULL || !same(p1, p2))
		broken("bookmark conversion is not canonical after one step");
}

FUZZ_TARGET(pep_sync)
{
	struct arena *a = fuzz_arena;
	struct xml_elem *e = xml_parse_elem(a, STR(data, size), STR_LIT(""));
	if (e == NULL)
		return;
	struct avatar_photo p;
	(void)avatar_vcard_photo(a, e, &p);
	check_photo(a, xml_text(a, e));
	if (str_eq_c(e->name, "conference"))
		check_bookmark(a, e, !str_eq_c(e->ns, "urn:xmpp:bookmarks:1"));
	xml_foreach_child(c, e)
		if (str_eq_c(c->name, "conference"))
			check_bookmark(a, c, str_eq_c(c->ns,
						      "storage:bookmarks"));
}
