/*
 * request.c - XEP-0313 query forms and XEP-0059 result sets, read into
 * an id range (see request.h).
 *
 * Every filter narrows one exclusive range lo < id < hi: start and end
 * are inclusive times and ids are times, so start is lo = start - 1 and
 * end is hi = end + 1; after-id and RSM <after/> raise lo, before-id and
 * RSM <before/> lower hi. RSM <before/> (empty or not) also reads the
 * range from its newest end (the last page, or the page before an id).
 * XEP-0313 §4.3.2 leaves <before/> with <after/> undefined; here it is the
 * last page between the two.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../../core/bug.h"

#include "../../xml/dataform.h"
#include "../../xmpp/datetime.h"
#include "../../xmpp/ns.h"
#include "request.h"

/*
 * The wire id: AES-128 of one block, the id (8 bytes, big-endian) then 8
 * zero bytes, in lowercase hex. Decrypting anything else gives a block
 * whose second half is zero with probability 2^-64: the check that tells
 * our ids from guesses without storing anything. One block with a fixed
 * key is a keyed permutation of 128-bit values, all that is needed here
 * (no chaining, nothing else is encrypted with the key).
 */
static unsigned char id_key[MAM_ID_KEY_LEN];

void mam_id_key(const unsigned char key[MAM_ID_KEY_LEN])
{
	memcpy(id_key, key, sizeof(id_key));
}

/* One block through AES-128-ECB, either way. */
static void id_block(const unsigned char in[16], unsigned char out[16],
		     bool encrypt)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0;
	BUG_ON(c == NULL ||
	       EVP_CipherInit_ex(c, EVP_aes_128_ecb(), NULL, id_key, NULL,
				 encrypt) != 1 ||
	       EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
	       EVP_CipherUpdate(c, out, &n, in, 16) != 1 || n != 16);
	EVP_CIPHER_CTX_free(c);
}

void mam_id_format(int64_t id, char out[MAM_ID_LEN])
{
	unsigned char b[16] = { 0 }, e[16];
	uint64_t v = (uint64_t)id;
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (unsigned char)(v & 0xff);
	id_block(b, e, true);
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[e[i] >> 4];
		out[2 * i + 1] = hex[e[i] & 15];
	}
	out[32] = '\0';
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
				      : -1;
}

int mam_id_parse(struct str s, int64_t *id_r)
{
	if (s.p == NULL || s.len != 32)
		return -1;
	unsigned char e[16], b[16];
	for (int i = 0; i < 16; i++) {
		int hi = hex_digit(s.p[2 * i]), lo = hex_digit(s.p[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		e[i] = (unsigned char)(hi << 4 | lo);
	}
	id_block(e, b, false);
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	for (int i = 8; i < 16; i++)
		if (b[i] != 0)
			return -1;
	if (v == 0 || v > INT64_MAX)
		return -1;
	*id_r = (int64_t)v;
	return 0;
}

static int fail(enum stanza_err *err_r, enum stanza_err err)
{
	*err_r = err;
	return -1;
}

/* A named id: bounds the range and must exist. */
static void named_id(struct mam_request *r, struct str s, int64_t *id_r)
{
	if (mam_id_parse(s, id_r) < 0) {
		r->unknown_id = true;
		return;
	}
	if (r->ncheck < sizeof(r->check) / sizeof(r->check[0]))
		r->check[r->ncheck++] = *id_r;
}

static void raise_lo(struct mam_request *r, int64_t v)
{
	if (v > r->lo)
		r->lo = v;
}

static void lower_hi(struct mam_request *r, int64_t v)
{
	if (v < r->hi)
		r->hi = v;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int read_ids(struct arena *a, const struct dataform_field *f,
		    struct mam_request *r, enum stanza_err *err_r)
{
	if (f->nvalues > MAM_IDS_MAX)
		return fail(err_r, STANZA_ERR_POLICY_VIOLATION);
	if (f->nvalues == 0)
		return 0;
	r->ids = arena_alloc(a, f->nvalues * sizeof(*r->ids));
	if (r->ids == NULL)
		return fail(err_r, STANZA_ERR_RESOURCE_CONSTRAINT);
	for (size_t i = 0; i < f->nvalues; i++)
		if (mam_id_parse(f->values[i], &r->ids[r->nids]) == 0)
			r->nids++;
		else
			r->unknown_id = true;
	qsort(r->ids, r->nids, sizeof(*r->ids), cmp_id);
	size_t k = 0;
	for (size_t i = 0; i < r->nids; i++)
		if (k == 0 || r->ids[k - 1] != r->ids[i])
			r->ids[k++] = r->ids[i];
	r->nids = k;
	return 0;
}

static int read_form(struct arena *a, const struct xml_elem *x,
		     struct mam_request *r, enum stanza_err *err_r)
{
	struct dataform f;
	if (dataform_parse(a, x, &f) < 0 || f.type != DATAFORM_SUBMIT)
		return fail(err_r, STANZA_ERR_BAD_REQUEST);
	if (!str_is_null(f.form_type) && !str_eq_c(f.form_type, NS_MAM))
		return fail(err_r, STANZA_ERR_BAD_REQUEST);
	for (size_t i = 0; i < f.nfields; i++) {
		const struct dataform_field *fl = &f.fields[i];
		struct str v = fl->nvalues > 0 ? fl->values[0] : STR_NULL;
		bool empty = v.p == NULL || v.len == 0;
		int64_t t;
		const char *why;
		if (str_eq_c(fl->var, "ids")) {
			if (read_ids(a, fl, r, err_r) < 0)
				return -1;
		} else if (str_eq_c(fl->var, "with") ||
			   str_eq_c(fl->var, "start") ||
			   str_eq_c(fl->var, "end") ||
			   str_eq_c(fl->var, "after-id") ||
			   str_eq_c(fl->var, "before-id")) {
			if (fl->nvalues > 1)
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			if (empty)
				continue; /* an empty field filters nothing */
			if (str_eq_c(fl->var, "with")) {
				if (jid_parse(a, v, &r->with, &why) < 0)
					return fail(err_r,
						    STANZA_ERR_JID_MALFORMED);
				r->has_with = true;
			} else if (str_eq_c(fl->var, "start")) {
				if (xep82_parse_us(v, &t) < 0)
					return fail(err_r,
						    STANZA_ERR_BAD_REQUEST);
				raise_lo(r, t - 1);
			} else if (str_eq_c(fl->var, "end")) {
				if (xep82_parse_us(v, &t) < 0)
					return fail(err_r,
						    STANZA_ERR_BAD_REQUEST);
				lower_hi(r, t + 1);
			} else if (str_eq_c(fl->var, "after-id")) {
				named_id(r, v, &t);
				if (!r->unknown_id)
					raise_lo(r, t);
			} else {
				named_id(r, v, &t);
				if (!r->unknown_id)
					lower_hi(r, t);
			}
		} else {
			/* §4.1.5: a field the server does not know. */
			return fail(err_r, STANZA_ERR_FEATURE_NOT_IMPLEMENTED);
		}
	}
	return 0;
}

static int read_max(struct arena *a, const struct xml_elem *e,
		    struct mam_request *r, enum stanza_err *err_r)
{
	struct str s = xml_text(a, e);
	if (s.p == NULL || s.len == 0 || s.len > 9)
		return fail(err_r, STANZA_ERR_BAD_REQUEST);
	size_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return fail(err_r, STANZA_ERR_BAD_REQUEST);
		v = v * 10 + (size_t)(s.p[i] - '0');
	}
	r->count_only = v == 0;
	r->max = v > MAM_PAGE_MAX ? MAM_PAGE_MAX : v;
	return 0;
}

static int read_set(struct arena *a, const struct xml_elem *set,
		    struct mam_request *r, enum stanza_err *err_r)
{
	bool seen_max = false, seen_after = false, seen_before = false;
	xml_foreach_child(c, set) {
		if (!str_eq_c(c->ns, NS_RSM))
			continue;
		int64_t id;
		if (str_eq_c(c->name, "max")) {
			if (seen_max || read_max(a, c, r, err_r) < 0)
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			seen_max = true;
		} else if (str_eq_c(c->name, "after")) {
			struct str s = xml_text(a, c);
			if (seen_after || s.p == NULL || s.len == 0)
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			seen_after = true;
			named_id(r, s, &id);
			if (!r->unknown_id)
				raise_lo(r, id);
		} else if (str_eq_c(c->name, "before")) {
			struct str s = xml_text(a, c);
			if (seen_before || s.p == NULL)
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			seen_before = true;
			r->backward = true;
			if (s.len == 0)
				continue; /* §2.5: the last page */
			named_id(r, s, &id);
			if (!r->unknown_id)
				lower_hi(r, id);
		} else if (str_eq_c(c->name, "index")) {
			/* §2.6 is optional; ids page without it. */
			return fail(err_r, STANZA_ERR_FEATURE_NOT_IMPLEMENTED);
		}
	}
	return 0;
}

int mam_request_parse(struct arena *a, const struct xml_elem *query,
		      struct mam_request *r, enum stanza_err *err_r)
{
	*r = (struct mam_request){
		.queryid = xml_attr_get(query, "queryid"),
		.lo = 0,
		.hi = INT64_MAX,
		.max = MAM_PAGE_DEFAULT,
	};
	/* XEP-0313 reserves 'node' for pubsub archives (XEP-0442). */
	if (xml_attr_get(query, "node").p != NULL)
		return fail(err_r, STANZA_ERR_FEATURE_NOT_IMPLEMENTED);
	bool seen_form = false, seen_set = false;
	xml_foreach_child(c, query) {
		if (str_eq_c(c->ns, NS_DATA) && str_eq_c(c->name, "x")) {
			if (seen_form) /* one form */
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			if (read_form(a, c, r, err_r) < 0)
				return -1;
			seen_form = true;
		} else if (str_eq_c(c->ns, NS_RSM) &&
			   str_eq_c(c->name, "set")) {
			if (seen_set) /* one set */
				return fail(err_r, STANZA_ERR_BAD_REQUEST);
			if (read_set(a, c, r, err_r) < 0)
				return -1;
			seen_set = true;
		} else if (str_eq_c(c->ns, NS_MAM) &&
			   str_eq_c(c->name, "flip-page")) {
			r->flip = true;
		}
	}
	/* Before 1970: no archive id is that small. */
	if (r->lo < 0)
		r->lo = 0;
	if (r->hi < 0)
		r->hi = 0;
	return 0;
}
