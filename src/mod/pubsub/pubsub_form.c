/*
 * pubsub_form.c - node configuration (XEP-0060 §8.2, §16.4.4) and
 * publish-options (§7.1.5) as data forms, read and built with
 * xml/dataform.h.
 *
 * The options: pubsub#title, pubsub#max_items (a number, or "max"),
 * pubsub#persist_items, pubsub#access_model, pubsub#roster_groups_allowed,
 * pubsub#notify_retract, pubsub#send_last_published_item, and
 * pubsub#deliver_notifications / pubsub#deliver_payloads, which are
 * always on (a submission may only confirm them). PEP nodes take the four
 * access models; the service takes open and whitelist (it has no roster).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/bug.h"
#include "../../core/conf.h"
#include "../../core/server.h"
#include "pubsub-private.h"

#define F_TITLE "pubsub#title"
#define F_MAX_ITEMS "pubsub#max_items"
#define F_PERSIST "pubsub#persist_items"
#define F_ACCESS "pubsub#access_model"
#define F_GROUPS "pubsub#roster_groups_allowed"
#define F_NOTIFY_RETRACT "pubsub#notify_retract"
#define F_SEND_LAST "pubsub#send_last_published_item"
#define F_DELIVER_NOTIF "pubsub#deliver_notifications"
#define F_DELIVER_PAYLOADS "pubsub#deliver_payloads"

static struct xml_elem *add(struct arena *a, struct xml_elem *x,
			    const char *var, const char *type,
			    const char *label, const char *value)
{
	struct str v = str_c(value);
	return dataform_add_field(a, x, var, type, label, &v, 1);
}

struct xml_elem *ps_config_form(struct arena *a, const struct ps_config *c,
				bool service)
{
	struct xml_elem *x = dataform_new(a, "form", NS_PUBSUB_NODE_CONFIG);
	if (x == NULL)
		return NULL;
	char max[16];
	snprintf(max, sizeof(max), "%u", c->max_items);
	struct str title = c->title;
	if (dataform_add_field(a, x, F_TITLE, "text-single", "Title", &title,
			       c->title.len > 0) == NULL ||
	    add(a, x, F_MAX_ITEMS, "text-single", "Most items kept", max) ==
		    NULL ||
	    add(a, x, F_PERSIST, "boolean", "Keep items",
		c->persist ? "1" : "0") == NULL ||
	    add(a, x, F_NOTIFY_RETRACT, "boolean", "Notify of retractions",
		c->notify_retract ? "1" : "0") == NULL ||
	    add(a, x, F_DELIVER_NOTIF, "boolean", "Deliver notifications",
		"1") == NULL ||
	    add(a, x, F_DELIVER_PAYLOADS, "boolean", "Deliver payloads",
		"1") == NULL)
		return NULL;
	struct xml_elem *f = add(a, x, F_ACCESS, "list-single",
				 "Who may subscribe and read items",
				 ps_access_name(c->access));
	if (f == NULL)
		return NULL;
	for (int i = 0; i <= PS_ACCESS_WHITELIST; i++)
		if (!service || i == PS_ACCESS_OPEN || i == PS_ACCESS_WHITELIST)
			dataform_add_option(a, f, NULL,
					    str_c(ps_access_name(i)));
	if (!service &&
	    dataform_add_field(a, x, F_GROUPS, "list-multi",
			       "Roster groups allowed (access model roster)",
			       c->groups, c->ngroups) == NULL)
		return NULL;
	f = add(a, x, F_SEND_LAST, "list-single",
		"When to send the last published item",
		ps_send_last_name(c->send_last));
	if (f == NULL)
		return NULL;
	for (int i = 0; i <= PS_SEND_LAST_ON_SUB_AND_PRESENCE; i++)
		if (!service || i != PS_SEND_LAST_ON_SUB_AND_PRESENCE)
			dataform_add_option(a, f, NULL,
					    str_c(ps_send_last_name(i)));
	return x;
}

static int parse_max(struct str v, unsigned *max_r)
{
	unsigned limit = server.conf->pubsub.max_items;
	if (str_eq_c(v, "max")) {
		*max_r = limit;
		return 0;
	}
	if (v.len == 0 || v.len > 9)
		return -1;
	unsigned n = 0;
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		n = n * 10 + (unsigned)(v.p[i] - '0');
	}
	if (n < 1 || n > limit)
		return -1;
	*max_r = n;
	return 0;
}

static int parse_access(struct str v, bool service, enum ps_access *a_r)
{
	for (int i = 0; i <= PS_ACCESS_WHITELIST; i++)
		if (str_eq_c(v, ps_access_name(i))) {
			if (service && i != PS_ACCESS_OPEN &&
			    i != PS_ACCESS_WHITELIST)
				return -1;
			*a_r = (enum ps_access)i;
			return 0;
		}
	return -1;
}

static int parse_send_last(struct str v, enum ps_send_last *s_r)
{
	for (int i = 0; i <= PS_SEND_LAST_ON_SUB_AND_PRESENCE; i++)
		if (str_eq_c(v, ps_send_last_name(i))) {
			*s_r = (enum ps_send_last)i;
			return 0;
		}
	return -1;
}

/* Applies one field; -1 for an unknown field or a bad value. */
static int apply_field(struct arena *a, const struct dataform_field *f,
		       struct ps_config *c, bool service)
{
	struct str v = f->nvalues > 0 ? f->values[0] : STR_LIT("");
	bool b;
	if (str_eq_c(f->var, F_TITLE)) {
		c->title = arena_strdup(a, v);
		return c->title.len <= 1024 ? 0 : -1;
	}
	if (str_eq_c(f->var, F_MAX_ITEMS))
		return parse_max(v, &c->max_items);
	if (str_eq_c(f->var, F_ACCESS))
		return parse_access(v, service, &c->access);
	if (str_eq_c(f->var, F_SEND_LAST))
		return parse_send_last(v, &c->send_last);
	if (str_eq_c(f->var, F_GROUPS)) {
		if (service || f->nvalues > PS_MAX_GROUPS)
			return -1;
		c->groups = f->values;
		c->ngroups = f->nvalues;
		return 0;
	}
	if (dataform_bool(v, &b) < 0)
		return -1;
	if (str_eq_c(f->var, F_PERSIST))
		c->persist = b;
	else if (str_eq_c(f->var, F_NOTIFY_RETRACT))
		c->notify_retract = b;
	else if (str_eq_c(f->var, F_DELIVER_NOTIF) ||
		 str_eq_c(f->var, F_DELIVER_PAYLOADS))
		return b ? 0 : -1; /* always delivered */
	else
		return -1;
	return 0;
}

struct ps_error ps_config_apply(struct arena *a, const struct dataform *f,
				struct ps_config *c, bool service)
{
	if (f->type == DATAFORM_CANCEL)
		return PS_OK;
	if (f->type != DATAFORM_SUBMIT ||
	    (!str_is_null(f->form_type) &&
	     !str_eq_c(f->form_type, NS_PUBSUB_NODE_CONFIG)))
		return (struct ps_error){ STANZA_ERR_BAD_REQUEST, NULL, NULL };
	struct ps_config next = *c;
	for (size_t i = 0; i < f->nfields; i++)
		if (apply_field(a, &f->fields[i], &next, service) < 0)
			return (struct ps_error){ STANZA_ERR_NOT_ACCEPTABLE,
						  NULL, NULL };
	*c = next;
	return PS_OK;
}

static bool same_groups(const struct dataform_field *f,
			const struct ps_config *c)
{
	if (f->nvalues != c->ngroups)
		return false;
	for (size_t i = 0; i < f->nvalues; i++) {
		bool found = false;
		for (size_t j = 0; j < c->ngroups && !found; j++)
			found = str_eq(f->values[i], c->groups[j]);
		if (!found)
			return false;
	}
	return true;
}

bool ps_preconditions_met(const struct dataform *f, const struct ps_config *c)
{
	struct arena *a = arena_new(0);
	bool ok = true;
	for (size_t i = 0; ok && i < f->nfields; i++) {
		const struct dataform_field *fd = &f->fields[i];
		/* What the node would be with this option applied must be
		 * what it is. */
		struct ps_config want = *c;
		if (apply_field(a, fd, &want, false) < 0)
			ok = false;
		else if (str_eq_c(fd->var, F_GROUPS))
			ok = same_groups(fd, c);
		else
			ok = want.access == c->access &&
			     want.max_items == c->max_items &&
			     want.persist == c->persist &&
			     want.notify_retract == c->notify_retract &&
			     want.send_last == c->send_last &&
			     str_eq(want.title, c->title);
	}
	arena_destroy(&a);
	return ok;
}
