/*
 * fuzz_mam_query.c - libFuzzer target for mam_request_parse() (src/mod/mam/
 * request.c), which reads the XEP-0313 queries clients send, with the
 * XEP-0082 date-times of their start and end fields (src/xmpp/
 * datetime.c).
 *
 * The input is also read as an archive id (which must format back to the
 * same text) and parsed as one element, the <query/> payload. An accepted
 * query must be consistent: a page size within the server's bounds, ids
 * sorted and unique, no more ids than allowed, and a date-time that
 * parses must format and parse back to the same instant.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mod/mam/request.h"
#include "xml/parser.h"
#include "xmpp/datetime.h"
#include "xmpp/ns.h"

static _Noreturn void mismatch(const char *what)
{
	fprintf(stderr, "fuzz_mam_query: %s\n", what);
	abort();
}

FUZZ_TARGET(mam_query)
{
	static const unsigned char key[MAM_ID_KEY_LEN] = "fuzz-archive-key";
	mam_id_key(key);
	struct arena *a = fuzz_arena;
	int64_t us;
	/* the bytes as an archive id: a parsed id formats back to them */
	int64_t id;
	if (mam_id_parse(STR(data, size), &id) == 0) {
		char s[MAM_ID_LEN];
		mam_id_format(id, s);
		if (size != 32 || memcmp(s, data, 32) != 0)
			mismatch("archive id does not round-trip");
	}
	/* the bytes as a date-time, too */
	if (xep82_parse_us(STR(data, size), &us) == 0) {
		char s[XEP82_DATETIME_LEN];
		int64_t back;
		xep82_format_us(us, s);
		if (xep82_parse_us(str_c(s), &back) < 0 || back != us)
			mismatch("date-time does not round-trip");
	}
	struct xml_elem *e = xml_parse_elem(a, STR(data, size),
					    STR_LIT(NS_CLIENT));
	if (e == NULL)
		return;
	struct mam_request r;
	enum stanza_err err = STANZA_ERR_NONE;
	if (mam_request_parse(a, e, &r, &err) < 0) {
		if (err == STANZA_ERR_NONE)
			mismatch("refused without an error");
		return;
	}
	if (r.max > MAM_PAGE_MAX)
		mismatch("page too large");
	if (r.nids > MAM_IDS_MAX)
		mismatch("too many ids");
	for (size_t i = 1; i < r.nids; i++)
		if (r.ids[i - 1] >= r.ids[i])
			mismatch("ids not sorted and unique");
	if (r.lo < 0 || r.hi < 0)
		mismatch("negative bound");
	if (r.ncheck > sizeof(r.check) / sizeof(r.check[0]))
		mismatch("check overflow");
}
