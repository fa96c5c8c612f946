/*
 * stanza.c - XML element trees in an arena; see stanza.h.
 *
 * Invariants: every view in a tree is non-NULL and NUL-terminated, and
 * lives at least as long as the tree's arena (arena memory, or a static
 * string for well-known namespaces). An element and its local name are one
 * arena allocation, an attribute with its name and value another, so a
 * small stanza costs few allocations. Children and attributes keep document
 * order; no two text nodes are adjacent when built through this API.
 */
#include <string.h>

#include "../core/bug.h"
#include "../xmpp/ns.h"
#include "stanza.h"

static const char xml_empty[] = "";

/* Namespaces common enough that every stanza would otherwise copy them. */
#define KNOWN(s) { .p = (s), .len = sizeof(s) - 1 }
static const struct str xml_known_ns[] = {
	KNOWN(NS_CLIENT),
	KNOWN(NS_SERVER),
	KNOWN(NS_STREAMS),
	KNOWN(NS_XML),
	KNOWN(NS_STANZA_ERRORS),
	KNOWN(NS_TLS),
	KNOWN(NS_STREAM_ERRORS),
	KNOWN(NS_SASL),
	KNOWN(NS_BIND),
	KNOWN(NS_SESSION),
	KNOWN(NS_SASL_CB),
	KNOWN(NS_DISCO_INFO),
	KNOWN(NS_DISCO_ITEMS),
	KNOWN(NS_PING),
	KNOWN(NS_VERSION),
	KNOWN(NS_TIME),
};
#undef KNOWN

struct str xml_ns_dup(struct arena *a, struct str ns)
{
	if (ns.len == 0)
		return STR(xml_empty, 0);
	for (size_t i = 0; i < ARRAY_SIZE(xml_known_ns); i++)
		if (str_eq(ns, xml_known_ns[i]))
			return xml_known_ns[i];
	return arena_strdup(a, ns);
}

struct xml_elem *xml_first_child_elem(const struct xml_elem *e)
{
	for (struct xml_node *n = e->children; n != NULL; n = n->next)
		if (n->type == XML_NODE_ELEM)
			return (struct xml_elem *)n;
	return NULL;
}

struct xml_elem *xml_next_elem(const struct xml_elem *e)
{
	for (struct xml_node *n = e->node.next; n != NULL; n = n->next)
		if (n->type == XML_NODE_ELEM)
			return (struct xml_elem *)n;
	return NULL;
}

/* The element and its NUL-terminated local name in one allocation; ns must
 * already live as long as the arena. */
static struct xml_elem *elem_alloc(struct arena *a, struct str ns,
				   struct str name)
{
	struct xml_elem *e = arena_alloc(a, sizeof(*e) + name.len + 1);
	if (e == NULL)
		return NULL;
	char *p = (char *)(e + 1);
	if (name.len)
		memcpy(p, name.p, name.len);
	p[name.len] = '\0';
	*e = (struct xml_elem){
		.node = { .type = XML_NODE_ELEM },
		.ns = ns,
		.name = STR(p, name.len),
	};
	return e;
}

struct xml_elem *xml_elem_new(struct arena *a, struct str ns, struct str name)
{
	struct str n = xml_ns_dup(a, ns);
	if (n.p == NULL)
		return NULL;
	return elem_alloc(a, n, name);
}

static void append_node(struct xml_elem *parent, struct xml_node *n)
{
	n->parent = parent;
	n->next = NULL;
	if (parent->last_child)
		parent->last_child->next = n;
	else
		parent->children = n;
	parent->last_child = n;
}

struct xml_elem *xml_add_child(struct arena *a, struct xml_elem *parent,
			       struct str ns, struct str name)
{
	/* Children mostly share the parent's namespace: share its view. */
	struct str n = str_eq(ns, parent->ns) ? parent->ns : xml_ns_dup(a, ns);
	if (n.p == NULL)
		return NULL;
	struct xml_elem *e = elem_alloc(a, n, name);
	if (e)
		append_node(parent, &e->node);
	return e;
}

void xml_append_elem(struct xml_elem *parent, struct xml_elem *child)
{
	BUG_ON(child->node.parent != NULL);
	append_node(parent, &child->node);
}

int xml_add_text(struct arena *a, struct xml_elem *parent, struct str text)
{
	if (text.len == 0)
		return 0;
	struct xml_node *last = parent->last_child;
	if (last && last->type == XML_NODE_TEXT) {
		struct xml_text *t = (struct xml_text *)last;
		char *p = arena_alloc(a, t->text.len + text.len + 1);
		if (p == NULL)
			return -1;
		memcpy(p, t->text.p, t->text.len);
		memcpy(p + t->text.len, text.p, text.len);
		p[t->text.len + text.len] = '\0';
		t->text = STR(p, t->text.len + text.len);
		return 0;
	}
	struct xml_text *t = arena_alloc(a, sizeof(*t) + text.len + 1);
	if (t == NULL)
		return -1;
	char *p = (char *)(t + 1);
	memcpy(p, text.p, text.len);
	p[text.len] = '\0';
	t->node.type = XML_NODE_TEXT;
	t->text = STR(p, text.len);
	append_node(parent, &t->node);
	return 0;
}

void xml_remove_child(struct xml_elem *child)
{
	struct xml_elem *parent = child->node.parent;
	if (parent == NULL)
		return;
	struct xml_node *prev = NULL;
	for (struct xml_node *n = parent->children; n; prev = n, n = n->next) {
		if (n != &child->node)
			continue;
		if (prev)
			prev->next = n->next;
		else
			parent->children = n->next;
		if (parent->last_child == n)
			parent->last_child = prev;
		break;
	}
	child->node.parent = NULL;
	child->node.next = NULL;
}

static bool attr_is(const struct xml_attr *at, const char *ns,
		    const char *name)
{
	struct str n = str_c(ns);
	return str_eq_c(at->name, name) && str_eq(at->ns, n);
}

struct str xml_attr_get_ns(const struct xml_elem *e, const char *ns,
			   const char *name)
{
	for (const struct xml_attr *at = e->attrs; at; at = at->next)
		if (attr_is(at, ns, name))
			return at->value;
	return STR_NULL;
}

struct str xml_attr_get(const struct xml_elem *e, const char *name)
{
	return xml_attr_get_ns(e, NULL, name);
}

/* An attribute with its name and value in one allocation. */
static struct xml_attr *attr_alloc(struct arena *a, struct str ns,
				   struct str name, struct str value)
{
	struct xml_attr *at =
		arena_alloc(a, sizeof(*at) + name.len + value.len + 2);
	if (at == NULL)
		return NULL;
	char *p = (char *)(at + 1);
	if (name.len)
		memcpy(p, name.p, name.len);
	p[name.len] = '\0';
	char *v = p + name.len + 1;
	if (value.len)
		memcpy(v, value.p, value.len);
	v[value.len] = '\0';
	*at = (struct xml_attr){
		.ns = ns,
		.name = STR(p, name.len),
		.value = STR(v, value.len),
	};
	return at;
}

struct xml_attr *xml_attr_new(struct arena *a, struct str ns, struct str name,
			      struct str value)
{
	struct str n = xml_ns_dup(a, ns);
	if (n.p == NULL)
		return NULL;
	return attr_alloc(a, n, name, value);
}

int xml_attr_set_ns(struct arena *a, struct xml_elem *e, const char *ns,
		    const char *name, struct str value)
{
	struct xml_attr **link = &e->attrs;
	while (*link && !attr_is(*link, ns, name))
		link = &(*link)->next;
	struct xml_attr *old = *link;
	if (value.p == NULL) {
		if (old)
			*link = old->next;
		return 0;
	}
	struct str n = xml_ns_dup(a, str_c(ns));
	if (n.p == NULL)
		return -1;
	struct xml_attr *at = attr_alloc(a, n, str_c(name), value);
	if (at == NULL)
		return -1;
	/* Replace in place so the attribute keeps its position. */
	at->next = old ? old->next : NULL;
	*link = at;
	return 0;
}

int xml_attr_set(struct arena *a, struct xml_elem *e, const char *name,
		 struct str value)
{
	return xml_attr_set_ns(a, e, NULL, name, value);
}

struct xml_elem *xml_child(const struct xml_elem *e, const char *ns,
			   const char *name)
{
	xml_foreach_child(c, e) {
		if (ns && !str_eq_c(c->ns, ns))
			continue;
		if (name && !str_eq_c(c->name, name))
			continue;
		return c;
	}
	return NULL;
}

struct str xml_text(struct arena *a, const struct xml_elem *e)
{
	size_t len = 0, count = 0;
	const struct xml_text *only = NULL;
	for (const struct xml_node *n = e->children; n; n = n->next) {
		if (n->type != XML_NODE_TEXT)
			continue;
		only = (const struct xml_text *)n;
		len += only->text.len;
		count++;
	}
	if (count == 0)
		return STR(xml_empty, 0);
	if (count == 1)
		return only->text;
	char *p = arena_alloc(a, len + 1);
	if (p == NULL)
		return STR_NULL;
	size_t off = 0;
	for (const struct xml_node *n = e->children; n; n = n->next) {
		if (n->type != XML_NODE_TEXT)
			continue;
		const struct xml_text *t = (const struct xml_text *)n;
		memcpy(p + off, t->text.p, t->text.len);
		off += t->text.len;
	}
	p[len] = '\0';
	return STR(p, len);
}

size_t xml_child_count(const struct xml_elem *e)
{
	size_t n = 0;
	xml_foreach_child(c, e)
		n++;
	return n;
}

static int copy_attrs(struct arena *a, struct xml_elem *dst,
		      const struct xml_elem *src)
{
	struct xml_attr **tail = &dst->attrs;
	for (const struct xml_attr *at = src->attrs; at; at = at->next) {
		struct str ns = str_eq(at->ns, dst->ns) ? dst->ns
							: xml_ns_dup(a, at->ns);
		if (ns.p == NULL)
			return -1;
		struct xml_attr *c = attr_alloc(a, ns, at->name, at->value);
		if (c == NULL)
			return -1;
		*tail = c;
		tail = &c->next;
	}
	return 0;
}

static struct xml_elem *copy_elem(struct arena *a, struct xml_elem *parent,
				  const struct xml_elem *e)
{
	struct xml_elem *c = parent ? xml_add_child(a, parent, e->ns, e->name)
				    : xml_elem_new(a, e->ns, e->name);
	if (c == NULL || copy_attrs(a, c, e) < 0)
		return NULL;
	for (const struct xml_node *n = e->children; n; n = n->next) {
		if (n->type == XML_NODE_TEXT) {
			const struct xml_text *t = (const struct xml_text *)n;
			if (xml_add_text(a, c, t->text) < 0)
				return NULL;
		} else if (!copy_elem(a, c, (const struct xml_elem *)n)) {
			return NULL;
		}
	}
	return c;
}

struct xml_elem *xml_copy(struct arena *a, const struct xml_elem *e)
{
	return copy_elem(a, NULL, e);
}

bool xml_elem_is_blank(struct arena *a, const struct xml_elem *e)
{
	if (e->attrs != NULL || xml_first_child_elem(e) != NULL)
		return false;
	struct str t = xml_text(a, e);
	for (size_t i = 0; i < t.len; i++)
		if (t.p[i] != ' ' && t.p[i] != '\t' && t.p[i] != '\n' &&
		    t.p[i] != '\r')
			return false;
	return true;
}
