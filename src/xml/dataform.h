/*
 * dataform.h - XEP-0004 data forms: reading a submitted form from a tree,
 * and building forms to send.
 *
 * Modules that take forms (node configuration, publish-options, archive
 * queries, room configuration) read them through dataform_parse() so every
 * form is checked by the same rules: the type is one of XEP-0004 §3.3's,
 * every field but a "fixed" one has a var, no var appears twice (§3.2).
 * Views point into the request's tree or arena.
 */
#ifndef STANZAD_XML_DATAFORM_H
#define STANZAD_XML_DATAFORM_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/arena.h"
#include "../core/str.h"
#include "stanza.h"

enum dataform_type {
	DATAFORM_FORM,
	DATAFORM_SUBMIT,
	DATAFORM_CANCEL,
	DATAFORM_RESULT,
};

struct dataform_field {
	struct str var;     /* never empty */
	struct str type;    /* STR_NULL when absent (text-single, §3.3) */
	struct str *values; /* nvalues texts of <value/>, in order */
	size_t nvalues;
};

struct dataform {
	enum dataform_type type;
	struct str form_type; /* the hidden FORM_TYPE's value, or STR_NULL */
	struct dataform_field *fields; /* without FORM_TYPE and fixed fields */
	size_t nfields;
};

/* The first <x xmlns='jabber:x:data'/> child of e, or NULL. */
struct xml_elem *dataform_find(const struct xml_elem *e);

/* Reads x (an <x xmlns='jabber:x:data'/>) into *f, allocating in a.
 * Returns 0, or -1 if x breaks XEP-0004's rules (a stanza error
 * <bad-request/> for the caller) or a is full. */
int dataform_parse(struct arena *a, const struct xml_elem *x,
		   struct dataform *f);

/* The field var, or NULL. */
const struct dataform_field *dataform_field(const struct dataform *f,
					    const char *var);
/* The first value of field var: STR_NULL when there is no such field,
 * an empty view for a field without a value. */
struct str dataform_value(const struct dataform *f, const char *var);
/* A boolean field value (§3.3: "0", "1", "false", "true"): 0 and *out,
 * or -1 when v is anything else. */
int dataform_bool(struct str v, bool *out);

/* A new form of type ("form", "submit", "result") with, when form_type is
 * not NULL, the hidden FORM_TYPE field first. NULL when a is full. */
struct xml_elem *dataform_new(struct arena *a, const char *type,
			      const char *form_type);
/* Appends a field with var, type and label (each may be NULL) and its
 * values. Returns the field (for dataform_add_option) or NULL when a is
 * full. */
struct xml_elem *dataform_add_field(struct arena *a, struct xml_elem *x,
				    const char *var, const char *type,
				    const char *label,
				    const struct str *values, size_t nvalues);
/* Appends an <option/> (§3.2) to a list field. Returns 0 or -1. */
int dataform_add_option(struct arena *a, struct xml_elem *field,
			const char *label, struct str value);

#endif
