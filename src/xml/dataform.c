/*
 * dataform.c - XEP-0004 data forms; see dataform.h.
 */
#include "../xmpp/ns.h"
#include "dataform.h"

static const struct {
	const char *name;
	enum dataform_type type;
} form_types[] = {
	{ "form", DATAFORM_FORM },
	{ "submit", DATAFORM_SUBMIT },
	{ "cancel", DATAFORM_CANCEL },
	{ "result", DATAFORM_RESULT },
};

struct xml_elem *dataform_find(const struct xml_elem *e)
{
	return xml_child(e, NS_DATA, "x");
}

static bool is_field(const struct xml_elem *c)
{
	return str_eq_c(c->ns, NS_DATA) && str_eq_c(c->name, "field");
}

/* Reads the <value/> children of c into fl. */
static int field_values(struct arena *a, const struct xml_elem *c,
			struct dataform_field *fl)
{
	size_t n = 0;
	xml_foreach_child(v, c)
		if (str_eq_c(v->ns, NS_DATA) && str_eq_c(v->name, "value"))
			n++;
	fl->nvalues = 0;
	fl->values = n ? arena_alloc(a, n * sizeof(*fl->values)) : NULL;
	if (n && fl->values == NULL)
		return -1;
	xml_foreach_child(v, c) {
		if (!str_eq_c(v->ns, NS_DATA) || !str_eq_c(v->name, "value"))
			continue;
		/* §3.2: a value holds character data only */
		if (xml_first_child_elem(v) != NULL)
			return -1;
		struct str t = xml_text(a, v);
		if (t.p == NULL)
			return -1;
		fl->values[fl->nvalues++] = t;
	}
	return 0;
}

int dataform_parse(struct arena *a, const struct xml_elem *x,
		   struct dataform *f)
{
	*f = (struct dataform){ .form_type = STR_NULL };
	if (x == NULL || !str_eq_c(x->ns, NS_DATA) || !str_eq_c(x->name, "x"))
		return -1;
	struct str type = xml_attr_get(x, "type");
	size_t i;
	for (i = 0; i < sizeof(form_types) / sizeof(form_types[0]); i++)
		if (str_eq_c(type, form_types[i].name))
			break;
	if (i == sizeof(form_types) / sizeof(form_types[0]))
		return -1; /* §3.3: type is REQUIRED and one of four */
	f->type = form_types[i].type;

	size_t n = 0;
	xml_foreach_child(c, x)
		if (is_field(c))
			n++;
	f->fields = n ? arena_alloc(a, n * sizeof(*f->fields)) : NULL;
	if (n && f->fields == NULL)
		return -1;
	xml_foreach_child(c, x) {
		if (!is_field(c))
			continue;
		struct str var = xml_attr_get(c, "var");
		struct str ftype = xml_attr_get(c, "type");
		if (str_eq_c(ftype, "fixed"))
			continue; /* a label: no var needed, nothing submitted */
		/* §3.2: var is REQUIRED and unique (but for fixed) */
		if (var.len == 0 || dataform_field(f, var.p) != NULL)
			return -1;
		if (str_eq_c(var, "FORM_TYPE")) {
			if (!str_is_null(f->form_type))
				return -1;
			struct dataform_field ft;
			if (field_values(a, c, &ft) < 0 || ft.nvalues != 1)
				return -1;
			f->form_type = ft.values[0];
			continue;
		}
		struct dataform_field *fl = &f->fields[f->nfields];
		fl->var = var;
		fl->type = ftype;
		if (field_values(a, c, fl) < 0)
			return -1;
		f->nfields++;
	}
	return 0;
}

const struct dataform_field *dataform_field(const struct dataform *f,
					    const char *var)
{
	struct str v = str_c(var);
	for (size_t i = 0; i < f->nfields; i++)
		if (str_eq(f->fields[i].var, v))
			return &f->fields[i];
	return NULL;
}

struct str dataform_value(const struct dataform *f, const char *var)
{
	const struct dataform_field *fl = dataform_field(f, var);
	if (fl == NULL)
		return STR_NULL;
	return fl->nvalues ? fl->values[0] : STR_LIT("");
}

int dataform_bool(struct str v, bool *out)
{
	if (str_eq_c(v, "1") || str_eq_c(v, "true"))
		*out = true;
	else if (str_eq_c(v, "0") || str_eq_c(v, "false"))
		*out = false;
	else
		return -1;
	return 0;
}

struct xml_elem *dataform_new(struct arena *a, const char *type,
			      const char *form_type)
{
	struct xml_elem *x = xml_elem_new(a, STR_LIT(NS_DATA), STR_LIT("x"));
	if (x == NULL || xml_attr_set(a, x, "type", str_c(type)) < 0)
		return NULL;
	if (form_type != NULL) {
		struct str v = str_c(form_type);
		if (dataform_add_field(a, x, "FORM_TYPE", "hidden", NULL, &v,
				       1) == NULL)
			return NULL;
	}
	return x;
}

struct xml_elem *dataform_add_field(struct arena *a, struct xml_elem *x,
				    const char *var, const char *type,
				    const char *label,
				    const struct str *values, size_t nvalues)
{
	struct xml_elem *fl = xml_add_child(a, x, STR_LIT(NS_DATA),
					    STR_LIT("field"));
	if (fl == NULL)
		return NULL;
	if ((var && xml_attr_set(a, fl, "var", str_c(var)) < 0) ||
	    (type && xml_attr_set(a, fl, "type", str_c(type)) < 0) ||
	    (label && xml_attr_set(a, fl, "label", str_c(label)) < 0))
		return NULL;
	for (size_t i = 0; i < nvalues; i++) {
		struct xml_elem *v = xml_add_child(a, fl, STR_LIT(NS_DATA),
						   STR_LIT("value"));
		if (v == NULL || xml_add_text(a, v, values[i]) < 0)
			return NULL;
	}
	return fl;
}

int dataform_add_option(struct arena *a, struct xml_elem *field,
			const char *label, struct str value)
{
	struct xml_elem *o = xml_add_child(a, field, STR_LIT(NS_DATA),
					   STR_LIT("option"));
	if (o == NULL || (label && xml_attr_set(a, o, "label",
						str_c(label)) < 0))
		return -1;
	struct xml_elem *v = xml_add_child(a, o, STR_LIT(NS_DATA),
					   STR_LIT("value"));
	if (v == NULL || xml_add_text(a, v, value) < 0)
		return -1;
	return 0;
}
