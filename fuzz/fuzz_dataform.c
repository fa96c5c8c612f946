/*
 * fuzz_dataform.c - libFuzzer target for dataform_parse() (src/xml/
 * dataform.c), which reads forms that clients submit.
 *
 * The input is parsed as one element (as a stanza's payload would be);
 * dataform_parse() must not fail on memory and, when it accepts a form,
 * its result must be a fixed point: a form built from the parsed fields
 * parses back to the same fields, values and FORM_TYPE, and no var
 * appears twice.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "xml/dataform.h"
#include "xml/parser.h"
#include "xmpp/ns.h"

static _Noreturn void mismatch(const char *what)
{
	fprintf(stderr, "fuzz_dataform: %s\n", what);
	abort();
}

static const char *const type_names[] = { "form", "submit", "cancel",
					  "result" };

FUZZ_TARGET(dataform)
{
	struct arena *a = fuzz_arena;
	struct xml_elem *e = xml_parse_elem(a, STR(data, size),
					    STR_LIT(NS_CLIENT));
	if (e == NULL)
		return;
	struct dataform f;
	/* the form itself, or one inside a payload */
	if (dataform_parse(a, e, &f) < 0 &&
	    dataform_parse(a, dataform_find(e), &f) < 0)
		return;
	for (size_t i = 0; i < f.nfields; i++) {
		if (f.fields[i].var.len == 0)
			mismatch("empty var accepted");
		for (size_t j = i + 1; j < f.nfields; j++)
			if (str_eq(f.fields[i].var, f.fields[j].var))
				mismatch("duplicate var accepted");
	}
	struct xml_elem *x = dataform_new(a, type_names[f.type],
		str_is_null(f.form_type) ? NULL : f.form_type.p);
	if (x == NULL)
		mismatch("build failed");
	for (size_t i = 0; i < f.nfields; i++) {
		const struct dataform_field *fl = &f.fields[i];
		if (dataform_add_field(a, x, fl->var.p,
				       str_is_null(fl->type) ? NULL : fl->type.p,
				       NULL, fl->values, fl->nvalues) == NULL)
			mismatch("build failed");
	}
	struct dataform g;
	if (dataform_parse(a, x, &g) < 0)
		mismatch("built form does not parse");
	if (g.type != f.type || g.nfields != f.nfields ||
	    !str_eq(g.form_type, f.form_type))
		mismatch("form differs after a round trip");
	for (size_t i = 0; i < f.nfields; i++) {
		const struct dataform_field *p = &f.fields[i], *q = &g.fields[i];
		if (!str_eq(p->var, q->var) || !str_eq(p->type, q->type) ||
		    p->nvalues != q->nvalues)
			mismatch("field differs after a round trip");
		for (size_t k = 0; k < p->nvalues; k++)
			if (!str_eq(p->values[k], q->values[k]))
				mismatch("value differs after a round trip");
	}
}
