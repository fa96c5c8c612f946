/*
 * stanza.h - XML element trees built in an arena.
 *
 * A stanza is a tree of elements and text nodes, all allocated in one
 * struct arena and freed with it. Names and namespaces are resolved: an
 * element carries its namespace URI, never a prefix, and the serializer
 * writes xmlns declarations as needed. Text is stored unescaped. All views
 * point into the arena and are NUL-terminated there (the NUL is not counted
 * in len).
 */
#ifndef STANZAD_XML_STANZA_H
#define STANZAD_XML_STANZA_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/str.h"

enum xml_node_type {
	XML_NODE_ELEM,
	XML_NODE_TEXT,
};

struct xml_elem;

struct xml_node {
	enum xml_node_type type;
	struct xml_node *next;   /* next sibling, or NULL */
	struct xml_elem *parent; /* NULL for a root */
};

struct xml_attr {
	struct xml_attr *next;
	struct str ns;   /* empty (len 0, p may be NULL) for unqualified */
	struct str name; /* local name */
	struct str value;
};

struct xml_elem {
	struct xml_node node; /* node.type == XML_NODE_ELEM; first member */
	struct str ns;        /* namespace URI; empty when none */
	struct str name;      /* local name */
	struct xml_attr *attrs;
	struct xml_node *children, *last_child;
};

struct xml_text {
	struct xml_node node; /* node.type == XML_NODE_TEXT; first member */
	struct str text;
};

/* Iterate over the child elements of e (text nodes skipped). */
#define xml_foreach_child(c, e)                                     \
	for (struct xml_elem *c = xml_first_child_elem(e); c != NULL; \
	     c = xml_next_elem(c))

struct xml_elem *xml_first_child_elem(const struct xml_elem *e);
struct xml_elem *xml_next_elem(const struct xml_elem *e);

/* Creates an element (no parent). Copies ns and name into the arena.
 * Returns NULL only if a capped arena is full. */
struct xml_elem *xml_elem_new(struct arena *a, struct str ns, struct str name);
/* As xml_elem_new, appended as the last child of parent. */
struct xml_elem *xml_add_child(struct arena *a, struct xml_elem *parent,
			       struct str ns, struct str name);
/* Appends an existing element as the last child (it must have no parent). */
void xml_append_elem(struct xml_elem *parent, struct xml_elem *child);
/* Appends text (copied, unescaped) as the last child. Returns 0 or -1 on
 * cap. Adjacent text is merged into one node. */
int xml_add_text(struct arena *a, struct xml_elem *parent, struct str text);
/* Creates an attribute that is not linked to any element: ns is shared as
 * by xml_ns_dup(), name and value are copied (one allocation). For builders
 * that already know the name is unique on the element, such as the parser;
 * they link it into e->attrs themselves. NULL on cap. */
struct xml_attr *xml_attr_new(struct arena *a, struct str ns, struct str name,
			      struct str value);
/* Removes child from its parent's list; child keeps its memory. */
void xml_remove_child(struct xml_elem *child);

/* Returns the value of the unqualified attribute name, or STR_NULL. */
struct str xml_attr_get(const struct xml_elem *e, const char *name);
/* Returns the value of the attribute {ns}name, or STR_NULL. */
struct str xml_attr_get_ns(const struct xml_elem *e, const char *ns,
			   const char *name);
/* Sets (replacing) the unqualified attribute name; copies name and value.
 * A NULL value view removes the attribute. Returns 0 or -1 on cap. */
int xml_attr_set(struct arena *a, struct xml_elem *e, const char *name,
		 struct str value);
int xml_attr_set_ns(struct arena *a, struct xml_elem *e, const char *ns,
		    const char *name, struct str value);

/* First child element with this namespace (NULL: any) and local name
 * (NULL: any), or NULL. */
struct xml_elem *xml_child(const struct xml_elem *e, const char *ns,
			   const char *name);
/* The concatenated text children of e, in the arena (a single text child is
 * returned without copying). Empty view (not NULL) when none. */
struct str xml_text(struct arena *a, const struct xml_elem *e);
/* Counts child elements. */
size_t xml_child_count(const struct xml_elem *e);

/* True if e has no attributes, no child elements and only whitespace
 * text (clients clear stored data by sending such an element). */
bool xml_elem_is_blank(struct arena *a, const struct xml_elem *e);

/* Deep-copies e (and its subtree) into arena a; the copy has no parent. */
struct xml_elem *xml_copy(struct arena *a, const struct xml_elem *e);

/* Returns ns as a view that lives at least as long as arena a: a static
 * string for the namespaces of xmpp/ns.h (no copy), else an arena copy. An
 * empty or NULL view gives an empty, non-NULL view. .p is NULL on cap. */
struct str xml_ns_dup(struct arena *a, struct str ns);

/* Appends s escaped as character data, or as an attribute value delimited
 * by ' when attr is true, such that an XML parser gives s back exactly:
 * buf_append_xml_escaped() plus character references for the whitespace
 * XML would otherwise normalise (CR in text; TAB, LF and CR in attribute
 * values). Returns 0 or -1 if b's max would be passed. */
int xml_escape(struct buf *b, struct str s, bool attr);

/* Serializes e and its subtree to b, escaping all text and attribute values.
 * parent_ns is the default namespace in scope where e is written (e.g.
 * "jabber:client" for a stanza on a c2s stream): xmlns is written only when
 * e's namespace differs from it. Qualified attributes get xml: for the XML
 * namespace and a generated prefix with its declaration otherwise.
 * Returns 0, or -1 if b's max would be passed. */
int xml_serialize(struct buf *b, const struct xml_elem *e, struct str parent_ns);

#endif
