/*
 * serialize.c - writes element trees as XML (XML 1.0 §2.4, §3.3.3;
 * Namespaces in XML 1.0 §3-6); see stanza.h.
 *
 * Elements get no prefix: each one is written in the default namespace and
 * declares xmlns='...' only where its namespace differs from the one in
 * scope. The exception is the XML namespace, which can only be reached
 * through its fixed prefix (<xml:x/>) and leaves the default one alone. Qualified attributes use xml: for the XML namespace and otherwise a
 * prefix ns0, ns1... declared on the same element. All text and attribute
 * values go through xml_escape(), so parsing the output gives back the same
 * tree: that round trip is what the unit tests and the fuzz target check.
 */
#include <stdio.h>
#include <string.h>

#include "../core/bug.h"
#include "../xmpp/ns.h"
#include "stanza.h"

int xml_escape(struct buf *b, struct str s, bool attr)
{
	return buf_append_xml_escaped(b, s, attr);
}

/* Appends before, idx, after; unlike buf_printf() it needs no room for a
 * NUL, so a buffer filled to exactly its max is accepted. */
static int put_idx(struct buf *b, const char *before, unsigned idx,
		   const char *after)
{
	char tmp[48];
	int n = snprintf(tmp, sizeof(tmp), "%s%u%s", before, idx, after);
	BUG_ON(n < 0 || (size_t)n >= sizeof(tmp));
	return buf_append(b, tmp, (size_t)n);
}

/* " name='value'" with an optional "prefix:" before the name. */
static int put_attr(struct buf *b, const char *prefix, unsigned idx,
		    struct str name, struct str value)
{
	int r;
	if (prefix == NULL)
		r = put_idx(b, " ns", idx, ":");
	else
		r = buf_append_c(b, prefix);
	if (r < 0 || buf_append_str(b, name) < 0 ||
	    buf_append(b, "='", 2) < 0 || xml_escape(b, value, true) < 0)
		return -1;
	return buf_append(b, "'", 1);
}

/* The generated prefix number of namespace ns among the qualified, non-xml
 * attributes of e before stop, in first-use order; *fresh is set when ns
 * first appears at stop. Attribute lists are short (max_attrs), so the
 * quadratic walk is cheaper than any table. */
static unsigned prefix_index(const struct xml_elem *e,
			     const struct xml_attr *stop, bool *fresh)
{
	unsigned n = 0;
	for (const struct xml_attr *at = e->attrs; at != stop; at = at->next) {
		if (at->ns.len == 0 || str_eq_c(at->ns, NS_XML))
			continue;
		bool seen = false;
		for (const struct xml_attr *q = e->attrs; q != at; q = q->next)
			if (str_eq(q->ns, at->ns))
				seen = true;
		if (seen)
			continue;
		if (str_eq(at->ns, stop->ns)) {
			*fresh = false;
			return n;
		}
		n++;
	}
	*fresh = true;
	return n;
}

static int put_attrs(struct buf *b, const struct xml_elem *e)
{
	for (const struct xml_attr *at = e->attrs; at; at = at->next) {
		if (at->ns.len == 0) {
			if (put_attr(b, " ", 0, at->name, at->value) < 0)
				return -1;
			continue;
		}
		if (str_eq_c(at->ns, NS_XML)) {
			if (put_attr(b, " xml:", 0, at->name, at->value) < 0)
				return -1;
			continue;
		}
		/* xmlns attributes are declarations, not data. */
		BUG_ON(str_eq_c(at->ns, NS_XMLNS));
		bool fresh;
		unsigned idx = prefix_index(e, at, &fresh);
		if (fresh && (put_idx(b, " xmlns:ns", idx, "='") < 0 ||
			      xml_escape(b, at->ns, true) < 0 ||
			      buf_append(b, "'", 1) < 0))
			return -1;
		if (put_attr(b, NULL, idx, at->name, at->value) < 0)
			return -1;
	}
	return 0;
}

static bool in_xml_ns(const struct xml_elem *e)
{
	return str_eq_c(e->ns, NS_XML);
}

/* "<name" or "</name", with xml: for the XML namespace. */
static int put_name(struct buf *b, const char *open, const struct xml_elem *e)
{
	if (buf_append_c(b, open) < 0 ||
	    (in_xml_ns(e) && buf_append(b, "xml:", 4) < 0))
		return -1;
	return buf_append_str(b, e->name);
}

static int put_start(struct buf *b, const struct xml_elem *e,
		     struct str parent_ns)
{
	if (put_name(b, "<", e) < 0)
		return -1;
	if (!in_xml_ns(e) && !str_eq(e->ns, parent_ns) &&
	    (buf_append_c(b, " xmlns='") < 0 ||
	     xml_escape(b, e->ns, true) < 0 || buf_append(b, "'", 1) < 0))
		return -1;
	return put_attrs(b, e);
}

int xml_serialize(struct buf *b, const struct xml_elem *e, struct str parent_ns)
{
	if (put_start(b, e, parent_ns) < 0)
		return -1;
	if (e->children == NULL)
		return buf_append(b, "/>", 2);
	if (buf_append(b, ">", 1) < 0)
		return -1;
	struct str scope = in_xml_ns(e) ? parent_ns : e->ns;
	for (const struct xml_node *n = e->children; n; n = n->next) {
		int r;
		if (n->type == XML_NODE_TEXT)
			r = xml_escape(b, ((const struct xml_text *)n)->text,
				       false);
		else
			r = xml_serialize(b, (const struct xml_elem *)n, scope);
		if (r < 0)
			return -1;
	}
	if (put_name(b, "</", e) < 0)
		return -1;
	return buf_append(b, ">", 1);
}
