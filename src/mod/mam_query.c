/*
 * mam_query.c - XEP-0313 query forms and XEP-0059 result sets, read into
 * an id range (see mam_query.h).
 *
 * Every filter narrows one exclusive range lo < id < hi: start and end
 * are inclusive times and ids are times, so start is lo = start - 1 and
 * end is hi = end + 1; after-id and RSM <after/> raise lo, before-id and
 * RSM <before/> lower hi. RSM <before/> (empty or not) also reads the
 * range from its newest end (the last page, or the page before an id).
 * XEP-0313 §4 leaves <before/> with <after/> undefined; here it is the
 * last page between the two.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "../xml/dataform.h"
#include "../xmpp/datetime.h"
#include "../xmpp/ns.h"
#include "mam_query.h"

void mam_id_format(int64_t id, char out[MAM_ID_LEN])
{
	snprintf(out, MAM_ID_LEN, "%" PRId64, id);
}

/* Ours are positive decimal integers without sign or leading zero. */
int mam_id_parse(struct str s, int64_t *id_r)
{
	if (s.p == NULL || s.len == 0 || s.len > 18 || s.p[0] == '0')
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (s.p[i] - '0');
	}
	*id_r = v;
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
			if (seen_form || read_form(a, c, r, err_r) < 0)
				return fail(err_r, seen_form
							   ? STANZA_ERR_BAD_REQUEST
							   : *err_r);
			seen_form = true;
		} else if (str_eq_c(c->ns, NS_RSM) &&
			   str_eq_c(c->name, "set")) {
			if (seen_set || read_set(a, c, r, err_r) < 0)
				return fail(err_r, seen_set
							  ? STANZA_ERR_BAD_REQUEST
							  : *err_r);
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
